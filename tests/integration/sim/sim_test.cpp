// berth-sim as a process against a real mosquitto, driven by a USP controller over MQTT
// (berth/sim/sim_controller.h): Gets to 200 agents, a dropped connection, reboots,
// SIGTERM, persistence, bad command lines.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/sim/fault_plan.h"
#include "berth/sim/sim_controller.h"
#include "berth/testing/mosquitto.h"
#include "berth/testing/support.h"

using namespace berth;
using berth::sim::SimController;
using namespace std::chrono_literals;

namespace {

std::string eid(std::uint64_t n) { return sim::expandTemplate("os::012345-%06d", n); }
std::string serial(std::uint64_t n) { return sim::expandTemplate("SIM%06d", n); }

// A broker, a controller listening on the built-in configuration's controller topic,
// and berth-sim started with the given arguments (after --mqtt).
struct SimFixture {
    explicit SimFixture(std::vector<std::string> args, bool startNow = true) : args_(std::move(args)) {
        ::chmod(tmp.path().c_str(), 0755);
        broker = std::make_unique<testing::Mosquitto>(tmp / "broker");
        controller = std::make_unique<SimController>(loop, "127.0.0.1", broker->port());
        if (startNow) start();
    }
    void start() {
        std::vector<std::string> argv{BERTH_SIM_BIN, "--mqtt", broker->address(), "--log-level", "info"};
        argv.insert(argv.end(), args_.begin(), args_.end());
        sim = testing::ProcessGuard::start(argv, (tmp / "sim.log").string());
    }
    bool allConnected(std::size_t n, std::chrono::milliseconds timeout = 60s) {
        return controller->runUntil([&] { return controller->connects.size() >= n; }, timeout);
    }
    // Gets `paths` from agent n and waits for the answer.
    std::optional<SimController::Answer> get(std::uint64_t n, const std::vector<std::string>& paths) {
        std::optional<SimController::Answer> out;
        REQUIRE(controller->get(eid(n), paths, [&](const SimController::Answer& a) { out = a; }));
        controller->runUntil([&] { return out.has_value(); }, 10s);
        return out;
    }
    std::string log() const { return testing::readFile(tmp / "sim.log"); }

