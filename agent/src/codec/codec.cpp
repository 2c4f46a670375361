#include "berth/agent/codec.h"

#include <google/protobuf/stubs/logging.h>

#include <climits>
#include <utility>

#include "berth/core/log.h"
#include "codec/wire_scan.h"

namespace berth::agent {

namespace {

constexpr std::string_view kTag = "codec";

// Field numbers of the oneof members, from the schemas.
constexpr std::uint32_t kRecordTypeFirst = 7;  // no_session_context
constexpr std::uint32_t kRecordTypeLast = 13;  // uds_connect
constexpr std::uint32_t kMsgHeader = 1;
constexpr std::uint32_t kMsgBody = 2;
constexpr std::uint32_t kBodyRequest = 1;
constexpr std::uint32_t kBodyLast = 3;      // error
constexpr std::uint32_t kRequestLast = 11;  // deregister
constexpr std::uint32_t kRequestNotify = 8;
constexpr std::uint32_t kNotifyFirst = 3;  // event
constexpr std::uint32_t kNotifyLast = 8;   // on_board_req

std::size_t countInRange(const std::set<std::uint32_t>& fields, std::uint32_t lo, std::uint32_t hi) {
    std::size_t n = 0;
    for (auto f : fields)
        n += (f >= lo && f <= hi) ? 1 : 0;
    return n;
}

bool hasOutsideRange(const std::set<std::uint32_t>& fields, std::uint32_t lo, std::uint32_t hi) {
    for (auto f : fields)
        if (f < lo || f > hi) return true;
    return false;
}

// "major.minor" with decimal numbers; returns the major version.
std::optional<unsigned long> parseVersionMajor(const std::string& v) {
    auto dot = v.find('.');
    if (dot == std::string::npos || dot == 0 || dot + 1 >= v.size() || dot > 6 || v.size() - dot > 7)
        return std::nullopt;
    unsigned long major = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i == dot) continue;
        if (v[i] < '0' || v[i] > '9') return std::nullopt;
        if (i < dot) major = major * 10 + static_cast<unsigned long>(v[i] - '0');
    }
    return major;
}

RecordType recordTypeOf(const usp_record::Record& r) {
    switch (r.record_type_case()) {
        case usp_record::Record::kNoSessionContext:
            return RecordType::kNoSessionContext;
        case usp_record::Record::kSessionContext:
            return RecordType::kSessionContext;
        case usp_record::Record::kWebsocketConnect:
            return RecordType::kWebSocketConnect;
        case usp_record::Record::kMqttConnect:
            return RecordType::kMqttConnect;
        case usp_record::Record::kStompConnect:
            return RecordType::kStompConnect;
        case usp_record::Record::kDisconnect:
            return RecordType::kDisconnect;
        case usp_record::Record::kUdsConnect:
            return RecordType::kUdsConnect;
        case usp_record::Record::RECORD_TYPE_NOT_SET:
            break;
    }
    return RecordType::kNone;
}

MsgType requestMsgType(usp::Request::ReqTypeCase c) {
    switch (c) {
        case usp::Request::kGet:
            return usp::Header::GET;
        case usp::Request::kGetSupportedDm:
            return usp::Header::GET_SUPPORTED_DM;
        case usp::Request::kGetInstances:
            return usp::Header::GET_INSTANCES;
        case usp::Request::kSet:
            return usp::Header::SET;
        case usp::Request::kAdd:
            return usp::Header::ADD;
        case usp::Request::kDelete:
            return usp::Header::DELETE;
        case usp::Request::kOperate:
            return usp::Header::OPERATE;
        case usp::Request::kNotify:
            return usp::Header::NOTIFY;
        case usp::Request::kGetSupportedProtocol:
            return usp::Header::GET_SUPPORTED_PROTO;
        case usp::Request::kRegister:
            return usp::Header::REGISTER;
        case usp::Request::kDeregister:
            return usp::Header::DEREGISTER;
        case usp::Request::REQ_TYPE_NOT_SET:
            break;
    }
    return usp::Header::ERROR;
}

