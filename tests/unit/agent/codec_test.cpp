#include "berth/agent/codec.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using namespace berth;
using namespace berth::agent;

namespace {

const std::string kAgentId = "os::012345-SN0001";
const std::string kControllerId = "proto::controller";

RecordCodec agentCodec(std::size_t maxSize = kDefaultMaxRecordSize) {
    CodecConfig c;
    c.endpointId = kAgentId;
    c.maxRecordSize = maxSize;
    return RecordCodec(c);
}

// The other side: a Controller, which also accepts Notify.
RecordCodec controllerCodec() {
    CodecConfig c;
    c.endpointId = kControllerId;
    c.servedRequests = agentRequestTypes();
    c.servedRequests.insert(usp::Request::kNotify);
    return RecordCodec(c);
}

std::string varint(std::uint64_t v) {
    std::string out;
    while (v >= 0x80) {
        out += static_cast<char>((v & 0x7F) | 0x80);
        v >>= 7;
    }
    out += static_cast<char>(v);
    return out;
}

// A length-delimited field on the wire.
std::string lenField(std::uint32_t number, const std::string& bytes) {
    return varint((static_cast<std::uint64_t>(number) << 3) | 2) + varint(bytes.size()) + bytes;
}

usp::Msg getRequest(const std::string& msgId, MsgType headerType = usp::Header::GET) {
    usp::Msg msg;
    msg.mutable_header()->set_msg_id(msgId);
    msg.mutable_header()->set_msg_type(headerType);
    auto* get = msg.mutable_body()->mutable_request()->mutable_get();
    get->add_param_paths("Device.DeviceInfo.");
    get->add_param_paths("Device.LocalAgent.Controller.*.EndpointID");
    get->set_max_depth(2);
    return msg;
}

// A Record from the Controller to the agent carrying `payload` (raw Msg bytes).
usp_record::Record recordFromController(const std::string& payload) {
    usp_record::Record r;
    r.set_version("1.4");
    r.set_to_id(kAgentId);
    r.set_from_id(kControllerId);
    r.mutable_no_session_context()->set_payload(payload);
    return r;
}

std::string bytesOf(const google::protobuf::MessageLite& m) {
    return m.SerializeAsString();
}

// Decodes a reply Record the agent produced, as the Controller would.
usp::Msg errorInReply(const DecodedRecord& d) {
    REQUIRE(d.kind == DecodeKind::kReplyWithError);
    REQUIRE_FALSE(d.replyIsDisconnect);
    auto back = controllerCodec().decode(d.reply);
    REQUIRE(back.kind == DecodeKind::kError);
    return back.msg;
}

std::vector<usp::Msg> everyAgentRequest() {
    std::vector<usp::Msg> out;
    auto add = [&](MsgType type, auto fill) {
        usp::Msg m;
        m.mutable_header()->set_msg_id("req-" + std::to_string(out.size()));
        m.mutable_header()->set_msg_type(type);
        fill(*m.mutable_body()->mutable_request());
        out.push_back(m);
    };
    add(usp::Header::GET, [](usp::Request& r) { r.mutable_get()->add_param_paths("Device.DeviceInfo.SerialNumber"); });
    add(usp::Header::GET_SUPPORTED_DM, [](usp::Request& r) {
        auto* g = r.mutable_get_supported_dm();
        g->add_obj_paths("Device.SoftwareModules.");
        g->set_return_params(true);
        g->set_return_unique_key_sets(true);
    });
    add(usp::Header::GET_INSTANCES, [](usp::Request& r) {
        r.mutable_get_instances()->add_obj_paths("Device.LocalAgent.Controller.");
        r.mutable_get_instances()->set_first_level_only(true);
    });
    add(usp::Header::SET, [](usp::Request& r) {
        auto* s = r.mutable_set();
        s->set_allow_partial(true);
        auto* o = s->add_update_objs();
        o->set_obj_path("Device.LocalAgent.Controller.1.");
        auto* p = o->add_param_settings();
        p->set_param("Enable");
        p->set_value("true");
        p->set_required(true);
    });
    add(usp::Header::ADD, [](usp::Request& r) {
        auto* o = r.mutable_add()->add_create_objs();
        o->set_obj_path("Device.LocalAgent.Subscription.");
        auto* p = o->add_param_settings();
        p->set_param("NotifType");
        p->set_value("ValueChange");
    });
    add(usp::Header::DELETE,
        [](usp::Request& r) { r.mutable_delete_()->add_obj_paths("Device.LocalAgent.Subscription.3."); });
    add(usp::Header::OPERATE, [](usp::Request& r) {
        auto* o = r.mutable_operate();
        o->set_command("Device.SoftwareModules.InstallDU()");
        o->set_command_key("k1");
        o->set_send_resp(true);
        (*o->mutable_input_args())["URL"] = "https://example.com/app.tar";
    });
    add(usp::Header::GET_SUPPORTED_PROTO, [](usp::Request& r) {
        r.mutable_get_supported_protocol()->set_controller_supported_protocol_versions("1.3,1.4");
    });
    return out;
}

}  // namespace

