#pragma once
// Private (TR-181 binding): the SoftwareModules implementation, split over software_modules.cpp
// (setup, ExecEnvs, providers), startup.cpp (recovery, reconciliation), du_ops.cpp
// (InstallDU/Update/Uninstall), eu_ops.cpp (ExecutionUnit lifecycle) and rows.cpp (the
// DU/EU rows written from the model in berth/smm/inventory.h, its persistence and the
// migration of an earlier version's rows).

#include <sys/types.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "berth/oci/container_runtime.h"
#include "berth/core/fd.h"
#include "berth/smm/disk_budget.h"
#include "berth/smm/eu_state.h"
#include "berth/smm/host_objects.h"
#include "berth/smm/inventory.h"
#include "berth/smm/journal.h"
#include "berth/smm/software_modules.h"
#include "binding/du_args.h"

namespace berth::smm {

inline constexpr std::string_view kSmPath = "Device.SoftwareModules.";
inline constexpr std::string_view kDuTable = "Device.SoftwareModules.DeploymentUnit.";
inline constexpr std::string_view kEuTable = "Device.SoftwareModules.ExecutionUnit.";
inline constexpr std::string_view kEeTable = "Device.SoftwareModules.ExecEnv.";
inline constexpr std::string_view kEecTable = "Device.SoftwareModules.ExecEnvClass.";
inline constexpr std::string_view kDuStateChange = "Device.SoftwareModules.DUStateChange!";

struct ReconcileResult;
struct ReconcileInput;

// The blocking side of an ExecEnv, shared with worker jobs (a job may outlive the
// SoftwareModules object that submitted it, so it holds its own reference).
struct EeRuntime {
    std::string name;
    oci::RuntimeKind kind = oci::RuntimeKind::kRunc;
    std::string runtimeBinary;
    std::string storageDir;
    std::string stateDir;
    std::string cgroupParent;
    DiskBudget budget;          // AllocatedDiskSpace held by pulls in flight
    std::string hostObjectDir;  // staging mount points of HostObjects, <state>/ee/<Name>/hostobjects
    std::chrono::milliseconds runtimeTimeout{30000};
    // From the ExecEnv's configuration only (read-only vendor parameters): the id map,
    // capabilities, seccomp profile ("" built-in, "unconfined", or a file) and
    // read-only rootfs. Nothing a controller sends can change them.
    oci::SecurityPolicy security;
    std::string seccompProfile;
    std::unique_ptr<oci::ImageRepository> images;
    std::unique_ptr<oci::ContainerRuntime> containers;  // declared after images: destroyed first
    std::string runtimeVersion;  // "runc version 1.1.5+ds1"
    std::string specVersion;     // "1.0.2-dev"
};

struct Ee {
    std::string path;  // "Device.SoftwareModules.ExecEnv.1."
    std::uint32_t instance = 0;
    std::string name;
    bool enabled = true;
    // Limits (ModifyConstraints(), or the configuration): -1 none.
    std::int64_t allocatedDiskKiB = -1, allocatedMemoryKiB = -1, allocatedCpuPercent = -1;
    // Run levels: InitialRunLevel and InitialExecutionUnitRunLevel are controller-writable
    // (kept current by onValueChange); CurrentRunLevel is ours.
    std::int64_t initialRunLevel = 0, initialEuRunLevel = 0, currentRunLevel = -1;
    std::uint32_t restartCount = 0;
    std::string openError;  // why the runtime could not be opened
    std::vector<std::string> hostPrefixes;
    std::vector<std::string> fileDirectories;  // X_BERTH_FileURLDirectories; empty: file: URLs off
    std::string caFile;  // X_BERTH_CAFile: CA bundle (PEM) for https and registries; empty: SmmOptions::caFile
    std::chrono::seconds downloadDeadline{1800};
    std::uint64_t downloadMinRate = 1024;      // bytes/s, average since the start
    std::chrono::seconds downloadRateWindow{60};
    std::shared_ptr<EeRuntime> rt;  // null until opened
    std::unique_ptr<oci::ExitWatcher> watcher;
    std::uint64_t storeBytes = 0;  // unpacked bytes of the images in the store
    // Image removals submitted to the workers and not yet finished, and the pulls that
    // wait for them (a pull must not find an image that is about to be removed).
    int removalsRunning = 0;
    std::vector<std::function<void()>> afterRemovals;
    // Pulls running on the workers, and the removals decided meanwhile: a running pull may
    // return an image that is about to be removed, so those wait and are re-checked.
    int pullsRunning = 0;
    std::vector<std::string> afterPulls;
    bool restarting = false;
    bool usable() const { return rt && rt->containers && enabled && openError.empty() && !restarting; }
};

// What the binding keeps of an EU beside its model record (inventory.h): the runtime
// side (container, timers, the call in flight).
struct Eu {
    std::uint32_t instance = 0;  // the model record
    std::string path;    // "Device.SoftwareModules.ExecutionUnit.3."
    std::string euid;    // container ID
    std::string eePath;
    std::string duPath;
    EuStatus status = EuStatus::kIdle;  // mirrors the record's (setStatus writes both)
    bool busy = false;                // a runtime call is in flight
    std::optional<EuRequest> pending; // request deferred while busy
    bool stopRequested = false;
    bool autoStarted = false;
    bool live = false;                // a container exists (running or exited)
    pid_t pid = 0;                    // init pid while watched
    std::string cgroupPath;
    Clock::MonoTime activeSince{};
    std::uint64_t cpuAtStart = 0;
    std::unique_ptr<Timer> backoff;   // AutoRestart
    std::unique_ptr<Timer> healthy;   // AutoRestart.ResetPeriod
    std::unique_ptr<Job> job;
};

// A HostObject resolved for one EU start: the fd of what the Source named at that moment.
struct ResolvedHostObject {
    UniqueFd fd;
    HostObjectOptions options;
};

// Name, vendor, version and description of a DU, from its image's annotations.
struct DuIdentity {
    std::string name, vendor, version, description;
};

struct DuOp {
    JournalEntry entry;
    std::string requestPath;  // the Request.{i}. row, for Cancel()
    std::string duPath;   // Update/Uninstall (and Install once committed)
    Ee* ee = nullptr;
    DuArgs args;
    std::string startTime;
    dm::CommandDone done;
    std::unique_ptr<Job> job;
    std::vector<std::string> stoppedEus;  // Update: EUs to start again
    oci::ImageRecord image;
    std::string pin;  // the pins_ key this operation holds (eePath + digest); empty: none
    bool pulling = false;  // counted in Ee::pullsRunning
};

class SoftwareModulesImpl final : public SoftwareModules, public dm::Provider, public dm::ChangeListener {
public:
    SoftwareModulesImpl(EventLoop& loop, Clock& clock, dm::Engine& engine, WorkerPool& pool, SmmOptions options);
    ~SoftwareModulesImpl() override;
    Status init();

