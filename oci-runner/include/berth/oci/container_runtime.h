#pragma once
// The seam between a user of containers (SoftwareModules) and the OCI machinery:
// an image repository, a container runtime and an exit watcher, as interfaces.
// openOciEnvironment() gives the real ones (ImageStore + ContainerManager over
// runc/crun, ContainerWatcher on pidfds); tests give a fake
// (tests/support: berth/testing/fake_container_runtime.h) that needs no root.
//
// Threading: ImageRepository and ContainerRuntime methods may block (call them from a
// worker thread); calls for the same container are serialised by the caller.
// An ExitWatcher lives on the loop thread that made it and calls back on it.
// Ownership: an OciEnvironment owns its repository and runtime; the runtime may
// refer to the repository, so they are destroyed together (runtime first).

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "berth/core/event_loop.h"
#include "berth/core/process.h"
#include "berth/core/worker_pool.h"
#include "berth/oci/cgroup.h"
#include "berth/oci/container.h"
#include "berth/oci/error.h"
#include "berth/oci/image_store.h"
#include "berth/oci/runtime.h"
#include "berth/oci/security.h"

namespace berth::oci {

// Pull (fetch + verify + unpack), look up, list and remove images; see ImageStore.
class ImageRepository {
public:
    virtual ~ImageRepository() = default;
    // Errors: every fetch/verify/unpack kind (kServerUnreachable, kDigestMismatch,
    // kUnsafeArchive, kNoSpace, kQuotaExceeded from `admit`, kCancelled, ...).
    // On failure nothing is left in the repository.
    virtual RunnerResult<ImageRecord> pull(const PullRequest& request, const CancelToken* cancel = nullptr,
                                           PullStats* stats = nullptr) = 0;
    virtual RunnerResult<ImageRecord> get(const std::string& ref) const = 0;
    virtual RunnerResult<std::vector<ImageRecord>> list() const = 0;
    // The caller removes the image's containers first. Errors: kNotFound, kIoError.
    virtual RunnerStatus remove(const std::string& ref) = 0;
    // Removes what no image names; returns bytes freed.
    virtual RunnerResult<std::uint64_t> collectGarbage() = 0;
};

// Notices container exits on the loop (see ContainerWatcher).
class ExitWatcher {
public:
    using ExitCallback = std::function<void(const ContainerExit&)>;
    virtual ~ExitWatcher() = default;
    // Errors: kNotFound when the container's init is already gone.
    virtual RunnerStatus watch(const std::string& id, pid_t pid, const std::string& cgroupPath, ExitCallback cb) = 0;
    virtual void unwatch(const std::string& id) = 0;
    // From the Subreaper's orphan callback; true when the pid was a watched init.
    virtual bool onReaped(pid_t pid, const ExitStatus& status) = 0;
};

// Container life cycle and figures; see ContainerManager.
class ContainerRuntime {
public:
    virtual ~ContainerRuntime() = default;
    // Bundle + create + start. Errors: kInvalidArgument, kConflict (ID in use),
    // kNotFound (image), kRuntimeFailed, kTimeout, kNoSpace. Nothing left on failure.
    virtual RunnerResult<ContainerInfo> run(const std::string& id, const std::string& imageRef,
                                            const ContainerSettings& settings) = 0;
    // `signal`, up to `grace`, then SIGKILL. A stopped container is not an error.
    virtual RunnerResult<StopResult> stop(const std::string& id, std::chrono::milliseconds grace, int signal = 15) = 0;
    virtual RunnerStatus remove(const std::string& id, bool force = false) = 0;
    // Errors: kNotFound when the container does not exist.
    virtual RunnerResult<ContainerInfo> info(const std::string& id) const = 0;
    virtual RunnerResult<std::vector<ContainerInfo>> list() const = 0;
    virtual RunnerResult<ContainerFigures> figures(const std::string& id) const = 0;
    // Memory and CPU of a container's cgroup (ContainerInfo::record.cgroupPath).
    virtual RunnerResult<CgroupFigures> cgroupFigures(const std::string& cgroupPath) const = 0;
    // Limits of the parent cgroup every container of this runtime lives under;
    // nullopt: unlimited. Best effort (a failure is logged).
    virtual void limitParent(std::optional<std::uint64_t> memoryBytes, std::optional<std::uint64_t> cpuQuotaMicros) = 0;
    // A watcher for the containers of this runtime, living on `loop`.
    virtual std::unique_ptr<ExitWatcher> makeWatcher(EventLoop& loop) = 0;
};

// What openOciEnvironment() needs for one execution environment.
struct OciEnvironmentOptions {
    std::string storageDir;  // the image store
    std::string stateDir;    // containers
    RuntimeKind kind = RuntimeKind::kRunc;
    std::string runtimeBinary;  // "" from PATH
    std::string cgroupParent;
    std::chrono::milliseconds runtimeTimeout{30000};
    SecurityPolicy security;     // the store unpacks with security.idMap's owners
    std::string seccompProfile;  // see ContainerManagerOptions
};

struct OciEnvironment {
    std::unique_ptr<ImageRepository> images;
    std::unique_ptr<ContainerRuntime> containers;  // destroyed before images
    std::string runtimeVersion;  // "runc version 1.1.5+ds1"
    std::string specVersion;     // "1.0.2-dev"
    OciEnvironment() = default;
    OciEnvironment(OciEnvironment&&) = default;
    OciEnvironment& operator=(OciEnvironment&& o) noexcept {
        containers = std::move(o.containers);
        images = std::move(o.images);
        runtimeVersion = std::move(o.runtimeVersion);
        specVersion = std::move(o.specVersion);
        return *this;
    }
    ~OciEnvironment() { containers.reset(); }
};

// Opens the image store and the runtime (runc/crun) of one environment. Blocking.
// Errors are returned with a description of which part failed (kIoError/kNoSpace for
// the store; ContainerManager::open's kinds for the runtime).
using OciEnvironmentOpener = std::function<RunnerResult<OciEnvironment>(const OciEnvironmentOptions&)>;
RunnerResult<OciEnvironment> openOciEnvironment(const OciEnvironmentOptions& options);

}  // namespace berth::oci