std::optional<MsgType> responseMsgType(usp::Response::RespTypeCase c) {
    switch (c) {
        case usp::Response::kGetResp:
            return usp::Header::GET_RESP;
        case usp::Response::kGetSupportedDmResp:
            return usp::Header::GET_SUPPORTED_DM_RESP;
        case usp::Response::kGetInstancesResp:
            return usp::Header::GET_INSTANCES_RESP;
        case usp::Response::kSetResp:
            return usp::Header::SET_RESP;
        case usp::Response::kAddResp:
            return usp::Header::ADD_RESP;
        case usp::Response::kDeleteResp:
            return usp::Header::DELETE_RESP;
        case usp::Response::kOperateResp:
            return usp::Header::OPERATE_RESP;
        case usp::Response::kNotifyResp:
            return usp::Header::NOTIFY_RESP;
        case usp::Response::kGetSupportedProtocolResp:
            return usp::Header::GET_SUPPORTED_PROTO_RESP;
        case usp::Response::kRegisterResp:
            return usp::Header::REGISTER_RESP;
        case usp::Response::kDeregisterResp:
            return usp::Header::DEREGISTER_RESP;
        case usp::Response::RESP_TYPE_NOT_SET:
            break;
    }
    return std::nullopt;
}

DecodedRecord drop(DecodedRecord out, Error problem) {
    BERTH_LOG_DEBUG(kTag) << "dropping record from '" << out.fromId << "': " << problem.describe();
    out.kind = DecodeKind::kDrop;
    out.problem = std::move(problem);
    return out;
}

// Pulls msg_id and msg_type out of a Msg that failed to parse as a whole, as long as
// its header arrived intact (R-MTP.5 "the Message ID can be extracted").
void salvageHeader(std::string_view payload, DecodedRecord& out) {
    std::string_view headerBytes;
    bool haveHeader = false;
    wire::scan(payload, [&](const wire::Field& f) {
        if (f.number == kMsgHeader && f.type == wire::WireType::kLen) {
            headerBytes = f.bytes;
            haveHeader = true;
        }
    });
    usp::Header header;
    if (!haveHeader || !header.ParseFromArray(headerBytes.data(), static_cast<int>(headerBytes.size()))) return;
    out.msgId = header.msg_id();
    if (usp::Header::MsgType_IsValid(header.msg_type())) out.msgType = header.msg_type();
}

// The Record's version and payload_security, checked once the Record is known to be
// ours: a problem here is answered when the Message inside is a Request.
std::optional<Error> recordFieldProblem(const usp_record::Record& record) {
    const auto major = parseVersionMajor(record.version());
    if (record.version().empty()) return Error(ErrorCode::kRecordFieldInvalid, "record has no version");
    if (!major)
        return Error(ErrorCode::kRecordFieldInvalid, "record version '" + record.version() + "' is not major.minor");
    if (*major != 1) {
        return Error(ErrorCode::kRecordFieldInvalid,
                     "record version '" + record.version() + "' is not supported (1.x is)");
    }
    if (!usp_record::Record::PayloadSecurity_IsValid(record.payload_security())) {
        return Error(ErrorCode::kRecordFieldInvalid,
                     "unknown payload_security " + std::to_string(record.payload_security()));
    }
    if (record.payload_security() == usp_record::Record::TLS12)
        return Error(ErrorCode::kSecureSessionNotSupported, "payload_security TLS12 is not supported");
    return std::nullopt;
}

}  // namespace

std::string_view recordTypeName(RecordType type) {
    switch (type) {
        case RecordType::kNone:
            return "none";
        case RecordType::kNoSessionContext:
            return "no_session_context";
        case RecordType::kSessionContext:
            return "session_context";
        case RecordType::kWebSocketConnect:
            return "websocket_connect";
        case RecordType::kMqttConnect:
            return "mqtt_connect";
        case RecordType::kStompConnect:
            return "stomp_connect";
        case RecordType::kUdsConnect:
            return "uds_connect";
        case RecordType::kDisconnect:
            return "disconnect";
    }
    return "?";
}

std::string_view decodeKindName(DecodeKind kind) {
    switch (kind) {
        case DecodeKind::kRequest:
            return "request";
        case DecodeKind::kResponse:
            return "response";
        case DecodeKind::kError:
            return "error";
        case DecodeKind::kConnect:
            return "connect";
        case DecodeKind::kDisconnect:
            return "disconnect";
        case DecodeKind::kReplyWithError:
            return "reply-with-error";
        case DecodeKind::kDrop:
            return "drop";
    }
    return "?";
}

