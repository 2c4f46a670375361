// berth-sim-rollout-bench: `berthctl fleet install` of one app to N simulated agents
// with Device.SoftwareModules on the sim runtime, and what it costs.
//
//   berth-sim-rollout-bench [--agents 1000] [--processes 1] [--concurrency 50] [--canary 5]
//                           [--connect-rate 300] [--fault SPEC]...   (mosquitto, mosquitto_sub, python3)
//   KEEP=1 berth-sim-rollout-bench      keeps the work directory (logs) afterwards
//
// Starts mosquitto (loopback, free port, no connection limit), python3's http.server with
// a small image built offline, and K berth-sim processes (--software-modules, disjoint
// agent ranges, in memory), waits until every agent answers a fleet Get, then runs
// berthctl fleet --json install to all of them while a counting subscriber (mosquitto_sub
// on usp/#) sees every USP record the broker delivers. Prints the wall time, berthctl's
// summary, records sent and received, broker publishes, the image downloads the HTTP
// server answered, and the berth-sim memory per agent (VmRSS and RssAnon of the processes
// less that of as many one-agent berth-sims) before and after the rollout.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "berth/bench/support.h"
#include "berth/core/fd.h"
#include "berth/core/process.h"
#include "oci_test_util.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct Failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};
[[noreturn]] void die(const std::string& what) { throw Failure(what); }

long statusKb(pid_t pid, const std::string& name) {
    std::istringstream in(berth::bench::readText("/proc/" + std::to_string(pid) + "/status"));
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(name + ":", 0) == 0) return std::stol(line.substr(name.size() + 1));
    return 0;
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
    while (!berth::bench::loopbackPortOpen(port) && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
    if (!berth::bench::loopbackPortOpen(port)) die(what + " did not start");
}

std::size_t lines(const fs::path& p) {
    std::ifstream in(p);
    std::size_t n = 0;
    std::string l;
    while (std::getline(in, l)) ++n;
    return n;
}

