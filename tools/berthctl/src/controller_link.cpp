#include "controller_link.h"

#include <unistd.h>

#include <random>
#include <sstream>

#include "berth/core/log.h"
#include "berth/transports/stomp.h"
#include "berth/transports/websocket.h"

namespace berthctl {

using namespace std::chrono_literals;
using berth::Error;
using berth::ErrorCode;
using berth::transports::MqttVersion;
using berth::transports::MtpStatus;

namespace {

std::string randomTag() {
    std::random_device rd;
    std::ostringstream os;
    os << std::hex << (static_cast<std::uint64_t>(rd()) << 32 | rd());
    return os.str();
}

}  // namespace

std::string describeSeconds(std::chrono::milliseconds d) {
    std::ostringstream os;
    os << static_cast<double>(d.count()) / 1000.0 << " s";
    return os.str();
}

berth::Result<std::pair<std::string, int>> parseHostPort(const std::string& text, int defaultPort) {
    std::string host = text;
    std::string port;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string::npos) return Error(ErrorCode::kInvalidArguments, "unbalanced '[' in '" + text + "'");
        host = text.substr(1, close - 1);
        if (close + 1 < text.size()) {
            if (text[close + 1] != ':')
                return Error(ErrorCode::kInvalidArguments, "expected ':' after ']' in '" + text + "'");
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
            os << "WebSocket server " << (o.caFile.empty() ? "ws://" : "wss://") << o.host << ":" << o.port << o.wsPath;
            break;
        case TransportKind::kWebSocketListen:
            os << "WebSocket listener " << (o.certFile.empty() ? "ws://" : "wss://") << o.bindAddress << ":" << o.port
               << o.wsPath;
            break;
    }
    return os.str();
}

ControllerLink::ControllerLink(berth::EventLoop& loop, LinkOptions options)
    : loop_(loop), options_(std::move(options)), codec_([this] {
          berth::agent::CodecConfig c;
          c.endpointId = options_.controllerId;
          c.servedRequests = {usp::Request::kNotify};
          return c;
      }()) {}

ControllerLink::~ControllerLink() {
    if (mtp_) mtp_->stop();
}

std::unique_ptr<ControllerLink> ControllerLink::open(berth::EventLoop& loop, LinkOptions options) {
    std::unique_ptr<ControllerLink> link(new ControllerLink(loop, std::move(options)));
    link->connect(link->makeTransport());
    return link;
}

std::unique_ptr<ControllerLink> ControllerLink::open(berth::EventLoop& loop, LinkOptions options,
                                                     std::unique_ptr<berth::transports::Mtp> mtp) {
    std::unique_ptr<ControllerLink> link(new ControllerLink(loop, std::move(options)));
    link->connect(std::move(mtp));
    return link;
}

std::unique_ptr<berth::transports::Mtp> ControllerLink::makeTransport() {
    const auto& o = options_;
    auto timeoutSeconds =
        std::max(std::chrono::duration_cast<std::chrono::seconds>(o.timeout + 999ms), std::chrono::seconds(1));
    auto take = [](auto created) -> std::unique_ptr<berth::transports::Mtp> {
        if (!created) throw Failure(kExitUsage, created.error().describe());
        return std::move(*created);
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
            c.clientId = o.clientIdPrefix + "-" + std::to_string(::getpid()) + "-" + randomTag();
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
            if (o.maxUnsentMessages) c.maxUnsentMessages = o.maxUnsentMessages;
            if (o.maxUnsentBytes) c.maxUnsentBytes = o.maxUnsentBytes;
            return take(berth::transports::MqttClient::create(loop_, std::move(c)));
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
            return take(berth::transports::StompClient::create(loop_, std::move(c)));
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
            c.peerEndpointId = o.peerId;
            c.connectTimeout = timeoutSeconds;
            c.sessionRetryMinimumWaitInterval = 1s;
            return take(berth::transports::WebSocketClient::create(loop_, std::move(c)));
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
            (*server)->onSession([this](const berth::transports::WebSocketSessionInfo& info, bool open, int code) {
                BERTH_LOG_DEBUG("berthctl") << "session " << info.key << " from '" << info.peerId << "' "
                                            << (open ? "open" : "closed (" + std::to_string(code) + ")");
                if (info.peerId != options_.peerId) return;
                if (open) {
                    peerSession_ = info.key;
                } else if (peerSession_ == info.key) {
                    peerSession_.clear();
                }
            });
            return std::move(*server);
        }
    }
    throw Failure(kExitUsage, "unknown transport");
}

