// berthctl fleet against 200 simulated agents with Device.SoftwareModules on the sim
// runtime (one berth-sim process), a real mosquitto and an image served over loopback
// HTTP: Gets across the fleet, a canary rollout aborted by an injected 10 % install
// failure rate, EU starts with plausible figures, and a rollout resumed after berthctl
// was SIGKILLed halfway.
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/process.h"
#include "berth/sim/fault_plan.h"
#include "berth/sim/sim_controller.h"
#include "berth/testing/mosquitto.h"
#include "berth/testing/support.h"
#include "oci_test_util.h"

using namespace berth;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

constexpr std::uint64_t kAgents = 200;
constexpr std::uint64_t kFew = 4;

std::string eid(std::uint64_t n) { return sim::expandTemplate("os::012345-%06d", n); }
std::string serial(std::uint64_t n) { return sim::expandTemplate("SIM%06d", n); }

struct Run {
    int code = -1;
    std::string out, err;
    std::string describe() const { return "exit " + std::to_string(code) + "\nstdout:\n" + out + "\nstderr:\n" + err; }
};

std::vector<Json> jsonLines(const std::string& text) {
    std::vector<Json> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        auto j = Json::parse(line, nullptr, false);
        if (!j.is_discarded() && j.is_object()) out.push_back(j);
    }
    return out;
}

// A broker, an HTTP server for the image, and berth-sim with SoftwareModules and the
// given extra arguments; the constructor returns once every agent is connected.
struct SimFleet {
    explicit SimFleet(std::vector<std::string> extra, std::uint64_t agents = kAgents) {
        ::chmod(tmp.path().c_str(), 0755);
        fs::create_directories(www);
        app = buildApp("hello");
        broker = std::make_unique<testing::Mosquitto>(tmp / "broker");
        httpPort = testing::freeTcpPort();
        http = testing::ProcessGuard::start({"python3", "-m", "http.server", "--bind", "127.0.0.1",
                                             std::to_string(httpPort), "--directory", www.string()},
                                            (tmp / "http.log").string());
        REQUIRE(testing::waitUntil([&] { return testing::tcpPortOpen(httpPort); }));
        std::vector<std::string> argv{BERTH_SIM_BIN, "--mqtt", broker->address(), "--agents", std::to_string(agents),
                                      "--software-modules", "--connect-rate", "400", "--log-level", "info",
                                      "--eu-memory-kib", "6144"};
        if (std::find(extra.begin(), extra.end(), "--eu-start-time") == extra.end())
            argv.insert(argv.end(), {"--eu-start-time", "10ms"});
        argv.insert(argv.end(), extra.begin(), extra.end());
        simArgv = argv;
        agentCount = agents;
        startSim();
    }

    // Starts berth-sim (again) and returns once every agent is connected.
    void startSim() {
        SystemClock clock;
        EventLoop loop(clock);
        sim::SimController controller(loop, "127.0.0.1", broker->port());
        sim = testing::ProcessGuard::start(simArgv, (tmp / "sim.log").string());
        bool up = controller.runUntil([&] { return controller.connects.size() >= agentCount || !sim->running(); },
                                      120s) &&
                  sim->running();
        INFO(testing::readFile(tmp / "sim.log").substr(0, 4000));
        REQUIRE(up);
    }

    std::string buildApp(const std::string& name) {
        std::string tar = (tmp / (name + "-layer.tar")).string();
        {
            oci::testing::TarBuilder t(tar);
            t.dir("bin").file("bin/app", "#!/bin/sh\nexec sleep 1000000\n", 0755).file("etc/app.conf", "x=1\n");
        }
        oci::ImageDefinition def;
        def.cmd = {"/bin/app"};
        def.annotations = {{"org.opencontainers.image.title", name},
                           {"org.opencontainers.image.vendor", "example.com"},
                           {"org.opencontainers.image.version", "1.0.0"}};
        auto img = oci::testing::buildImage(tmp.path(), name, {tar}, def);
        fs::copy_file(img.archive, www / fs::path(img.archive).filename());
        return fs::path(img.archive).filename().string();
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(httpPort) + "/" + app; }
    // GETs of the image the HTTP server answered.
    std::size_t imageDownloads() const {
        auto log = testing::readFile(tmp / "http.log");
        std::size_t n = 0;
        for (auto at = log.find("\"GET /" + app); at != std::string::npos; at = log.find("\"GET /" + app, at + 1)) ++n;
        return n;
    }