    testing::TempDir tmp{"berth-sim-test"};
    SystemClock clock;
    EventLoop loop{clock};
    std::unique_ptr<testing::Mosquitto> broker;
    std::unique_ptr<SimController> controller;
    std::unique_ptr<testing::ProcessGuard> sim;
    std::vector<std::string> args_;
};

std::map<std::string, std::string> values(const usp::Msg& m) {
    std::map<std::string, std::string> out;
    for (const auto& r : m.body().response().get_resp().req_path_results())
        for (const auto& res : r.resolved_path_results())
            for (const auto& [k, v] : res.result_params()) out[res.resolved_path() + k] = v;
    return out;
}

int runSim(const std::vector<std::string>& args, const std::filesystem::path& log) {
    std::vector<std::string> argv{BERTH_SIM_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    auto p = testing::ProcessGuard::start(argv, log.string());
    testing::waitUntil([&] { return !p->running(); }, 10s);
    auto st = p->stop(1s);
    return st.exited ? st.code : -1;
}

}  // namespace

TEST_CASE("200 simulated agents each answer a controller's Get with their own EndpointID and serial number",
          "[sim][integration]") {
    SimFixture f({"--agents", "200", "--connect-rate", "400"});
    REQUIRE(f.allConnected(200));
    // Every agent announced itself with Boot! (the built-in configuration's subscription).
    REQUIRE(f.controller->runUntil([&] { return f.controller->boots.size() >= 200; }, 30s));

    std::map<std::uint64_t, std::map<std::string, std::string>> answers;
    std::size_t errors = 0;
    for (std::uint64_t n = 1; n <= 200; ++n)
        REQUIRE(f.controller->get(eid(n), {"Device.LocalAgent.EndpointID", "Device.DeviceInfo.SerialNumber"},
                                  [&answers, &errors, n](const SimController::Answer& a) {
                                      if (a.record.kind != agent::DecodeKind::kResponse) ++errors;
                                      answers[n] = values(a.record.msg);
                                  }));
    REQUIRE(f.controller->runUntil([&] { return answers.size() == 200; }, 30s));
    CHECK(errors == 0);
    for (std::uint64_t n = 1; n <= 200; ++n) {
        INFO("agent " << n);
        CHECK(answers[n]["Device.LocalAgent.EndpointID"] == eid(n));
        CHECK(answers[n]["Device.DeviceInfo.SerialNumber"] == serial(n));
    }
    auto st = f.sim->stop(30s);
    CHECK(st.exited);
    CHECK(st.code == 0);
}

TEST_CASE("A dropped-connection fault makes that agent reconnect and announce itself again", "[sim][integration]") {
    SimFixture f({"--agents", "5", "--fault", "drop:3:at=1500ms"});
    REQUIRE(f.allConnected(5));
    // The broker closed agent 3's connection (session takeover); it reconnected and
    // sent its MQTTConnect record again. The others kept theirs.
    REQUIRE(f.controller->runUntil([&] { return f.controller->connects[eid(3)] >= 2; }, 30s));
    for (std::uint64_t n : {1, 2, 4, 5}) CHECK(f.controller->connects[eid(n)] == 1);
    auto a = f.get(3, {"Device.DeviceInfo.SerialNumber"});
    REQUIRE(a);
    CHECK(values(a->record.msg)["Device.DeviceInfo.SerialNumber"] == serial(3));
    CHECK(f.log().find("agent 3: connection dropped") != std::string::npos);
}

TEST_CASE("A reboot fault restarts the agent in the process, which sends Boot! with cause LocalReboot",
          "[sim][integration]") {
    SimFixture f({"--agents", "4", "--fault", "reboot:2:at=1500ms"});
    REQUIRE(f.allConnected(4));
    REQUIRE(f.controller->runUntil([&] { return f.controller->boots[eid(2)] >= 2; }, 30s));
    CHECK(f.controller->lastBootCause[eid(2)] == "LocalReboot");
    // It said goodbye before it went, and only it restarted.
    CHECK(f.controller->disconnects[eid(2)] >= 1);
    for (std::uint64_t n : {1, 3, 4}) CHECK(f.controller->boots[eid(n)] == 1);
    auto a = f.get(2, {"Device.LocalAgent.EndpointID"});
    REQUIRE(a);
    CHECK(values(a->record.msg)["Device.LocalAgent.EndpointID"] == eid(2));
    CHECK(f.sim->running());
}

TEST_CASE("Device.Reboot() restarts only that simulated agent, which sends Boot! with cause RemoteReboot",
          "[sim][integration]") {
    SimFixture f({"--agents", "3"});
    REQUIRE(f.allConnected(3));
    REQUIRE(f.controller->runUntil([&] { return f.controller->boots.size() >= 3; }, 30s));
    std::optional<SimController::Answer> resp;
    REQUIRE(f.controller->operate(eid(2), "Device.Reboot()", [&](const SimController::Answer& a) { resp = a; }));
    REQUIRE(f.controller->runUntil([&] { return resp.has_value(); }, 10s));
    CHECK(resp->record.kind == agent::DecodeKind::kResponse);
    REQUIRE(f.controller->runUntil([&] { return f.controller->boots[eid(2)] >= 2; }, 30s));
    CHECK(f.controller->lastBootCause[eid(2)] == "RemoteReboot");
    CHECK(f.controller->boots[eid(1)] == 1);
    CHECK(f.controller->boots[eid(3)] == 1);
    // The process and the other agents go on.
    CHECK(f.sim->running());
    auto a = f.get(3, {"Device.DeviceInfo.SerialNumber"});
    REQUIRE(a);
    CHECK(values(a->record.msg)["Device.DeviceInfo.SerialNumber"] == serial(3));
}

TEST_CASE("SIGTERM stops berth-sim after every agent sent its Disconnect record", "[sim][integration]") {
    SimFixture f({"--agents", "20"});
    REQUIRE(f.allConnected(20));
    auto st = f.sim->stop(30s);
    CHECK(st.exited);
    CHECK(st.code == 0);
    REQUIRE(f.controller->runUntil([&] { return f.controller->disconnects.size() >= 20; }, 10s));
    CHECK(f.log().find("berth-sim: stopped") != std::string::npos);
}

TEST_CASE("Agents persisted with --db-dir keep a value a controller Set across a berth-sim restart",
          "[sim][integration]") {
    testing::TempDir dbs{"berth-sim-db"};
    SimFixture f({"--agents", "3", "--db-dir", dbs.path().string()});
    REQUIRE(f.allConnected(3));
    usp::Msg set;
    set.mutable_header()->set_msg_id("set-1");
    set.mutable_header()->set_msg_type(usp::Header::SET);
    auto* obj = set.mutable_body()->mutable_request()->mutable_set()->add_update_objs();
    obj->set_obj_path("Device.LocalAgent.Controller.1.");
    auto* p = obj->add_param_settings();
    p->set_param("PeriodicNotifInterval");
    p->set_value("777");
    std::optional<SimController::Answer> resp;
    REQUIRE(f.controller->send(eid(2), set, [&](const SimController::Answer& a) { resp = a; }));
    REQUIRE(f.controller->runUntil([&] { return resp.has_value(); }, 10s));
    REQUIRE(resp->record.kind == agent::DecodeKind::kResponse);
    INFO(resp->record.msg.DebugString());
    REQUIRE(resp->record.msg.body().response().set_resp().updated_obj_results_size() == 1);
    REQUIRE(resp->record.msg.body().response().set_resp().updated_obj_results(0).oper_status().has_oper_success());
    CHECK(std::filesystem::exists(dbs / "agent-000002" / "berth.db"));
    REQUIRE(f.sim->stop(30s).code == 0);

    f.controller->connects.clear();
    f.start();
    REQUIRE(f.allConnected(3));
    auto a = f.get(2, {"Device.LocalAgent.Controller.1.PeriodicNotifInterval"});
    REQUIRE(a);
    CHECK(values(a->record.msg)["Device.LocalAgent.Controller.1.PeriodicNotifInterval"] == "777");
    auto other = f.get(1, {"Device.LocalAgent.Controller.1.PeriodicNotifInterval"});
    REQUIRE(other);
    CHECK(values(other->record.msg)["Device.LocalAgent.Controller.1.PeriodicNotifInterval"] != "777");
}

TEST_CASE("berth-sim refuses a bad command line with exit code 2 and says what is wrong", "[sim][integration]") {
    testing::TempDir tmp{"berth-sim-usage"};
    struct Case {
        std::vector<std::string> args;
        std::string says;
    };
    std::vector<Case> cases{
        {{"--agents", "3"}, "--mqtt HOST:PORT"},
        {{"--agents", "3", "--mqtt", "localhost"}, "expected HOST:PORT"},
        {{"--agents", "3", "--mqtt", "127.0.0.1:1", "--fault", "explode:1:at=1s"}, "unknown kind 'explode'"},
        {{"--agents", "3", "--mqtt", "127.0.0.1:1", "--endpoint-template", "os::012345-0001"}, "exactly one %d"},
        {{"--agents", "3", "--mqtt", "127.0.0.1:1", "--endpoint-template", "os::same"}, "exactly one %d"},
        {{"--agents", "3", "--mqtt", "127.0.0.1:1", "--fault", "install-fail:10%:rate=10%"}, "add --software-modules"},
        {{"--agents", "3", "--mqtt", "127.0.0.1:1", "--software-modules", "--eu-start-time", "40"},
         "a duration needs a unit"},
        {{"--agents", "3", "--mqtt", "127.0.0.1:1", "--software-modules", "--fault", "download-slow:1:rate=5%,delay=1"},
         "delay"},
    };
    int i = 0;
    for (const auto& c : cases) {
        auto log = tmp / ("run" + std::to_string(++i) + ".log");
        int rc = runSim(c.args, log);
        INFO(testing::readFile(log));
        CHECK(rc == 2);
        CHECK(testing::readFile(log).find(c.says) != std::string::npos);
    }
}
