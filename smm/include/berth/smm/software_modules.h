#pragma once
// Device.SoftwareModules. on OCI images and an OCI runtime (runc/crun).
//
// SoftwareModules binds the TR-181 ExecEnvClass / ExecEnv / DeploymentUnit /
// ExecutionUnit tables of a dm::Engine to the OCI runner: it registers the commands
// (InstallDU(), DeploymentUnit.{i}.Update()/Uninstall(), ExecutionUnit.{i}.
// SetRequestedState()/Restart(), ExecEnv.{i}.SetRunLevel()/ModifyConstraints()/
// Restart()), the computed parameters (MemoryInUse, Available*, ...), raises
// DUStateChange! after every DU operation and drives the containers.
//
// Execution environments come from the configuration (factory defaults), e.g.
//   Device.SoftwareModules.ExecEnv.1.Name "apps"
//   Device.SoftwareModules.ExecEnv.1.Enable "true"
//   Device.SoftwareModules.ExecEnv.1.X_BERTH_Runtime "runc"
// See docs/software-modules.md for every parameter and decision.
//
// Wiring (agent composition):
//   auto smm = SoftwareModules::create(loop, clock, engine, pool, {stateDir});
//   smm->start();                       // after the engine holds the configuration
//   subreaper callback: smm->onOrphanReaped(pid, status);
//   once ready: smm->interruptedOperations() -> OperationComplete failures
//   shutdown: smm->stop();              // containers keep running, adopted next start
//
// Threading: every method is called on the loop thread that owns the engine. Blocking
// work (downloads, unpacking, runtime calls) runs on the WorkerPool; results come back
// on the loop. Ownership: the loop, clock, engine and pool are borrowed and must
// outlive the SoftwareModules object.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/process.h"
#include "berth/core/result.h"
#include "berth/core/worker_pool.h"
#include "berth/datamodel/engine.h"
#include "berth/oci/container_runtime.h"

namespace berth::smm {

struct SmmOptions {
    // Holds the operation journal (smm.db) and, for ExecEnvs that name no directories,
    // ee/<Name>/store (images) and ee/<Name>/state (containers). Created if missing.
    std::filesystem::path stateDir;
    // Download settings for InstallDU()/Update().
    std::string caFile;                        // extra CA bundle for https; empty: system store
    std::uint64_t maxDownloadBytes = 4ull << 30;
    std::chrono::seconds connectTimeout{30};
    // Threads of the download pool (pulls only; EU starts and stops use the pool given
    // to create()). Per-ExecEnv limits (deadline, rate, file: URLs) are ExecEnv parameters.
    std::size_t downloadThreads = 2;
    // An EU whose process ends within this time after start counts as a start failure
    // (FailureOnStart / FailureOnAutoStart) rather than FailureWhileActive.
    std::chrono::milliseconds startGrace{1000};
    std::chrono::milliseconds runtimeTimeout{30000};
    // Test hook: called on the loop thread right after each journal write, with
    // "<operation>.<phase>" ("install.started", "update.committed", ...). Crash tests
    // SIGKILL the process from here.
    std::function<void(std::string_view step)> journalHook;
    // Opens the image repository and container runtime of each ExecEnv (on the worker
    // pool). Empty: oci::openOciEnvironment (the image store and runc/crun). Tests
    // pass a fake (tests/support) to drive the state machines without root.
    oci::OciEnvironmentOpener openEnvironment;
};

// An operation that was running when the agent died, found in the journal at start().
// The agent sends an OperationComplete for it (its Request row did not survive).
struct InterruptedOperation {
    std::string commandPath;  // "Device.SoftwareModules.InstallDU()", "...DeploymentUnit.2.Uninstall()"
    std::string commandKey;
    std::string operation;    // "Install", "Update", "Uninstall"
    // How it ended: an error (7003, with what recovery did) or, for an operation that
    // had passed its commit point, success (empty output args).
    Result<dm::ArgMap> outcome = dm::ArgMap{};
};

class SoftwareModules {
public:
    // Registers commands and providers with the engine and opens the journal.
    // Nothing blocking. Errors: 7003 when the state directory or journal cannot be made.
    static Result<std::unique_ptr<SoftwareModules>> create(EventLoop& loop, Clock& clock, dm::Engine& engine,
                                                           WorkerPool& pool, SmmOptions options);
    virtual ~SoftwareModules() = default;

    // Recovers and starts: ends interrupted operations (rolls back, raises their
    // DUStateChange!), opens each ExecEnv (on the worker pool), adopts running
    // containers, removes containers and images no row knows, then starts AutoStart
    // EUs in RunLevel order. Returns at once; `ready` runs on the loop when done.
    // DU/EU commands before then are refused (7002). Errors: a configured ExecEnv with
    // an invalid Name. An ExecEnv that cannot be opened goes to Status Error.
    virtual Status start(std::function<void()> ready = {}) = 0;
    virtual bool ready() const = 0;
    // Cancels pending work; running containers are left running (adopted next start);
    // unfinished operations stay in the journal. Idempotent.
    virtual void stop() = 0;
    // From the Subreaper's orphan callback: the exit status of a container init that
    // was reaped by the sweep.
    virtual void onOrphanReaped(pid_t pid, const ExitStatus& status) = 0;
    // Operations found interrupted by start() (filled before `ready` runs).
    virtual std::vector<InterruptedOperation> interruptedOperations() const = 0;
};

}  // namespace berth::smm