    std::string targets(const std::vector<std::uint64_t>& order) {
        std::string text;
        for (auto n : order) text += eid(n) + "\n";
        testing::writeFile(tmp / "targets.txt", text);
        return (tmp / "targets.txt").string();
    }
    std::vector<std::string> fleetArgv(std::vector<std::string> args) const {
        std::vector<std::string> argv{BERTHCTL_BIN, "fleet", "--mqtt", broker->address(), "--timeout", "30"};
        argv.insert(argv.end(), args.begin(), args.end());
        return argv;
    }
    Run fleet(std::vector<std::string> args) {
        SpawnOptions o;
        o.argv = fleetArgv(std::move(args));
        auto r = runCommand(o, 300s);
        Run out;
        if (!r) {
            out.err = r.error().describe();
            return out;
        }
        out.code = r->status.exited ? r->status.code : 128 + r->status.signal;
        out.out = r->out;
        out.err = r->err;
        return out;
    }
    // `fleet --json get` of one path across `agents`: value by endpoint.
    std::map<std::string, std::string> getAll(const std::string& targetsFile, const std::string& path) {
        auto r = fleet({"--json", "--targets", targetsFile, "get", path});
        INFO(r.describe().substr(0, 4000));
        std::map<std::string, std::string> out;
        for (const auto& j : jsonLines(r.out))
            if (j.contains("value")) out[j["endpoint"].get<std::string>()] = j["value"].get<std::string>();
        return out;
    }

    testing::TempDir tmp{"berth-sim-fleet"};
    fs::path www = tmp / "www";
    std::string app;
    std::unique_ptr<testing::Mosquitto> broker;
    int httpPort = 0;
    std::unique_ptr<testing::ProcessGuard> http;
    std::unique_ptr<testing::ProcessGuard> sim;
    std::vector<std::string> simArgv;
    std::uint64_t agentCount = 0;
};

// "begin <id>" / "end <id> ok|<code>" lines of a rollout journal, in order.
std::vector<std::string> journalEvents(const fs::path& path) {
    std::vector<std::string> out;
    for (const auto& j : jsonLines(testing::readFile(path))) {
        if (!j.contains("agent")) continue;
        std::string e = j["event"].get<std::string>() + " " + j["agent"].get<std::string>();
        if (j["event"] == "end") e += j["ok"].get<bool>() ? " ok" : " " + std::to_string(j["code"].get<unsigned>());
        out.push_back(e);
    }
    return out;
}

usp::Msg addSubscription(const std::string& msgId, const std::string& id, const std::string& type,
                         const std::string& refs) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(msgId);
    m.mutable_header()->set_msg_type(usp::Header::ADD);
    auto* obj = m.mutable_body()->mutable_request()->mutable_add()->add_create_objs();
    obj->set_obj_path("Device.LocalAgent.Subscription.");
    for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
             {"ID", id}, {"Enable", "true"}, {"NotifType", type}, {"ReferenceList", refs}}) {
        auto* p = obj->add_param_settings();
        p->set_param(k);
        p->set_value(v);
        p->set_required(true);
    }
    return m;
}

usp::Msg operate(const std::string& msgId, const std::string& command, const std::string& key,
                 const std::map<std::string, std::string>& args) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(msgId);
    m.mutable_header()->set_msg_type(usp::Header::OPERATE);
    auto* op = m.mutable_body()->mutable_request()->mutable_operate();
    op->set_command(command);
    op->set_command_key(key);
    op->set_send_resp(true);
    for (const auto& [k, v] : args) (*op->mutable_input_args())[k] = v;
    return m;
}

std::size_t countPrefix(const std::vector<std::string>& v, const std::string& prefix) {
    return static_cast<std::size_t>(
        std::count_if(v.begin(), v.end(), [&](const std::string& s) { return s.rfind(prefix, 0) == 0; }));
}

}  // namespace