std::set<usp::Request::ReqTypeCase> agentRequestTypes() {
    return {usp::Request::kGet,          usp::Request::kGetSupportedDm,
            usp::Request::kGetInstances, usp::Request::kSet,
            usp::Request::kAdd,          usp::Request::kDelete,
            usp::Request::kOperate,      usp::Request::kGetSupportedProtocol};
}

std::optional<MsgType> bodyMsgType(const usp::Body& body) {
    switch (body.msg_body_case()) {
        case usp::Body::kRequest:
            if (body.request().req_type_case() == usp::Request::REQ_TYPE_NOT_SET) return std::nullopt;
            return requestMsgType(body.request().req_type_case());
        case usp::Body::kResponse:
            return responseMsgType(body.response().resp_type_case());
        case usp::Body::kError:
            return usp::Header::ERROR;
        case usp::Body::MSG_BODY_NOT_SET:
            break;
    }
    return std::nullopt;
}

std::optional<MsgType> responseTypeFor(MsgType request) {
    switch (request) {
        case usp::Header::GET:
            return usp::Header::GET_RESP;
        case usp::Header::NOTIFY:
            return usp::Header::NOTIFY_RESP;
        case usp::Header::SET:
            return usp::Header::SET_RESP;
        case usp::Header::OPERATE:
            return usp::Header::OPERATE_RESP;
        case usp::Header::ADD:
            return usp::Header::ADD_RESP;
        case usp::Header::DELETE:
            return usp::Header::DELETE_RESP;
        case usp::Header::GET_SUPPORTED_DM:
            return usp::Header::GET_SUPPORTED_DM_RESP;
        case usp::Header::GET_INSTANCES:
            return usp::Header::GET_INSTANCES_RESP;
        case usp::Header::GET_SUPPORTED_PROTO:
            return usp::Header::GET_SUPPORTED_PROTO_RESP;
        case usp::Header::REGISTER:
            return usp::Header::REGISTER_RESP;
        case usp::Header::DEREGISTER:
            return usp::Header::DEREGISTER_RESP;
        default:
            break;
    }
    return std::nullopt;
}

bool isRequestType(MsgType type) {
    return responseTypeFor(type).has_value();
}

std::string_view msgTypeName(MsgType type) {
    if (!usp::Header::MsgType_IsValid(type)) return "UNKNOWN";
    return usp::Header::MsgType_Name(type);
}

bool isPlausibleEndpointId(std::string_view id) {
    for (char c : id) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7F) return false;
    }
    const auto first = id.find(':');
    if (first == std::string_view::npos || first == 0) return false;
    const auto second = id.find(':', first + 1);
    if (second == std::string_view::npos) return false;
    const auto instance = id.substr(second + 1);
    return !instance.empty() && instance.find(':') == std::string_view::npos;
}

void routeProtobufLogs() {
    google::protobuf::SetLogHandler(
        [](google::protobuf::LogLevel level, const char* file, int line, const std::string& message) {
            if (level >= google::protobuf::LOGLEVEL_FATAL) {
                BERTH_LOG_ERROR("protobuf") << file << ":" << line << ": " << message;
                return;
            }
            BERTH_LOG_DEBUG("protobuf") << message;
        });
}

// --- builders --------------------------------------------------------------------

usp::Msg makeErrorMsg(const std::string& msgId, const Error& error, const std::vector<ParamError>& paramErrors) {
    usp::Msg msg;
    msg.mutable_header()->set_msg_id(msgId);
    msg.mutable_header()->set_msg_type(usp::Header::ERROR);
    auto* err = msg.mutable_body()->mutable_error();
    err->set_err_code(error.numeric());
    err->set_err_msg(error.message.empty() ? std::string(errorCodeName(error.code)) : error.message);
    if (!paramErrors.empty()) {
        for (const auto& pe : paramErrors) {
            auto* p = err->add_param_errs();
            p->set_param_path(pe.path);
            p->set_err_code(static_cast<std::uint32_t>(pe.code));
            p->set_err_msg(pe.message.empty() ? std::string(errorCodeName(pe.code)) : pe.message);
        }
    } else if (!error.path.empty()) {
        auto* p = err->add_param_errs();
        p->set_param_path(error.path);
        p->set_err_code(error.numeric());
        p->set_err_msg(err->err_msg());
    }
    return msg;
}