TEST_CASE("Every request type an agent serves survives a round trip through a Record", "[codec]") {
    const auto agent = agentCodec();
    const auto controller = controllerCodec();
    const auto requests = everyAgentRequest();
    REQUIRE(requests.size() == agentRequestTypes().size());
    for (const auto& msg : requests) {
        auto bytes = controller.encodeMsg(msg, kAgentId);
        REQUIRE(bytes);
        auto d = agent.decode(*bytes);
        INFO(msgTypeName(msg.header().msg_type()));
        REQUIRE(d.kind == DecodeKind::kRequest);
        CHECK(d.recordType == RecordType::kNoSessionContext);
        CHECK(d.fromId == kControllerId);
        CHECK(d.toId == kAgentId);
        CHECK(d.version == "1.4");
        CHECK(d.msgId == msg.header().msg_id());
        REQUIRE(d.msgType);
        CHECK(*d.msgType == msg.header().msg_type());
        CHECK_FALSE(d.headerTypeMismatch);
        CHECK(bytesOf(d.msg) == bytesOf(msg));
    }
}

TEST_CASE("Every response type survives a round trip and the Controller sees a response", "[codec]") {
    const auto agent = agentCodec();
    const auto controller = controllerCodec();
    const MsgType requests[] = {usp::Header::GET,
                                usp::Header::NOTIFY,
                                usp::Header::SET,
                                usp::Header::OPERATE,
                                usp::Header::ADD,
                                usp::Header::DELETE,
                                usp::Header::GET_SUPPORTED_DM,
                                usp::Header::GET_INSTANCES,
                                usp::Header::GET_SUPPORTED_PROTO,
                                usp::Header::REGISTER,
                                usp::Header::DEREGISTER};
    for (auto request : requests) {
        auto msg = makeResponseMsg("m-1", request);
        REQUIRE(msg);
        const auto expected = *responseTypeFor(request);
        CHECK(msg->header().msg_type() == expected);
        auto* resp = msg->mutable_body()->mutable_response();
        // Put something in each so the bodies are not all empty.
        switch (resp->resp_type_case()) {
            case usp::Response::kGetResp: {
                auto* rp = resp->mutable_get_resp()->add_req_path_results();
                rp->set_requested_path("Device.DeviceInfo.");
                auto* res = rp->add_resolved_path_results();
                res->set_resolved_path("Device.DeviceInfo.");
                (*res->mutable_result_params())["SerialNumber"] = "SN0001";
                break;
            }
            case usp::Response::kNotifyResp:
                resp->mutable_notify_resp()->set_subscription_id("sub-1");
                break;
            case usp::Response::kSetResp:
                resp->mutable_set_resp()->add_updated_obj_results()->set_requested_path("Device.X.");
                break;
            case usp::Response::kOperateResp:
                resp->mutable_operate_resp()->add_operation_results()->set_req_obj_path("Device.LocalAgent.Request.1.");
                break;
            case usp::Response::kAddResp: {
                auto* r = resp->mutable_add_resp()->add_created_obj_results();
                r->set_requested_path("Device.LocalAgent.Subscription.");
                r->mutable_oper_status()->mutable_oper_success()->set_instantiated_path(
                    "Device.LocalAgent.Subscription.4.");
                break;
            }
            case usp::Response::kDeleteResp:
                resp->mutable_delete_resp()->add_deleted_obj_results()->set_requested_path("Device.X.1.");
                break;
            case usp::Response::kGetSupportedDmResp: {
                auto* r = resp->mutable_get_supported_dm_resp()->add_req_obj_results();
                r->set_data_model_inst_uri("urn:broadband-forum-org:tr-181-2-19-1-usp");
                auto* o = r->add_supported_objs();
                o->set_access(usp::GetSupportedDMResp::OBJ_ADD_DELETE);
                o->add_supported_params()->set_value_type(usp::GetSupportedDMResp::PARAM_UNSIGNED_LONG);
                break;
            }
            case usp::Response::kGetInstancesResp:
                resp->mutable_get_instances_resp()->add_req_path_results()->add_curr_insts()->set_instantiated_obj_path(
                    "Device.X.1.");
                break;
            case usp::Response::kGetSupportedProtocolResp:
                resp->mutable_get_supported_protocol_resp()->set_agent_supported_protocol_versions(
                    std::string(kSupportedUspVersions));
                break;
            case usp::Response::kRegisterResp:
                resp->mutable_register_resp()->add_registered_path_results()->set_requested_path("Device.X.");
                break;
            case usp::Response::kDeregisterResp:
                resp->mutable_deregister_resp()->add_deregistered_path_results()->set_requested_path("Device.X.");
                break;
            case usp::Response::RESP_TYPE_NOT_SET:
                FAIL("makeResponseMsg left the response empty");
                break;
        }
        auto bytes = agent.encodeMsg(*msg, kControllerId);
        REQUIRE(bytes);
        auto d = controller.decode(*bytes);
        INFO(msgTypeName(expected));
        REQUIRE(d.kind == DecodeKind::kResponse);
        CHECK(d.fromId == kAgentId);
        CHECK(d.msgId == "m-1");
        CHECK(*d.msgType == expected);
        CHECK(bytesOf(d.msg) == bytesOf(*msg));
    }
    CHECK_FALSE(makeResponseMsg("x", usp::Header::NOTIFY_RESP));
    CHECK_FALSE(makeResponseMsg("x", usp::Header::ERROR));
}

