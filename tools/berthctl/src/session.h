#pragma once
// A Controller's session with one Agent over one MTP: connect, send a request and wait
// for the answer with the same msg_id, receive Notify requests.
//
// The transport is chosen by TransportOptions::kind and hidden behind
// berth::transports::Mtp: MQTT and STOMP through a broker, WebSocket as a client of the
// agent's server, or as a server the agent dials (the agent's
// Controller.{i}.MTP.{j}.WebSocket row points at it; open() then waits for the agent).
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
#include "berth/transports/mqtt.h"
#include "berth/transports/mtp.h"
#include "berth/transports/stomp.h"
#include "berth/transports/websocket.h"

namespace berthctl {

// Exit codes (documented in `berthctl --help`).
inline constexpr int kExitOk = 0;
inline constexpr int kExitAgentError = 1;  // the Agent answered with an error or a partial failure
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNoAnswer = 3;    // no answer within the timeout
inline constexpr int kExitNoBroker = 4;    // cannot connect to the broker / server

// A failure that ends the program with `exitCode`; what() is the message for people.
class Failure : public std::exception {
public:
    Failure(int exitCode, std::string message) : exitCode_(exitCode), message_(std::move(message)) {}
    int exitCode() const { return exitCode_; }
    const char* what() const noexcept override { return message_.c_str(); }

private:
    int exitCode_;
    std::string message_;
};

enum class TransportKind {
    kMqtt,             // MQTT broker at host:port
    kStomp,            // STOMP server at host:port
    kWebSocket,        // we dial the agent's WebSocket server at host:port + wsPath
    kWebSocketListen,  // we listen on bindAddress:port + wsPath and the agent dials us
};

struct TransportOptions {
    TransportKind kind = TransportKind::kMqtt;
    std::string host = "127.0.0.1";
    int port = 1883;
    berth::transports::MqttVersion mqttVersion = berth::transports::MqttVersion::kV5;
    std::string username;
    std::string password;
    std::string virtualHost;      // STOMP host header; empty: host
    std::string wsPath = "/usp";  // WebSocket request path (client) or served path (listen)
    std::string bindAddress = "127.0.0.1";  // kWebSocketListen
    // TLS. MQTT, STOMP, WebSocket client: on when caFile is set (the server must chain
    // to it); certFile/keyFile are a client certificate. WebSocket listen: on when
    // certFile is set (our server certificate); caFile then demands client certificates.
    std::string caFile;
    std::string certFile;
    std::string keyFile;
};

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

// "host:port" (IPv6 as "[addr]:port"); port defaults to `defaultPort`.
berth::Result<std::pair<std::string, int>> parseHostPort(const std::string& text, int defaultPort);

// "usp/controller/<instance-id>": the part of the endpoint ID after its last ':'
// ("self::berthctl" -> "usp/controller/berthctl", as examples/berth.conf has it).
std::string defaultControllerTopic(const std::string& controllerId);

// Human description of the transport, e.g. "MQTT 5.0 broker 127.0.0.1:1883",
// "STOMP server 127.0.0.1:61613", "WebSocket server ws://127.0.0.1:8443/usp".
std::string describeTransport(const TransportOptions& options);

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
    bool waitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout);
    // Set from a signal handler on the loop: ends the current wait. Clear it again to
    // run clean-up requests.
    void setInterrupted(bool interrupted) { interrupted_ = interrupted; }
    bool interrupted() const { return interrupted_; }

private:
    Session(berth::EventLoop& loop, SessionOptions options);
    void onRecord(berth::transports::InboundRecord record);
    void makeTransport();
    // Where records to the agent go on this transport.
    std::string agentDestination() const;

    berth::EventLoop& loop_;
    SessionOptions options_;
    berth::agent::RecordCodec codec_;
    std::unique_ptr<berth::transports::Mtp> mtp_;
    std::optional<std::pair<berth::transports::MtpStatus, std::string>> lastStatus_;
    std::string agentSession_;  // kWebSocketListen: the key of the agent's session ("" when none)
    NotifyHandler notifyHandler_;
    std::string awaitedMsgId_;
    std::optional<usp::Msg> answer_;
    unsigned counter_ = 0;
    bool interrupted_ = false;
};

}  // namespace berthctl
