// berth-fleet-bench: a `berthctl fleet install` rollout to N berthd agents, with figures.
//
//   berth-fleet-bench [--agents N] [--concurrency C] [--canary K]
//                     (root, runc, mosquitto, mosquitto_sub, python3, /bin/busybox)
//   KEEP=1 berth-fleet-bench      keeps the work directory (logs) afterwards
//
// Starts mosquitto (loopback, free port), python3's http.server with a busybox image built
// offline, and N berthd processes (examples/berth-fleet.conf, one identity and ExecEnv
// directory each), waits until every agent answers, then runs berthctl fleet install
// --json on all of them while a counting subscriber (mosquitto_sub on usp/#) sees every
// USP record the broker delivers. Prints the wall time, berthctl's summary figures, the
// records berthctl sent and received, and the broker's count of USP publishes.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "berth/bench/support.h"
#include "berth/core/fd.h"
#include "berth/core/process.h"
#include "berth/oci/layout_writer.h"
#include "oci_test_util.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct Failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};
[[noreturn]] void die(const std::string& what) {
    throw Failure(what);
}

std::string setValue(std::string conf, const std::string& key, const std::string& value) {
    auto line = "\n" + key + " \"";
    auto at = conf.find(line);
    if (at == std::string::npos) return conf + "\n" + key + " \"" + value + "\"\n";
    auto start = at + line.size();
    auto end = conf.find('"', start);
    return conf.substr(0, start) + value + conf.substr(end);
}

std::unique_ptr<berth::ChildProcess> spawn(std::vector<std::string> argv, const fs::path& log) {
    berth::SpawnOptions o;
    o.argv = std::move(argv);
    berth::UniqueFd fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    o.stdoutFd = fd.get();
    o.stderrFd = fd.get();
    auto c = berth::ChildProcess::spawn(o);
    if (!c) die("cannot start " + o.argv[0] + ": " + c.error().describe());
    return std::move(*c);
}

void waitPort(int port, const std::string& what) {
    auto deadline = Clock::now() + 15s;
    while (!berth::bench::loopbackPortOpen(port) && Clock::now() < deadline)
        std::this_thread::sleep_for(20ms);
    if (!berth::bench::loopbackPortOpen(port)) die(what + " did not start");
}

std::size_t lines(const fs::path& p) {
    std::ifstream in(p);
    std::size_t n = 0;
    std::string l;
    while (std::getline(in, l))
        ++n;
    return n;
}

struct Owned {
    std::vector<std::unique_ptr<berth::ChildProcess>> procs;  // stopped in reverse order
    fs::path dir;
    std::string cgroup;
    int agents = 0;
    ~Owned() {
        for (auto it = procs.rbegin(); it != procs.rend(); ++it) {
            auto& p = *it;
            if (p && p->running()) {
                (void)p->signal(SIGTERM);
                if (!p->waitFor(5s)) (void)p->signal(SIGKILL);
            }
        }
        procs.clear();
        for (int i = 1; i <= agents; ++i) {
            std::string root = (dir / ("agent" + std::to_string(i)) / "ee" / "state" / "runtime").string();
            if (!fs::exists(root)) continue;
            berth::SpawnOptions o;
            o.argv = {"runc", "--root", root, "list", "-q"};
            if (auto l = berth::runCommand(o, 30s)) {
                std::istringstream in(l->out);
                std::string id;
                while (std::getline(in, id)) {
                    if (id.empty()) continue;
                    berth::SpawnOptions d;
                    d.argv = {"runc", "--root", root, "delete", "--force", id};
                    (void)berth::runCommand(d, 30s);
                }
            }
        }
        for (const char* ctl :
             {"memory", "cpu", "cpuacct", "pids", "cpuset", "devices", "freezer", "blkio", "systemd", ""}) {
            fs::path base = fs::path("/sys/fs/cgroup") / ctl / cgroup.substr(1);
            for (int i = 1; i <= agents; ++i)
                ::rmdir((base / ("a" + std::to_string(i))).c_str());
            ::rmdir(base.c_str());
        }
        std::error_code ec;
        if (std::getenv("KEEP")) {
            std::fprintf(stderr, "berth-fleet-bench: kept %s\n", dir.c_str());
        } else if (!dir.empty()) {
            fs::remove_all(dir, ec);
        }
    }
};

