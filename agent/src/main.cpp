// berthd: the berth USP agent daemon.
#include <linux/close_range.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "berth/agent/agent.h"
#include "berth/agent/codec.h"
#include "berth/agent/local_cli.h"
#include "berth/core/log.h"
#include "berth/core/stop_deadline.h"
#include "berth/core/process.h"
#include "berth/core/sd_notify.h"

#ifndef BERTH_VERSION
#define BERTH_VERSION "0.0.0"
#endif

namespace {

// Exit codes: 0 clean shutdown, 1 runtime failure, 2 bad command line, 3 bad
// configuration (file, database, endpoint ID).
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;
constexpr int kExitConfig = 3;

// obuspa parses with getopt_long_only, so its users may write long options with one
// dash ("-resetfile FILE"); CLI11 wants two. Only obuspa's own long names are touched.
std::vector<std::string> obuspaLongOptionsWithTwoDashes(int argc, char** argv) {
    static const std::set<std::string> kObuspaLong{"help",      "log",    "dbfile",     "verbose",   "meminfo",
                                                   "error",     "prototrace", "command", "authcert", "truststore",
                                                   "resetfile", "interface", "cli",      "register", "plugin"};
    std::vector<std::string> out;
    bool optionsEnded = false;
    for (int i = 0; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--") optionsEnded = true;
        if (!optionsEnded && i > 0 && arg.size() > 2 && arg[0] == '-' && arg[1] != '-') {
            auto eq = arg.find('=');
            if (kObuspaLong.count(arg.substr(1, eq == std::string::npos ? std::string::npos : eq - 1))) arg.insert(0, "-");
        }
        out.push_back(std::move(arg));
    }
    return out;
}

// obuspa's -v levels: 0 off, 1 error, 2 warning, 3 info, 4 debug, 5 trace.
const char* obuspaVerbosity(int v) {
    static const char* kLevels[] = {"off", "error", "warn", "info", "debug", "trace"};
    return kLevels[v];
}

}  // namespace

