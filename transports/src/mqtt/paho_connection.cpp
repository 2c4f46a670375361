// MqttConnection on Eclipse Paho MQTT C++ (async client).
//
// Paho calls back on its own threads. Those callbacks copy what they need and post()
// into the loop through a Bridge; the Bridge forgets the loop when the connection is
// closed, so nothing is posted afterwards, and posted work checks that the connection
// still wants events before delivering them. Paho's automatic reconnect stays off: the
// client drives reconnects with the TR-369 schedule. A failed TLS connect is diagnosed
// by a job on the worker pool, owned by the Bridge and cancelled when the connection is
// disconnected or destroyed, so its answer never reaches a connection given up.
#include <mqtt/async_client.h>

#include <algorithm>
#include <atomic>
#include <list>
#include <mutex>

#include "berth/core/log.h"
#include "berth/transports/mqtt.h"
#include "tls_files.h"

namespace berth::transports {
namespace {

constexpr std::string_view kTag = "mqtt";

struct Bridge : std::enable_shared_from_this<Bridge> {
    std::mutex mu;
    EventLoop* loop = nullptr;  // guarded by mu; null once closed

    // Loop thread only.
    MqttConnectionEvents* events = nullptr;
    std::function<void()> disconnectDone;
    WorkerPool* pool = nullptr;
    std::unique_ptr<Job> diagnosis;  // a TLS failure being looked into

    // Loop thread: looks into a failed TLS connect on the pool, then reports the failure
    // with what was found. Skipped once the connection no longer wants events.
    void diagnoseTls(const std::string& why, const MqttClientConfig& config) {
        if (!events || !pool) return;
        Bridge* self = this;  // the job belongs to this Bridge and is cancelled with it
        diagnosis = pool->submit<std::string>(
            [config](const CancelToken&) { return mqtt_detail::diagnoseTlsFailure(config, std::chrono::seconds(5)); },
            [self, why](std::string tls) {
                self->diagnosis.reset();
                if (self->events) self->events->onConnectFailed(why + "; TLS: " + tls);
            });
    }

    // Publishes handed to Paho whose completion (written, or acknowledged) has not been
    // reported yet; any thread.
    std::atomic<std::size_t> unsentMessages{0};
    std::atomic<std::size_t> unsentBytes{0};
    void published(std::size_t bytes) {
        unsentMessages.fetch_sub(1);
        unsentBytes.fetch_sub(bytes);
    }

    // From any thread: runs fn on the loop thread unless the bridge is closed by then.
    void post(std::function<void(Bridge&)> fn) {
        std::lock_guard<std::mutex> lock(mu);
        if (!loop) return;
        auto self = shared_from_this();
        loop->post([self, fn = std::move(fn)] { fn(*self); });
    }
    void toEvents(std::function<void(MqttConnectionEvents&)> fn) {
        post([fn = std::move(fn)](Bridge& b) {
            if (b.events) fn(*b.events);
        });
    }
    void close() {
        std::lock_guard<std::mutex> lock(mu);
        loop = nullptr;
    }
};

class Listener final : public mqtt::iaction_listener {
public:
    using Fn = std::function<void(const mqtt::token&, bool ok)>;
    explicit Listener(Fn fn) : fn_(std::move(fn)) {}
    void on_success(const mqtt::token& t) override { call(t, true); }
    void on_failure(const mqtt::token& t) override { call(t, false); }

private:
    void call(const mqtt::token& t, bool ok) {
        // Nothing may unwind into Paho's C threads.
        try {
            fn_(t, ok);
        } catch (const std::exception& e) {
            BERTH_LOG_ERROR(kTag) << "callback failed: " << e.what();
        }
    }
    Fn fn_;
};

std::string describeFailure(const mqtt::token& t) {
    int rc = t.get_return_code();
    int reason = t.get_reason_code();
    std::string s;
    if (reason != mqtt::ReasonCode::SUCCESS && reason != mqtt::MQTTPP_V3_CODE) {
        s = mqtt::exception::reason_code_str(reason);
        if (s.empty()) s = "reason code " + std::to_string(reason);
    } else if (rc > 0 && rc <= 5 && t.get_type() == mqtt::token::Type::CONNECT) {
        // 3.1.1 CONNACK return codes.
        static const char* const kCodes[] = {"", "unacceptable protocol version", "identifier rejected",
                                             "server unavailable", "bad user name or password",
                                             "not authorized"};
        s = std::string("refused: ") + kCodes[rc];
    } else {
        s = mqtt::exception::error_str(rc);
        if (s.empty()) s = "error " + std::to_string(rc);
    }
    return s;
}

std::string brokerUri(const MqttClientConfig& c) {
    std::string host = c.brokerAddress;
    if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
    return std::string(c.transport == MqttTransport::kTls ? "ssl://" : "tcp://") + host + ":" +
           std::to_string(c.brokerPort);
}

class PahoConnection final : public MqttConnection {
public:
    PahoConnection(EventLoop& loop, WorkerPool& pool, const MqttClientConfig& config, std::string clientId,
                   MqttConnectionEvents& events)
        : config_(config), clientId_(std::move(clientId)), uri_(brokerUri(config)),
          bridge_(std::make_shared<Bridge>()) {
        bridge_->loop = &loop;
        bridge_->events = &events;
        bridge_->pool = &pool;
    }

