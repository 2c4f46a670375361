// The production StompStream: a non-blocking TCP socket watched by the event loop,
// optionally wrapped in TLS (OpenSSL with a socket BIO), plus configuration checks.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "berth/core/fd.h"
#include "berth/core/log.h"
#include "stomp_tls.h"

namespace berth::transports {
namespace stomp_detail {

std::string drainSslErrors() {
    std::string out;
    while (unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out;
}

Result<SslCtxPtr> makeClientTlsContext(const StompTlsConfig& tls) {
    ERR_clear_error();
    SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx) return Error(ErrorCode::kInternalError, "SSL_CTX_new: " + drainSslErrors());
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (!tls.caFile.empty()) {
        if (SSL_CTX_load_verify_locations(ctx.get(), tls.caFile.c_str(), nullptr) != 1)
            return Error(ErrorCode::kInvalidConfiguration,
                         "cannot load CA file " + tls.caFile + ": " + drainSslErrors(), tls.caFile);
    } else if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
        return Error(ErrorCode::kInvalidConfiguration, "cannot load the system CA store: " + drainSslErrors());
    }
    if (!tls.certFile.empty()) {
        if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.certFile.c_str()) != 1)
            return Error(ErrorCode::kInvalidConfiguration,
                         "cannot load client certificate " + tls.certFile + ": " + drainSslErrors(), tls.certFile);
        const std::string& key = tls.keyFile.empty() ? tls.certFile : tls.keyFile;
        if (SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) != 1)
            return Error(ErrorCode::kInvalidConfiguration,
                         "cannot load client key " + key + ": " + drainSslErrors(), key);
        if (SSL_CTX_check_private_key(ctx.get()) != 1)
            return Error(ErrorCode::kInvalidConfiguration,
                         "client key " + key + " does not match certificate " + tls.certFile, key);
    } else if (!tls.keyFile.empty()) {
        return Error(ErrorCode::kInvalidConfiguration, "a client key without a client certificate", tls.keyFile);
    }
    return ctx;
}

}  // namespace stomp_detail

using stomp_detail::drainSslErrors;

Status validateStompConfig(const StompConfig& c) {
    auto bad = [](std::string msg, std::string field) {
        return Error(ErrorCode::kInvalidConfiguration, std::move(msg), std::move(field));
    };
    if (c.host.empty()) return bad("STOMP Host is empty", "Host");
    if (c.host.find_first_of(" \t\r\n") != std::string::npos) return bad("STOMP Host '" + c.host + "' has blanks", "Host");
    if (c.port < 1 || c.port > 65535) return bad("STOMP Port " + std::to_string(c.port) + " is outside 1..65535", "Port");
    if (c.serverRetryInitialInterval.count() < 1 || c.serverRetryInitialInterval.count() > 65535)
        return bad("ServerRetryInitialInterval must be 1..65535 s", "ServerRetryInitialInterval");
    if (c.serverRetryIntervalMultiplier < 1000 || c.serverRetryIntervalMultiplier > 65535)
        return bad("ServerRetryIntervalMultiplier must be 1000..65535", "ServerRetryIntervalMultiplier");
    if (c.serverRetryMaxInterval < c.serverRetryInitialInterval)
        return bad("ServerRetryMaxInterval is below ServerRetryInitialInterval", "ServerRetryMaxInterval");
    if (c.outgoingHeartbeat.count() < 0 || c.outgoingHeartbeat.count() > 0xffffffffLL)
        return bad("OutgoingHeartbeat out of range", "OutgoingHeartbeat");
    if (c.incomingHeartbeat.count() < 0 || c.incomingHeartbeat.count() > 0xffffffffLL)
        return bad("IncomingHeartbeat out of range", "IncomingHeartbeat");
    if (c.heartbeatGrace.count() < 0) return bad("heart-beat grace is negative", "heartbeatGrace");
    if (c.connectTimeout.count() < 1) return bad("connect timeout must be at least 1 s", "connectTimeout");
    if (c.maxFrameSize < 1024) return bad("maximum frame size must be at least 1024 bytes", "maxFrameSize");
    if (c.destination.find_first_of(std::string_view("\0\r\n", 3)) != std::string::npos)
        return bad("Destination holds a control character", "Destination");
    if (c.enableEncryption) {
        for (const auto* f : {&c.tls.caFile, &c.tls.certFile, &c.tls.keyFile}) {
            if (f->empty()) continue;
            std::error_code ec;
            if (!std::filesystem::is_regular_file(*f, ec)) return bad("TLS file " + *f + " does not exist", *f);
        }
        auto ctx = stomp_detail::makeClientTlsContext(c.tls);
        if (!ctx) return std::move(ctx).error();
    }
    return {};
}

