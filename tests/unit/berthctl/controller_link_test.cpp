// ControllerLink, the connection both berthctl sessions are built on, over an MTP fake:
// connecting, msg_id matching by sender, timeouts on the loop's clock, requests from
// agents, and the errors and exit codes people see. The real transports are exercised by
// the berthctl and fleet integration tests.
#include "controller_link.h"

#include <catch2/catch.hpp>
#include <vector>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"

using namespace berthctl;
using namespace std::chrono_literals;
using berth::transports::MtpStatus;

namespace {

const std::string kController = "self::berthctl";
const std::string kAgent = "os::012345-0001";
const std::string kOther = "os::012345-0002";

// An MTP that reports what the test says at start() and keeps what is sent.
class FakeMtp final : public berth::transports::Mtp {
public:
    std::string_view protocol() const override { return "fake"; }
    berth::Status start() override {
        if (!startError.empty()) return berth::Error(berth::ErrorCode::kMessageFailed, startError);
        status_ = reportAtStart;
        if (reportAtStart != MtpStatus::kConnecting) reportStatus(reportAtStart, detail);
        return {};
    }
    void stop() override {
        if (stopCounter) ++*stopCounter;
    }
    berth::Status send(berth::transports::OutboundRecord r) override {
        if (status_ != MtpStatus::kUp) return berth::Error(berth::ErrorCode::kMessageFailed, "not connected");
        sent.push_back(std::move(r));
        return {};
    }
    MtpStatus status() const override { return status_; }
    std::string agentAddress() const override { return {}; }
    // A Record arriving from the broker.
    void receive(std::string payload) { deliver({std::move(payload), {}, {}}); }

    MtpStatus reportAtStart = MtpStatus::kUp;
    std::string detail = "subscribed";
    std::string startError;
    std::vector<berth::transports::OutboundRecord> sent;
    int* stopCounter = nullptr;  // outlives the fake, which the link owns

private:
    MtpStatus status_ = MtpStatus::kDown;
};

LinkOptions options(std::chrono::milliseconds timeout = 300ms) {
    LinkOptions o;
    o.controllerId = kController;
    o.controllerAddress = "usp/controller/berthctl";
    o.timeout = timeout;
    return o;
}

usp::Msg getMsg(const std::string& id) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(id);
    m.mutable_header()->set_msg_type(usp::Header::GET);
    m.mutable_body()->mutable_request()->mutable_get()->add_param_paths("Device.LocalAgent.EndpointID");
    return m;
}

usp::Msg getResp(const std::string& id) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(id);
    m.mutable_header()->set_msg_type(usp::Header::GET_RESP);
    m.mutable_body()->mutable_response()->mutable_get_resp();
    return m;
}

// A Record from `from` to the controller.
std::string recordFrom(const std::string& from, const usp::Msg& m) {
    berth::agent::CodecConfig c;
    c.endpointId = from;
    berth::agent::RecordCodec codec(c);
    auto r = codec.encodeMsg(m, kController);
    REQUIRE(r);
    return *r;
}

struct Fixture {
    berth::FakeClock clock;
    berth::EventLoop loop{clock};
    FakeMtp* mtp = nullptr;  // owned by the link

    std::unique_ptr<ControllerLink> open(std::unique_ptr<FakeMtp> m = std::make_unique<FakeMtp>(),
                                         LinkOptions o = options()) {
        mtp = m.get();
        return ControllerLink::open(loop, std::move(o), std::move(m));
    }
    void advance(std::chrono::milliseconds d) {
        clock.advance(d);
        loop.runOnce(0ms);
    }
};

}  // namespace

TEST_CASE("A link hands a Response to the request with its msg_id and sender, once", "[berthctl]") {
    Fixture f;
    auto link = f.open();
    std::vector<berth::Result<usp::Msg>> answers;
    auto id = link->nextMsgId();
    REQUIRE(link->send(getMsg(id), kAgent, "usp/agent/" + kAgent));
    link->expect(
        id, kAgent, [&](berth::Result<usp::Msg> r) { answers.push_back(std::move(r)); }, 5s);
    REQUIRE(f.mtp->sent.size() == 1);
    CHECK(f.mtp->sent[0].destination == "usp/agent/" + kAgent);
    CHECK(link->sentRecords() == 1);

    f.mtp->receive(recordFrom(kAgent, getResp(id)));
    f.mtp->receive(recordFrom(kAgent, getResp(id)));  // a duplicate finds nobody waiting
    REQUIRE(answers.size() == 1);
    REQUIRE(answers[0]);
    CHECK(answers[0]->header().msg_id() == id);
    CHECK(answers[0]->body().response().has_get_resp());
    CHECK(link->pending() == 0);
    CHECK(link->receivedRecords() == 2);
}

TEST_CASE("An answer with the awaited msg_id from another endpoint is ignored and the request times out with 7000",
          "[berthctl]") {
    Fixture f;
    auto link = f.open();
    std::vector<berth::Result<usp::Msg>> answers;
    link->expect(
        "m-1", kAgent, [&](berth::Result<usp::Msg> r) { answers.push_back(std::move(r)); }, 2s);
    f.mtp->receive(recordFrom(kOther, getResp("m-1")));
    CHECK(answers.empty());
    CHECK(link->pending() == 1);

    f.advance(1999ms);
    CHECK(answers.empty());
    f.advance(1ms);
    REQUIRE(answers.size() == 1);
    REQUIRE(!answers[0]);
    CHECK(answers[0].error().code == berth::ErrorCode::kMessageFailed);
    CHECK(static_cast<int>(answers[0].error().code) == 7000);
    CHECK(answers[0].error().message == "no answer from " + kAgent + " within 2 s");
    CHECK(link->pending() == 0);

    // The answer arriving late changes nothing.
    f.mtp->receive(recordFrom(kAgent, getResp("m-1")));
    CHECK(answers.size() == 1);
}

