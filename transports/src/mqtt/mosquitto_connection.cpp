// MqttConnection on libmosquitto, run from the EventLoop: no thread of its own.
//
// libmosquitto is used in its "external loop" style: mosquitto_socket() is watched
// with the loop's epoll, mosquitto_loop_read()/_write() run when it is ready,
// mosquitto_want_write() decides whether EPOLLOUT is wanted, and a loop timer calls
// mosquitto_loop_misc() for keep-alive (PINGREQ, and giving up when no PINGRESP
// comes). The TCP connect is non-blocking (mosquitto_connect_bind_async); a host name
// is resolved on the worker pool first, so no call here waits on the network.
//
// libmosquitto's callbacks run inside its loop functions. They only record what
// happened; the events go to the client after the libmosquitto call has returned, so
// the client may call back in (publish, disconnect) or even destroy this connection
// from an event without libmosquitto being on the stack.
//
// TLS: libmosquitto checks the broker's name against the address it connected to,
// which is the resolved IP address. So it is given an SSL_CTX of ours, used as it is:
// CA, client certificate and key loaded here, its own name check off (tls_insecure)
// and OpenSSL's (X509_VERIFY_PARAM) set to the configured BrokerAddress instead; the
// SNI is set to that name when the handshake starts. A failed TLS connect is
// diagnosed on the worker pool as in the Paho binding (tls_files.h).
//
// Two libmosquitto 2.0 facts shape this file: every client opens a socket pair of its
// own besides the broker socket, which is closed again (closeWakeupPair), and MQTT 5
// CONNECT properties can only be given through the
// blocking mosquitto_connect_bind_v5(), which stores them before it checks its
// arguments: called with no host, it stores them and returns MOSQ_ERR_INVAL at once,
// and the asynchronous connect then sends them.
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "berth/core/log.h"
#include "berth/transports/mqtt.h"
#include "tls_files.h"

namespace berth::transports {
namespace {

constexpr std::string_view kTag = "mqtt";

void initLibrary() {
    static std::once_flag once;
    std::call_once(once, [] { mosquitto_lib_init(); });
}

bool isNumericAddress(const std::string& host) {
    unsigned char buf[sizeof(in6_addr)];
    return ::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// Blocking; on the worker pool. The first address getaddrinfo() prefers.
Result<std::string> resolve(const std::string& host) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc != 0 || !res)
        return Error(ErrorCode::kMessageFailed, "cannot resolve " + host + ": " + ::gai_strerror(rc));
    char text[INET6_ADDRSTRLEN] = {};
    const void* addr = res->ai_family == AF_INET6
                           ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(res->ai_addr)->sin6_addr)
                           : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr);
    ::inet_ntop(res->ai_family, addr, text, sizeof text);
    ::freeaddrinfo(res);
    return std::string(text);
}

std::string mosquittoError(int rc) {
    if (rc == MOSQ_ERR_ERRNO) return std::strerror(errno);
    return mosquitto_strerror(rc);
}

struct PropertiesFree {
    void operator()(mosquitto_property* p) const { mosquitto_property_free_all(&p); }
};
using Properties = std::unique_ptr<mosquitto_property, PropertiesFree>;

struct CtxFree {
    void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};

// SNI for the SSL_CTX's connections: the configured broker name (ex data of the
// SSL_CTX), set when the handshake starts, after libmosquitto set the IP address.
int sniIndex() {
    static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}
void setSniAtHandshake(const SSL* ssl, int where, int /*ret*/) {
    if (!(where & SSL_CB_HANDSHAKE_START)) return;
    const auto* name = static_cast<const std::string*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), sniIndex()));
    // An IP address is no SNI (RFC 6066 3): none then.
    const char* sni = name && !name->empty() ? name->c_str() : nullptr;
    SSL_set_tlsext_host_name(const_cast<SSL*>(ssl), const_cast<char*>(sni));
}

bool isUnnamedUnixStream(int fd) {
    int type = 0;
    socklen_t len = sizeof type;
    sockaddr_storage addr{};
    socklen_t addrLen = sizeof addr;
    return ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM &&
           ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &addrLen) == 0 && addr.ss_family == AF_UNIX &&
           addrLen == sizeof(sa_family_t);
}