namespace {

constexpr std::string_view kTag = "stomp";

class TcpStompStream final : public StompStream {
public:
    TcpStompStream(EventLoop& loop, WorkerPool& pool, const StompConfig& config, StompStreamEvents& events)
        : loop_(loop), pool_(pool), events_(events), host_(config.host), port_(config.port), tlsConfig_(config.tls),
          useTls_(config.enableEncryption), maxWriteBuffer_(config.maxWriteBuffer) {}

    // Destroying resolveJob_ means a resolution still running is never delivered.
    ~TcpStompStream() override {
        if (destroyedFlag_) *destroyedFlag_ = true;
        watch_.reset();
    }

    Status begin() {
        if (useTls_) {
            auto ctx = stomp_detail::makeClientTlsContext(tlsConfig_);
            if (!ctx) return std::move(ctx).error();
            ctx_ = std::move(*ctx);
        }
        // Numeric addresses need no resolver.
        sockaddr_storage ss{};
        socklen_t len = 0;
        if (numericAddress(host_, port_, ss, len)) {
            addrs_.push_back({ss, len});
            loop_.post(deferred([this] { tryNextAddress(); }));
            return {};
        }
        resolveJob_ = pool_.submit<Resolved>(
            [host = host_, port = port_](const CancelToken&) { return resolve(host, port); },
            [this](Resolved r) { onResolved(r.addrs, r.error); });
        return {};
    }

    Status write(std::string_view bytes) override {
        if (closed_) return Error(ErrorCode::kMessageFailed, "connection closed");
        if (out_.size() + bytes.size() > maxWriteBuffer_ && !out_.empty())
            return Error(ErrorCode::kMessageFailed,
                         "write buffer full (" + std::to_string(out_.size()) + " bytes unsent)");
        out_.append(bytes.data(), bytes.size());
        if (open_) flush();
        return {};
    }

    std::size_t pendingBytes() const override { return out_.size(); }

private:
    struct Addr {
        sockaddr_storage ss;
        socklen_t len;
    };
    struct Resolved {
        std::vector<Addr> addrs;
        std::string error;
    };

    // Blocking: runs on a worker thread.
    static Resolved resolve(const std::string& host, int port) {
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
        Resolved out;
        for (addrinfo* ai = res; rc == 0 && ai; ai = ai->ai_next) {
            Addr a{};
            std::memcpy(&a.ss, ai->ai_addr, ai->ai_addrlen);
            a.len = ai->ai_addrlen;
            out.addrs.push_back(a);
        }
        if (res) freeaddrinfo(res);
        if (rc != 0) out.error = gai_strerror(rc);
        return out;
    }

