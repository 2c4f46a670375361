// MqttClient: the TR-369 MQTT binding's state machine on top of an MqttConnection.
//
// One connection at a time; the life cycle (start, stop, retry waits, retired
// connections) is the shared Reconnector. A connection that is given up is
// disconnected (which stops its events) and retired with a grace period before
// destruction: Paho may still be finishing the callback that reported the failure on
// its own thread, and destroying its client under it would be a use-after-free.
#include <algorithm>

#include "../reconnector.h"
#include "berth/core/log.h"
#include "berth/transports/mqtt.h"
#include "tcp_nodelay.h"

namespace berth::transports {
namespace {

constexpr std::string_view kTag = "mqtt";
constexpr detail::Reconnector::Grace kRetiredGrace{std::chrono::milliseconds(200), std::chrono::seconds(2)};

using detail::formatSeconds;

RetrySchedule retrySchedule(const MqttClientConfig& c) {
    RetrySchedule schedule;
    schedule.minWait = c.connectRetryTime;
    schedule.multiplier = c.connectRetryIntervalMultiplier;
    schedule.maxWait = c.connectRetryMaxInterval;
    return schedule;
}

bool sameConnectionSettings(const MqttClientConfig& a, const MqttClientConfig& b) {
    return a.brokerAddress == b.brokerAddress && a.brokerPort == b.brokerPort &&
           a.protocolVersion == b.protocolVersion && a.transport == b.transport && a.tls.caFile == b.tls.caFile &&
           a.tls.caDir == b.tls.caDir && a.tls.certFile == b.tls.certFile && a.tls.keyFile == b.tls.keyFile &&
           a.tls.keyPassword == b.tls.keyPassword && a.tls.verifyServerName == b.tls.verifyServerName &&
           a.keepAliveTime == b.keepAliveTime && a.clientId == b.clientId && a.username == b.username &&
           a.password == b.password && a.cleanSession == b.cleanSession && a.connectTimeout == b.connectTimeout &&
           a.endpointId == b.endpointId;
}

}  // namespace

class MqttClient::Impl final : public MqttConnectionEvents {
public:
    Impl(MqttClient& owner, EventLoop& loop, MqttClientConfig config, MqttConnectionFactory factory,
         std::unique_ptr<WorkerPool> ownPool)
        : ownPool_(std::move(ownPool)), owner_(owner), loop_(loop), config_(std::move(config)),
          factory_(std::move(factory)),
          life_(loop, [this] { openConnection(); },
                [this](MtpStatus s, const std::string& d) { owner_.reportStatus(s, d); }) {
        life_.setSchedule(retrySchedule(config_));
    }

    // The connection goes first: retiring it needs life_.
    ~Impl() { dropConnection(); }

    // ---- Mtp ----

    Status start() {
        life_.start();
        return {};
    }

    void stop() {
        if (!life_.running()) return;
        life_.cancelRetry();
        dropConnection();
        life_.stop();
    }

    Status send(OutboundRecord record) {
        if (status() != MtpStatus::kUp || !conn_)
            return Error(ErrorCode::kMessageFailed, "MQTT client for " + brokerName() + " is not up (" +
                                                        std::string(mtpStatusName(status())) + ")");
        if (!isValidMqttTopicName(record.destination))
            return Error(ErrorCode::kMessageFailed, "'" + record.destination + "' is not an MQTT topic name");
        MqttMessage m;
        if (connack_.version == MqttVersion::kV5) {
            m.topic = record.destination;
            m.responseTopic = replyTopic_;
            m.contentType = "usp.msg";
        } else {
            m.topic = appendReplyTo(record.destination, replyTopic_);
        }
        m.payload = std::move(record.payload);
        m.qos = std::min(config_.publishQos, connack_.maximumQos);
        m.retain = connack_.retainAvailable &&
                   ((record.kind == RecordKind::kResponse && config_.publishRetainResponse) ||
                    (record.kind == RecordKind::kNotify && config_.publishRetainNotify));
        auto st = conn_->publish(m);
        if (!st) {
            ++publishFailures_;
            return Error(ErrorCode::kMessageFailed, st.error().message);
        }
        ++recordsSent_;
        return {};
    }

