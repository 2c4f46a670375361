// SoftwareModules start-up: the journal's interrupted operations, the EUs of the data
// model, and per ExecEnv (on a worker) the runtime opened and reconciled with the rows.
#include "berth/core/log.h"
#include "berth/smm/faults.h"
#include "paths.h"
#include "binding/smm_impl.h"

namespace berth::smm {

namespace {
constexpr std::string_view kTag = "smm";
}  // namespace

// What start() hands to the worker for one ExecEnv.
struct ReconcileInput {
    std::shared_ptr<EeRuntime> rt;
    std::set<std::string> digests;  // DUIDs of its DUs
    std::set<std::string> euids;
    bool skip = false;  // could not be opened
};

struct ReconcileResult {
    struct PerEe {
        std::shared_ptr<EeRuntime> rt;
        std::string error;
        std::map<std::string, std::pair<pid_t, std::string>> adopted;  // euid -> (pid, cgroup)
        std::vector<std::string> removedContainers;
        std::vector<std::string> removedImages;
        std::uint64_t storeBytes = 0;
    };
    std::map<std::string, PerEe> ees;
};


// ---- start-up ---------------------------------------------------------------------------

void SoftwareModulesImpl::recoverJournal() {
    auto pending = journal_->pending();
    if (!pending) {
        BERTH_LOG_ERROR(kTag) << "cannot read the operation journal: " << pending.error().describe();
        return;
    }
    for (const auto& e : *pending) {
        // The DU the operation touched, as the inventory holds it.
        const DeploymentUnit* du = nullptr;
        if (e.kind == OpKind::kInstall) {
            if (!e.uuid.empty()) du = inv_.findDu(instanceNumber(e.eePath), e.uuid, e.version);
        } else {
            du = inv_.du(e.duInstance);
        }
        DuSnapshot snap;
        if (du) {
            snap.exists = true;
            snap.duid = du->duid;
            snap.status = std::string(duStatusName(du->status));
        }
        std::uint32_t duInstance = du ? du->instance : 0;
        RecoveryDecision d = decideRecovery(e, snap);
        using A = RecoveryDecision::DmAction;
        if (d.dmAction == A::kDeleteDu) {
            if (auto st = journal_->removeDu(*du); !st) BERTH_LOG_ERROR(kTag) << st.error().describe();
            inv_.removeDu(duInstance);
        } else if (d.dmAction == A::kMarkInstalled) {
            DeploymentUnit* m = inv_.du(duInstance);
            m->status = DuStatus::kInstalled;
            saveDu(*m);
        }
        BERTH_LOG_WARN(kTag) << opKindName(e.kind) << " (" << e.commandPath << ", key '" << e.commandKey
                             << "') was interrupted; " << (d.completed ? "it had completed" : d.message);
        InterruptedOperation io;
        io.commandPath = e.commandPath;
        io.commandKey = e.commandKey;
        io.operation = std::string(opKindName(e.kind));
        io.outcome = d.completed ? Result<dm::ArgMap>(dm::ArgMap{}) : Result<dm::ArgMap>(Error(d.code, d.message));
        interrupted_.push_back(std::move(io));
        std::string duPath = duInstance ? duPathOf(duInstance) : std::string();
        if (e.kind == OpKind::kUninstall && d.completed) duPath = duPathOf(e.duInstance);
        PendingEvent pe{e.uuid, duPath, e.version, d.currentState, formatDateTime(Clock::WallTime(std::chrono::seconds(e.startedAt))),
                        e.kind, Error(d.code, d.message), d.completed};
        recoveryEvents_.push_back(std::move(pe));
    }
}

namespace {

// On a worker: opens the ExecEnv's image repository and runtime. False (with res.error)
// when it cannot be opened.
bool openRuntime(EeRuntime& rt, const oci::OciEnvironmentOpener& opener, ReconcileResult::PerEe& res) {
    oci::OciEnvironmentOptions eo;
    eo.storageDir = rt.storageDir;
    eo.stateDir = rt.stateDir;
    eo.kind = rt.kind;
    eo.runtimeBinary = rt.runtimeBinary;
    eo.cgroupParent = rt.cgroupParent;
    eo.runtimeTimeout = rt.runtimeTimeout;
    eo.security = rt.security;
    eo.seccompProfile = rt.seccompProfile;
    auto env = opener ? opener(eo) : oci::openOciEnvironment(eo);
    if (!env) {
        res.error = env.error().message;
        return false;
    }
    rt.images = std::move(env->images);
    rt.containers = std::move(env->containers);
    rt.runtimeVersion = env->runtimeVersion;
    rt.specVersion = env->specVersion;
    return true;
}

// On a worker: removes the images no DU names and the containers no EU knows, and
// lists the running containers of known EUs for adoption.
void reconcileEe(const ReconcileInput& in, const oci::OciEnvironmentOpener& opener, ReconcileResult::PerEe& res) {
    EeRuntime& rt = *in.rt;
    // HostObject staging mounts left by a crash during a start: nothing uses them.
    sweepHostObjectStaging(rt.hostObjectDir);
    if (!openRuntime(rt, opener, res)) return;
    // Images no DU names: left by an interrupted install/update/uninstall.
    if (auto images = rt.images->list()) {
        for (const auto& rec : *images) {
            std::string hex = hexOf(rec.manifestDigest);
            if (in.digests.count(hex)) {
                res.storeBytes += rec.unpackedBytes;
                continue;
            }
            if (rt.images->remove(rec.manifestDigest)) res.removedImages.push_back(rec.manifestDigest);
        }
    }
    // Containers: adopt the running ones of known EUs; remove everything else.
    if (auto list = rt.containers->list()) {
        for (const auto& info : *list) {
            const std::string& id = info.record.id;
            if (in.euids.count(id) && info.status == "running" && info.pid > 0) {
                res.adopted[id] = {info.pid, info.record.cgroupPath};
                continue;
            }
            if (!in.euids.count(id)) res.removedContainers.push_back(id);
            if (info.status == "running") (void)rt.containers->stop(id, std::chrono::seconds(2));
            (void)rt.containers->remove(id, true);
        }
    }
    (void)rt.images->collectGarbage();
}

}  // namespace

Status SoftwareModulesImpl::start(std::function<void()> ready) {
    if (started_) return Error(ErrorCode::kInternalError, "SoftwareModules::start() called twice");
    started_ = true;
    onReady_ = std::move(ready);
    loadEes();
    loadInventory();
    recoverJournal();
    loadEus();
    syncRows();
    std::map<std::string, ReconcileInput> inputs = reconcileInputs();
    oci::OciEnvironmentOpener opener = options_.openEnvironment;
    startJob_ = pool_.submit<ReconcileResult>(
        [inputs, opener](const CancelToken& cancel) {
            ReconcileResult out;
            for (const auto& [path, in] : inputs) {
                auto& res = out.ees[path];
                res.rt = in.rt;
                if (in.skip || cancel.cancelled()) continue;
                reconcileEe(in, opener, res);
            }
            return out;
        },
        [this](ReconcileResult r) { afterReconcile(std::move(r)); });
    return okStatus();
}

void SoftwareModulesImpl::loadEus() {
    // The model is the record: its EUs, and the DU states a crash left behind fixed.
    for (const auto& [n, entry] : inv_.dus()) {
        DeploymentUnit& du = *inv_.du(n);
        if (du.status == DuStatus::kInstalled) continue;
        du.status = DuStatus::kInstalled;
        saveDu(du);
    }
    for (const auto& [n, du] : inv_.dus())
        for (auto e : du.executionUnits) {
            const ExecutionUnit* r = inv_.eu(e);
            if (!r) continue;
            Eu eu;
            eu.instance = e;
            eu.path = euPathOf(e);
            eu.euid = r->euid;
            eu.eePath = std::string(kEeTable) + std::to_string(du.execEnv) + ".";
            eu.duPath = duPathOf(n);
            // Idle until the reconciliation says otherwise; the record keeps what the
            // EU was (afterReconcile faults an Active one whose container is gone).
            eu.status = EuStatus::kIdle;
            eus_.emplace(eu.path, std::move(eu));
        }
}

std::map<std::string, ReconcileInput> SoftwareModulesImpl::reconcileInputs() {
    // Per ExecEnv: what the rows reference, for the reconciliation on the workers.
    std::map<std::string, ReconcileInput> inputs;
    for (auto& [path, ee] : ees_) {
        ReconcileInput& in = inputs[path];
        in.rt = ee->rt;
        in.skip = !ee->openError.empty();
        for (const auto& [n, du] : inv_.dus())
            if (du.execEnv == ee->instance) in.digests.insert(du.duid);
        for (const auto& [p, eu] : eus_)
            if (eu.eePath == path) in.euids.insert(eu.euid);
    }
    return inputs;
}

void SoftwareModulesImpl::afterReconcile(ReconcileResult result) {
    startJob_.reset();
    for (auto& [path, res] : result.ees) {
        Ee* ee = findEe(path);
        if (!ee) continue;
        if (ee->openError.empty() && !res.error.empty()) ee->openError = res.error;
        if (!ee->openError.empty()) {
            BERTH_LOG_ERROR(kTag) << "ExecEnv " << ee->name << ": " << ee->openError;
            ee->rt.reset();
            refreshEeStatus(*ee);
            continue;
        }
        ee->watcher = ee->rt->containers->makeWatcher(loop_);
        ee->storeBytes = res.storeBytes;
        for (const auto& id : res.removedContainers)
            BERTH_LOG_WARN(kTag) << "ExecEnv " << ee->name << ": removed container " << id << " that no execution unit knows";
        for (const auto& d : res.removedImages)
            BERTH_LOG_WARN(kTag) << "ExecEnv " << ee->name << ": removed image " << d << " that no deployment unit names";
        registerExecEnvClass(*ee);
        ee->currentRunLevel = ee->initialRunLevel;
        set(path + "CurrentRunLevel", std::to_string(ee->currentRunLevel));
        applyEeLimits(*ee);
        refreshEeStatus(*ee);
        for (auto& [euPath, eu] : eus_) {
            if (eu.eePath != path) continue;
            EuStatus was = record(eu).status;
            auto a = res.adopted.find(eu.euid);
            if (a != res.adopted.end()) {
                eu.live = true;
                eu.pid = a->second.first;
                eu.cgroupPath = a->second.second;
                eu.activeSince = clock_.now();
                std::string p = euPath;
                auto w = ee->watcher->watch(eu.euid, eu.pid, eu.cgroupPath,
                                            [this, p](const oci::ContainerExit& ex) { onContainerExit(p, ex); });
                if (w) {
                    setStatus(eu, EuStatus::kActive);
                    BERTH_LOG_INFO(kTag) << "adopted running container " << eu.euid << " (pid " << eu.pid << ")";
                    continue;
                }
                eu.live = false;
                eu.pid = 0;
            }
            if (was != EuStatus::kIdle) {
                setStatus(eu, EuStatus::kIdle);
                if (was == EuStatus::kActive)
                    setFault(eu, EuFault::kFailureWhileActive, "the container was no longer running when the agent started");
            }
        }
    }
    for (const auto& pe : recoveryEvents_) {
        std::vector<std::string> eus;
        raiseDuStateChange(pe.uuid, pe.duPath, pe.version, pe.state, true, eus, pe.startTime, now(), pe.op,
                           pe.completed ? nullptr : &pe.fault);
    }
    recoveryEvents_.clear();
    if (auto pending = journal_->pending())
        for (const auto& e : *pending) (void)journal_->finish(e.id);
    ready_ = true;
    for (auto& [path, ee] : ees_) scheduleAutoStart(path);
    if (onReady_) {
        auto cb = std::move(onReady_);
        cb();
    }
}

void SoftwareModulesImpl::stop() {
    if (stopped_) return;
    stopped_ = true;
    ready_ = false;
    flushEus();
    startJob_.reset();
    cleanupJobs_.clear();
    // Operations in flight stay in the journal and are ended by the next start().
    ops_.clear();
    busyDus_.clear();
    for (auto& [path, eu] : eus_) {
        eu.job.reset();
        eu.backoff.reset();
        eu.healthy.reset();
        if (eu.pid > 0) Subreaper::release(eu.pid);
    }
    for (auto& [path, ee] : ees_) ee->watcher.reset();
    autoStartQueue_.clear();
    *alive_ = false;
    alive_ = std::make_shared<bool>(false);
}

void SoftwareModulesImpl::onOrphanReaped(pid_t pid, const ExitStatus& status) {
    for (auto& [path, ee] : ees_)
        if (ee->watcher && ee->watcher->onReaped(pid, status)) return;
}

}  // namespace berth::smm
