// SoftwareModules: InstallDU(), DeploymentUnit.{i}.Update() and Uninstall().
//
// Each operation is journaled before its work starts and at every step (see
// journal.h); blocking steps (pull, container stop/remove, image removal) run on the
// worker pool. The data-model commit is the commit point: before it a failure (or a
// crash) leaves the DU as it was; after it only cleanup remains.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <sstream>

#include "berth/core/log.h"
#include "berth/oci/registry.h"
#include "berth/smm/faults.h"
#include "berth/smm/uuid.h"
#include "paths.h"
#include "binding/smm_impl.h"

namespace berth::smm {

namespace {

constexpr std::string_view kTag = "smm";


bool isDomainName(const std::string& s) {
    if (s.empty() || s.size() > 128 || s.find('.') == std::string::npos) return false;
    return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isalnum(c) || c == '.' || c == '-'; });
}
std::string hostOfUrl(const std::string& url) {
    auto s = url.find("://");
    if (s == std::string::npos) return {};
    std::string rest = url.substr(s + 3);
    rest = rest.substr(0, rest.find_first_of("/:?#"));
    return rest;
}
std::string fileStem(const std::string& url) {
    if (auto ref = oci::parseRegistryReference(url)) {  // docker://HOST/team/app:1.0 -> "app"
        return ref->repository.substr(ref->repository.find_last_of('/') + 1);
    }
    std::string f = url.substr(url.find_last_of('/') + 1);
    f = f.substr(0, f.find_first_of("?#"));
    for (const char* ext : {".tar.gz", ".tar.zst", ".tar.xz", ".tgz", ".tar"})
        if (f.size() > std::strlen(ext) && f.compare(f.size() - std::strlen(ext), std::strlen(ext), ext) == 0) {
            f.resize(f.size() - std::strlen(ext));
            break;
        }
    return f.empty() ? "du" : f;
}
// Compares dotted numeric versions; nullopt when either is not of that form.
std::optional<int> compareVersions(const std::string& a, const std::string& b) {
    auto parse = [](const std::string& s) -> std::optional<std::vector<long>> {
        std::vector<long> out;
        std::stringstream ss(s.rfind('v', 0) == 0 ? s.substr(1) : s);
        std::string part;
        while (std::getline(ss, part, '.')) {
            if (part.empty() || !std::all_of(part.begin(), part.end(), ::isdigit) || part.size() > 9) return std::nullopt;
            out.push_back(std::stol(part));
        }
        if (out.empty()) return std::nullopt;
        return out;
    };
    auto pa = parse(a), pb = parse(b);
    if (!pa || !pb) return std::nullopt;
    if (*pa < *pb) return -1;
    if (*pb < *pa) return 1;
    return 0;
}

DuIdentity identityOf(const oci::ImageRecord& rec, const std::string& url) {
    const auto& m = rec.metadata;
    DuIdentity id;
    id.name = m.name.empty() ? fileStem(url) : m.name;
    if (isDomainName(m.vendor)) id.vendor = m.vendor;
    else if (isDomainName(hostOfUrl(m.url))) id.vendor = hostOfUrl(m.url);
    else if (isDomainName(hostOfUrl(m.source))) id.vendor = hostOfUrl(m.source);
    else {
        auto it = m.annotations.find("org.berth.du.vendor");
        id.vendor = it != m.annotations.end() && isDomainName(it->second) ? it->second : "unknown.invalid";
    }
    id.version = m.version.empty() ? "sha256:" + hexOf(rec.manifestDigest).substr(0, 12) : m.version;
    id.name = id.name.substr(0, 256);
    id.version = id.version.substr(0, 32);
    id.description = m.description.substr(0, 256);
    return id;
}

}  // namespace

Result<DuArgs> SoftwareModulesImpl::parseDuArgs(const dm::ArgMap& in, bool install, Ee* ee) {
    DuArgsContext context;
    if (ee) {
        context.fileUrls = !ee->fileDirectories.empty();
        context.hostPrefixes = ee->hostPrefixes;
    }
    return smm::parseDuArgs(in, install, context);
}

// The EU settings InstallDU()/Update() arguments carry, into the model record.
void SoftwareModulesImpl::applyEuSettings(ExecutionUnit& eu, const DuArgs& a, bool install) {
    if (install) eu.shutdownDelay = a.shutdownDelay;
    if (install || a.hasResources) {
        eu.allocatedMemoryKiB = a.memKiB ? *a.memKiB : -1;
        eu.allocatedCpuPercent = a.cpuPercent ? *a.cpuPercent : -1;
    }
    if (install || a.hasAutoRestart) {
        eu.autoRestart = a.autoRestart;
        eu.retryCount = 0;
    }
    if (a.hasEnv) eu.env = a.env;
    if (a.hasHostObjects) {
        eu.hostObjects.clear();
        for (const auto& h : a.hostObjects) eu.hostObjects.push_back({h.source, h.destination, h.options});
    }
}

