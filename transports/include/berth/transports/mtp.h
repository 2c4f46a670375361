#pragma once
// The Mtp interface: a Message Transfer Protocol binding moves USP Record bytes
// between the agent and its peers. It knows nothing of the data model or of USP
// messages; it sees opaque bytes and addresses (an MQTT topic, a STOMP destination,
// a WebSocket connection).
//
// Threading: every method is called on the loop thread, and every callback runs on the
// loop thread. A binding whose library insists on its own thread (Paho, libwebsockets)
// post()s into the loop. start() and send() never block on the network.

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "berth/core/result.h"

namespace berth::transports {

enum class MtpStatus { kDown, kConnecting, kUp, kError };
std::string_view mtpStatusName(MtpStatus s);  // TR-181 enum spelling: "Down", "Connecting", "Up", "Error"

// A Record that arrived, with where to send the reply.
struct InboundRecord {
    std::string payload;   // serialized usp_record.Record
    std::string replyTo;   // MQTT response topic / STOMP reply-to-dest / WebSocket connection key; may be empty
    std::string peerId;    // the peer's endpoint ID when the transport learnt it (WebSocket eid, MQTT user property)
};

// What an outbound Record carries, for bindings that treat kinds differently (MQTT
// applies LocalAgent.MTP.{i}.MQTT.PublishRetainResponse to responses and
// PublishRetainNotify to notifications). Connect/Disconnect Records and anything else
// are kOther.
enum class RecordKind { kOther, kResponse, kNotify };

// A Record to send.
struct OutboundRecord {
    std::string payload;       // serialized usp_record.Record
    std::string destination;   // MQTT topic / STOMP destination / WebSocket connection key
    RecordKind kind = RecordKind::kOther;
};

class Mtp {
public:
    using RecordHandler = std::function<void(InboundRecord)>;
    // Called when the status changes. When Up, `agentAddress` is where peers reach the
    // agent (the subscribed topic or destination) for connect records and reply-to.
    using StatusHandler = std::function<void(MtpStatus, const std::string& detail)>;

    virtual ~Mtp() = default;

    virtual std::string_view protocol() const = 0;  // "MQTT", "STOMP", "WebSocket"
    // Begins connecting (or listening) and keeps reconnecting per its retry policy until stop().
    virtual Status start() = 0;
    // Disconnects cleanly; no callbacks after it returns.
    virtual void stop() = 0;
    // Queues a record for sending. Fails with kMessageFailed when the binding is down or
    // the destination is unusable; never blocks.
    virtual Status send(OutboundRecord record) = 0;
    virtual MtpStatus status() const = 0;
    // The address peers use to reach the agent on this binding ("" until known).
    virtual std::string agentAddress() const = 0;

    void onRecord(RecordHandler h) { recordHandler_ = std::move(h); }
    void onStatus(StatusHandler h) { statusHandler_ = std::move(h); }

protected:
    void deliver(InboundRecord r) {
        if (recordHandler_) recordHandler_(std::move(r));
    }
    void reportStatus(MtpStatus s, const std::string& detail) {
        if (statusHandler_) statusHandler_(s, detail);
    }

private:
    RecordHandler recordHandler_;
    StatusHandler statusHandler_;
};

}  // namespace berth::transports
