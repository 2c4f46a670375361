#pragma once
// Containers: bundle + writable layer + runtime lifecycle, figures, re-attach,
// and a loop-side watcher for exits.
//
// State directory layout (one per execution environment; several can coexist):
//   <state>/runtime/                 the runtime's --root
//   <state>/containers/<id>/
//       record.json                  what we created (image, cgroup, rootfs mode)
//       config.json                  the OCI runtime config (bundle = this dir)
//       rootfs/                      overlay mount: image layers (read-only) + upper
//       upper/ work/                 the container's writable layer (overlay)
//       runtime.log                  the runtime's JSON log
//       console.log[.1]              the container's stdout+stderr, capped
//       init.pid
// The writable layer is an overlayfs upper directory; when overlayfs is not
// available (or refuses the layer list) the image is copied into rootfs/ instead
// and rootfs/ itself is the writable layer (record.json says which).
// With a user namespace (options.security.idMap), the store's layers are already
// owned by the mapped ids (see UnpackLimits::owners); upper/ (or the copied
// rootfs/) belongs to the mapped root, and the container directory is 0711 so
// the mapped root can reach rootfs/ but read nothing else there.
//
// ContainerManager methods block (runtime calls, mounts, copying): call them from
// a worker thread. They may be called from several threads for different
// containers; calls for the same container must be serialised by the caller.
// ContainerWatcher lives on the loop thread.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "berth/core/event_loop.h"
#include "berth/core/process.h"
#include "berth/oci/bundle.h"
#include "berth/oci/cgroup.h"
#include "berth/oci/error.h"
#include "berth/oci/image_store.h"
#include "berth/oci/runtime.h"
#include "berth/oci/security.h"

namespace berth::oci {

struct ContainerManagerOptions {
    std::string stateDir;                 // required
    RuntimeKind runtime = RuntimeKind::kRunc;
    std::string runtimeBinary;            // default from PATH
    std::chrono::milliseconds runtimeTimeout{30000};
    std::string cgroupParent = "/berth";  // containers go to <parent>/<id>
    std::uint64_t logCapBytes = 1 << 20;  // console.log is rotated to console.log.1 past this
    bool allowOverlay = true;             // false: always copy the image into the rootfs
    std::string mountinfo = "/proc/self/mountinfo";
    // What every container of this manager may do (security.h). With an id map,
    // the image store must have been opened with the same mapping
    // (UnpackLimits::owners), and the ancestors of stateDir must be searchable by
    // others, because the runtime mounts the rootfs as the mapped root; stateDir
    // itself becomes root:<mapped gid> 0710.
    SecurityPolicy security;
    // Fills security.seccomp when it is null: "" the shipped default profile,
    // "unconfined" none, anything else a profile file (loadSeccompProfile()).
    std::string seccompProfile;
};

struct ContainerRecord {
    std::string id;
    std::string imageDigest;
    std::string cgroupPath;
    std::string rootfsMode;  // "overlay" or "copy"
    std::int64_t createdAt = 0;
};

struct ContainerInfo {
    ContainerRecord record;
    bool hasRecord = true;   // false: the runtime knows it but we never made it
    std::string status;      // created, running, paused, stopped, or "absent" (record, no runtime state)
    pid_t pid = 0;
};

struct ContainerFigures {
    CgroupFigures cgroup;
    std::uint64_t diskBytes = 0;  // the writable layer (shared image layers excluded)
    std::uint64_t logBytes = 0;
};

struct StopResult {
    bool killed = false;  // TERM was not enough
};

class ContainerManager {
public:
    // Creates the directories, detects the cgroup layout, checks the runtime, loads
    // the seccomp profile. Errors: kInvalidArgument (a state directory the mapped
    // root cannot reach, a store with another id map, a bad profile), kNotFound
    // (profile file), kCorruptData (profile not JSON).
    static RunnerResult<std::unique_ptr<ContainerManager>> open(ContainerManagerOptions options, ImageStore& images);