std::string SoftwareModulesImpl::duStatusText(const std::string& duPath) {
    const DeploymentUnit* du = duAt(duPath);
    if (!du) return "gone";
    if (busyDus_.count(duPath) && du->status == DuStatus::kInstalled) return "busy";
    return std::string(duStatusName(du->status));
}

void SoftwareModulesImpl::setDuStatus(const std::string& duPath, DuStatus status) {
    DeploymentUnit* du = duAt(duPath);
    if (!du) return;
    if (du->status != status) {
        du->status = status;
        saveDu(*du);
    }
    set(duPath + "Status", std::string(duStatusName(status)));
}

DuOp* SoftwareModulesImpl::newOp(const dm::CommandCall& call, dm::CommandDone done, OpKind kind) {
    auto op = std::make_unique<DuOp>();
    op->entry.kind = kind;
    op->entry.commandPath = call.commandPath;
    op->entry.commandKey = call.commandKey;
    op->requestPath = call.requestPath;
    op->entry.startedAt = std::chrono::duration_cast<std::chrono::seconds>(clock_.wallNow().time_since_epoch()).count();
    op->startTime = now();
    op->done = std::move(done);
    DuOp* raw = op.get();
    ops_[raw] = std::move(op);
    return raw;
}

void SoftwareModulesImpl::journalPhase(DuOp* op, std::string_view phase) {
    op->entry.phase = std::string(phase);
    if (auto st = journal_->update(op->entry); !st) BERTH_LOG_ERROR(kTag) << st.error().describe();
    hook(op->entry.kind, phase);
}

void SoftwareModulesImpl::failOp(DuOp* op, Error error) {
    endPull(op);
    BERTH_LOG_WARN(kTag) << opKindName(op->entry.kind) << " failed: " << error.describe();
    std::string duPath = op->duPath;
    if (op->entry.kind != OpKind::kInstall && !duPath.empty()) {
        busyDus_.erase(duPath);
        setDuStatus(duPath, DuStatus::kInstalled);
        // An update or uninstall stopped these EUs: start them again.
        for (const auto& p : op->stoppedEus)
            if (Eu* eu = euAt(p)) (void)request(*eu, EuRequest::kActive, false);
    }
    unpin(op);
    if (op->ee && !op->entry.newDigest.empty() && op->entry.newDigest != op->entry.oldDigest)
        cleanupImage(*op->ee, op->entry.newDigest);
    if (op->entry.id) (void)journal_->finish(op->entry.id);
    std::vector<std::string> eus = op->entry.kind == OpKind::kInstall || duPath.empty() ? std::vector<std::string>{} : eusOfDu(duPath);
    const DeploymentUnit* du = op->entry.kind == OpKind::kInstall || duPath.empty() ? nullptr : duAt(duPath);
    std::string version = du ? du->version : op->entry.version;
    raiseDuStateChange(op->entry.uuid, op->entry.kind == OpKind::kInstall ? std::string() : duPath, version, "Failed",
                       true, eus, op->startTime, now(), op->entry.kind, &error);
    auto done = std::move(op->done);
    ops_.erase(op);
    if (done) done(std::move(error));
}

// The pin is released by the key it was taken with: an operation may clear its
// newDigest afterwards (a duplicate install must not remove the installed image), and
// a pin released by that would stay forever and keep the image from ever being removed.
void SoftwareModulesImpl::pin(DuOp* op, std::string key) {
    unpin(op);
    pins_.insert(key);
    op->pin = std::move(key);
}

void SoftwareModulesImpl::unpin(DuOp* op) {
    if (op->pin.empty()) return;
    auto it = pins_.find(op->pin);
    if (it != pins_.end()) pins_.erase(it);
    op->pin.clear();
}

void SoftwareModulesImpl::finishOp(DuOp* op, dm::ArgMap out) {
    endPull(op);
    unpin(op);
    (void)journal_->finish(op->entry.id);
    if (!op->duPath.empty()) busyDus_.erase(op->duPath);
    auto done = std::move(op->done);
    ops_.erase(op);
    if (done) done(std::move(out));
}

