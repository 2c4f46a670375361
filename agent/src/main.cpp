// berthd: the berth USP agent daemon.
#include <signal.h>
#include <linux/close_range.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "berth/agent/agent.h"
#include "berth/agent/codec.h"
#include "berth/core/log.h"
#include "berth/core/process.h"

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
    app.add_option("-l,--log", logDestination,
                   "Where log lines go: stderr (default), stdout, syslog, or a file (appended to)");
    app.add_flag("-p,--prototrace", options.protocolTrace, "Log every USP message received and sent");
    app.add_option("-i,--interface", options.interface,
                   "Network interface whose MAC address gives the default Device.DeviceInfo.SerialNumber");
    app.add_option("-s,--cli", options.cliSocketPath, "UNIX socket of the local CLI (default: <state dir>/berthd.sock)");
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
        auto args = obuspaLongOptionsWithTwoDashes(argc, argv);
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

    berth::SystemClock clock;
    berth::EventLoop loop(clock);
    // Block the signals before any thread starts, so every thread inherits the mask and
    // they arrive only through the loop's signalfd.
    bool stopping = false;
    std::unique_ptr<berth::agent::Agent> agent;
    auto signals = loop.watchSignals({SIGTERM, SIGINT}, [&](int sig) {
        if (stopping) return;
        stopping = true;
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
    loop.run();
    bool restart = agent->restartRequested();
    agent.reset();
    if (restart) {
        if (!options.rebootCommand.empty()) {
            BERTH_LOG_INFO("berthd") << "rebooting: " << options.rebootCommand;
            ::execl("/bin/sh", "sh", "-c", options.rebootCommand.c_str(), static_cast<char*>(nullptr));
            BERTH_LOG_ERROR("berthd") << "cannot run the reboot command: " << std::strerror(errno);
            return kExitRuntime;
        }
        BERTH_LOG_INFO("berthd") << "restarting";
        // Nothing of this process may leak into the next one but stdio.
        ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
        ::execv("/proc/self/exe", argv);
        BERTH_LOG_ERROR("berthd") << "cannot restart: " << std::strerror(errno);
        return kExitRuntime;
    }
    BERTH_LOG_INFO("berthd") << "stopped";
    return 0;
}