TEST_CASE("A forgotten request's handler never runs, neither on its answer nor on its timeout", "[berthctl]") {
    Fixture f;
    auto link = f.open();
    int calls = 0;
    link->expect(
        "m-1", kAgent, [&](berth::Result<usp::Msg>) { ++calls; }, 1s);
    link->expect(
        "m-2", kAgent, [&](berth::Result<usp::Msg>) { ++calls; }, 1s);
    link->forget("m-1");
    link->forget("m-unknown");
    f.mtp->receive(recordFrom(kAgent, getResp("m-1")));
    CHECK(calls == 0);
    link->forget("m-2");
    f.advance(2s);
    CHECK(calls == 0);
    CHECK(link->pending() == 0);
}

TEST_CASE("A Notify from an agent reaches the request handler with the sender's endpoint ID", "[berthctl]") {
    Fixture f;
    auto link = f.open();
    std::vector<std::pair<std::string, std::string>> seen;
    link->onRequest([&](const std::string& from, const usp::Msg& m) {
        seen.emplace_back(from, m.body().request().notify().subscription_id());
    });
    usp::Msg n;
    n.mutable_header()->set_msg_id("n-1");
    n.mutable_header()->set_msg_type(usp::Header::NOTIFY);
    auto* notify = n.mutable_body()->mutable_request()->mutable_notify();
    notify->set_subscription_id("sub-1");
    notify->mutable_on_board_req()->set_oui("012345");
    f.mtp->receive(recordFrom(kOther, n));
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].first == kOther);
    CHECK(seen[0].second == "sub-1");
}

TEST_CASE("A Record that is not USP is dropped without disturbing a waiting request", "[berthctl]") {
    Fixture f;
    auto link = f.open();
    int calls = 0;
    link->expect(
        "m-1", kAgent, [&](berth::Result<usp::Msg> r) { calls += r ? 1 : 100; }, 5s);
    f.mtp->receive("not a protobuf record");
    f.mtp->receive("");
    CHECK(calls == 0);
    f.mtp->receive(recordFrom(kAgent, getResp("m-1")));
    CHECK(calls == 1);
}

TEST_CASE("A link whose broker refuses fails with exit code 4 and the broker's reason", "[berthctl]") {
    Fixture f;
    auto m = std::make_unique<FakeMtp>();
    m->reportAtStart = MtpStatus::kError;
    m->detail = "connection refused";
    try {
        f.open(std::move(m));
        FAIL("open succeeded");
    } catch (const Failure& e) {
        CHECK(e.exitCode() == kExitNoBroker);
        CHECK(std::string(e.what()) == "cannot connect to the MQTT 5.0 broker 127.0.0.1:1883: connection refused");
    }
}

TEST_CASE("A link whose transport cannot start fails with exit code 4 and says why", "[berthctl]") {
    Fixture f;
    auto m = std::make_unique<FakeMtp>();
    m->startError = "bad address";
    try {
        f.open(std::move(m));
        FAIL("open succeeded");
    } catch (const Failure& e) {
        CHECK(e.exitCode() == kExitNoBroker);
        CHECK(std::string(e.what()).find("cannot start the MQTT 5.0 broker 127.0.0.1:1883: ") == 0);
        CHECK(std::string(e.what()).find("bad address") != std::string::npos);
    }
}

TEST_CASE("A link whose transport never comes up gives up after its timeout with exit code 4", "[berthctl]") {
    Fixture f;
    auto m = std::make_unique<FakeMtp>();
    m->reportAtStart = MtpStatus::kConnecting;
    try {
        f.open(std::move(m), options(50ms));
        FAIL("open succeeded");
    } catch (const Failure& e) {
        CHECK(e.exitCode() == kExitNoBroker);
        CHECK(std::string(e.what()) == "cannot connect to the MQTT 5.0 broker 127.0.0.1:1883: no answer within 0.05 s");
    }
}

TEST_CASE("Sending on a link whose transport went down reports the transport's error and counts nothing",
          "[berthctl]") {
    Fixture f;
    auto m = std::make_unique<FakeMtp>();
    auto link = f.open(std::move(m));
    f.mtp->reportAtStart = MtpStatus::kDown;
    REQUIRE(f.mtp->start());  // the fake now refuses to send
    auto st = link->send(getMsg("m-1"), kAgent, "usp/agent/" + kAgent);
    REQUIRE(!st);
    CHECK(st.error().code == berth::ErrorCode::kMessageFailed);
    CHECK(link->sentRecords() == 0);
}

TEST_CASE("msg_ids from one link are distinct and carry the link's prefix", "[berthctl]") {
    Fixture f;
    auto o = options();
    o.msgIdPrefix = "berthctl-fleet";
    auto link = f.open(std::make_unique<FakeMtp>(), o);
    auto a = link->nextMsgId();
    auto b = link->nextMsgId();
    CHECK(a != b);
    CHECK(a.rfind("berthctl-fleet-", 0) == 0);
    CHECK(b.rfind("berthctl-fleet-", 0) == 0);
}

TEST_CASE("Destroying a link stops its transport", "[berthctl]") {
    Fixture f;
    int stops = 0;
    auto m = std::make_unique<FakeMtp>();
    m->stopCounter = &stops;
    auto link = f.open(std::move(m));
    CHECK(stops == 0);
    link.reset();
    CHECK(stops == 1);
}