// The pull of an operation: download settings of the ExecEnv, and with a disk budget
// (AllocatedDiskSpace >= 0) the space held while downloading and the admission check at commit.
oci::PullRequest SoftwareModulesImpl::pullRequestFor(DuOp* op, std::uint64_t holdId, std::int64_t budgetKiB) {
    auto rt = op->ee->rt;
    const Ee& ee = *op->ee;
    oci::PullRequest req;
    req.fetch.url = op->args.url;
    req.fetch.username = op->args.username;
    req.fetch.password = op->args.password;
    req.fetch.caFile = ee.caFile.empty() ? options_.caFile : ee.caFile;  // the ExecEnv's CA first
    req.fetch.maxBytes = options_.maxDownloadBytes;
    req.fetch.connectTimeout = options_.connectTimeout;
    req.fetch.deadline = ee.downloadDeadline;
    req.fetch.minBytesPerSecond = ee.downloadMinRate;
    req.fetch.rateWindow = ee.downloadRateWindow;
    req.fetch.fileDirectories = ee.fileDirectories;  // empty: file: URLs are off
    if (budgetKiB >= 0) {
        std::uint64_t budget = static_cast<std::uint64_t>(budgetKiB) * 1024;
        EeRuntime* r = rt.get();  // the job holds rt
        auto usedNow = [r] {
            std::uint64_t used = 0;
            if (auto l = r->images->list())
                for (const auto& rec : *l) used += rec.unpackedBytes;
            return used;
        };
        // Staging: the download holds its announced size before its body arrives.
        req.fetch.reserve = [r, holdId, budget, usedNow](std::uint64_t bytes) {
            return r->budget.hold(holdId, bytes, usedNow(), budget);
        };
        // Commit: decided under the store's commit lock, against the stored images and
        // what the other pulls in flight hold.
        req.admit = [r, holdId, budget, budgetKiB](const oci::ImageRecord& rec) -> oci::RunnerStatus {
            std::uint64_t used = 0;
            if (auto l = r->images->list())
                for (const auto& stored : *l) {
                    if (stored.manifestDigest == rec.manifestDigest) return {};  // already stored: no new space
                    used += stored.unpackedBytes;
                }
            if (r->budget.hold(holdId, rec.unpackedBytes, used, budget)) return {};
            std::uint64_t others = r->budget.held();
            std::uint64_t left = budget > used + others ? budget - used - others : 0;
            return oci::RunnerError(oci::ErrorKind::kQuotaExceeded,
                                    "the unpacked image needs " + std::to_string(rec.unpackedBytes / 1024) + " KiB but only " +
                                        std::to_string(left / 1024) + " KiB are left of the ExecEnv's disk budget (" +
                                        std::to_string(budgetKiB) + " KiB, counting other installs in progress)");
        };
    }
    return req;
}

void SoftwareModulesImpl::pullFor(DuOp* op, std::function<void(DuOp*, oci::RunnerResult<oci::ImageRecord>)> then) {
    if (op->ee->removalsRunning > 0) {
        // Wait for the ExecEnv's image removals (see cleanupImage). The placeholder job
        // keeps the operation cancellable meanwhile; cancelling or ending it cancels the token.
        op->job = std::make_unique<Job>(CancelToken{});
        CancelToken token = op->job->token();
        op->ee->afterRemovals.push_back([this, op, token, then = std::move(then)]() mutable {
            if (!token.cancelled()) pullFor(op, std::move(then));
        });
        return;
    }
    auto rt = op->ee->rt;
    std::int64_t budgetKiB = op->ee->allocatedDiskKiB;
    std::uint64_t holdId = ++pullSeq_;
    oci::PullRequest req = pullRequestFor(op, holdId, budgetKiB);
    op->job = downloads_->submit<oci::RunnerResult<oci::ImageRecord>>(
        [rt, req, budgetKiB, holdId](const CancelToken& cancel) mutable -> oci::RunnerResult<oci::ImageRecord> {
            std::uint64_t used = 0;
            if (auto l = rt->images->list())
                for (const auto& r : *l) used += r.unpackedBytes;
            std::uint64_t budget = budgetKiB >= 0 ? static_cast<std::uint64_t>(budgetKiB) * 1024 : 0;
            if (budgetKiB >= 0) {
                if (used + rt->budget.held() >= budget)
                    return oci::RunnerError(oci::ErrorKind::kQuotaExceeded,
                                            "the ExecEnv's disk budget of " + std::to_string(budgetKiB) +
                                                " KiB is used up (counting other installs in progress)");
                req.fetch.maxBytes = std::min<std::uint64_t>(req.fetch.maxBytes, budget - used);
            }
            auto rec = rt->images->pull(req, &cancel);
            rt->budget.release(holdId);  // committed (now counted as stored) or failed
            if (!rec && rec.error().kind == oci::ErrorKind::kQuotaExceeded && budgetKiB >= 0 &&
                rec.error().message.find("disk budget") == std::string::npos)
                return oci::RunnerError(oci::ErrorKind::kQuotaExceeded,
                                        "the download is larger than the " +
                                            std::to_string((budget > used ? budget - used : 0) / 1024) +
                                            " KiB left of the ExecEnv's disk budget (" + std::to_string(budgetKiB) + " KiB)");
            return rec;
        },
        [this, op, then = std::move(then)](oci::RunnerResult<oci::ImageRecord> r) {
            endPull(op);
            then(op, std::move(r));
        });
    op->pulling = true;
    ++op->ee->pullsRunning;
}

