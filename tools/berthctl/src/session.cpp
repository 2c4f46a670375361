#include "session.h"

#include <unistd.h>

#include <random>
#include <sstream>

#include "berth/core/log.h"

namespace berthctl {

using namespace std::chrono_literals;
using berth::transports::MtpStatus;
using berth::transports::MqttVersion;

namespace {

std::string randomTag() {
    std::random_device rd;
    std::ostringstream os;
    os << std::hex << (static_cast<std::uint64_t>(rd()) << 32 | rd());
    return os.str();
}

berth::agent::CodecConfig codecConfig(const std::string& controllerId) {
    berth::agent::CodecConfig c;
    c.endpointId = controllerId;
    c.servedRequests = {usp::Request::kNotify};
    return c;
}

std::string seconds(std::chrono::milliseconds d) {
    std::ostringstream os;
    os << static_cast<double>(d.count()) / 1000.0 << " s";
    return os.str();
}

}  // namespace

berth::Result<std::pair<std::string, int>> parseHostPort(const std::string& text, int defaultPort) {
    using berth::Error;
    using berth::ErrorCode;
    std::string host = text;
    std::string port;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string::npos) return Error(ErrorCode::kInvalidArguments, "unbalanced '[' in '" + text + "'");
        host = text.substr(1, close - 1);
        if (close + 1 < text.size()) {
            if (text[close + 1] != ':') return Error(ErrorCode::kInvalidArguments, "expected ':' after ']' in '" + text + "'");
            port = text.substr(close + 2);
        }
    } else if (auto colon = text.rfind(':'); colon != std::string::npos && text.find(':') == colon) {
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    if (host.empty()) host = "127.0.0.1";
    int p = defaultPort;
    if (!port.empty()) {
        try {
            std::size_t used = 0;
            p = std::stoi(port, &used);
            if (used != port.size()) throw std::invalid_argument(port);
        } catch (const std::exception&) {
            return Error(ErrorCode::kInvalidArguments, "bad port '" + port + "' in '" + text + "'");
        }
        if (p < 1 || p > 65535) return Error(ErrorCode::kInvalidArguments, "port out of range in '" + text + "'");
    }
    return std::make_pair(host, p);
}

std::string defaultControllerTopic(const std::string& controllerId) {
    auto colon = controllerId.rfind(':');
    std::string instance = colon == std::string::npos ? controllerId : controllerId.substr(colon + 1);
    return "usp/controller/" + (instance.empty() ? controllerId : instance);
}

std::string describeTransport(const TransportOptions& o) {
    std::ostringstream os;
    switch (o.kind) {
        case TransportKind::kMqtt:
            os << "MQTT " << (o.mqttVersion == MqttVersion::kV5 ? "5.0" : "3.1.1") << " broker "
               << (o.caFile.empty() ? "" : "(TLS) ") << o.host << ":" << o.port;
            break;
        case TransportKind::kStomp:
            os << "STOMP server " << (o.caFile.empty() ? "" : "(TLS) ") << o.host << ":" << o.port;
            break;
        case TransportKind::kWebSocket:
            os << "WebSocket server " << (o.caFile.empty() ? "ws://" : "wss://") << o.host << ":" << o.port
               << o.wsPath;
            break;
        case TransportKind::kWebSocketListen:
            os << "WebSocket listener " << (o.certFile.empty() ? "ws://" : "wss://") << o.bindAddress << ":" << o.port
               << o.wsPath;
            break;
    }
    return os.str();
}

Session::Session(berth::EventLoop& loop, SessionOptions options)
    : loop_(loop), options_(std::move(options)), codec_(codecConfig(options_.controllerId)) {}

Session::~Session() {
    if (mtp_) mtp_->stop();
}