// libmosquitto 2.0 opens a socket pair per client (mosquitto_new), only to wake its own
// loop thread, which berth does not use: two descriptors per client that would cap one
// process at about 6,600 clients under a 20,000 open-file limit, and a byte written
// into it per packet that nobody reads. The pair sits right after the client socket at
// the start of struct mosquitto (lib/mosquitto_internal.h: sock, sockpairR, sockpairW);
// libmosquitto checks both for INVALID_SOCKET before use, as after a failed
// socketpair(). They are closed and marked so only after checking that they are what
// that layout says: a fresh, connected pair of unnamed UNIX stream sockets (a probe
// byte written into one comes out of the other). Anything else: left as it is.
void closeWakeupPair(mosquitto* m) {
    int major = 0, minor = 0, revision = 0;
    mosquitto_lib_version(&major, &minor, &revision);
    if (major != 2) return;
    int* fields = reinterpret_cast<int*>(m);
    const int r = fields[1], w = fields[2];
    if (fields[0] != mosquitto_socket(m) || r < 0 || w < 0 || r == w) return;
    if (!isUnnamedUnixStream(r) || !isUnnamedUnixStream(w)) return;
    char probe = 'b', got = 0;
    if (::recv(r, &got, 1, MSG_DONTWAIT | MSG_PEEK) != -1) return;  // not fresh
    if (::send(w, &probe, 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1) return;
    if (::recv(r, &got, 1, MSG_DONTWAIT) != 1 || got != probe) return;
    ::close(r);
    ::close(w);
    fields[1] = fields[2] = -1;  // INVALID_SOCKET
}

class MosquittoConnection final : public MqttConnection {
public:
    MosquittoConnection(EventLoop& loop, WorkerPool& pool, const MqttClientConfig& config, std::string clientId,
                        MqttConnectionEvents& events)
        : loop_(loop), pool_(pool), config_(config), clientId_(std::move(clientId)), events_(&events),
          v5_(config.protocolVersion == MqttVersion::kV5) {
        std::string host = config_.brokerAddress;
        if (host.find(':') != std::string::npos) host = "[" + host + "]";
        uri_ = std::string(config_.transport == MqttTransport::kTls ? "mqtts://" : "mqtt://") + host + ":" +
               std::to_string(config_.brokerPort);
    }

    ~MosquittoConnection() override {
        *alive_ = false;
        events_ = nullptr;
        resolveJob_.reset();
        diagnosis_.reset();
        watch_.reset();
        if (mosq_) mosquitto_destroy(mosq_);
    }

    Status init() {
        initLibrary();
        // A ClientID of "" asks an MQTT 5 broker to assign one (R-MQTT.9).
        mosq_ = mosquitto_new(clientId_.empty() ? nullptr : clientId_.c_str(), config_.cleanSession, this);
        if (!mosq_)
            return Error(ErrorCode::kInvalidConfiguration,
                         "cannot make an MQTT client for " + uri_ + ": " +
                             (errno == EINVAL ? std::string("a broker-assigned ClientID needs CleanSession true")
                                              : std::string(std::strerror(errno))),
                         "ClientID");
        closeWakeupPair(mosq_);
        mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, v5_ ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
        // See tcp_nodelay.h: without it every second small PUBLISH waits ~40 ms.
        mosquitto_int_option(mosq_, MOSQ_OPT_TCP_NODELAY, 1);
        // Published messages are bounded by publish() (maxUnsent*), not by libmosquitto.
        mosquitto_int_option(mosq_, MOSQ_OPT_SEND_MAXIMUM, 65535);
        if (!config_.username.empty() || !config_.password.empty()) {
            int rc = mosquitto_username_pw_set(mosq_, config_.username.c_str(),
                                               config_.password.empty() ? nullptr : config_.password.c_str());
            if (rc != MOSQ_ERR_SUCCESS)
                return Error(ErrorCode::kInvalidConfiguration, "Username: " + mosquittoError(rc), "Username");
        }
        mosquitto_connect_v5_callback_set(mosq_, &MosquittoConnection::onConnectCb);
        mosquitto_disconnect_v5_callback_set(mosq_, &MosquittoConnection::onDisconnectCb);
        mosquitto_message_v5_callback_set(mosq_, &MosquittoConnection::onMessageCb);
        mosquitto_subscribe_v5_callback_set(mosq_, &MosquittoConnection::onSubscribeCb);
        mosquitto_publish_v5_callback_set(mosq_, &MosquittoConnection::onPublishCb);
        mosquitto_log_callback_set(mosq_, &MosquittoConnection::onLogCb);
        if (v5_) {
            mosquitto_property* raw = nullptr;
            mosquitto_property_add_byte(&raw, MQTT_PROP_REQUEST_RESPONSE_INFORMATION, 1);
            if (!config_.endpointId.empty())
                mosquitto_property_add_string_pair(&raw, MQTT_PROP_USER_PROPERTY, "usp-endpoint-id",
                                                   config_.endpointId.c_str());
            Properties props(raw);
            // Stores the CONNECT properties (see the file comment); no host, so no connect.
            int rc = mosquitto_connect_bind_v5(mosq_, nullptr, config_.brokerPort, 60, nullptr, props.get());
            if (rc != MOSQ_ERR_INVAL)
                return Error(ErrorCode::kInvalidConfiguration,
                             uri_ + ": CONNECT properties refused by libmosquitto: " + mosquittoError(rc));
        }
        return {};
    }

    bool setsTcpNoDelay() const override { return true; }

    Status connect() override {
        if (config_.transport == MqttTransport::kTls) {
            // Checked again at every attempt: files may have changed since the config was applied.
            BERTH_TRY(mqtt_detail::checkTlsFiles(config_.tls));
            BERTH_TRY(setUpTls());
        }
        connectTimer_ = loop_.createTimer([this] {
            fail("no CONNACK within " + std::to_string(config_.connectTimeout.count()) + " s");
            afterCall();
        });
        connectTimer_->start(std::chrono::duration_cast<std::chrono::milliseconds>(config_.connectTimeout));
        if (isNumericAddress(config_.brokerAddress)) {
            auto st = connectTo(config_.brokerAddress);
            // A TLS connect that fails at once (libmosquitto may already have tried the
            // handshake on a loopback socket) is diagnosed like one that fails later.
            if (st || !tls()) return st;
            fail(st.error().message);
            return {};
        }
        // The connect below is non-blocking; getaddrinfo() is not, so it runs on the pool.
        resolveJob_ = pool_.submit<Result<std::string>>(
            [host = config_.brokerAddress](const CancelToken&) { return resolve(host); },
            [this](Result<std::string> address) {
                resolveJob_.reset();
                if (!address) {
                    fail(uri_ + ": " + address.error().message);
                } else if (auto st = connectTo(*address); !st) {
                    fail(st.error().message);
                }
                afterCall();
            });
        return {};
    }

    Status subscribe(const std::string& filter, int qos) override {
        int mid = 0;
        int rc = mosquitto_subscribe_v5(mosq_, &mid, filter.c_str(), qos, 0, nullptr);
        if (rc != MOSQ_ERR_SUCCESS) return Error(ErrorCode::kMessageFailed, "SUBSCRIBE " + filter + " failed: " + mosquittoError(rc));
        subscribing_[mid] = filter;
        afterCall();
        return {};
    }

    Status unsubscribe(const std::string& filter) override {
        int rc = mosquitto_unsubscribe(mosq_, nullptr, filter.c_str());
        if (rc != MOSQ_ERR_SUCCESS)
            return Error(ErrorCode::kMessageFailed, "UNSUBSCRIBE " + filter + " failed: " + mosquittoError(rc));
        afterCall();
        return {};
    }

    Status publish(const MqttMessage& m) override {
        if (unsentMessages_ >= config_.maxUnsentMessages || unsentBytes_ + m.payload.size() > config_.maxUnsentBytes)
            return Error(ErrorCode::kMessageFailed, "PUBLISH to " + m.topic + " refused: " +
                                                        std::to_string(unsentMessages_) + " messages (" +
                                                        std::to_string(unsentBytes_) +
                                                        " bytes) are still waiting to go out to the broker");
        Properties props;
        if (v5_) {
            mosquitto_property* raw = nullptr;
            if (!m.responseTopic.empty())
                mosquitto_property_add_string(&raw, MQTT_PROP_RESPONSE_TOPIC, m.responseTopic.c_str());
            if (!m.contentType.empty()) mosquitto_property_add_string(&raw, MQTT_PROP_CONTENT_TYPE, m.contentType.c_str());
            for (const auto& [k, v] : m.userProperties)
                mosquitto_property_add_string_pair(&raw, MQTT_PROP_USER_PROPERTY, k.c_str(), v.c_str());
            props.reset(raw);
        }
        int mid = 0;
        int rc = mosquitto_publish_v5(mosq_, &mid, m.topic.c_str(), static_cast<int>(m.payload.size()),
                                      m.payload.data(), m.qos, m.retain, props.get());
        if (rc != MOSQ_ERR_SUCCESS) {
            afterCall();
            return Error(ErrorCode::kMessageFailed, "PUBLISH to " + m.topic + " failed: " + mosquittoError(rc));
        }
        // Done when written (QoS 0) or acknowledged (QoS 1/2): onPublishCb. It may
        // have run already, inside mosquitto_publish_v5, for a QoS 0 message written
        // at once.
        if (!published_.erase(mid)) {
            unsent_[mid] = {m.topic, m.payload.size()};
            ++unsentMessages_;
            unsentBytes_ += m.payload.size();
        }
        afterCall();
        return {};
    }

    void disconnect(std::function<void()> done) override {
        events_ = nullptr;
        resolveJob_.reset();
        diagnosis_.reset();
        connectTimer_.reset();
        if (!mosq_ || mosquitto_socket(mosq_) < 0 || !connacked_ || gone_) {
            watch_.reset();
            watchedFd_ = -1;
            finishDisconnect(std::move(done));
            return;
        }
        disconnectDone_ = std::move(done);
        int rc = mosquitto_disconnect_v5(mosq_, MQTT_RC_NORMAL_DISCONNECTION, nullptr);
        if (rc != MOSQ_ERR_SUCCESS) {
            finishDisconnect(std::exchange(disconnectDone_, nullptr));
            return;
        }
        // Usually written (and the socket closed) at once; else when the socket
        // takes it, or given up after a second.
        afterCall();
        if (!disconnectDone_) return;
        if (mosquitto_socket(mosq_) < 0) {
            finishDisconnect(std::exchange(disconnectDone_, nullptr));
            return;
        }
        connectTimer_ = loop_.createTimer([this] { finishDisconnect(std::exchange(disconnectDone_, nullptr)); });
        connectTimer_->start(std::chrono::seconds(1));
    }

private:
    // ---- TLS ----

    // An SSL_CTX of ours, used by libmosquitto as it is (MOSQ_OPT_SSL_CTX without its
    // defaults): CA, client certificate and key, peer verification, and the name
    // check against BrokerAddress.
    Status setUpTls() {
        const auto& t = config_.tls;
        auto bad = [&](const std::string& what, const std::string& file) {
            return Error(ErrorCode::kInvalidConfiguration,
                         uri_ + ": " + what + " " + file + ": " + mqtt_detail::drainOpenSslErrors(), file);
        };
        ERR_clear_error();
        sslCtx_.reset(SSL_CTX_new(TLS_client_method()));
        if (!sslCtx_) return Error(ErrorCode::kInvalidConfiguration, uri_ + ": " + mqtt_detail::drainOpenSslErrors());
        SSL_CTX* ctx = sslCtx_.get();
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);  // less memory per idle connection
        if (t.caFile.empty() && t.caDir.empty()) {
            // Neither given: the system store, as OpenSSL knows it.
            if (SSL_CTX_set_default_verify_paths(ctx) != 1) return bad("cannot load the system CA store", "");
        } else if (SSL_CTX_load_verify_locations(ctx, t.caFile.empty() ? nullptr : t.caFile.c_str(),
                                                 t.caDir.empty() ? nullptr : t.caDir.c_str()) != 1) {
            return bad("cannot load TLS CA", t.caFile.empty() ? t.caDir : t.caFile);
        }
        if (!t.certFile.empty()) {
            SSL_CTX_set_default_passwd_cb(ctx, &MosquittoConnection::keyPasswordCb);
            SSL_CTX_set_default_passwd_cb_userdata(ctx, &config_.tls.keyPassword);
            const std::string& key = t.keyFile.empty() ? t.certFile : t.keyFile;
            if (SSL_CTX_use_certificate_chain_file(ctx, t.certFile.c_str()) != 1)
                return bad("cannot load TLS client certificate", t.certFile);
            if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1 ||
                SSL_CTX_check_private_key(ctx) != 1)
                return bad("cannot load TLS client key", key);
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
        if (t.verifyServerName) {
            X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx);
            if (isNumericAddress(config_.brokerAddress)) {
                X509_VERIFY_PARAM_set1_ip_asc(param, config_.brokerAddress.c_str());
            } else {
                X509_VERIFY_PARAM_set1_host(param, config_.brokerAddress.c_str(), 0);
            }
        }
        if (!isNumericAddress(config_.brokerAddress)) sniName_ = config_.brokerAddress;
        SSL_CTX_set_ex_data(ctx, sniIndex(), &sniName_);
        SSL_CTX_set_info_callback(ctx, &setSniAtHandshake);
        // libmosquitto's own name check would compare with the resolved address.
        int rc = mosquitto_int_option(mosq_, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
        if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_tls_insecure_set(mosq_, true);
        if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_void_option(mosq_, MOSQ_OPT_SSL_CTX, ctx);
        if (rc != MOSQ_ERR_SUCCESS)
            return Error(ErrorCode::kInvalidConfiguration, uri_ + ": TLS settings refused by libmosquitto: " +
                                                               mosquittoError(rc));
        return {};
    }

    static int keyPasswordCb(char* buf, int size, int /*rwflag*/, void* userdata) {
        const auto* pw = static_cast<const std::string*>(userdata);
        if (!pw || pw->empty() || size <= 0) return 0;
        int n = static_cast<int>(std::min<std::size_t>(pw->size(), static_cast<std::size_t>(size)));
        std::memcpy(buf, pw->data(), static_cast<std::size_t>(n));
        return n;
    }

    // ---- connecting and the socket ----

    Status connectTo(const std::string& address) {
        // libmosquitto refuses keep-alives of 1..4 s.
        long keepAlive = config_.keepAliveTime.count();
        if (keepAlive > 0 && keepAlive < 5) keepAlive = 5;
        errno = 0;
        int rc = mosquitto_connect_bind_async(mosq_, address.c_str(), config_.brokerPort, static_cast<int>(keepAlive),
                                              nullptr);
        if (rc != MOSQ_ERR_SUCCESS) {
            std::string why = uri_ + ": " + mosquittoError(rc);
            if (!lastLibError_.empty()) why += " (" + lastLibError_ + ")";
            return Error(ErrorCode::kMessageFailed, why);
        }
        if (keepAlive > 0) {
            // PINGREQ is due keepAlive s after the last packet out; checking every
            // quarter of that sends it at most 1.25 keepAlive late, within the
            // broker's 1.5 keepAlive.
            keepAliveTimer_ = loop_.createTimer([this] {
                if (mosq_) {
                    int misc = mosquitto_loop_misc(mosq_);
                    if (misc != MOSQ_ERR_SUCCESS && misc != MOSQ_ERR_NO_CONN) lost(mosquittoError(misc));
                }
                afterCall();
            });
            keepAliveTimer_->start(std::chrono::milliseconds(std::max<long>(1000, keepAlive * 250)), true);
        }
        afterCall();
        return {};
    }

    // Watches libmosquitto's socket (it changes when libmosquitto closes or reopens
    // it) with EPOLLOUT while it has something to write.
    void syncWatch() {
        // A connection that failed or was lost is left alone until it is destroyed: a
        // socket in error would otherwise keep the loop busy.
        int fd = mosq_ && (!gone_ || disconnectDone_) ? mosquitto_socket(mosq_) : -1;
        if (fd != watchedFd_) {
            watch_.reset();
            watchedFd_ = -1;
            if (fd < 0) return;
            const std::uint32_t events = EPOLLIN | (mosquitto_want_write(mosq_) ? std::uint32_t(EPOLLOUT) : 0u);
            auto w = loop_.watchFd(fd, events, [this](std::uint32_t ev) { onSocket(ev); });
            if (!w) {
                fail(uri_ + ": " + w.error().message);
                return;
            }
            watch_ = std::move(*w);
            watchedFd_ = fd;
            watchingWrite_ = events & EPOLLOUT;
            return;
        }
        if (fd < 0) return;
        const bool wantWrite = mosquitto_want_write(mosq_);
        if (wantWrite != watchingWrite_) {
            (void)watch_->setEvents(EPOLLIN | (wantWrite ? std::uint32_t(EPOLLOUT) : 0u));
            watchingWrite_ = wantWrite;
        }
    }

    void onSocket(std::uint32_t ev) {
        if (!connacked_ && (ev & (EPOLLERR | EPOLLHUP))) {
            // A refused or failed TCP connect; libmosquitto would keep trying a TLS
            // handshake on it.
            int err = 0;
            socklen_t len = sizeof err;
            if (::getsockopt(watchedFd_, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
                fail(uri_ + ": " + std::strerror(err));
                afterCall();
                return;
            }
        }
        // During a TLS handshake libmosquitto makes progress in loop_read, whichever
        // way the socket is ready.
        const bool handshaking = tls() && !connacked_;
        if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) || handshaking) {
            // One packet per call: read on while more is there (errno EAGAIN says
            // the socket is drained), a bounded number at a time.
            for (int i = 0; i < 64 && mosquitto_socket(mosq_) >= 0; ++i) {
                errno = 0;
                int rc = mosquitto_loop_read(mosq_, 1);
                if (rc != MOSQ_ERR_SUCCESS) {
                    lost(mosquittoError(rc));
                    break;
                }
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            }
        }
        if ((ev & EPOLLOUT) && mosq_ && mosquitto_socket(mosq_) >= 0) {
            int rc = mosquitto_loop_write(mosq_, 64);
            if (rc != MOSQ_ERR_SUCCESS) lost(mosquittoError(rc));
        }
        afterCall();
    }

    bool tls() const { return config_.transport == MqttTransport::kTls; }

    // ---- what happened, for the client ----

    using Event = std::function<void(MqttConnectionEvents&)>;

    // The connection failed before CONNACK (an attempt failure) or was lost after it.
    void lost(const std::string& why) {
        if (gone_) return;
        gone_ = true;
        connectTimer_.reset();
        keepAliveTimer_.reset();
        if (!connacked_) {
            fail(why);
            return;
        }
        pending_.push_back([why = uri_ + ": " + why](MqttConnectionEvents& ev) { ev.onConnectionLost(why); });
    }

    void fail(std::string why) {
        gone_ = true;
        connectTimer_.reset();
        keepAliveTimer_.reset();
        resolveJob_.reset();
        if (failReported_) return;
        failReported_ = true;
        if (why.rfind(uri_, 0) != 0) why = uri_ + ": " + why;
        if (!lastLibError_.empty() && why.find(lastLibError_) == std::string::npos) why += " (" + lastLibError_ + ")";
        if (tls() && events_) {
            // libmosquitto's reason (an OpenSSL error line) is terse; look for ourselves, on the pool.
            diagnosis_ = pool_.submit<std::string>(
                [config = config_](const CancelToken&) {
                    return mqtt_detail::diagnoseTlsFailure(config, std::chrono::seconds(5));
                },
                [this, why](std::string found) {
                    diagnosis_.reset();
                    pending_.push_back([why, found](MqttConnectionEvents& ev) {
                        ev.onConnectFailed(why + "; TLS: " + found);
                    });
                    afterCall();
                });
            return;
        }
        pending_.push_back([why](MqttConnectionEvents& ev) { ev.onConnectFailed(why); });
    }

    void finishDisconnect(std::function<void()> done) {
        connectTimer_.reset();
        keepAliveTimer_.reset();
        if (done) loop_.post(std::move(done));
    }

    // After every call into libmosquitto: the watch follows the socket, then the
    // events recorded meanwhile go out. Nothing here may touch members once an event
    // handler destroyed this connection (alive_).
    void afterCall() {
        syncWatch();
        if (!disconnectDone_ && events_ == nullptr) pending_.clear();
        if (delivering_) return;
        delivering_ = true;
        auto alive = alive_;
        while (!pending_.empty()) {
            auto batch = std::move(pending_);
            pending_.clear();
            for (auto& fn : batch) {
                if (!events_) break;
                fn(*events_);
                if (!*alive) return;
            }
        }
        delivering_ = false;
    }

    // ---- libmosquitto callbacks: record only ----

    static MosquittoConnection* self(void* userdata) { return static_cast<MosquittoConnection*>(userdata); }

    static void onConnectCb(mosquitto*, void* userdata, int rc, int /*flags*/, const mosquitto_property* props) {
        auto* s = self(userdata);
        if (rc != 0) {
            // CONNACK refused: 3.1.1 return codes 1-5, else a 5.0 reason code.
            std::string why = v5Reason(s->v5_, rc);
            s->fail(s->uri_ + ": refused: " + why);
            return;
        }
        s->connacked_ = true;
        s->connectTimer_.reset();
        MqttConnack ack;
        ack.version = s->v5_ ? MqttVersion::kV5 : MqttVersion::kV311;
        if (s->v5_ && props) {
            char* str = nullptr;
            if (mosquitto_property_read_string(props, MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER, &str, false) && str) {
                ack.assignedClientId = str;
                std::free(str);
                str = nullptr;
            }
            if (mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_INFORMATION, &str, false) && str) {
                ack.responseInformation = str;
                std::free(str);
                str = nullptr;
            }
            std::uint8_t b = 0;
            if (mosquitto_property_read_byte(props, MQTT_PROP_MAXIMUM_QOS, &b, false)) ack.maximumQos = b;
            if (mosquitto_property_read_byte(props, MQTT_PROP_RETAIN_AVAILABLE, &b, false)) ack.retainAvailable = b != 0;
            forEachUserProperty(props, [&](std::string k, std::string v) {
                if (k == "subscribe-topic") ack.subscribeTopics.push_back(std::move(v));
            });
        }
        s->pending_.push_back([ack](MqttConnectionEvents& ev) { ev.onConnected(ack); });
    }

    static std::string v5Reason(bool v5, int rc) {
        if (!v5 && rc > 0 && rc <= 5) return mosquitto_connack_string(rc);
        const char* r = mosquitto_reason_string(rc);
        return r ? r : "reason code " + std::to_string(rc);
    }

    static void onDisconnectCb(mosquitto*, void* userdata, int rc, const mosquitto_property*) {
        auto* s = self(userdata);
        if (s->disconnectDone_) {
            // Our DISCONNECT went out (or the connection ended meanwhile): done.
            auto done = std::exchange(s->disconnectDone_, nullptr);
            s->finishDisconnect(std::move(done));
            return;
        }
        const int err = errno;
        std::string why;
        if (rc >= 0x80) {
            why = "broker sent DISCONNECT: " + std::string(mosquitto_reason_string(rc));
        } else if (rc == MOSQ_ERR_ERRNO) {
            why = "connection lost: " + std::string(std::strerror(err));
        } else if (rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_SUCCESS) {
            why = "connection lost";
        } else {
            why = "connection lost: " + std::string(mosquitto_strerror(rc));
        }
        s->lost(why);
    }

    static void onMessageCb(mosquitto*, void* userdata, const mosquitto_message* m, const mosquitto_property* props) {
        auto* s = self(userdata);
        if (!m || !m->topic) return;
        MqttMessage msg;
        msg.topic = m->topic;
        if (m->payload && m->payloadlen > 0)
            msg.payload.assign(static_cast<const char*>(m->payload), static_cast<std::size_t>(m->payloadlen));
        msg.qos = m->qos;
        msg.retain = m->retain;
        if (props) {
            char* str = nullptr;
            if (mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &str, false) && str) {
                msg.responseTopic = str;
                std::free(str);
                str = nullptr;
            }
            if (mosquitto_property_read_string(props, MQTT_PROP_CONTENT_TYPE, &str, false) && str) {
                msg.contentType = str;
                std::free(str);
            }
            forEachUserProperty(props, [&](std::string k, std::string v) {
                msg.userProperties.emplace_back(std::move(k), std::move(v));
            });
        }
        s->pending_.push_back([msg = std::move(msg)](MqttConnectionEvents& ev) mutable { ev.onMessage(std::move(msg)); });
    }

    static void onSubscribeCb(mosquitto*, void* userdata, int mid, int count, const int* granted,
                              const mosquitto_property*) {
        auto* s = self(userdata);
        auto it = s->subscribing_.find(mid);
        if (it == s->subscribing_.end()) return;
        std::string filter = std::move(it->second);
        s->subscribing_.erase(it);
        bool ok = count > 0;
        std::string detail;
        for (int i = 0; i < count; ++i)
            if (granted[i] >= 0x80) {
                ok = false;
                const char* r = mosquitto_reason_string(granted[i]);
                detail = r ? r : "refused (" + std::to_string(granted[i]) + ")";
            }
        s->pending_.push_back(
            [filter, ok, detail](MqttConnectionEvents& ev) { ev.onSubscribeResult(filter, ok, detail); });
    }

    static void onPublishCb(mosquitto*, void* userdata, int mid, int reason, const mosquitto_property*) {
        auto* s = self(userdata);
        auto it = s->unsent_.find(mid);
        if (it == s->unsent_.end()) {
            // Written inside mosquitto_publish_v5 itself (QoS 0): publish() is told.
            s->published_.insert(mid);
            return;
        }
        std::string topic = std::move(it->second.first);
        --s->unsentMessages_;
        s->unsentBytes_ -= it->second.second;
        s->unsent_.erase(it);
        if (reason >= 0x80) {
            const char* r = mosquitto_reason_string(reason);
            std::string why = r ? r : "reason code " + std::to_string(reason);
            s->pending_.push_back([topic, why](MqttConnectionEvents& ev) { ev.onPublishFailed(topic, why); });
        }
    }

    static void onLogCb(mosquitto*, void* userdata, int level, const char* text) {
        if (!text) return;
        if (level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING)) {
            self(userdata)->lastLibError_ = text;
            BERTH_LOG_DEBUG(kTag) << "libmosquitto: " << text;
        }
    }

    template <typename Fn>
    static void forEachUserProperty(const mosquitto_property* props, Fn fn) {
        char* k = nullptr;
        char* v = nullptr;
        const mosquitto_property* p = mosquitto_property_read_string_pair(props, MQTT_PROP_USER_PROPERTY, &k, &v, false);
        while (p) {
            fn(std::string(k ? k : ""), std::string(v ? v : ""));
            std::free(k);
            std::free(v);
            k = v = nullptr;
            p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &k, &v, true);
        }
    }

    EventLoop& loop_;
    WorkerPool& pool_;
    MqttClientConfig config_;
    std::string clientId_;
    std::string uri_;
    MqttConnectionEvents* events_;  // null once disconnect() was called
    const bool v5_;
    mosquitto* mosq_ = nullptr;
    std::unique_ptr<SSL_CTX, CtxFree> sslCtx_;
    std::string sniName_;
    std::unique_ptr<FdWatch> watch_;
    int watchedFd_ = -1;
    bool watchingWrite_ = false;
    std::unique_ptr<Timer> connectTimer_;  // connect timeout; later the DISCONNECT bound
    std::unique_ptr<Timer> keepAliveTimer_;
    std::unique_ptr<Job> resolveJob_;
    std::unique_ptr<Job> diagnosis_;
    bool connacked_ = false;
    bool gone_ = false;
    bool failReported_ = false;
    std::string lastLibError_;
    std::unordered_map<int, std::string> subscribing_;  // SUBSCRIBE mid -> filter
    // Published and not yet written (QoS 0) or acknowledged: mid -> (topic, bytes).
    std::unordered_map<int, std::pair<std::string, std::size_t>> unsent_;
    std::unordered_set<int> published_;
    std::size_t unsentMessages_ = 0;
    std::size_t unsentBytes_ = 0;
    std::function<void()> disconnectDone_;
    std::vector<Event> pending_;
    bool delivering_ = false;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace

MqttConnectionFactory mosquittoMqttConnectionFactory(WorkerPool& pool) {
    return [&pool](EventLoop& loop, const MqttClientConfig& config, const std::string& clientId,
                   MqttConnectionEvents& events) -> Result<std::unique_ptr<MqttConnection>> {
        auto conn = std::make_unique<MosquittoConnection>(loop, pool, config, clientId, events);
        BERTH_TRY(conn->init());
        return std::unique_ptr<MqttConnection>(std::move(conn));
    };
}

}  // namespace berth::transports
