// WebSocketClient and WebSocketServer: the loop-thread state machines on top of an
// LwsEngine (which owns the libwebsockets context and its service thread). The
// client's life cycle (start, stop, retry waits) is the shared Reconnector; its engine
// is not retired but destroyed at once when a session is given up: the destructor
// joins the service thread, after which nothing it posted is delivered, and stop()
// promises the thread is gone when it returns.
#include <map>

#include "../reconnector.h"
#include "berth/core/log.h"
#include "berth/transports/websocket.h"
#include "lws_engine.h"

namespace berth::transports {
namespace {

constexpr std::string_view kTag = "websocket";
constexpr std::chrono::seconds kWatchdogSlack{2};

using detail::formatSeconds;

RetrySchedule retrySchedule(const WebSocketClientConfig& c) {
    RetrySchedule schedule;
    schedule.minWait = c.sessionRetryMinimumWaitInterval;
    schedule.multiplier = c.sessionRetryIntervalMultiplier;
    return schedule;
}

}  // namespace

// ------------------------------------------------------------------ client

class WebSocketClient::Impl final : public ws_detail::EngineEvents {
public:
    Impl(WebSocketClient& owner, EventLoop& loop, WebSocketClientConfig config)
        : owner_(owner), loop_(loop), config_(std::move(config)),
          life_(loop, [this] { dial(); }, [this](MtpStatus s, const std::string& d) { owner_.reportStatus(s, d); }) {
        life_.setSchedule(retrySchedule(config_));
        pingTimer_ = loop_.createTimer([this] {
            if (engine_ && open_) engine_->pingAll();
        });
        // A backstop for upgrades libwebsockets neither completes nor reports.
        watchdog_ = loop_.createTimer([this] {
            teardown(WsCloseCode::kGoingAway, "no session");
            scheduleRetry("no session within " + formatSeconds(config_.connectTimeout + kWatchdogSlack));
        });
    }

    ~Impl() { teardown(WsCloseCode::kGoingAway, "agent stopping"); }

    Status start() {
        life_.start();
        return {};
    }

    void stop() {
        if (!life_.running()) return;
        life_.cancelRetry();
        teardown(WsCloseCode::kNormal, "agent stopping");
        life_.stop();
    }

    Status send(OutboundRecord record) {
        if (!open_ || !engine_)
            return Error(ErrorCode::kMessageFailed, "WebSocket session with " + url() + " is not up (" +
                                                        std::string(mtpStatusName(status())) + ")");
        if (!record.destination.empty() && record.destination != kSessionKey)
            return Error(ErrorCode::kMessageFailed, "unknown WebSocket session '" + record.destination + "'");
        if (record.payload.size() > config_.maxRecordSize)
            return Error(ErrorCode::kMessageFailed, "record of " + std::to_string(record.payload.size()) +
                                                        " bytes exceeds " + std::to_string(config_.maxRecordSize));
        if (!engine_->send(std::string(kSessionKey), std::move(record.payload)))
            return Error(ErrorCode::kMessageFailed, "WebSocket session with " + url() + " has too much unsent data");
        ++recordsSent_;
        return {};
    }

    void reset() {
        if (!life_.running()) return;
        teardown(WsCloseCode::kNormal, "session reset");
        life_.resetRetries();
        life_.connectNow();
    }

    Status closeSession(WsCloseCode code, const std::string& reason) {
        if (!open_ || !engine_) return Error(ErrorCode::kMessageFailed, "no WebSocket session is open");
        engine_->close(std::string(kSessionKey), static_cast<int>(code), reason);
        return {};
    }

    Status applyConfig(WebSocketClientConfig config) {
        BERTH_TRY(validateWebSocketClientConfig(config));
        config_ = std::move(config);
        life_.setSchedule(retrySchedule(config_));
        if (life_.running()) {
            teardown(WsCloseCode::kNormal, "configuration changed");
            life_.resetRetries();
            life_.connectNow();
        }
        return {};
    }

    WebSocketClientFigures figures() const {
        WebSocketClientFigures f;
        f.status = status();
        f.statusDetail = life_.detail();
        f.currentRetryCount = life_.retryCount();
        f.nextRetryDelay = life_.pendingRetryDelay();
        f.connectAttempts = connectAttempts_;
        f.recordsSent = recordsSent_;
        f.recordsReceived = recordsReceived_;
        f.pingsSent = pingsSent_;
        f.pongsReceived = pongsReceived_;
        f.lastCloseCode = lastCloseCode_;
        return f;
    }

    const WebSocketClientConfig& config() const { return config_; }
    MtpStatus status() const { return life_.status(); }
    std::string agentAddress() const { return status() == MtpStatus::kUp ? url() : std::string(); }

