#pragma once
// A scriptable STOMP server on 127.0.0.1 (a free port), run by the test's event loop:
// it answers STOMP/CONNECT with CONNECTED (headers chosen by the test), SUBSCRIBE
// receipts with RECEIPT, records every frame and heart-beat it receives, and can send
// raw bytes, go silent or drop the client. One client at a time; a new one replaces
// the old one.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "berth/core/event_loop.h"
#include "berth/core/fd.h"
#include "berth/transports/stomp.h"

namespace berth::testing {

class FakeStompServer {
public:
    explicit FakeStompServer(EventLoop& loop) : loop_(loop) {
        listen_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        int one = 1;
        ::setsockopt(listen_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_.get(), 8) != 0)
            throw std::runtime_error("fake STOMP server cannot listen");
        socklen_t len = sizeof a;
        ::getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        auto w = loop_.watchFd(listen_.get(), EPOLLIN, [this](std::uint32_t) { accept(); });
        if (!w) throw std::runtime_error(w.error().message);
        listenWatch_ = std::move(*w);
        beatTimer_ = loop_.createTimer([this] {
            if (!silent && conn_) sendRaw("\n");
        });
    }

    int port() const { return port_; }

    // ---- behaviour, set by the test ----
    std::vector<std::pair<std::string, std::string>> connectedHeaders{{"version", "1.2"}, {"server", "fake/1"}};
    bool answerConnect = true;
    bool answerReceipts = true;
    bool silent = false;                          // stop heart-beats
    std::chrono::milliseconds beatEvery{0};       // send EOLs this often once connected

    // ---- what happened ----
    std::vector<transports::StompFrame> frames;   // every frame from every client
    int connections = 0;
    std::uint64_t heartbeatsReceived = 0;
    int closedByClient = 0;

    bool clientConnected() const { return conn_.valid(); }
    std::vector<transports::StompFrame> framesNamed(const std::string& command) const {
        std::vector<transports::StompFrame> out;
        for (const auto& f : frames)
            if (f.command == command) out.push_back(f);
        return out;
    }
    void sendRaw(const std::string& bytes) {
        if (!conn_) return;
        (void)!::send(conn_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    }
    void sendFrame(const transports::StompFrame& f) { sendRaw(transports::serializeStompFrame(f)); }
    void dropClient() {
        connWatch_.reset();
        conn_.reset();
        beatTimer_->cancel();
    }

private:
    void accept() {
        UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) return;
        dropClient();
        conn_ = std::move(fd);
        ++connections;
        parser_ = transports::StompFrameParser();
        beatsBefore_ = 0;
        auto w = loop_.watchFd(conn_.get(), EPOLLIN, [this](std::uint32_t) { readable(); });
        if (w) connWatch_ = std::move(*w);
    }

    void readable() {
        char buf[65536];
        ssize_t n = ::read(conn_.get(), buf, sizeof buf);
        if (n <= 0) {
            if (n < 0 && errno == EAGAIN) return;
            ++closedByClient;
            dropClient();
            return;
        }
        parser_.feed(std::string_view(buf, static_cast<std::size_t>(n)));
        heartbeatsReceived += parser_.heartbeatsSeen() - beatsBefore_;
        beatsBefore_ = parser_.heartbeatsSeen();
        while (auto f = parser_.next()) {
            frames.push_back(*f);
            if ((f->command == "STOMP" || f->command == "CONNECT") && answerConnect) {
                transports::StompFrame c{"CONNECTED", connectedHeaders, {}};
                sendFrame(c);
                if (beatEvery.count() > 0) beatTimer_->start(beatEvery, true);
            } else if (auto r = f->header("receipt"); r && answerReceipts) {
                sendFrame(transports::StompFrame{"RECEIPT", {{"receipt-id", *r}}, {}});
            }
            if (!conn_) return;
        }
    }

    EventLoop& loop_;
    UniqueFd listen_;
    int port_ = 0;
    std::unique_ptr<FdWatch> listenWatch_;
    UniqueFd conn_;
    std::unique_ptr<FdWatch> connWatch_;
    std::unique_ptr<Timer> beatTimer_;
    transports::StompFrameParser parser_;
    std::uint64_t beatsBefore_ = 0;
};

}  // namespace berth::testing
