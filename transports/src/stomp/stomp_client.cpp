// StompClient: the TR-369 STOMP binding's state machine on top of a StompStream.
//
// One stream at a time; the life cycle (start, stop, retry waits, retired streams) is
// the shared Reconnector. Each stream reports to its own gate; a stream that is given
// up has its gate shut, so whatever it still reads or reports goes nowhere, and is
// retired to be destroyed on the next loop turn, never inside one of its own callbacks.
#include "../reconnector.h"
#include "berth/core/log.h"
#include "berth/transports/stomp.h"

namespace berth::transports {
namespace {

constexpr std::string_view kTag = "stomp";
constexpr std::string_view kContentType = "application/vnd.bbf.usp.msg";

using detail::formatSeconds;

RetrySchedule retrySchedule(const StompConfig& c) {
    RetrySchedule schedule;
    schedule.kind = RetrySchedule::Kind::kStomp;
    schedule.minWait = c.serverRetryInitialInterval;
    schedule.multiplier = c.serverRetryIntervalMultiplier;
    schedule.maxWait = c.serverRetryMaxInterval;
    return schedule;
}

bool sameConnectionSettings(const StompConfig& a, const StompConfig& b) {
    return a.host == b.host && a.port == b.port && a.username == b.username && a.password == b.password &&
           a.virtualHost == b.virtualHost && a.enableEncryption == b.enableEncryption &&
           a.tls.caFile == b.tls.caFile && a.tls.certFile == b.tls.certFile && a.tls.keyFile == b.tls.keyFile &&
           a.tls.verifyServerName == b.tls.verifyServerName && a.tls.serverName == b.tls.serverName &&
           a.enableHeartbeats == b.enableHeartbeats && a.outgoingHeartbeat == b.outgoingHeartbeat &&
           a.incomingHeartbeat == b.incomingHeartbeat && a.endpointId == b.endpointId &&
           a.connectTimeout == b.connectTimeout && a.heartbeatGrace == b.heartbeatGrace &&
           a.maxFrameSize == b.maxFrameSize && a.maxWriteBuffer == b.maxWriteBuffer;
}

}  // namespace

class StompClient::Impl final {
public:
    Impl(StompClient& owner, EventLoop& loop, StompConfig config, StompStreamFactory factory,
         std::unique_ptr<WorkerPool> ownPool)
        : ownPool_(std::move(ownPool)), owner_(owner), loop_(loop), config_(std::move(config)),
          factory_(std::move(factory)),
          life_(loop, [this] { openStream(); },
                [this](MtpStatus s, const std::string& d) { owner_.reportStatus(s, d); }) {
        life_.setSchedule(retrySchedule(config_));
        connectTimer_ = loop_.createTimer(
            [this] { failConnection("no answer from the server within " + formatSeconds(config_.connectTimeout)); });
        sendBeatTimer_ = loop_.createTimer([this] { sendHeartbeat(); });
        rxTimer_ = loop_.createTimer([this] { onSilence(); });
    }

    ~Impl() {
        stream_.reset();
        gate_.reset();
    }

    // ---- Mtp ----

    Status start() {
        life_.start();
        return {};
    }

    void stop() {
        if (!life_.running()) return;
        life_.cancelRetry();
        if (stream_ && connected_) {
            if (!subscriptionId_.empty()) {
                StompFrame unsub{"UNSUBSCRIBE", {{"id", subscriptionId_}}, {}};
                (void)stream_->write(serializeStompFrame(unsub));
            }
            (void)stream_->write(serializeStompFrame(StompFrame{"DISCONNECT", {}, {}}));
        }
        dropStream();
        life_.stop();
    }

    Status send(OutboundRecord record) {
        if (status() != MtpStatus::kUp || !stream_)
            return Error(ErrorCode::kMessageFailed, "STOMP connection to " + serverName() + " is not up (" +
                                                        std::string(mtpStatusName(status())) + ")");
        if (record.destination.empty()) return Error(ErrorCode::kMessageFailed, "empty STOMP destination");
        StompFrame f;
        f.command = "SEND";
        f.add("destination", record.destination);
        f.add("content-type", std::string(kContentType));
        f.add("content-length", std::to_string(record.payload.size()));
        f.add("reply-to-dest", destination_);
        f.body = std::move(record.payload);
        auto st = stream_->write(serializeStompFrame(f));
        if (!st) return Error(ErrorCode::kMessageFailed, st.error().message);
        ++recordsSent_;
        return {};
    }