int main(int argc, char** argv) {
    // obuspa's "-c": the words after "-c get|set|..." are a command for the running berthd
    // (local CLI); the options before it still apply (--cli-socket, --db, --state-dir).
    int cliAt = argc;
    for (int i = 1; i + 1 < argc && cliAt == argc; ++i)
        if ((std::strcmp(argv[i], "-c") == 0 || std::strcmp(argv[i], "--command") == 0) &&
            berth::agent::isLocalCliCommand(argv[i + 1]))
            cliAt = i;
    CLI::App app{"berthd - USP agent for home gateways with OCI software-module management"};
    berth::agent::AgentOptions options;
    std::string logLevel = "info";
    bool syslog = false;
    bool version = false;
    // obuspa's options (see README, "Coming from obuspa").
    int verbosity = -1;
    std::string logDestination;
    bool obuspaMeminfo = false;
    bool obuspaCallstack = false;
    std::string obuspaRegister;
    std::vector<std::string> obuspaPlugins;
    app.add_flag("--version", version, "Print the version and exit");
    app.add_option("-c,--config", options.configFile,
                   "Factory defaults for the data model: one 'Device.Path.Param \"value\"' per line, "
                   "applied when the database is new")
        ->check(CLI::ExistingFile);
    app.add_option("-r,--resetfile", options.configFile, "obuspa's name for --config (factory reset file)")
        ->check(CLI::ExistingFile);
    auto* dbOpt = app.add_option("-d,--db", options.dbFile, "SQLite database holding the persistent data model")
                      ->default_val("/var/lib/berth/berth.db");
    auto* dbFileOpt = app.add_option("-f,--dbfile", options.dbFile, "obuspa's name for --db");
    dbOpt->excludes(dbFileOpt);
    app.add_option("--state-dir", options.stateDir, "Directory for key files and runtime state (default: beside the database)");
    app.add_option("--endpoint-id", options.endpointId, "Override Device.LocalAgent.EndpointID");
    app.add_option("--reboot-command", options.rebootCommand,
                   "Command that Device.Reboot() runs (sh -c) to reboot the device; default: berthd restarts itself");
    auto* levelOpt = app.add_option("--log-level", logLevel, "trace, debug, info, warn, error or off")
                         ->check(CLI::IsMember({"trace", "debug", "info", "warn", "warning", "error", "off"}));
    auto* verboseOpt = app.add_option("-v,--verbose", verbosity,
                                      "obuspa's verbosity: 0 off, 1 error, 2 warning, 3 info, 4 debug, 5 trace")
                           ->check(CLI::Range(0, 5));
    levelOpt->excludes(verboseOpt);
    app.add_flag("--syslog", syslog, "Also log to syslog (daemon facility)");
    app.footer("Local CLI: berthd [--cli-socket PATH] -c COMMAND [ARGS...] runs COMMAND in the running berthd\n" +
               berth::agent::localCliUsage());
    app.add_option("--max-subscriptions-per-controller", options.maxSubscriptionsPerController,
                   "Subscription rows one Controller may be the Recipient of; further Adds get 7005 (0: no limit)")
        ->capture_default_str();
    app.add_option("--max-subscriptions", options.maxSubscriptions,
                   "Subscription rows in total; further Adds get 7005 (0: no limit)")
        ->capture_default_str();
    app.add_option("--notify-queue-messages", options.notifyQueueMessages,
                   "Notifications held per Controller while its MTP cannot take them; the oldest is dropped beyond")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--notify-queue-bytes", options.notifyQueueBytes,
                   "Bytes of notifications held per Controller while its MTP cannot take them")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    double stopTimeout = 4.0;
    app.add_option("--stop-timeout", stopTimeout,
                   "Seconds berthd allows an orderly shutdown after SIGTERM/SIGINT before it exits regardless")
        ->capture_default_str()
        ->check(CLI::Range(0.1, 300.0));
    // Per-controller request bounds (docs/security.md); 0 turns one off.
    auto& bounds = options.bounds;
    app.add_option("--max-paths-per-message", bounds.maxPathsPerMessage,
                   "Distinct paths one Get, GetInstances, GetSupportedDM or Delete may list")
        ->capture_default_str();
    app.add_option("--max-params-per-message", bounds.maxParamsPerMessage,
                   "Objects plus parameters one Set or Add may carry (and input arguments of one Operate)")
        ->capture_default_str();
    app.add_option("--max-response-bytes", bounds.maxResponseBytes,
                   "Largest response record; a larger one is answered with Error 7005 instead")
        ->capture_default_str();
    app.add_option("--inbound-queue-records", bounds.inboundQueueRecords,
                   "Requests of one controller that may wait; more are answered with 7005 at once")
        ->capture_default_str();
    app.add_option("--inbound-queue-bytes", bounds.inboundQueueBytes,
                   "Bytes of requests of one controller that may wait; more are answered with 7005 at once")
        ->capture_default_str();
    app.add_option("--max-async-operations", bounds.maxAsyncOperationsPerController,
                   "Asynchronous commands one controller may have running; more fail with 7005")
        ->capture_default_str();
    app.add_option("-l,--log", logDestination,
                   "Where log lines go: stderr (default), stdout, syslog, or a file (appended to)");
    app.add_flag("-p,--prototrace", options.protocolTrace, "Log every USP message received and sent");
    std::string mqttLibrary = "paho";
    app.add_option("--mqtt-library", mqttLibrary,
                   "MQTT client library of the MQTT MTPs: paho (Eclipse Paho, threads of its own) or mosquitto "
                   "(libmosquitto on berthd's event loop, no extra threads"
#ifndef BERTH_WITH_MOSQUITTO
                   "; not in this build"
#endif
                   ")")
        ->capture_default_str()
        ->check(CLI::IsMember({"paho", "mosquitto"}));
    app.add_option("-i,--interface", options.interface,
                   "Network interface whose MAC address gives the default Device.DeviceInfo.SerialNumber");
    app.add_option("-s,--cli,--cli-socket", options.cliSocketPath,
                   "UNIX socket of the local CLI (default: <state-dir>/berthd.sock; 'none': no local CLI)");
    app.add_option("-a,--authcert", options.authCertFile,
                   "PEM file with the client certificate and key for MTPs whose rows name none")
        ->check(CLI::ExistingFile);
    app.add_option("-t,--truststore", options.trustStore,
                   "PEM file (or, for MQTT, directory) of trusted CAs for MTPs whose rows name none")
        ->check(CLI::ExistingPath);
    app.add_flag("-m,--meminfo", obuspaMeminfo, "obuspa's memory-leak report: not in berth (ignored, with a warning)");
    app.add_flag("-e,--error", obuspaCallstack, "obuspa's callstack on errors: not in berth (ignored, with a warning)");
    app.add_option("-R,--register", obuspaRegister, "obuspa's USP Service mode: not supported (refused)");
    app.add_option("-x,--plugin", obuspaPlugins, "obuspa's vendor plug-ins: not supported (refused)");
    try {
        auto args = obuspaLongOptionsWithTwoDashes(cliAt, argv);
        std::reverse(args.begin(), args.end());
        args.pop_back();  // the program name
        app.parse(args);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return e.get_exit_code() == 0 ? rc : kExitUsage;
    }
    if (version) {
        std::printf("berthd %s\n", BERTH_VERSION);
        return 0;
    }
    if (cliAt < argc) {
        std::string socket = options.cliSocketPath.empty()
                                 ? berth::agent::defaultLocalCliSocket(options.stateDir, options.dbFile)
                                 : options.cliSocketPath;
        return berth::agent::runLocalCli(socket, std::vector<std::string>(argv + cliAt + 1, argv + argc), std::cout,
                                         std::cerr);
    }
    {
        auto library = berth::transports::parseMqttLibrary(mqttLibrary);
        if (!library || !berth::transports::mqttLibraryAvailable(*library)) {
            std::fprintf(stderr, "berthd: --mqtt-library %s: %s\n", mqttLibrary.c_str(),
                         library ? "this build has no libmosquitto binding (BERTH_WITH_MOSQUITTO was off)"
                                 : library.error().message.c_str());
            return kExitUsage;
        }
        options.mqttLibrary = *library;
    }
    // Options that would change what the daemon is: refuse rather than run as something else.
    if (!obuspaRegister.empty()) {
        std::fprintf(stderr, "berthd: -R/--register: berth runs as a USP Agent only, not as a USP Service of another agent\n");
        return kExitUsage;
    }
    if (!obuspaPlugins.empty()) {
        std::fprintf(stderr,
                     "berthd: -x/--plugin: berth loads no vendor plug-ins; its data model is built in (see docs/architecture.md)\n");
        return kExitUsage;
    }

    berth::log::Config logConfig;
    logConfig.level = *berth::log::parseLevel(verbosity >= 0 ? obuspaVerbosity(verbosity) : logLevel);
    logConfig.toSyslog = syslog;
    logConfig.syslogIdent = "berthd";
    // A log file stays open until the process ends (lines may come until the last
    // destructor); O_CLOEXEC keeps it from a restarted berthd, which opens its own.
    std::FILE* logFile = nullptr;
    if (logDestination == "syslog") {
        logConfig.toSyslog = true;
        logConfig.toStderr = false;
    } else if (logDestination == "stdout") {
        logConfig.stream = stdout;
        std::setvbuf(stdout, nullptr, _IOLBF, 0);
    } else if (!logDestination.empty() && logDestination != "stderr") {
        logFile = std::fopen(logDestination.c_str(), "ae");
        if (!logFile) {
            std::fprintf(stderr, "berthd: -l/--log: cannot open %s: %s\n", logDestination.c_str(), std::strerror(errno));
            return kExitUsage;
        }
        std::setvbuf(logFile, nullptr, _IOLBF, 0);
        logConfig.stream = logFile;
    }
    berth::log::configure(logConfig);
    if (obuspaMeminfo)
        BERTH_LOG_WARN("berthd") << "-m/--meminfo ignored: berth collects no memory-leak report of its own "
                                    "(run it under valgrind or a sanitizer build)";
    if (obuspaCallstack)
        BERTH_LOG_WARN("berthd") << "-e/--error ignored: berth prints no callstacks; every error is logged with its "
                                    "cause (use --endpoint-id for the endpoint ID)";

    // Protobuf would print a line to stderr for every record with invalid UTF-8; a peer
    // could flood stderr that way. Route those lines to the log, before threads start.
    berth::agent::routeProtobufLogs();

    // systemd (Type=notify): READY once the agent runs, WATCHDOG from the loop, STOPPING.
    const berth::SdNotifier sd = berth::SdNotifier::fromEnvironment();
    auto sdNotify = [&sd](const std::string& state) {
        if (auto st = sd.notify(state); !st) BERTH_LOG_WARN("berthd") << st.error().describe();
    };

    berth::SystemClock clock;
    berth::EventLoop loop(clock);
    // Block the signals before any thread starts, so every thread inherits the mask and
    // they arrive only through the loop's signalfd.
    bool stopping = false;
    berth::StopDeadline deadline("berthd", kExitRuntime);
    std::unique_ptr<berth::agent::Agent> agent;
    auto signals = loop.watchSignals({SIGTERM, SIGINT}, [&](int sig) {
        if (stopping) {
            BERTH_LOG_WARN("berthd") << "second signal during shutdown: exiting now";
            std::_Exit(kExitRuntime);
        }
        stopping = true;
        sdNotify("STOPPING=1\nSTATUS=stopping");
        deadline.arm(std::chrono::milliseconds(static_cast<long long>(stopTimeout * 1000)));
        BERTH_LOG_INFO("berthd") << "received " << (sig == SIGTERM ? "SIGTERM" : "SIGINT") << ", shutting down";
        if (agent) {
            agent->stop([&] { loop.stop(); });
        } else {
            loop.stop();
        }
    });
    if (!signals) {
        BERTH_LOG_ERROR("berthd") << signals.error().describe();
        return kExitRuntime;
    }
    // Test-only (documented in docs/packaging.md): with BERTH_TEST_WEDGE_SIGNAL=1 in the
    // environment, SIGUSR2 blocks the loop thread for good, so a test can check that the
    // watchdog pings stop when the loop is stuck.
    berth::Result<std::unique_ptr<berth::SignalWatch>> wedge{std::unique_ptr<berth::SignalWatch>()};
    if (const char* w = std::getenv("BERTH_TEST_WEDGE_SIGNAL"); w && std::string_view(w) == "1") {
        wedge = loop.watchSignals({SIGUSR2}, [](int) {
            BERTH_LOG_WARN("berthd") << "SIGUSR2 with BERTH_TEST_WEDGE_SIGNAL=1: wedging the event loop";
            for (;;) ::pause();
        });
    }
    auto reaper = berth::Subreaper::create(loop, [&agent](pid_t pid, berth::ExitStatus st) {
        BERTH_LOG_DEBUG("berthd") << "reaped process " << pid << " (" << st.describe() << ")";
        if (agent) agent->onOrphanReaped(pid, st);
    });
    if (!reaper) BERTH_LOG_WARN("berthd") << "cannot become a subreaper: " << reaper.error().describe();

    auto created = berth::agent::Agent::create(loop, clock, options);
    if (!created) {
        std::fprintf(stderr, "berthd: %s\n", created.error().describe().c_str());
        return kExitConfig;
    }
    agent = std::move(*created);
    if (auto st = agent->start(); !st) {
        std::fprintf(stderr, "berthd: %s\n", st.error().describe().c_str());
        return kExitRuntime;
    }
    BERTH_LOG_INFO("berthd") << "berthd " << BERTH_VERSION << " running as " << agent->endpointId() << " (pid "
                             << ::getpid() << ")";
    sdNotify("READY=1\nSTATUS=running as " + agent->endpointId());
    // Pinged from a loop timer: if the loop wedges, the pings stop and systemd acts.
    std::unique_ptr<berth::Timer> watchdog;
    if (auto interval = sd.watchdogInterval()) {
        watchdog = loop.createTimer([&sdNotify] { sdNotify("WATCHDOG=1"); });
        auto half = std::chrono::duration_cast<std::chrono::milliseconds>(*interval / 2);
        watchdog->start(std::max(half, std::chrono::milliseconds(1)), true);
    }
    loop.run();
    watchdog.reset();
    bool restart = agent->restartRequested();
    agent.reset();
    deadline.disarm();
    if (restart) {
        if (!options.rebootCommand.empty()) {
            BERTH_LOG_INFO("berthd") << "rebooting: " << options.rebootCommand;
            ::execl("/bin/sh", "sh", "-c", options.rebootCommand.c_str(), static_cast<char*>(nullptr));
            BERTH_LOG_ERROR("berthd") << "cannot run the reboot command: " << std::strerror(errno);
            return kExitRuntime;
        }
        BERTH_LOG_INFO("berthd") << "restarting";
        sd.restoreEnvironment();  // the same PID goes on under systemd
        // Nothing of this process may leak into the next one but stdio.
        ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
        ::execv("/proc/self/exe", argv);
        BERTH_LOG_ERROR("berthd") << "cannot restart: " << std::strerror(errno);
        return kExitRuntime;
    }
    BERTH_LOG_INFO("berthd") << "stopped";
    return 0;
}
