#pragma once
// USP Record and Message codec: turns the bytes an MTP delivered into something the
// agent's dispatcher can switch on, and wraps the agent's messages into Records.
//
// Decoding follows TR-369: Records not addressed to us are ignored (R-E2E.1); bad
// Records are answered with an Error Message only when the sender, our ID, a Request
// msg_id and a return path are all known, otherwise dropped (R-MTP.5); Session
// Context Records get a DisconnectRecord with 7106 (R-E2E.6a); the body decides the
// message type when the header disagrees (R-MSG.10); a oneof with no member gives
// 7004 (R-ENC.5); request types we do not serve give 7001 (R-MSG.1).
//
// Threading: RecordCodec is immutable after construction; its const methods and the
// free functions may be called from any thread. Nothing here throws; malformed input
// never crashes, it becomes a kDrop or kReplyWithError result. The codec logs only at
// debug level: the dispatcher, which knows the MTP and the peer, reports drops.
//
// Dispatcher sketch:
//   auto d = codec.decode(in.payload, [&](const std::string& from) { return knowReturnPath(in, from); });
//   switch (d.kind) {
//     case DecodeKind::kRequest:        reply = handle(d.msg); send(codec.encodeMsg(reply, d.fromId)); break;
//     case DecodeKind::kResponse:       // NotifyResp etc.: match d.msgId to what we sent (R-MSG.9)
//     case DecodeKind::kError:          ...; break;
//     case DecodeKind::kConnect:        // the peer announced itself; d.connect has its address
//     case DecodeKind::kDisconnect:     ...; break;
//     case DecodeKind::kReplyWithError: send(d.reply); log(*d.problem); break;
//     case DecodeKind::kDrop:           log(*d.problem); break;
//   }

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "berth/core/error.h"
#include "berth/core/result.h"
#include "usp-msg-1-4.pb.h"
#include "usp-record-1-4.pb.h"

namespace berth::agent {

// The USP version berth writes into every Record it sends.
inline constexpr std::string_view kUspVersion = "1.4";
// The versions berth honours, for GetSupportedProtocolResp and OnBoardRequest.
inline constexpr std::string_view kSupportedUspVersions = "1.0,1.1,1.2,1.3,1.4";
// Default upper bound on an incoming serialized Record.
inline constexpr std::size_t kDefaultMaxRecordSize = std::size_t{5} * 1024 * 1024;

using MsgType = usp::Header::MsgType;

enum class RecordType {
    kNone,  // record_type oneof empty (such Records are discarded)
    kNoSessionContext,
    kSessionContext,
    kWebSocketConnect,
    kMqttConnect,
    kStompConnect,
    kUdsConnect,
    kDisconnect,
};
std::string_view recordTypeName(RecordType type);  // "no_session_context", ...

// What the dispatcher has to do with a decoded Record.
enum class DecodeKind {
    kRequest,         // msg holds a Request we serve: handle it, answer with msgId
    kResponse,        // msg holds a Response (e.g. NotifyResp): match msgId to what we sent
    kError,           // msg holds an Error Message from the peer: match msgId
    kConnect,         // the peer sent a Connect Record (see connect)
    kDisconnect,      // the peer sent a DisconnectRecord (see disconnect)
    kReplyWithError,  // send `reply` back on the MTP it came from; nothing else to do
    kDrop,            // ignore it; `problem` says why (log it)
};
std::string_view decodeKindName(DecodeKind kind);

struct ConnectInfo {
    RecordType type = RecordType::kNone;  // one of the *Connect values
    // MQTT: version and the topic the peer listens on; STOMP: its destination.
    std::optional<usp_record::MQTTConnectRecord::MQTTVersion> mqttVersion;
    std::string subscribedAddress;
};

struct DisconnectInfo {
    std::uint32_t reasonCode = 0;
    std::string reason;
};

struct DecodedRecord {
    DecodeKind kind = DecodeKind::kDrop;
    RecordType recordType = RecordType::kNone;

    // Record fields; fromId is where replies go. Empty when the Record did not parse.
    std::string fromId;
    std::string toId;
    std::string version;

    // kRequest / kResponse / kError: the parsed message. msgType comes from the body,
    // not from the header (R-MSG.10); headerTypeMismatch says the two disagreed.
    // kReplyWithError also fills msgId (and msgType when known) of the offending Msg.
    usp::Msg msg;
    std::string msgId;
    std::optional<MsgType> msgType;
    bool headerTypeMismatch = false;

    std::optional<ConnectInfo> connect;        // kConnect
    std::optional<DisconnectInfo> disconnect;  // kDisconnect

    // kDrop and kReplyWithError: what was wrong, with its USP code (71xx for Record
    // problems, 7001/7004 for message problems).
    std::optional<Error> problem;
    // kReplyWithError: a serialized Record, addressed to fromId, ready for Mtp::send().
    // It carries an Error Message, or for a Session Context Record a DisconnectRecord
    // with 7106 (replyIsDisconnect).
    std::string reply;
    bool replyIsDisconnect = false;
};

// Request types an Agent serves: Get, Set, Add, Delete, Operate, GetSupportedDM,
// GetInstances, GetSupportedProtocol (not Notify, Register, Deregister).
std::set<usp::Request::ReqTypeCase> agentRequestTypes();

struct CodecConfig {
    std::string endpointId;  // our own endpoint ID: the to_id we accept, the from_id we send
    // Serialized Records larger than this are dropped before parsing.
    std::size_t maxRecordSize = kDefaultMaxRecordSize;
    // Request types handed to the dispatcher; any other Request is answered with 7001.
    std::set<usp::Request::ReqTypeCase> servedRequests = agentRequestTypes();
};

// Tells decode() whether a reply can reach `fromId` on the MTP the Record came in on
// (an MQTT response topic, a reply-to destination, a configured Controller topic, an
// open WebSocket). Without one, an erroneous Record is dropped (R-MTP.5).
using ReturnPathCheck = std::function<bool(const std::string& fromId)>;

// One parameter blamed by an Error Message.
struct ParamError {
    std::string path;
    ErrorCode code = ErrorCode::kInvalidArguments;
    std::string message;
};

class RecordCodec {
public:
    explicit RecordCodec(CodecConfig config);