    // ---- engine events (loop thread) ----

    void onSessionOpen(const std::string&, const std::string&, const std::string&) override {
        open_ = true;
        life_.succeeded();
        watchdog_->cancel();
        if (config_.keepAliveInterval.count() > 0) pingTimer_->start(config_.keepAliveInterval, true);
        BERTH_LOG_INFO(kTag) << url() << ": session up";
        setStatus(MtpStatus::kUp, url());
    }

    void onSessionClosed(const std::string&, int code, const std::string& reason) override {
        open_ = false;
        lastCloseCode_ = code;
        pingTimer_->cancel();
        scheduleRetry("session closed (" + std::to_string(code) + ", " + reason + ")");
    }

    void onConnectFailed(const std::string& reason) override {
        watchdog_->cancel();
        scheduleRetry("cannot open a session: " + reason);
    }

    void onMessage(const std::string& key, std::string payload) override {
        ++recordsReceived_;
        owner_.deliver(InboundRecord{std::move(payload), key, config_.peerEndpointId});
    }

    void onPingSent() override { ++pingsSent_; }
    void onPong() override { ++pongsReceived_; }
    void onRefused(const std::string&) override {}

private:
    std::string url() const {
        std::string host = config_.host.find(':') != std::string::npos ? "[" + config_.host + "]" : config_.host;
        std::string path = config_.path.empty() || config_.path[0] != '/' ? "/" + config_.path : config_.path;
        return std::string(config_.enableEncryption ? "wss://" : "ws://") + host + ":" + std::to_string(config_.port) +
               path;
    }

    void setStatus(MtpStatus s, const std::string& detail) { life_.setStatus(s, detail); }

    void teardown(WsCloseCode code, const std::string& reason) {
        pingTimer_->cancel();
        watchdog_->cancel();
        open_ = false;
        if (engine_) {
            engine_->close("", static_cast<int>(code), reason);
            engine_.reset();
        }
    }

    // The Reconnector's attempt.
    void dial() {
        if (!engine_) {
            ws_detail::EngineConfig ec;
            ec.server = false;
            ec.tls = config_.enableEncryption;
            ec.tlsFiles = config_.tls;
            ec.maxRecordSize = config_.maxRecordSize;
            ec.host = config_.host;
            ec.port = config_.port;
            ec.requestUri = clientRequestUri(config_.path, config_.endpointId);
            ec.connectTimeoutSecs = static_cast<unsigned>(config_.connectTimeout.count());
            auto e = ws_detail::LwsEngine::create(loop_, std::move(ec), *this);
            if (!e) {
                ++connectAttempts_;
                scheduleRetry(e.error().message);
                return;
            }
            engine_ = std::move(*e);
        }
        ++connectAttempts_;
        setStatus(MtpStatus::kConnecting, "dialling " + url());
        watchdog_->start(config_.connectTimeout + kWatchdogSlack);
        engine_->connect();
    }

    void scheduleRetry(const std::string& reason) {
        if (!life_.running()) return;
        const auto wait = life_.scheduleRetry();
        BERTH_LOG_WARN(kTag) << url() << ": " << reason << "; retry " << life_.retryCount() << " in "
                             << formatSeconds(wait);
        setStatus(MtpStatus::kError, reason + "; retry in " + formatSeconds(wait));
    }

    WebSocketClient& owner_;
    EventLoop& loop_;
    WebSocketClientConfig config_;
    detail::Reconnector life_;
    std::unique_ptr<Timer> pingTimer_;
    std::unique_ptr<Timer> watchdog_;
    std::unique_ptr<ws_detail::LwsEngine> engine_;
    bool open_ = false;
    std::uint64_t connectAttempts_ = 0;
    std::uint64_t recordsSent_ = 0;
    std::uint64_t recordsReceived_ = 0;
    std::uint64_t pingsSent_ = 0;
    std::uint64_t pongsReceived_ = 0;
    int lastCloseCode_ = 0;
};

Result<std::unique_ptr<WebSocketClient>> WebSocketClient::create(EventLoop& loop, WebSocketClientConfig config) {
    BERTH_TRY(validateWebSocketClientConfig(config));
    std::unique_ptr<WebSocketClient> c(new WebSocketClient());
    c->impl_ = std::make_unique<Impl>(*c, loop, std::move(config));
    return c;
}

WebSocketClient::~WebSocketClient() = default;
Status WebSocketClient::start() { return impl_->start(); }
void WebSocketClient::stop() { impl_->stop(); }
Status WebSocketClient::send(OutboundRecord record) { return impl_->send(std::move(record)); }
MtpStatus WebSocketClient::status() const { return impl_->status(); }
std::string WebSocketClient::agentAddress() const { return impl_->agentAddress(); }
void WebSocketClient::reset() { impl_->reset(); }
Status WebSocketClient::closeSession(WsCloseCode code, const std::string& reason) {
    return impl_->closeSession(code, reason);
}
Status WebSocketClient::applyConfig(WebSocketClientConfig config) { return impl_->applyConfig(std::move(config)); }
const WebSocketClientConfig& WebSocketClient::config() const { return impl_->config(); }
WebSocketClientFigures WebSocketClient::figures() const { return impl_->figures(); }

// ------------------------------------------------------------------ server

class WebSocketServer::Impl final : public ws_detail::EngineEvents {
public:
    Impl(WebSocketServer& owner, EventLoop& loop, WebSocketServerConfig config)
        : owner_(owner), loop_(loop), config_(std::move(config)) {
        pingTimer_ = loop_.createTimer([this] {
            if (engine_ && !sessions_.empty()) engine_->pingAll();
        });
    }