TEST_CASE("A NotifyResp from the Controller reaches the agent as a response", "[codec]") {
    auto msg = *makeResponseMsg("notify-7", usp::Header::NOTIFY);
    msg.mutable_body()->mutable_response()->mutable_notify_resp()->set_subscription_id("sub-1");
    auto d = agentCodec().decode(*controllerCodec().encodeMsg(msg, kAgentId));
    REQUIRE(d.kind == DecodeKind::kResponse);
    CHECK(d.msgId == "notify-7");
    CHECK(*d.msgType == usp::Header::NOTIFY_RESP);
    CHECK(d.msg.body().response().notify_resp().subscription_id() == "sub-1");
}

TEST_CASE("Every kind of notification the agent sends survives a round trip", "[codec]") {
    const auto agent = agentCodec();
    const auto controller = controllerCodec();
    std::vector<usp::Msg> notifies;
    for (int kind = 0; kind < 6; ++kind) {
        auto msg = makeNotifyMsg("n-" + std::to_string(kind), "sub-1", kind % 2 == 0);
        auto* n = msg.mutable_body()->mutable_request()->mutable_notify();
        switch (kind) {
            case 0: {
                auto* e = n->mutable_event();
                e->set_obj_path("Device.SoftwareModules.");
                e->set_event_name("DUStateChange!");
                (*e->mutable_params())["Fault.FaultCode"] = "0";
                break;
            }
            case 1:
                n->mutable_value_change()->set_param_path("Device.DeviceInfo.UpTime");
                n->mutable_value_change()->set_param_value("42");
                break;
            case 2:
                n->mutable_obj_creation()->set_obj_path("Device.LocalAgent.Subscription.2.");
                break;
            case 3:
                n->mutable_obj_deletion()->set_obj_path("Device.LocalAgent.Subscription.2.");
                break;
            case 4: {
                auto* oc = n->mutable_oper_complete();
                oc->set_obj_path("Device.SoftwareModules.");
                oc->set_command_name("InstallDU()");
                oc->mutable_cmd_failure()->set_err_code(7035);
                break;
            }
            case 5: {
                n->set_subscription_id("");
                auto* ob = n->mutable_on_board_req();
                ob->set_oui("012345");
                ob->set_agent_supported_protocol_versions(std::string(kSupportedUspVersions));
                break;
            }
        }
        auto d = controller.decode(*agent.encodeMsg(msg, kControllerId));
        INFO("notification kind " << kind);
        REQUIRE(d.kind == DecodeKind::kRequest);
        CHECK(*d.msgType == usp::Header::NOTIFY);
        CHECK(bytesOf(d.msg) == bytesOf(msg));
    }
}