    ~PahoConnection() override {
        bridge_->events = nullptr;
        bridge_->disconnectDone = nullptr;
        bridge_->diagnosis.reset();
        bridge_->close();
        // A DISCONNECT asked for just before (shutdown) gets a short moment to go out.
        if (disconnectToken_ && !disconnectToken_->is_complete())
            disconnectToken_->wait_for(std::chrono::milliseconds(100));
        // Destroys the Paho client (MQTTAsync_destroy) before the listeners it points to.
        client_.reset();
    }

    Status init() {
        const bool v5 = config_.protocolVersion == MqttVersion::kV5;
        try {
            // Paho counts every publish still in its command queue against max buffered
            // messages even while connected (default 100: a burst of replies hit it). Our
            // own bound in publish() comes first; Paho's stays as the backstop.
            const int buffered = static_cast<int>(std::min<std::size_t>(config_.maxUnsentMessages, 1 << 20)) + 16;
            mqtt::create_options createOpts(v5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1, buffered);
            client_ = std::make_unique<mqtt::async_client>(uri_, clientId_, createOpts, nullptr);
        } catch (const std::exception& e) {
            return Error(ErrorCode::kInvalidConfiguration, "cannot make an MQTT client for " + uri_ + ": " + e.what(),
                         "BrokerAddress");
        }
        std::weak_ptr<Bridge> weak = bridge_;
        client_->set_message_callback([weak](mqtt::const_message_ptr m) {
            auto b = weak.lock();
            if (!b || !m) return;
            MqttMessage msg;
            msg.topic = m->get_topic();
            msg.payload = m->get_payload_str();
            msg.qos = m->get_qos();
            msg.retain = m->is_retained();
            const auto& props = m->get_properties();
            try {
                if (props.contains(mqtt::property::RESPONSE_TOPIC))
                    msg.responseTopic = mqtt::get<std::string>(props, mqtt::property::RESPONSE_TOPIC);
                if (props.contains(mqtt::property::CONTENT_TYPE))
                    msg.contentType = mqtt::get<std::string>(props, mqtt::property::CONTENT_TYPE);
                for (std::size_t i = 0, n = props.count(mqtt::property::USER_PROPERTY); i < n; ++i) {
                    auto kv = mqtt::get<mqtt::string_pair>(props, mqtt::property::USER_PROPERTY, i);
                    msg.userProperties.emplace_back(std::get<0>(kv), std::get<1>(kv));
                }
            } catch (const std::exception& e) {
                BERTH_LOG_WARN(kTag) << "unreadable properties on " << msg.topic << ": " << e.what();
            }
            b->toEvents([msg = std::move(msg)](MqttConnectionEvents& ev) mutable { ev.onMessage(std::move(msg)); });
        });
        client_->set_connection_lost_handler([weak](const std::string& cause) {
            if (auto b = weak.lock()) {
                std::string why = cause.empty() ? "connection lost" : "connection lost: " + cause;
                b->toEvents([why](MqttConnectionEvents& ev) { ev.onConnectionLost(why); });
            }
        });
        if (v5) {
            client_->set_disconnected_handler([weak](const mqtt::properties&, mqtt::ReasonCode reason) {
                if (auto b = weak.lock()) {
                    std::string why = "broker sent DISCONNECT: " + mqtt::exception::reason_code_str(reason);
                    b->toEvents([why](MqttConnectionEvents& ev) { ev.onConnectionLost(why); });
                }
            });
        }
        publishListener_ = &addListener([weak](const mqtt::token& t, bool ok) {
            auto b = weak.lock();
            if (!b) return;
            std::string topic;
            const auto* dt = dynamic_cast<const mqtt::delivery_token*>(&t);
            // Paho passes the delivery token publish() returned, which holds the message.
            if (dt && dt->get_message()) {
                topic = dt->get_message()->get_topic();
                b->published(dt->get_message()->get_payload().size());
            } else {
                b->unsentMessages.fetch_sub(1);
            }
            if (ok) return;
            std::string why = describeFailure(t);
            b->toEvents([topic, why](MqttConnectionEvents& ev) { ev.onPublishFailed(topic, why); });
        });
        return {};
    }

