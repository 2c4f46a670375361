// A hostile controller against berthd over MQTT (real mosquitto, berthd as a process):
// the amplification Get, the secured-value oracle, invalid UTF-8, 10,000 pipelined
// Gets and an Operate flood. Each test checks that the bound held, that the other
// controller kept being answered, and that berthd's peak RSS (VmHWM) stayed bounded.
//
// Latency bounds here are loose on purpose (the test machines are shared and busy);
// the 100 ms p99 figure comes from tools/abuse-bench.

#include <netinet/in.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include "berth/bench/usp_rig.h"

using namespace berth;
using namespace berth::bench;
using namespace std::chrono_literals;

namespace {

// Peak RSS berthd may reach in any of these floods: idle is about 10-15 MB.
constexpr long kPeakRssBoundKb = 64 * 1024;

RigOptions rigOptions(std::vector<std::string> args = {}, std::string extra = {}) {
    RigOptions o;
    o.berthd = BERTHD_BIN;
    o.exampleConfig = BERTH_EXAMPLE_CONF;
    o.berthdArgs = std::move(args);
    o.extraConfig = std::move(extra);
    return o;
}

struct AbuseFixture {
    explicit AbuseFixture(RigOptions o = rigOptions()) : rig(o), loop(clock) {
        flooder = std::make_unique<UspController>(loop, rig.port, kRigFlooderId, "flood");
        // berthd answers once its own MQTT session is up.
        bool up = false;
        for (int i = 0; i < 30 && !up; ++i)
            up = flooder->request(rigGet("hello-" + std::to_string(i), {"Device.LocalAgent.EndpointID"}), 500ms)
                     .has_value();
        REQUIRE(up);
        flooder->resetCounts();
        idleKb = statusKb(rig.agentPid, "VmRSS");
    }
    long peakKb() { return statusKb(rig.agentPid, "VmHWM"); }
    // The other controller answers a Get now.
    bool otherAnswers() {
        UspController other(loop, rig.port, kRigOtherId, "other-check");
        auto a = other.request(rigGet("other-check", {"Device.LocalAgent.EndpointID"}), 5s);
        return a && a->record.msg.body().has_response();
    }

    Rig rig;
    SystemClock clock;
    EventLoop loop;
    std::unique_ptr<UspController> flooder;
    long idleKb = 0;
};

std::string describe(const UspController& c) {
    std::string s = "sent " + std::to_string(c.sent) + ", answered " + std::to_string(c.answered) + ", errors:";
    for (const auto& [code, n] : c.errorCodes)
        s += " " + std::to_string(code) + "x" + std::to_string(n);
    return s;
}

// A Record carrying a Get whose path is not UTF-8 (protobuf will not serialize it).
std::string badUtf8Record(const std::string& msgId) {
    auto varint = [](std::uint64_t v) {
        std::string out;
        while (v >= 0x80) {
            out += static_cast<char>((v & 0x7F) | 0x80);
            v >>= 7;
        }
        out += static_cast<char>(v);
        return out;
    };
    auto len = [&](std::uint32_t n, const std::string& b) {
        return varint((std::uint64_t{n} << 3) | 2) + varint(b.size()) + b;
    };
    std::string header = len(1, msgId) + varint(2 << 3) + varint(1);
    std::string msg = len(1, header) + len(2, len(1, len(1, len(1, "Device.\xff\xfe.\xc0\xaf"))));
    return len(1, "1.4") + len(2, kRigAgentId) + len(3, kRigFlooderId) + len(7, len(2, msg));
}

}  // namespace