TEST_CASE("An Error message round trips with its code and parameter errors", "[codec]") {
    const auto agent = agentCodec();
    auto bytes = agent.encodeError(kControllerId, "set-9", Error(ErrorCode::kInvalidValue, "Enable must be a boolean"),
                                   {{"Device.LocalAgent.Controller.1.Enable", ErrorCode::kInvalidType, ""}});
    REQUIRE(bytes);
    auto d = controllerCodec().decode(*bytes);
    REQUIRE(d.kind == DecodeKind::kError);
    CHECK(d.msgId == "set-9");
    CHECK(*d.msgType == usp::Header::ERROR);
    const auto& err = d.msg.body().error();
    CHECK(err.err_code() == 7012);
    CHECK(err.err_msg() == "Enable must be a boolean");
    REQUIRE(err.param_errs_size() == 1);
    CHECK(err.param_errs(0).param_path() == "Device.LocalAgent.Controller.1.Enable");
    CHECK(err.param_errs(0).err_code() == 7011);
    CHECK_FALSE(err.param_errs(0).err_msg().empty());
}

TEST_CASE("An Error built from an Error with a path blames that path", "[codec]") {
    auto msg = makeErrorMsg("g-1", Error(ErrorCode::kInvalidPath, "", "Device.Nope."));
    const auto& err = msg.body().error();
    CHECK(err.err_code() == 7026);
    CHECK(err.err_msg() == std::string(errorCodeName(ErrorCode::kInvalidPath)));
    REQUIRE(err.param_errs_size() == 1);
    CHECK(err.param_errs(0).param_path() == "Device.Nope.");
}

TEST_CASE("Connect records of every MTP are recognised as connects", "[codec]") {
    const auto ctrl = controllerCodec();
    const auto agent = agentCodec();
    SECTION("MQTT") {
        auto d =
            ctrl.decode(*agent.encodeMqttConnect(kControllerId, usp_record::MQTTConnectRecord::V5, "usp/agent/SN0001"));
        REQUIRE(d.kind == DecodeKind::kConnect);
        CHECK(d.recordType == RecordType::kMqttConnect);
        CHECK(d.connect->type == RecordType::kMqttConnect);
        CHECK(*d.connect->mqttVersion == usp_record::MQTTConnectRecord::V5);
        CHECK(d.connect->subscribedAddress == "usp/agent/SN0001");
    }
    SECTION("STOMP") {
        auto d = ctrl.decode(*agent.encodeStompConnect(kControllerId, "/queue/agent"));
        REQUIRE(d.kind == DecodeKind::kConnect);
        CHECK(d.connect->type == RecordType::kStompConnect);
        CHECK(d.connect->subscribedAddress == "/queue/agent");
    }
    SECTION("WebSocket") {
        auto d = ctrl.decode(*agent.encodeWebSocketConnect(kControllerId));
        REQUIRE(d.kind == DecodeKind::kConnect);
        CHECK(d.connect->type == RecordType::kWebSocketConnect);
    }
    SECTION("Unix domain socket") {
        auto d = ctrl.decode(*agent.encodeUdsConnect(kControllerId));
        REQUIRE(d.kind == DecodeKind::kConnect);
        CHECK(d.connect->type == RecordType::kUdsConnect);
    }
    SECTION("A connect from the Controller reaches the agent the same way") {
        auto d = agent.decode(*ctrl.encodeWebSocketConnect(kAgentId));
        REQUIRE(d.kind == DecodeKind::kConnect);
        CHECK(d.fromId == kControllerId);
    }
}

TEST_CASE("A DisconnectRecord is reported with its reason", "[codec]") {
    auto bytes = controllerCodec().encodeDisconnect(kAgentId, ErrorCode::kSessionContextTerminated, "going away");
    REQUIRE(bytes);
    auto d = agentCodec().decode(*bytes);
    REQUIRE(d.kind == DecodeKind::kDisconnect);
    CHECK(d.recordType == RecordType::kDisconnect);
    CHECK(d.disconnect->reasonCode == 7105);
    CHECK(d.disconnect->reason == "going away");
}

TEST_CASE("Garbage bytes are dropped as unparsable", "[codec]") {
    const auto agent = agentCodec();
    const std::string garbage[] = {std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11),
                                   std::string("hello world"), std::string("\x0a\x05\x31", 3),
                                   std::string("\x3a\x80\x80\x80\x80\x10", 6)};
    for (const auto& g : garbage) {
        auto d = agent.decode(g);
        CHECK(d.kind == DecodeKind::kDrop);
        REQUIRE(d.problem);
        CHECK(d.problem->code == ErrorCode::kRecordNotParsed);
        CHECK(d.reply.empty());
    }
    // Zero bytes parse as an empty Record, which is not addressed to us.
    auto empty = agent.decode("");
    CHECK(empty.kind == DecodeKind::kDrop);
}