    // ---- configuration ----

    Status applyConfig(MqttClientConfig config) {
        BERTH_TRY(validateMqttConfig(config));
        // The agent persists a broker-assigned ClientID into Device.MQTT.Client.{i}.ClientID
        // (R-MQTT.9); writing back the ID already in use is not a new setting.
        const bool adoptsAssignedId = config_.clientId.empty() && !assignedClientId_.empty() &&
                                      config.clientId == assignedClientId_;
        MqttClientConfig compared = config;
        if (adoptsAssignedId) compared.clientId.clear();
        const bool reconnect = !sameConnectionSettings(config_, compared);
        if (config.brokerAddress != config_.brokerAddress || config.brokerPort != config_.brokerPort ||
            compared.clientId != config_.clientId || config.protocolVersion != config_.protocolVersion)
            assignedClientId_.clear();  // R-MQTT.11 ties an assigned ID to one server
        const bool endpointPublishChanged = config.publishEndpointId != config_.publishEndpointId ||
                                            config.endpointIdTopic != config_.endpointIdTopic;
        config_ = std::move(config);
        life_.setSchedule(retrySchedule(config_));
        if (!life_.running()) return {};
        if (reconnect || !conn_ || !connected_) {
            BERTH_LOG_INFO(kTag) << brokerName() << ": configuration changed, connecting again";
            reconnectAtOnce();
            return {};
        }
        // Same connection: bring the subscriptions in line without reconnecting (R-MQTT.34).
        auto plan = planMqttTopics(config_, connack_);
        if (!plan) {
            disable(plan.error().message);
            return {};
        }
        if (plan->responseTopic != replyTopic_) {
            // Peers learnt the old reply-to from the connect record: start over so a new one goes out.
            reconnectAtOnce();
            return {};
        }
        for (auto it = subs_.begin(); it != subs_.end();) {
            bool keep = std::any_of(plan->filters.begin(), plan->filters.end(),
                                    [&](const MqttTopicPlan::Filter& f) { return f.filter == it->filter; });
            if (keep) {
                ++it;
                continue;
            }
            BERTH_LOG_INFO(kTag) << brokerName() << ": unsubscribing from " << it->filter;
            auto st = conn_->unsubscribe(it->filter);
            if (!st) {
                BERTH_LOG_WARN(kTag) << st.error().message;
            }
            it = subs_.erase(it);
        }
        for (const auto& f : plan->filters) {
            if (std::any_of(subs_.begin(), subs_.end(), [&](const Sub& s) { return s.filter == f.filter; })) continue;
            subscribe(f);
        }
        if (endpointPublishChanged && status() == MtpStatus::kUp) publishEndpointId();
        return {};
    }

    MqttClientFigures figures() const {
        MqttClientFigures f;
        f.status = life_.status();
        f.statusDetail = life_.detail();
        f.responseTopicDiscovered = connected_ ? replyTopic_ : std::string();
        f.assignedClientId = assignedClientId_;
        f.clientIdInUse = clientIdInUse_;
        for (const auto& s : subs_) f.subscriptions.push_back({s.filter, s.qos, s.status});
        f.retryCount = life_.retryCount();
        f.nextRetryDelay = life_.pendingRetryDelay();
        f.connectAttempts = connectAttempts_;
        f.recordsSent = recordsSent_;
        f.recordsReceived = recordsReceived_;
        f.recordsDropped = recordsDropped_;
        f.publishFailures = publishFailures_;
        return f;
    }

    // ---- connection events (loop thread) ----