void SoftwareModulesImpl::endPull(DuOp* op) {
    if (!op->pulling || !op->ee) return;
    op->pulling = false;
    Ee& ee = *op->ee;
    if (--ee.pullsRunning > 0 || ee.afterPulls.empty()) return;
    // Decide on the deferred removals once whatever the pull leads to has run (pins, the
    // DU commit): cleanupImage checks again whether a DU or an operation uses the image.
    post([this, path = ee.path] {
        Ee* e = findEe(path);
        if (!e || e->pullsRunning > 0) return;
        auto digests = std::move(e->afterPulls);
        e->afterPulls.clear();
        for (const auto& d : digests) cleanupImage(*e, d);
    });
}

Status SoftwareModulesImpl::cancelDuOp(const dm::CommandCall& call) {
    for (auto& [raw, op] : ops_) {
        if (op->requestPath != call.requestPath || call.requestPath.empty()) continue;
        if (!op->job || op->entry.phase != kPhaseStarted)
            return Error(ErrorCode::kRequestDenied, call.commandPath +
                                                        " has passed the point where it can be canceled (the image is "
                                                        "already being put in place)");
        op->job.reset();  // the fetch sees the cancellation; its result is never delivered
        endPull(op.get());
        // Fail after the Cancel() command has returned: failing ends the Request row.
        post([this, raw = raw] {
            if (ops_.count(raw)) failOp(raw, Error(ErrorCode::kCommandCanceled, "canceled by the controller"));
        });
        return okStatus();
    }
    return Error(ErrorCode::kCommandFailure, call.commandPath + " is not running");
}

// ---- InstallDU() ------------------------------------------------------------------------

void SoftwareModulesImpl::installDu(const dm::CommandCall& call, dm::CommandDone done) {
    DuOp* op = newOp(call, std::move(done), OpKind::kInstall);
    auto failLater = [this, op](Error e) { post([this, op, e = std::move(e)]() mutable { failOp(op, std::move(e)); }); };
    if (!ready_) return failLater(Error(ErrorCode::kRequestDenied, "software module management is still starting; retry shortly"));
    auto uuidIt = call.input.find("UUID");
    if (uuidIt != call.input.end()) op->entry.uuid = uuidIt->second;
    auto eeRef = call.input.count("ExecutionEnvRef") ? call.input.at("ExecutionEnvRef") : std::string();
    Ee* ee = eeRef.empty() ? defaultEe() : findEe(eeRef);
    if (!ee)
        return failLater(Error(ErrorCode::kUnknownExecEnv,
                               eeRef.empty() ? "no ExecEnv is configured: define Device.SoftwareModules.ExecEnv.{i} in the "
                                               "configuration (see docs/software-modules.md)"
                                             : "ExecutionEnvRef '" + eeRef + "' names no ExecEnv"));
    op->ee = ee;
    op->entry.eePath = ee->path;
    if (!ee->enabled) return failLater(Error(ErrorCode::kInvalidValue, "ExecEnv " + ee->name + " is disabled"));
    if (!ee->usable())
        return failLater(Error(ErrorCode::kInvalidValue, "ExecEnv " + ee->name + " is not usable: " +
                                                             (ee->openError.empty() ? eeStatus(*ee) : ee->openError)));
    auto args = parseDuArgs(call.input, true, ee);
    if (!args) return failLater(args.error());
    op->args = std::move(*args);
    op->entry.url = op->args.url;
    if (auto id = journal_->begin(op->entry); !id) return failLater(id.error());
    hook(OpKind::kInstall, kPhaseStarted);
    pullFor(op, [this](DuOp* o, oci::RunnerResult<oci::ImageRecord> r) { onInstallPulled(o, std::move(r)); });
}

// An Install of a DU (UUID and version) that is installed or being committed in the
// same ExecEnv: 7226.
std::optional<Error> SoftwareModulesImpl::duplicateOf(DuOp* op) {
    Ee& ee = *op->ee;
    if (const DeploymentUnit* du = inv_.findDu(ee.instance, op->entry.uuid, op->entry.version)) {
        op->entry.newDigest.clear();  // the image may be the installed one: keep it
        return Error(ErrorCode::kDuplicateDeploymentUnit,
                     "deployment unit " + op->entry.uuid + " version " + op->entry.version +
                         " is already installed in ExecEnv " + ee.name + " as " + noDot(duPathOf(du->instance)) +
                         "; use Update() or install another version");
    }
    for (const auto& [p, o] : ops_)
        if (p != op && o->entry.kind == OpKind::kInstall && o->entry.phase == kPhaseCommitting && o->entry.uuid == op->entry.uuid &&
            o->entry.version == op->entry.version && o->ee == op->ee)
            return Error(ErrorCode::kDuplicateDeploymentUnit, "the same deployment unit is being installed");
    return std::nullopt;
}

