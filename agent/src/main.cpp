// berthd: the berth USP agent daemon.
#include <signal.h>
#include <linux/close_range.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>

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

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"berthd - USP agent for home gateways with OCI software-module management"};
    berth::agent::AgentOptions options;
    std::string logLevel = "info";
    bool syslog = false;
    bool version = false;
    app.add_flag("--version", version, "Print the version and exit");
    app.add_option("-c,--config", options.configFile,
                   "Factory defaults for the data model: one 'Device.Path.Param \"value\"' per line, "
                   "applied when the database is new")
        ->check(CLI::ExistingFile);
    app.add_option("-d,--db", options.dbFile, "SQLite database holding the persistent data model")
        ->default_val("/var/lib/berth/berth.db");
    app.add_option("--state-dir", options.stateDir, "Directory for key files and runtime state (default: beside the database)");
    app.add_option("-e,--endpoint-id", options.endpointId, "Override Device.LocalAgent.EndpointID");
    app.add_option("--reboot-command", options.rebootCommand,
                   "Command that Device.Reboot() runs (sh -c) to reboot the device; default: berthd restarts itself");
    app.add_option("-l,--log-level", logLevel, "trace, debug, info, warn, error or off")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "warning", "error", "off"}));
    app.add_flag("--syslog", syslog, "Also log to syslog (daemon facility)");
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
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return e.get_exit_code() == 0 ? rc : kExitUsage;
    }
    if (version) {
        std::printf("berthd %s\n", BERTH_VERSION);
        return 0;
    }

    berth::log::Config logConfig;
    logConfig.level = *berth::log::parseLevel(logLevel);
    logConfig.toSyslog = syslog;
    logConfig.syslogIdent = "berthd";
    berth::log::configure(logConfig);

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
