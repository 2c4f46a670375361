// SoftwareModules: the ExecutionUnit lifecycle (start, stop, exits, AutoRestart,
// AutoStart). Decisions come from eu_state.h; this file carries them out. One
// runtime call per EU at a time (Eu::busy); requests meanwhile are deferred.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "berth/core/log.h"
#include "berth/smm/faults.h"
#include "paths.h"
#include "binding/smm_impl.h"

namespace berth::smm {

namespace {

constexpr std::string_view kTag = "smm";

}  // namespace

Eu* SoftwareModulesImpl::euAt(const std::string& path) {
    std::string p = path;
    if (!p.empty() && p.back() != '.') p += '.';
    auto it = eus_.find(p);
    return it == eus_.end() ? nullptr : &it->second;
}

// The model first, then its row (the engine raises no change for an equal value).
void SoftwareModulesImpl::setStatus(Eu& eu, EuStatus s) {
    eu.status = s;
    ExecutionUnit& r = record(eu);
    if (r.status != s) {
        r.status = s;
        persistEu(eu);
    }
    set(eu.path + "Status", std::string(euStatusName(s)));
}

void SoftwareModulesImpl::setFault(Eu& eu, EuFault f, const std::string& message) {
    ExecutionUnit& r = record(eu);
    std::string msg = f == EuFault::kNoFault ? std::string() : message.substr(0, 256);
    if (r.fault != f || r.faultMessage != msg) {
        r.fault = f;
        r.faultMessage = msg;
        persistEu(eu);
    }
    dm::Engine::Batch batch(engine_);
    set(eu.path + "ExecutionFaultCode", std::string(euFaultName(f)));
    set(eu.path + "ExecutionFaultMessage", msg);
    (void)batch.commit();
}

void SoftwareModulesImpl::setRetryCount(Eu& eu, std::uint32_t count) {
    ExecutionUnit& r = record(eu);
    if (r.retryCount != count) {
        r.retryCount = count;
        persistEu(eu);
    }
    set(eu.path + "AutoRestart.RetryCount", std::to_string(count));
}

void SoftwareModulesImpl::setExitStatus(Eu& eu, const std::string& text) {
    ExecutionUnit& r = record(eu);
    if (r.exitStatus == text) return;
    r.exitStatus = text;
    persistEu(eu);
    set(eu.path + "X_BERTH_ExitStatus", text);
}

AutoRestartPolicy SoftwareModulesImpl::policyOf(const Eu& eu) const { return inv_.eu(eu.instance)->autoRestart; }

Result<oci::ContainerSettings> SoftwareModulesImpl::settingsFor(const Eu& eu, const Ee& ee, EuFault* fault,
                                                                std::vector<ResolvedHostObject>* hosts) {
    oci::ContainerSettings s;
    *fault = EuFault::kUnstartable;
    const ExecutionUnit& rec = *inv_.eu(eu.instance);
    for (const auto& [k, v] : rec.env) s.extraEnv.push_back(k + "=" + v);
    for (const auto& h : rec.hostObjects) {
        oci::BindMount m;
        const std::string& source = h.source;
        m.destination = h.destination;
        auto options = parseHostObjectOptions(h.options);
        if (!options) return Error(options.error().code, "HostObject " + source + ": " + options.error().message);
        m.readOnly = options->readOnly;
        m.noExec = options->noExec;
        // The source is staged by the start job (the staging path is set there).
        auto fd = resolveHostObject(ee.hostPrefixes, source);
        if (!fd) {
            if (fd.error().message.find("does not exist") != std::string::npos) *fault = EuFault::kDependencyFailure;
            return Error(fd.error().code, "HostObject " + fd.error().message);
        }
        hosts->push_back(ResolvedHostObject{std::move(*fd), *options});
        s.mounts.push_back(std::move(m));
    }
    std::int64_t euMem = rec.allocatedMemoryKiB;
    std::int64_t eeMem = ee.allocatedMemoryKiB;
    std::int64_t mem = euMem > 0 ? euMem : eeMem;
    if (euMem > 0 && eeMem > 0) mem = std::min(euMem, eeMem);
    if (mem > 0) s.memoryLimitBytes = mem * 1024;
    std::int64_t euCpu = rec.allocatedCpuPercent;
    std::int64_t eeCpu = ee.allocatedCpuPercent;
    if (euCpu > 0) {
        long n = ::sysconf(_SC_NPROCESSORS_ONLN);
        s.cpus = euCpu / 100.0 * (eeCpu > 0 ? eeCpu / 100.0 : 1.0) * static_cast<double>(n > 0 ? n : 1);
    }
    s.pidsLimit = 1024;
    const DeploymentUnit* du = inv_.du(rec.deploymentUnit);
    s.annotations["org.berth.du.uuid"] = du ? du->uuid : std::string();
    s.annotations["org.berth.eu.path"] = noDot(eu.path);
    return s;
}

Result<dm::ArgMap> SoftwareModulesImpl::setRequestedState(const dm::CommandCall& call) {
    if (!ready_) return Error(ErrorCode::kRequestDenied, "software module management is still starting; retry shortly");
    Eu* eu = euAt(call.objPath);
    if (!eu) return Error(ErrorCode::kObjectDoesNotExist, "no such execution unit", call.objPath);
    Ee* ee = findEe(eu->eePath);
    if (!ee || !ee->enabled) return Error(ErrorCode::kInvalidValue, "the execution unit's ExecEnv is disabled");
    if (!ee->usable()) return Error(ErrorCode::kInvalidValue, "the execution unit's ExecEnv is " + eeStatus(*ee));
    if (busyDus_.count(eu->duPath))
        return Error(ErrorCode::kInvalidDuState, "the deployment unit is " + duStatusText(eu->duPath) + "; retry when it is Installed");
    auto it = call.input.find("RequestedState");
    EuRequest req = it != call.input.end() && it->second == "Active" ? EuRequest::kActive : EuRequest::kIdle;
    BERTH_TRY(request(*eu, req, false));
    return dm::ArgMap{};
}

Result<dm::ArgMap> SoftwareModulesImpl::restartEu(const dm::CommandCall& call) {
    if (!ready_) return Error(ErrorCode::kRequestDenied, "software module management is still starting; retry shortly");
    Eu* eu = euAt(call.objPath);
    if (!eu) return Error(ErrorCode::kObjectDoesNotExist, "no such execution unit", call.objPath);
    Ee* ee = findEe(eu->eePath);
    if (!ee || !ee->usable()) return Error(ErrorCode::kInvalidValue, "the execution unit's ExecEnv is not Up");
    if (busyDus_.count(eu->duPath))
        return Error(ErrorCode::kInvalidDuState, "the deployment unit is " + duStatusText(eu->duPath) + "; retry when it is Installed");
    BERTH_TRY(request(*eu, EuRequest::kRestart, false));
    setRetryCount(*eu, 0);
    return dm::ArgMap{};
}

Status SoftwareModulesImpl::request(Eu& eu, EuRequest req, bool autoStart) {
    EuDecision d = decideRequest(eu.status, eu.busy, req);
    switch (d.action) {
        case EuAction::kRefuse: return *d.error;
        case EuAction::kDefer: eu.pending = req; return okStatus();
        case EuAction::kNone: return okStatus();
        case EuAction::kStart: startEu(eu, autoStart); return okStatus();
        case EuAction::kStop: stopEu(eu); return okStatus();
        case EuAction::kRestart:
            eu.pending = EuRequest::kActive;  // started again once stopped
            stopEu(eu);
            return okStatus();
        case EuAction::kCancelBackoff:
            eu.backoff.reset();
            setNextRestart(eu, "0001-01-01T00:00:00Z");
            setStatus(eu, EuStatus::kIdle);
            return okStatus();
    }
    return okStatus();
}

void SoftwareModulesImpl::startEu(Eu& eu, bool autoStart) {
    Ee* ee = findEe(eu.eePath);
    eu.backoff.reset();
    if (!ee || !ee->usable()) {
        setFault(eu, EuFault::kUnstartable, "the ExecEnv is not Up");
        setStatus(eu, EuStatus::kIdle);
        return;
    }
    EuFault fault = EuFault::kUnstartable;
    auto hosts = std::make_shared<std::vector<ResolvedHostObject>>();
    auto settings = settingsFor(eu, *ee, &fault, hosts.get());
    if (!settings) {
        setFault(eu, fault, settings.error().message);
        setStatus(eu, EuStatus::kIdle);
        return;
    }
    const DeploymentUnit* du = inv_.du(record(eu).deploymentUnit);
    std::string digest = du ? du->duid : std::string();
    eu.autoStarted = autoStart;
    eu.busy = true;
    eu.stopRequested = false;
    auto rt = ee->rt;
    std::string id = eu.euid, path = eu.path;
    oci::ContainerSettings s = std::move(*settings);
    eu.job = pool_.submit<oci::RunnerResult<oci::ContainerInfo>>(
        [rt, id, digest, s, hosts](const CancelToken&) mutable -> oci::RunnerResult<oci::ContainerInfo> {
            // HostObjects: mount what was resolved on private staging mount points and let
            // the runtime bind those; once it has made the container they are not needed.
            std::string staging;
            if (!hosts->empty()) {
                staging = rt->hostObjectDir + "/" + id;
                clearHostObjectStaging(staging);
                std::error_code ec;
                std::filesystem::create_directories(rt->hostObjectDir, ec);
                if (::mkdir(staging.c_str(), 0700) != 0)
                    return oci::RunnerError(oci::ErrorKind::kIoError, "cannot make the HostObject staging directory", staging);
                for (std::size_t i = 0; i < hosts->size(); ++i) {
                    std::string target = staging + "/" + std::to_string(i + 1);
                    if (auto st = stageHostObject((*hosts)[i].fd.get(), target, (*hosts)[i].options); !st) {
                        clearHostObjectStaging(staging);
                        return oci::RunnerError(oci::ErrorKind::kIoError, "HostObject: " + st.error().message, target);
                    }
                    s.mounts[i].source = target;
                }
                hosts->clear();  // the fds are not needed any more
            }
            auto r = rt->containers->run(id, digest, s);
            if (!r && r.error().kind == oci::ErrorKind::kConflict) {
                (void)rt->containers->remove(id, true);  // left over from an interrupted stop
                r = rt->containers->run(id, digest, s);
            }
            if (!staging.empty()) clearHostObjectStaging(staging);
            return r;
        },
        [this, path](oci::RunnerResult<oci::ContainerInfo> r) { onStarted(path, std::move(r)); });
    // Committed while the runtime already works on the worker (the commit's fsync is not on
    // the start's path); the result is posted to this thread, so it always comes after.
    {
        dm::Engine::Batch batch(engine_);  // one database commit for the three changes
        setFault(eu, EuFault::kNoFault, "");
        setExitStatus(eu, "");
        setStatus(eu, EuStatus::kStarting);
        (void)batch.commit();
    }
}

void SoftwareModulesImpl::onStarted(const std::string& path, oci::RunnerResult<oci::ContainerInfo> r) {
    Eu* eu = euAt(path);
    if (!eu) return;
    eu->job.reset();
    eu->busy = false;
    Ee* ee = findEe(eu->eePath);
    if (!r || !ee || !ee->watcher) {
        std::string msg = r ? "the ExecEnv went away" : toUspError(r.error(), "start of the container").message;
        BERTH_LOG_WARN(kTag) << "cannot start " << eu->euid << ": " << msg;
        setFault(*eu, eu->autoStarted ? EuFault::kFailureOnAutoStart : EuFault::kFailureOnStart, msg);
        setStatus(*eu, EuStatus::kIdle);
        settle(*eu);
        pumpAutoStart();
        return;
    }
    eu->live = true;
    eu->pid = r->pid;
    eu->cgroupPath = r->record.cgroupPath;
    eu->activeSince = clock_.now();
    eu->cpuAtStart = 0;
    if (auto f = ee->rt->containers->cgroupFigures(eu->cgroupPath)) eu->cpuAtStart = f->cpuNanos;
    Subreaper::claim(eu->pid);  // the watcher reaps it (with its exit status), not the sweep
    auto w = ee->watcher->watch(eu->euid, eu->pid, eu->cgroupPath,
                                [this, path](const oci::ContainerExit& ex) { onContainerExit(path, ex); });
    setStatus(*eu, EuStatus::kActive);
    AutoRestartPolicy policy = policyOf(*eu);
    if (policy.resetPeriodSeconds > 0) {
        eu->healthy = loop_.createTimer([this, path] {
            if (Eu* e = euAt(path)) setRetryCount(*e, 0);
        });
        eu->healthy->start(std::chrono::seconds(policy.resetPeriodSeconds));
    }
    if (!w) {
        // The init is already gone (reaped before it could be watched): an immediate exit.
        Subreaper::release(eu->pid);
        eu->pid = 0;
        oci::ContainerExit ex;
        ex.id = eu->euid;
        onContainerExit(path, ex);
        pumpAutoStart();
        return;
    }
    settle(*eu);
    pumpAutoStart();
}

void SoftwareModulesImpl::setNextRestart(Eu& eu, const std::string& when) {
    ExecutionUnit& r = record(eu);
    if (r.nextRestart != when) {
        r.nextRestart = when;
        persistEu(eu);
    }
    set(eu.path + "AutoRestart.NextRestart", when);
}

void SoftwareModulesImpl::forgetWatch(Eu& eu, Ee& ee) {
    if (eu.pid <= 0) return;
    // The container is gone; reap its init if it was our child and the watcher has
    // not run yet (it was claimed, so the Subreaper sweep left it alone).
    siginfo_t si{};
    (void)::waitid(P_PID, static_cast<id_t>(eu.pid), &si, WEXITED | WNOHANG);
    if (ee.watcher) ee.watcher->unwatch(eu.euid);
    Subreaper::release(eu.pid);
    eu.pid = 0;
}

void SoftwareModulesImpl::stopEu(Eu& eu, std::optional<EuFault> fault, std::string faultMessage) {
    Ee* ee = findEe(eu.eePath);
    if (!ee || !ee->rt || !ee->rt->containers) return;
    eu.backoff.reset();
    eu.healthy.reset();
    eu.busy = true;
    eu.stopRequested = true;
    setStatus(eu, eu.pending == EuRequest::kActive ? EuStatus::kRestarting : EuStatus::kStopping);
    auto rt = ee->rt;
    std::string id = eu.euid, path = eu.path;
    auto grace = std::chrono::seconds(record(eu).shutdownDelay);
    eu.job = pool_.submit<oci::RunnerStatus>(
        [rt, id, grace](const CancelToken&) -> oci::RunnerStatus {
            if (!rt->containers->info(id)) return {};
            if (auto s = rt->containers->stop(id, grace); !s) return s.error();
            return rt->containers->remove(id, true);
        },
        [this, path, fault, faultMessage](oci::RunnerStatus st) {
            Eu* e = euAt(path);
            if (!e) return;
            e->job.reset();
            e->busy = false;
            e->stopRequested = false;
            if (!st) {
                e->pending.reset();
                setFault(*e, EuFault::kFailureOnStop, toUspError(st.error(), "stop of the container").message);
                setStatus(*e, EuStatus::kActive);
                return;
            }
            if (Ee* ee2 = findEe(e->eePath)) forgetWatch(*e, *ee2);
            e->live = false;
            if (fault) setFault(*e, *fault, faultMessage);
            if (e->pending != EuRequest::kActive) setStatus(*e, EuStatus::kIdle);
            settle(*e);
        });
}

void SoftwareModulesImpl::onContainerExit(const std::string& path, const oci::ContainerExit& exit) {
    Eu* eu = euAt(path);
    if (!eu) return;
    if (eu->pid > 0) Subreaper::release(eu->pid);
    eu->pid = 0;
    if (eu->stopRequested || eu->busy) return;  // a stop is under way; it settles the EU
    Ee* ee = findEe(eu->eePath);
    ExitFacts f;
    f.withinStartGrace = clock_.now() - eu->activeSince < options_.startGrace;
    f.autoStarted = eu->autoStarted;
    f.status = exit.status;
    f.oomKilled = exit.oomKilled;
    f.retryCount = record(*eu).retryCount;
    std::int64_t mem = record(*eu).allocatedMemoryKiB;
    if (ee) {
        std::int64_t eeMem = ee->allocatedMemoryKiB;
        if (mem <= 0 || (eeMem > 0 && eeMem < mem)) mem = eeMem;
    }
    f.memoryLimitKiB = mem;
    AutoRestartPolicy policy = policyOf(*eu);
    ExitDecision d = decideExit(f, policy);
    BERTH_LOG_INFO(kTag) << "execution unit " << eu->euid << " ended: "
                         << (exit.status ? exit.status->describe() : std::string("status unknown"))
                         << (exit.oomKilled ? " (OOM)" : "") << (d.restart ? "; restarting" : "");
    std::string exitText = exit.status ? exit.status->describe() : "unknown";
    if (exit.oomKilled) exitText += ", OOM-killed";
    setExitStatus(*eu, exitText.substr(0, 64));
    setFault(*eu, d.fault, d.message);
    eu->healthy.reset();
    setStatus(*eu, d.next);
    // The exited container is removed; a restart creates it afresh.
    eu->busy = true;
    auto rt = ee && ee->rt ? ee->rt : nullptr;
    std::string id = eu->euid;
    bool restart = d.restart;
    eu->job = pool_.submit<bool>(
        [rt, id](const CancelToken&) {
            if (rt) (void)rt->containers->remove(id, true);
            return true;
        },
        [this, path, restart, policy](bool) {
            Eu* e = euAt(path);
            if (!e) return;
            e->job.reset();
            e->busy = false;
            e->live = false;
            if (restart && e->status == EuStatus::kRestarting && !e->pending) {
                auto retry = record(*e).retryCount;
                std::uniform_real_distribution<double> dist(0.0, 1.0);
                auto delay = autoRestartDelay(policy, retry, dist(rng_));
                setNextRestart(*e, formatDateTime(clock_.wallNow() +
                                                  std::chrono::duration_cast<std::chrono::system_clock::duration>(delay)));
                e->backoff = loop_.createTimer([this, path] {
                    Eu* x = euAt(path);
                    if (!x || x->status != EuStatus::kRestarting || x->busy) return;
                    dm::Engine::Batch batch(engine_);
                    setRetryCount(*x, record(*x).retryCount + 1);
                    ExecutionUnit& r = record(*x);
                    r.lastRestarted = now();
                    set(path + "AutoRestart.LastRestarted", r.lastRestarted);
                    setNextRestart(*x, "0001-01-01T00:00:00Z");
                    (void)batch.commit();
                    startEu(*x, true);
                });
                e->backoff->start(delay);
                return;
            }
            if (e->status == EuStatus::kRestarting) setStatus(*e, EuStatus::kIdle);
            settle(*e);
        });
}

void SoftwareModulesImpl::settle(Eu& eu) {
    if (!eu.pending || eu.busy) return;
    EuRequest p = *eu.pending;
    eu.pending.reset();
    auto st = request(eu, p, false);
    if (!st) BERTH_LOG_WARN(kTag) << "deferred request for " << eu.euid << ": " << st.error().describe();
}

void SoftwareModulesImpl::scheduleAutoStart(const std::string& eePath) {
    Ee* ee = findEe(eePath);
    if (!ee || !ee->usable() || !ready_) return;
    std::int64_t current = ee->currentRunLevel;
    std::vector<std::pair<std::pair<std::int64_t, std::uint64_t>, std::string>> due;
    for (const auto& [path, eu] : eus_) {
        if (eu.eePath != eePath || eu.status != EuStatus::kIdle || eu.busy) continue;
        const ExecutionUnit& r = *inv_.eu(eu.instance);
        if (!r.autoStart) continue;
        std::int64_t level = r.runLevel;
        if (current >= 0 && level > current) continue;
        due.push_back({{level, instanceNumber(path)}, path});
    }
    std::sort(due.begin(), due.end());
    for (const auto& [key, path] : due)
        if (std::find(autoStartQueue_.begin(), autoStartQueue_.end(), path) == autoStartQueue_.end())
            autoStartQueue_.push_back(path);
    pumpAutoStart();
}

// One AutoStart at a time, in RunLevel order: the next starts when the previous one
// is Active (or failed).
void SoftwareModulesImpl::pumpAutoStart() {
    if (!autoStartInFlight_.empty()) {
        Eu* cur = euAt(autoStartInFlight_);
        if (cur && cur->busy && cur->status == EuStatus::kStarting) return;
        autoStartInFlight_.clear();
    }
    while (!autoStartQueue_.empty()) {
        std::string path = autoStartQueue_.front();
        autoStartQueue_.pop_front();
        Eu* eu = euAt(path);
        if (!eu || eu->status != EuStatus::kIdle || eu->busy || busyDus_.count(eu->duPath)) continue;
        (void)request(*eu, EuRequest::kActive, true);
        if (eu->busy) {
            autoStartInFlight_ = path;
            return;
        }
    }
}

}  // namespace berth::smm