TEST_CASE(
    "200 simulated agents with SoftwareModules answer Gets, and a canary rollout with a 10 % install failure rate "
    "is aborted at its threshold with the fault codes",
    "[sim][fleet][integration]") {
    const std::string fault = "install-fail:10%:rate=100%";
    SimFleet f({"--fault", fault, "--seed", "7"});
    // The agents the fault picks, as berth-sim picks them (same spec, count and seed).
    auto spec = sim::parseFault(fault);
    REQUIRE(spec);
    sim::FaultPlan plan({*spec}, 1, kAgents, 7);
    std::set<std::string> faulty;
    std::vector<std::uint64_t> order;
    for (std::uint64_t n = 1; n <= kAgents; ++n) {
        if (plan.operationFaulted(sim::FaultKind::kInstallFail, n, 1))
            faulty.insert(eid(n));
        else if (order.size() < 3)
            order.push_back(n);  // the canary: three agents without the fault
    }
    REQUIRE(faulty.size() == 20);
    for (std::uint64_t n = 1; n <= kAgents; ++n)
        if (std::find(order.begin(), order.end(), n) == order.end()) order.push_back(n);
    std::string targets = f.targets(order);

    // Gets across the fleet: every agent answers with its own identity, and its ExecEnv is Up.
    auto serials = f.getAll(targets, "Device.DeviceInfo.SerialNumber");
    auto ees = f.getAll(targets, "Device.SoftwareModules.ExecEnv.1.Status");
    REQUIRE(serials.size() == kAgents);
    REQUIRE(ees.size() == kAgents);
    for (std::uint64_t n = 1; n <= kAgents; ++n) {
        CHECK(serials[eid(n)] == serial(n));
        CHECK(ees[eid(n)] == "Up");
    }

    fs::path journal = f.tmp / "install.journal";
    auto r = f.fleet({"--targets", targets, "--canary", "3", "--concurrency", "10", "--max-failures", "5%",
                      "--journal", journal.string(), "install", f.url()});
    INFO(r.describe().substr(0, 6000));
    CHECK(r.code == 5);
    CHECK(r.out.find("ABORTED: 11 agents failed, more than --max-failures 5% of 200") != std::string::npos);
    // The summary names each failed agent with the TR-181 code of a full store.
    auto ev = journalEvents(journal);
    std::size_t failed = 0, ok = 0;
    for (const auto& e : ev) {
        if (e.rfind("end ", 0) != 0) continue;
        std::string agent = e.substr(4, e.rfind(' ') - 4);
        if (e.size() > 3 && e.compare(e.size() - 3, 3, " ok") == 0) {
            ++ok;
            CHECK(faulty.count(agent) == 0);
        } else {
            ++failed;
            CHECK(e.compare(e.size() - 5, 5, " 7227") == 0);
            CHECK(faulty.count(agent) == 1);
            CHECK(r.out.find("  " + agent + ": error 7227: ") != std::string::npos);
        }
    }
    // Aborted once more than 10 (5 % of 200) had failed; those in flight then still end.
    CHECK(failed >= 11);
    CHECK(failed <= 20);
    CHECK(ok >= 3);
    CHECK(ok + failed < kAgents);
    CHECK(r.out.find("targets 200: " + std::to_string(ok) + " succeeded, " + std::to_string(failed) + " failed, " +
                     std::to_string(kAgents - ok - failed) + " not started") != std::string::npos);
    // The canary went first and alone.
    REQUIRE(ev.size() >= 6);
    for (std::size_t i = 0; i < 3; ++i) CHECK(countPrefix({ev.begin(), ev.begin() + 6}, "end " + eid(order[i]) + " ok") == 1);
    // One download for the whole fleet: the shared store.
    CHECK(f.imageDownloads() == 1);

    // What the agents hold: the DU on the ones that succeeded, nothing on the failed ones.
    auto dus = f.getAll(targets, "Device.SoftwareModules.DeploymentUnitNumberOfEntries");
    REQUIRE(dus.size() == kAgents);
    std::size_t withDu = 0;
    for (const auto& [agent, count] : dus) {
        if (faulty.count(agent)) CHECK(count == "0");
        if (count == "1") ++withDu;
    }
    CHECK(withDu == ok);

    // The canary agents start the app: their EU goes Active with a plausible MemoryInUse.
    std::string canary = f.targets({order[0], order[1], order[2]});
    auto started = f.fleet({"--targets", canary, "--journal", (f.tmp / "start.journal").string(), "start", "hello"});
    INFO(started.describe());
    REQUIRE(started.code == 0);
    auto status = f.getAll(canary, "Device.SoftwareModules.ExecutionUnit.1.Status");
    auto memory = f.getAll(canary, "Device.SoftwareModules.ExecutionUnit.1.MemoryInUse");
    REQUIRE(status.size() == 3);
    REQUIRE(memory.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(status[eid(order[i])] == "Active");
        long kib = std::stol(memory[eid(order[i])]);
        CHECK(kib >= 6144 * 72 / 100);
        CHECK(kib <= 6144 * 129 / 100);
    }
    auto sst = f.sim->stop(30s);
    CHECK(sst.exited);
    CHECK(sst.code == 0);
}