std::optional<usp::Msg> makeResponseMsg(const std::string& msgId, MsgType request) {
    const auto type = responseTypeFor(request);
    if (!type) return std::nullopt;
    usp::Msg msg;
    msg.mutable_header()->set_msg_id(msgId);
    msg.mutable_header()->set_msg_type(*type);
    auto* resp = msg.mutable_body()->mutable_response();
    switch (*type) {
        case usp::Header::GET_RESP:
            resp->mutable_get_resp();
            break;
        case usp::Header::NOTIFY_RESP:
            resp->mutable_notify_resp();
            break;
        case usp::Header::SET_RESP:
            resp->mutable_set_resp();
            break;
        case usp::Header::OPERATE_RESP:
            resp->mutable_operate_resp();
            break;
        case usp::Header::ADD_RESP:
            resp->mutable_add_resp();
            break;
        case usp::Header::DELETE_RESP:
            resp->mutable_delete_resp();
            break;
        case usp::Header::GET_SUPPORTED_DM_RESP:
            resp->mutable_get_supported_dm_resp();
            break;
        case usp::Header::GET_INSTANCES_RESP:
            resp->mutable_get_instances_resp();
            break;
        case usp::Header::GET_SUPPORTED_PROTO_RESP:
            resp->mutable_get_supported_protocol_resp();
            break;
        case usp::Header::REGISTER_RESP:
            resp->mutable_register_resp();
            break;
        case usp::Header::DEREGISTER_RESP:
            resp->mutable_deregister_resp();
            break;
        default:
            return std::nullopt;
    }
    return msg;
}

usp::Msg makeNotifyMsg(const std::string& msgId, const std::string& subscriptionId, bool sendResp) {
    usp::Msg msg;
    msg.mutable_header()->set_msg_id(msgId);
    msg.mutable_header()->set_msg_type(usp::Header::NOTIFY);
    auto* notify = msg.mutable_body()->mutable_request()->mutable_notify();
    notify->set_subscription_id(subscriptionId);
    notify->set_send_resp(sendResp);
    return msg;
}

// --- RecordCodec -----------------------------------------------------------------

RecordCodec::RecordCodec(CodecConfig config) : config_(std::move(config)) {}

Result<std::string> RecordCodec::serialize(usp_record::Record& record, const std::string& toId,
                                           std::size_t maxSize) const {
    record.set_version(std::string(kUspVersion));
    record.set_to_id(toId);
    record.set_from_id(config_.endpointId);
    record.set_payload_security(usp_record::Record::PLAINTEXT);
    const std::size_t size = record.ByteSizeLong();
    if (size > static_cast<std::size_t>(INT_MAX))
        return Error(ErrorCode::kInternalError, "record of " + std::to_string(size) + " bytes is too large to encode");
    if (maxSize != 0 && size > maxSize) {
        return Error(ErrorCode::kResourcesExceeded, "record of " + std::to_string(size) +
                                                        " bytes exceeds the peer's limit of " +
                                                        std::to_string(maxSize) + " bytes");
    }
    std::string out;
    if (!record.SerializeToString(&out)) return Error(ErrorCode::kInternalError, "record serialization failed");
    return out;
}

Result<std::string> RecordCodec::encodeMsg(const usp::Msg& msg, const std::string& toId, std::size_t maxSize) const {
    const std::size_t msgSize = msg.ByteSizeLong();
    if (msgSize > static_cast<std::size_t>(INT_MAX)) {
        return Error(ErrorCode::kInternalError,
                     "message of " + std::to_string(msgSize) + " bytes is too large to encode");
    }
    usp_record::Record record;
    if (!msg.SerializeToString(record.mutable_no_session_context()->mutable_payload()))
        return Error(ErrorCode::kInternalError, "message serialization failed");
    return serialize(record, toId, maxSize);
}

Result<std::string> RecordCodec::encodeError(const std::string& toId, const std::string& msgId, const Error& error,
                                             const std::vector<ParamError>& paramErrors) const {
    return encodeMsg(makeErrorMsg(msgId, error, paramErrors), toId);
}

Result<std::string> RecordCodec::encodeMqttConnect(const std::string& toId,
                                                   usp_record::MQTTConnectRecord::MQTTVersion version,
                                                   const std::string& address) const {
    usp_record::Record record;
    auto* c = record.mutable_mqtt_connect();
    c->set_version(version);
    c->set_subscribed_topic(address);
    return serialize(record, toId, 0);
}

