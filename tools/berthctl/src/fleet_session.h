#pragma once
// A Controller's one MQTT connection to a whole fleet: one endpoint ID, one topic we
// listen on, requests published to each agent's own topic (usp/agent/<endpoint id> unless
// the agent's topic pattern says otherwise), answers matched by msg_id, Notify requests
// handed on with the sending agent's endpoint ID.
//
// Unlike Session (one agent, straight-line waits), requests here are asynchronous: the
// handler runs on the loop when the answer arrives or the per-request timeout passes, so
// hundreds of agents can be in flight on one connection.
//
// The connection, Record codec, msg_id matching and timeouts are ControllerLink's
// (controller_link.h), shared with the single-agent Session.
//
// Threading: the loop's thread only (Paho's callbacks are posted into the loop by the
// transport).

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "berth/agent/codec.h"
#include "berth/core/event_loop.h"
#include "berth/core/result.h"
#include "controller_link.h"

namespace berthctl::fleet {

struct FleetOptions {
    TransportOptions transport;  // kind must be kMqtt
    std::string controllerId = "self::berthctl";
    std::string controllerTopic;  // empty: defaultControllerTopic(controllerId)
    // Where an agent listens; "{id}" is replaced by its endpoint ID.
    std::string agentTopicPattern = "usp/agent/{id}";
    std::chrono::milliseconds timeout{10000};  // connecting, and each request by default
};

class FleetSession {
public:
    // The answer (Response or Error message) or, when none came in time or it could not be
    // sent, an Error (kMessageFailed 7000) saying so.
    using AnswerHandler = std::function<void(berth::Result<usp::Msg>)>;
    using NotifyHandler = std::function<void(const std::string& fromId, const usp::Msg& notify)>;

    // Connects and subscribes; throws Failure(kExitNoBroker) when the broker cannot be
    // reached in time, Failure(kExitUsage) for a transport other than MQTT.
    static std::unique_ptr<FleetSession> open(berth::EventLoop& loop, FleetOptions options);
    ~FleetSession();

    const FleetOptions& options() const { return options_; }
    std::string nextMsgId();
    std::string agentTopic(const std::string& agentId) const;

    // Sends `msg` to the agent; `handler` runs exactly once (unless the session is
    // destroyed first).
    void request(const std::string& agentId, const usp::Msg& msg, AnswerHandler handler,
                 std::optional<std::chrono::milliseconds> timeout = {});
    berth::Status send(const std::string& agentId, const usp::Msg& msg);
    void onNotify(NotifyHandler handler) { notifyHandler_ = std::move(handler); }

    // Runs the loop until pred() holds, the timeout passes or the session is interrupted.
    bool waitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
        return link_->waitFor(pred, timeout);
    }
    void setInterrupted(bool v) { link_->setInterrupted(v); }
    bool interrupted() const { return link_->interrupted(); }

    // USP records this connection published and received (for the summary's figures).
    std::uint64_t sentRecords() const { return link_->sentRecords(); }
    std::uint64_t receivedRecords() const { return link_->receivedRecords(); }
    std::size_t pending() const { return link_->pending(); }

private:
    FleetSession(berth::EventLoop& loop, FleetOptions options) : loop_(loop), options_(std::move(options)) {}

    berth::EventLoop& loop_;
    FleetOptions options_;
    std::unique_ptr<ControllerLink> link_;
    NotifyHandler notifyHandler_;
};

}  // namespace berthctl::fleet
