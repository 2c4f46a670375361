#pragma once
// Hand-made WebSocket peers for the tests: a blocking client and a blocking one-shot
// server on loopback that speak RFC 6455 frame by frame, so tests can send what the
// bindings never would (text frames, fragments, bare pings, an upgrade without v1.usp)
// and read exactly what the binding sends back. Reads time out after 5 s.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <random>
#include <stdexcept>
#include <string>

#include "berth/core/fd.h"

namespace berth::testing {

struct WsFrame {
    int opcode = 0;
    bool fin = true;
    std::string payload;
    int closeCode() const {
        return payload.size() >= 2 ? (static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1])
                                   : 0;
    }
};

inline std::string wsAcceptFor(const std::string& key) {
    const std::string in = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest);
    unsigned char out[64];
    const int n = EVP_EncodeBlock(out, digest, SHA_DIGEST_LENGTH);
    return std::string(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
}

class RawWsConnection {
public:
    RawWsConnection() = default;
    explicit RawWsConnection(UniqueFd fd, bool mask) : fd_(std::move(fd)), mask_(mask) { setTimeout(); }

    // Reads up to and including the blank line ending an HTTP head; "" on EOF/timeout.
    std::string readHead() {
        std::string head;
        char c;
        while (head.size() < 16384) {
            if (::recv(fd_.get(), &c, 1, 0) != 1) return head;
            head += c;
            if (head.size() >= 4 && head.compare(head.size() - 4, 4, "\r\n\r\n") == 0) return head;
        }
        return head;
    }
    void writeAll(const std::string& s) {
        std::size_t off = 0;
        while (off < s.size()) {
            ssize_t n = ::send(fd_.get(), s.data() + off, s.size() - off, MSG_NOSIGNAL);
            if (n <= 0) throw std::runtime_error("raw websocket write failed");
            off += static_cast<std::size_t>(n);
        }
    }
    void sendFrame(int opcode, const std::string& payload, bool fin = true) {
        std::string f;
        f += static_cast<char>((fin ? 0x80 : 0) | opcode);
        const unsigned char maskBit = mask_ ? 0x80 : 0;
        if (payload.size() < 126) {
            f += static_cast<char>(maskBit | payload.size());
        } else if (payload.size() < 65536) {
            f += static_cast<char>(maskBit | 126);
            f += static_cast<char>(payload.size() >> 8);
            f += static_cast<char>(payload.size() & 0xff);
        } else {
            f += static_cast<char>(maskBit | 127);
            for (int i = 7; i >= 0; --i) f += static_cast<char>((payload.size() >> (8 * i)) & 0xff);
        }
        std::string body = payload;
        if (mask_) {
            const char key[4] = {0x12, 0x34, 0x56, 0x78};
            f.append(key, 4);
            for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(body[i] ^ key[i % 4]);
        }
        writeAll(f + body);
    }
    void sendClose(int code, const std::string& reason = {}) {
        std::string p;
        p += static_cast<char>(code >> 8);
        p += static_cast<char>(code & 0xff);
        sendFrame(8, p + reason);
    }
    std::optional<WsFrame> readFrame() {
        unsigned char h[2];
        if (!readExact(h, 2)) return std::nullopt;
        WsFrame f;
        f.fin = h[0] & 0x80;
        f.opcode = h[0] & 0x0f;
        const bool masked = h[1] & 0x80;
        std::uint64_t len = h[1] & 0x7f;
        if (len == 126) {
            unsigned char e[2];
            if (!readExact(e, 2)) return std::nullopt;
            len = (e[0] << 8) | e[1];
        } else if (len == 127) {
            unsigned char e[8];
            if (!readExact(e, 8)) return std::nullopt;
            len = 0;
            for (unsigned char b : e) len = (len << 8) | b;
        }
        unsigned char key[4] = {0, 0, 0, 0};
        if (masked && !readExact(key, 4)) return std::nullopt;
        f.payload.resize(len);
        if (len && !readExact(reinterpret_cast<unsigned char*>(f.payload.data()), len)) return std::nullopt;
        if (masked)
            for (std::size_t i = 0; i < f.payload.size(); ++i) f.payload[i] = static_cast<char>(f.payload[i] ^ key[i % 4]);
        return f;
    }
    // Reads frames until one with this opcode arrives (skipping pings etc.).
    std::optional<WsFrame> readUntil(int opcode) {
        for (int i = 0; i < 100; ++i) {
            auto f = readFrame();
            if (!f || f->opcode == opcode) return f;
        }
        return std::nullopt;
    }
    bool eof() {
        char c;
        return ::recv(fd_.get(), &c, 1, 0) <= 0;
    }

private:
    void setTimeout() {
        timeval tv{5, 0};
        ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    bool readExact(unsigned char* p, std::size_t n) {
        std::size_t got = 0;
        while (got < n) {
            ssize_t r = ::recv(fd_.get(), p + got, n - got, 0);
            if (r <= 0) return false;
            got += static_cast<std::size_t>(r);
        }
        return true;
    }
    UniqueFd fd_;
    bool mask_ = true;
};

// Dials 127.0.0.1:port and sends an upgrade request; `protocol` empty sends no
// Sec-WebSocket-Protocol header. Returns the connection and the response head.
inline std::pair<RawWsConnection, std::string> rawWsDial(int port, const std::string& target,
                                                          const std::string& protocol) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
        throw std::runtime_error("raw websocket dial failed");
    RawWsConnection c(std::move(fd), true);
    std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n";
    if (!protocol.empty()) req += "Sec-WebSocket-Protocol: " + protocol + "\r\n";
    req += "\r\n";
    c.writeAll(req);
    std::string head = c.readHead();
    return {std::move(c), head};
}

// A listening socket on 127.0.0.1 (free port) that accepts one upgrade at a time.
class RawWsServer {
public:
    RawWsServer() {
        listen_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        int one = 1;
        ::setsockopt(listen_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_.get(), 4) != 0)
            throw std::runtime_error("raw websocket server cannot listen");
        socklen_t len = sizeof a;
        ::getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        timeval tv{10, 0};
        ::setsockopt(listen_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    int port() const { return port_; }
    // Accepts one connection, reads the request head into `request` and answers 101,
    // echoing `protocol` unless it is empty.
    std::optional<RawWsConnection> acceptUpgrade(const std::string& protocol, std::string& request) {
        UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!fd) return std::nullopt;
        RawWsConnection c(std::move(fd), false);
        request = c.readHead();
        std::string key;
        const auto k = request.find("Sec-WebSocket-Key:");
        if (k != std::string::npos) {
            auto start = request.find_first_not_of(' ', k + 18);
            key = request.substr(start, request.find("\r\n", start) - start);
        }
        std::string resp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Accept: " + wsAcceptFor(key) + "\r\n";
        if (!protocol.empty()) resp += "Sec-WebSocket-Protocol: " + protocol + "\r\n";
        resp += "\r\n";
        c.writeAll(resp);
        return c;
    }

private:
    UniqueFd listen_;
    int port_ = 0;
};

}  // namespace berth::testing
