// berthctl fleet against five berthd processes (examples/berth-fleet.conf, one identity
// each) on a mosquitto of their own, installing a busybox image with real runc.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "berth/core/process.h"
#include "berth/testing/agent_harness.h"
#include "berth/testing/mosquitto.h"
#include "berth/testing/support.h"
#include "e2e_fixture.h"
#include "fleet_journal.h"
#include "fleet_targets.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using berth::agenttest::CtlResult;
using berth::testing::readFile;
using berth::testing::waitUntil;
using berth::testing::writeFile;
using Json = nlohmann::json;

const std::string kEe = "Device.SoftwareModules.ExecEnv.1";

std::string uniqueSuffix() {
    static int n = 0;
    return std::to_string(::getpid()) + "-" + std::to_string(++n);
}

// Five (or n) agents, each with its own database, ExecEnv store, runtime state and cgroup
// parent under the test's directory; all on one broker.
class Fleet {
public:
    explicit Fleet(int n, const std::function<std::string(int, std::string)>& adjust = {}, bool start = true)
        : tmp("berth-fleet"), cgroupBase("/berth-fleet-" + uniqueSuffix()) {
        ::chmod(tmp.path().c_str(), 0755);
        www = tmp / "www";
        fs::create_directories(www);
        fs::create_directories(tmp / "host");
        broker = std::make_unique<berth::testing::Mosquitto>(tmp / "broker");
        http = std::make_unique<berth::smme2e::HttpServer>(www, tmp / "http.log");
        for (int i = 1; i <= n; ++i) {
            using berth::agenttest::setConfigValue;
            auto conf = readFile(BERTH_FLEET_CONF);
            REQUIRE(!conf.empty());
            conf = setConfigValue(conf, "Device.MQTT.Client.1.BrokerPort", std::to_string(broker->port()));
            conf = setConfigValue(conf, "Device.DeviceInfo.SerialNumber", serial(i));
            conf = setConfigValue(conf, "Device.LocalAgent.EndpointID", id(i));
            conf = setConfigValue(conf, "Device.LocalAgent.MTP.1.MQTT.ResponseTopicConfigured", "usp/agent/" + id(i));
            fs::path dir = tmp / ("agent" + std::to_string(i));
            conf = setConfigValue(conf, kEe + ".X_BERTH_HostObjectPrefixes", (tmp / "host").string());
            conf = setConfigValue(conf, kEe + ".X_BERTH_CgroupParent", cgroupBase + "/a" + std::to_string(i));
            conf = setConfigValue(conf, kEe + ".X_BERTH_StorageDir", (dir / "ee" / "store").string());
            conf = setConfigValue(conf, kEe + ".X_BERTH_StateDir", (dir / "ee" / "state").string());
            if (adjust) conf = adjust(i, conf);
            configs.push_back(conf);
            dirs.push_back(dir);
        }
        agents.resize(static_cast<std::size_t>(n));
        if (start) startAll();
    }

    ~Fleet() {
        for (auto& a : agents)
            if (a && a->running()) a->stop();
        agents.clear();
        removeContainers();
    }