// The DU and its EU: rows in one data-model transaction (the engine numbers them), then
// the records in the journal, the commit point. On failure nothing of them stays.
Status SoftwareModulesImpl::addDu(DuOp* op, const DuIdentity& id, std::string& duPath, std::string& euPath) {
    Ee& ee = *op->ee;
    std::string t = now();
    DeploymentUnit du;
    du.execEnv = ee.instance;
    du.uuid = op->entry.uuid;
    du.duid = hexOf(op->image.manifestDigest);
    du.name = id.name;
    du.url = op->args.url;
    du.description = id.description;
    du.vendor = id.vendor;
    du.version = id.version;
    du.moduleVersion = op->args.moduleVersion.substr(0, 32);
    du.installed = du.lastUpdate = t;
    ExecutionUnit eu;
    eu.execEnv = ee.instance;
    eu.name = id.name;
    eu.vendor = id.vendor;
    eu.version = id.version;
    eu.description = id.description;
    eu.creationTime = t;
    eu.runLevel = std::max<std::int64_t>(0, ee.initialEuRunLevel);
    applyEuSettings(eu, op->args, true);
    Status st = okStatus();
    {
        dm::Engine::Batch batch(engine_);
        auto d = engine_.addInstance(std::string(kDuTable));
        auto e = d ? engine_.addInstance(std::string(kEuTable)) : Result<std::string>(d.error());
        if (d) duPath = *d;
        if (e) euPath = *e;
        if (!d || !e) st = d ? e.error() : d.error();
        if (st) {
            du.instance = instanceNumber(duPath);
            eu.instance = instanceNumber(euPath);
            eu.deploymentUnit = du.instance;
            eu.euid = ee.name + "." + std::to_string(eu.instance);
            du.executionUnits = {eu.instance};
            st = writeEuRow(eu);
            if (st) st = writeEuTables(eu);
            if (st) st = writeDuRow(du);
        }
        Status c = batch.commit();
        if (st) st = c;
    }
    if (st) st = journal_->saveDu(du, {&eu});
    if (!st) return st;
    inv_.put(std::move(eu));
    inv_.put(std::move(du));
    return okStatus();
}

void SoftwareModulesImpl::onInstallPulled(DuOp* op, oci::RunnerResult<oci::ImageRecord> r) {
    op->job.reset();
    if (!r) return failOp(op, toUspError(r.error(), "download of " + op->args.url));
    Ee& ee = *op->ee;
    op->image = std::move(*r);
    DuIdentity id = identityOf(op->image, op->args.url);
    if (op->entry.uuid.empty()) op->entry.uuid = duUuid(id.name, id.vendor);
    op->entry.version = id.version;
    op->entry.newDigest = op->image.manifestDigest;
    std::string hex = hexOf(op->image.manifestDigest);
    pin(op, ee.path + hex);
    journalPhase(op, kPhasePulled);

    if (auto dup = duplicateOf(op)) return failOp(op, std::move(*dup));

    journalPhase(op, kPhaseCommitting);
    std::string duPath, euPath;
    Status st = addDu(op, id, duPath, euPath);
    if (!st) {
        dm::Engine::Batch batch(engine_);
        if (!euPath.empty()) (void)engine_.deleteInstance(euPath);
        if (!duPath.empty()) (void)engine_.deleteInstance(duPath);
        (void)batch.commit();
        return failOp(op, Error(ErrorCode::kInternalError, "cannot record the deployment unit: " + st.error().message));
    }
    op->duPath = duPath;
    journalPhase(op, kPhaseCommitted);
    if (!op->args.username.empty() || !op->args.password.empty())
        (void)journal_->saveCredentials(ee.path, op->entry.uuid, op->args.username, op->args.password);
    ee.storeBytes += op->image.unpackedBytes;
    Eu eu;
    eu.instance = instanceNumber(euPath);
    eu.path = euPath;
    eu.euid = record(eu).euid;
    eu.eePath = ee.path;
    eu.duPath = duPath;
    eus_.emplace(euPath, std::move(eu));

    std::string uuid = op->entry.uuid, version = op->entry.version, start = op->startTime;
    dm::ArgMap out{{"UUID", uuid}, {"Version", version}, {"ExecEnvRef", noDot(ee.path)}};
    op->duPath.clear();  // an install never made the DU busy
    finishOp(op, out);
    raiseDuStateChange(uuid, duPath, version, "Installed", true, {euPath}, start, now(), OpKind::kInstall, nullptr);
}

// ---- Update() -----------------------------------------------------------------------------

