#include "fleet_session.h"

#include <unistd.h>

#include <random>
#include <sstream>

#include "berth/core/log.h"

namespace berthctl::fleet {

using namespace std::chrono_literals;
using berth::Error;
using berth::ErrorCode;
using berth::transports::MtpStatus;

namespace {

std::string randomTag() {
    std::random_device rd;
    std::ostringstream os;
    os << std::hex << (static_cast<std::uint64_t>(rd()) << 32 | rd());
    return os.str();
}

std::string seconds(std::chrono::milliseconds d) {
    std::ostringstream os;
    os << static_cast<double>(d.count()) / 1000.0 << " s";
    return os.str();
}

}  // namespace

FleetSession::FleetSession(berth::EventLoop& loop, FleetOptions options)
    : loop_(loop), options_(std::move(options)), codec_([&] {
          berth::agent::CodecConfig c;
          c.endpointId = options_.controllerId;
          c.servedRequests = {usp::Request::kNotify};
          return c;
      }()) {}

FleetSession::~FleetSession() {
    if (mtp_) mtp_->stop();
}

std::unique_ptr<FleetSession> FleetSession::open(berth::EventLoop& loop, FleetOptions options) {
    if (options.transport.kind != TransportKind::kMqtt)
        throw Failure(kExitUsage, "berthctl fleet speaks MQTT only (one connection, one topic per agent)");
    if (options.controllerTopic.empty()) options.controllerTopic = defaultControllerTopic(options.controllerId);
    std::unique_ptr<FleetSession> s(new FleetSession(loop, std::move(options)));
    const auto& o = s->options_;
    berth::transports::MqttClientConfig c;
    c.brokerAddress = o.transport.host;
    c.brokerPort = o.transport.port;
    c.protocolVersion = o.transport.mqttVersion;
    c.endpointId = o.controllerId;
    c.clientId = "berthctl-fleet-" + std::to_string(::getpid()) + "-" + randomTag();
    c.responseTopicConfigured = o.controllerTopic;
    c.username = o.transport.username;
    c.password = o.transport.password;
    if (!o.transport.caFile.empty()) {
        c.transport = berth::transports::MqttTransport::kTls;
        c.tls.caFile = o.transport.caFile;
        c.tls.certFile = o.transport.certFile;
        c.tls.keyFile = o.transport.keyFile;
    }
    c.connectTimeout = std::max(std::chrono::duration_cast<std::chrono::seconds>(o.timeout + 999ms), 1s);
    c.connectRetryTime = 1s;
    c.publishQos = 1;
    // A rollout keeps at most --concurrency requests in flight; Gets to a whole fleet may
    // queue more, so the bound is generous.
    c.maxUnsentMessages = 100000;
    c.maxUnsentBytes = 256u * 1024 * 1024;
    auto created = berth::transports::MqttClient::create(loop, std::move(c));
    if (!created) throw Failure(kExitUsage, created.error().describe());
    s->mtp_ = std::move(*created);

    FleetSession* self = s.get();
    s->mtp_->onStatus([self](MtpStatus st, const std::string& detail) {
        BERTH_LOG_DEBUG("berthctl") << "transport " << berth::transports::mtpStatusName(st) << ": " << detail;
        self->lastStatus_ = std::make_pair(st, detail);
    });
    s->mtp_->onRecord([self](berth::transports::InboundRecord r) { self->onRecord(std::move(r)); });
    if (auto st = s->mtp_->start(); !st)
        throw Failure(kExitNoBroker,
                      "cannot start the " + describeTransport(o.transport) + ": " + st.error().describe());
    bool up = s->waitFor(
        [self] {
            return self->lastStatus_ &&
                   (self->lastStatus_->first == MtpStatus::kUp || self->lastStatus_->first == MtpStatus::kError);
        },
        o.timeout);
    if (!up || s->lastStatus_->first != MtpStatus::kUp) {
        std::string why = s->lastStatus_ ? s->lastStatus_->second : "no answer within " + seconds(o.timeout);
        if (s->interrupted_) why = "interrupted";
        throw Failure(kExitNoBroker, "cannot connect to the " + describeTransport(o.transport) + ": " + why);
    }
    return s;
}

std::string FleetSession::nextMsgId() {
    static const std::string tag = std::to_string(::getpid()) + "-" + randomTag().substr(0, 6);
    return "berthctl-fleet-" + tag + "-" + std::to_string(++counter_);
}

std::string FleetSession::agentTopic(const std::string& agentId) const {
    std::string t = options_.agentTopicPattern;
    for (auto at = t.find("{id}"); at != std::string::npos; at = t.find("{id}", at + agentId.size()))
        t.replace(at, 4, agentId);
    return t;
}

berth::Status FleetSession::send(const std::string& agentId, const usp::Msg& msg) {
    auto record = codec_.encodeMsg(msg, agentId);
    if (!record) return record.error();
    auto st = mtp_->send({std::move(*record), agentTopic(agentId), berth::transports::RecordKind::kOther});
    if (st) ++sent_;
    return st;
}

void FleetSession::request(const std::string& agentId, const usp::Msg& msg, AnswerHandler handler,
                           std::optional<std::chrono::milliseconds> timeout) {
    std::string id = msg.header().msg_id();
    if (auto st = send(agentId, msg); !st) {
        Error e(ErrorCode::kMessageFailed, "cannot send to " + agentId + ": " + st.error().message);
        loop_.post([handler = std::move(handler), e] { handler(e); });
        return;
    }
    auto wait = timeout.value_or(options_.timeout);
    Pending p;
    p.agentId = agentId;
    p.handler = std::move(handler);
    p.timer = loop_.createTimer([this, id, agentId, wait] {
        auto it = pending_.find(id);
        if (it == pending_.end()) return;
        auto h = std::move(it->second.handler);
        pending_.erase(it);
        h(Error(ErrorCode::kMessageFailed, "no answer from " + agentId + " within " + seconds(wait)));
    });
    p.timer->start(wait);
    pending_[id] = std::move(p);
}

bool FleetSession::waitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        auto now = std::chrono::steady_clock::now();
        if (now >= deadline || interrupted_) return pred();
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
        loop_.runOnce(std::min(left, std::chrono::milliseconds(200)) + 1ms);
    }
    return true;
}

void FleetSession::onRecord(berth::transports::InboundRecord record) {
    ++received_;
    auto d = codec_.decode(record.payload);
    using berth::agent::DecodeKind;
    switch (d.kind) {
        case DecodeKind::kResponse:
        case DecodeKind::kError: {
            auto it = pending_.find(d.msgId);
            if (it == pending_.end() || it->second.agentId != d.fromId) {
                BERTH_LOG_DEBUG("berthctl") << "ignoring an answer to " << d.msgId << " from " << d.fromId;
                break;
            }
            auto h = std::move(it->second.handler);
            pending_.erase(it);
            h(std::move(d.msg));
            break;
        }
        case DecodeKind::kRequest:
            if (notifyHandler_ && d.msg.body().request().has_notify()) notifyHandler_(d.fromId, d.msg);
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

}  // namespace berthctl::fleet
