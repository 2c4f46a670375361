#pragma once
// Agent: one USP agent, composed of its data model, MTP bindings, message handlers,
// subscriptions and (when built in) software-module management. It holds no global
// state, so several agents can live in one process (the simulator runs many).
//
// Threading: create, start and stop on the loop thread; everything the agent owns runs
// on that loop.

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/process.h"
#include "berth/core/result.h"
#include "berth/transports/mqtt.h"

namespace berth {
class WorkerPool;
}
namespace berth::smm {
struct SmmOptions;
}

namespace berth::agent {

// What one controller can make the agent spend (docs/security.md, "Controller
// requests"). A request over a limit is answered with an Error 7005 Resources Exceeded
// and changes nothing. 0 turns a limit off.
struct RequestBounds {
    std::size_t maxPathsPerMessage = 256;    // Get, GetInstances, GetSupportedDM, Delete (distinct paths)
    std::size_t maxParamsPerMessage = 1024;  // objects + parameters of a Set/Add; Operate input args
    // Encoded size of a response: Get, GetInstances and GetSupportedDM stop building as
    // soon as they pass it; any other response over it is replaced by the Error.
    std::size_t maxResponseBytes = std::size_t{1} << 20;
    // Requests of one controller (by from_id) waiting to be processed; beyond either
    // bound a request is refused: the first with a 7005 at once, the next ones dropped
    // until the queue is below half full. All controllers together may queue 8 times these.
    std::size_t inboundQueueRecords = 64;
    std::size_t inboundQueueBytes = std::size_t{4} << 20;
    // Asynchronous commands (Device.LocalAgent.Request.{i}.) one controller may have
    // running; beyond it Operate reports a 7005 cmd_failure for the command.
    std::size_t maxAsyncOperationsPerController = 8;
};

struct AgentOptions {
    RequestBounds bounds;
    std::string configFile;   // factory defaults, obuspa format; empty: built-in defaults only
    std::string dbFile;       // SQLite database; created when missing
    std::string endpointId;   // overrides Device.LocalAgent.EndpointID when set
    std::string stateDir;     // where berth keeps key files and runtime state; default: beside dbFile
    // Device.Reboot(): a command that reboots the device (run with sh -c). Empty: the
    // agent restarts itself (berthd re-executes), which is what a desktop simulation wants.
    std::string rebootCommand;
    // UNIX socket of the local CLI (berth/agent/local_cli.h); empty: <stateDir>/berthd.sock.
    // "none" serves no local CLI. A socket that cannot be made is logged, not fatal.
    std::string cliSocketPath;
    // Bounds on what controllers can make the agent hold (docs/security.md); 0 = no limit
    // for the subscription caps. Adds beyond a subscription cap are refused with 7005.
    std::size_t maxSubscriptionsPerController = 100;
    std::size_t maxSubscriptions = 500;
    // Notifications waiting for one controller whose MTP cannot take them (count, bytes).
    std::size_t notifyQueueMessages = 1000;
    std::size_t notifyQueueBytes = 1024 * 1024;
    // Network interface (obuspa's -i) whose MAC address gives the default
    // Device.DeviceInfo.SerialNumber; empty: the first interface that is up.
    std::string interface;
    // Agent-wide TLS files for MTPs whose rows name none (obuspa's -a and -t): a PEM
    // file with the client certificate and its key, and a PEM file (or, for MQTT, a
    // directory) of trusted CA certificates.
    std::string authCertFile;
    std::string trustStore;
    // Logs every USP message received and sent at info level (obuspa's -p).
    bool protocolTrace = false;
    // The MQTT library of every MQTT MTP (berthd --mqtt-library): Paho (threads of its
    // own) or libmosquitto (on the loop; what tools/berth-sim uses for thousands of
    // agents). create() fails with 7004 when this build does not carry it.
    transports::MqttLibrary mqttLibrary = transports::MqttLibrary::kPaho;
    // Where network interfaces are listed (tests point this at a fake tree).
    std::string sysClassNet = "/sys/class/net";

    // For many agents in one process (tools/berth-sim). Defaults keep berthd as it was.
    //
    // Data model values set at every start, after the configuration file and before the
    // MTPs start (e.g. Device.DeviceInfo.SerialNumber, Device.MQTT.Client.1.BrokerPort).
    // A value the data model refuses fails create() with the path named.
    std::vector<std::pair<std::string, std::string>> overrides;
    // false: the data model and the notification queue live in memory only (no SQLite
    // file); dbFile may be empty, stateDir must then be given (the Boot! cause file).
    bool persistent = true;
    // false: no Device.SoftwareModules at all (no smm.db, no runtime state per agent).
    bool softwareModules = true;
    // Borrowed worker pool for blocking work, shared with other agents; it must outlive
    // the agent. nullptr: the agent makes its own (2 threads, started on demand).
    WorkerPool* workerPool = nullptr;
    // Called on the loop thread once Device.Reboot() or Device.FactoryReset() has
    // stopped the agent (restartRequested() is then true), instead of stopping the
    // loop: the simulator restarts that one agent and the loop goes on.
    std::function<void()> onRestart;
    // Adjusts Device.SoftwareModules' options (berth/smm/software_modules.h) before they
    // are used, on the loop thread in create(): berth-sim gives its simulated runtime
    // (SmmOptions::openEnvironment) here. Empty: berthd's defaults (runc/crun).
    std::function<void(smm::SmmOptions&)> softwareModulesSetup;
};

// Why the agent (re)started, for Boot!: kept in the state directory across a Reboot()
// or FactoryReset(), read and cleared at the next start.
struct BootInfo {
    std::string cause = "LocalReboot";  // LocalReboot, RemoteReboot, LocalFactoryReset, RemoteFactoryReset
    std::string commandKey;
    std::string reason;
    bool firmwareUpdated = false;       // SoftwareVersion differs from the previous start's
};

class Agent {
public:
    virtual ~Agent() = default;

    // Opens the database (applying the configuration file when the database is new),
    // builds the data model and the MTPs. Errors name the file and line that is wrong.
    static Result<std::unique_ptr<Agent>> create(EventLoop& loop, Clock& clock, AgentOptions options);

    // Starts the MTPs and emits Boot!.
    virtual Status start() = 0;
    // Sends Disconnect records, stops MTPs cleanly, flushes state; calls done when finished.
    virtual void stop(std::function<void()> done) = 0;

    virtual std::string endpointId() const = 0;
    // The options in effect, with defaults filled in (cliSocketPath, stateDir).
    virtual const AgentOptions& options() const = 0;
    virtual const BootInfo& bootInfo() const = 0;
    // True once Device.Reboot() or Device.FactoryReset() asked for a restart; the loop
    // has been stopped and the caller should restart the agent (or the device).
    virtual bool restartRequested() const = 0;
    // From the process's Subreaper: a child nobody owned exited (a container init).
    virtual void onOrphanReaped(pid_t pid, const ExitStatus& status) = 0;
};

}  // namespace berth::agent