TEST_CASE("An amplification Get listing Device. 8000 times is answered once per path within the memory bound",
          "[integration][abuse]") {
    AbuseFixture f;
    Prober prober(f.rig.port, 20ms);
    std::vector<std::string> paths(8000, "Device.");
    auto a = f.flooder->request(rigGet("amp-1", paths), 30s);
    REQUIRE(a);
    REQUIRE(a->record.msg.body().has_response());
    // Identical paths are answered once.
    CHECK(a->record.msg.body().response().get_resp().req_path_results_size() == 1);
    // Distinct paths over the path limit: refused with 7005.
    std::vector<std::string> distinct;
    for (int i = 0; i < 300; ++i)
        distinct.push_back("Device.LocalAgent.Controller." + std::to_string(i + 1) + ".");
    auto many = f.flooder->request(rigGet("amp-2", distinct), 30s);
    REQUIRE(many);
    REQUIRE(many->record.msg.body().has_error());
    CHECK(many->record.msg.body().error().err_code() == 7005);
    // 20 more amplification Gets back to back while the other controller asks.
    f.flooder->keepAnswers(false);
    for (int i = 0; i < 20; ++i)
        f.flooder->send(rigGet("amp-flood-" + std::to_string(i), paths));
    f.flooder->runUntilAnsweredOrQuiet(5s, 60s);
    prober.stop();
    INFO(describe(*f.flooder));
    INFO("idle " << f.idleKb << " kB, peak " << f.peakKb() << " kB");
    CHECK(prober.failure().empty());
    CHECK(prober.unanswered() == 0);
    CHECK_FALSE(prober.rtts().empty());
    CHECK(percentile(prober.rtts(), 0.99) < 1000.0);
    CHECK(f.peakKb() < kPeakRssBoundKb);
    CHECK(f.otherAnswers());
}

TEST_CASE("A Get whose response passes the response bound is answered with 7005 instead", "[integration][abuse]") {
    AbuseFixture f(rigOptions({"--max-response-bytes", "4096"}));
    auto a = f.flooder->request(rigGet("big", {"Device."}), 30s);
    REQUIRE(a);
    REQUIRE(a->record.msg.body().has_error());
    CHECK(a->record.msg.body().error().err_code() == 7005);
    auto small = f.flooder->request(rigGet("small", {"Device.LocalAgent.EndpointID"}), 10s);
    REQUIRE(small);
    CHECK(small->record.msg.body().has_response());
}

TEST_CASE("A search expression on a secured parameter tells a controller without secured access nothing",
          "[integration][abuse]") {
    AbuseFixture f(rigOptions({}, "Device.MQTT.Client.1.Password \"hunter2\""));
    auto resolvedCount = [&](const std::string& id, const std::string& path) {
        auto a = f.flooder->request(rigGet(id, {path}), 10s);
        REQUIRE(a);
        REQUIRE(a->record.msg.body().has_response());
        const auto& r = a->record.msg.body().response().get_resp().req_path_results(0);
        return r.resolved_path_results_size();
    };
    // The right guess and a wrong one answer the same; "" is what the controller may see.
    CHECK(resolvedCount("right", "Device.MQTT.Client.[Password==\"hunter2\"].Alias") == 0);
    CHECK(resolvedCount("wrong", "Device.MQTT.Client.[Password==\"guess\"].Alias") == 0);
    CHECK(resolvedCount("empty", "Device.MQTT.Client.[Password==\"\"].Alias") == 1);
    CHECK(f.otherAnswers());
}

TEST_CASE("A request path that is not UTF-8 is refused with an error that is UTF-8 and does not echo it",
          "[integration][abuse]") {
    AbuseFixture f;
    f.flooder->sendRecord("utf8-1", badUtf8Record("utf8-1"));
    REQUIRE(f.flooder->runUntil([&] { return f.flooder->outstanding() == 0; }, 10s));
    CHECK(f.flooder->errorCodes[7004] == 1);
    // The agent goes on answering both controllers.
    auto a = f.flooder->request(rigGet("after", {"Device.LocalAgent.EndpointID"}), 10s);
    REQUIRE(a);
    CHECK(a->record.msg.body().has_response());
    CHECK(f.otherAnswers());
    CHECK(f.rig.agentLog().find('\xff') == std::string::npos);
}