// What Update() and Uninstall() check first: the DU exists (its UUID and version go into
// the op's journal entry), start-up is over, and the DU is Installed with no operation on
// it. Otherwise the op fails on a later loop turn and the answer is null.
const DeploymentUnit* SoftwareModulesImpl::installedDu(DuOp* op, const std::string& du, std::string_view command) {
    auto failLater = [this, op](Error e) { post([this, op, e = std::move(e)]() mutable { failOp(op, std::move(e)); }); };
    const DeploymentUnit* m = duAt(du);
    if (!m) {
        failLater(Error(ErrorCode::kObjectDoesNotExist, "no such deployment unit", du));
        return nullptr;
    }
    op->entry.uuid = m->uuid;
    op->entry.version = m->version;
    if (!ready_) {
        failLater(Error(ErrorCode::kRequestDenied, "software module management is still starting; retry shortly"));
        return nullptr;
    }
    if (busyDus_.count(du) || m->status != DuStatus::kInstalled) {
        failLater(Error(ErrorCode::kInvalidDuState, "deployment unit " + noDot(du) + " is " +
                                                        std::string(duStatusName(m->status)) + "; " +
                                                        std::string(command) + " needs it Installed"));
        return nullptr;
    }
    return m;
}

void SoftwareModulesImpl::updateDu(const dm::CommandCall& call, dm::CommandDone done) {
    DuOp* op = newOp(call, std::move(done), OpKind::kUpdate);
    auto failLater = [this, op](Error e) { post([this, op, e = std::move(e)]() mutable { failOp(op, std::move(e)); }); };
    std::string du = call.objPath;
    const DeploymentUnit* m = installedDu(op, du, "Update()");
    if (!m) return;
    Ee* ee = findEe(std::string(kEeTable) + std::to_string(m->execEnv));
    if (!ee) return failLater(Error(ErrorCode::kUnknownExecEnv, "the deployment unit's ExecEnv no longer exists"));
    op->ee = ee;
    op->entry.eePath = ee->path;
    if (!ee->usable()) return failLater(Error(ErrorCode::kInvalidValue, "ExecEnv " + ee->name + " is " + eeStatus(*ee)));
    for (const auto& eu : eusOfDu(du))
        if (Eu* e = euAt(eu); e && e->busy)
            return failLater(Error(ErrorCode::kInvalidDuState, "execution unit " + noDot(eu) + " is " +
                                                                    std::string(euStatusName(e->status)) + "; retry when it settles"));
    auto args = parseDuArgs(call.input, false, ee);
    if (!args) return failLater(args.error());
    op->args = std::move(*args);
    if (op->args.url.empty()) {
        op->args.url = m->url;
        if (call.input.count("Username") == 0 || call.input.at("Username").empty()) {
            if (auto c = journal_->credentials(ee->path, op->entry.uuid)) {
                op->args.username = c->first;
                op->args.password = c->second;
            }
        }
    }
    op->duPath = du;
    op->entry.duInstance = static_cast<std::uint32_t>(std::stoul(du.substr(kDuTable.size())));
    op->entry.oldDigest = "sha256:" + m->duid;
    op->entry.url = op->args.url;
    if (auto id = journal_->begin(op->entry); !id) {
        op->duPath.clear();
        return failLater(id.error());
    }
    busyDus_.insert(du);
    setDuStatus(du, DuStatus::kUpdating);
    hook(OpKind::kUpdate, kPhaseStarted);
    pullFor(op, [this](DuOp* o, oci::RunnerResult<oci::ImageRecord> r) { onUpdatePulled(o, std::move(r)); });
}

void SoftwareModulesImpl::onUpdatePulled(DuOp* op, oci::RunnerResult<oci::ImageRecord> r) {
    op->job.reset();
    if (!r) return failOp(op, toUspError(r.error(), "download of " + op->args.url));
    Ee& ee = *op->ee;
    op->image = std::move(*r);
    DuIdentity id = identityOf(op->image, op->args.url);
    std::string oldVersion = op->entry.version;
    op->entry.newDigest = op->image.manifestDigest;
    pin(op, ee.path + hexOf(op->image.manifestDigest));
    op->entry.version = id.version;
    journalPhase(op, kPhasePulled);
    op->entry.version = oldVersion;  // reported on failure: the DU keeps it
    if (const DeploymentUnit* other = inv_.findDu(ee.instance, op->entry.uuid, id.version, instanceNumber(op->duPath))) {
        if (op->entry.newDigest == "sha256:" + other->duid) op->entry.newDigest.clear();
        return failOp(op, Error(ErrorCode::kDuplicateDeploymentUnit, "version " + id.version + " of " + op->entry.uuid +
                                                                         " is already installed as " +
                                                                         noDot(duPathOf(other->instance))));
    }
    if (auto cmp = compareVersions(id.version, oldVersion); cmp && *cmp < 0) {
        if (op->entry.newDigest == op->entry.oldDigest) op->entry.newDigest.clear();
        return failOp(op, Error(ErrorCode::kInvalidDuState, "version " + id.version + " is older than the installed " +
                                                                oldVersion + ": downgrades are refused; uninstall first"));
    }
    // Stop the DU's running EUs; they start again once the new image is in place.
    std::vector<std::string> running;
    for (const auto& eu : eusOfDu(op->duPath))
        if (Eu* e = euAt(eu); e && (e->live || e->status == EuStatus::kRestarting)) running.push_back(eu);
    op->stoppedEus = running;
    stopDuContainers(op, running, [this, id](DuOp* o, oci::RunnerStatus st) {
        o->job.reset();
        if (!st) return failOp(o, toUspError(st.error(), "stop of the execution units"));
        journalPhase(o, kPhaseStopped);
        journalPhase(o, kPhaseCommitting);
        Status s = writeUpdated(o, id);
        if (!s) return failOp(o, Error(ErrorCode::kInternalError, "cannot record the update: " + s.error().message));
        onUpdateCommitted(o, id);
    });
}