    // ---- configuration ----

    Status applyConfig(StompConfig config) {
        BERTH_TRY(validateStompConfig(config));
        const bool reconnect = !sameConnectionSettings(config_, config);
        const bool destinationChanged = config.destination != config_.destination;
        config_ = std::move(config);
        life_.setSchedule(retrySchedule(config_));
        if (!life_.running()) return {};
        if (reconnect || !stream_ || !connected_) {
            BERTH_LOG_INFO(kTag) << serverName() << ": configuration changed, connecting again";
            life_.resetRetries();
            life_.connectNow();
            return {};
        }
        if (!destinationChanged || !destinationFromServer_.empty()) return {};
        if (config_.destination.empty()) {
            failConnection("no destination: the server named none and Destination is empty");
            return {};
        }
        // R-STOMP.29: move the subscription without reconnecting.
        BERTH_LOG_INFO(kTag) << serverName() << ": destination changed to " << config_.destination;
        if (!subscriptionId_.empty()) {
            StompFrame unsub{"UNSUBSCRIBE", {{"id", subscriptionId_}}, {}};
            (void)stream_->write(serializeStompFrame(unsub));
        }
        subscribe(config_.destination);
        return {};
    }

    StompClientFigures figures() const {
        StompClientFigures f;
        f.status = status();
        f.statusDetail = life_.detail();
        f.destinationFromServer = destinationFromServer_;
        f.destinationInUse = connected_ ? destination_ : std::string();
        f.serverName = serverHeader_;
        f.heartbeat = heartbeat_;
        f.retryCount = life_.retryCount();
        f.nextRetryDelay = life_.pendingRetryDelay();
        f.connectAttempts = connectAttempts_;
        f.recordsSent = recordsSent_;
        f.recordsReceived = recordsReceived_;
        f.errorFrames = errorFrames_;
        f.protocolErrors = protocolErrors_;
        f.heartbeatTimeouts = heartbeatTimeouts_;
        f.heartbeatsSent = heartbeatsSent_;
        return f;
    }

    // ---- stream events (loop thread, through the current stream's gate) ----

    void onStreamConnected() {
        StompFrame f;
        f.command = "STOMP";
        f.add("accept-version", "1.2");
        f.add("host", config_.virtualHost.empty() ? config_.host : config_.virtualHost);
        if (!config_.username.empty()) {
            f.add("login", config_.username);
            f.add("passcode", config_.password);
        }
        if (!config_.endpointId.empty()) f.add("endpoint-id", stompEndpointIdHeader(config_.endpointId));
        if (config_.enableHeartbeats)
            f.add("heart-beat", std::to_string(config_.outgoingHeartbeat.count()) + "," +
                                     std::to_string(config_.incomingHeartbeat.count()));
        else
            f.add("heart-beat", "0,0");
        (void)stream_->write(serializeStompFrame(f));
    }

    void onStreamData(std::string_view bytes) {
        if (!stream_) return;
        if (heartbeat_.expect.count() > 0) rxTimer_->start(heartbeat_.expect + config_.heartbeatGrace);
        if (!parser_.feed(bytes)) {
            ++protocolErrors_;
            failConnection("malformed frame from the server: " + parser_.error());
            return;
        }
        while (auto frame = parser_.next()) {
            handleFrame(*frame);
            if (!stream_) return;  // the frame ended the connection
        }
    }

    void onStreamClosed(const std::string& reason) { failConnection(reason); }

    void seed(std::uint64_t s) { life_.seed(s); }
    const StompConfig& config() const { return config_; }
    MtpStatus status() const { return life_.status(); }
    std::string agentAddress() const { return status() == MtpStatus::kUp ? upDestination_ : std::string(); }

private:
    // What one stream reports to. Shut (impl = nullptr) when the stream is given up.
    struct Gate final : StompStreamEvents {
        explicit Gate(Impl* i) : impl(i) {}
        void onStreamConnected() override {
            if (impl) impl->onStreamConnected();
        }
        void onStreamData(std::string_view bytes) override {
            if (impl) impl->onStreamData(bytes);
        }
        void onStreamClosed(const std::string& reason) override {
            if (impl) impl->onStreamClosed(reason);
        }
        Impl* impl;
    };
    // A retired stream with the gate it reports to; the stream goes first.
    struct RetiredStream {
        std::unique_ptr<Gate> gate;
        std::unique_ptr<StompStream> stream;
        ~RetiredStream() { stream.reset(); }
    };