    Status start(std::function<void()> ready) override;
    bool ready() const override { return ready_; }
    void stop() override;
    void onOrphanReaped(pid_t pid, const ExitStatus& status) override;
    std::vector<InterruptedOperation> interruptedOperations() const override { return interrupted_; }

    // dm::Provider
    Result<std::string> get(const dm::ObjectView& obj, std::string_view param) override;
    // dm::ChangeListener
    void onValueChange(std::string_view paramPath, std::string_view value) override;
    void onObjectCreated(std::string_view, const std::vector<std::pair<std::string_view, std::string>>&) override {}
    void onObjectDeleted(std::string_view) override {}
    void onEvent(std::string_view, const dm::ArgMap&) override {}

private:
    // ---- helpers (software_modules.cpp) ----
    std::string val(const std::string& path) const;
    std::int64_t intVal(const std::string& path, std::int64_t fallback) const;
    void set(const std::string& path, const std::string& value);
    std::string now() const;
    void hook(OpKind kind, std::string_view phase);
    void post(std::function<void()> fn);
    Ee* findEe(const std::string& ref);
    Ee* defaultEe();
    std::vector<std::string> eusOfDu(const std::string& duPath) const;
    // ---- the model and its rows (rows.cpp) ----
    static std::string duPathOf(std::uint32_t instance);
    static std::string euPathOf(std::uint32_t instance);
    DeploymentUnit* duAt(const std::string& path);
    ExecutionUnit& record(const Eu& eu);
    std::string eeStatus(const Ee& ee) const;
    Status writeDuRow(const DeploymentUnit& du);
    Status writeEuRow(const ExecutionUnit& eu);
    Status writeEuTables(const ExecutionUnit& eu);
    Status addRows(const DeploymentUnit& du, const std::vector<const ExecutionUnit*>& eus);
    void saveDu(const DeploymentUnit& du);
    void persistEu(const Eu& eu);  // soon, once per loop turn
    void flushEus();
    void loadInventory();
    Inventory readEarlierRows();
    void syncRows();
    void onEuParamChange(Eu& eu, std::string_view param, std::string_view value);
    bool digestReferenced(const Ee& ee, const std::string& digest) const;
    void cleanupImage(Ee& ee, const std::string& digest);
    void raiseDuStateChange(const std::string& uuid, const std::string& duPath, const std::string& version,
                            const std::string& state, bool resolved, const std::vector<std::string>& eus,
                            const std::string& startTime, const std::string& completeTime, OpKind op,
                            const Error* fault);
    void applyEeLimits(Ee& ee);
    std::int64_t eeMemoryInUseKiB(const Ee& ee) const;
    int cpuPercentInUse(const Eu& eu, const Ee& ee) const;
    void loadEes();
    // Reads the ExecEnv's security parameters into rt; returns why they are unusable, or "".
    std::string loadEeSecurity(const std::string& path, EeRuntime& rt) const;
    // ---- start-up (startup.cpp) ----
    void recoverJournal();
    // The EUs of the DU rows into eus_; rows no DU lists are deleted.
    void loadEus();
    std::map<std::string, ReconcileInput> reconcileInputs();
    void afterReconcile(ReconcileResult result);
    void refreshEeStatus(Ee& ee);
    void registerExecEnvClass(Ee& ee);
    Result<dm::ArgMap> setRunLevel(const dm::CommandCall& call);
    void modifyConstraints(const dm::CommandCall& call, dm::CommandDone done);
    void restartEe(const dm::CommandCall& call, dm::CommandDone done);
    void setEeEnabled(Ee& ee, bool enabled);