// The DU and its EUs at the new version: the records in the journal (the commit point),
// then their rows in one transaction.
Status SoftwareModulesImpl::writeUpdated(DuOp* o, const DuIdentity& id) {
    const DeploymentUnit* current = duAt(o->duPath);
    if (!current) return Error(ErrorCode::kObjectDoesNotExist, "the deployment unit went away", o->duPath);
    DeploymentUnit du = *current;
    du.duid = hexOf(o->image.manifestDigest);
    du.version = id.version;
    du.name = id.name;
    du.vendor = id.vendor;
    du.description = id.description;
    du.url = o->args.url;
    du.lastUpdate = now();
    if (!o->args.moduleVersion.empty()) du.moduleVersion = o->args.moduleVersion.substr(0, 32);
    du.status = DuStatus::kInstalled;
    std::vector<ExecutionUnit> eus;
    std::vector<const ExecutionUnit*> euPtrs;
    for (auto n : du.executionUnits)
        if (const ExecutionUnit* e = inv_.eu(n)) {
            ExecutionUnit eu = *e;
            eu.version = id.version;
            eu.vendor = id.vendor;
            eu.description = id.description;
            applyEuSettings(eu, o->args, false);
            eus.push_back(std::move(eu));
        }
    for (const auto& eu : eus) euPtrs.push_back(&eu);
    BERTH_TRY(journal_->saveDu(du, euPtrs));
    Status s = okStatus();
    {
        dm::Engine::Batch batch(engine_);
        for (const auto& eu : eus) {
            if (s) s = writeEuRow(eu);
            if (s && (o->args.hasEnv || o->args.hasHostObjects)) s = writeEuTables(eu);
        }
        if (s) s = writeDuRow(du);
        Status c = batch.commit();
        if (s) s = c;
    }
    // Past the commit point: rows that could not be written are made again from the
    // model at the next start.
    if (!s) BERTH_LOG_ERROR(kTag) << "cannot write the rows of " << o->duPath << ": " << s.error().describe();
    for (auto& eu : eus) inv_.put(std::move(eu));
    inv_.put(std::move(du));
    return okStatus();
}

// After the commit point of an Update: the old image goes, the stopped EUs start again.
void SoftwareModulesImpl::onUpdateCommitted(DuOp* o, const DuIdentity& id) {
    Ee& e = *o->ee;
    std::string du = o->duPath;
    o->entry.version = id.version;
    journalPhase(o, kPhaseCommitted);
    // The credentials this Update used are the ones the next Update without arguments
    // needs. (Comparing the URL with the DU's row, as before, never saved them: the row
    // already holds the new URL here.)
    if (!o->args.username.empty())
        (void)journal_->saveCredentials(e.path, o->entry.uuid, o->args.username, o->args.password);
    std::string oldDigest = o->entry.oldDigest;
    unpin(o);
    if (oldDigest != o->entry.newDigest) {
        e.storeBytes += o->image.unpackedBytes;
        cleanupImage(e, oldDigest);
    }
    std::vector<std::string> restart = o->stoppedEus;
    std::string uuid = o->entry.uuid, start = o->startTime;
    finishOp(o, dm::ArgMap{});
    for (const auto& p : restart)
        if (Eu* eu = euAt(p)) (void)request(*eu, EuRequest::kActive, false);
    raiseDuStateChange(uuid, du, id.version, "Installed", true, eusOfDu(du), start, now(), OpKind::kUpdate, nullptr);
}