TEST_CASE(
    "A rollout to 200 simulated agents resumed after berthctl was SIGKILLed halfway completes without reinstalling "
    "what was done",
    "[sim][fleet][integration]") {
    SimFleet f({});
    std::vector<std::uint64_t> order;
    for (std::uint64_t n = 1; n <= kAgents; ++n) order.push_back(n);
    std::string targets = f.targets(order);
    fs::path journal = f.tmp / "resume.journal";
    auto ctl = testing::ProcessGuard::start(f.fleetArgv({"--targets", targets, "--canary", "2", "--concurrency", "8",
                                                         "--journal", journal.string(), "install", f.url()}),
                                            (f.tmp / "first.out").string());
    bool halfway = testing::waitUntil([&] { return countPrefix(journalEvents(journal), "end ") >= kAgents / 2; }, 240s);
    INFO(testing::readFile(f.tmp / "first.out").substr(0, 4000));
    REQUIRE(halfway);
    auto st = ctl->kill9();
    CHECK((!st.exited && st.signal == SIGKILL));
    auto before = journalEvents(journal);
    const std::size_t endedBefore = countPrefix(before, "end ");
    REQUIRE(endedBefore < kAgents);
    std::set<std::string> inFlight;  // begun, not ended, when berthctl died
    for (const auto& e : before)
        if (e.rfind("begin ", 0) == 0) inFlight.insert(e.substr(6));
    for (const auto& e : before)
        if (e.rfind("end ", 0) == 0) inFlight.erase(e.substr(4, e.rfind(' ') - 4));

    auto r = f.fleet({"--resume", journal.string()});
    INFO(r.describe().substr(0, 6000));
    REQUIRE(r.code == 0);
    CHECK(r.out.find("targets 200: 200 succeeded, 0 failed, 0 not started (" + std::to_string(endedBefore) +
                     " done by an earlier run") != std::string::npos);
    auto ev = journalEvents(journal);
    for (std::uint64_t n = 1; n <= kAgents; ++n) {
        INFO(eid(n));
        CHECK(countPrefix(ev, "end " + eid(n) + " ok") == 1);
        // Agents that had ended were not begun again; those in flight were looked at again.
        CHECK(countPrefix(ev, "begin " + eid(n)) == (inFlight.count(eid(n)) ? 2u : 1u));
    }
    // Every agent holds exactly one DU (a second InstallDU would have failed with 7226).
    auto dus = f.getAll(targets, "Device.SoftwareModules.DeploymentUnitNumberOfEntries");
    REQUIRE(dus.size() == kAgents);
    for (const auto& [agent, count] : dus) CHECK(count == "1");
    CHECK(f.imageDownloads() == 1);
}

