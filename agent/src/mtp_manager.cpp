#include "mtp_manager.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "berth/core/log.h"
#include "berth/datamodel/path.h"

namespace berth::agent {

namespace {

constexpr const char* kTag = "mtp";
constexpr std::string_view kControllerPrefix = "Device.LocalAgent.Controller.";

bool startsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }
bool endsWith(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// A printable record of every field that matters, so a reload that changes nothing
// leaves a running binding alone (applyConfig() would reconnect).
class Fingerprint {
public:
    template <typename T>
    Fingerprint& operator<<(const T& v) {
        os_ << v << '\x1f';
        return *this;
    }
    std::string str() const { return os_.str(); }

private:
    std::ostringstream os_;
};

// STOMP and WebSocket TLS settings take CA certificates from a file only; a trust
// store directory is left to MQTT (caDir) and these use the system store then.
template <typename Tls, typename Defaults>
void applyTlsDefaults(Tls& tls, const Defaults& d) {
    if (tls.certFile.empty()) tls.certFile = d.certFile;
    std::error_code ec;
    if (tls.caFile.empty() && !d.trustStore.empty() && !std::filesystem::is_directory(d.trustStore, ec))
        tls.caFile = d.trustStore;
}

}  // namespace

MtpManager::MtpManager(EventLoop& loop, dm::Engine& engine, std::string endpointId, RecordSink onRecord, UpSink onUp)
    : loop_(loop),
      pool_(loop, 2),
      engine_(engine),
      endpointId_(std::move(endpointId)),
      onRecord_(std::move(onRecord)),
      onUp_(std::move(onUp)) {
    reloadTimer_ = loop_.createTimer([this] {
        if (!stopped_) reload();
    });
}

MtpManager::~MtpManager() {
    if (listening_) engine_.removeListener(this);
    stopAll();
}

Status MtpManager::registerWithEngine() {
    BERTH_TRY(engine_.registerProvider("Device.LocalAgent.MTP.{i}.", this, {"Status"}));
    BERTH_TRY(engine_.registerProvider("Device.LocalAgent.MTP.{i}.MQTT.", this, {"ResponseTopicDiscovered"}));
    BERTH_TRY(engine_.registerProvider("Device.MQTT.Client.{i}.", this, {"Status"}));
    BERTH_TRY(engine_.registerProvider("Device.STOMP.Connection.{i}.", this, {"Status"}));
    BERTH_TRY(engine_.registerProvider("Device.LocalAgent.MTP.{i}.STOMP.", this, {"DestinationFromServer"}));
    BERTH_TRY(engine_.registerProvider("Device.LocalAgent.Controller.{i}.MTP.{i}.WebSocket.", this,
                                       {"CurrentRetryCount"}));
    BERTH_TRY(engine_.registerCommand("Device.LocalAgent.Controller.{i}.MTP.{i}.WebSocket.Reset()",
                                      [this](const dm::CommandCall& call) { return resetWebSocket(call); }));
    engine_.addListener(this);
    listening_ = true;
    return {};
}

Result<dm::ArgMap> MtpManager::resetWebSocket(const dm::CommandCall& call) {
    std::string row = call.objPath.substr(0, call.objPath.size() - std::string("WebSocket.").size());
#ifdef BERTH_WITH_WEBSOCKET
    Binding* b = binding(row);
    if (b && b->kind == Kind::kWsClient) {
        if (b->suspended)
            return Error(ErrorCode::kCommandFailure,
                         "the controller has a session with the agent's WebSocket server (R-WS.4)");
        static_cast<transports::WebSocketClient*>(b->mtp.get())->reset();
        BERTH_LOG_INFO(kTag) << row << ": WebSocket.Reset()";
        return dm::ArgMap{};
    }
#endif
    return Error(ErrorCode::kCommandFailure,
                 row + " has no WebSocket session to reset (disabled, no Host, or not a WebSocket row)");
}

std::string MtpManager::value(const std::string& path) const {
    auto v = engine_.getValue(path);
    return v ? *v : std::string();
}

long long MtpManager::number(const std::string& path, long long dflt) const {
    std::string v = value(path);
    if (v.empty()) return dflt;
    return std::strtoll(v.c_str(), nullptr, 10);
}

MtpManager::Binding* MtpManager::binding(const std::string& name) {
    auto it = bindings_.find(name);
    return it == bindings_.end() ? nullptr : &it->second;
}

const MtpManager::Binding* MtpManager::binding(const std::string& name) const {
    auto it = bindings_.find(name);
    return it == bindings_.end() ? nullptr : &it->second;
}

transports::Mtp* MtpManager::find(const std::string& path) {
    if (path.empty()) return nullptr;
    // Binding keys and references are object paths ("Device.LocalAgent.MTP.1."); callers
    // may hold a reference value in its stored form ("Device.MQTT.Client.1").
    const std::string obj = dm::referencedObject(path);
    for (auto& [key, b] : bindings_)
        if (key == obj || b.reference == obj) return b.mtp.get();
    return nullptr;
}

std::string MtpManager::mtpPathFor(const std::string& reference) const {
    if (reference.empty()) return {};
    const std::string obj = dm::referencedObject(reference);
    for (const auto& [key, b] : bindings_)
        if (b.reference == obj || key == obj) return key;
    return {};
}

bool MtpManager::isWebSocket(const std::string& mtpPath) const {
    const Binding* b = binding(mtpPath);
    return b && (b->kind == Kind::kWsClient || b->kind == Kind::kWsServer);
}

std::optional<MtpManager::Route> MtpManager::routeFor(const std::string& endpointId, const ControllerMtp& m) {
    auto up = [](const Binding& b) { return b.mtp && b.mtp->status() == transports::MtpStatus::kUp; };
    if (m.protocol == "MQTT" || m.protocol == "STOMP") {
        if (m.destination.empty()) return std::nullopt;
        Kind kind = m.protocol == "MQTT" ? Kind::kMqtt : Kind::kStomp;
        for (const auto& [key, b] : bindings_) {
            if (b.kind != kind || !up(b)) continue;
            const std::string ref = dm::referencedObject(m.agentMtpRef);
            if (!ref.empty() && b.reference != ref && key != ref) continue;
            return Route{key, m.destination};
        }
        return std::nullopt;
    }
    if (m.protocol == "WebSocket") {
        if (const Binding* b = binding(m.path); b && b->kind == Kind::kWsClient && up(*b))
            return Route{m.path, ""};
        return webSocketSessionWith(endpointId);
    }
    return std::nullopt;
}

std::optional<MtpManager::Route> MtpManager::webSocketSessionWith(const std::string& endpointId) const {
#ifdef BERTH_WITH_WEBSOCKET
    if (endpointId.empty()) return std::nullopt;
    for (const auto& [key, b] : bindings_) {
        if (b.kind != Kind::kWsServer) continue;
        std::string session = static_cast<const transports::WebSocketServer*>(b.mtp.get())->sessionForPeer(endpointId);
        if (!session.empty()) return Route{key, session};
    }
#else
    (void)endpointId;
#endif
    return std::nullopt;
}

std::optional<std::string> MtpManager::serverSessionPeer(const std::string& mtpPath, const std::string& key) const {
#ifdef BERTH_WITH_WEBSOCKET
    const Binding* b = binding(mtpPath);
    if (!b || b->kind != Kind::kWsServer) return std::nullopt;
    for (const auto& s : static_cast<const transports::WebSocketServer*>(b->mtp.get())->figures().sessions)
        if (s.key == key) return s.peerId;
#else
    (void)mtpPath;
    (void)key;
#endif
    return std::nullopt;
}

void MtpManager::closeUndecodable(const std::string& mtpPath, const std::string& sessionKey, const std::string& why) {
#ifdef BERTH_WITH_WEBSOCKET
    Binding* b = binding(mtpPath);
    if (!b) return;
    Status st;
    if (b->kind == Kind::kWsServer) {
        st = static_cast<transports::WebSocketServer*>(b->mtp.get())
                 ->closeSession(sessionKey, transports::WsCloseCode::kUnsupportedData, why);
    } else if (b->kind == Kind::kWsClient) {
        st = static_cast<transports::WebSocketClient*>(b->mtp.get())
                 ->closeSession(transports::WsCloseCode::kUnsupportedData, why);
    } else {
        return;
    }
    if (!st) BERTH_LOG_WARN(kTag) << mtpPath << ": cannot close session " << sessionKey << ": " << st.error().describe();
#else
    (void)mtpPath;
    (void)sessionKey;
    (void)why;
#endif
}

Status MtpManager::validateSet(const dm::ObjectView& obj, const std::vector<std::string_view>& changed) {
    if (std::find(changed.begin(), changed.end(), "Reference") == changed.end()) return okStatus();
    const std::string& path = obj.path();
    if (!startsWith(path, "Device.LocalAgent.MTP.")) return okStatus();
    // "Device.LocalAgent.MTP.1." or "Device.LocalAgent.MTP.1.MQTT." -> the MTP row.
    auto end = path.find('.', std::string_view("Device.LocalAgent.MTP.").size());
    if (end == std::string::npos) return okStatus();
    const std::string row = path.substr(0, end + 1);
    if (value(row + "Enable") != "true") return okStatus();
    const std::string protocol = value(row + "Protocol");
    std::string refParam, need;
    if (protocol == "MQTT") refParam = row + "MQTT.Reference", need = "BrokerAddress";
    else if (protocol == "STOMP") refParam = row + "STOMP.Reference", need = "Host";
    else return okStatus();
    const std::string ref = value(refParam);
    if (ref.empty())
        return Error(ErrorCode::kInvalidValue, "the enabled " + protocol + " MTP " + row + " needs a reference", refParam);
    const std::string target = dm::referencedObject(ref);
    // The same test reloadMtpRow() applies before it starts a binding.
    const std::string enable = value(target + "Enable");
    if (protocol == "MQTT" ? enable == "false" : enable != "true")
        return Error(ErrorCode::kInvalidValue,
                     ref + " is disabled: the enabled MTP " + row + " would lose its connection", refParam);
    if (value(target + need).empty())
        return Error(ErrorCode::kInvalidValue,
                     ref + " has no " + need + ": the enabled MTP " + row + " would lose its connection", refParam);
    return okStatus();
}

Result<std::string> MtpManager::get(const dm::ObjectView& obj, std::string_view param) {
    const std::string& path = obj.path();
    const bool mqttClient = startsWith(path, "Device.MQTT.");
    const bool stompConnection = startsWith(path, "Device.STOMP.");
    auto statusOf = [&](const std::string& key) -> std::string {
        for (auto& [k, b] : bindings_) {
            if (k != key && b.reference != key) continue;
            switch (b.lastStatus) {
                case transports::MtpStatus::kUp:
                    return mqttClient ? "Connected" : stompConnection ? "Enabled" : "Up";
                case transports::MtpStatus::kConnecting: return "Connecting";
                case transports::MtpStatus::kError:
                    return mqttClient ? "Error_BrokerUnreachable" : stompConnection ? "ServerNotPresent" : "Error";
                case transports::MtpStatus::kDown: break;
            }
        }
        return mqttClient || stompConnection ? "Disabled" : "Down";
    };
    if (param == "Status") return statusOf(path);
    if (param == "ResponseTopicDiscovered") {
        std::string row = path.substr(0, path.size() - std::string("MQTT.").size());
        const Binding* b = binding(row);
        return b && b->kind == Kind::kMqtt ? b->mtp->agentAddress() : std::string();
    }
#ifdef BERTH_WITH_STOMP
    if (param == "DestinationFromServer") {
        std::string row = path.substr(0, path.size() - std::string("STOMP.").size());
        const Binding* b = binding(row);
        if (!b || b->kind != Kind::kStomp) return std::string();
        return static_cast<const transports::StompClient*>(b->mtp.get())->figures().destinationFromServer;
    }
#endif
#ifdef BERTH_WITH_WEBSOCKET
    if (param == "CurrentRetryCount") {
        std::string row = path.substr(0, path.size() - std::string("WebSocket.").size());
        const Binding* b = binding(row);
        if (!b || b->kind != Kind::kWsClient) return std::string("0");
        return std::to_string(
            static_cast<const transports::WebSocketClient*>(b->mtp.get())->figures().currentRetryCount);
    }
#endif
    if (param == "DestinationFromServer") return std::string();
    if (param == "CurrentRetryCount") return std::string("0");
    return Error(ErrorCode::kInternalError, "no provided value " + std::string(param));
}

// ------------------------------------------------------------------ configurations

#ifdef BERTH_WITH_MQTT
Result<transports::MqttClientConfig> MtpManager::mqttConfigFor(const std::string& mtpPath,
                                                               const std::string& client) const {
    using namespace transports;
    MqttClientConfig c;
    auto num = [&](const std::string& p, long long dflt) { return number(client + p, dflt); };
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
    // TLS material and EndpointID discovery are berth settings, not TR-181: vendor
    // parameters of the client row (docs/transports.md).
    c.tls.caFile = value(client + "X_BERTH_CAFile");
    c.tls.certFile = value(client + "X_BERTH_CertFile");
    c.tls.keyFile = value(client + "X_BERTH_KeyFile");
    if (c.tls.certFile.empty()) c.tls.certFile = tlsDefaults_.certFile;
    if (c.tls.caFile.empty() && !tlsDefaults_.trustStore.empty()) {
        std::error_code ec;
        (std::filesystem::is_directory(tlsDefaults_.trustStore, ec) ? c.tls.caDir : c.tls.caFile) =
            tlsDefaults_.trustStore;
    }
    c.publishEndpointId = value(client + "X_BERTH_PublishEndpointID") == "true";
    return c;
}
#endif

#ifdef BERTH_WITH_STOMP
transports::StompConfig MtpManager::stompConfigFor(const std::string& mtpPath, const std::string& conn) const {
    transports::StompConfig c;
    c.host = value(conn + "Host");
    c.port = static_cast<int>(number(conn + "Port", 61613));
    c.username = value(conn + "Username");
    c.password = value(conn + "Password");
    c.virtualHost = value(conn + "VirtualHost");
    c.enableEncryption = value(conn + "EnableEncryption") != "false";
    c.tls.caFile = value(conn + "X_BERTH_CAFile");
    c.tls.certFile = value(conn + "X_BERTH_CertFile");
    c.tls.keyFile = value(conn + "X_BERTH_KeyFile");
    applyTlsDefaults(c.tls, tlsDefaults_);
    c.enableHeartbeats = value(conn + "EnableHeartbeats") == "true";
    if (c.enableHeartbeats) {
        c.outgoingHeartbeat = std::chrono::milliseconds(number(conn + "OutgoingHeartbeat", 0));
        c.incomingHeartbeat = std::chrono::milliseconds(number(conn + "IncomingHeartbeat", 0));
    }
    c.serverRetryInitialInterval = std::chrono::seconds(std::max<long long>(1, number(conn + "ServerRetryInitialInterval", 60)));
    c.serverRetryIntervalMultiplier =
        static_cast<std::uint32_t>(std::clamp<long long>(number(conn + "ServerRetryIntervalMultiplier", 2000), 1000, 65535));
    c.serverRetryMaxInterval = std::chrono::seconds(
        std::max<long long>(c.serverRetryInitialInterval.count(), number(conn + "ServerRetryMaxInterval", 30720)));
    c.destination = value(mtpPath + "STOMP.Destination");
    c.endpointId = endpointId_;
    return c;
}
#endif

#ifdef BERTH_WITH_WEBSOCKET
transports::WebSocketServerConfig MtpManager::wsServerConfigFor(const std::string& mtpPath) const {
    const std::string ws = mtpPath + "WebSocket.";
    transports::WebSocketServerConfig c;
    // Interfaces names Device.IP.Interface rows, which this agent does not serve: the
    // address to listen on is a vendor parameter, loopback unless configured.
    c.bindAddress = value(ws + "X_BERTH_BindAddress");
    if (c.bindAddress.empty()) c.bindAddress = "127.0.0.1";
    c.port = static_cast<int>(number(ws + "Port", 8443));
    c.path = value(ws + "Path");
    if (c.path.empty()) c.path = "/usp";
    if (c.path.front() != '/') c.path.insert(c.path.begin(), '/');
    c.enableEncryption = value(ws + "EnableEncryption") != "false";
    c.keepAliveInterval = std::chrono::seconds(std::max<long long>(0, number(ws + "KeepAliveInterval", 60)));
    c.tls.certFile = value(ws + "X_BERTH_CertFile");
    c.tls.keyFile = value(ws + "X_BERTH_KeyFile");
    c.tls.caFile = value(ws + "X_BERTH_CAFile");
    applyTlsDefaults(c.tls, tlsDefaults_);
    // R-MTP.1: with TLS, demand the controller's certificate when we know whom to trust.
    c.tls.requireClientCertificate = c.enableEncryption && !c.tls.caFile.empty();
    return c;
}

transports::WebSocketClientConfig MtpManager::wsClientConfigFor(const std::string& row, const std::string& peerId) const {
    const std::string ws = row + "WebSocket.";
    transports::WebSocketClientConfig c;
    c.host = value(ws + "Host");
    c.port = static_cast<int>(number(ws + "Port", 0));
    c.path = value(ws + "Path");
    if (c.path.empty()) c.path = "/";
    c.enableEncryption = value(ws + "EnableEncryption") != "false";
    long long keepAlive = number(ws + "KeepAliveInterval", 0);
    c.keepAliveInterval = std::chrono::seconds(keepAlive > 0 ? keepAlive : 30);
    c.sessionRetryMinimumWaitInterval =
        std::chrono::seconds(std::clamp<long long>(number(ws + "SessionRetryMinimumWaitInterval", 5), 1, 65535));
    c.sessionRetryIntervalMultiplier = static_cast<std::uint32_t>(
        std::clamp<long long>(number(ws + "SessionRetryIntervalMultiplier", 2000), 1000, 65535));
    c.tls.caFile = value(ws + "X_BERTH_CAFile");
    c.tls.certFile = value(ws + "X_BERTH_CertFile");
    c.tls.keyFile = value(ws + "X_BERTH_KeyFile");
    applyTlsDefaults(c.tls, tlsDefaults_);
    c.endpointId = endpointId_;
    c.peerEndpointId = peerId;
    return c;
}
#endif

// ------------------------------------------------------------------ reload

void MtpManager::install(Binding b, const std::string& describe) {
    const std::string name = b.mtpPath;
    b.mtp->onRecord([this, name](transports::InboundRecord r) { onRecord_(name, std::move(r)); });
    b.mtp->onStatus([this, name](transports::MtpStatus s, const std::string& d) { onStatus(name, s, d); });
#ifdef BERTH_WITH_WEBSOCKET
    if (b.kind == Kind::kWsServer) {
        static_cast<transports::WebSocketServer*>(b.mtp.get())
            ->onSession([this, name](const transports::WebSocketSessionInfo& info, bool open, int) {
                onServerSession(name, info, open);
            });
    }
#endif
    auto* raw = b.mtp.get();
    bindings_[name] = std::move(b);
    if (auto st = raw->start(); !st) BERTH_LOG_ERROR(kTag) << name << ": " << st.error().describe();
    BERTH_LOG_INFO(kTag) << name << " " << describe;
}

void MtpManager::ensure(const std::string& name, Kind kind, const std::string& reference,
                        const std::string& fingerprint,
                        const std::function<Result<std::unique_ptr<transports::Mtp>>()>& make,
                        const std::function<Status(transports::Mtp&)>& apply, const std::string& describe) {
    auto it = bindings_.find(name);
    if (it != bindings_.end() && it->second.kind == kind && it->second.reference == reference) {
        // An empty fingerprint means: let the binding decide (MQTT applies changes in place).
        if (!fingerprint.empty() && it->second.fingerprint == fingerprint) return;
        if (auto st = apply(*it->second.mtp); !st) {
            BERTH_LOG_ERROR(kTag) << name << ": new settings refused, keeping the old ones: " << st.error().describe();
            return;
        }
        it->second.fingerprint = fingerprint;
        BERTH_LOG_INFO(kTag) << name << " reconfigured: " << describe;
        return;
    }
    if (it != bindings_.end()) {
        it->second.mtp->stop();
        bindings_.erase(it);
    }
    auto created = make();
    if (!created) {
        BERTH_LOG_ERROR(kTag) << name << " (" << describe << "): " << created.error().describe();
        return;
    }
    Binding b;
    b.kind = kind;
    b.mtpPath = name;
    b.reference = reference;
    b.fingerprint = fingerprint;
    b.mtp = std::move(*created);
    install(std::move(b), describe);
}

void MtpManager::reloadMtpRow(const std::string& row, std::map<std::string, bool>& wanted) {
    std::string protocol = value(row + "Protocol");
#ifdef BERTH_WITH_MQTT
    if (protocol == "MQTT") {
        // The stored reference is "Device.MQTT.Client.1"; parameters hang off "...1.".
        std::string client = dm::referencedObject(value(row + "MQTT.Reference"));
        if (client.empty() || value(client + "Enable") == "false") return;
        auto cfg = mqttConfigFor(row, client);
        if (!cfg) return;
        wanted[row] = true;
        ensure(
            row, Kind::kMqtt, client, "",
            [&]() -> Result<std::unique_ptr<transports::Mtp>> {
                auto factory = transports::mqttConnectionFactory(mqttLibrary_, pool_);
                if (!factory) return std::move(factory).error();
                auto c = transports::MqttClient::create(loop_, *cfg, std::move(*factory));
                if (!c) return std::move(c).error();
                return std::unique_ptr<transports::Mtp>(std::move(*c));
            },
            [&](transports::Mtp& m) { return static_cast<transports::MqttClient&>(m).applyConfig(*cfg); },
            "MQTT via " + client + " to " + cfg->brokerAddress + ":" + std::to_string(cfg->brokerPort) + " (" +
                std::string(transports::mqttLibraryName(mqttLibrary_)) + ")");
        return;
    }
#endif
#ifdef BERTH_WITH_STOMP
    if (protocol == "STOMP") {
        std::string conn = dm::referencedObject(value(row + "STOMP.Reference"));
        if (conn.empty() || value(conn + "Enable") != "true") return;
        auto cfg = stompConfigFor(row, conn);
        wanted[row] = true;
        Fingerprint fp;
        fp << cfg.host << cfg.port << cfg.username << cfg.password << cfg.virtualHost << cfg.enableEncryption
           << cfg.tls.caFile << cfg.tls.certFile << cfg.tls.keyFile << cfg.enableHeartbeats
           << cfg.outgoingHeartbeat.count() << cfg.incomingHeartbeat.count() << cfg.serverRetryInitialInterval.count()
           << cfg.serverRetryIntervalMultiplier << cfg.serverRetryMaxInterval.count() << cfg.destination;
        ensure(
            row, Kind::kStomp, conn, fp.str(),
            [&]() -> Result<std::unique_ptr<transports::Mtp>> {
                auto c = transports::StompClient::create(loop_, cfg, transports::tcpStompStreamFactory(pool_));
                if (!c) return std::move(c).error();
                return std::unique_ptr<transports::Mtp>(std::move(*c));
            },
            [&](transports::Mtp& m) { return static_cast<transports::StompClient&>(m).applyConfig(cfg); },
            "STOMP via " + conn + " to " + cfg.host + ":" + std::to_string(cfg.port) +
                (cfg.enableEncryption ? " (TLS)" : "") + ", destination '" + cfg.destination + "'");
        return;
    }
#endif
#ifdef BERTH_WITH_WEBSOCKET
    if (protocol == "WebSocket") {
        auto cfg = wsServerConfigFor(row);
        wanted[row] = true;
        Fingerprint fp;
        fp << cfg.bindAddress << cfg.port << cfg.path << cfg.enableEncryption << cfg.keepAliveInterval.count()
           << cfg.tls.caFile << cfg.tls.certFile << cfg.tls.keyFile << cfg.tls.requireClientCertificate;
        ensure(
            row, Kind::kWsServer, "", fp.str(),
            [&]() -> Result<std::unique_ptr<transports::Mtp>> {
                auto s = transports::WebSocketServer::create(loop_, cfg);
                if (!s) return std::move(s).error();
                return std::unique_ptr<transports::Mtp>(std::move(*s));
            },
            [&](transports::Mtp& m) { return static_cast<transports::WebSocketServer&>(m).applyConfig(cfg); },
            std::string("WebSocket server on ") + (cfg.enableEncryption ? "wss://" : "ws://") + cfg.bindAddress +
                ":" + std::to_string(cfg.port) + cfg.path);
        return;
    }
#endif
    BERTH_LOG_WARN(kTag) << row << ": protocol '" << protocol << "' is not built into this agent";
}

void MtpManager::reloadControllerRows(std::map<std::string, bool>& wanted) {
#ifdef BERTH_WITH_WEBSOCKET
    auto controllers = engine_.resolveObjects(std::string(kControllerPrefix) + "*.");
    if (!controllers) return;
    for (const auto& ctrl : *controllers) {
        if (value(ctrl + "Enable") != "true") continue;
        std::string peer = value(ctrl + "EndpointID");
        if (peer.empty()) continue;
        auto rows = engine_.resolveObjects(ctrl + "MTP.*.");
        if (!rows) continue;
        for (const auto& row : *rows) {
            if (value(row + "Enable") != "true" || value(row + "Protocol") != "WebSocket") continue;
            // Without a Host the agent never dials: the controller comes to our server.
            if (value(row + "WebSocket.Host").empty()) continue;
            auto cfg = wsClientConfigFor(row, peer);
            wanted[row] = true;
            Fingerprint fp;
            fp << cfg.host << cfg.port << cfg.path << cfg.enableEncryption << cfg.keepAliveInterval.count()
               << cfg.sessionRetryMinimumWaitInterval.count() << cfg.sessionRetryIntervalMultiplier << cfg.tls.caFile
               << cfg.tls.certFile << cfg.tls.keyFile << cfg.peerEndpointId;
            ensure(
                row, Kind::kWsClient, "", fp.str(),
                [&]() -> Result<std::unique_ptr<transports::Mtp>> {
                    auto c = transports::WebSocketClient::create(loop_, cfg);
                    if (!c) return std::move(c).error();
                    return std::unique_ptr<transports::Mtp>(std::move(*c));
                },
                [&](transports::Mtp& m) { return static_cast<transports::WebSocketClient&>(m).applyConfig(cfg); },
                std::string("WebSocket client to ") + peer + " at " + (cfg.enableEncryption ? "wss://" : "ws://") +
                    cfg.host + ":" + std::to_string(cfg.port) + cfg.path);
            if (Binding* b = binding(row)) b->peerId = peer;
        }
    }
#else
    (void)wanted;
#endif
}

void MtpManager::reload() {
    stopped_ = false;
    ++reloads_;
    std::map<std::string, bool> wanted;
    if (auto rows = engine_.resolveObjects("Device.LocalAgent.MTP.*.")) {
        for (const auto& row : *rows)
            if (value(row + "Enable") == "true") reloadMtpRow(row, wanted);
    }
    reloadControllerRows(wanted);
    for (auto it = bindings_.begin(); it != bindings_.end();) {
        if (!wanted.count(it->first)) {
            BERTH_LOG_INFO(kTag) << it->first << " stopped";
            it->second.mtp->stop();
            it = bindings_.erase(it);
        } else {
            ++it;
        }
    }
}

bool MtpManager::affectsBindings(std::string_view path, bool valueChange) {
    if (startsWith(path, "Device.MQTT.") || startsWith(path, "Device.STOMP.") ||
        startsWith(path, "Device.LocalAgent.MTP.")) {
        // Never our own figures (Status, ResponseTopicDiscovered).
        return !valueChange || !(endsWith(path, "Status") || path.find("ResponseTopicDiscovered") != std::string_view::npos);
    }
    if (!startsWith(path, kControllerPrefix)) return false;
    // Only what feeds WebSocket clients: MTP rows, a controller's Enable and EndpointID,
    // controller rows themselves. Never our own CurrentRetryCount.
    bool relevant = path.find(".MTP.") != std::string_view::npos || endsWith(path, ".Enable") ||
                    endsWith(path, ".EndpointID") || std::count(path.begin(), path.end(), '.') <= 4;
    return relevant && !endsWith(path, "CurrentRetryCount");
}

// The one coalescer: however many rows a message edits (a Set of several MQTT
// parameters, an Add of a row with its values), the bindings are reconfigured once,
// on the next loop turn, after the message.
void MtpManager::scheduleReload(std::string_view path, bool valueChange) {
    if (stopped_ || !affectsBindings(path, valueChange)) return;
    if (!reloadTimer_->armed()) reloadTimer_->start(std::chrono::milliseconds(0));
}

void MtpManager::onValueChange(std::string_view paramPath, std::string_view) { scheduleReload(paramPath, true); }
void MtpManager::onObjectCreated(std::string_view path, const std::vector<std::pair<std::string_view, std::string>>&) {
    scheduleReload(path, false);
}
void MtpManager::onObjectDeleted(std::string_view path) { scheduleReload(path, false); }

// ------------------------------------------------------------------ events

#ifdef BERTH_WITH_WEBSOCKET
MtpManager::Binding* MtpManager::wsClientFor(const std::string& peerId) {
    for (auto& [key, b] : bindings_)
        if (b.kind == Kind::kWsClient && b.peerId == peerId) return &b;
    return nullptr;
}

void MtpManager::onServerSession(const std::string& mtpPath, const transports::WebSocketSessionInfo& info, bool open) {
    Binding* server = binding(mtpPath);
    if (!server) return;
    auto* ws = static_cast<transports::WebSocketServer*>(server->mtp.get());
    Binding* client = info.peerId.empty() ? nullptr : wsClientFor(info.peerId);
    if (open) {
        if (client && !client->suspended && client->mtp->status() == transports::MtpStatus::kUp) {
            // R-WS.4: the agent's own session with this controller came first.
            BERTH_LOG_INFO(kTag) << mtpPath << ": closing session from " << info.peerId << " ("
                                 << info.remoteAddress << "): " << client->mtpPath << " already has a session with it";
            (void)ws->closeSession(info.key, transports::WsCloseCode::kPolicyViolation,
                                   "the agent already has a session with this endpoint");
            return;
        }
        if (client && !client->suspended) {
            BERTH_LOG_INFO(kTag) << client->mtpPath << ": not dialling while " << info.peerId
                                 << " has a session with " << mtpPath;
            client->suspended = true;
            client->mtp->stop();
        }
        if (onUp_) onUp_(mtpPath, info.key);
        return;
    }
    if (client && client->suspended && !webSocketSessionWith(info.peerId)) {
        BERTH_LOG_INFO(kTag) << client->mtpPath << ": " << info.peerId << " left " << mtpPath << ", dialling again";
        client->suspended = false;
        if (auto st = client->mtp->start(); !st) BERTH_LOG_ERROR(kTag) << client->mtpPath << ": " << st.error().describe();
    }
}
#endif

void MtpManager::onStatus(const std::string& mtpPath, transports::MtpStatus s, const std::string& detail) {
    auto it = bindings_.find(mtpPath);
    if (it == bindings_.end()) return;
    bool changed = it->second.lastStatus != s;
    it->second.lastStatus = s;
    if (s == transports::MtpStatus::kError) BERTH_LOG_WARN(kTag) << mtpPath << ": " << detail;
    if (changed) {
        if (it->second.kind != Kind::kWsClient) (void)engine_.notifyValueChanged(mtpPath + "Status");
        if (!it->second.reference.empty()) (void)engine_.notifyValueChanged(it->second.reference + "Status");
    }
#ifdef BERTH_WITH_MQTT
    if (s == transports::MtpStatus::kUp && it->second.kind == Kind::kMqtt) {
        // R-MQTT.9/11: keep the ClientID the broker assigned, so the next connection (also
        // after a restart) reuses it. The client treats this write-back as no change.
        auto* mqtt = static_cast<transports::MqttClient*>(it->second.mtp.get());
        std::string assigned = mqtt->figures().assignedClientId;
        const std::string& client = it->second.reference;
        if (!assigned.empty() && value(client + "ClientID").empty()) {
            if (auto st = engine_.setValue(client + "ClientID", assigned); !st)
                BERTH_LOG_WARN(kTag) << "cannot keep the assigned ClientID: " << st.error().describe();
        }
    }
#endif
    if (s == transports::MtpStatus::kUp && onUp_) onUp_(mtpPath, detail);
}

void MtpManager::stopAll() {
    stopped_ = true;
    if (reloadTimer_) reloadTimer_->cancel();
    for (auto& [k, b] : bindings_) b.mtp->stop();
    bindings_.clear();
}

}  // namespace berth::agent
