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
#include "berth/bench/work_dir.h"
#include "berth/core/process.h"
#include "bench_images.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

using berth::bench::fail;

std::size_t lines(const fs::path& p) {
    std::ifstream in(p);
    std::size_t n = 0;
    std::string l;
    while (std::getline(in, l))
        ++n;
    return n;
}

int run(int argc, char** argv) {
    int agents = 5;
    int concurrency = 2;
    int canary = 1;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto num = [&]() {
            if (i + 1 >= argc) fail(a + " needs a number");
            return std::max(0, std::atoi(argv[++i]));
        };
        if (a == "--agents") {
            agents = std::max(1, num());
        } else if (a == "--concurrency") {
            concurrency = std::max(1, num());
        } else if (a == "--canary") {
            canary = num();
        } else {
            fail("usage: berth-fleet-bench [--agents N] [--concurrency C] [--canary K]");
        }
    }
    std::signal(SIGPIPE, SIG_IGN);
    berth::bench::WorkDir work("berth-fleet-bench");
    const std::string cgroup = "/berth-fleet-bench-" + std::to_string(::getpid());
    work.cleanCgroup(cgroup);

    auto img = berth::oci::testing::buildIdleImage(work.path(), work / "www");
    int web = berth::bench::startHttpServer(work, work / "www");
    std::string url = "http://127.0.0.1:" + std::to_string(web) + "/bench.tar";
    int port = berth::bench::startMosquitto(work);
    std::string broker = "127.0.0.1:" + std::to_string(port);

    std::string base = berth::bench::readText(BERTH_FLEET_CONF);
    if (base.empty()) fail("cannot read " BERTH_FLEET_CONF);
    std::string targets;
    for (int i = 1; i <= agents; ++i) {
        char serial[16];
        std::snprintf(serial, sizeof serial, "B%05d", i);
        std::string id = std::string("os::012345-") + serial;
        targets += id + "\n";
        berth::bench::BerthdSetup agent;
        agent.binary = BERTHD_BIN;
        agent.config = base;
        agent.config = berth::bench::setConfigValue(agent.config, "Device.DeviceInfo.SerialNumber", serial);
        agent.config = berth::bench::setConfigValue(agent.config, "Device.LocalAgent.EndpointID", id);
        agent.config = berth::bench::setConfigValue(
            agent.config, "Device.LocalAgent.MTP.1.MQTT.ResponseTopicConfigured", "usp/agent/" + id);
        agent.dir = work / ("agent" + std::to_string(i));
        agent.brokerPort = port;
        agent.cgroupParent = cgroup + "/a" + std::to_string(i);
        agent.hostPrefix = work / "host";
        berth::bench::startBerthd(work, agent);
    }
    std::ofstream(work.path() / "targets") << targets;

    // Every agent answers (one fleet get, repeated until clean).
    auto deadline = Clock::now() + 60s;
    while (true) {
        berth::SpawnOptions o;
        o.argv = {BERTHCTL_BIN, "fleet",
                  "--mqtt",     broker,
                  "--timeout",  "1",
                  "--targets",  (work.path() / "targets").string(),
                  "get",        "Device.LocalAgent.EndpointID"};
        auto r = berth::runCommand(o, 60s);
        if (r && r->status.success()) break;
        if (Clock::now() > deadline) fail("the agents did not all answer within 60 s");
    }

    // The counting subscriber: one line per USP record the broker delivers on usp/#.
    fs::path counted = work.path() / "counted";
    work.start({"stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(port), "-q", "0", "-t",
                "usp/#", "-F", "%t", "-i", "berth-fleet-bench-counter"},
               counted);
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
        if (lines(counted) == 0) fail("the counting subscriber did not subscribe");
    }
    std::size_t before = lines(counted);

    berth::SpawnOptions o;
    o.argv = {BERTHCTL_BIN,
              "fleet",
              "--mqtt",
              broker,
              "--json",
              "--targets",
              (work.path() / "targets").string(),
              "--concurrency",
              std::to_string(concurrency),
              "--canary",
              std::to_string(canary),
              "--journal",
              (work.path() / "rollout.journal").string(),
              "install",
              url};
    auto t0 = Clock::now();
    auto r = berth::runCommand(o, 3600s);
    double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!r) fail("cannot run berthctl: " + r.error().describe());
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
    if (summary.is_null()) fail("no summary from berthctl: " + r->out + r->err);

    std::printf(
        "berth-fleet-bench: berthctl fleet install to %d berthd agents (runc ExecEnv), image %.0f KiB,\n"
        "  concurrency %d, canary %d, one mosquitto 127.0.0.1:%d\n",
        agents, img.archiveKiB, concurrency, canary, port);
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

int main(int argc, char** argv) { return berth::bench::runMain("berth-fleet-bench", argc, argv, run); }