TEST_CASE(
    "Simulated agents raise DUStateChange! and OperationComplete for an install, with the fault of an install-fail "
    "agent, and report their EU going Active",
    "[sim][integration]") {
    SimFleet f({"--fault", "install-fail:4:rate=100%", "--eu-start-time", "300ms"}, kFew);
    SystemClock clock;
    EventLoop loop(clock);
    sim::SimController ctl(loop, "127.0.0.1", f.broker->port(), "self::berthctl", "usp/controller/berthctl");
    struct Seen {
        std::vector<std::map<std::string, std::string>> duChanges;
        std::optional<usp::Notify::OperationComplete> complete;
        std::vector<std::string> euStatus;
    };
    std::map<std::string, Seen> seen;
    ctl.onNotify = [&](const std::string& from, const usp::Msg& m) {
        const auto& n = m.body().request().notify();
        if (n.has_event() && n.event().event_name() == "DUStateChange!")
            seen[from].duChanges.emplace_back(n.event().params().begin(), n.event().params().end());
        if (n.has_oper_complete()) seen[from].complete = n.oper_complete();
        if (n.has_value_change() && n.value_change().param_path() == "Device.SoftwareModules.ExecutionUnit.1.Status")
            seen[from].euStatus.push_back(n.value_change().param_value());
    };
    int seq = 0;
    auto ask = [&](std::uint64_t n, const usp::Msg& m) {
        std::optional<sim::SimController::Answer> a;
        REQUIRE(ctl.send(eid(n), m, [&](const sim::SimController::Answer& x) { a = x; }));
        REQUIRE(ctl.runUntil([&] { return a.has_value(); }, 30s));
        INFO("error " << a->record.msg.body().error().err_code() << ": " << a->record.msg.body().error().err_msg());
        REQUIRE(a->record.kind == agent::DecodeKind::kResponse);
        return a->record.msg;
    };
    for (std::uint64_t n : {1, 4}) {
        ask(n, addSubscription("s" + std::to_string(++seq), "du", "Event", "Device.SoftwareModules.DUStateChange!"));
        ask(n, addSubscription("s" + std::to_string(++seq), "oc", "OperationComplete", "Device.SoftwareModules."));
        ask(n, operate("s" + std::to_string(++seq), "Device.SoftwareModules.InstallDU()", "k" + std::to_string(n),
                       {{"URL", f.url()}, {"ExecutionEnvRef", "Device.SoftwareModules.ExecEnv.1"}}));
    }
    REQUIRE(ctl.runUntil([&] { return seen[eid(1)].complete && seen[eid(4)].complete; }, 60s));
    REQUIRE(ctl.runUntil([&] { return !seen[eid(1)].duChanges.empty() && !seen[eid(4)].duChanges.empty(); }, 30s));

    // Agent 1: installed, as on a gateway.
    const auto& ok = seen[eid(1)];
    CHECK(ok.complete->command_key() == "k1");
    CHECK(ok.complete->has_req_output_args());
    const auto& du1 = ok.duChanges.back();
    CHECK(du1.at("OperationPerformed") == "Install");
    CHECK(du1.at("CurrentState") == "Installed");
    CHECK(du1.at("Resolved") == "true");
    CHECK(du1.at("Fault.FaultCode") == "0");
    CHECK(du1.at("DeploymentUnitRef") == "Device.SoftwareModules.DeploymentUnit.1");
    // Agent 4: the install failed with the code of a full store, and nothing is left.
    const auto& bad = seen[eid(4)];
    REQUIRE(bad.complete->has_cmd_failure());
    CHECK(bad.complete->cmd_failure().err_code() == 7227);
    const auto& du4 = bad.duChanges.back();
    CHECK(du4.at("CurrentState") == "Failed");
    CHECK(du4.at("Fault.FaultCode") == "7227");
    CHECK(du4.at("Fault.FaultString").find("no space left") != std::string::npos);
    usp::Msg get;
    get.mutable_header()->set_msg_id("g1");
    get.mutable_header()->set_msg_type(usp::Header::GET);
    get.mutable_body()->mutable_request()->mutable_get()->add_param_paths(
        "Device.SoftwareModules.DeploymentUnitNumberOfEntries");
    auto count = ask(4, get);
    CHECK(count.body().response().get_resp().req_path_results(0).resolved_path_results(0).result_params().at(
              "DeploymentUnitNumberOfEntries") == "0");

    // The EU of agent 1 goes Starting, then Active after --eu-start-time.
    ask(1, addSubscription("s" + std::to_string(++seq), "eu", "ValueChange",
                           "Device.SoftwareModules.ExecutionUnit.1.Status"));
    ask(1, operate("s" + std::to_string(++seq), "Device.SoftwareModules.ExecutionUnit.1.SetRequestedState()", "st",
                   {{"RequestedState", "Active"}}));
    REQUIRE(ctl.runUntil([&] {
        const auto& s = seen[eid(1)].euStatus;
        return std::find(s.begin(), s.end(), "Active") != s.end();
    }, 30s));
    CHECK(seen[eid(1)].euStatus.front() == "Starting");
}

TEST_CASE("Simulated agents persisted with --db-dir still hold their installed app after a berth-sim restart",
          "[sim][integration]") {
    testing::TempDir db{"berth-sim-db"};
    SimFleet f({"--db-dir", db.path().string()}, 2);
    std::string targets = f.targets({1, 2});
    auto installed = f.fleet({"--targets", targets, "--journal", (f.tmp / "i.journal").string(), "install", f.url()});
    INFO(installed.describe());
    REQUIRE(installed.code == 0);
    auto st = f.sim->stop(30s);
    CHECK(st.exited);
    f.startSim();
    // The DU rows come from berth.db; the image each agent held comes back from its
    // sim-images list and the shared store on disk, so the EU can start.
    auto dus = f.getAll(targets, "Device.SoftwareModules.DeploymentUnit.1.Status");
    CHECK(dus[eid(1)] == "Installed");
    CHECK(dus[eid(2)] == "Installed");
    auto started = f.fleet({"--targets", targets, "--journal", (f.tmp / "s.journal").string(), "start", "hello"});
    INFO(started.describe());
    REQUIRE(started.code == 0);
    auto status = f.getAll(targets, "Device.SoftwareModules.ExecutionUnit.1.Status");
    CHECK(status[eid(1)] == "Active");
    CHECK(status[eid(2)] == "Active");
    CHECK(f.imageDownloads() == 1);
}