Result<std::string> RecordCodec::encodeStompConnect(const std::string& toId, const std::string& address) const {
    usp_record::Record record;
    auto* c = record.mutable_stomp_connect();
    c->set_version(usp_record::STOMPConnectRecord::V1_2);
    c->set_subscribed_destination(address);
    return serialize(record, toId, 0);
}

Result<std::string> RecordCodec::encodeWebSocketConnect(const std::string& toId) const {
    usp_record::Record record;
    record.mutable_websocket_connect();
    return serialize(record, toId, 0);
}

Result<std::string> RecordCodec::encodeUdsConnect(const std::string& toId) const {
    usp_record::Record record;
    record.mutable_uds_connect();
    return serialize(record, toId, 0);
}

Result<std::string> RecordCodec::encodeDisconnect(const std::string& toId, ErrorCode reasonCode,
                                                  const std::string& reason) const {
    usp_record::Record record;
    auto* d = record.mutable_disconnect();
    d->set_reason_code(static_cast<std::uint32_t>(reasonCode));
    d->set_reason(reason);
    return serialize(record, toId, 0);
}

DecodedRecord RecordCodec::replyOrDrop(DecodedRecord out, Error problem, bool isRequest,
                                       const ReturnPathCheck& hasReturnPath) const {
    // R-MTP.5: answer only a Request whose msg_id we know, over a known return path.
    // (from_id validity and to_id were checked before any caller gets here.) Errors
    // and responses are never answered, so two endpoints cannot ping-pong errors.
    if (out.msgId.empty() || !isRequest) return drop(std::move(out), std::move(problem));
    if (hasReturnPath && !hasReturnPath(out.fromId)) return drop(std::move(out), std::move(problem));
    auto bytes = encodeError(out.fromId, out.msgId, problem);
    if (!bytes) return drop(std::move(out), std::move(problem));
    BERTH_LOG_DEBUG(kTag) << "answering msg '" << out.msgId << "' from '" << out.fromId
                          << "' with an error: " << problem.describe();
    out.kind = DecodeKind::kReplyWithError;
    out.reply = std::move(*bytes);
    out.problem = std::move(problem);
    return out;
}

DecodedRecord RecordCodec::decode(std::string_view bytes, const ReturnPathCheck& hasReturnPath) const {
    DecodedRecord out;
    usp_record::Record record;
    if (auto problem = checkEnvelope(bytes, record, out)) return drop(std::move(out), std::move(*problem));

    if (out.recordType == RecordType::kSessionContext) {
        // We do not do E2E sessions: R-E2E.6a asks for a DisconnectRecord with 7106.
        Error problem(ErrorCode::kSessionContextNotAllowed, "Session Context is not supported by this agent");
        if (hasReturnPath && !hasReturnPath(out.fromId)) return drop(std::move(out), std::move(problem));
        auto reply = encodeDisconnect(out.fromId, problem.code, problem.message);
        if (!reply) return drop(std::move(out), std::move(problem));
        out.kind = DecodeKind::kReplyWithError;
        out.reply = std::move(*reply);
        out.replyIsDisconnect = true;
        out.problem = std::move(problem);
        return out;
    }

    // Problems with the Record's own fields; answered later if a Request can be found.
    std::optional<Error> recordProblem = recordFieldProblem(record);
    switch (out.recordType) {
        case RecordType::kNoSessionContext:
            return decodeNoSession(std::move(out), record, recordProblem, hasReturnPath);
        case RecordType::kDisconnect:
            if (recordProblem) return drop(std::move(out), std::move(*recordProblem));
            out.kind = DecodeKind::kDisconnect;
            out.disconnect = DisconnectInfo{record.disconnect().reason_code(), record.disconnect().reason()};
            return out;
        default:
            return decodeConnect(std::move(out), record, std::move(recordProblem));
    }
}