    // ---- DU operations (du_ops.cpp) ----
    void installDu(const dm::CommandCall& call, dm::CommandDone done);
    // Request.{i}.Cancel() of InstallDU()/Update(): possible while the image is still
    // being fetched; the call then fails with 7023 and leaves nothing behind.
    Status cancelDuOp(const dm::CommandCall& call);
    void updateDu(const dm::CommandCall& call, dm::CommandDone done);
    void uninstallDu(const dm::CommandCall& call, dm::CommandDone done);
    const DeploymentUnit* installedDu(DuOp* op, const std::string& du, std::string_view command);
    // InstallDU()/Update() arguments for the ExecEnv `ee` (may be null): binding/du_args.h.
    Result<DuArgs> parseDuArgs(const dm::ArgMap& in, bool install, Ee* ee);
    void pullFor(DuOp* op, std::function<void(DuOp*, oci::RunnerResult<oci::ImageRecord>)> then);
    oci::PullRequest pullRequestFor(DuOp* op, std::uint64_t holdId, std::int64_t budgetKiB);
    void endPull(DuOp* op);
    void onInstallPulled(DuOp* op, oci::RunnerResult<oci::ImageRecord> r);
    std::optional<Error> duplicateOf(DuOp* op);
    Status addDu(DuOp* op, const DuIdentity& id, std::string& duPath, std::string& euPath);
    void onUpdatePulled(DuOp* op, oci::RunnerResult<oci::ImageRecord> r);
    Status writeUpdated(DuOp* o, const DuIdentity& id);
    void onUpdateCommitted(DuOp* o, const DuIdentity& id);
    void stopDuContainers(DuOp* op, const std::vector<std::string>& eus, std::function<void(DuOp*, oci::RunnerStatus)> then);
    void failOp(DuOp* op, Error error);
    void finishOp(DuOp* op, dm::ArgMap out);
    void pin(DuOp* op, std::string key);  // holds the image of `key` (eePath + digest hex) for op
    void unpin(DuOp* op);
    DuOp* newOp(const dm::CommandCall& call, dm::CommandDone done, OpKind kind);
    void journalPhase(DuOp* op, std::string_view phase);
    static void applyEuSettings(ExecutionUnit& eu, const DuArgs& args, bool install);
    void setDuStatus(const std::string& duPath, DuStatus status);