void SoftwareModulesImpl::stopDuContainers(DuOp* op, const std::vector<std::string>& eus,
                                           std::function<void(DuOp*, oci::RunnerStatus)> then) {
    std::vector<std::pair<std::string, std::chrono::milliseconds>> targets;
    for (const auto& p : eus) {
        Eu* eu = euAt(p);
        if (!eu) continue;
        eu->backoff.reset();
        eu->healthy.reset();
        eu->pending.reset();
        eu->busy = true;
        eu->stopRequested = true;
        if (eu->live) setStatus(*eu, EuStatus::kStopping);
        targets.emplace_back(eu->euid, std::chrono::seconds(record(*eu).shutdownDelay));
    }
    auto rt = op->ee->rt;
    op->job = pool_.submit<oci::RunnerStatus>(
        [rt, targets](const CancelToken&) -> oci::RunnerStatus {
            for (const auto& [id, grace] : targets) {
                auto info = rt->containers->info(id);
                if (!info) continue;  // no container: nothing to stop
                if (auto s = rt->containers->stop(id, grace); !s) return s.error();
                if (auto s = rt->containers->remove(id, true); !s) return s;
            }
            return {};
        },
        [this, op, eus, then = std::move(then)](oci::RunnerStatus st) {
            for (const auto& p : eus)
                if (Eu* eu = euAt(p)) {
                    eu->busy = false;
                    eu->stopRequested = false;
                    if (st) {
                        forgetWatch(*eu, *op->ee);
                        eu->live = false;
                        setStatus(*eu, EuStatus::kIdle);
                    }
                }
            then(op, std::move(st));
        });
}

// ---- Uninstall() ----------------------------------------------------------------------------

void SoftwareModulesImpl::uninstallDu(const dm::CommandCall& call, dm::CommandDone done) {
    DuOp* op = newOp(call, std::move(done), OpKind::kUninstall);
    auto failLater = [this, op](Error e) { post([this, op, e = std::move(e)]() mutable { failOp(op, std::move(e)); }); };
    std::string du = call.objPath;
    const DeploymentUnit* m = installedDu(op, du, "Uninstall()");
    if (!m) return;
    Ee* ee = findEe(std::string(kEeTable) + std::to_string(m->execEnv));
    if (!ee || !ee->usable())
        return failLater(Error(ErrorCode::kInvalidValue, "the deployment unit's ExecEnv is not Up"));
    op->ee = ee;
    op->entry.eePath = ee->path;
    for (const auto& eu : eusOfDu(du))
        if (Eu* e = euAt(eu); e && e->busy)
            return failLater(Error(ErrorCode::kInvalidDuState, "execution unit " + noDot(eu) + " is " +
                                                                    std::string(euStatusName(e->status)) + "; retry when it settles"));
    op->duPath = du;
    op->entry.duInstance = static_cast<std::uint32_t>(std::stoul(du.substr(kDuTable.size())));
    op->entry.oldDigest = "sha256:" + m->duid;
    op->entry.url = m->url;
    if (auto id = journal_->begin(op->entry); !id) {
        op->duPath.clear();
        return failLater(id.error());
    }
    busyDus_.insert(du);
    setDuStatus(du, DuStatus::kUninstalling);
    hook(OpKind::kUninstall, kPhaseStarted);
    // TR-369: uninstalling stops the DU's EUs first.
    stopDuContainers(op, eusOfDu(du), [this](DuOp* o, oci::RunnerStatus st) {
        o->job.reset();
        if (!st) return failOp(o, toUspError(st.error(), "stop of the execution units"));
        journalPhase(o, kPhaseStopped);
        journalPhase(o, kPhaseCommitting);
        std::string du = o->duPath;
        std::vector<std::string> eus = eusOfDu(du);
        const DeploymentUnit* m = duAt(du);
        Status s = m ? journal_->removeDu(*m) : Status(Error(ErrorCode::kObjectDoesNotExist, "the deployment unit went away", du));
        if (!s) return failOp(o, Error(ErrorCode::kInternalError, "cannot remove the deployment unit: " + s.error().message));
        inv_.removeDu(m->instance);
        {
            dm::Engine::Batch batch(engine_);
            for (const auto& eu : eus)
                if (s) s = engine_.deleteInstance(eu);
            if (s) s = engine_.deleteInstance(du);
            Status c = batch.commit();
            if (s) s = c;
        }
        if (!s) BERTH_LOG_ERROR(kTag) << "cannot delete the rows of " << du << ": " << s.error().describe();
        for (const auto& eu : eus) eus_.erase(eu);
        journalPhase(o, kPhaseCommitted);
        Ee& e = *o->ee;
        if (!inv_.uuidInUse(e.instance, o->entry.uuid, 0)) (void)journal_->dropCredentials(e.path, o->entry.uuid);
        cleanupImage(e, o->entry.oldDigest);
        std::string uuid = o->entry.uuid, version = o->entry.version, start = o->startTime;
        finishOp(o, dm::ArgMap{});
        raiseDuStateChange(uuid, du, version, "Uninstalled", true, eus, start, now(), OpKind::kUninstall, nullptr);
    });
}

}  // namespace berth::smm