    std::string serverName() const { return config_.host + ":" + std::to_string(config_.port); }

    void setStatus(MtpStatus s, const std::string& detail) { life_.setStatus(s, detail); }

    // The Reconnector's attempt: a new stream in place of the current one.
    void openStream() {
        dropStream();
        ++connectAttempts_;
        parser_ = StompFrameParser(StompParserLimits{config_.maxFrameSize, 128, 8 * 1024});
        BERTH_LOG_DEBUG(kTag) << "connecting to " << serverName() << (config_.enableEncryption ? " (TLS)" : "");
        setStatus(MtpStatus::kConnecting, "connecting to " + serverName());
        gate_ = std::make_unique<Gate>(this);
        auto s = factory_(loop_, config_, *gate_);
        if (!s) {
            failConnection(s.error().message);
            return;
        }
        stream_ = std::move(*s);
        connectTimer_->start(config_.connectTimeout);
    }

    void handleFrame(const StompFrame& f) {
        if (f.command == "CONNECTED") {
            onConnectedFrame(f);
        } else if (f.command == "RECEIPT") {
            if (f.header("receipt-id") == pendingReceipt_ && !pendingReceipt_.empty()) {
                pendingReceipt_.clear();
                connectTimer_->cancel();
                life_.succeeded();
                upDestination_ = destination_;
                BERTH_LOG_INFO(kTag) << serverName() << ": up, subscribed to " << destination_;
                setStatus(MtpStatus::kUp, destination_);
            }
        } else if (f.command == "MESSAGE") {
            if (!connected_) return;
            ++recordsReceived_;
            InboundRecord r;
            r.payload = f.body;
            r.replyTo = f.header("reply-to-dest").value_or(std::string());
            owner_.deliver(std::move(r));
        } else if (f.command == "ERROR") {
            ++errorFrames_;
            std::string why = f.header("message").value_or(std::string());
            if (why.empty()) why = f.body.substr(0, 200);
            failConnection("ERROR frame from the server: " + why);
        } else {
            BERTH_LOG_DEBUG(kTag) << serverName() << ": ignoring " << f.command << " frame";
        }
    }

    void onConnectedFrame(const StompFrame& f) {
        if (connected_) return;
        if (auto v = f.header("version"); v && *v != "1.2") {
            failConnection("server speaks STOMP " + *v + ", not 1.2");
            return;
        }
        connected_ = true;
        serverHeader_ = f.header("server").value_or(std::string());
        heartbeat_ = config_.enableHeartbeats
                         ? negotiateStompHeartbeat(config_.outgoingHeartbeat, config_.incomingHeartbeat,
                                                   f.header("heart-beat").value_or(std::string()))
                         : StompHeartbeat{};
        if (heartbeat_.send.count() > 0) sendBeatTimer_->start(heartbeat_.send);
        if (heartbeat_.expect.count() > 0) rxTimer_->start(heartbeat_.expect + config_.heartbeatGrace);
        destinationFromServer_ = f.header("subscribe-dest").value_or(std::string());
        const std::string dest = destinationFromServer_.empty() ? config_.destination : destinationFromServer_;
        if (dest.empty()) {
            // R-STOMP.16: nothing to subscribe to.
            (void)stream_->write(serializeStompFrame(StompFrame{"DISCONNECT", {}, {}}));
            failConnection("no destination: the server named none and Destination is empty");
            return;
        }
        subscribe(dest);
    }

    void subscribe(const std::string& dest) {
        destination_ = dest;
        subscriptionId_ = "berth-" + std::to_string(++subscriptionCounter_);
        pendingReceipt_ = "sub-" + std::to_string(subscriptionCounter_);
        StompFrame sub;
        sub.command = "SUBSCRIBE";
        sub.add("id", subscriptionId_);
        sub.add("destination", dest);
        sub.add("ack", "auto");
        sub.add("receipt", pendingReceipt_);
        (void)stream_->write(serializeStompFrame(sub));
        if (status() != MtpStatus::kUp) connectTimer_->start(config_.connectTimeout);
    }