    const CodecConfig& config() const { return config_; }

    // Decodes and validates one serialized usp_record.Record and the usp.Msg inside.
    // Never fails as such: every outcome, including garbage, is a DecodedRecord whose
    // kind tells the dispatcher what to do. `hasReturnPath` empty means "a return path
    // is known".
    DecodedRecord decode(std::string_view bytes, const ReturnPathCheck& hasReturnPath = {}) const;

    // Wraps `msg` into a NoSessionContext Record from us to `toId` (version kUspVersion)
    // and serializes it. Fails with kInternalError if protobuf cannot serialize it
    // (over 2 GiB) and with kResourcesExceeded if the Record would exceed `maxSize`
    // (0: no limit, for a Controller's MaxUSPRecordSize).
    Result<std::string> encodeMsg(const usp::Msg& msg, const std::string& toId, std::size_t maxSize = 0) const;

    // encodeMsg(makeErrorMsg(...)): the Record answering request `msgId` with `error`.
    Result<std::string> encodeError(const std::string& toId, const std::string& msgId, const Error& error,
                                    const std::vector<ParamError>& paramErrors = {}) const;

    // Connect Records the Agent sends when an MTP channel to `toId` comes up (R-MTP.6):
    // `address` is the topic / destination where we listen.
    Result<std::string> encodeMqttConnect(const std::string& toId, usp_record::MQTTConnectRecord::MQTTVersion version,
                                          const std::string& address) const;
    Result<std::string> encodeStompConnect(const std::string& toId, const std::string& address) const;
    Result<std::string> encodeWebSocketConnect(const std::string& toId) const;
    Result<std::string> encodeUdsConnect(const std::string& toId) const;
    // A DisconnectRecord (R-MTP.7/9): reasonCode should be a 71xx code.
    Result<std::string> encodeDisconnect(const std::string& toId, ErrorCode reasonCode,
                                         const std::string& reason) const;

private:
    Result<std::string> serialize(usp_record::Record& record, const std::string& toId, std::size_t maxSize) const;
    // decode()'s phases: the Record's size, parse, addresses and record_type (fills
    // out's IDs; a problem means drop); a Connect Record; a NoSessionContext Record's
    // Message; and the Request inside it.
    std::optional<Error> checkEnvelope(std::string_view bytes, usp_record::Record& record, DecodedRecord& out) const;
    DecodedRecord decodeConnect(DecodedRecord out, const usp_record::Record& record,
                                std::optional<Error> recordProblem) const;
    DecodedRecord decodeNoSession(DecodedRecord out, const usp_record::Record& record,
                                  std::optional<Error> recordProblem, const ReturnPathCheck& hasReturnPath) const;
    DecodedRecord decodeRequest(DecodedRecord out, usp::Msg msg, const std::vector<std::string_view>& bodyChunks,
                                const ReturnPathCheck& hasReturnPath) const;
    DecodedRecord replyOrDrop(DecodedRecord out, Error problem, bool isRequest,
                              const ReturnPathCheck& hasReturnPath) const;

    CodecConfig config_;
};

// --- Message builders. The agent fills in the returned message's body. -------------

// An Error Message answering `msgId` (msg_type ERROR). err_msg is error.message, or
// the code's name when that is empty; error.path, when set, becomes a ParamError
// unless paramErrors are given.
usp::Msg makeErrorMsg(const std::string& msgId, const Error& error, const std::vector<ParamError>& paramErrors = {});

// A Response Message for `msgId` whose body holds an empty response of the type that
// answers `request` (GET -> GetResp, ...): fill it through
// msg.mutable_body()->mutable_response()->mutable_get_resp() and so on. Returns
// nullopt if `request` has no response type (NOTIFY_RESP, ERROR, ...).
std::optional<usp::Msg> makeResponseMsg(const std::string& msgId, MsgType request);

// A Notify Request with an empty notification to fill (event, value_change, ...).
usp::Msg makeNotifyMsg(const std::string& msgId, const std::string& subscriptionId, bool sendResp);

// The msg_type a body stands for (R-MSG.10); nullopt when the body's oneof is empty.
std::optional<MsgType> bodyMsgType(const usp::Body& body);
// The response msg_type for a request msg_type; nullopt if none.
std::optional<MsgType> responseTypeFor(MsgType request);
bool isRequestType(MsgType type);
std::string_view msgTypeName(MsgType type);  // "GET", "NOTIFY_RESP", ...

// Sends the protobuf library's own messages (e.g. "String field contains invalid
// UTF-8" for every such Record a peer sends) to the berth log at debug level, tag
// "protobuf", instead of straight to stderr. Process-wide and not thread-safe: call
// once from main() before other threads start.
void routeProtobufLogs();

// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or code points
// past U+10FFFF).
bool isValidUtf8(std::string_view s);

// True when some length-delimited field of the serialized protobuf `message`, at any
// depth, is neither UTF-8 nor a well-formed nested message: the reason a proto3 parse
// refuses a message whose string fields hold other bytes.
bool holdsInvalidUtf8(std::string_view message);

// True when `id` has the form authority-scheme ":" [authority-id] ":" instance-id with
// a non-empty scheme and instance-id and no whitespace or control characters.
bool isPlausibleEndpointId(std::string_view id);

}  // namespace berth::agent
