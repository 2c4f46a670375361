#pragma once
// Simulator: N complete berth agents (berth::agent::Agent, unchanged) in one process,
// sharing one EventLoop and one WorkerPool. Each agent has its own EndpointID,
// DeviceInfo.SerialNumber, data model, subscriptions and MQTT connection.
//
// Agents start paced (at most connectRate per second) so neither the broker nor the
// MQTT client library is swamped. Faults (fault_plan.h) are carried out per agent:
// "drop" takes the agent's MQTT session over from another client so the broker closes
// the agent's connection (the agent notices and reconnects on its own); "reboot" stops
// the agent (Disconnect records) and makes it again from its persistence, which sends
// Boot! with cause LocalReboot. Device.Reboot() from a controller restarts that agent
// the same way (cause RemoteReboot).
//
// With softwareModules, every agent has berthd's Device.SoftwareModules on the sim
// runtime (sim_runtime.h): one image store for all agents (<dbDir or stateRoot>/images),
// execution units without processes, and the SoftwareModules faults of the plan. Each
// agent's simulated machine (its images and containers) outlives reboots of the agent.
//
// Threading: everything on the loop thread that owns `loop`. The session-takeover
// clients of "drop" run their blocking connect on the worker pool.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/result.h"
#include "berth/sim/fault_plan.h"
#include "berth/sim/sim_settings.h"
#include "berth/transports/mqtt.h"

namespace berth::sim {

struct SimOptions {
    std::uint64_t agents = 1;
    std::uint64_t firstIndex = 1;                       // n of the first agent
    std::string brokerHost = "127.0.0.1";
    int brokerPort = 1883;
    // Factory defaults for every agent (obuspa format); empty: the built-in one
    // (builtinConfig()). Per-agent values are set over it (see overridesFor()).
    std::string configFile;
    std::string endpointTemplate = "os::012345-%06d";
    std::string serialTemplate = "SIM%06d";
    // Persistence: one directory per agent below dbDir (berth.db, notify.db, boot);
    // empty: data model and notification queue in memory, the small state files in
    // stateRoot.
    std::string dbDir;
    std::string stateRoot;                              // required when dbDir is empty
    double connectRate = 200;                           // agent starts per second
    bool softwareModules = false;                       // Device.SoftwareModules per agent (sim runtime)
    SimEuSettings eu;                                   // how its execution units behave
    std::size_t workerThreads = 2;                      // the shared pool
    std::vector<FaultSpec> faults;
    std::uint64_t seed = 1;
    bool protocolTrace = false;
    // The MQTT library of every agent: libmosquitto (on the loop, no threads) when built,
    // which is what holds 10,000 agents; Paho's shared threads do not scale that far.
#ifdef BERTH_WITH_MOSQUITTO
    transports::MqttLibrary mqttLibrary = transports::MqttLibrary::kMosquitto;
#else
    transports::MqttLibrary mqttLibrary = transports::MqttLibrary::kPaho;
#endif
};

struct SimStats {
    std::uint64_t started = 0;     // agents made and started (first starts)
    std::uint64_t running = 0;     // agents that exist now
    std::uint64_t failed = 0;      // agents whose create or start failed
    std::uint64_t drops = 0;       // session takeovers done
    std::uint64_t dropFailures = 0;
    std::uint64_t reboots = 0;     // fault reboots
    std::uint64_t remoteRestarts = 0;  // Device.Reboot()/FactoryReset() restarts
    SharedStoreStats store;            // the shared image store (softwareModules)
    std::uint64_t installedImages = 0; // images held by the agents' ExecEnvs, summed
    std::uint64_t runningUnits = 0;    // simulated execution units running, summed
};

// The built-in factory defaults: the roles of examples/berth.conf, one MQTT client
// (5.0), Controller.1 self::berthctl on usp/controller/berthctl with a Boot!
// subscription, so a controller sees every agent announce itself. With
// softwareModules, also ExecEnv.1 "apps" (see builtinSoftwareModulesConfig()).
const std::string& builtinConfig();
const std::string& builtinSoftwareModulesConfig();

class Simulator {
public:
    // Checks the options (templates, faults, directories) and writes nothing yet.
    // Errors: 7004 for bad options, 7007 for a configuration file that cannot be read.
    static Result<std::unique_ptr<Simulator>> create(EventLoop& loop, Clock& clock, SimOptions options);
    ~Simulator();

    // Begins the paced starts; onAllStarted (optional) runs once every agent was started.
    void start(std::function<void()> onAllStarted = {});
    // Stops every agent (each sends its Disconnect records) and frees them; done runs
    // on the loop when all are gone. Further faults and restarts are cancelled.
    void stop(std::function<void()> done);

    // Faults on demand (tests, the bench): n is the agent number. 7016 when no such
    // agent runs.
    Status dropConnection(std::uint64_t n);
    Status reboot(std::uint64_t n);

    std::string endpointIdOf(std::uint64_t n) const;
    std::string serialOf(std::uint64_t n) const;
    // The values set over the configuration file for agent n: EndpointID, SerialNumber,
    // MQTT broker, ClientID (= EndpointID) and the agent's response topic
    // usp/agent/<EndpointID>.
    std::vector<std::pair<std::string, std::string>> overridesFor(std::uint64_t n) const;
    SimStats stats() const;
    const FaultPlan& faultPlan() const;

    class Impl;

private:
    explicit Simulator(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace berth::sim
