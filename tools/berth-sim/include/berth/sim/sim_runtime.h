#pragma once
// The `sim` SoftwareModules runtime of berth-sim: Device.SoftwareModules of every
// simulated agent on the OCI seam (berth/oci/container_runtime.h) without root, runc
// or a process per execution unit.
//
//   SharedImageStore  one real oci::ImageStore for the whole simulator. A pull of a URL
//                     really downloads the image and verifies it (sizes, sha256 of every
//                     blob, diff_ids), once: later pulls of that URL (same credentials)
//                     are answered from the store, and pulls that come while it is being
//                     downloaded wait for that one download. Layers are unpacked once,
//                     in the store, never per agent.
//   SimMachine        one simulated gateway: the images its ExecEnv holds (records
//                     naming the shared store's images) and its containers. It outlives
//                     the agents made over it, as a gateway's runc state outlives berthd
//                     (a reboot fault or Device.Reboot() restarts the agent in process and
//                     the new one adopts the containers still "running").
//
// Execution units have no process: run() takes `startTime` and gives the container a
// pid above any pid_max (never a real process); stop() takes `stopTime` (longer than the
// grace: killed) and the exit reaches the agent's ExitWatcher on its loop. Figures are
// plausible: each container's memory is `memoryBytes` give or take a quarter (fixed per
// container) with a slow wobble of a few percent, and about 1 % of one CPU.
//
// Faults (fault_plan.h) act per agent on each pull, counted per agent from 1:
//   download-fail  the pull fails before downloading: kServerUnreachable (USP 7033)
//   download-slow  the pull waits `delay` first (a Cancel() ends the wait, and the
//                  ExecEnv's X_BERTH_DownloadDeadline applies: kDownloadFailed, 7033)
//   install-fail   the image is downloaded and verified, then the install fails as
//                  a full flash would: kNoSpace (USP 7227); nothing is kept.
//
// Threading: SharedImageStore and SimMachine are thread-safe (the repository and runtime
// are called from worker threads; watchers live on their loop and are called back
// there). Ownership: SimMachine and the environments it opens hold the shared store by
// shared_ptr, so a worker job that outlives the simulator cannot reach a freed store.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "berth/oci/container_runtime.h"
#include "berth/sim/fault_plan.h"
#include "berth/sim/sim_settings.h"

namespace berth::sim {

class SharedImageStore {
public:
    // Opens (creates) an image store at `root`; its tmp/ is emptied, so one process per
    // root. Errors: those of oci::ImageStore::open.
    static oci::RunnerResult<std::shared_ptr<SharedImageStore>> open(const std::string& root);
    ~SharedImageStore();
    SharedImageStore(const SharedImageStore&) = delete;
    SharedImageStore& operator=(const SharedImageStore&) = delete;

    // The image at request.fetch.url (credentials, TLS, limits and local-file policy as
    // the request gives them; its `admit` and `reserve` are not called: they are the
    // agent's, see SimMachine). Blocking; any thread. A cancelled caller returns
    // kCancelled at once; the download goes on (within the request's deadline and
    // minimum rate), for the callers still waiting and the ones to come.
    // Errors: those of oci::ImageStore::pull. A failed download is not remembered: the
    // next pull tries again.
    oci::RunnerResult<oci::ImageRecord> pull(const oci::PullRequest& request, const CancelToken* cancel = nullptr);
    // An image the store holds, by manifest digest. Errors: kNotFound.
    oci::RunnerResult<oci::ImageRecord> get(const std::string& digest) const;
    SharedStoreStats stats() const;

    struct State;

private:
    explicit SharedImageStore(std::shared_ptr<State> state) : state_(std::move(state)) {}
    std::shared_ptr<State> state_;
};

// What a simulated gateway holds now (tests and the benchmark).
struct SimMachineFigures {
    std::size_t images = 0;
    std::size_t containers = 0;
    std::size_t running = 0;
    std::uint64_t pulls = 0;  // ImageRepository::pull() calls of this agent
};

class SimMachine {
public:
    // `agent`: the agent's number n (fault plan); `plan` is borrowed and must outlive
    // the machine and every environment it opened. `imagesFile` (optional): where the
    // digests of the images this gateway holds are kept, so that a later process with the
    // same --db-dir finds them (in the shared store) again; containers are not kept (a
    // new process is a power cycle). Read here; an unreadable file or an image the store
    // lacks is skipped with a warning.
    SimMachine(std::shared_ptr<SharedImageStore> store, std::uint64_t agent, const FaultPlan* plan,
               SimEuSettings eu, std::string imagesFile = {});
    ~SimMachine();
    SimMachine(const SimMachine&) = delete;
    SimMachine& operator=(const SimMachine&) = delete;

    // The opener for SmmOptions::openEnvironment: every ExecEnv of the agent gets a
    // repository and a runtime over this machine.
    oci::OciEnvironmentOpener opener();
    SimMachineFigures figures() const;

    struct State;

private:
    std::shared_ptr<State> state_;
};

}  // namespace berth::sim