    void sendHeartbeat() {
        if (!stream_ || !connected_) return;
        // Re-armed one-shot each time rather than periodic, so a beat is never skipped.
        sendBeatTimer_->start(heartbeat_.send);
        // Only when idle: a frame already queued proves we are alive.
        if (stream_->pendingBytes() > 0) return;
        if (stream_->write("\n")) ++heartbeatsSent_;
    }

    void onSilence() {
        if (!stream_ || !connected_) return;
        ++heartbeatTimeouts_;
        failConnection("no data from the server for " + formatSeconds(heartbeat_.expect + config_.heartbeatGrace) +
                       " (heart-beat expected every " + formatSeconds(heartbeat_.expect) + ")");
    }

    void dropStream() {
        connectTimer_->cancel();
        sendBeatTimer_->cancel();
        rxTimer_->cancel();
        connected_ = false;
        pendingReceipt_.clear();
        subscriptionId_.clear();
        heartbeat_ = {};
        if (gate_) gate_->impl = nullptr;
        if (stream_) {
            auto retired = std::make_unique<RetiredStream>();
            retired->gate = std::move(gate_);
            retired->stream = std::move(stream_);
            life_.retire(std::move(retired));
        }
        gate_.reset();
    }

    void failConnection(const std::string& reason) {
        if (!life_.running()) return;
        dropStream();
        const auto wait = life_.scheduleRetry();
        BERTH_LOG_WARN(kTag) << serverName() << ": " << reason << "; retry " << life_.retryCount() << " in "
                             << formatSeconds(wait);
        setStatus(MtpStatus::kError, reason + "; retry in " + formatSeconds(wait));
    }

    // The default factory's pool; outlives every stream (they go with life_).
    std::unique_ptr<WorkerPool> ownPool_;
    StompClient& owner_;
    EventLoop& loop_;
    StompConfig config_;
    StompStreamFactory factory_;
    detail::Reconnector life_;
    std::unique_ptr<Timer> connectTimer_;
    std::unique_ptr<Timer> sendBeatTimer_;
    std::unique_ptr<Timer> rxTimer_;
    std::unique_ptr<Gate> gate_;  // the current stream's
    std::unique_ptr<StompStream> stream_;
    StompFrameParser parser_;
    bool connected_ = false;  // CONNECTED received on the current stream
    std::string destination_;    // subscribed (or being subscribed) on the current connection
    std::string upDestination_;  // the one the server acknowledged last
    std::string destinationFromServer_;
    std::string serverHeader_;
    std::string subscriptionId_;
    std::string pendingReceipt_;
    unsigned subscriptionCounter_ = 0;
    StompHeartbeat heartbeat_;
    std::uint64_t connectAttempts_ = 0;
    std::uint64_t recordsSent_ = 0;
    std::uint64_t recordsReceived_ = 0;
    std::uint64_t errorFrames_ = 0;
    std::uint64_t protocolErrors_ = 0;
    std::uint64_t heartbeatTimeouts_ = 0;
    std::uint64_t heartbeatsSent_ = 0;
};

Result<std::unique_ptr<StompClient>> StompClient::create(EventLoop& loop, StompConfig config,
                                                         StompStreamFactory factory) {
    BERTH_TRY(validateStompConfig(config));
    std::unique_ptr<WorkerPool> ownPool;
    if (!factory) {
        ownPool = std::make_unique<WorkerPool>(loop, 1);
        factory = tcpStompStreamFactory(*ownPool);
    }
    std::unique_ptr<StompClient> c(new StompClient());
    c->impl_ = std::make_unique<Impl>(*c, loop, std::move(config), std::move(factory), std::move(ownPool));
    return c;
}

StompClient::~StompClient() = default;
Status StompClient::start() { return impl_->start(); }
void StompClient::stop() { impl_->stop(); }
Status StompClient::send(OutboundRecord record) { return impl_->send(std::move(record)); }
MtpStatus StompClient::status() const { return impl_->status(); }
std::string StompClient::agentAddress() const { return impl_->agentAddress(); }
Status StompClient::applyConfig(StompConfig config) { return impl_->applyConfig(std::move(config)); }
const StompConfig& StompClient::config() const { return impl_->config(); }
StompClientFigures StompClient::figures() const { return impl_->figures(); }
void StompClient::seedRetryJitter(std::uint64_t seed) { impl_->seed(seed); }

}  // namespace berth::transports