    static std::string serial(int i) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "F%04d", i);
        return buf;
    }
    static std::string id(int i) { return "os::012345-" + serial(i); }
    int size() const { return static_cast<int>(configs.size()); }

    void startAll() {
        for (int i = 1; i <= size(); ++i)
            startAgent(i);
        for (int i = 1; i <= size(); ++i) {
            bool up = answering(i);
            INFO("berthd " << i << " log:\n" << agents[static_cast<std::size_t>(i - 1)]->log());
            REQUIRE(up);
        }
    }
    void startAgent(int i) {
        auto& a = agents[static_cast<std::size_t>(i - 1)];
        if (a) {
            a->start();
        } else {
            a = std::make_unique<berth::agenttest::Berthd>(dirs[static_cast<std::size_t>(i - 1)],
                                                           configs[static_cast<std::size_t>(i - 1)]);
        }
    }
    void stopAgent(int i) { agents[static_cast<std::size_t>(i - 1)]->stop(); }

    // Polls a single-agent Get until the agent answers.
    bool answering(int i) {
        return waitUntil(
            [&] {
                berth::SpawnOptions o;
                o.argv = {BERTHCTL_BIN, "--mqtt", broker->address(),
                          "--agent",    id(i),    "--timeout",
                          "0.5",        "get",    "Device.LocalAgent.EndpointID"};
                auto run = berth::runCommand(o, 30s);
                return run && run->status.success();
            },
            30s);
    }

    std::vector<std::string> fleetArgv(std::vector<std::string> args) const {
        std::vector<std::string> argv{BERTHCTL_BIN, "fleet", "--mqtt", broker->address()};
        argv.insert(argv.end(), args.begin(), args.end());
        return argv;
    }
    CtlResult fleet(std::vector<std::string> args) { return berth::agenttest::runCtl(fleetArgv(std::move(args))); }

    std::string targets(const std::vector<int>& which, const std::string& name = "targets.txt") {
        std::string text = "# test fleet\n";
        for (int i : which)
            text += id(i) + "\n";
        writeFile(tmp / name, text);
        return (tmp / name).string();
    }

    // One CtlResult of `berthctl --agent id get path`.
    std::string get(int i, const std::string& path) {
        auto r = berth::agenttest::runCtl(
            {BERTHCTL_BIN, "--mqtt", broker->address(), "--agent", id(i), "--timeout", "5", "--json", "get", path});
        auto v = berth::agenttest::paramValue(r.json, path);
        return v ? *v : "<missing>";
    }
    std::size_t duCount(int i) {
        auto r = berth::agenttest::runCtl({BERTHCTL_BIN, "--mqtt", broker->address(), "--agent", id(i), "--timeout",
                                           "5", "--json", "instances", "Device.SoftwareModules.DeploymentUnit."});
        INFO(r.describe());
        REQUIRE(r.exitCode == 0);
        std::size_t n = 0;
        for (const auto& rp : r.json["get_instances_resp"]["req_path_results"])
            if (rp.contains("curr_insts")) n += rp["curr_insts"].size();
        return n;
    }

    berth::testing::TempDir tmp;
    std::string cgroupBase;
    fs::path www;
    std::unique_ptr<berth::testing::Mosquitto> broker;
    std::unique_ptr<berth::smme2e::HttpServer> http;
    std::vector<std::string> configs;
    std::vector<fs::path> dirs;
    std::vector<std::unique_ptr<berth::agenttest::Berthd>> agents;

private:
    void removeContainers() {
        for (const auto& dir : dirs) {
            std::string root = (dir / "ee" / "state" / "runtime").string();
            if (!fs::exists(root)) continue;
            berth::SpawnOptions o;
            o.argv = {"runc", "--root", root, "list", "-q"};
            auto l = berth::runCommand(o, 30s);
            if (!l || l->timedOut) continue;
            std::istringstream in(l->out);
            std::string cid;
            while (std::getline(in, cid)) {
                if (cid.empty()) continue;
                berth::SpawnOptions d;
                d.argv = {"runc", "--root", root, "delete", "--force", cid};
                (void)berth::runCommand(d, 30s);
            }
        }
        for (const char* ctl :
             {"memory", "cpu", "cpuacct", "pids", "cpuset", "devices", "freezer", "blkio", "systemd", "unified", ""}) {
            fs::path base = fs::path("/sys/fs/cgroup") / ctl / cgroupBase.substr(1);
            std::error_code ec;
            if (!fs::exists(base, ec)) continue;
            std::vector<fs::path> sub;
            for (auto it = fs::recursive_directory_iterator(base, ec); !ec && it != fs::recursive_directory_iterator();
                 it.increment(ec))
                if (it->is_directory(ec)) sub.push_back(it->path());
            std::sort(sub.begin(), sub.end(),
                      [](const fs::path& a, const fs::path& b) { return a.string().size() > b.string().size(); });
            for (const auto& d : sub)
                ::rmdir(d.c_str());
            ::rmdir(base.c_str());
        }
    }
};

std::vector<Json> jsonLines(const std::string& text) {
    std::vector<Json> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        auto j = Json::parse(line, nullptr, false);
        if (!j.is_discarded()) out.push_back(j);
    }
    return out;
}

// "begin"/"end" lines of the journal, in order, as "begin <id>" / "end <id> ok|<code>".
std::vector<std::string> journalEvents(const std::string& path) {
    std::vector<std::string> out;
    for (const auto& j : jsonLines(readFile(path))) {
        if (!j.contains("agent")) continue;
        std::string e = j["event"].get<std::string>() + " " + j["agent"].get<std::string>();
        if (j["event"] == "end") e += j["ok"].get<bool>() ? " ok" : " " + std::to_string(j["code"].get<unsigned>());
        out.push_back(e);
    }
    return out;
}

std::size_t countOf(const std::vector<std::string>& v, const std::string& s) {
    return static_cast<std::size_t>(std::count(v.begin(), v.end(), s));
}

}  // namespace

