#include "session.h"

#include "berth/core/log.h"
#include "berth/transports/websocket.h"

namespace berthctl {

Session::~Session() = default;

std::string Session::agentDestination() const {
    switch (options_.transport.kind) {
        case TransportKind::kMqtt:
        case TransportKind::kStomp:
            return options_.agentAddress;
        case TransportKind::kWebSocket:
            return std::string(berth::transports::WebSocketClient::kSessionKey);
        case TransportKind::kWebSocketListen:
            return link_->peerSession();
    }
    return {};
}

std::unique_ptr<Session> Session::open(berth::EventLoop& loop, SessionOptions options) {
    if (options.transport.kind == TransportKind::kStomp) {
        if (options.controllerAddress.empty())
            options.controllerAddress = "/queue/" + defaultControllerTopic(options.controllerId);
        if (options.agentAddress.empty()) options.agentAddress = "/queue/usp/agent/" + options.agentId;
    } else if (options.transport.kind == TransportKind::kMqtt) {
        if (options.controllerAddress.empty()) options.controllerAddress = defaultControllerTopic(options.controllerId);
        if (options.agentAddress.empty()) options.agentAddress = "usp/agent/" + options.agentId;
    } else {
        options.agentAddress =
            options.transport.kind == TransportKind::kWebSocket ? "its session" : "the session it opens";
    }
    std::unique_ptr<Session> s(new Session(std::move(options)));
    const auto& o = s->options_;
    LinkOptions lo;
    lo.transport = o.transport;
    lo.controllerId = o.controllerId;
    lo.controllerAddress = o.controllerAddress;
    lo.peerId = o.agentId;
    lo.timeout = o.timeout;
    s->link_ = ControllerLink::open(loop, std::move(lo));
    Session* self = s.get();
    s->link_->onRequest([self](const std::string& fromId, const usp::Msg& msg) {
        if (fromId != self->options_.agentId) {
            BERTH_LOG_DEBUG("berthctl") << "ignoring a request from " << fromId;
        } else if (self->notifyHandler_) {
            self->notifyHandler_(msg);
        }
    });
    if (o.transport.kind == TransportKind::kWebSocketListen &&
        !s->waitFor([self] { return !self->link_->peerSession().empty(); }, o.timeout)) {
        throw Failure(kExitNoBroker,
                      s->interrupted() ? std::string("interrupted while waiting for the agent")
                                       : "agent " + o.agentId + " did not open a session with the " +
                                             describeTransport(o.transport) + " within " + describeSeconds(o.timeout) +
                                             " (does its Controller.{i}.MTP.{j}.WebSocket row point here?)");
    }
    return s;
}

std::string Session::nextMsgId() {
    return link_->nextMsgId();
}

void Session::send(const usp::Msg& msg) {
    auto record = link_->encode(msg, options_.agentId);
    if (!record) throw Failure(kExitUsage, "cannot encode the request: " + record.error().describe());
    if (auto st = link_->sendRecord(std::move(*record), agentDestination()); !st)
        throw Failure(kExitNoBroker,
                      "cannot send to " + describeTransport(options_.transport) + ": " + st.error().describe());
}

usp::Msg Session::request(const usp::Msg& msg, std::optional<std::chrono::milliseconds> timeout) {
    auto wait = timeout.value_or(options_.timeout);
    const std::string id = msg.header().msg_id();
    std::optional<usp::Msg> answer;
    // The wait below ends at the same deadline as the link's timer; the session's own
    // message (naming addresses and the transport) is the one people see.
    link_->expect(
        id, options_.agentId,
        [&answer](berth::Result<usp::Msg> r) {
            if (r) answer = std::move(*r);
        },
        wait);
    struct Forget {
        ControllerLink& link;
        const std::string& id;
        ~Forget() { link.forget(id); }
    } forget{*link_, id};
    send(msg);
    bool answered = waitFor([&answer] { return answer.has_value(); }, wait);
    if (!answered) {
        if (interrupted()) throw Failure(kExitNoAnswer, "interrupted while waiting for the answer");
        throw Failure(kExitNoAnswer,
                      "no answer from agent " + options_.agentId + " (at " + options_.agentAddress + ") within " +
                          describeSeconds(wait) + " via the " + describeTransport(options_.transport) +
                          "; is the agent running, connected to this transport, and does it know controller " +
                          options_.controllerId +
                          (options_.controllerAddress.empty() ? std::string()
                                                              : " (replies go to " + options_.controllerAddress + ")") +
                          "?");
    }
    return std::move(*answer);
}

}  // namespace berthctl