    ~Impl() {
        running_ = false;
        teardown();
    }

    Status start() {
        if (running_) return {};
        ws_detail::EngineConfig ec;
        ec.server = true;
        ec.tls = config_.enableEncryption;
        ec.tlsFiles = config_.tls;
        ec.maxRecordSize = config_.maxRecordSize;
        ec.bindAddress = config_.bindAddress;
        ec.listenPort = config_.port;
        ec.path = config_.path;
        ec.maxSessions = config_.maxSessions;
        auto e = ws_detail::LwsEngine::create(loop_, std::move(ec), *this);
        if (!e) {
            status_ = MtpStatus::kError;
            detail_ = e.error().message;
            return std::move(e).error();
        }
        engine_ = std::move(*e);
        running_ = true;
        if (config_.keepAliveInterval.count() > 0) pingTimer_->start(config_.keepAliveInterval, true);
        BERTH_LOG_INFO(kTag) << "listening on " << address();
        setStatus(MtpStatus::kUp, address());
        return {};
    }

    void stop() {
        if (!running_) return;
        teardown();
        setStatus(MtpStatus::kDown, "stopped");
        running_ = false;
    }

    Status send(OutboundRecord record) {
        if (!engine_) return Error(ErrorCode::kMessageFailed, "WebSocket server is not running");
        if (sessions_.find(record.destination) == sessions_.end())
            return Error(ErrorCode::kMessageFailed, "no open WebSocket session '" + record.destination + "'");
        if (record.payload.size() > config_.maxRecordSize)
            return Error(ErrorCode::kMessageFailed, "record of " + std::to_string(record.payload.size()) +
                                                        " bytes exceeds " + std::to_string(config_.maxRecordSize));
        if (!engine_->send(record.destination, std::move(record.payload)))
            return Error(ErrorCode::kMessageFailed,
                         "WebSocket session '" + record.destination + "' has too much unsent data");
        ++recordsSent_;
        return {};
    }

    std::string sessionForPeer(const std::string& peerId) const {
        for (const auto& [key, info] : sessions_)
            if (info.peerId == peerId) return key;
        return {};
    }

    Status closeSession(const std::string& key, WsCloseCode code, const std::string& reason) {
        if (!engine_ || key.empty() || sessions_.find(key) == sessions_.end())
            return Error(ErrorCode::kMessageFailed, "no open WebSocket session '" + key + "'");
        engine_->close(key, static_cast<int>(code), reason);
        return {};
    }

    int boundPort() const { return engine_ ? engine_->boundPort() : 0; }

    Status applyConfig(WebSocketServerConfig config) {
        BERTH_TRY(validateWebSocketServerConfig(config));
        config_ = std::move(config);
        if (!running_) return {};
        teardown();
        running_ = false;
        return start();
    }

    const WebSocketServerConfig& config() const { return config_; }
    MtpStatus status() const { return status_; }
    std::string agentAddress() const { return status_ == MtpStatus::kUp ? address() : std::string(); }

    WebSocketServerFigures figures() const {
        WebSocketServerFigures f;
        f.status = status_;
        f.statusDetail = detail_;
        f.boundPort = boundPort();
        for (const auto& [key, info] : sessions_) f.sessions.push_back(info);
        f.sessionsAccepted = sessionsAccepted_;
        f.upgradesRefused = upgradesRefused_;
        f.sessionsReplaced = sessionsReplaced_;
        f.recordsSent = recordsSent_;
        f.recordsReceived = recordsReceived_;
        f.pingsSent = pingsSent_;
        f.pongsReceived = pongsReceived_;
        return f;
    }