    static bool numericAddress(const std::string& host, int port, sockaddr_storage& ss, socklen_t& len) {
        auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
        if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            v4->sin_port = htons(static_cast<std::uint16_t>(port));
            len = sizeof(sockaddr_in);
            return true;
        }
        auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
        if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons(static_cast<std::uint16_t>(port));
            len = sizeof(sockaddr_in6);
            return true;
        }
        return false;
    }

    // Wraps work posted to the loop so it is dropped once the stream is gone.
    std::function<void()> deferred(std::function<void()> fn) {
        if (!token_) token_ = std::make_shared<bool>(true);
        std::weak_ptr<bool> weak = token_;
        return [weak, fn = std::move(fn)] {
            if (weak.lock()) fn();
        };
    }

    void onResolved(const std::vector<Addr>& addrs, const std::string& err) {
        if (addrs.empty()) {
            fail("cannot resolve " + host_ + ": " + (err.empty() ? "no address" : err));
            return;
        }
        addrs_ = addrs;
        tryNextAddress();
    }

    void tryNextAddress() {
        if (closed_) return;
        while (nextAddr_ < addrs_.size()) {
            const Addr& a = addrs_[nextAddr_++];
            UniqueFd fd(::socket(a.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
            if (!fd) {
                lastError_ = std::string("socket: ") + std::strerror(errno);
                continue;
            }
            int one = 1;
            ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a.ss), a.len) != 0 && errno != EINPROGRESS) {
                lastError_ = "connect to " + host_ + ":" + std::to_string(port_) + ": " + std::strerror(errno);
                continue;
            }
            fd_ = std::move(fd);
            auto w = loop_.watchFd(fd_.get(), EPOLLOUT, [this](std::uint32_t ev) { onEvents(ev); });
            if (!w) {
                fail(w.error().message);
                return;
            }
            watch_ = std::move(*w);
            return;
        }
        fail(lastError_.empty() ? "no address to connect to" : lastError_);
    }

    void onEvents(std::uint32_t ev) {
        if (closed_) return;
        if (!tcpUp_) {
            int err = 0;
            socklen_t len = sizeof err;
            ::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0) {
                lastError_ = "connect to " + host_ + ":" + std::to_string(port_) + ": " + std::strerror(err);
                watch_.reset();
                fd_.reset();
                tryNextAddress();
                return;
            }
            tcpUp_ = true;
            if (useTls_) {
                if (!startTls()) return;
            } else {
                becomeOpen();
                return;
            }
        }
        if (useTls_ && !open_) {
            handshake();
            return;
        }
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            if (!readAll()) return;
        }
        if (ev & EPOLLOUT || sslWantsWriteForRead_) flush();
    }

    bool startTls() {
        ssl_.reset(SSL_new(ctx_.get()));
        if (!ssl_) {
            fail("SSL_new: " + drainSslErrors());
            return false;
        }
        SSL_set_fd(ssl_.get(), fd_.get());
        const std::string& name = tlsConfig_.serverName.empty() ? host_ : tlsConfig_.serverName;
        sockaddr_storage ss{};
        socklen_t len = 0;
        const bool isIp = numericAddress(name, port_, ss, len);
        if (!isIp) SSL_set_tlsext_host_name(ssl_.get(), name.c_str());
        if (tlsConfig_.verifyServerName) {
            X509_VERIFY_PARAM* param = SSL_get0_param(ssl_.get());
            if (isIp)
                X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
            else
                SSL_set1_host(ssl_.get(), name.c_str());
        }
        handshake();
        return !closed_;
    }

    void handshake() {
        ERR_clear_error();
        const int rc = SSL_connect(ssl_.get());
        if (rc == 1) {
            becomeOpen();
            return;
        }
        const int e = SSL_get_error(ssl_.get(), rc);
        if (e == SSL_ERROR_WANT_READ) {
            (void)watch_->setEvents(EPOLLIN);
            return;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            (void)watch_->setEvents(EPOLLOUT);
            return;
        }
        std::string why;
        const long verify = SSL_get_verify_result(ssl_.get());
        if (verify != X509_V_OK)
            why = std::string("server certificate rejected: ") + X509_verify_cert_error_string(verify);
        else
            why = drainSslErrors();
        if (why.empty()) why = e == SSL_ERROR_SYSCALL ? "connection closed during the handshake" : "handshake failed";
        fail("TLS handshake with " + host_ + ":" + std::to_string(port_) + " failed: " + why);
    }

    void becomeOpen() {
        open_ = true;
        updateEvents();
        bool destroyed = false;
        destroyedFlag_ = &destroyed;
        events_.onStreamConnected();
        if (destroyed) return;
        destroyedFlag_ = nullptr;
        if (!out_.empty()) flush();
    }

    // Reads until the socket would block; false when the stream closed or was destroyed.
    bool readAll() {
        char buf[16384];
        for (;;) {
            ssize_t n;
            if (ssl_) {
                ERR_clear_error();
                const int rc = SSL_read(ssl_.get(), buf, sizeof buf);
                if (rc <= 0) {
                    const int e = SSL_get_error(ssl_.get(), rc);
                    if (e == SSL_ERROR_WANT_READ) return true;
                    if (e == SSL_ERROR_WANT_WRITE) {
                        sslWantsWriteForRead_ = true;
                        updateEvents();
                        return true;
                    }
                    if (e == SSL_ERROR_ZERO_RETURN) {
                        fail("server closed the TLS connection");
                    } else {
                        const std::string detail = drainSslErrors();
                        fail(detail.empty() ? "connection closed by the server" : "TLS error: " + detail);
                    }
                    return false;
                }
                n = rc;
            } else {
                n = ::read(fd_.get(), buf, sizeof buf);
                if (n < 0) {
                    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
                    if (errno == EINTR) continue;
                    fail(std::string("read: ") + std::strerror(errno));
                    return false;
                }
                if (n == 0) {
                    fail("connection closed by the server");
                    return false;
                }
            }
            bool destroyed = false;
            destroyedFlag_ = &destroyed;
            events_.onStreamData(std::string_view(buf, static_cast<std::size_t>(n)));
            if (destroyed) return false;
            destroyedFlag_ = nullptr;
            if (closed_) return false;
        }
    }

    void flush() {
        sslWantsWriteForRead_ = false;
        while (!out_.empty()) {
            ssize_t n;
            if (ssl_) {
                ERR_clear_error();
                const int rc = SSL_write(ssl_.get(), out_.data(), static_cast<int>(std::min<std::size_t>(out_.size(), 1 << 20)));
                if (rc <= 0) {
                    const int e = SSL_get_error(ssl_.get(), rc);
                    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
                    fail("TLS write failed: " + drainSslErrors());
                    return;
                }
                n = rc;
            } else {
                n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
                if (n < 0) {
                    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                    if (errno == EINTR) continue;
                    fail(std::string("write: ") + std::strerror(errno));
                    return;
                }
            }
            out_.erase(0, static_cast<std::size_t>(n));
        }
        updateEvents();
    }

    void updateEvents() {
        if (!watch_) return;
        std::uint32_t ev = EPOLLIN;
        if (!out_.empty() || sslWantsWriteForRead_) ev |= EPOLLOUT;
        (void)watch_->setEvents(ev);
    }

    void fail(const std::string& reason) {
        if (closed_) return;
        closed_ = true;
        watch_.reset();
        ssl_.reset();
        fd_.reset();
        BERTH_LOG_DEBUG(kTag) << host_ << ":" << port_ << ": " << reason;
        events_.onStreamClosed(reason);  // may destroy this
    }

    EventLoop& loop_;
    WorkerPool& pool_;
    StompStreamEvents& events_;
    std::string host_;
    int port_;
    StompTlsConfig tlsConfig_;
    bool useTls_;
    std::size_t maxWriteBuffer_;
    stomp_detail::SslCtxPtr ctx_;
    stomp_detail::SslPtr ssl_;
    std::unique_ptr<Job> resolveJob_;
    std::shared_ptr<bool> token_;
    std::vector<Addr> addrs_;
    std::size_t nextAddr_ = 0;
    std::string lastError_;
    UniqueFd fd_;
    std::unique_ptr<FdWatch> watch_;
    std::string out_;
    bool tcpUp_ = false;
    bool open_ = false;
    bool closed_ = false;
    bool sslWantsWriteForRead_ = false;
    bool* destroyedFlag_ = nullptr;
};

}  // namespace

StompStreamFactory tcpStompStreamFactory(WorkerPool& pool) {
    return [&pool](EventLoop& loop, const StompConfig& config,
                   StompStreamEvents& events) -> Result<std::unique_ptr<StompStream>> {
        auto s = std::make_unique<TcpStompStream>(loop, pool, config, events);
        BERTH_TRY(s->begin());
        return std::unique_ptr<StompStream>(std::move(s));
    };
}

}  // namespace berth::transports
