// Per-message bounds in the message handlers and UTF-8 checks at decode.

#include <catch2/catch.hpp>
#include <string>

#include "berth/agent/codec.h"
#include "berth/agent/message_handlers.h"
#include "berth/datamodel/engine.h"

using namespace berth;
using namespace berth::agent;

namespace {

const std::string kAgentId = "os::012345-SN0001";
const std::string kControllerId = "proto::controller";

std::string varint(std::uint64_t v) {
    std::string out;
    while (v >= 0x80) {
        out += static_cast<char>((v & 0x7F) | 0x80);
        v >>= 7;
    }
    out += static_cast<char>(v);
    return out;
}

std::string lenField(std::uint32_t number, const std::string& bytes) {
    return varint((static_cast<std::uint64_t>(number) << 3) | 2) + varint(bytes.size()) + bytes;
}

std::string varintField(std::uint32_t number, std::uint64_t v) {
    return varint(std::uint64_t{number} << 3) + varint(v);
}

// A Get Msg built by hand: protobuf would refuse to serialize some of these strings.
std::string rawGet(const std::string& msgId, const std::string& path) {
    std::string header = lenField(1, msgId) + varintField(2, 1);
    std::string get = lenField(1, path);
    std::string body = lenField(1, lenField(1, get));
    return lenField(1, header) + lenField(2, body);
}

std::string recordWith(const std::string& payload, const std::string& fromId = kControllerId) {
    std::string nsc = lenField(2, payload);
    return lenField(1, "1.4") + lenField(2, kAgentId) + lenField(3, fromId) + lenField(7, nsc);
}

RecordCodec agentCodec() {
    CodecConfig c;
    c.endpointId = kAgentId;
    return RecordCodec(c);
}

RecordCodec controllerCodec() {
    CodecConfig c;
    c.endpointId = kControllerId;
    return RecordCodec(c);
}

struct Engine {
    std::unique_ptr<dm::Engine> engine;
    dm::Permissions perms = dm::Permissions::fullAccess();
    Engine() {
        auto e = dm::Engine::open(dm::EngineOptions{});
        REQUIRE(e);
        engine = std::move(*e);
    }
    usp::Msg answer(const usp::Msg& request, RequestLimits limits) {
        HandlerContext ctx{*engine, perms, {}, limits};
        auto r = handleRequest(request, ctx);
        REQUIRE(r);
        return *r;
    }
};

usp::Msg getMsg(std::vector<std::string> paths) {
    usp::Msg m;
    m.mutable_header()->set_msg_id("g1");
    m.mutable_header()->set_msg_type(usp::Header::GET);
    for (auto& p : paths)
        m.mutable_body()->mutable_request()->mutable_get()->add_param_paths(p);
    return m;
}

}  // namespace

TEST_CASE("A request path that is not UTF-8 is refused with 7004 and the bytes are not echoed", "[codec][bounds]") {
    const std::string bad = "Device.\xff\xfe\xc0\xafX.";
    auto d = agentCodec().decode(recordWith(rawGet("m-utf8", bad)));
    REQUIRE(d.kind == DecodeKind::kReplyWithError);
    auto back = controllerCodec().decode(d.reply);
    REQUIRE(back.kind == DecodeKind::kError);
    const auto& err = back.msg.body().error();
    CHECK(back.msg.header().msg_id() == "m-utf8");
    CHECK(err.err_code() == 7004);
    CHECK(err.err_msg().find("UTF-8") != std::string::npos);
    CHECK(err.err_msg().find('\xff') == std::string::npos);
    CHECK(isValidUtf8(err.err_msg()));
}

TEST_CASE("A record whose from_id is not UTF-8 is dropped with a message that is UTF-8", "[codec][bounds]") {
    auto d = agentCodec().decode(recordWith(rawGet("m", "Device."), "proto::\xff\xff"));
    REQUIRE(d.kind == DecodeKind::kDrop);
    REQUIRE(d.problem);
    CHECK(d.problem->message.find("UTF-8") != std::string::npos);
    CHECK(isValidUtf8(d.problem->message));
}

TEST_CASE("A well-formed UTF-8 path with multibyte characters still decodes", "[codec][bounds]") {
    auto d = agentCodec().decode(recordWith(rawGet("m", "Device.LocalAgent.[Alias==\"caf\xc3\xa9\"].")));
    CHECK(d.kind == DecodeKind::kRequest);
}

