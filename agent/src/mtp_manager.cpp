#include "mtp_manager.h"

#include "berth/core/log.h"

namespace berth::agent {

MtpManager::MtpManager(EventLoop& loop, dm::Engine& engine, std::string endpointId, RecordSink onRecord, UpSink onUp)
    : loop_(loop),
      engine_(engine),
      endpointId_(std::move(endpointId)),
      onRecord_(std::move(onRecord)),
      onUp_(std::move(onUp)) {}

MtpManager::~MtpManager() { stopAll(); }

Status MtpManager::registerWithEngine() {
    BERTH_TRY(engine_.registerProvider("Device.LocalAgent.MTP.{i}.", this, {"Status"}));
    BERTH_TRY(engine_.registerProvider("Device.LocalAgent.MTP.{i}.MQTT.", this, {"ResponseTopicDiscovered"}));
    BERTH_TRY(engine_.registerProvider("Device.MQTT.Client.{i}.", this, {"Status"}));
    return {};
}

std::string MtpManager::value(const std::string& path) const {
    auto v = engine_.getValue(path);
    return v ? *v : std::string();
}

transports::Mtp* MtpManager::find(const std::string& path) {
    for (auto& [key, b] : bindings_)
        if (key == path || b.reference == path) return b.mtp.get();
    return nullptr;
}

std::string MtpManager::mtpPathFor(const std::string& reference) const {
    for (const auto& [key, b] : bindings_)
        if (b.reference == reference || key == reference) return key;
    return {};
}

Result<std::string> MtpManager::get(const dm::ObjectView& obj, std::string_view param) {
    const std::string& path = obj.path();
    auto statusOf = [&](const std::string& key) -> std::string {
        for (auto& [k, b] : bindings_) {
            if (k == key || b.reference == key) {
                switch (b.lastStatus) {
                    case transports::MtpStatus::kUp: return path.rfind("Device.MQTT.", 0) == 0 ? "Connected" : "Up";
                    case transports::MtpStatus::kConnecting: return "Connecting";
                    case transports::MtpStatus::kError: return path.rfind("Device.MQTT.", 0) == 0 ? "Error_BrokerUnreachable" : "Error";
                    case transports::MtpStatus::kDown: break;
                }
            }
        }
        return path.rfind("Device.MQTT.", 0) == 0 ? "Disabled" : "Down";
    };
    if (param == "Status") return statusOf(path);
    if (param == "ResponseTopicDiscovered") {
        std::string row = path.substr(0, path.size() - std::string("MQTT.").size());
        auto it = bindings_.find(row);
        return it != bindings_.end() && it->second.mtp ? it->second.mtp->agentAddress() : std::string();
    }
    return Error(ErrorCode::kInternalError, "no provided value " + std::string(param));
}

#ifdef BERTH_WITH_MQTT
Result<transports::MqttClientConfig> MtpManager::mqttConfigFor(const std::string& mtpPath,
                                                               const std::string& client) const {
    using namespace transports;
    MqttClientConfig c;
    auto num = [&](const std::string& p, long long dflt) {
        std::string v = value(client + p);
        return v.empty() ? dflt : std::strtoll(v.c_str(), nullptr, 10);
    };
    c.brokerAddress = value(client + "BrokerAddress");
    c.brokerPort = static_cast<int>(num("BrokerPort", 1883));
    c.protocolVersion = value(client + "ProtocolVersion") == "3.1.1" ? MqttVersion::kV311 : MqttVersion::kV5;
    c.transport = value(client + "TransportProtocol") == "TLS" ? MqttTransport::kTls : MqttTransport::kTcp;
    c.keepAliveTime = std::chrono::seconds(num("KeepAliveTime", 60));
    c.clientId = value(client + "ClientID");
    c.username = value(client + "Username");
    c.password = value(client + "Password");
    c.cleanSession = (c.protocolVersion == MqttVersion::kV5 ? value(client + "CleanStart")
                                                            : value(client + "CleanSession")) != "false";
    c.connectRetryTime = std::chrono::seconds(std::max<long long>(1, num("ConnectRetryTime", 5)));
    c.connectRetryIntervalMultiplier = static_cast<std::uint32_t>(num("ConnectRetryIntervalMultiplier", 2000));
    c.connectRetryMaxInterval = std::chrono::seconds(num("ConnectRetryMaxInterval", 30720));
    if (auto subs = engine_.resolveObjects(client + "Subscription.*.")) {
        for (const auto& s : *subs) {
            MqttSubscriptionConfig sc;
            sc.topic = value(s + "Topic");
            sc.qos = static_cast<int>(std::strtol(value(s + "QoS").c_str(), nullptr, 10));
            sc.enable = value(s + "Enable") == "true";
            if (!sc.topic.empty()) c.subscriptions.push_back(std::move(sc));
        }
    }
    c.responseTopicConfigured = value(mtpPath + "MQTT.ResponseTopicConfigured");
    c.publishQos = static_cast<int>(std::strtol(value(mtpPath + "MQTT.PublishQoS").c_str(), nullptr, 10));
    c.endpointId = endpointId_;
    // TLS material and EndpointID discovery are berth settings, not TR-181: they live in
    // vendor parameters of the client row when present.
    c.tls.caFile = value(client + "X_BERTH_CAFile");
    c.tls.certFile = value(client + "X_BERTH_CertFile");
    c.tls.keyFile = value(client + "X_BERTH_KeyFile");
    c.publishEndpointId = value(client + "X_BERTH_PublishEndpointID") == "true";
    return c;
}
#endif

void MtpManager::reload() {
    std::map<std::string, bool> wanted;
    auto rows = engine_.resolveObjects("Device.LocalAgent.MTP.*.");
    if (rows) {
        for (const auto& row : *rows) {
            if (value(row + "Enable") != "true") continue;
            std::string protocol = value(row + "Protocol");
#ifdef BERTH_WITH_MQTT
            if (protocol == "MQTT") {
                std::string client = value(row + "MQTT.Reference");
                if (client.empty() || value(client + "Enable") == "false") continue;
                auto cfg = mqttConfigFor(row, client);
                if (!cfg) continue;
                wanted[row] = true;
                auto it = bindings_.find(row);
                if (it != bindings_.end() && it->second.reference == client) {
                    auto* mqtt = static_cast<transports::MqttClient*>(it->second.mtp.get());
                    if (auto st = mqtt->applyConfig(*cfg); !st) {
                        BERTH_LOG_ERROR("mtp") << row << ": new MQTT settings refused, keeping the old ones: "
                                               << st.error().describe();
                    }
                    continue;
                }
                if (it != bindings_.end()) {
                    it->second.mtp->stop();
                    bindings_.erase(it);
                }
                auto created = transports::MqttClient::create(loop_, *cfg);
                if (!created) {
                    BERTH_LOG_ERROR("mtp") << row << " (" << client << "): " << created.error().describe();
                    continue;
                }
                Binding b;
                b.mtpPath = row;
                b.reference = client;
                b.mtp = std::move(*created);
                b.mqttConfig = *cfg;
                b.mtp->onRecord([this, row](transports::InboundRecord r) { onRecord_(row, std::move(r)); });
                b.mtp->onStatus([this, row](transports::MtpStatus s, const std::string& d) { onStatus(row, s, d); });
                auto* raw = b.mtp.get();
                bindings_[row] = std::move(b);
                if (auto st = raw->start(); !st) BERTH_LOG_ERROR("mtp") << row << ": " << st.error().describe();
                BERTH_LOG_INFO("mtp") << row << " MQTT via " << client << " to " << cfg->brokerAddress << ":"
                                      << cfg->brokerPort;
                continue;
            }
#endif
            BERTH_LOG_WARN("mtp") << row << ": protocol '" << protocol << "' is not built into this agent";
        }
    }
    for (auto it = bindings_.begin(); it != bindings_.end();) {
        if (!wanted.count(it->first)) {
            BERTH_LOG_INFO("mtp") << it->first << " stopped";
            it->second.mtp->stop();
            it = bindings_.erase(it);
        } else {
            ++it;
        }
    }
}

void MtpManager::onStatus(const std::string& mtpPath, transports::MtpStatus s, const std::string& detail) {
    auto it = bindings_.find(mtpPath);
    if (it == bindings_.end()) return;
    bool changed = it->second.lastStatus != s;
    it->second.lastStatus = s;
    if (s == transports::MtpStatus::kError) BERTH_LOG_WARN("mtp") << mtpPath << ": " << detail;
    if (changed) {
        (void)engine_.notifyValueChanged(mtpPath + "Status");
        (void)engine_.notifyValueChanged(it->second.reference + "Status");
    }
#ifdef BERTH_WITH_MQTT
    if (s == transports::MtpStatus::kUp && it->second.mtp->protocol() == "MQTT") {
        // R-MQTT.9/11: keep the ClientID the broker assigned, so the next connection (also
        // after a restart) reuses it. The client treats this write-back as no change.
        auto* mqtt = static_cast<transports::MqttClient*>(it->second.mtp.get());
        std::string assigned = mqtt->figures().assignedClientId;
        const std::string& client = it->second.reference;
        if (!assigned.empty() && value(client + "ClientID").empty()) {
            if (auto st = engine_.setValue(client + "ClientID", assigned); !st)
                BERTH_LOG_WARN("mtp") << "cannot keep the assigned ClientID: " << st.error().describe();
        }
    }
#endif
    if (s == transports::MtpStatus::kUp && onUp_) onUp_(mtpPath, detail);
}

void MtpManager::stopAll() {
    for (auto& [k, b] : bindings_) b.mtp->stop();
    bindings_.clear();
}

}  // namespace berth::agent