TEST_CASE("No truncation of a valid Get record is taken for a request", "[codec]") {
    const auto agent = agentCodec();
    const auto full = *controllerCodec().encodeMsg(getRequest("trunc-1"), kAgentId);
    REQUIRE(agent.decode(full).kind == DecodeKind::kRequest);
    for (std::size_t n = 0; n < full.size(); ++n) {
        auto d = agent.decode(std::string_view(full).substr(0, n));
        INFO("prefix of " << n << " bytes");
        CHECK(d.kind == DecodeKind::kDrop);
    }
}

TEST_CASE("A record whose Msg is cut short after the header is answered with 7100", "[codec]") {
    const auto msgBytes = bytesOf(getRequest("cut-1"));
    auto record = recordFromController(msgBytes.substr(0, msgBytes.size() - 3));
    auto d = agentCodec().decode(bytesOf(record));
    auto err = errorInReply(d);
    CHECK(err.header().msg_id() == "cut-1");
    CHECK(err.body().error().err_code() == 7100);
    CHECK(d.problem->code == ErrorCode::kRecordNotParsed);
}

TEST_CASE("A record whose Msg header is unreadable is dropped silently", "[codec]") {
    auto d = agentCodec().decode(bytesOf(recordFromController("\x0a\x30garbage")));
    CHECK(d.kind == DecodeKind::kDrop);
    CHECK(d.problem->code == ErrorCode::kRecordNotParsed);
}

TEST_CASE("Records above the size limit are rejected before parsing", "[codec]") {
    auto msg = getRequest("big-1");
    msg.mutable_body()->mutable_request()->mutable_get()->add_param_paths(std::string(2000, 'x'));
    const auto bytes = *controllerCodec().encodeMsg(msg, kAgentId);
    auto d = agentCodec(1000).decode(bytes);
    CHECK(d.kind == DecodeKind::kDrop);
    CHECK(d.problem->code == ErrorCode::kRecordNotParsed);
    CHECK_THAT(d.problem->message, Catch::Contains("exceeds the limit of 1000"));
    CHECK(d.fromId.empty());  // not even looked at
    CHECK(agentCodec(bytes.size()).decode(bytes).kind == DecodeKind::kRequest);
    CHECK(agentCodec(bytes.size() - 1).decode(bytes).kind == DecodeKind::kDrop);
}

TEST_CASE("Encoding refuses a record larger than the peer accepts", "[codec]") {
    auto msg = getRequest("big-2");
    msg.mutable_body()->mutable_request()->mutable_get()->add_param_paths(std::string(2000, 'x'));
    auto r = agentCodec().encodeMsg(msg, kControllerId, 1024);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kResourcesExceeded);
    CHECK(agentCodec().encodeMsg(msg, kControllerId, 4096));
}

TEST_CASE("A record addressed to another endpoint is ignored without a reply", "[codec]") {
    auto bytes = *controllerCodec().encodeMsg(getRequest("x-1"), "os::012345-OTHER");
    auto d = agentCodec().decode(bytes);
    CHECK(d.kind == DecodeKind::kDrop);
    CHECK(d.reply.empty());
    CHECK_THAT(d.problem->message, Catch::Contains("not our endpoint ID"));
}

TEST_CASE("A record with an invalid or missing from_id is dropped even when it is otherwise bad", "[codec]") {
    for (const std::string from : {"", "controller", "proto::", "bad id::x", "self::a\tb"}) {
        auto record = recordFromController(bytesOf(getRequest("f-1")));
        record.set_from_id(from);
        record.clear_version();  // would deserve 7104 if we could answer
        auto d = agentCodec().decode(bytesOf(record));
        INFO("from_id '" << from << "'");
        CHECK(d.kind == DecodeKind::kDrop);
        CHECK(d.reply.empty());
    }
    auto record = recordFromController(bytesOf(getRequest("f-2")));
    record.set_from_id(kAgentId);
    CHECK(agentCodec().decode(bytesOf(record)).kind == DecodeKind::kDrop);
}

TEST_CASE("A Session Context record is answered with a 7106 DisconnectRecord", "[codec]") {
    usp_record::Record record;
    record.set_version("1.4");
    record.set_to_id(kAgentId);
    record.set_from_id(kControllerId);
    auto* s = record.mutable_session_context();
    s->set_session_id(1);
    s->set_sequence_id(1);
    s->set_expected_id(1);
    s->add_payload(bytesOf(getRequest("s-1")));
    const auto bytes = bytesOf(record);

    auto d = agentCodec().decode(bytes);
    REQUIRE(d.kind == DecodeKind::kReplyWithError);
    CHECK(d.replyIsDisconnect);
    CHECK(d.recordType == RecordType::kSessionContext);
    CHECK(d.problem->code == ErrorCode::kSessionContextNotAllowed);
    auto back = controllerCodec().decode(d.reply);
    REQUIRE(back.kind == DecodeKind::kDisconnect);
    CHECK(back.disconnect->reasonCode == 7106);
    CHECK_FALSE(back.disconnect->reason.empty());

    SECTION("but dropped when there is no way back") {
        auto none = agentCodec().decode(bytes, [](const std::string&) { return false; });
        CHECK(none.kind == DecodeKind::kDrop);
        CHECK(none.reply.empty());
    }
}