int run(int argc, char** argv) {
    int agents = 5;
    int concurrency = 2;
    int canary = 1;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto num = [&]() {
            if (i + 1 >= argc) die(a + " needs a number");
            return std::max(0, std::atoi(argv[++i]));
        };
        if (a == "--agents") {
            agents = std::max(1, num());
        } else if (a == "--concurrency") {
            concurrency = std::max(1, num());
        } else if (a == "--canary") {
            canary = num();
        } else {
            die("usage: berth-fleet-bench [--agents N] [--concurrency C] [--canary K]");
        }
    }
    std::signal(SIGPIPE, SIG_IGN);
    Owned owned;
    char templ[] = "/tmp/berth-fleet-bench-XXXXXX";
    if (!::mkdtemp(templ)) die("mkdtemp failed");
    owned.dir = templ;
    ::chmod(templ, 0755);
    owned.cgroup = "/berth-fleet-bench-" + std::to_string(::getpid());
    fs::create_directories(owned.dir / "www");

    berth::oci::testing::makeBusyboxRootfs(owned.dir / "rootfs");
    std::string tar = (owned.dir / "layer.tar").string();
    if (!berth::oci::tarDirectory((owned.dir / "rootfs").string(), tar, false)) die("tar");
    berth::oci::ImageDefinition def;
    def.cmd = {"/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"};
    def.annotations = {{"org.opencontainers.image.title", "bench"},
                       {"org.opencontainers.image.vendor", "example.com"},
                       {"org.opencontainers.image.version", "1.0.0"}};
    auto img = berth::oci::testing::buildImage(owned.dir / "www", "bench", {tar}, def);
    double archiveKiB = static_cast<double>(fs::file_size(img.archive)) / 1024.0;

    int web = berth::bench::freeLoopbackPort();
    owned.procs.push_back(spawn({"python3", "-m", "http.server", "--bind", "127.0.0.1", std::to_string(web),
                                 "--directory", (owned.dir / "www").string()},
                                owned.dir / "http.log"));
    waitPort(web, "python3 http.server");
    std::string url = "http://127.0.0.1:" + std::to_string(web) + "/" + fs::path(img.archive).filename().string();
    int port = berth::bench::freeLoopbackPort();
    std::ofstream(owned.dir / "mosquitto.conf") << "persistence false\nallow_anonymous true\nlog_type error\n"
                                                << "listener " << port << " 127.0.0.1\n";
    owned.procs.push_back(
        spawn({"mosquitto", "-c", (owned.dir / "mosquitto.conf").string()}, owned.dir / "mosquitto.log"));
    waitPort(port, "mosquitto");
    std::string broker = "127.0.0.1:" + std::to_string(port);

    std::string base = berth::bench::readText(BERTH_FLEET_CONF);
    if (base.empty()) die("cannot read " BERTH_FLEET_CONF);
    std::string targets;
    const std::string ee = "Device.SoftwareModules.ExecEnv.1.";
    owned.agents = agents;
    for (int i = 1; i <= agents; ++i) {
        char serial[16];
        std::snprintf(serial, sizeof serial, "B%05d", i);
        std::string id = std::string("os::012345-") + serial;
        targets += id + "\n";
        fs::path dir = owned.dir / ("agent" + std::to_string(i));
        fs::create_directories(dir);
        std::string conf = base;
        conf = setValue(conf, "Device.MQTT.Client.1.BrokerPort", std::to_string(port));
        conf = setValue(conf, "Device.DeviceInfo.SerialNumber", serial);
        conf = setValue(conf, "Device.LocalAgent.EndpointID", id);
        conf = setValue(conf, "Device.LocalAgent.MTP.1.MQTT.ResponseTopicConfigured", "usp/agent/" + id);
        conf = setValue(conf, ee + "X_BERTH_CgroupParent", owned.cgroup + "/a" + std::to_string(i));
        conf = setValue(conf, ee + "X_BERTH_HostObjectPrefixes", (owned.dir / "host").string());
        conf = setValue(conf, ee + "X_BERTH_StorageDir", (dir / "ee" / "store").string());
        conf = setValue(conf, ee + "X_BERTH_StateDir", (dir / "ee" / "state").string());
        std::ofstream(dir / "berth.conf") << conf;
        owned.procs.push_back(spawn({BERTHD_BIN, "--config", (dir / "berth.conf").string(), "--db",
                                     (dir / "berth.db").string(), "--log-level", "warn"},
                                    dir / "berthd.log"));
    }
    std::ofstream(owned.dir / "targets") << targets;

    // Every agent answers (one fleet get, repeated until clean).
    auto deadline = Clock::now() + 60s;
    while (true) {
        berth::SpawnOptions o;
        o.argv = {BERTHCTL_BIN, "fleet",
                  "--mqtt",     broker,
                  "--timeout",  "1",
                  "--targets",  (owned.dir / "targets").string(),
                  "get",        "Device.LocalAgent.EndpointID"};
        auto r = berth::runCommand(o, 60s);
        if (r && r->status.success()) break;
        if (Clock::now() > deadline) die("the agents did not all answer within 60 s");
    }

    // The counting subscriber: one line per USP record the broker delivers on usp/#.
    fs::path counted = owned.dir / "counted";
    owned.procs.push_back(spawn({"stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(port), "-q",
                                 "0", "-t", "usp/#", "-F", "%t", "-i", "berth-fleet-bench-counter"},
                                counted));
    // mosquitto_sub has no "subscribed" signal without -d; a retained probe tells us.
    {
        auto probe = Clock::now() + 10s;
        while (Clock::now() < probe) {
            berth::SpawnOptions o;
            o.argv = {"mosquitto_pub",   "-h", "127.0.0.1", "-p", std::to_string(port), "-t",
                      "usp/bench-probe", "-m", "x"};
            (void)berth::runCommand(o, 10s);
            if (lines(counted) > 0) break;
            std::this_thread::sleep_for(50ms);
        }
        if (lines(counted) == 0) die("the counting subscriber did not subscribe");
    }
    std::size_t before = lines(counted);

    berth::SpawnOptions o;
    o.argv = {BERTHCTL_BIN,
              "fleet",
              "--mqtt",
              broker,
              "--json",
              "--targets",
              (owned.dir / "targets").string(),
              "--concurrency",
              std::to_string(concurrency),
              "--canary",
              std::to_string(canary),
              "--journal",
              (owned.dir / "rollout.journal").string(),
              "install",
              url};
    auto t0 = Clock::now();
    auto r = berth::runCommand(o, 3600s);
    double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!r) die("cannot run berthctl: " + r.error().describe());
    // Let the last NotifyResp / DeleteResp reach the counter.
    std::size_t after = lines(counted);
    for (int stable = 0; stable < 10;) {
        std::this_thread::sleep_for(50ms);
        std::size_t now = lines(counted);
        stable = now == after ? stable + 1 : 0;
        after = now;
    }
    nlohmann::json summary;
    std::istringstream out(r->out);
    std::string line;
    while (std::getline(out, line)) {
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_object() && j.contains("summary")) summary = j["summary"];
    }
    if (summary.is_null()) die("no summary from berthctl: " + r->out + r->err);

    std::printf(
        "berth-fleet-bench: berthctl fleet install to %d berthd agents (runc ExecEnv), image %.0f KiB,\n"
        "  concurrency %d, canary %d, one mosquitto 127.0.0.1:%d\n",
        agents, archiveKiB, concurrency, canary, port);
    std::printf("  exit status          %d (%d succeeded, %d failed)\n", r->status.shellCode(),
                summary.value("succeeded", 0), summary.value("failed", 0));
    std::printf("  wall time            %.2f s (berthctl process, connect to summary)\n", wall);
    std::printf("  per agent            p50 %lld ms, p95 %lld ms, max %lld ms\n", summary.value("p50_ms", 0LL),
                summary.value("p95_ms", 0LL), summary.value("max_ms", 0LL));
    std::printf("  berthctl records     %llu sent, %llu received (one MQTT connection)\n",
                summary.value("records_sent", 0ULL), summary.value("records_received", 0ULL));
    std::printf("  broker USP publishes %zu on usp/# (counting subscriber), %.1f per agent\n", after - before,
                static_cast<double>(after - before) / agents);
    return r->status.success() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const Failure& f) {
        std::fprintf(stderr, "berth-fleet-bench: %s\n", f.what());
        return 1;
    }
}