TEST_CASE("fleet discover records the agents that announce themselves, and --match addresses them by glob", "[fleet]") {
    Fleet f(5, {}, false);
    std::string known = (f.tmp / "known").string();
    auto discover = berth::testing::ProcessGuard::start(
        f.fleetArgv({"--known", known, "discover", "--count", "5", "--duration", "90"}),
        (f.tmp / "discover.out").string());
    // Agents send Boot! once, at start: listen first.
    REQUIRE(waitUntil(
        [&] { return f.broker->log().find("Received SUBSCRIBE from berthctl-fleet-") != std::string::npos; }, 20s));
    f.startAll();
    REQUIRE(waitUntil([&] { return !discover->running(); }, 60s));
    auto st = discover->stop();
    INFO(readFile(f.tmp / "discover.out"));
    CHECK(st.shellCode() == 0);

    auto k = berthctl::fleet::readKnownEndpoints(known);
    REQUIRE(k);
    std::vector<std::string> ids;
    for (const auto& e : *k) {
        ids.push_back(e.endpointId);
        CHECK((e.how == "Boot!" || e.how == "OnBoardRequest"));
    }
    std::sort(ids.begin(), ids.end());
    CHECK(ids == std::vector<std::string>{Fleet::id(1), Fleet::id(2), Fleet::id(3), Fleet::id(4), Fleet::id(5)});

    auto r = f.fleet({"--known", known, "--match", "os::012345-F000[135]", "get", "Device.DeviceInfo.SerialNumber"});
    INFO(r.describe());
    CHECK(r.exitCode == 0);
    CHECK(r.out.find(Fleet::id(1) + "  Device.DeviceInfo.SerialNumber  F0001") != std::string::npos);
    CHECK(r.out.find(Fleet::id(3) + "  Device.DeviceInfo.SerialNumber  F0003") != std::string::npos);
    CHECK(r.out.find(Fleet::id(5) + "  Device.DeviceInfo.SerialNumber  F0005") != std::string::npos);
    CHECK(r.out.find(Fleet::id(2)) == std::string::npos);

    auto none = f.fleet({"--known", known, "--match", "proto::*", "get", "Device.DeviceInfo.SerialNumber"});
    CHECK(none.exitCode == 2);
    CHECK(none.err.find("no known endpoint matches 'proto::*'") != std::string::npos);
}

TEST_CASE("fleet get prints one table across five agents, with per-agent errors and silent agents", "[fleet]") {
    Fleet f(5);
    std::string ghost = "os::012345-F0099";
    std::string agents;
    for (int i = 1; i <= 5; ++i)
        agents += Fleet::id(i) + ",";
    agents += ghost;
    auto r = f.fleet({"--agents", agents, "--timeout", "3", "get", "Device.DeviceInfo.SerialNumber",
                      "Device.DeviceInfo.X_NoSuchThing"});
    INFO(r.describe());
    CHECK(r.exitCode == 1);
    for (int i = 1; i <= 5; ++i) {
        CHECK(r.out.find(Fleet::id(i) + "  Device.DeviceInfo.SerialNumber   " + Fleet::serial(i)) != std::string::npos);
        CHECK(r.out.find(Fleet::id(i) + "  Device.DeviceInfo.X_NoSuchThing  error 7026") != std::string::npos);
    }
    CHECK(r.out.find(ghost + "  Device.DeviceInfo.SerialNumber   error 7000: no answer from " + ghost) !=
          std::string::npos);

    auto j = f.fleet({"--json", "--targets", f.targets({5, 4, 3, 2, 1}), "get", "Device.DeviceInfo.SerialNumber"});
    INFO(j.describe());
    CHECK(j.exitCode == 0);
    auto lines = jsonLines(j.out);
    REQUIRE(lines.size() == 5);
    std::map<std::string, std::string> values;
    for (const auto& l : lines)
        values[l["endpoint"]] = l["value"];
    for (int i = 1; i <= 5; ++i)
        CHECK(values[Fleet::id(i)] == Fleet::serial(i));
}

