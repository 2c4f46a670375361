// berthd: the berth USP agent daemon.
#include <linux/close_range.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "berth/agent/agent.h"
#include "berth/agent/codec.h"
#include "berth/agent/local_cli.h"
#include "berth/core/log.h"
#include "berth/core/stop_deadline.h"
#include "berth/core/process.h"
#include "berth/core/sd_notify.h"
#include "daemon/command_line.h"

#ifndef BERTH_VERSION
#define BERTH_VERSION "0.0.0"
#endif

namespace {

// Exit codes: 0 clean shutdown, 1 runtime failure, 2 bad command line, 3 bad
// configuration (file, database, endpoint ID).
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;
constexpr int kExitConfig = 3;

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
    auto cl = berth::agent::parseDaemonCommandLine(cliAt, argv);
    switch (cl.action) {
    case berth::agent::DaemonCommandLine::Action::kHelp:
        std::fputs(berth::agent::daemonHelp().c_str(), stdout);
        return 0;
    case berth::agent::DaemonCommandLine::Action::kVersion:
        std::printf("berthd %s\n", BERTH_VERSION);
        return 0;
    case berth::agent::DaemonCommandLine::Action::kError:
        std::fprintf(stderr, "%s\nRun with --help for more information.\n", cl.error.c_str());
        return kExitUsage;
    case berth::agent::DaemonCommandLine::Action::kRun: break;
    }
    auto& options = cl.options;
    const double stopTimeout = cl.stopTimeoutSeconds;
    if (cliAt < argc) {
        std::string socket = options.cliSocketPath.empty()
                                 ? berth::agent::defaultLocalCliSocket(options.stateDir, options.dbFile)
                                 : options.cliSocketPath;
        return berth::agent::runLocalCli(socket, std::vector<std::string>(argv + cliAt + 1, argv + argc), std::cout,
                                         std::cerr);
    }
    {
        if (!berth::transports::mqttLibraryAvailable(options.mqttLibrary)) {
            std::fprintf(stderr, "berthd: --mqtt-library %s: %s\n",
                         std::string(berth::transports::mqttLibraryName(options.mqttLibrary)).c_str(),
                         "this build has no libmosquitto binding (BERTH_WITH_MOSQUITTO was off)");
            return kExitUsage;
        }
    }
    // Options that would change what the daemon is: refuse rather than run as something else.
    if (!cl.registerPath.empty()) {
        std::fprintf(stderr, "berthd: -R/--register: berth runs as a USP Agent only, not as a USP Service of another agent\n");
        return kExitUsage;
    }
    if (!cl.plugins.empty()) {
        std::fprintf(stderr,
                     "berthd: -x/--plugin: berth loads no vendor plug-ins; its data model is built in (see docs/architecture.md)\n");
        return kExitUsage;
    }

    berth::log::Config logConfig;
    logConfig.level = *berth::log::parseLevel(cl.verbosity >= 0 ? obuspaVerbosity(cl.verbosity) : cl.logLevel);
    logConfig.toSyslog = cl.syslog;
    logConfig.syslogIdent = "berthd";
    // A log file stays open until the process ends (lines may come until the last
    // destructor); O_CLOEXEC keeps it from a restarted berthd, which opens its own.
    std::FILE* logFile = nullptr;
    if (cl.logDestination == "syslog") {
        logConfig.toSyslog = true;
        logConfig.toStderr = false;
    } else if (cl.logDestination == "stdout") {
        logConfig.stream = stdout;
        std::setvbuf(stdout, nullptr, _IOLBF, 0);
    } else if (!cl.logDestination.empty() && cl.logDestination != "stderr") {
        logFile = std::fopen(cl.logDestination.c_str(), "ae");
        if (!logFile) {
            std::fprintf(stderr, "berthd: -l/--log: cannot open %s: %s\n", cl.logDestination.c_str(), std::strerror(errno));
            return kExitUsage;
        }
        std::setvbuf(logFile, nullptr, _IOLBF, 0);
        logConfig.stream = logFile;
    }
    berth::log::configure(logConfig);
    if (cl.meminfo)
        BERTH_LOG_WARN("berthd") << "-m/--meminfo ignored: berth collects no memory-leak report of its own "
                                    "(run it under valgrind or a sanitizer build)";
    if (cl.callstack)
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