void Session::makeTransport() {
    const auto& o = options_;
    auto timeoutSeconds = std::max(std::chrono::duration_cast<std::chrono::seconds>(o.timeout + 999ms),
                                   std::chrono::seconds(1));
    auto take = [this](auto created) {
        if (!created) throw Failure(kExitUsage, created.error().describe());
        mtp_ = std::move(*created);
    };
    switch (o.transport.kind) {
        case TransportKind::kMqtt: {
            berth::transports::MqttClientConfig c;
            c.brokerAddress = o.transport.host;
            c.brokerPort = o.transport.port;
            c.protocolVersion = o.transport.mqttVersion;
            c.endpointId = o.controllerId;
            // A ClientID of our own, so two berthctl runs with the same endpoint ID (a
            // `watch` beside a `get`) do not push each other off the broker.
            c.clientId = "berthctl-" + std::to_string(::getpid()) + "-" + randomTag();
            c.responseTopicConfigured = o.controllerAddress;
            c.username = o.transport.username;
            c.password = o.transport.password;
            if (!o.transport.caFile.empty()) {
                c.transport = berth::transports::MqttTransport::kTls;
                c.tls.caFile = o.transport.caFile;
                c.tls.certFile = o.transport.certFile;
                c.tls.keyFile = o.transport.keyFile;
            }
            c.connectTimeout = timeoutSeconds;
            c.connectRetryTime = 1s;
            c.publishQos = 1;
            take(berth::transports::MqttClient::create(loop_, std::move(c)));
            break;
        }
        case TransportKind::kStomp: {
            berth::transports::StompConfig c;
            c.host = o.transport.host;
            c.port = o.transport.port;
            c.username = o.transport.username;
            c.password = o.transport.password;
            c.virtualHost = o.transport.virtualHost;
            c.enableEncryption = !o.transport.caFile.empty();
            c.tls.caFile = o.transport.caFile;
            c.tls.certFile = o.transport.certFile;
            c.tls.keyFile = o.transport.keyFile;
            c.destination = o.controllerAddress;
            c.endpointId = o.controllerId;
            c.connectTimeout = timeoutSeconds;
            c.serverRetryInitialInterval = 1s;
            take(berth::transports::StompClient::create(loop_, std::move(c)));
            break;
        }
        case TransportKind::kWebSocket: {
            berth::transports::WebSocketClientConfig c;
            c.host = o.transport.host;
            c.port = o.transport.port;
            c.path = o.transport.wsPath;
            c.enableEncryption = !o.transport.caFile.empty();
            c.tls.caFile = o.transport.caFile;
            c.tls.certFile = o.transport.certFile;
            c.tls.keyFile = o.transport.keyFile;
            c.endpointId = o.controllerId;
            c.peerEndpointId = o.agentId;
            c.connectTimeout = timeoutSeconds;
            c.sessionRetryMinimumWaitInterval = 1s;
            take(berth::transports::WebSocketClient::create(loop_, std::move(c)));
            break;
        }
        case TransportKind::kWebSocketListen: {
            berth::transports::WebSocketServerConfig c;
            c.bindAddress = o.transport.bindAddress;
            c.port = o.transport.port;
            c.path = o.transport.wsPath;
            c.enableEncryption = !o.transport.certFile.empty();
            c.tls.certFile = o.transport.certFile;
            c.tls.keyFile = o.transport.keyFile;
            c.tls.caFile = o.transport.caFile;
            c.tls.requireClientCertificate = c.enableEncryption && !c.tls.caFile.empty();
            c.maxSessions = 4;
            auto server = berth::transports::WebSocketServer::create(loop_, std::move(c));
            if (!server) throw Failure(kExitUsage, server.error().describe());
            const std::string agent = o.agentId;
            (*server)->onSession([this, agent](const berth::transports::WebSocketSessionInfo& info, bool open, int code) {
                BERTH_LOG_DEBUG("berthctl") << "session " << info.key << " from '" << info.peerId << "' "
                                            << (open ? "open" : "closed (" + std::to_string(code) + ")");
                if (info.peerId != agent) return;
                if (open) {
                    agentSession_ = info.key;
                } else if (agentSession_ == info.key) {
                    agentSession_.clear();
                }
            });
            mtp_ = std::move(*server);
            break;
        }
    }
}

std::string Session::agentDestination() const {
    switch (options_.transport.kind) {
        case TransportKind::kMqtt:
        case TransportKind::kStomp: return options_.agentAddress;
        case TransportKind::kWebSocket: return std::string(berth::transports::WebSocketClient::kSessionKey);
        case TransportKind::kWebSocketListen: return agentSession_;
    }
    return {};
}

