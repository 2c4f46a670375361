// berth-sim-bench: N simulated agents (berth::sim::Simulator, in memory) in this process
// against a local mosquitto started on a free port, and a controller on the same broker.
// Prints memory per agent (VmRSS and RssAnon deltas), time for all to connect,
// aggregate Gets/s and latency percentiles with all connected, and the time to stop.
//
//   berth-sim-bench --agents 1000,10000 [--connect-rate 500] [--gets-seconds 10] [--in-flight 32]
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "berth/bench/support.h"
#include "berth/core/fd.h"
#include "berth/core/log.h"
#include "berth/core/process.h"
#include "berth/sim/sim_controller.h"
#include "berth/sim/simulator.h"

using namespace berth;
using Steady = std::chrono::steady_clock;

namespace {

long statusKb(pid_t pid, const std::string& name) {
    std::istringstream in(bench::readText("/proc/" + (pid ? std::to_string(pid) : std::string("self")) + "/status"));
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(name + ":", 0) == 0) return std::stol(line.substr(name.size() + 1));
    return -1;
}

double secondsSince(Steady::time_point t) { return std::chrono::duration<double>(Steady::now() - t).count(); }

struct Broker {
    explicit Broker(const std::filesystem::path& dir) {
        port = bench::freeLoopbackPort();
        std::filesystem::permissions(dir, std::filesystem::perms::all);
        // No per-client limits: 10,000 clients on one listener, nothing persisted.
        std::ofstream(dir / "mosquitto.conf") << "persistence false\nallow_anonymous true\nlog_dest none\n"
                                              << "max_connections -1\nmax_queued_messages 10000\n"
                                              << "set_tcp_nodelay true\nlistener " << port << " 127.0.0.1\n";
        SpawnOptions so;
        so.argv = {"mosquitto", "-c", (dir / "mosquitto.conf").string()};
        auto c = ChildProcess::spawn(so);
        if (!c) throw std::runtime_error("cannot start mosquitto: " + c.error().describe());
        proc = std::move(*c);
        auto deadline = Steady::now() + std::chrono::seconds(10);
        while (!bench::loopbackPortOpen(port) && Steady::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        if (!bench::loopbackPortOpen(port)) throw std::runtime_error("mosquitto did not start");
    }
    ~Broker() {
        if (proc && proc->running()) {
            (void)proc->signal(SIGTERM);
            if (!proc->waitFor(std::chrono::seconds(10))) (void)proc->signal(SIGKILL);
        }
    }
    int port = 0;
    std::unique_ptr<ChildProcess> proc;
};

struct Figures {
    std::uint64_t agents = 0;
    double startSecs = 0, connectSecs = 0, bootSecs = 0;
    std::size_t connected = 0, booted = 0;
    long rssBase = 0, rssAll = 0, anonBase = 0, anonAll = 0, threads = 0, brokerRss = 0;
    double getsPerSec = 0, p50 = 0, p99 = 0, pmax = 0;
    std::size_t gets = 0, wrong = 0, errors = 0, unanswered = 0;
    double stopSecs = 0;
    std::size_t disconnects = 0;
};

Figures runOnce(std::uint64_t n, double rate, double getsSeconds, std::size_t inFlight, unsigned processes,
                transports::MqttLibrary library) {
    Figures fig;
    fig.agents = n;
    char templ[] = "/tmp/berth-sim-bench-XXXXXX";
    if (!::mkdtemp(templ)) throw std::runtime_error("mkdtemp failed");
    std::filesystem::path dir = templ;
    struct Cleanup {
        std::filesystem::path d;
        ~Cleanup() {
            std::error_code ec;
            std::filesystem::remove_all(d, ec);
        }
    } cleanup{dir};
    Broker broker(dir);

    SystemClock clock;
    EventLoop loop(clock);
    sim::SimController ctl(loop, "127.0.0.1", broker.port);
    fig.rssBase = statusKb(0, "VmRSS");
    fig.anonBase = statusKb(0, "RssAnon");

    // --processes K > 1: K berth-sim processes with disjoint agent ranges instead of
    // agents in this process; their memory is the sum over the processes.
    std::vector<std::unique_ptr<ChildProcess>> children;
    long childBaseRss = 0, childBaseAnon = 0;
    if (processes > 1) {
        for (unsigned k = 0; k < processes; ++k) {
            std::uint64_t first = 1 + k * (n / processes);
            std::uint64_t count = k + 1 == processes ? n - k * (n / processes) : n / processes;
            SpawnOptions so;
            so.argv = {BERTH_SIM_BIN, "--agents", std::to_string(count), "--first", std::to_string(first),
                       "--mqtt", "127.0.0.1:" + std::to_string(broker.port), "--connect-rate",
                       std::to_string(rate / processes), "--log-level", "error", "--mqtt-library",
                       std::string(transports::mqttLibraryName(library)),
                       "--state-dir", (dir / ("state" + std::to_string(k))).string()};
            UniqueFd log(::open((dir.parent_path() / ("berth-sim-bench-child" + std::to_string(k) + ".log")).c_str(),
                                O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
            so.stdoutFd = log.get();
            so.stderrFd = log.get();
            auto c = ChildProcess::spawn(so);
            if (!c) throw std::runtime_error("cannot start berth-sim: " + c.error().describe());
            children.push_back(std::move(*c));
        }
        // What one berth-sim process costs before its agents: from a 1-agent run.
        SpawnOptions so;
        so.argv = {BERTH_SIM_BIN, "--agents", "1", "--first", std::to_string(n + 1), "--mqtt",
                   "127.0.0.1:" + std::to_string(broker.port), "--log-level", "error", "--state-dir",
                   (dir / "state-base").string()};
        auto base = ChildProcess::spawn(so);
        if (!base) throw std::runtime_error("cannot start berth-sim: " + base.error().describe());
        ctl.runUntil([&] { return ctl.connects.count(sim::expandTemplate("os::012345-%06d", n + 1)) != 0; },
                     std::chrono::seconds(60));
        childBaseRss = statusKb((*base)->pid(), "VmRSS");
        childBaseAnon = statusKb((*base)->pid(), "RssAnon");
        (void)(*base)->signal(SIGTERM);
        (void)(*base)->waitFor(std::chrono::seconds(10));
        ctl.connects.erase(sim::expandTemplate("os::012345-%06d", n + 1));
        ctl.boots.erase(sim::expandTemplate("os::012345-%06d", n + 1));
        ctl.disconnects.erase(sim::expandTemplate("os::012345-%06d", n + 1));
    }
    std::atomic<bool> allStarted{false};
    std::atomic<double> startSecs{0};
    std::atomic<bool> simReady{false};
    std::atomic<bool> stopped{false};
    EventLoop* simLoop = nullptr;
    sim::Simulator* simPtr = nullptr;
    std::string simError;
    const auto t0 = Steady::now();
    std::thread simThread([&] {
        if (processes > 1) {
            simReady = true;
            stopped = true;
            return;
        }
        SystemClock c;
        EventLoop l(c);
        sim::SimOptions o;
        o.agents = n;
        o.brokerPort = broker.port;
        o.connectRate = rate;
        o.stateRoot = (dir / "state").string();
        o.mqttLibrary = library;
        auto s = sim::Simulator::create(l, c, o);
        if (!s) {
            simError = s.error().describe();
            simReady = true;
            return;
        }
        simLoop = &l;
        simPtr = s->get();
        simReady = true;
        (*s)->start([&] {
            startSecs = secondsSince(t0);
            allStarted = true;
        });
        l.run();
        s->reset();
        stopped = true;
    });
    while (!simReady) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!simError.empty()) {
        simThread.join();
        throw std::runtime_error(simError);
    }

    const auto connectTimeout = std::chrono::milliseconds(static_cast<long long>((n / rate + 120) * 1000));
    {
        auto last = Steady::now();
        ctl.runUntil(
            [&] {
                if (secondsSince(last) >= 10) {
                    last = Steady::now();
                    std::fprintf(stderr, "  %.0f s: %zu connected\n", secondsSince(t0), ctl.connects.size());
                    for (auto& c : children)
                        if (auto st = c->poll())
                            throw std::runtime_error("berth-sim " + std::to_string(c->pid()) + " ended: " +
                                                     st->describe());
                }
                return ctl.connects.size() >= n;
            },
            connectTimeout);
    }
    fig.connectSecs = secondsSince(t0);
    fig.connected = ctl.connects.size();
    ctl.runUntil([&] { return ctl.boots.size() >= n; }, std::chrono::seconds(60));
    fig.bootSecs = secondsSince(t0);
    fig.booted = ctl.boots.size();
    fig.startSecs = startSecs;
    // A moment for what arrived late to settle before memory is read.
    ctl.runUntil([] { return false; }, std::chrono::seconds(3));
    fig.rssAll = statusKb(0, "VmRSS");
    fig.anonAll = statusKb(0, "RssAnon");
    fig.threads = statusKb(0, "Threads");
    if (processes > 1) {
        fig.rssAll = fig.rssBase - static_cast<long>(processes) * childBaseRss;
        fig.anonAll = fig.anonBase - static_cast<long>(processes) * childBaseAnon;
        fig.threads = 0;
        for (auto& c : children) {
            fig.rssAll += statusKb(c->pid(), "VmRSS");
            fig.anonAll += statusKb(c->pid(), "RssAnon");
            fig.threads += statusKb(c->pid(), "Threads");
        }
    }
    fig.brokerRss = statusKb(broker.proc->pid(), "VmRSS");

    // Gets to random agents, inFlight at a time, for getsSeconds.
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<std::uint64_t> pick(1, n);
    std::vector<double> rtts;
    rtts.reserve(200000);
    std::size_t inAir = 0;
    const auto gEnd = Steady::now() + std::chrono::milliseconds(static_cast<long long>(getsSeconds * 1000));
    const auto gStart = Steady::now();
    auto sendOne = [&]() -> bool {
        std::uint64_t k = pick(rng);
        std::string expect = sim::expandTemplate("SIM%06d", k);
        bool ok = ctl.get(sim::expandTemplate("os::012345-%06d", k), {"Device.DeviceInfo.SerialNumber"},
                          [&, expect](const sim::SimController::Answer& a) {
                              --inAir;
                              ++fig.gets;
                              rtts.push_back(a.rttMs);
                              if (a.record.kind != agent::DecodeKind::kResponse) {
                                  ++fig.errors;
                                  return;
                              }
                              const auto& r = a.record.msg.body().response().get_resp();
                              bool right = r.req_path_results_size() == 1 &&
                                           r.req_path_results(0).resolved_path_results_size() == 1 &&
                                           r.req_path_results(0).resolved_path_results(0).result_params().count(
                                               "SerialNumber") &&
                                           r.req_path_results(0).resolved_path_results(0).result_params().at(
                                               "SerialNumber") == expect;
                              if (!right) ++fig.wrong;
                          });
        if (ok) ++inAir;
        return ok;
    };
    while (Steady::now() < gEnd) {
        while (inAir < inFlight && sendOne()) {
        }
        loop.runOnce(std::chrono::milliseconds(5));
    }
    double gSecs = secondsSince(gStart);
    ctl.runUntil([&] { return inAir == 0; }, std::chrono::seconds(10));
    fig.unanswered = inAir;
    ctl.forgetPending();
    fig.getsPerSec = static_cast<double>(fig.gets) / gSecs;
    fig.p50 = bench::percentile(rtts, 0.50);
    fig.p99 = bench::percentile(rtts, 0.99);
    fig.pmax = bench::percentile(rtts, 1.0);

    const auto s0 = Steady::now();
    if (processes > 1) {
        for (auto& c : children) (void)c->signal(SIGTERM);
        for (auto& c : children)
            while (!c->poll()) loop.runOnce(std::chrono::milliseconds(10));
    } else {
        simLoop->post([&] { simPtr->stop([&] { simLoop->stop(); }); });
        while (!stopped) loop.runOnce(std::chrono::milliseconds(10));
    }
    simThread.join();
    fig.stopSecs = secondsSince(s0);
    ctl.runUntil([&] { return ctl.disconnects.size() >= n; }, std::chrono::seconds(10));
    fig.disconnects = ctl.disconnects.size();
    return fig;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"berth-sim-bench - memory, connect time and Get throughput of N simulated agents in one process"};
    std::vector<std::uint64_t> counts{1000};
    double rate = 500;
    double getsSeconds = 10;
    std::size_t inFlight = 32;
    unsigned processes = 1;
    app.add_option("--agents", counts, "Agent counts to measure, e.g. 1000,10000")->delimiter(',')->capture_default_str();
    app.add_option("--connect-rate", rate, "Agents started per second")->capture_default_str();
    app.add_option("--gets-seconds", getsSeconds, "How long the Get load runs")->capture_default_str();
    app.add_option("--in-flight", inFlight, "Gets the controller keeps outstanding")->capture_default_str();
    app.add_option("--processes", processes,
                   "Spread the agents over this many berth-sim processes (1: all in this process)")
        ->capture_default_str()
        ->check(CLI::Range(1, 64));
    std::string libraryName(transports::mqttLibraryName(sim::SimOptions().mqttLibrary));
    app.add_option("--mqtt-library", libraryName, "MQTT library of the simulated agents: mosquitto or paho")
        ->capture_default_str()
        ->check(CLI::IsMember({"paho", "mosquitto"}));
    CLI11_PARSE(app, argc, argv);
    auto library = transports::parseMqttLibrary(libraryName);
    if (!library || !transports::mqttLibraryAvailable(*library)) {
        std::printf("berth-sim-bench: --mqtt-library %s: not in this build\n", libraryName.c_str());
        return 2;
    }

    berth::log::Config lc;
    lc.level = berth::log::Level::kError;
    berth::log::configure(lc);
    // One descriptor per agent here and one per client in the broker, which is
    // started from here and inherits the limit: raise the hard limit where allowed
    // (CAP_SYS_RESOURCE), else the soft one to the hard one.
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        const std::uint64_t most = counts.empty() ? 0 : *std::max_element(counts.begin(), counts.end());
        const rlim_t want = static_cast<rlim_t>(most + 1024);
        rlimit raised = lim;
        if (raised.rlim_max != RLIM_INFINITY && raised.rlim_max < want) raised.rlim_max = want;
        raised.rlim_cur = raised.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) {
            lim.rlim_cur = lim.rlim_max;
            (void)::setrlimit(RLIMIT_NOFILE, &lim);
        }
        (void)::getrlimit(RLIMIT_NOFILE, &lim);
    }
    std::printf("berth-sim-bench: %u cores, open-file limit %llu, connect rate %.0f/s, %zu Gets in flight, "
                "agents on %s\n",
                std::thread::hardware_concurrency(), static_cast<unsigned long long>(lim.rlim_cur), rate, inFlight,
                libraryName.c_str());
    for (auto n : counts) {
        Figures f;
        try {
            f = runOnce(n, rate, getsSeconds, inFlight, processes, *library);
        } catch (const std::exception& e) {
            std::printf("N=%llu: failed: %s\n", static_cast<unsigned long long>(n), e.what());
            return 1;
        }
        const double dn = static_cast<double>(n);
        std::printf("\nN = %llu agents in %s\n", static_cast<unsigned long long>(n),
                    processes > 1 ? (std::to_string(processes) + " berth-sim processes").c_str() : "this process");
        std::printf("  started                %8.1f s\n", f.startSecs);
        std::printf("  all connected          %8.1f s   (%zu/%llu MQTTConnect records seen by the controller)\n",
                    f.connectSecs, f.connected, static_cast<unsigned long long>(n));
        std::printf("  all Boot! received     %8.1f s   (%zu)\n", f.bootSecs, f.booted);
        std::printf("  VmRSS per agent        %8.1f KB  (%ld -> %ld kB)\n", (f.rssAll - f.rssBase) / dn, f.rssBase,
                    f.rssAll);
        std::printf("  RssAnon per agent      %8.1f KB  (%ld -> %ld kB)\n", (f.anonAll - f.anonBase) / dn, f.anonBase,
                    f.anonAll);
        std::printf("  threads                %8ld\n", f.threads);
        std::printf("  mosquitto VmRSS        %8ld kB\n", f.brokerRss);
        std::printf("  Gets/s (random agents) %8.0f     (%zu answered, %zu errors, %zu wrong values, %zu unanswered)\n",
                    f.getsPerSec, f.gets, f.errors, f.wrong, f.unanswered);
        std::printf("  Get latency            p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", f.p50, f.p99, f.pmax);
        std::printf("  stop (Disconnect all)  %8.1f s   (%zu Disconnect records)\n", f.stopSecs, f.disconnects);
        std::fflush(stdout);
    }
    return 0;
}