    // TCP_NODELAY for this connection's socket: a scan of the process's sockets now, or,
    // when another client scanned less than kNoDelayScanGap ago, at most that much later
    // unless a scan that began after this connect came first (tcp_nodelay.h).
    static constexpr std::chrono::milliseconds kNoDelayScanGap{100};
    void scheduleNoDelay() {
        const auto upAt = std::chrono::steady_clock::now();
        const auto since = upAt - detail::lastNoDelayScan();
        if (since >= kNoDelayScanGap) {
            scanNoDelay();
            return;
        }
        if (!noDelayTimer_)
            noDelayTimer_ = loop_.createTimer([this] {
                if (conn_ && connected_ && detail::lastNoDelayScan() <= noDelayUpAt_) scanNoDelay();
            });
        noDelayUpAt_ = upAt;
        noDelayTimer_->start(std::chrono::duration_cast<std::chrono::milliseconds>(kNoDelayScanGap - since) +
                             std::chrono::milliseconds(1));
    }
    void scanNoDelay() {
        int fast = detail::enableNoDelayToBroker(config_.brokerAddress, config_.brokerPort);
        BERTH_LOG_DEBUG(kTag) << brokerName() << ": TCP_NODELAY set on " << fast << " socket(s)";
    }

    void onConnected(const MqttConnack& connack) override {
        if (!conn_) return;
        connected_ = true;
        connack_ = connack;
        // See tcp_nodelay.h: without this every second small PUBLISH waits ~40 ms.
        if (!conn_->setsTcpNoDelay()) scheduleNoDelay();
        if (!connack.assignedClientId.empty()) {
            assignedClientId_ = connack.assignedClientId;
            clientIdInUse_ = connack.assignedClientId;
            BERTH_LOG_INFO(kTag) << brokerName() << ": broker assigned ClientID " << assignedClientId_;
        }
        auto plan = planMqttTopics(config_, connack);
        if (!plan) {
            disable(plan.error().message);
            return;
        }
        replyTopic_ = plan->responseTopic;
        subs_.clear();
        for (const auto& f : plan->filters) subscribe(f);
        maybeUp();
    }

    void onConnectFailed(const std::string& reason) override {
        if (!conn_) return;
        failAttempt(reason);
    }

    void onConnectionLost(const std::string& reason) override {
        if (!conn_) return;
        if (status() != MtpStatus::kUp) {
            failAttempt(reason);
            return;
        }
        dropConnection();
        auto d = life_.scheduleRetry();
        BERTH_LOG_WARN(kTag) << brokerName() << ": " << reason << "; reconnecting in " << formatSeconds(d);
        life_.setStatus(MtpStatus::kConnecting, reason + "; reconnecting in " + formatSeconds(d));
    }

    void onSubscribeResult(const std::string& filter, bool ok, const std::string& detail) override {
        if (!conn_) return;
        auto it = std::find_if(subs_.begin(), subs_.end(), [&](const Sub& s) {
            return s.filter == filter && s.status == MqttSubscriptionStatus::kSubscribing;
        });
        if (it == subs_.end()) return;  // unsubscribed meanwhile
        it->status = ok ? MqttSubscriptionStatus::kSubscribed : MqttSubscriptionStatus::kError;
        if (ok) {
            BERTH_LOG_DEBUG(kTag) << brokerName() << ": subscribed to " << filter;
        } else {
            BERTH_LOG_WARN(kTag) << brokerName() << ": SUBSCRIBE " << filter << " refused: " << detail;
        }
        maybeUp();
    }

    void onMessage(MqttMessage m) override {
        if (!conn_ || !connected_) return;
        if (!m.contentType.empty() && m.contentType != "usp.msg" && m.contentType != "application/vnd.bbf.usp.msg") {
            ++recordsDropped_;
            BERTH_LOG_WARN(kTag) << brokerName() << ": dropped a message on " << m.topic << " with content type '"
                                 << m.contentType << "'";
            return;
        }
        InboundRecord r;
        r.payload = std::move(m.payload);
        if (!m.responseTopic.empty()) {
            r.replyTo = std::move(m.responseTopic);
        } else if (auto split = splitReplyTo(m.topic)) {
            r.replyTo = std::move(split->second);
        }
        for (auto& [k, v] : m.userProperties)
            if (k == "usp-endpoint-id") r.peerId = v;
        ++recordsReceived_;
        owner_.deliver(std::move(r));
    }