TEST_CASE(
    "fleet install with a canary of 1 and concurrency 2 installs on all five agents, then start, stop and "
    "uninstall follow the DU by name",
    "[fleet]") {
    Fleet f(5);
    std::string archive = berth::smme2e::buildApp(f.www, "hello", "1.0.0");
    std::string journal = (f.tmp / "install.journal").string();
    auto r = f.fleet({"--targets", f.targets({1, 2, 3, 4, 5}), "--canary", "1", "--concurrency", "2", "--journal",
                      journal, "install", f.http->url(archive)});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    CHECK(r.out.find("targets 5: 5 succeeded, 0 failed, 0 not started") != std::string::npos);
    CHECK(r.out.find("p50 ") != std::string::npos);
    CHECK(r.out.find("on one MQTT connection") != std::string::npos);
    // The canary ended before any other agent began.
    auto ev = journalEvents(journal);
    REQUIRE(ev.size() == 10);
    CHECK(ev[0] == "begin " + Fleet::id(1));
    CHECK(ev[1] == "end " + Fleet::id(1) + " ok");
    for (int i = 1; i <= 5; ++i) {
        CHECK(countOf(ev, "end " + Fleet::id(i) + " ok") == 1);
        CHECK(f.get(i, "Device.SoftwareModules.DeploymentUnit.1.Name") == "hello");
        CHECK(f.get(i, "Device.SoftwareModules.DeploymentUnit.1.Status") == "Installed");
    }
    // One broker connection for the whole rollout.
    auto log = f.broker->log();
    std::size_t connects = 0;
    for (auto at = log.find("New client connected"); at != std::string::npos;
         at = log.find("New client connected", at + 1))
        if (log.compare(log.find(" as ", at) + 4, 15, "berthctl-fleet-") == 0) ++connects;
    CHECK(connects == 1);

    auto started = f.fleet({"--targets", f.targets({1, 2, 3, 4, 5}), "--concurrency", "5", "--journal",
                            (f.tmp / "start.journal").string(), "start", "hello"});
    INFO(started.describe());
    REQUIRE(started.exitCode == 0);
    for (int i = 1; i <= 5; ++i)
        CHECK(f.get(i, "Device.SoftwareModules.ExecutionUnit.1.Status") == "Active");

    // On a terminal (script(1) gives berthctl a pty) the progress is a bar that is redrawn.
    std::string cmd;
    for (const auto& a : f.fleetArgv({"--targets", f.targets({1, 2, 3, 4, 5}), "--concurrency", "5", "--journal",
                                      (f.tmp / "stop.journal").string(), "stop", "hello"}))
        cmd += "'" + a + "' ";
    auto stopped = berth::agenttest::runCtl({"script", "-qec", cmd, "/dev/null"});
    INFO(stopped.describe());
    REQUIRE(stopped.exitCode == 0);
    CHECK(stopped.out.find("\r[##############################] 5/5  ok 5  failed 0  in flight 0") != std::string::npos);
    CHECK(stopped.out.find(Fleet::id(1) + " ok ") == std::string::npos);  // no plain lines on a terminal
    for (int i = 1; i <= 5; ++i)
        CHECK(f.get(i, "Device.SoftwareModules.ExecutionUnit.1.Status") == "Idle");

    // Update finds the DU by its URL this time.
    std::string v2 = berth::smme2e::buildApp(f.www, "hello", "1.1.0");
    auto updated = f.fleet({"--targets", f.targets({1, 2, 3, 4, 5}), "--concurrency", "3", "--journal",
                            (f.tmp / "update.journal").string(), "update", f.http->url(archive), f.http->url(v2)});
    INFO(updated.describe());
    REQUIRE(updated.exitCode == 0);
    for (int i = 1; i <= 5; ++i) {
        CHECK(f.get(i, "Device.SoftwareModules.DeploymentUnit.1.Version") == "1.1.0");
        CHECK(f.get(i, "Device.SoftwareModules.DeploymentUnit.1.URL") == f.http->url(v2));
    }

    auto removed = f.fleet(
        {"--targets", f.targets({1, 2, 3, 4, 5}), "--journal", (f.tmp / "rm.journal").string(), "uninstall", "hello"});
    INFO(removed.describe());
    REQUIRE(removed.exitCode == 0);
    for (int i = 1; i <= 5; ++i)
        CHECK(f.duCount(i) == 0);

    // A DU that is not there: 7016 per agent, nothing changes.
    auto missing =
        f.fleet({"--agents", Fleet::id(1), "--journal", (f.tmp / "m.journal").string(), "uninstall", "nosuchapp"});
    CHECK(missing.exitCode != 0);
    CHECK(missing.out.find("error 7016: no DeploymentUnit with Name nosuchapp") != std::string::npos);
}