std::size_t occurrences(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

struct Owned {
    std::vector<std::unique_ptr<berth::ChildProcess>> procs;  // stopped in reverse order
    fs::path dir;
    ~Owned() {
        for (auto it = procs.rbegin(); it != procs.rend(); ++it) {
            auto& p = *it;
            if (p && p->running()) {
                (void)p->signal(SIGTERM);
                if (!p->waitFor(60s)) (void)p->signal(SIGKILL);
            }
        }
        procs.clear();
        std::error_code ec;
        if (std::getenv("KEEP"))
            std::fprintf(stderr, "berth-sim-rollout-bench: kept %s\n", dir.c_str());
        else if (!dir.empty())
            fs::remove_all(dir, ec);
    }
};

struct Memory {
    long rss = 0, anon = 0;
};

Memory memoryOf(const std::vector<berth::ChildProcess*>& ps) {
    Memory m;
    for (auto* p : ps) {
        m.rss += statusKb(p->pid(), "VmRSS");
        m.anon += statusKb(p->pid(), "RssAnon");
    }
    return m;
}

// Runs `berthctl fleet get` on the targets until every agent answers.
// A berth-sim that could not start some of its agents says so on its last start-up line
// ("berth-sim: N agents started (M failed) in S s"); waiting for them would be in vain.
void refuseFailedStarts(const std::vector<fs::path>& simLogs) {
    for (const auto& log : simLogs) {
        std::istringstream in(berth::bench::readText(log));
        std::string line;
        while (std::getline(in, line)) {
            auto at = line.find(" agents started (");
            if (at == std::string::npos || line.find(" agents started (0 failed)") != std::string::npos) continue;
            die(log.filename().string() + ": " + line + " (see that log for why)");
        }
    }
}

void waitAnswering(const std::string& broker, const fs::path& targets, std::chrono::seconds within,
                   const std::vector<fs::path>& simLogs) {
    auto deadline = Clock::now() + within;
    while (true) {
        refuseFailedStarts(simLogs);
        berth::SpawnOptions o;
        o.argv = {BERTHCTL_BIN, "fleet", "--mqtt", broker, "--timeout", "5", "--targets", targets.string(),
                  "get", "Device.SoftwareModules.ExecEnv.1.Status"};
        auto r = berth::runCommand(o, 600s);
        if (r && r->status.success() && occurrences(r->out, "  Up") > 0 &&
            occurrences(r->out, "error") == 0)
            return;
        if (Clock::now() > deadline) die("the agents did not all answer in time");
        std::this_thread::sleep_for(1s);
    }
}

int run(int argc, char** argv) {
    CLI::App app{"berth-sim-rollout-bench - berthctl fleet install to N simulated agents with SoftwareModules"};
    unsigned agents = 1000, processes = 1, concurrency = 50, canary = 5;
    double rate = 300;
    std::vector<std::string> faults;
    std::string maxFailures = "100%";
    app.add_option("--agents", agents, "Simulated agents")->capture_default_str()->check(CLI::Range(1u, 100000u));
    app.add_option("--processes", processes, "berth-sim processes to spread them over")
        ->capture_default_str()
        ->check(CLI::Range(1u, 64u));
    app.add_option("--concurrency", concurrency, "berthctl fleet --concurrency")->capture_default_str();
    app.add_option("--canary", canary, "berthctl fleet --canary")->capture_default_str();
    app.add_option("--max-failures", maxFailures, "berthctl fleet --max-failures")->capture_default_str();
    app.add_option("--connect-rate", rate, "Agent starts per second, over all processes")->capture_default_str();
    app.add_option("--fault", faults, "berth-sim --fault, repeatable (e.g. install-fail:10%:rate=100%)");
    CLI11_PARSE(app, argc, argv);

    std::signal(SIGPIPE, SIG_IGN);
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        (void)::setrlimit(RLIMIT_NOFILE, &lim);
    }
    Owned owned;
    char templ[] = "/tmp/berth-sim-rollout-bench-XXXXXX";
    if (!::mkdtemp(templ)) die("mkdtemp failed");
    owned.dir = templ;
    ::chmod(templ, 0755);
    fs::create_directories(owned.dir / "www");

    // A small app: one layer of 256 KiB of files.
    std::string tar = (owned.dir / "layer.tar").string();
    {
        berth::oci::testing::TarBuilder t(tar);
        t.dir("bin").file("bin/app", "#!/bin/sh\nexec sleep 1000000\n", 0755);
        std::string blob(4096, 'x');
        for (int i = 0; i < 64; ++i) {
            blob[0] = static_cast<char>('a' + i % 26);
            t.file("share/data" + std::to_string(i), blob + std::to_string(i));
        }
    }
    berth::oci::ImageDefinition def;
    def.cmd = {"/bin/app"};
    def.annotations = {{"org.opencontainers.image.title", "bench"},
                       {"org.opencontainers.image.vendor", "example.com"},
                       {"org.opencontainers.image.version", "1.0.0"}};
    auto img = berth::oci::testing::buildImage(owned.dir / "www", "bench", {tar}, def);
    const std::string archive = fs::path(img.archive).filename().string();
    double archiveKiB = static_cast<double>(fs::file_size(img.archive)) / 1024.0;

    int web = berth::bench::freeLoopbackPort();
    owned.procs.push_back(spawn({"python3", "-m", "http.server", "--bind", "127.0.0.1", std::to_string(web),
                                 "--directory", (owned.dir / "www").string()},
                                owned.dir / "http.log"));
    waitPort(web, "python3 http.server");
    const std::string url = "http://127.0.0.1:" + std::to_string(web) + "/" + archive;
    int port = berth::bench::freeLoopbackPort();
    std::ofstream(owned.dir / "mosquitto.conf") << "persistence false\nallow_anonymous true\nlog_dest none\n"
                                                << "max_connections -1\nmax_queued_messages 10000\n"
                                                << "set_tcp_nodelay true\nlistener " << port << " 127.0.0.1\n";
    owned.procs.push_back(
        spawn({"mosquitto", "-c", (owned.dir / "mosquitto.conf").string()}, owned.dir / "mosquitto.log"));
    auto* mosquitto = owned.procs.back().get();
    waitPort(port, "mosquitto");
    const std::string broker = "127.0.0.1:" + std::to_string(port);

    auto simArgv = [&](unsigned count, unsigned first, double r, const std::string& stateDir) {
        std::vector<std::string> a{BERTH_SIM_BIN, "--agents", std::to_string(count), "--first", std::to_string(first),
                                   "--mqtt", broker, "--software-modules", "--connect-rate", std::to_string(r),
                                   "--log-level", "error", "--state-dir", stateDir};
        for (const auto& f : faults) a.insert(a.end(), {"--fault", f});
        return a;
    };
    // What one berth-sim process with one agent costs: subtracted per process.
    Memory base;
    {
        fs::path t1 = owned.dir / "one.targets";
        std::ofstream(t1) << "os::012345-" << std::to_string(9000000) << "\n";
        auto one = spawn(simArgv(1, 9000000, 10, (owned.dir / "state-one").string()), owned.dir / "one.log");
        waitAnswering(broker, t1, 60s, {owned.dir / "one.log"});
        base = memoryOf({one.get()});
        (void)one->signal(SIGTERM);
        (void)one->waitFor(30s);
    }

    std::string targets;
    for (unsigned n = 1; n <= agents; ++n) {
        char id[40];
        std::snprintf(id, sizeof id, "os::012345-%06u", n);
        targets += std::string(id) + "\n";
    }
    std::ofstream(owned.dir / "targets") << targets;
    std::vector<berth::ChildProcess*> sims;
    std::vector<fs::path> simLogs;
    const auto t0 = Clock::now();
    for (unsigned k = 0; k < processes; ++k) {
        unsigned first = 1 + k * (agents / processes);
        unsigned count = k + 1 == processes ? agents - k * (agents / processes) : agents / processes;
        owned.procs.push_back(spawn(simArgv(count, first, rate / processes, (owned.dir / ("state" + std::to_string(k))).string()),
                                    owned.dir / ("sim" + std::to_string(k) + ".log")));
        sims.push_back(owned.procs.back().get());
        simLogs.push_back(owned.dir / ("sim" + std::to_string(k) + ".log"));
    }
    waitAnswering(broker, owned.dir / "targets", std::chrono::seconds(120 + static_cast<long>(agents / 20)), simLogs);
    const double readySecs = std::chrono::duration<double>(Clock::now() - t0).count();
    std::this_thread::sleep_for(2s);
    Memory before = memoryOf(sims);

    fs::path counted = owned.dir / "counted";
    owned.procs.push_back(spawn({"stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(port), "-q",
                                 "0", "-t", "usp/#", "-F", "%t", "-i", "berth-sim-rollout-bench-counter"},
                                counted));
    {
        auto probe = Clock::now() + 10s;
        while (Clock::now() < probe) {
            berth::SpawnOptions o;
            o.argv = {"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port), "-t", "usp/bench-probe", "-m", "x"};
            (void)berth::runCommand(o, 10s);
            if (lines(counted) > 0) break;
            std::this_thread::sleep_for(50ms);
        }
        if (lines(counted) == 0) die("the counting subscriber did not subscribe");
    }
    const std::size_t countedBefore = lines(counted);

    berth::SpawnOptions o;
    o.argv = {BERTHCTL_BIN,    "fleet",        "--mqtt",    broker,
              "--json",        "--targets",    (owned.dir / "targets").string(),
              "--concurrency", std::to_string(concurrency),
              "--canary",      std::to_string(canary),
              "--max-failures", maxFailures,
              "--journal",     (owned.dir / "rollout.journal").string(),
              "install",       url};
    auto r0 = Clock::now();
    auto r = berth::runCommand(o, 7200s);
    const double wall = std::chrono::duration<double>(Clock::now() - r0).count();
    if (!r) die("cannot run berthctl: " + r.error().describe());
    std::size_t countedAfter = lines(counted);
    for (int stable = 0; stable < 20;) {
        std::this_thread::sleep_for(50ms);
        std::size_t now = lines(counted);
        stable = now == countedAfter ? stable + 1 : 0;
        countedAfter = now;
    }
    std::this_thread::sleep_for(2s);
    Memory after = memoryOf(sims);
    nlohmann::json summary;
    std::istringstream out(r->out);
    std::string line;
    while (std::getline(out, line)) {
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_object() && j.contains("summary")) summary = j["summary"];
    }
    if (summary.is_null()) die("no summary from berthctl: " + r->out + r->err);
    const std::size_t downloads = occurrences(berth::bench::readText(owned.dir / "http.log"), "\"GET /" + archive);
    const double dn = agents;
    const long procBaseRss = static_cast<long>(processes) * base.rss, procBaseAnon = static_cast<long>(processes) * base.anon;

    std::printf("berth-sim-rollout-bench: berthctl fleet install to %u simulated agents (SoftwareModules on the sim\n"
                "  runtime) in %u berth-sim process%s, image %.0f KiB, concurrency %u, canary %u, one mosquitto\n",
                agents, processes, processes == 1 ? "" : "es", archiveKiB, concurrency, canary);
    for (const auto& f : faults) std::printf("  fault                --fault %s\n", f.c_str());
    std::printf("  all answering        %.1f s after the start\n", readySecs);
    std::printf("  exit status          %d (%d succeeded, %d failed, %d not started)\n", r->status.shellCode(),
                summary.value("succeeded", 0), summary.value("failed", 0), summary.value("not_started", 0));
    std::printf("  wall time            %.2f s (berthctl process, connect to summary)\n", wall);
    std::printf("  per agent            p50 %lld ms, p95 %lld ms, max %lld ms\n", summary.value("p50_ms", 0LL),
                summary.value("p95_ms", 0LL), summary.value("max_ms", 0LL));
    std::printf("  berthctl records     %llu sent, %llu received (one MQTT connection)\n",
                summary.value("records_sent", 0ULL), summary.value("records_received", 0ULL));
    std::printf("  broker USP publishes %zu on usp/# (counting subscriber), %.1f per agent\n",
                countedAfter - countedBefore, static_cast<double>(countedAfter - countedBefore) / dn);
    std::printf("  image downloads      %zu (HTTP GETs of the archive)\n", downloads);
    std::printf("  berth-sim memory     VmRSS %.1f KB/agent before, %.1f KB/agent after the rollout "
                "(%ld -> %ld kB; one-agent process %ld kB)\n",
                (before.rss - procBaseRss) / dn, (after.rss - procBaseRss) / dn, before.rss, after.rss, base.rss);
    std::printf("                       RssAnon %.1f KB/agent before, %.1f KB/agent after\n",
                (before.anon - procBaseAnon) / dn, (after.anon - procBaseAnon) / dn);
    std::printf("  mosquitto VmRSS      %ld kB\n", statusKb(mosquitto->pid(), "VmRSS"));
    return r->status.shellCode();
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const Failure& f) {
        std::fprintf(stderr, "berth-sim-rollout-bench: %s\n", f.what());
        return 1;
    }
}