    void onPublishFailed(const std::string& topic, const std::string& detail) override {
        ++publishFailures_;
        BERTH_LOG_WARN(kTag) << brokerName() << ": PUBLISH to " << topic << " failed: " << detail;
    }

    MtpStatus status() const { return life_.status(); }
    void seed(std::uint64_t s) { life_.seed(s); }

    // The default factory's pool; outlives every connection (they go with life_).
    std::unique_ptr<WorkerPool> ownPool_;
    MqttClient& owner_;
    EventLoop& loop_;
    MqttClientConfig config_;
    MqttConnectionFactory factory_;
    detail::Reconnector life_;
    std::string replyTopic_;

private:
    struct Sub {
        std::string filter;
        int qos = 1;
        MqttSubscriptionStatus status = MqttSubscriptionStatus::kSubscribing;
    };

    std::string brokerName() const {
        return std::string(config_.transport == MqttTransport::kTls ? "mqtts://" : "mqtt://") +
               config_.brokerAddress + ":" + std::to_string(config_.brokerPort);
    }

    void setStatus(MtpStatus s, const std::string& detail) { life_.setStatus(s, detail); }

    void reconnectAtOnce() {
        life_.resetRetries();
        life_.connectNow();
    }

    // The Reconnector's attempt: a new connection in place of the current one.
    void openConnection() {
        dropConnection();
        clientIdInUse_ = chooseMqttClientId(config_, assignedClientId_);
        ++connectAttempts_;
        auto made = factory_(loop_, config_, clientIdInUse_, *this);
        if (!made) {
            failAttempt(made.error().message);
            return;
        }
        conn_ = std::move(*made);
        BERTH_LOG_DEBUG(kTag) << "connecting to " << brokerName() << " as '" << clientIdInUse_ << "' (attempt "
                              << connectAttempts_ << ")";
        auto st = conn_->connect();
        if (!st) {
            failAttempt(st.error().message);
            return;
        }
        setStatus(MtpStatus::kConnecting, "connecting to " + brokerName());
    }

    void subscribe(const MqttTopicPlan::Filter& f) {
        subs_.push_back({f.filter, f.qos, MqttSubscriptionStatus::kSubscribing});
        auto st = conn_->subscribe(f.filter, f.qos);
        if (!st) {
            BERTH_LOG_WARN(kTag) << brokerName() << ": " << st.error().message;
            subs_.back().status = MqttSubscriptionStatus::kError;
        }
    }

    // Up once every SUBACK is in and at least one subscription holds (R-MQTT.17); if
    // the broker refused them all, give this connection up (TP-469 11.11).
    void maybeUp() {
        if (status() == MtpStatus::kUp || !connected_) return;
        bool pending = std::any_of(subs_.begin(), subs_.end(),
                                   [](const Sub& s) { return s.status == MqttSubscriptionStatus::kSubscribing; });
        if (pending) return;
        bool any = std::any_of(subs_.begin(), subs_.end(),
                               [](const Sub& s) { return s.status == MqttSubscriptionStatus::kSubscribed; });
        if (!any) {
            failAttempt("the broker refused every subscription");
            return;
        }
        life_.succeeded();
        std::string topics;
        for (const auto& s : subs_)
            if (s.status == MqttSubscriptionStatus::kSubscribed) topics += (topics.empty() ? "" : ", ") + s.filter;
        BERTH_LOG_INFO(kTag) << "connected to " << brokerName() << " as '" << clientIdInUse_ << "' (MQTT "
                             << (connack_.version == MqttVersion::kV5 ? "5.0" : "3.1.1") << "), subscribed to "
                             << topics << ", reply-to " << replyTopic_;
        publishEndpointId();
        setStatus(MtpStatus::kUp, replyTopic_);
    }