TEST_CASE("A Get in a record without version is answered with 7104 when a return path is known", "[codec]") {
    auto record = recordFromController(bytesOf(getRequest("v-1")));
    record.clear_version();
    const auto bytes = bytesOf(record);
    std::string askedFor;
    auto d = agentCodec().decode(bytes, [&](const std::string& from) {
        askedFor = from;
        return true;
    });
    CHECK(askedFor == kControllerId);
    auto err = errorInReply(d);
    CHECK(err.header().msg_id() == "v-1");
    CHECK(err.body().error().err_code() == 7104);

    SECTION("and dropped when no return path is known") {
        auto none = agentCodec().decode(bytes, [](const std::string&) { return false; });
        CHECK(none.kind == DecodeKind::kDrop);
        CHECK(none.problem->code == ErrorCode::kRecordFieldInvalid);
    }
}

TEST_CASE("A bad record carrying a response or an error is dropped, never answered", "[codec]") {
    auto resp = *makeResponseMsg("r-1", usp::Header::NOTIFY);
    resp.mutable_body()->mutable_response()->mutable_notify_resp();
    auto error = makeErrorMsg("r-2", Error(ErrorCode::kInternalError, "x"));
    for (const auto& msg : {resp, error}) {
        auto record = recordFromController(bytesOf(msg));
        record.set_version("2.0");
        auto d = agentCodec().decode(bytesOf(record));
        CHECK(d.kind == DecodeKind::kDrop);
        CHECK(d.problem->code == ErrorCode::kRecordFieldInvalid);
    }
}

TEST_CASE("Record versions: newer 1.x minors are accepted, other majors and junk get 7104", "[codec]") {
    for (const std::string v : {"1.0", "1.3", "1.4", "1.9", "1.12"}) {
        auto record = recordFromController(bytesOf(getRequest("ver")));
        record.set_version(v);
        INFO(v);
        CHECK(agentCodec().decode(bytesOf(record)).kind == DecodeKind::kRequest);
    }
    for (const std::string v : {"2.0", "0.9", "1", "1.", ".4", "1.4.1", "v1.4", "11111111.1"}) {
        auto record = recordFromController(bytesOf(getRequest("ver")));
        record.set_version(v);
        INFO(v);
        auto err = errorInReply(agentCodec().decode(bytesOf(record)));
        CHECK(err.body().error().err_code() == 7104);
    }
}

TEST_CASE("An E2E-protected payload gets 7102 where a msg_id can be found", "[codec]") {
    auto record = recordFromController(bytesOf(getRequest("tls-1")));
    record.set_payload_security(usp_record::Record::TLS12);
    auto err = errorInReply(agentCodec().decode(bytesOf(record)));
    CHECK(err.body().error().err_code() == 7102);

    // Real TLS ciphertext does not parse as a Msg: nothing to answer.
    auto cipher = recordFromController(std::string("\x17\x03\x03\x00\x20", 5) + std::string(32, '\x5a'));
    cipher.set_payload_security(usp_record::Record::TLS12);
    CHECK(agentCodec().decode(bytesOf(cipher)).kind == DecodeKind::kDrop);
}

TEST_CASE("Unknown enum values are reported with 7104", "[codec]") {
    SECTION("payload_security") {
        auto record = recordFromController(bytesOf(getRequest("e-1")));
        record.set_payload_security(static_cast<usp_record::Record::PayloadSecurity>(7));
        auto err = errorInReply(agentCodec().decode(bytesOf(record)));
        CHECK(err.body().error().err_code() == 7104);
    }
    SECTION("msg_type") {
        auto d =
            agentCodec().decode(bytesOf(recordFromController(bytesOf(getRequest("e-2", static_cast<MsgType>(99))))));
        auto err = errorInReply(d);
        CHECK(err.header().msg_id() == "e-2");
        CHECK(err.body().error().err_code() == 7104);
    }
    SECTION("MQTT version in a connect record") {
        usp_record::Record record;
        record.set_version("1.4");
        record.set_to_id(kAgentId);
        record.set_from_id(kControllerId);
        record.mutable_mqtt_connect()->set_version(static_cast<usp_record::MQTTConnectRecord::MQTTVersion>(3));
        auto d = agentCodec().decode(bytesOf(record));
        CHECK(d.kind == DecodeKind::kDrop);
        CHECK(d.problem->code == ErrorCode::kRecordFieldInvalid);
    }
}