TEST_CASE("A rollout whose failures pass --max-failures is aborted with exit 5 and a summary naming each failure",
          "[fleet]") {
    // Agents 4 and 5 have a 256 KiB disk budget: no busybox image fits (7227).
    Fleet f(5, [](int i, std::string conf) {
        return i >= 4 ? berth::agenttest::setConfigValue(conf, kEe + ".AllocatedDiskSpace", "256") : conf;
    });
    std::string archive = berth::smme2e::buildApp(f.www, "hello", "1.0.0");
    std::string journal = (f.tmp / "abort.journal").string();
    auto r = f.fleet({"--targets", f.targets({1, 4, 5, 2, 3}), "--canary", "1", "--concurrency", "1", "--max-failures",
                      "1", "--journal", journal, "install", f.http->url(archive)});
    INFO(r.describe());
    CHECK(r.exitCode == 5);
    CHECK(r.out.find("ABORTED: 2 agents failed, more than --max-failures 1 of 5") != std::string::npos);
    CHECK(r.out.find("targets 5: 1 succeeded, 2 failed, 2 not started") != std::string::npos);
    CHECK(r.out.find(Fleet::id(4) + ": error 7227") != std::string::npos);
    CHECK(r.out.find(Fleet::id(5) + ": error 7227") != std::string::npos);
    CHECK(f.duCount(1) == 1);
    CHECK(f.duCount(2) == 0);
    CHECK(f.duCount(3) == 0);
    CHECK(f.duCount(4) == 0);
    auto j = berthctl::fleet::readJournal(journal);
    REQUIRE(j);
    REQUIRE(j->abortReason);
    CHECK(j->agents.count(Fleet::id(2)) == 0);

    // A failing canary stops everything after it.
    auto c = f.fleet({"--json", "--targets", f.targets({4, 2, 3}, "canary.txt"), "--canary", "1", "--max-failures",
                      "100%", "--journal", (f.tmp / "canary.journal").string(), "install", f.http->url(archive)});
    INFO(c.describe());
    CHECK(c.exitCode == 5);
    auto lines = jsonLines(c.out);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0]["endpoint"] == Fleet::id(4));
    CHECK(lines[0]["error"] == 7227);
    const auto& sum = lines[1]["summary"];
    CHECK(sum["aborted"] == "canary agent " + Fleet::id(4) + " failed");
    CHECK(sum["succeeded"] == 0);
    CHECK(sum["failed"] == 1);
    CHECK(sum["not_started"] == 2);
    REQUIRE(sum["failures"].size() == 1);
    CHECK(sum["failures"][0]["error"] == 7227);
    CHECK(f.duCount(2) == 0);

    // A bad threshold is a usage error before anything is sent.
    auto bad = f.fleet({"--agents", Fleet::id(2), "--max-failures", "ten", "install", f.http->url(archive)});
    CHECK(bad.exitCode == 2);
    CHECK(bad.err.find("--max-failures") != std::string::npos);
    CHECK(f.duCount(2) == 0);
}

TEST_CASE(
    "A rollout resumed from its journal after berthctl was killed finishes the rest without redoing finished "
    "agents",
    "[fleet]") {
    Fleet f(5);
    std::string archive = berth::smme2e::buildApp(f.www, "hello", "1.0.0");
    std::string journal = (f.tmp / "resume.journal").string();
    // Agent 3 is down: berthctl waits for its answer while 1 and 2 are done.
    f.stopAgent(3);
    auto ctl = berth::testing::ProcessGuard::start(
        f.fleetArgv({"--targets", f.targets({1, 2, 3, 4, 5}), "--concurrency", "1", "--timeout", "60", "--journal",
                     journal, "install", f.http->url(archive)}),
        (f.tmp / "first.out").string());
    bool inFlight = waitUntil(
        [&] {
            auto ev = journalEvents(journal);
            return countOf(ev, "begin " + Fleet::id(3)) == 1;
        },
        120s);
    INFO(readFile(f.tmp / "first.out"));
    REQUIRE(inFlight);
    auto st = ctl->kill9();
    CHECK((!st.exited && st.signal == SIGKILL));
    // As if berthctl died while writing a line.
    std::ofstream(journal, std::ios::app) << R"({"agent":"os::012345-F0003","ev)";

    f.startAgent(3);
    REQUIRE(f.answering(3));
    auto r = f.fleet({"--resume", journal});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    CHECK(r.out.find("targets 5: 5 succeeded, 0 failed, 0 not started (2 done by an earlier run") != std::string::npos);
    auto ev = journalEvents(journal);
    for (int i : {1, 2, 4, 5})
        CHECK(countOf(ev, "begin " + Fleet::id(i)) == 1);
    CHECK(countOf(ev, "begin " + Fleet::id(3)) == 2);
    for (int i = 1; i <= 5; ++i) {
        CHECK(countOf(ev, "end " + Fleet::id(i) + " ok") == 1);
        CHECK(f.duCount(i) == 1);
    }
}
