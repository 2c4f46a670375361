#include "fleet_session.h"

#include "berth/core/log.h"

namespace berthctl::fleet {

using berth::Error;
using berth::ErrorCode;

FleetSession::~FleetSession() = default;

std::unique_ptr<FleetSession> FleetSession::open(berth::EventLoop& loop, FleetOptions options) {
    if (options.transport.kind != TransportKind::kMqtt)
        throw Failure(kExitUsage, "berthctl fleet speaks MQTT only (one connection, one topic per agent)");
    if (options.controllerTopic.empty()) options.controllerTopic = defaultControllerTopic(options.controllerId);
    std::unique_ptr<FleetSession> s(new FleetSession(loop, std::move(options)));
    const auto& o = s->options_;
    LinkOptions lo;
    lo.transport = o.transport;
    lo.controllerId = o.controllerId;
    lo.controllerAddress = o.controllerTopic;
    lo.timeout = o.timeout;
    lo.clientIdPrefix = "berthctl-fleet";
    lo.msgIdPrefix = "berthctl-fleet";
    // A rollout keeps at most --concurrency requests in flight; Gets to a whole fleet may
    // queue more, so the bound is generous.
    lo.maxUnsentMessages = 100000;
    lo.maxUnsentBytes = 256u * 1024 * 1024;
    s->link_ = ControllerLink::open(loop, std::move(lo));
    FleetSession* self = s.get();
    s->link_->onRequest([self](const std::string& fromId, const usp::Msg& msg) {
        if (self->notifyHandler_ && msg.body().request().has_notify()) self->notifyHandler_(fromId, msg);
    });
    return s;
}

std::string FleetSession::nextMsgId() {
    return link_->nextMsgId();
}

std::string FleetSession::agentTopic(const std::string& agentId) const {
    std::string t = options_.agentTopicPattern;
    for (auto at = t.find("{id}"); at != std::string::npos; at = t.find("{id}", at + agentId.size()))
        t.replace(at, 4, agentId);
    return t;
}

berth::Status FleetSession::send(const std::string& agentId, const usp::Msg& msg) {
    return link_->send(msg, agentId, agentTopic(agentId));
}

void FleetSession::request(const std::string& agentId, const usp::Msg& msg, AnswerHandler handler,
                           std::optional<std::chrono::milliseconds> timeout) {
    if (auto st = link_->send(msg, agentId, agentTopic(agentId)); !st) {
        Error e(ErrorCode::kMessageFailed, "cannot send to " + agentId + ": " + st.error().message);
        loop_.post([handler = std::move(handler), e] { handler(e); });
        return;
    }
    link_->expect(msg.header().msg_id(), agentId, std::move(handler), timeout.value_or(options_.timeout));
}

}  // namespace berthctl::fleet