    // ---- engine events (loop thread) ----

    void onSessionOpen(const std::string& key, const std::string& peerId, const std::string& remote) override {
        WebSocketSessionInfo info{key, peerId, remote};
        sessions_[key] = info;
        ++sessionsAccepted_;
        BERTH_LOG_INFO(kTag) << "session " << key << " from " << remote << " (eid '" << peerId << "')";
        if (owner_.sessionHandler_) owner_.sessionHandler_(info, true, 0);
    }

    void onSessionClosed(const std::string& key, int code, const std::string& reason) override {
        auto it = sessions_.find(key);
        if (it == sessions_.end()) return;
        WebSocketSessionInfo info = it->second;
        sessions_.erase(it);
        BERTH_LOG_INFO(kTag) << "session " << key << " closed (" << code << ", " << reason << ")";
        if (owner_.sessionHandler_) owner_.sessionHandler_(info, false, code);
    }

    void onConnectFailed(const std::string&) override {}

    void onMessage(const std::string& key, std::string payload) override {
        auto it = sessions_.find(key);
        if (it == sessions_.end()) return;
        ++recordsReceived_;
        owner_.deliver(InboundRecord{std::move(payload), key, it->second.peerId});
    }

    void onPingSent() override { ++pingsSent_; }
    void onPong() override { ++pongsReceived_; }
    void onRefused(const std::string& reason) override {
        ++upgradesRefused_;
        BERTH_LOG_WARN(kTag) << "refused " << reason;
    }
    void onReplaced() override { ++sessionsReplaced_; }

private:
    std::string address() const {
        const std::string host = config_.bindAddress.empty() ? "0.0.0.0" : config_.bindAddress;
        return std::string(config_.enableEncryption ? "wss://" : "ws://") + host + ":" + std::to_string(boundPort()) +
               config_.path;
    }

    void setStatus(MtpStatus s, const std::string& detail) {
        const bool changed = s != status_;
        status_ = s;
        detail_ = detail;
        if (changed) owner_.reportStatus(s, detail);
    }

    void teardown() {
        pingTimer_->cancel();
        if (engine_) {
            engine_->close("", static_cast<int>(WsCloseCode::kGoingAway), "agent stopping");
            engine_.reset();
        }
        sessions_.clear();
    }

    WebSocketServer& owner_;
    EventLoop& loop_;
    WebSocketServerConfig config_;
    std::unique_ptr<Timer> pingTimer_;
    std::unique_ptr<ws_detail::LwsEngine> engine_;
    std::map<std::string, WebSocketSessionInfo> sessions_;
    bool running_ = false;
    MtpStatus status_ = MtpStatus::kDown;
    std::string detail_;
    std::uint64_t sessionsAccepted_ = 0;
    std::uint64_t upgradesRefused_ = 0;
    std::uint64_t sessionsReplaced_ = 0;
    std::uint64_t recordsSent_ = 0;
    std::uint64_t recordsReceived_ = 0;
    std::uint64_t pingsSent_ = 0;
    std::uint64_t pongsReceived_ = 0;
};

Result<std::unique_ptr<WebSocketServer>> WebSocketServer::create(EventLoop& loop, WebSocketServerConfig config) {
    BERTH_TRY(validateWebSocketServerConfig(config));
    std::unique_ptr<WebSocketServer> s(new WebSocketServer());
    s->impl_ = std::make_unique<Impl>(*s, loop, std::move(config));
    return s;
}

WebSocketServer::~WebSocketServer() = default;
Status WebSocketServer::start() { return impl_->start(); }
void WebSocketServer::stop() { impl_->stop(); }
Status WebSocketServer::send(OutboundRecord record) { return impl_->send(std::move(record)); }
MtpStatus WebSocketServer::status() const { return impl_->status(); }
std::string WebSocketServer::agentAddress() const { return impl_->agentAddress(); }
std::string WebSocketServer::sessionForPeer(const std::string& peerId) const { return impl_->sessionForPeer(peerId); }
Status WebSocketServer::closeSession(const std::string& key, WsCloseCode code, const std::string& reason) {
    return impl_->closeSession(key, code, reason);
}
int WebSocketServer::boundPort() const { return impl_->boundPort(); }
Status WebSocketServer::applyConfig(WebSocketServerConfig config) { return impl_->applyConfig(std::move(config)); }
const WebSocketServerConfig& WebSocketServer::config() const { return impl_->config(); }
WebSocketServerFigures WebSocketServer::figures() const { return impl_->figures(); }

}  // namespace berth::transports