    // Builds the bundle and runs `runtime create`: the container exists, its init
    // waits for start(). Errors: kInvalidArgument (bad ID/settings), kConflict (ID in
    // use), kNotFound (image), kRuntimeFailed, kTimeout, kNoSpace. On failure
    // nothing is left behind.
    RunnerResult<ContainerInfo> create(const std::string& id, const std::string& imageRef,
                                       const ContainerSettings& settings);
    RunnerStatus start(const std::string& id);
    // create() then start().
    RunnerResult<ContainerInfo> run(const std::string& id, const std::string& imageRef,
                                    const ContainerSettings& settings);
    // Sends `signal` (default SIGTERM) to the init, waits up to `grace` for it to
    // exit, then SIGKILL and waits again. A stopped container is not an error.
    RunnerResult<StopResult> stop(const std::string& id, std::chrono::milliseconds grace = std::chrono::seconds(10),
                                  int signal = 15);
    // runtime delete (forced when `force`; otherwise the container must not run),
    // unmounts and removes the container directory.
    RunnerStatus remove(const std::string& id, bool force = false);
    RunnerResult<ContainerInfo> info(const std::string& id) const;
    // Every container of this state directory with its state: ours (record.json)
    // and any the runtime knows of without a record. For adoption after a restart.
    RunnerResult<std::vector<ContainerInfo>> list() const;
    RunnerResult<ContainerFigures> figures(const std::string& id) const;
    // Rotates console.log to console.log.1 when it is past the cap (copy then
    // truncate: the container keeps writing through its O_APPEND descriptor).
    RunnerStatus enforceLogCap(const std::string& id);

    // Removes the cgroup parent directories (one per v1 controller, or the v2 one)
    // when they are empty: for removing an execution environment, and for tests.
    void removeCgroupParent();

    std::string containerDir(const std::string& id) const;
    std::string logPath(const std::string& id) const { return containerDir(id) + "/console.log"; }
    const CgroupLayout& cgroups() const { return cgroups_; }
    const Runtime& runtime() const { return runtime_; }
    const ContainerManagerOptions& options() const { return options_; }

private:
    ContainerManager(ContainerManagerOptions o, ImageStore& images, CgroupLayout cg, Runtime rt)
        : options_(std::move(o)), images_(images), cgroups_(std::move(cg)), runtime_(std::move(rt)) {}
    RunnerStatus prepareRootfs(const ImageRecord& image, const std::string& dir, std::string& mode);
    // chown to the mapped root when there is an id map; false with errno set on failure.
    bool chownToMappedRoot(const std::string& path) const;
    RunnerResult<ContainerRecord> readRecord(const std::string& id) const;

    ContainerManagerOptions options_;
    ImageStore& images_;
    CgroupLayout cgroups_;
    Runtime runtime_;
};

struct ContainerExit {
    std::string id;
    std::optional<ExitStatus> status;  // nullopt: not our child (adopted), code unknown
    bool oomKilled = false;            // the cgroup's OOM killer fired
    std::uint64_t oomKills = 0;
};

// Notices container exits on the loop, without blocking. The owning daemon is
// the subreaper of its containers: after `runtime create` the container init is
// reparented to it. The watcher opens a pidfd on the init pid (from the runtime
// state) and, when it becomes readable, reaps the init with waitid(P_PIDFD) to get
// its exit status, then reads the cgroup's OOM-kill counter. If the daemon's
// Subreaper sweep reaped the pid first, forward its callback to onReaped() so the
// status is not lost. Loop thread only; callbacks run on the loop.
class ContainerWatcher {
public:
    using ExitCallback = std::function<void(const ContainerExit&)>;
    ContainerWatcher(EventLoop& loop, CgroupLayout cgroups);
    ~ContainerWatcher();
    ContainerWatcher(const ContainerWatcher&) = delete;
    ContainerWatcher& operator=(const ContainerWatcher&) = delete;

    // Errors: kNotFound when the pid is already gone and was not reaped here.
    RunnerStatus watch(const std::string& id, pid_t pid, const std::string& cgroupPath, ExitCallback cb);
    void unwatch(const std::string& id);
    // From the Subreaper's orphan callback. Returns true when the pid was a watched init.
    bool onReaped(pid_t pid, const ExitStatus& status);
    std::size_t watching() const { return watches_.size(); }

private:
    struct Watch;
    void finish(const std::string& id, std::optional<ExitStatus> status);
    EventLoop& loop_;
    CgroupLayout cgroups_;
    std::map<std::string, std::unique_ptr<Watch>> watches_;
};

// Record <-> JSON (record.json).
std::string containerRecordToJson(const ContainerRecord& r);
RunnerResult<ContainerRecord> containerRecordFromJson(std::string_view text);

}  // namespace berth::oci