std::optional<Error> RecordCodec::checkEnvelope(std::string_view bytes, usp_record::Record& record,
                                                DecodedRecord& out) const {
    if (bytes.size() > config_.maxRecordSize || bytes.size() > static_cast<std::size_t>(INT_MAX)) {
        return Error(ErrorCode::kRecordNotParsed, "record of " + std::to_string(bytes.size()) +
                                                      " bytes exceeds the limit of " +
                                                      std::to_string(config_.maxRecordSize) + " bytes");
    }
    if (!record.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
        // The offending bytes are never echoed: they are not UTF-8, and our logs and
        // err_msg must stay UTF-8.
        return Error(ErrorCode::kRecordNotParsed, holdsInvalidUtf8(bytes)
                                                      ? "record has a string field that is not valid UTF-8"
                                                      : "record could not be parsed");
    }
    out.fromId = record.from_id();
    out.toId = record.to_id();
    out.version = record.version();

    if (record.to_id() != config_.endpointId)  // R-E2E.1
        return Error(ErrorCode::kRecordFieldInvalid, "to_id '" + record.to_id() + "' is not our endpoint ID");
    if (!isPlausibleEndpointId(record.from_id()))
        return Error(ErrorCode::kRecordFieldInvalid, "from_id '" + record.from_id() + "' is not a valid endpoint ID");
    if (record.from_id() == config_.endpointId)
        return Error(ErrorCode::kRecordFieldInvalid, "from_id is our own endpoint ID");

    // R-ENC.3/4: exactly one record_type member, else discard.
    const auto topFields = wire::fieldNumbers({bytes});
    const auto members = countInRange(topFields, kRecordTypeFirst, kRecordTypeLast);
    out.recordType = recordTypeOf(record);
    if (members == 0 || out.recordType == RecordType::kNone)
        return Error(ErrorCode::kRecordFieldInvalid, "record has no record_type");
    if (members > 1) return Error(ErrorCode::kRecordFieldInvalid, "record has more than one record_type");
    return std::nullopt;
}

DecodedRecord RecordCodec::decodeConnect(DecodedRecord out, const usp_record::Record& record,
                                         std::optional<Error> recordProblem) const {
    ConnectInfo info;
    info.type = out.recordType;
    if (out.recordType == RecordType::kMqttConnect) {
        if (!usp_record::MQTTConnectRecord::MQTTVersion_IsValid(record.mqtt_connect().version()))
            recordProblem = Error(ErrorCode::kRecordFieldInvalid, "unknown MQTT version in mqtt_connect");
        info.mqttVersion = record.mqtt_connect().version();
        info.subscribedAddress = record.mqtt_connect().subscribed_topic();
    } else if (out.recordType == RecordType::kStompConnect) {
        if (!usp_record::STOMPConnectRecord::STOMPVersion_IsValid(record.stomp_connect().version()))
            recordProblem = Error(ErrorCode::kRecordFieldInvalid, "unknown STOMP version in stomp_connect");
        info.subscribedAddress = record.stomp_connect().subscribed_destination();
    }
    if (recordProblem) return drop(std::move(out), std::move(*recordProblem));
    out.kind = DecodeKind::kConnect;
    out.connect = std::move(info);
    return out;
}