void ControllerLink::connect(std::unique_ptr<berth::transports::Mtp> mtp) {
    mtp_ = std::move(mtp);
    const auto& o = options_;
    mtp_->onStatus([this](MtpStatus st, const std::string& detail) {
        BERTH_LOG_DEBUG("berthctl") << "transport " << berth::transports::mtpStatusName(st) << ": " << detail;
        lastStatus_ = std::make_pair(st, detail);
    });
    mtp_->onRecord([this](berth::transports::InboundRecord r) { onRecord(std::move(r)); });
    if (auto st = mtp_->start(); !st)
        throw Failure(kExitNoBroker,
                      "cannot start the " + describeTransport(o.transport) + ": " + st.error().describe());
    bool up = waitFor(
        [this] {
            return lastStatus_ && (lastStatus_->first == MtpStatus::kUp || lastStatus_->first == MtpStatus::kError);
        },
        o.timeout);
    if (!up || lastStatus_->first != MtpStatus::kUp) {
        std::string why = lastStatus_ ? lastStatus_->second : "no answer within " + describeSeconds(o.timeout);
        if (interrupted_) why = "interrupted";
        throw Failure(kExitNoBroker, "cannot connect to the " + describeTransport(o.transport) + ": " + why);
    }
}

std::string ControllerLink::nextMsgId() {
    static const std::string tag = std::to_string(::getpid()) + "-" + randomTag().substr(0, 6);
    return options_.msgIdPrefix + "-" + tag + "-" + std::to_string(++counter_);
}

berth::Result<std::string> ControllerLink::encode(const usp::Msg& msg, const std::string& toId) {
    return codec_.encodeMsg(msg, toId);
}

berth::Status ControllerLink::sendRecord(std::string record, const std::string& destination) {
    auto st = mtp_->send({std::move(record), destination, berth::transports::RecordKind::kOther});
    if (st) ++sent_;
    return st;
}

berth::Status ControllerLink::send(const usp::Msg& msg, const std::string& toId, const std::string& destination) {
    auto record = encode(msg, toId);
    if (!record) return record.error();
    return sendRecord(std::move(*record), destination);
}

void ControllerLink::expect(const std::string& msgId, const std::string& fromId, AnswerHandler handler,
                            std::chrono::milliseconds timeout) {
    Pending p;
    p.fromId = fromId;
    p.handler = std::move(handler);
    p.timer = loop_.createTimer([this, msgId, fromId, timeout] {
        auto it = pending_.find(msgId);
        if (it == pending_.end()) return;
        auto h = std::move(it->second.handler);
        pending_.erase(it);
        h(Error(ErrorCode::kMessageFailed, "no answer from " + fromId + " within " + describeSeconds(timeout)));
    });
    p.timer->start(timeout);
    pending_[msgId] = std::move(p);
}

void ControllerLink::forget(const std::string& msgId) {
    pending_.erase(msgId);
}

bool ControllerLink::waitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        auto now = std::chrono::steady_clock::now();
        if (now >= deadline || interrupted_) return pred();
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
        loop_.runOnce(std::min(left, std::chrono::milliseconds(200)) + 1ms);
    }
    return true;
}

void ControllerLink::onRecord(berth::transports::InboundRecord record) {
    ++received_;
    auto d = codec_.decode(record.payload);
    using berth::agent::DecodeKind;
    switch (d.kind) {
        case DecodeKind::kResponse:
        case DecodeKind::kError: {
            auto it = pending_.find(d.msgId);
            if (it == pending_.end() || it->second.fromId != d.fromId) {
                BERTH_LOG_DEBUG("berthctl") << "ignoring an answer to " << d.msgId << " from " << d.fromId;
                break;
            }
            auto h = std::move(it->second.handler);
            pending_.erase(it);
            h(std::move(d.msg));
            break;
        }
        case DecodeKind::kRequest:
            if (requestHandler_) requestHandler_(d.fromId, d.msg);
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