TEST_CASE("UTF-8 validation refuses overlong forms, surrogates and truncated sequences", "[codec][bounds]") {
    CHECK(isValidUtf8("plain ascii"));
    CHECK(isValidUtf8("\xe2\x82\xac \xf0\x9f\x98\x80"));
    CHECK_FALSE(isValidUtf8("\xc0\xaf"));          // overlong '/'
    CHECK_FALSE(isValidUtf8("\xed\xa0\x80"));      // surrogate
    CHECK_FALSE(isValidUtf8("\xe2\x82"));          // truncated
    CHECK_FALSE(isValidUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
    CHECK_FALSE(isValidUtf8("\x80"));
}

TEST_CASE("A Get listing more distinct paths than the limit answers 7005", "[agent][bounds]") {
    Engine e;
    std::vector<std::string> paths;
    for (int i = 0; i < 11; ++i)
        paths.push_back("Device.LocalAgent.Controller." + std::to_string(i + 1) + ".");
    auto r = e.answer(getMsg(paths), RequestLimits{10, 100, 0});
    REQUIRE(r.body().has_error());
    CHECK(r.body().error().err_code() == 7005);
    CHECK(r.header().msg_id() == "g1");
}

TEST_CASE("Identical paths in a Get are answered once", "[agent][bounds]") {
    Engine e;
    std::vector<std::string> paths(8000, "Device.LocalAgent.EndpointID");
    paths.push_back("Device.DeviceInfo.SerialNumber");
    auto r = e.answer(getMsg(paths), RequestLimits{10, 100, 0});
    REQUIRE(r.body().has_response());
    const auto& res = r.body().response().get_resp().req_path_results();
    REQUIRE(res.size() == 2);
    CHECK(res[0].requested_path() == "Device.LocalAgent.EndpointID");
    CHECK(res[1].requested_path() == "Device.DeviceInfo.SerialNumber");
}

TEST_CASE("A Get of Device. larger than the response bound answers 7005 instead", "[agent][bounds]") {
    Engine e;
    auto whole = e.answer(getMsg({"Device."}), RequestLimits{256, 1024, 0});
    REQUIRE(whole.body().has_response());
    const std::size_t size = whole.ByteSizeLong();
    // The meter's estimate is an upper bound, close to the encoded size.
    auto fits = e.answer(getMsg({"Device."}), RequestLimits{256, 1024, size + size / 4});
    CHECK(fits.body().has_response());
    auto tight = e.answer(getMsg({"Device."}), RequestLimits{256, 1024, size - 1});
    CHECK(tight.body().has_error());
    auto refused = e.answer(getMsg({"Device.", "Device.DeviceInfo."}), RequestLimits{256, 1024, size / 2});
    REQUIRE(refused.body().has_error());
    CHECK(refused.body().error().err_code() == 7005);
    CHECK(refused.ByteSizeLong() < 512);
}

TEST_CASE("A Set carrying more parameters than the limit answers 7005 and changes nothing", "[agent][bounds]") {
    Engine e;
    usp::Msg m;
    m.mutable_header()->set_msg_id("s1");
    m.mutable_header()->set_msg_type(usp::Header::SET);
    auto* obj = m.mutable_body()->mutable_request()->mutable_set()->add_update_objs();
    obj->set_obj_path("Device.LocalAgent.");
    for (int i = 0; i < 20; ++i) {
        auto* ps = obj->add_param_settings();
        ps->set_param("MaxSubscriptionChangeAdoptionTime");
        ps->set_value(std::to_string(100 + i));
    }
    const std::string before = e.engine->getValue("Device.LocalAgent.MaxSubscriptionChangeAdoptionTime").valueOr("?");
    auto r = e.answer(m, RequestLimits{10, 10, 0});
    REQUIRE(r.body().has_error());
    CHECK(r.body().error().err_code() == 7005);
    CHECK(e.engine->getValue("Device.LocalAgent.MaxSubscriptionChangeAdoptionTime").valueOr("?") == before);
    auto ok = e.answer(m, RequestLimits{10, 21, 0});
    CHECK(ok.body().has_response());
}

TEST_CASE("An Add of more objects than the parameter limit answers 7005 and creates nothing", "[agent][bounds]") {
    Engine e;
    usp::Msg m;
    m.mutable_header()->set_msg_id("a1");
    m.mutable_header()->set_msg_type(usp::Header::ADD);
    for (int i = 0; i < 6; ++i) {
        auto* obj = m.mutable_body()->mutable_request()->mutable_add()->add_create_objs();
        obj->set_obj_path("Device.LocalAgent.Subscription.");
        auto* ps = obj->add_param_settings();
        ps->set_param("ID");
        ps->set_value("s" + std::to_string(i));
    }
    auto r = e.answer(m, RequestLimits{10, 10, 0});
    REQUIRE(r.body().has_error());
    CHECK(r.body().error().err_code() == 7005);
    CHECK(e.engine->getValue("Device.LocalAgent.SubscriptionNumberOfEntries").valueOr("?") == "0");
}