DecodedRecord RecordCodec::decodeNoSession(DecodedRecord out, const usp_record::Record& record,
                                           std::optional<Error> recordProblem,
                                           const ReturnPathCheck& hasReturnPath) const {
    const std::string& payload = record.no_session_context().payload();
    if (payload.empty())  // R-E2E.26; nothing to take a msg_id from
        return drop(std::move(out), Error(ErrorCode::kRecordFieldInvalid, "no_session_context payload is empty"));

    usp::Msg msg;
    if (!msg.ParseFromString(payload)) {
        salvageHeader(payload, out);
        const bool isRequest = out.msgType && isRequestType(*out.msgType);
        return replyOrDrop(
            std::move(out),
            recordProblem ? std::move(*recordProblem)
            : holdsInvalidUtf8(payload)
                ? Error(ErrorCode::kInvalidArguments,
                        "a string field of the USP Message is not valid UTF-8; the message was not processed")
                : Error(ErrorCode::kRecordNotParsed, "the USP Message in the record could not be parsed"),
            isRequest, hasReturnPath);
    }

    out.msgId = msg.header().msg_id();
    const auto headerType = msg.header().msg_type();
    const bool headerTypeKnown = usp::Header::MsgType_IsValid(headerType);
    const auto bodyType = bodyMsgType(msg.body());
    if (bodyType) {
        out.msgType = bodyType;
    } else if (headerTypeKnown) {
        out.msgType = headerType;
    }
    out.headerTypeMismatch = bodyType && headerTypeKnown && *bodyType != headerType;

    // R-ENC.3: the body carries exactly one of request, response, error. Several
    // members on the wire parse as the last one, so look at the raw fields.
    const std::vector<std::string_view> payloadChunk{payload};
    const auto bodyChunks = wire::subMessages(payloadChunk, kMsgBody);
    const auto bodyFields = wire::fieldNumbers(bodyChunks);
    const auto bodyMembers = countInRange(bodyFields, kBodyRequest, kBodyLast);
    // Whether the sender meant a Request: a request member, or an empty body whose
    // header names a request type.
    const bool isRequest =
        bodyFields.count(kBodyRequest) != 0 || (bodyMembers == 0 && headerTypeKnown && isRequestType(headerType));

    if (recordProblem) return replyOrDrop(std::move(out), std::move(*recordProblem), isRequest, hasReturnPath);
    if (out.msgId.empty()) return drop(std::move(out), Error(ErrorCode::kInvalidArguments, "message has no msg_id"));
    if (!headerTypeKnown) {  // R-ENC.2: unknown enum values are reported as R-MTP.5 says
        return replyOrDrop(std::move(out),
                           Error(ErrorCode::kRecordFieldInvalid, "unknown msg_type " + std::to_string(headerType)),
                           isRequest, hasReturnPath);
    }

    // R-ENC.5: 7004 for a oneof violation in a Message.
    if (bodyMembers != 1 || msg.body().msg_body_case() == usp::Body::MSG_BODY_NOT_SET) {
        return replyOrDrop(std::move(out),
                           Error(ErrorCode::kInvalidArguments,
                                 bodyMembers == 0 ? "message body is empty" : "message body has more than one member"),
                           isRequest, hasReturnPath);
    }

    if (msg.body().has_response()) {
        if (msg.body().response().resp_type_case() == usp::Response::RESP_TYPE_NOT_SET)
            return drop(std::move(out), Error(ErrorCode::kInvalidArguments, "response has no resp_type"));
        out.kind = DecodeKind::kResponse;
        out.msg = std::move(msg);
        return out;
    }
    if (msg.body().has_error()) {
        out.kind = DecodeKind::kError;
        out.msg = std::move(msg);
        return out;
    }
    return decodeRequest(std::move(out), std::move(msg), bodyChunks, hasReturnPath);
}

DecodedRecord RecordCodec::decodeRequest(DecodedRecord out, usp::Msg msg,
                                         const std::vector<std::string_view>& bodyChunks,
                                         const ReturnPathCheck& hasReturnPath) const {
    const auto requestChunks = wire::subMessages(bodyChunks, kBodyRequest);
    const auto requestFields = wire::fieldNumbers(requestChunks);
    const auto requestMembers = countInRange(requestFields, 1, kRequestLast);
    if (requestMembers == 0) {
        // Nothing we know, but something: a request type newer than our schema.
        if (hasOutsideRange(requestFields, 1, kRequestLast)) {
            return replyOrDrop(std::move(out), Error(ErrorCode::kMessageNotSupported, "request type not supported"),
                               true, hasReturnPath);
        }
        return replyOrDrop(std::move(out), Error(ErrorCode::kInvalidArguments, "request has no req_type"), true,
                           hasReturnPath);
    }
    if (requestMembers > 1) {
        return replyOrDrop(std::move(out), Error(ErrorCode::kInvalidArguments, "request has more than one req_type"),
                           true, hasReturnPath);
    }

    const auto reqCase = msg.body().request().req_type_case();
    if (config_.servedRequests.count(reqCase) == 0) {
        return replyOrDrop(std::move(out),
                           Error(ErrorCode::kMessageNotSupported,
                                 std::string(msgTypeName(requestMsgType(reqCase))) + " is not supported by this agent"),
                           true, hasReturnPath);
    }

    if (reqCase == usp::Request::kNotify) {
        const auto notifyFields = wire::fieldNumbers(wire::subMessages(requestChunks, kRequestNotify));
        if (countInRange(notifyFields, kNotifyFirst, kNotifyLast) != 1) {
            return replyOrDrop(std::move(out),
                               Error(ErrorCode::kInvalidArguments, "notify must carry exactly one notification"), true,
                               hasReturnPath);
        }
    }

    if (out.headerTypeMismatch) {
        BERTH_LOG_DEBUG(kTag) << "msg '" << out.msgId << "': header says " << msgTypeName(msg.header().msg_type())
                              << ", body is " << msgTypeName(*out.msgType) << "; following the body";
    }
    out.kind = DecodeKind::kRequest;
    out.msg = std::move(msg);
    return out;
}

}  // namespace berth::agent