    void publishEndpointId() {
        if (!config_.publishEndpointId || !conn_) return;
        MqttMessage m;
        m.topic = config_.endpointIdTopic;
        m.payload = config_.endpointId;
        m.qos = std::min(1, connack_.maximumQos);
        m.retain = connack_.retainAvailable;
        auto st = conn_->publish(m);
        if (!st) {
            BERTH_LOG_WARN(kTag) << brokerName() << ": " << st.error().message;
        }
    }

    void failAttempt(const std::string& reason) {
        dropConnection();
        auto d = life_.scheduleRetry();
        BERTH_LOG_WARN(kTag) << brokerName() << ": " << reason << "; retry " << life_.retryCount() << " in "
                             << formatSeconds(d);
        setStatus(MtpStatus::kError, reason);
    }

    // No topic to subscribe to: R-MQTT.16 says disconnect and treat the MTP as disabled
    // until its configuration changes.
    void disable(const std::string& reason) {
        dropConnection();
        life_.cancelRetry();
        BERTH_LOG_ERROR(kTag) << brokerName() << ": " << reason << "; not reconnecting until reconfigured";
        setStatus(MtpStatus::kError, reason);
    }

    // The connection is disconnected (no events after this) and retired, not destroyed:
    // see the file comment.
    void dropConnection() {
        if (!conn_) return;
        connected_ = false;
        subs_.clear();
        replyTopic_.clear();
        MqttConnection* raw = conn_.get();
        auto done = life_.retire(std::move(conn_), kRetiredGrace);
        raw->disconnect(std::move(done));
    }

public:
    std::unique_ptr<Timer> noDelayTimer_;  // made on first need (scheduleNoDelay)
    std::chrono::steady_clock::time_point noDelayUpAt_{};
    std::unique_ptr<MqttConnection> conn_;
    bool connected_ = false;
    MqttConnack connack_;
    std::vector<Sub> subs_;
    std::string assignedClientId_;
    std::string clientIdInUse_;
    std::uint64_t connectAttempts_ = 0;
    std::uint64_t recordsSent_ = 0;
    std::uint64_t recordsReceived_ = 0;
    std::uint64_t recordsDropped_ = 0;
    std::uint64_t publishFailures_ = 0;
};

Result<std::unique_ptr<MqttClient>> MqttClient::create(EventLoop& loop, MqttClientConfig config,
                                                       MqttConnectionFactory factory) {
    BERTH_TRY(validateMqttConfig(config));
    std::unique_ptr<WorkerPool> ownPool;
    if (!factory) {
        ownPool = std::make_unique<WorkerPool>(loop, 1);
        factory = pahoMqttConnectionFactory(*ownPool);
    }
    std::unique_ptr<MqttClient> client(new MqttClient());
    client->impl_ = std::make_unique<Impl>(*client, loop, std::move(config), std::move(factory), std::move(ownPool));
    return client;
}

MqttClient::~MqttClient() = default;

Status MqttClient::start() { return impl_->start(); }
void MqttClient::stop() { impl_->stop(); }
Status MqttClient::send(OutboundRecord record) { return impl_->send(std::move(record)); }
MtpStatus MqttClient::status() const { return impl_->status(); }
std::string MqttClient::agentAddress() const { return impl_->status() == MtpStatus::kUp ? impl_->replyTopic_ : ""; }
Status MqttClient::applyConfig(MqttClientConfig config) { return impl_->applyConfig(std::move(config)); }
const MqttClientConfig& MqttClient::config() const { return impl_->config_; }
MqttClientFigures MqttClient::figures() const { return impl_->figures(); }
void MqttClient::seedRetryJitter(std::uint64_t seed) { impl_->seed(seed); }

}  // namespace berth::transports
