#pragma once
// A Controller's session with one Agent over one MTP: connect, send a request and wait
// for the answer with the same msg_id, receive Notify requests.
//
// The transport is chosen by TransportOptions::kind and hidden behind
// berth::transports::Mtp: MQTT and STOMP through a broker, WebSocket as a client of the
// agent's server, or as a server the agent dials (the agent's
// Controller.{i}.MTP.{j}.WebSocket row points at it; open() then waits for the agent).
//
// The connection, Record codec, msg_id matching and timeouts are ControllerLink's
// (controller_link.h), shared with `berthctl fleet`'s FleetSession; what is this file's is
// the agent's addresses, the wait for an agent that dials us, and failures as exit codes.
//
// Threading: one thread. The session runs the given loop itself while it waits
// (request(), waitFor()), so callers write straight-line code.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "berth/agent/codec.h"
#include "berth/core/event_loop.h"
#include "controller_link.h"

namespace berthctl {

struct SessionOptions {
    TransportOptions transport;
    std::string controllerId = "self::berthctl";
    // Where we listen: MQTT topic (empty: defaultControllerTopic()) or STOMP destination
    // (empty: "/queue/" + defaultControllerTopic()). Unused for WebSocket.
    std::string controllerAddress;
    std::string agentId = "os::012345-0001";
    // Where the agent listens: MQTT topic (empty: usp/agent/<agent id>) or STOMP
    // destination (empty: /queue/usp/agent/<agent id>). Unused for WebSocket.
    std::string agentAddress;
    std::chrono::milliseconds timeout{10000};
};

class Session {
public:
    using NotifyHandler = std::function<void(const usp::Msg& notify)>;

    // Connects and waits until the transport is up (subscribed; for kWebSocketListen:
    // until the agent opened a session). Throws Failure with kExitNoBroker when the
    // broker or server refuses or does not answer (the agent does not dial) in time.
    static std::unique_ptr<Session> open(berth::EventLoop& loop, SessionOptions options);
    ~Session();

    const SessionOptions& options() const { return options_; }

    // A msg_id unique to this process and session.
    std::string nextMsgId();

    // Sends a request and waits for the Response or Error with the same msg_id.
    // Throws Failure(kExitNoAnswer) after the timeout, with a message naming the agent,
    // its address and the broker. Notify requests arriving meanwhile go to the handler.
    usp::Msg request(const usp::Msg& msg, std::optional<std::chrono::milliseconds> timeout = {});
    // Sends a message without waiting for an answer (NotifyResp).
    void send(const usp::Msg& msg);

    void onNotify(NotifyHandler handler) { notifyHandler_ = std::move(handler); }
    // Runs the loop until pred() is true, the deadline passes or the session is
    // interrupted. Returns pred().
    bool waitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
        return link_->waitFor(pred, timeout);
    }
    // Set from a signal handler on the loop: ends the current wait. Clear it again to
    // run clean-up requests.
    void setInterrupted(bool interrupted) { link_->setInterrupted(interrupted); }
    bool interrupted() const { return link_->interrupted(); }

private:
    explicit Session(SessionOptions options) : options_(std::move(options)) {}
    // Where records to the agent go on this transport.
    std::string agentDestination() const;

    SessionOptions options_;
    std::unique_ptr<ControllerLink> link_;
    NotifyHandler notifyHandler_;
};

}  // namespace berthctl