std::unique_ptr<Session> Session::open(berth::EventLoop& loop, SessionOptions options) {
    if (options.transport.kind == TransportKind::kStomp) {
        if (options.controllerAddress.empty()) options.controllerAddress = "/queue/" + defaultControllerTopic(options.controllerId);
        if (options.agentAddress.empty()) options.agentAddress = "/queue/usp/agent/" + options.agentId;
    } else if (options.transport.kind == TransportKind::kMqtt) {
        if (options.controllerAddress.empty()) options.controllerAddress = defaultControllerTopic(options.controllerId);
        if (options.agentAddress.empty()) options.agentAddress = "usp/agent/" + options.agentId;
    } else {
        options.agentAddress = options.transport.kind == TransportKind::kWebSocket ? "its session" : "the session it opens";
    }
    std::unique_ptr<Session> s(new Session(loop, std::move(options)));
    const auto& o = s->options_;
    s->makeTransport();

    Session* self = s.get();
    s->mtp_->onStatus([self](MtpStatus st, const std::string& detail) {
        BERTH_LOG_DEBUG("berthctl") << "transport " << berth::transports::mtpStatusName(st) << ": " << detail;
        self->lastStatus_ = std::make_pair(st, detail);
    });
    s->mtp_->onRecord([self](berth::transports::InboundRecord r) { self->onRecord(std::move(r)); });
    if (auto st = s->mtp_->start(); !st)
        throw Failure(kExitNoBroker, "cannot start the " + describeTransport(o.transport) + ": " + st.error().describe());

    bool up = s->waitFor(
        [self] { return self->lastStatus_ && (self->lastStatus_->first == MtpStatus::kUp ||
                                               self->lastStatus_->first == MtpStatus::kError); },
        o.timeout);
    if (!up || s->lastStatus_->first != MtpStatus::kUp) {
        std::string why = s->lastStatus_ ? s->lastStatus_->second : "no answer within " + seconds(o.timeout);
        if (s->interrupted_) why = "interrupted";
        throw Failure(kExitNoBroker, "cannot connect to the " + describeTransport(o.transport) + ": " + why);
    }
    if (o.transport.kind == TransportKind::kWebSocketListen &&
        !s->waitFor([self] { return !self->agentSession_.empty(); }, o.timeout)) {
        throw Failure(kExitNoBroker, s->interrupted_ ? std::string("interrupted while waiting for the agent")
                                                     : "agent " + o.agentId + " did not open a session with the " +
                                                           describeTransport(o.transport) + " within " +
                                                           seconds(o.timeout) +
                                                           " (does its Controller.{i}.MTP.{j}.WebSocket row point here?)");
    }
    return s;
}

std::string Session::nextMsgId() {
    static const std::string tag = std::to_string(::getpid()) + "-" + randomTag().substr(0, 6);
    return "berthctl-" + tag + "-" + std::to_string(++counter_);
}

void Session::send(const usp::Msg& msg) {
    auto record = codec_.encodeMsg(msg, options_.agentId);
    if (!record) throw Failure(kExitUsage, "cannot encode the request: " + record.error().describe());
    if (auto st = mtp_->send({std::move(*record), agentDestination(), berth::transports::RecordKind::kOther}); !st)
        throw Failure(kExitNoBroker, "cannot send to " + describeTransport(options_.transport) + ": " +
                                         st.error().describe());
}

usp::Msg Session::request(const usp::Msg& msg, std::optional<std::chrono::milliseconds> timeout) {
    auto wait = timeout.value_or(options_.timeout);
    awaitedMsgId_ = msg.header().msg_id();
    answer_.reset();
    send(msg);
    bool answered = waitFor([this] { return answer_.has_value(); }, wait);
    awaitedMsgId_.clear();
    if (!answered) {
        if (interrupted_) throw Failure(kExitNoAnswer, "interrupted while waiting for the answer");
        throw Failure(kExitNoAnswer,
                      "no answer from agent " + options_.agentId + " (at " + options_.agentAddress + ") within " +
                          seconds(wait) + " via the " + describeTransport(options_.transport) +
                          "; is the agent running, connected to this transport, and does it know controller " +
                          options_.controllerId +
                          (options_.controllerAddress.empty() ? std::string()
                                                              : " (replies go to " + options_.controllerAddress + ")") +
                          "?");
    }
    return std::move(*answer_);
}

bool Session::waitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        auto now = std::chrono::steady_clock::now();
        if (now >= deadline || interrupted_) return pred();
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
        loop_.runOnce(std::min(left, std::chrono::milliseconds(200)) + 1ms);
    }
    return true;
}

void Session::onRecord(berth::transports::InboundRecord record) {
    auto d = codec_.decode(record.payload);
    using berth::agent::DecodeKind;
    switch (d.kind) {
        case DecodeKind::kResponse:
        case DecodeKind::kError:
            if (!awaitedMsgId_.empty() && d.msgId == awaitedMsgId_ && d.fromId == options_.agentId) {
                answer_ = std::move(d.msg);
            } else {
                BERTH_LOG_DEBUG("berthctl") << "ignoring an answer to " << d.msgId << " from " << d.fromId;
            }
            break;
        case DecodeKind::kRequest:
            if (d.fromId != options_.agentId) {
                BERTH_LOG_DEBUG("berthctl") << "ignoring a request from " << d.fromId;
            } else if (notifyHandler_) {
                notifyHandler_(d.msg);
            }
            break;
        case DecodeKind::kConnect:
        case DecodeKind::kDisconnect:
            BERTH_LOG_DEBUG("berthctl") << berth::agent::recordTypeName(d.recordType) << " record from " << d.fromId;
            break;
        case DecodeKind::kReplyWithError:
        case DecodeKind::kDrop:
            BERTH_LOG_DEBUG("berthctl") << "dropping a record from '" << d.fromId
                                        << "': " << (d.problem ? d.problem->describe() : "");
            break;
    }
}

}  // namespace berthctl