TEST_CASE("10,000 pipelined Gets are answered or refused with 7005 while the other controller is answered",
          "[integration][abuse]") {
    AbuseFixture f;
    Prober prober(f.rig.port, 20ms);
    f.flooder->keepAnswers(false);
    for (int i = 0; i < 10000; ++i)
        f.flooder->send(rigGet("p-" + std::to_string(i), {"Device.LocalAgent."}));
    // Answers the agent's MQTT client could not buffer are lost (the outbound queue is
    // bounded on its own); what arrives is counted.
    f.flooder->runUntilAnsweredOrQuiet(5s, 120s);
    prober.stop();
    INFO(describe(*f.flooder));
    INFO("idle " << f.idleKb << " kB, peak " << f.peakKb() << " kB; probe p99 " << percentile(prober.rtts(), 0.99)
                 << " ms over " << prober.rtts().size());
    // The queue bound held: requests beyond it were refused with 7005.
    CHECK(f.flooder->errorCodes[7005] > 0);
    CHECK(f.flooder->answered > f.flooder->errorCodes[7005]);
    // Every answer is a GetResp or a 7005: nothing else went wrong.
    std::size_t errors = 0;
    for (const auto& [code, n] : f.flooder->errorCodes)
        if (code != 7005) errors += n;
    CHECK(errors == 0);
    CHECK(prober.failure().empty());
    CHECK(prober.unanswered() == 0);
    CHECK(percentile(prober.rtts(), 0.99) < 1000.0);
    CHECK(f.peakKb() < kPeakRssBoundKb);
    CHECK(f.otherAnswers());
}

TEST_CASE("A flooding controller's queue is bounded: beyond it requests are refused with 7005 at once",
          "[integration][abuse]") {
    AbuseFixture f(rigOptions({"--inbound-queue-records", "4"}));
    f.flooder->keepAnswers(false);
    // Expensive requests arrive far faster than berthd works through them.
    for (int i = 0; i < 300; ++i)
        f.flooder->send(rigGet("q-" + std::to_string(i), {"Device."}));
    f.flooder->runUntilAnsweredOrQuiet(5s, 120s);
    INFO(describe(*f.flooder));
    CHECK(f.flooder->errorCodes[7005] > 0);
    CHECK(f.flooder->errorCodes[7005] < 300);
    CHECK(f.flooder->answered > f.flooder->errorCodes[7005]);
    auto after = f.flooder->request(rigGet("after", {"Device.LocalAgent.EndpointID"}), 10s);
    REQUIRE(after);
    CHECK(after->record.msg.body().has_response());
    CHECK(f.otherAnswers());
}

TEST_CASE("An Operate flood runs at most the per-controller number of asynchronous commands at once",
          "[integration][abuse]") {
    // A server that accepts connections and never answers: every download hangs.
    UniqueFd hole(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    REQUIRE(::bind(hole.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(hole.get(), 128) == 0);
    REQUIRE(::getsockname(hole.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    const std::string url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/never.tar";

    AbuseFixture f(rigOptions({"--max-async-operations", "3"}));
    Prober prober(f.rig.port, 20ms);
    f.flooder->keepAnswers(false);
    const int n = 200;
    for (int i = 0; i < n; ++i) {
        usp::Msg m;
        m.mutable_header()->set_msg_id("op-" + std::to_string(i));
        m.mutable_header()->set_msg_type(usp::Header::OPERATE);
        auto* op = m.mutable_body()->mutable_request()->mutable_operate();
        op->set_command("Device.SoftwareModules.InstallDU()");
        op->set_command_key("flood-" + std::to_string(i));
        op->set_send_resp(true);
        (*op->mutable_input_args())["URL"] = url;
        (*op->mutable_input_args())["ExecutionEnvRef"] = "Device.SoftwareModules.ExecEnv.1.";
        f.flooder->send(m);
    }
    f.flooder->runUntilAnsweredOrQuiet(5s, 60s);
    prober.stop();
    INFO(describe(*f.flooder));
    // Three run (their downloads hang); the rest were refused: with a cmd_failure 7005
    // once three were running, or with an Error 7005 when the flooder's queue was full.
    CHECK(f.flooder->cmdFailures7005 > 0);
    CHECK(f.flooder->cmdFailures7005 + f.flooder->errorCodes[7005] >=
          static_cast<std::size_t>(n - 3) - f.flooder->outstanding());
    auto rows = f.flooder->request(rigGet("rows", {"Device.LocalAgent.RequestNumberOfEntries"}), 10s);
    REQUIRE(rows);
    REQUIRE(rows->record.msg.body().has_response());
    const auto& res = rows->record.msg.body().response().get_resp().req_path_results(0).resolved_path_results(0);
    CHECK(res.result_params().at("RequestNumberOfEntries") == "3");
    CHECK(prober.failure().empty());
    CHECK(prober.unanswered() == 0);
    CHECK(percentile(prober.rtts(), 0.99) < 1000.0);
    CHECK(f.peakKb() < kPeakRssBoundKb);
    CHECK(f.otherAnswers());
}
