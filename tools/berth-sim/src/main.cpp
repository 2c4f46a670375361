// berth-sim: many simulated gateways, each a complete berth agent, in one process.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>

#include "berth/agent/codec.h"
#include "berth/core/log.h"
#include "berth/core/stop_deadline.h"
#include "berth/sim/simulator.h"

#ifndef BERTH_VERSION
#define BERTH_VERSION "0.0.0"
#endif

namespace {

constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;
constexpr int kExitConfig = 3;

// HOST:PORT or [IPv6]:PORT.
bool splitHostPort(const std::string& s, std::string& host, int& port) {
    auto colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) return false;
    host = s.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    char* end = nullptr;
    long p = std::strtol(s.c_str() + colon + 1, &end, 10);
    if (*end != '\0' || p <= 0 || p > 65535) return false;
    port = static_cast<int>(p);
    return true;
}

long statusKb(const char* field) {
    std::FILE* f = std::fopen("/proc/self/status", "re");
    if (!f) return -1;
    char line[256];
    long v = -1;
    const std::size_t len = std::strlen(field);
    while (std::fgets(line, sizeof line, f))
        if (std::strncmp(line, field, len) == 0 && line[len] == ':') v = std::strtol(line + len + 1, nullptr, 10);
    std::fclose(f);
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"berth-sim - many simulated gateways, each a complete berth USP agent, in one process"};
    berth::sim::SimOptions o;
    std::string mqtt;
    std::string logLevel = "warn";
    bool inMemory = false;
    bool printConfig = false;
    bool version = false;
    double statsInterval = 0;
    double stopTimeout = 30;
    std::vector<std::string> faults;
    app.add_flag("--version", version, "Print the version and exit");
    app.add_option("--agents", o.agents, "How many agents to run")->check(CLI::Range(1, 1000000));
    app.add_option("--mqtt", mqtt, "The MQTT broker, HOST:PORT (overrides the configuration's Device.MQTT.Client.1.)");
    app.add_option("--config", o.configFile,
                   "Factory defaults of every agent (obuspa format, like berthd --config); default: the built-in "
                   "one (--print-config). Per-agent values are set over it: EndpointID, SerialNumber, "
                   "MQTT.Client.1 broker and ClientID, MTP.1 ResponseTopicConfigured")
        ->check(CLI::ExistingFile);
    app.add_option("--endpoint-template", o.endpointTemplate,
                   "EndpointID of agent n: one %d conversion, e.g. os::012345-%06d")
        ->capture_default_str();
    app.add_option("--serial-template", o.serialTemplate, "Device.DeviceInfo.SerialNumber of agent n")
        ->capture_default_str();
    app.add_option("--first", o.firstIndex, "n of the first agent (the others follow)")->capture_default_str();
    auto* dbDir = app.add_option("--db-dir", o.dbDir,
                                 "Persist each agent in SQLite files below this directory (DIR/agent-NNNNNN/); "
                                 "a second run with the same directory finds the agents as they were");
    auto* mem = app.add_flag("--in-memory", inMemory, "Keep every data model in memory (the default)");
    dbDir->excludes(mem);
    app.add_option("--state-dir", o.stateRoot,
                   "In-memory mode: where the small per-agent state files go (Boot! cause); default: a "
                   "temporary directory removed at exit");
    app.add_option("--connect-rate", o.connectRate, "Agents started (and connecting) per second at most")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_flag("--software-modules", o.softwareModules,
                 "Give every agent the Device.SoftwareModules of berthd on the sim runtime (no runc, no processes): "
                 "InstallDU() downloads and verifies each image once into one store for all agents "
                 "(DIR/images); ExecEnv.1 'apps' is added to the built-in configuration (off by default)");
    std::string euStart = "40ms", euStop = "20ms";
    std::uint64_t euMemoryKiB = o.eu.memoryBytes / 1024;
    app.add_option("--eu-start-time", euStart, "How long a simulated execution unit takes to start")
        ->capture_default_str();
    app.add_option("--eu-stop-time", euStop,
                   "How long one takes to stop after SIGTERM (over its ShutdownDelay: killed)")
        ->capture_default_str();
    app.add_option("--eu-memory-kib", euMemoryKiB,
                   "Typical MemoryInUse of a simulated execution unit (each differs by up to a quarter)")
        ->capture_default_str()
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{64} << 20));
    app.add_option("--worker-threads", o.workerThreads, "Threads of the worker pool all agents share")
        ->capture_default_str()
        ->check(CLI::Range(1, 64));
    app.add_option("--fault", faults,
                   "KIND:WHO:WHEN, repeatable. KIND drop|reboot|download-fail|download-slow|install-fail; WHO "
                   "10% or agent numbers 3 | 1-5 | 2,7; WHEN at=30s | every=2m (random times, that mean apart) "
                   "for drop and reboot, rate=10% of the agent's downloads for the others (with --software-modules), "
                   "download-slow also delay=45s (default 30s)");
    app.add_option("--seed", o.seed, "Seed for the fault plan (which agents, when)")->capture_default_str();
    app.add_option("--stats-interval", statsInterval, "Print a status line to stderr every this many seconds (0: no)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--stop-timeout", stopTimeout, "Seconds allowed for the orderly stop after SIGTERM/SIGINT")
        ->capture_default_str()
        ->check(CLI::Range(0.1, 600.0));
    app.add_option("--log-level", logLevel, "trace, debug, info, warn, error or off")
        ->capture_default_str()
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "warning", "error", "off"}));
    app.add_flag("-p,--prototrace", o.protocolTrace, "Log every USP message of every agent");
    std::string mqttLibrary(berth::transports::mqttLibraryName(o.mqttLibrary));
    app.add_option("--mqtt-library", mqttLibrary,
                   "MQTT client library of the agents: mosquitto (libmosquitto on the event loop, no threads; "
                   "the default when built) or paho (its shared threads do not scale to thousands of agents)")
        ->capture_default_str()
        ->check(CLI::IsMember({"paho", "mosquitto"}));
    app.add_flag("--print-config", printConfig, "Print the built-in factory defaults and exit");
    app.footer(
        "Every agent n (n = --first .. --first+agents-1) answers on usp/agent/<EndpointID> and sends to the "
        "controller topics of its configuration (built-in: self::berthctl on usp/controller/berthctl, with a "
        "Boot! subscription). Prints 'berth-sim: N agents started' on stdout when the last one started; "
        "SIGTERM or SIGINT stops them all (Disconnect records). See docs/fleet.md.");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return e.get_exit_code() == 0 ? rc : kExitUsage;
    }
    if (version) {
        std::printf("berth-sim %s\n", BERTH_VERSION);
        return 0;
    }
    if (printConfig) {
        std::fputs(berth::sim::builtinConfig().c_str(), stdout);
        return 0;
    }
    if (mqtt.empty() || app.count("--agents") == 0) {
        std::fprintf(stderr, "berth-sim: --agents N and --mqtt HOST:PORT are required (see --help)\n");
        return kExitUsage;
    }
    if (!splitHostPort(mqtt, o.brokerHost, o.brokerPort)) {
        std::fprintf(stderr, "berth-sim: --mqtt '%s': expected HOST:PORT\n", mqtt.c_str());
        return kExitUsage;
    }
    for (auto [text, field] : {std::pair{&euStart, &o.eu.startTime}, std::pair{&euStop, &o.eu.stopTime}}) {
        auto d = berth::sim::parseDuration(*text);
        if (!d) {
            std::fprintf(stderr, "berth-sim: --eu-%s-time: %s\n", field == &o.eu.startTime ? "start" : "stop",
                         d.error().describe().c_str());
            return kExitUsage;
        }
        *field = *d;
    }
    o.eu.memoryBytes = euMemoryKiB * 1024;
    if (auto library = berth::transports::parseMqttLibrary(mqttLibrary);
        library && berth::transports::mqttLibraryAvailable(*library)) {
        o.mqttLibrary = *library;
    } else {
        std::fprintf(stderr, "berth-sim: --mqtt-library %s: not in this build\n", mqttLibrary.c_str());
        return kExitUsage;
    }
    for (const auto& f : faults) {
        auto spec = berth::sim::parseFault(f);
        if (!spec) {
            std::fprintf(stderr, "berth-sim: %s\n", spec.error().describe().c_str());
            return kExitUsage;
        }
        o.faults.push_back(std::move(*spec));
    }

    berth::log::Config logConfig;
    logConfig.level = *berth::log::parseLevel(logLevel);
    berth::log::configure(logConfig);
    berth::agent::routeProtobufLogs();

    // One socket per agent (and, persisted, a few SQLite files): the limit on open
    // files is raised to what that needs (the hard limit too, where the process may),
    // else to the hard one.
    const std::uint64_t perAgent = (o.dbDir.empty() ? 1 : 4) + (o.softwareModules ? 3 : 0);  // smm.db
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        const rlim_t want = static_cast<rlim_t>(o.agents * perAgent + 256);
        rlimit raised = lim;
        if (raised.rlim_max != RLIM_INFINITY && raised.rlim_max < want) raised.rlim_max = want;
        raised.rlim_cur = std::max<rlim_t>(raised.rlim_cur, std::min<rlim_t>(want, raised.rlim_max));
        if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) {
            lim.rlim_cur = lim.rlim_max;  // not allowed to raise the hard limit
            (void)::setrlimit(RLIMIT_NOFILE, &lim);
        }
    }
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY &&
        o.agents * perAgent + 64 > lim.rlim_cur)
        BERTH_LOG_WARN("berth-sim") << o.agents << " agents need about " << o.agents * perAgent + 64
                                    << " open files; the limit is " << lim.rlim_cur
                                    << (o.dbDir.empty() ? "" : " (--in-memory needs a quarter of that)");

    std::filesystem::path tempState;
    if (o.dbDir.empty() && o.stateRoot.empty()) {
        char templ[] = "/tmp/berth-sim-XXXXXX";
        if (!::mkdtemp(templ)) {
            std::fprintf(stderr, "berth-sim: cannot make a temporary directory: %s\n", std::strerror(errno));
            return kExitRuntime;
        }
        tempState = templ;
        o.stateRoot = tempState.string();
    }
    auto cleanup = [&tempState] {
        std::error_code ec;
        if (!tempState.empty()) std::filesystem::remove_all(tempState, ec);
    };

    berth::SystemClock clock;
    berth::EventLoop loop(clock);
    std::unique_ptr<berth::sim::Simulator> sim;
    bool stopping = false;
    berth::StopDeadline deadline("berth-sim", kExitRuntime);
    auto signals = loop.watchSignals({SIGTERM, SIGINT}, [&](int) {
        if (stopping) {
            BERTH_LOG_WARN("berth-sim") << "second signal during shutdown: exiting now";
            std::_Exit(kExitRuntime);
        }
        stopping = true;
        deadline.arm(std::chrono::milliseconds(static_cast<long long>(stopTimeout * 1000)));
        if (sim)
            sim->stop([&loop] { loop.stop(); });
        else
            loop.stop();
    });
    if (!signals) {
        std::fprintf(stderr, "berth-sim: %s\n", signals.error().describe().c_str());
        cleanup();
        return kExitRuntime;
    }
    const std::uint64_t agents = o.agents;
    auto created = berth::sim::Simulator::create(loop, clock, std::move(o));
    if (!created) {
        std::fprintf(stderr, "berth-sim: %s\n", created.error().describe().c_str());
        cleanup();
        return created.error().code == berth::ErrorCode::kInvalidArguments ? kExitUsage : kExitConfig;
    }
    sim = std::move(*created);
    const auto t0 = std::chrono::steady_clock::now();
    sim->start([&] {
        auto st = sim->stats();
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("berth-sim: %llu agents started (%llu failed) in %.1f s\n",
                    static_cast<unsigned long long>(st.started), static_cast<unsigned long long>(st.failed), secs);
        std::fflush(stdout);
    });
    std::unique_ptr<berth::Timer> statsTimer;
    if (statsInterval > 0) {
        statsTimer = loop.createTimer([&] {
            auto st = sim->stats();
            std::fprintf(stderr,
                         "berth-sim: %llu/%llu running, %llu failed, %llu drops, %llu reboots, %llu remote restarts, "
                         "%llu images installed, %llu EUs running, %llu pulls (%llu downloads), VmRSS %ld kB\n",
                         static_cast<unsigned long long>(st.running), static_cast<unsigned long long>(agents),
                         static_cast<unsigned long long>(st.failed), static_cast<unsigned long long>(st.drops),
                         static_cast<unsigned long long>(st.reboots),
                         static_cast<unsigned long long>(st.remoteRestarts),
                         static_cast<unsigned long long>(st.installedImages),
                         static_cast<unsigned long long>(st.runningUnits),
                         static_cast<unsigned long long>(st.store.pulls),
                         static_cast<unsigned long long>(st.store.downloads), statusKb("VmRSS"));
        });
        statsTimer->start(std::chrono::milliseconds(static_cast<long long>(statsInterval * 1000)), true);
    }
    loop.run();
    statsTimer.reset();
    sim.reset();
    deadline.disarm();
    cleanup();
    std::printf("berth-sim: stopped\n");
    return 0;
}