TEST_CASE("A record with no record_type or two of them is discarded", "[codec]") {
    usp_record::Record record;
    record.set_version("1.4");
    record.set_to_id(kAgentId);
    record.set_from_id(kControllerId);
    auto none = agentCodec().decode(bytesOf(record));
    CHECK(none.kind == DecodeKind::kDrop);
    CHECK(none.problem->code == ErrorCode::kRecordFieldInvalid);

    // A valid Get record with a DisconnectRecord (field 12) appended: two members.
    auto two = *controllerCodec().encodeMsg(getRequest("two-1"), kAgentId) + lenField(12, "");
    auto d = agentCodec().decode(two);
    CHECK(d.kind == DecodeKind::kDrop);
    CHECK_THAT(d.problem->message, Catch::Contains("more than one"));
}

TEST_CASE("A no_session_context record with an empty payload is dropped", "[codec]") {
    auto d = agentCodec().decode(bytesOf(recordFromController("")));
    CHECK(d.kind == DecodeKind::kDrop);
    CHECK(d.problem->code == ErrorCode::kRecordFieldInvalid);
}

TEST_CASE("Oneof violations inside a Message are answered with 7004", "[codec]") {
    usp::Header header;
    header.set_msg_id("o-1");
    header.set_msg_type(usp::Header::GET);
    const auto headerField = lenField(1, bytesOf(header));

    SECTION("an empty body under a request header") {
        auto err = errorInReply(agentCodec().decode(bytesOf(recordFromController(headerField + lenField(2, "")))));
        CHECK(err.header().msg_id() == "o-1");
        CHECK(err.body().error().err_code() == 7004);
    }
    SECTION("an empty request") {
        auto body = lenField(1, "");
        auto err = errorInReply(agentCodec().decode(bytesOf(recordFromController(headerField + lenField(2, body)))));
        CHECK(err.body().error().err_code() == 7004);
    }
    SECTION("a body holding both a request and an error") {
        usp::Body get;
        get.mutable_request()->mutable_get()->add_param_paths("Device.");
        usp::Body error;
        error.mutable_error()->set_err_code(7000);
        auto d = agentCodec().decode(
            bytesOf(recordFromController(headerField + lenField(2, bytesOf(get) + bytesOf(error)))));
        auto err = errorInReply(d);
        CHECK(err.body().error().err_code() == 7004);
    }
    SECTION("a request holding both a get and a set") {
        usp::Request a;
        a.mutable_get()->add_param_paths("Device.");
        usp::Request b;
        b.mutable_set()->set_allow_partial(true);
        auto body = lenField(1, bytesOf(a) + bytesOf(b));
        auto err = errorInReply(agentCodec().decode(bytesOf(recordFromController(headerField + lenField(2, body)))));
        CHECK(err.body().error().err_code() == 7004);
    }
    SECTION("a notify without a notification, at a Controller") {
        auto msg = makeNotifyMsg("n-empty", "sub-1", true);
        auto d = controllerCodec().decode(*agentCodec().encodeMsg(msg, kControllerId));
        REQUIRE(d.kind == DecodeKind::kReplyWithError);
        CHECK(d.problem->code == ErrorCode::kInvalidArguments);
    }
    SECTION("an empty body under a response header is dropped") {
        header.set_msg_type(usp::Header::GET_RESP);
        auto d = agentCodec().decode(bytesOf(recordFromController(lenField(1, bytesOf(header)) + lenField(2, ""))));
        CHECK(d.kind == DecodeKind::kDrop);
        CHECK(d.problem->code == ErrorCode::kInvalidArguments);
    }
}