    Status connect() override {
        const bool v5 = config_.protocolVersion == MqttVersion::kV5;
        mqtt::connect_options opts;
        opts.set_mqtt_version(v5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
        if (v5)
            opts.set_clean_start(config_.cleanSession);
        else
            opts.set_clean_session(config_.cleanSession);
        opts.set_keep_alive_interval(static_cast<int>(config_.keepAliveTime.count()));
        opts.set_connect_timeout(static_cast<int>(config_.connectTimeout.count()));
        opts.set_automatic_reconnect(false);
        if (!config_.username.empty()) opts.set_user_name(config_.username);
        if (!config_.password.empty()) opts.set_password(config_.password);
        if (v5) {
            mqtt::properties props;
            props.add(mqtt::property(mqtt::property::REQUEST_RESPONSE_INFORMATION, uint8_t(1)));
            if (!config_.endpointId.empty())
                props.add(mqtt::property(mqtt::property::USER_PROPERTY, std::string("usp-endpoint-id"),
                                         config_.endpointId));
            opts.set_properties(std::move(props));
        }
        if (config_.transport == MqttTransport::kTls) {
            // Checked again at every attempt: files may have changed since the config was applied.
            BERTH_TRY(mqtt_detail::checkTlsFiles(config_.tls));
            mqtt::ssl_options ssl;
            ssl.set_enable_server_cert_auth(true);
            ssl.set_verify(config_.tls.verifyServerName);
            if (!config_.tls.caFile.empty()) ssl.set_trust_store(config_.tls.caFile);
            if (!config_.tls.caDir.empty()) ssl.ca_path(config_.tls.caDir);
            if (!config_.tls.certFile.empty()) ssl.set_key_store(config_.tls.certFile);
            if (!config_.tls.keyFile.empty()) ssl.set_private_key(config_.tls.keyFile);
            if (!config_.tls.keyPassword.empty()) ssl.set_private_key_password(config_.tls.keyPassword);
            opts.set_ssl(std::move(ssl));
        }

        std::weak_ptr<Bridge> weak = bridge_;
        auto& listener = addListener([weak, uri = uri_, config = config_](const mqtt::token& t, bool ok) {
            auto b = weak.lock();
            if (!b) return;
            if (!ok) {
                std::string why = uri + ": " + describeFailure(t);
                if (config.transport != MqttTransport::kTls) {
                    b->toEvents([why](MqttConnectionEvents& ev) { ev.onConnectFailed(why); });
                    return;
                }
                // Paho does not say why a TLS connect failed (and its C++ 1.2 error
                // handler hook is unsafe to use), so look for ourselves, on the pool.
                b->post([why, config](Bridge& br) { br.diagnoseTls(why, config); });
                return;
            }
            MqttConnack ack;
            try {
                auto rsp = t.get_connect_response();
                ack.version = rsp.get_mqtt_version() >= MQTTVERSION_5 ? MqttVersion::kV5 : MqttVersion::kV311;
                const auto& p = rsp.get_properties();
                using P = mqtt::property;
                if (p.contains(P::ASSIGNED_CLIENT_IDENTIFER))
                    ack.assignedClientId = mqtt::get<std::string>(p, P::ASSIGNED_CLIENT_IDENTIFER);
                if (p.contains(P::RESPONSE_INFORMATION))
                    ack.responseInformation = mqtt::get<std::string>(p, P::RESPONSE_INFORMATION);
                if (p.contains(P::MAXIMUM_QOS)) ack.maximumQos = mqtt::get<uint8_t>(p, P::MAXIMUM_QOS);
                if (p.contains(P::RETAIN_AVAILABLE)) ack.retainAvailable = mqtt::get<uint8_t>(p, P::RETAIN_AVAILABLE) != 0;
                for (std::size_t i = 0, n = p.count(P::USER_PROPERTY); i < n; ++i) {
                    auto kv = mqtt::get<mqtt::string_pair>(p, P::USER_PROPERTY, i);
                    if (std::get<0>(kv) == "subscribe-topic") ack.subscribeTopics.push_back(std::get<1>(kv));
                }
            } catch (const std::exception& e) {
                BERTH_LOG_WARN(kTag) << uri << ": unreadable CONNACK properties: " << e.what();
            }
            b->toEvents([ack](MqttConnectionEvents& ev) { ev.onConnected(ack); });
        });
        try {
            client_->connect(opts, nullptr, listener);
        } catch (const std::exception& e) {
            return Error(ErrorCode::kMessageFailed, uri_ + ": connect refused by the MQTT library: " + e.what());
        }
        return {};
    }

    Status subscribe(const std::string& filter, int qos) override {
        std::weak_ptr<Bridge> weak = bridge_;
        auto& listener = addListener([weak, filter](const mqtt::token& t, bool ok) {
            auto b = weak.lock();
            if (!b) return;
            std::string detail;
            if (ok) {
                try {
                    // A 5.0 SUBACK can carry a failure code on a "successful" exchange.
                    auto rsp = t.get_subscribe_response();
                    for (auto rc : rsp.get_reason_codes())
                        if (rc >= 0x80) {
                            ok = false;
                            detail = mqtt::exception::reason_code_str(rc);
                            if (detail.empty()) detail = "refused (" + std::to_string(int(rc)) + ")";
                        }
                } catch (const std::exception&) {
                    // No response details: keep the library's verdict.
                }
            } else {
                detail = describeFailure(t);
            }
            b->toEvents([filter, ok, detail](MqttConnectionEvents& ev) { ev.onSubscribeResult(filter, ok, detail); });
        });
        try {
            client_->subscribe(filter, qos, nullptr, listener);
        } catch (const std::exception& e) {
            return Error(ErrorCode::kMessageFailed, "SUBSCRIBE " + filter + " failed: " + e.what());
        }
        return {};
    }

    Status unsubscribe(const std::string& filter) override {
        try {
            client_->unsubscribe(filter);
        } catch (const std::exception& e) {
            return Error(ErrorCode::kMessageFailed, "UNSUBSCRIBE " + filter + " failed: " + e.what());
        }
        return {};
    }

    Status publish(const MqttMessage& m) override {
        mqtt::properties props;
        if (config_.protocolVersion == MqttVersion::kV5) {
            if (!m.responseTopic.empty()) props.add(mqtt::property(mqtt::property::RESPONSE_TOPIC, m.responseTopic));
            if (!m.contentType.empty()) props.add(mqtt::property(mqtt::property::CONTENT_TYPE, m.contentType));
            for (const auto& [k, v] : m.userProperties) props.add(mqtt::property(mqtt::property::USER_PROPERTY, k, v));
        }
        const std::size_t n = bridge_->unsentMessages.load(), bytes = bridge_->unsentBytes.load();
        if (n >= config_.maxUnsentMessages || bytes + m.payload.size() > config_.maxUnsentBytes)
            return Error(ErrorCode::kMessageFailed, "PUBLISH to " + m.topic + " refused: " + std::to_string(n) +
                                                        " messages (" + std::to_string(bytes) +
                                                        " bytes) are still waiting to go out to the broker");
        bridge_->unsentMessages.fetch_add(1);
        bridge_->unsentBytes.fetch_add(m.payload.size());
        try {
            auto msg = std::make_shared<mqtt::message>(m.topic, m.payload.data(), m.payload.size(), m.qos, m.retain, props);
            client_->publish(msg, nullptr, *publishListener_);
        } catch (const mqtt::exception& e) {
            bridge_->published(m.payload.size());
            // Paho's own bound on what it buffers (MQTTASYNC_MAX_BUFFERED_MESSAGES) or on
            // messages in flight: a refusal like any other, never a wait.
            if (e.get_return_code() == MQTTASYNC_MAX_BUFFERED_MESSAGES ||
                e.get_return_code() == MQTTASYNC_MAX_MESSAGES_INFLIGHT)
                return Error(ErrorCode::kMessageFailed,
                             "PUBLISH to " + m.topic + " refused: the MQTT client's buffer is full (" + e.what() + ")");
            return Error(ErrorCode::kMessageFailed, "PUBLISH to " + m.topic + " failed: " + e.what());
        } catch (const std::exception& e) {
            bridge_->published(m.payload.size());
            return Error(ErrorCode::kMessageFailed, "PUBLISH to " + m.topic + " failed: " + e.what());
        }
        return {};
    }

    void disconnect(std::function<void()> done) override {
        bridge_->events = nullptr;
        bridge_->diagnosis.reset();
        bridge_->disconnectDone = std::move(done);
        std::weak_ptr<Bridge> weak = bridge_;
        auto& listener = addListener([weak](const mqtt::token&, bool) {
            if (auto b = weak.lock())
                b->post([](Bridge& br) {
                    if (auto d = std::exchange(br.disconnectDone, nullptr)) d();
                });
        });
        try {
            disconnectToken_ = client_->disconnect(500, nullptr, listener);
        } catch (const std::exception&) {
            // Not connected: nothing to send.
            bridge_->post([](Bridge& br) {
                if (auto d = std::exchange(br.disconnectDone, nullptr)) d();
            });
        }
    }

private:
    Listener& addListener(Listener::Fn fn) {
        listeners_.emplace_back(std::move(fn));
        return listeners_.back();
    }

    MqttClientConfig config_;
    std::string clientId_;
    std::string uri_;
    std::shared_ptr<Bridge> bridge_;
    // Paho keeps raw pointers to these; std::list keeps them in place, and they are
    // destroyed after client_ (declared below).
    std::list<Listener> listeners_;
    Listener* publishListener_ = nullptr;
    mqtt::token_ptr disconnectToken_;
    std::unique_ptr<mqtt::async_client> client_;
};

}  // namespace

MqttConnectionFactory pahoMqttConnectionFactory(WorkerPool& pool) {
    return [&pool](EventLoop& loop, const MqttClientConfig& config, const std::string& clientId,
                   MqttConnectionEvents& events) -> Result<std::unique_ptr<MqttConnection>> {
        auto conn = std::make_unique<PahoConnection>(loop, pool, config, clientId, events);
        BERTH_TRY(conn->init());
        return std::unique_ptr<MqttConnection>(std::move(conn));
    };
}

}  // namespace berth::transports
