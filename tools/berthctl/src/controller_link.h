#pragma once
// A Controller's connection over one MTP, the part berthctl's two sessions share:
// Session (one agent, any MTP, straight-line waits) and fleet::FleetSession (many agents
// over one MQTT connection, asynchronous requests) are both built on it.
//
// It makes the transport from TransportOptions, starts it and waits until it is up (for
// MQTT and STOMP: subscribed to the address replies come to), encodes Records from
// controllerId and decodes what arrives, matches Responses and Errors to outstanding
// requests by msg_id and sender, times each request out, and hands USP requests from
// agents (Notify) to one handler.
//
// Threading: the loop's thread only. The link runs the loop itself in open() and
// waitFor(); handlers run on the loop.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "berth/agent/codec.h"
#include "berth/core/event_loop.h"
#include "berth/core/result.h"
#include "berth/transports/mqtt.h"
#include "berth/transports/mtp.h"

namespace berthctl {

// Exit codes (documented in `berthctl --help`).
inline constexpr int kExitOk = 0;
inline constexpr int kExitAgentError = 1;  // the Agent answered with an error or a partial failure
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNoAnswer = 3;  // no answer within the timeout
inline constexpr int kExitNoBroker = 4;  // cannot connect to the broker / server

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
    std::string virtualHost;                // STOMP host header; empty: host
    std::string wsPath = "/usp";            // WebSocket request path (client) or served path (listen)
    std::string bindAddress = "127.0.0.1";  // kWebSocketListen
    // TLS. MQTT, STOMP, WebSocket client: on when caFile is set (the server must chain
    // to it); certFile/keyFile are a client certificate. WebSocket listen: on when
    // certFile is set (our server certificate); caFile then demands client certificates.
    std::string caFile;
    std::string certFile;
    std::string keyFile;
};

// "host:port" (IPv6 as "[addr]:port"); port defaults to `defaultPort`.
berth::Result<std::pair<std::string, int>> parseHostPort(const std::string& text, int defaultPort);

// "usp/controller/<instance-id>": the part of the endpoint ID after its last ':'
// ("self::berthctl" -> "usp/controller/berthctl", as examples/berth.conf has it).
std::string defaultControllerTopic(const std::string& controllerId);

// Human description of the transport, e.g. "MQTT 5.0 broker 127.0.0.1:1883",
// "STOMP server 127.0.0.1:61613", "WebSocket server ws://127.0.0.1:8443/usp".
std::string describeTransport(const TransportOptions& options);

// "2.5 s": a duration for messages to people.
std::string describeSeconds(std::chrono::milliseconds d);

struct LinkOptions {
    TransportOptions transport;
    std::string controllerId = "self::berthctl";
    // MQTT topic or STOMP destination we listen on (the caller fills in its default).
    std::string controllerAddress;
    // WebSocket: the agent's endpoint ID (the client's peer; the listener tracks the
    // session this endpoint opens, see peerSession()).
    std::string peerId;
    std::chrono::milliseconds timeout{10000};  // connecting
    // MQTT ClientID "<clientIdPrefix>-<pid>-<random>" and msg_ids
    // "<msgIdPrefix>-<pid>-<random>-<n>", so two berthctl runs never collide.
    std::string clientIdPrefix = "berthctl";
    std::string msgIdPrefix = "berthctl";
    // MQTT: how many messages and bytes may wait for the broker before send() refuses;
    // 0 keeps the transport's default.
    std::size_t maxUnsentMessages = 0;
    std::size_t maxUnsentBytes = 0;
};

class ControllerLink {
public:
    // The answer (a Response or Error message), or Error kMessageFailed (7000) when none
    // came within the request's timeout.
    using AnswerHandler = std::function<void(berth::Result<usp::Msg>)>;
    // A USP request from an agent (a Notify), with the sender's endpoint ID.
    using RequestHandler = std::function<void(const std::string& fromId, const usp::Msg& msg)>;

    // Makes the transport, starts it and waits until it is Up (for kWebSocketListen:
    // listening). Throws Failure(kExitUsage) for options the transport refuses,
    // Failure(kExitNoBroker) when it cannot start or is not up within options.timeout
    // (or the wait was interrupted).
    static std::unique_ptr<ControllerLink> open(berth::EventLoop& loop, LinkOptions options);
    // The same on a transport made elsewhere (tests hand in a fake).
    static std::unique_ptr<ControllerLink> open(berth::EventLoop& loop, LinkOptions options,
                                                std::unique_ptr<berth::transports::Mtp> mtp);
    ~ControllerLink();
    ControllerLink(const ControllerLink&) = delete;
    ControllerLink& operator=(const ControllerLink&) = delete;

    const LinkOptions& options() const { return options_; }
    // A msg_id unique to this process and link.
    std::string nextMsgId();

    // A Record from controllerId to `toId` carrying `msg`.
    berth::Result<std::string> encode(const usp::Msg& msg, const std::string& toId);
    // Queues a Record for `destination` (MQTT topic, STOMP destination, WebSocket session key).
    berth::Status sendRecord(std::string record, const std::string& destination);
    // encode() then sendRecord().
    berth::Status send(const usp::Msg& msg, const std::string& toId, const std::string& destination);

    // Waits for the answer to `msgId` from `fromId`: `handler` runs once, with the answer
    // or with kMessageFailed after `timeout`, unless forget(msgId) or the link's
    // destruction comes first. Answers from another endpoint are ignored.
    void expect(const std::string& msgId, const std::string& fromId, AnswerHandler handler,
                std::chrono::milliseconds timeout);
    // Stops waiting for `msgId` (its handler will not run); nothing when not waiting.
    void forget(const std::string& msgId);
    std::size_t pending() const { return pending_.size(); }

    void onRequest(RequestHandler handler) { requestHandler_ = std::move(handler); }

    // kWebSocketListen: the key of the session peerId opened ("" while none is open).
    const std::string& peerSession() const { return peerSession_; }

    // Runs the loop until pred() holds (true), the timeout passes or the link is
    // interrupted (pred()'s value then).
    bool waitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout);
    // Set from a signal handler on the loop: ends the current wait. Clear it again to
    // run clean-up requests.
    void setInterrupted(bool interrupted) { interrupted_ = interrupted; }
    bool interrupted() const { return interrupted_; }

    // Records this link sent and received (for summaries).
    std::uint64_t sentRecords() const { return sent_; }
    std::uint64_t receivedRecords() const { return received_; }

private:
    ControllerLink(berth::EventLoop& loop, LinkOptions options);
    std::unique_ptr<berth::transports::Mtp> makeTransport();
    void connect(std::unique_ptr<berth::transports::Mtp> mtp);
    void onRecord(berth::transports::InboundRecord record);

    struct Pending {
        std::string fromId;
        AnswerHandler handler;
        std::unique_ptr<berth::Timer> timer;
    };

    berth::EventLoop& loop_;
    LinkOptions options_;
    berth::agent::RecordCodec codec_;
    std::unique_ptr<berth::transports::Mtp> mtp_;
    std::optional<std::pair<berth::transports::MtpStatus, std::string>> lastStatus_;
    std::map<std::string, Pending> pending_;
    RequestHandler requestHandler_;
    std::string peerSession_;
    std::uint64_t counter_ = 0;
    std::uint64_t sent_ = 0;
    std::uint64_t received_ = 0;
    bool interrupted_ = false;
};

}  // namespace berthctl