TEST_CASE("Request types the agent does not serve are answered with 7001", "[codec]") {
    SECTION("Notify, Register and Deregister") {
        usp::Msg notify = makeNotifyMsg("u-1", "sub", true);
        notify.mutable_body()->mutable_request()->mutable_notify()->mutable_obj_deletion()->set_obj_path("Device.X.1.");
        usp::Msg reg;
        reg.mutable_header()->set_msg_id("u-2");
        reg.mutable_header()->set_msg_type(usp::Header::REGISTER);
        reg.mutable_body()->mutable_request()->mutable_register_()->add_reg_paths()->set_path("Device.X.");
        usp::Msg dereg;
        dereg.mutable_header()->set_msg_id("u-3");
        dereg.mutable_header()->set_msg_type(usp::Header::DEREGISTER);
        dereg.mutable_body()->mutable_request()->mutable_deregister()->add_paths("Device.X.");
        for (const auto& msg : {notify, reg, dereg}) {
            auto err = errorInReply(agentCodec().decode(*controllerCodec().encodeMsg(msg, kAgentId)));
            CHECK(err.header().msg_id() == msg.header().msg_id());
            CHECK(err.body().error().err_code() == 7001);
        }
    }
    SECTION("a request type newer than our schema") {
        usp::Header header;
        header.set_msg_id("future-1");
        header.set_msg_type(usp::Header::GET);
        const auto request = lenField(12, "\x0a\x01x");  // req_type member 12 does not exist in 1.4
        const auto msg = lenField(1, bytesOf(header)) + lenField(2, lenField(1, request));
        auto err = errorInReply(agentCodec().decode(bytesOf(recordFromController(msg))));
        CHECK(err.header().msg_id() == "future-1");
        CHECK(err.body().error().err_code() == 7001);
    }
}

TEST_CASE("When msg_type and body disagree the body wins", "[codec]") {
    auto d = agentCodec().decode(*controllerCodec().encodeMsg(getRequest("mm-1", usp::Header::SET), kAgentId));
    REQUIRE(d.kind == DecodeKind::kRequest);
    CHECK(*d.msgType == usp::Header::GET);
    CHECK(d.headerTypeMismatch);
    CHECK(d.msg.body().request().has_get());
}

TEST_CASE("A request without msg_id is dropped because it cannot be answered", "[codec]") {
    auto d = agentCodec().decode(*controllerCodec().encodeMsg(getRequest(""), kAgentId));
    CHECK(d.kind == DecodeKind::kDrop);
    CHECK(d.reply.empty());
}

TEST_CASE("Replies to bad records are addressed back to the sender from us", "[codec]") {
    auto record = recordFromController(bytesOf(getRequest("addr-1")));
    record.set_version("");
    auto d = agentCodec().decode(bytesOf(record));
    REQUIRE(d.kind == DecodeKind::kReplyWithError);
    usp_record::Record reply;
    REQUIRE(reply.ParseFromString(d.reply));
    CHECK(reply.to_id() == kControllerId);
    CHECK(reply.from_id() == kAgentId);
    CHECK(reply.version() == "1.4");
    CHECK(reply.has_no_session_context());
}

TEST_CASE("Endpoint IDs are judged by their authority-scheme:authority-id:instance-id form", "[codec]") {
    CHECK(isPlausibleEndpointId("proto::controller"));
    CHECK(isPlausibleEndpointId("os::012345-SN0001"));
    CHECK(isPlausibleEndpointId("oui:00256D:my-unique-bbf-id-42"));
    CHECK(isPlausibleEndpointId("self::usp-controller.com"));
    CHECK_FALSE(isPlausibleEndpointId(""));
    CHECK_FALSE(isPlausibleEndpointId("controller"));
    CHECK_FALSE(isPlausibleEndpointId("::x"));
    CHECK_FALSE(isPlausibleEndpointId("self::"));
    CHECK_FALSE(isPlausibleEndpointId("self:a:b:c"));
    CHECK_FALSE(isPlausibleEndpointId("self::a b"));
    CHECK_FALSE(isPlausibleEndpointId(std::string("self::a\0b", 9)));
}

TEST_CASE("Message type helpers map requests to responses and name them", "[codec]") {
    CHECK(*responseTypeFor(usp::Header::GET) == usp::Header::GET_RESP);
    CHECK(*responseTypeFor(usp::Header::GET_SUPPORTED_PROTO) == usp::Header::GET_SUPPORTED_PROTO_RESP);
    CHECK_FALSE(responseTypeFor(usp::Header::GET_RESP));
    CHECK(isRequestType(usp::Header::OPERATE));
    CHECK_FALSE(isRequestType(usp::Header::ERROR));
    CHECK(msgTypeName(usp::Header::NOTIFY_RESP) == "NOTIFY_RESP");
    CHECK(msgTypeName(static_cast<MsgType>(1234)) == "UNKNOWN");
    CHECK(recordTypeName(RecordType::kMqttConnect) == "mqtt_connect");
    CHECK(decodeKindName(DecodeKind::kReplyWithError) == "reply-with-error");
}