    // ---- EU lifecycle (eu_ops.cpp) ----
    Result<dm::ArgMap> setRequestedState(const dm::CommandCall& call);
    Result<dm::ArgMap> restartEu(const dm::CommandCall& call);
    Status request(Eu& eu, EuRequest req, bool autoStart);
    void startEu(Eu& eu, bool autoStart);
    void stopEu(Eu& eu, std::optional<EuFault> fault = std::nullopt, std::string faultMessage = {});
    void onStarted(const std::string& euPath, oci::RunnerResult<oci::ContainerInfo> r);
    void onContainerExit(const std::string& euPath, const oci::ContainerExit& exit);
    void forgetWatch(Eu& eu, Ee& ee);
    void settle(Eu& eu);
    void setStatus(Eu& eu, EuStatus s);
    void setFault(Eu& eu, EuFault f, const std::string& message);
    void setRetryCount(Eu& eu, std::uint32_t count);
    void setExitStatus(Eu& eu, const std::string& text);
    void setNextRestart(Eu& eu, const std::string& when);
    std::string duStatusText(const std::string& duPath);
    AutoRestartPolicy policyOf(const Eu& eu) const;
    // The container settings of an EU. Resolves its HostObjects again (see host_objects.h):
    // their fds go to `hosts`, in the order of settings.mounts.
    Result<oci::ContainerSettings> settingsFor(const Eu& eu, const Ee& ee, EuFault* fault,
                                               std::vector<ResolvedHostObject>* hosts);
    void scheduleAutoStart(const std::string& eePath);
    void pumpAutoStart();
    Eu* euAt(const std::string& path);

    EventLoop& loop_;
    Clock& clock_;
    dm::Engine& engine_;
    WorkerPool& pool_;
    SmmOptions options_;
    // InstallDU()/Update() pulls run here, never on pool_: slow downloads cannot delay
    // EU starts and stops. Declared before ops_ so their jobs are canceled before it joins.
    std::unique_ptr<WorkerPool> downloads_;
    std::uint64_t pullSeq_ = 0;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
    std::unique_ptr<Journal> journal_;
    Inventory inv_;  // the source of truth of DUs and EUs; persisted in journal_
    std::set<std::uint32_t> dirtyEus_;
    bool flushPosted_ = false;
    std::map<std::string, std::unique_ptr<Ee>> ees_;  // by path
    std::map<std::string, Eu> eus_;                    // by path
    std::map<DuOp*, std::unique_ptr<DuOp>> ops_;
    std::set<std::string> busyDus_;                    // DU paths with an operation running
    std::multiset<std::string> pins_;                  // eePath + digest of images in use by operations
    std::map<std::uint64_t, std::unique_ptr<Job>> cleanupJobs_;  // by cleanupSeq_; removed when done
    std::uint64_t cleanupSeq_ = 0;
    std::unique_ptr<Job> startJob_;
    std::deque<std::string> autoStartQueue_;
    std::string autoStartInFlight_;
    std::vector<InterruptedOperation> interrupted_;
    struct PendingEvent {
        std::string uuid, duPath, version, state, startTime;
        OpKind op;
        Error fault;
        bool completed;
    };
    std::vector<PendingEvent> recoveryEvents_;
    std::function<void()> onReady_;
    std::mt19937 rng_{std::random_device{}()};
    bool started_ = false;
    bool ready_ = false;
    bool stopped_ = false;
};

}  // namespace berth::smm
