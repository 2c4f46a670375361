// SoftwareModules: setup, ExecEnvs, start-up recovery and computed parameters.
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "berth/core/log.h"
#include "berth/oci/cgroup.h"
#include "berth/oci/runtime.h"
#include "berth/smm/faults.h"
#include "paths.h"
#include "binding/smm_impl.h"

namespace berth::smm {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kTag = "smm";
constexpr char kUnknownTime[] = "0001-01-01T00:00:00Z";

long cpuCount() {
    long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}
std::int64_t memAvailableKiB() {
    std::ifstream in("/proc/meminfo");
    std::string key;
    std::int64_t value = 0;
    std::string unit;
    while (in >> key >> value >> unit)
        if (key == "MemAvailable:") return value;
    return -1;
}

// A provider for the engine once this object is gone (the engine may outlive it).
class DetachedProvider final : public dm::Provider {
public:
    Result<std::string> get(const dm::ObjectView&, std::string_view param) override {
        if (param == "ActiveExecutionUnits") return std::string();
        return std::string("0");
    }
};
DetachedProvider gDetached;

}  // namespace

Result<std::unique_ptr<SoftwareModules>> SoftwareModules::create(EventLoop& loop, Clock& clock, dm::Engine& engine,
                                                                 WorkerPool& pool, SmmOptions options) {
    auto impl = std::make_unique<SoftwareModulesImpl>(loop, clock, engine, pool, std::move(options));
    BERTH_TRY(impl->init());
    return std::unique_ptr<SoftwareModules>(std::move(impl));
}

SoftwareModulesImpl::SoftwareModulesImpl(EventLoop& loop, Clock& clock, dm::Engine& engine, WorkerPool& pool,
                                         SmmOptions options)
    : loop_(loop),
      clock_(clock),
      engine_(engine),
      pool_(pool),
      options_(std::move(options)),
      downloads_(std::make_unique<WorkerPool>(loop, std::max<std::size_t>(1, options_.downloadThreads))) {}

SoftwareModulesImpl::~SoftwareModulesImpl() {
    stop();
    engine_.removeListener(this);
    auto gone = [](const dm::CommandCall&, dm::CommandDone done) {
        done(Error(ErrorCode::kRequestDenied, "software module management is not running"));
    };
    auto goneSync = [](const dm::CommandCall&) -> Result<dm::ArgMap> {
        return Error(ErrorCode::kRequestDenied, "software module management is not running");
    };
    (void)engine_.registerAsyncCommand("Device.SoftwareModules.InstallDU()", gone);
    (void)engine_.registerAsyncCommand("Device.SoftwareModules.DeploymentUnit.{i}.Update()", gone);
    (void)engine_.registerAsyncCommand("Device.SoftwareModules.DeploymentUnit.{i}.Uninstall()", gone);
    (void)engine_.registerAsyncCommand("Device.SoftwareModules.ExecEnv.{i}.ModifyConstraints()", gone);
    (void)engine_.registerAsyncCommand("Device.SoftwareModules.ExecEnv.{i}.Restart()", gone);
    (void)engine_.registerCommand("Device.SoftwareModules.ExecutionUnit.{i}.SetRequestedState()", goneSync);
    (void)engine_.registerCommand("Device.SoftwareModules.ExecutionUnit.{i}.Restart()", goneSync);
    (void)engine_.registerCommand("Device.SoftwareModules.ExecEnv.{i}.SetRunLevel()", goneSync);
    (void)engine_.registerProvider("Device.SoftwareModules.ExecEnv.{i}.", &gDetached,
                                   {"AvailableDiskSpace", "AvailableMemory", "AvailableCPUPercent", "ActiveExecutionUnits"});
    (void)engine_.registerProvider("Device.SoftwareModules.ExecutionUnit.{i}.", &gDetached,
                                   {"MemoryInUse", "DiskSpaceInUse", "CPUPercentInUse", "Uptime"});
}

Status SoftwareModulesImpl::init() {
    if (options_.stateDir.empty())
        return Error(ErrorCode::kInternalError, "SmmOptions.stateDir is required (where the operation journal lives)");
    std::error_code ec;
    fs::create_directories(options_.stateDir, ec);
    if (ec) return Error(ErrorCode::kInternalError, "cannot create " + options_.stateDir.string() + ": " + ec.message());
    auto j = Journal::open(options_.stateDir / "smm.db");
    if (!j) return j.error();
    journal_ = std::move(*j);

    auto cancel = [this](const dm::CommandCall& c) { return cancelDuOp(c); };
    BERTH_TRY(engine_.registerAsyncCommand(
        "Device.SoftwareModules.InstallDU()",
        [this](const dm::CommandCall& c, dm::CommandDone d) { installDu(c, std::move(d)); }, cancel));
    BERTH_TRY(engine_.registerAsyncCommand(
        "Device.SoftwareModules.DeploymentUnit.{i}.Update()",
        [this](const dm::CommandCall& c, dm::CommandDone d) { updateDu(c, std::move(d)); }, cancel));
    BERTH_TRY(engine_.registerAsyncCommand(
        "Device.SoftwareModules.DeploymentUnit.{i}.Uninstall()",
        [this](const dm::CommandCall& c, dm::CommandDone d) { uninstallDu(c, std::move(d)); }));
    BERTH_TRY(engine_.registerCommand("Device.SoftwareModules.ExecutionUnit.{i}.SetRequestedState()",
                                      [this](const dm::CommandCall& c) { return setRequestedState(c); }));
    BERTH_TRY(engine_.registerCommand("Device.SoftwareModules.ExecutionUnit.{i}.Restart()",
                                      [this](const dm::CommandCall& c) { return restartEu(c); }));
    BERTH_TRY(engine_.registerCommand("Device.SoftwareModules.ExecEnv.{i}.SetRunLevel()",
                                      [this](const dm::CommandCall& c) { return setRunLevel(c); }));
    BERTH_TRY(engine_.registerAsyncCommand(
        "Device.SoftwareModules.ExecEnv.{i}.ModifyConstraints()",
        [this](const dm::CommandCall& c, dm::CommandDone d) { modifyConstraints(c, std::move(d)); }));
    BERTH_TRY(engine_.registerAsyncCommand("Device.SoftwareModules.ExecEnv.{i}.Restart()",
                                           [this](const dm::CommandCall& c, dm::CommandDone d) { restartEe(c, std::move(d)); }));
    BERTH_TRY(engine_.registerProvider("Device.SoftwareModules.ExecEnv.{i}.", this,
                                       {"AvailableDiskSpace", "AvailableMemory", "AvailableCPUPercent", "ActiveExecutionUnits"}));
    BERTH_TRY(engine_.registerProvider("Device.SoftwareModules.ExecutionUnit.{i}.", this,
                                       {"MemoryInUse", "DiskSpaceInUse", "CPUPercentInUse", "Uptime"}));
    engine_.addListener(this);
    return okStatus();
}

// ---- helpers ------------------------------------------------------------------------

std::string SoftwareModulesImpl::val(const std::string& path) const {
    auto v = engine_.getValue(path);
    return v ? *v : std::string();
}

std::int64_t SoftwareModulesImpl::intVal(const std::string& path, std::int64_t fallback) const {
    std::string v = val(path);
    if (v.empty()) return fallback;
    try {
        return std::stoll(v);
    } catch (...) {
        return fallback;
    }
}

void SoftwareModulesImpl::set(const std::string& path, const std::string& value) {
    auto st = engine_.setValue(path, value);
    if (!st) BERTH_LOG_WARN(kTag) << "cannot set " << path << ": " << st.error().describe();
}

std::string SoftwareModulesImpl::now() const { return formatDateTime(clock_.wallNow()); }

void SoftwareModulesImpl::hook(OpKind kind, std::string_view phase) {
    if (!options_.journalHook) return;
    std::string step(opKindName(kind));
    std::transform(step.begin(), step.end(), step.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    step += ".";
    step += phase;
    options_.journalHook(step);
}

void SoftwareModulesImpl::post(std::function<void()> fn) {
    std::weak_ptr<bool> alive = alive_;
    loop_.post([alive, fn = std::move(fn)] {
        if (alive.lock()) fn();
    });
}

Ee* SoftwareModulesImpl::findEe(const std::string& ref) {
    auto it = ees_.find(withDot(ref));
    return it == ees_.end() ? nullptr : it->second.get();
}

Ee* SoftwareModulesImpl::defaultEe() {
    for (auto& [path, ee] : ees_)
        if (ee->usable()) return ee.get();
    return ees_.empty() ? nullptr : ees_.begin()->second.get();
}

std::vector<std::string> SoftwareModulesImpl::eusOfDu(const std::string& duPath) const {
    std::vector<std::string> out;
    std::uint32_t n = instanceNumber(duPath);
    if (const DeploymentUnit* du = duPath.rfind(kDuTable, 0) == 0 ? inv_.du(n) : nullptr)
        for (auto e : du->executionUnits) out.push_back(euPathOf(e));
    return out;
}

bool SoftwareModulesImpl::digestReferenced(const Ee& ee, const std::string& digest) const {
    std::string hex = hexOf(digest);
    return pins_.count(ee.path + hex) || inv_.digestInUse(ee.instance, hex);
}

void SoftwareModulesImpl::cleanupImage(Ee& ee, const std::string& digest) {
    if (digest.empty() || !ee.rt || digestReferenced(ee, digest)) return;
    if (ee.pullsRunning > 0) {
        ee.afterPulls.push_back(digest);
        return;
    }
    auto rt = ee.rt;
    std::string path = ee.path;
    // A removal that does not happen (stop, crash) is redone by the start-up
    // reconciliation, which removes every image no DU names. Pulls into this ExecEnv wait
    // until it is done: the same image installed again right away would otherwise be
    // found in the store and then removed under the new DU.
    ++ee.removalsRunning;
    std::uint64_t seq = ++cleanupSeq_;
    cleanupJobs_[seq] = pool_.submit<std::uint64_t>(
        [rt, digest](const CancelToken&) -> std::uint64_t {
            auto st = rt->images->remove(digest);
            if (!st && st.error().kind != oci::ErrorKind::kNotFound)
                BERTH_LOG_WARN(kTag) << "cannot remove image " << digest << ": " << st.error().describe();
            std::uint64_t total = 0;
            if (auto l = rt->images->list())
                for (const auto& r : *l) total += r.unpackedBytes;
            return total;
        },
        [this, path, seq](std::uint64_t total) {
            cleanupJobs_.erase(seq);
            Ee* e = findEe(path);
            if (!e) return;
            e->storeBytes = total;
            if (--e->removalsRunning > 0) return;
            auto waiting = std::move(e->afterRemovals);
            e->afterRemovals.clear();
            for (auto& resume : waiting) resume();
        });
}

void SoftwareModulesImpl::raiseDuStateChange(const std::string& uuid, const std::string& duPath,
                                             const std::string& version, const std::string& state, bool resolved,
                                             const std::vector<std::string>& eus, const std::string& startTime,
                                             const std::string& completeTime, OpKind op, const Error* fault) {
    dm::ArgMap args;
    args["UUID"] = uuid;
    args["DeploymentUnitRef"] = noDot(duPath);
    args["Version"] = version;
    args["CurrentState"] = state;
    args["Resolved"] = resolved ? "true" : "false";
    std::string list;
    for (const auto& e : eus) {
        if (!list.empty()) list += ",";
        list += noDot(e);
    }
    args["ExecutionUnitRefList"] = list;
    args["StartTime"] = startTime.empty() ? kUnknownTime : startTime;
    args["CompleteTime"] = completeTime.empty() ? kUnknownTime : completeTime;
    args["OperationPerformed"] = std::string(opKindName(op));
    args["Fault.FaultCode"] = fault ? std::to_string(fault->numeric()) : "0";
    std::string msg = fault ? fault->message : std::string();
    if (msg.size() > 256) msg = msg.substr(0, 253) + "...";
    args["Fault.FaultString"] = msg;
    auto st = engine_.raiseEvent(kDuStateChange, args);
    if (!st) BERTH_LOG_WARN(kTag) << "cannot raise DUStateChange!: " << st.error().describe();
}

// ---- ExecEnvs -------------------------------------------------------------------------

std::string SoftwareModulesImpl::loadEeSecurity(const std::string& path, EeRuntime& rt) const {
    auto instance = static_cast<std::uint32_t>(
        std::strtoul(path.substr(kEeTable.size(), path.size() - kEeTable.size() - 1).c_str(), nullptr, 10));
    std::int64_t size = intVal(path + "X_BERTH_IdMapSize", oci::kDefaultIdMapSize);
    std::int64_t base = intVal(path + "X_BERTH_IdMapBase", 0);
    if (size < 0 || size > 0xFFFFFFFFll || base < 0 || base > 0xFFFFFFFFll)
        return "X_BERTH_IdMapBase/X_BERTH_IdMapSize out of range";
    if (size > 0) {
        if (base == 0) {
            if (size > oci::kDefaultIdMapSize)
                return "X_BERTH_IdMapSize above 65536 needs an explicit X_BERTH_IdMapBase";
            rt.security.idMap = oci::defaultIdMapping(instance);
        } else {
            rt.security.idMap.hostBase = static_cast<std::uint32_t>(base);
        }
        rt.security.idMap.size = static_cast<std::uint32_t>(size);
        if (static_cast<std::uint64_t>(rt.security.idMap.hostBase) + rt.security.idMap.size > 0xFFFFFFFFull)
            return "X_BERTH_IdMapBase + X_BERTH_IdMapSize passes the largest id";
    }
    auto caps = oci::parseCapabilities(val(path + "X_BERTH_Capabilities"));
    if (!caps) return "X_BERTH_Capabilities: " + caps.error().message;
    rt.security.capabilities = std::move(*caps);
    rt.seccompProfile = val(path + "X_BERTH_SeccompProfile");
    rt.security.readOnlyRootfs = val(path + "X_BERTH_ReadOnlyRootfs") == "true";
    return {};
}

void SoftwareModulesImpl::loadEes() {
    auto rows = engine_.resolveObjects(std::string(kEeTable));
    if (!rows) return;
    for (const auto& path : *rows) {
        auto ee = std::make_unique<Ee>();
        ee->path = path;
        ee->instance = instanceNumber(path);
        ee->name = val(path + "Name");
        if (ee->name.empty()) {
            ee->name = "ee" + path.substr(kEeTable.size(), path.size() - kEeTable.size() - 1);
            set(path + "Name", ee->name);
        }
        ee->enabled = val(path + "Enable") == "true";
        ee->allocatedDiskKiB = intVal(path + "AllocatedDiskSpace", -1);
        ee->allocatedMemoryKiB = intVal(path + "AllocatedMemory", -1);
        ee->allocatedCpuPercent = intVal(path + "AllocatedCPUPercent", -1);
        ee->initialRunLevel = intVal(path + "InitialRunLevel", 0);
        ee->initialEuRunLevel = intVal(path + "InitialExecutionUnitRunLevel", 0);
        ee->restartCount = static_cast<std::uint32_t>(std::max<std::int64_t>(0, intVal(path + "RestartCount", 0)));
        ee->hostPrefixes = splitList(val(path + "X_BERTH_HostObjectPrefixes"));
        ee->fileDirectories = splitList(val(path + "X_BERTH_FileURLDirectories"));
        ee->caFile = val(path + "X_BERTH_CAFile");
        ee->downloadDeadline = std::chrono::seconds(intVal(path + "X_BERTH_DownloadDeadline", 1800));
        ee->downloadMinRate = static_cast<std::uint64_t>(std::max<std::int64_t>(0, intVal(path + "X_BERTH_DownloadMinRate", 1024)));
        ee->downloadRateWindow = std::chrono::seconds(std::max<std::int64_t>(1, intVal(path + "X_BERTH_DownloadRateWindow", 60)));
        auto rt = std::make_shared<EeRuntime>();
        rt->name = ee->name;
        rt->kind = val(path + "X_BERTH_Runtime") == "crun" ? oci::RuntimeKind::kCrun : oci::RuntimeKind::kRunc;
        rt->runtimeBinary = val(path + "X_BERTH_RuntimeBinary");
        fs::path base = options_.stateDir / "ee" / ee->name;
        rt->storageDir = val(path + "X_BERTH_StorageDir");
        if (rt->storageDir.empty()) rt->storageDir = (base / "store").string();
        rt->stateDir = val(path + "X_BERTH_StateDir");
        if (rt->stateDir.empty()) rt->stateDir = (base / "state").string();
        rt->hostObjectDir = (base / "hostobjects").string();
        rt->cgroupParent = val(path + "X_BERTH_CgroupParent");
        if (rt->cgroupParent.empty()) rt->cgroupParent = "/berth/" + ee->name;
        rt->runtimeTimeout = options_.runtimeTimeout;
        if (auto err = loadEeSecurity(path, *rt); !err.empty()) ee->openError = err;
        if (!oci::isValidContainerId(ee->name + ".1"))
            ee->openError = "ExecEnv Name '" + ee->name + "' may only hold letters, digits and _+.- (it prefixes container IDs)";
        ee->rt = rt;  // handed to the start-up job; usable() stays false until it returns
        ees_[path] = std::move(ee);
    }
    // Two ExecEnvs sharing host ids could reach each other's files.
    for (auto a = ees_.begin(); a != ees_.end(); ++a) {
        for (auto b = std::next(a); b != ees_.end(); ++b) {
            const auto& ma = a->second->rt->security.idMap;
            const auto& mb = b->second->rt->security.idMap;
            if (!ma.enabled() || !mb.enabled()) continue;
            std::uint64_t a0 = ma.hostBase, a1 = a0 + ma.size, b0 = mb.hostBase, b1 = b0 + mb.size;
            if (a0 < b1 && b0 < a1 && b->second->openError.empty())
                b->second->openError = "its id map overlaps that of ExecEnv " + a->second->name;
        }
    }
}

void SoftwareModulesImpl::refreshEeStatus(Ee& ee) {
    dm::Engine::Batch batch(engine_);
    set(ee.path + "Status", eeStatus(ee));
    set(ee.path + "X_BERTH_StatusMessage", ee.openError.substr(0, 256));
    (void)batch.commit();
}

void SoftwareModulesImpl::registerExecEnvClass(Ee& ee) {
    const bool crun = ee.rt->kind == oci::RuntimeKind::kCrun;
    std::string name = crun ? "OCI-crun" : "OCI-runc";
    std::string vendor = crun ? "redhat.com" : "opencontainers.org";
    std::string version = ee.rt->specVersion.empty() ? "1.0.0" : ee.rt->specVersion.substr(0, 32);
    std::string classPath;
    if (auto rows = engine_.resolveObjects(std::string(kEecTable)))
        for (const auto& r : *rows)
            if (val(r + "Name") == name) classPath = r;
    if (classPath.empty()) {
        auto p = engine_.addInstance(std::string(kEecTable), {{"Name", name}, {"Vendor", vendor}, {"Version", version}});
        if (!p) {
            BERTH_LOG_WARN(kTag) << "cannot add the ExecEnvClass " << name << ": " << p.error().describe();
            return;
        }
        classPath = *p;
        auto c = engine_.addInstance(classPath + "Capability.", {{"Specification", "OCIImage"},
                                                                {"SpecificationVersion", "[1.0.0,1.1.1]"},
                                                                {"SpecificationURI", "https://github.com/opencontainers/image-spec"}});
        if (!c) BERTH_LOG_WARN(kTag) << "cannot add the OCIImage capability: " << c.error().describe();
    } else if (val(classPath + "Version") != version) {
        set(classPath + "Version", version);
    }
    dm::Engine::Batch batch(engine_);
    set(ee.path + "ExecEnvClassRef", noDot(classPath));
    std::string type = "OCI runtime-spec " + version + " / " + ee.rt->runtimeVersion;
    set(ee.path + "Type", type.substr(0, 64));
    set(ee.path + "Vendor", vendor);
    std::string v = ee.rt->runtimeVersion;
    auto sp = v.rfind(' ');
    set(ee.path + "Version", (sp == std::string::npos ? v : v.substr(sp + 1)).substr(0, 32));
    if (val(ee.path + "CreatedAt").empty()) set(ee.path + "CreatedAt", kUnknownTime);
    (void)batch.commit();
}

void SoftwareModulesImpl::applyEeLimits(Ee& ee) {
    if (!ee.rt || !ee.rt->containers) return;
    std::int64_t memKiB = ee.allocatedMemoryKiB;
    std::int64_t cpuPct = ee.allocatedCpuPercent;
    std::optional<std::uint64_t> mem, quota;
    if (memKiB > 0) mem = static_cast<std::uint64_t>(memKiB) * 1024;
    if (cpuPct > 0) quota = static_cast<std::uint64_t>(cpuPct * cpuCount() * 1000);
    ee.rt->containers->limitParent(mem, quota);
}

std::int64_t SoftwareModulesImpl::eeMemoryInUseKiB(const Ee& ee) const {
    std::int64_t total = 0;
    if (!ee.rt || !ee.rt->containers) return 0;
    for (const auto& [path, eu] : eus_) {
        if (eu.eePath != ee.path || !eu.live || eu.cgroupPath.empty()) continue;
        if (auto f = ee.rt->containers->cgroupFigures(eu.cgroupPath))
            total += static_cast<std::int64_t>(f->memoryBytes / 1024);
    }
    return total;
}

Result<dm::ArgMap> SoftwareModulesImpl::setRunLevel(const dm::CommandCall& call) {
    Ee* ee = findEe(call.objPath);
    if (!ee) return Error(ErrorCode::kObjectDoesNotExist, "no such ExecEnv", call.objPath);
    auto it = call.input.find("RequestedRunLevel");
    std::int64_t level = it == call.input.end() ? -1 : std::stoll(it->second);
    ee->currentRunLevel = level;
    set(ee->path + "CurrentRunLevel", std::to_string(level));
    if (!ee->usable() || !ready_) return dm::ArgMap{};
    // Lowering the level stops AutoStart EUs above it (the mirror of the start rule).
    for (auto& [path, eu] : eus_) {
        const ExecutionUnit& r = record(eu);
        if (eu.eePath != ee->path || !r.autoStart) continue;
        if (level >= 0 && r.runLevel > level && eu.status == EuStatus::kActive)
            (void)request(eu, EuRequest::kIdle, true);
    }
    scheduleAutoStart(ee->path);
    return dm::ArgMap{};
}

void SoftwareModulesImpl::modifyConstraints(const dm::CommandCall& call, dm::CommandDone done) {
    Ee* ee = findEe(call.objPath);
    auto arg = [&](const char* name) -> std::int64_t {
        auto it = call.input.find(name);
        if (it == call.input.end() || it->second.empty()) return -1;
        return std::stoll(it->second);
    };
    auto finish = [this](dm::CommandDone d, Result<dm::ArgMap> r) { post([d = std::move(d), r = std::move(r)]() mutable { d(std::move(r)); }); };
    if (!ee) return finish(std::move(done), Error(ErrorCode::kObjectDoesNotExist, "no such ExecEnv", call.objPath));
    bool force = call.input.count("Force") && call.input.at("Force") == "true";
    // The engine fills in the -1 default for arguments not sent: -1 leaves a limit unchanged.
    std::int64_t disk = arg("AllocatedDiskSpace"), mem = arg("AllocatedMemory"), cpu = arg("AllocatedCPUPercent");
    std::int64_t diskUsed = static_cast<std::int64_t>(ee->storeBytes / 1024);
    std::int64_t memUsed = eeMemoryInUseKiB(*ee);
    if (!force) {
        if (disk >= 0 && disk < diskUsed)
            return finish(std::move(done), Error(ErrorCode::kCommandFailure,
                                                 "AllocatedDiskSpace " + std::to_string(disk) + " KiB is below the " +
                                                     std::to_string(diskUsed) + " KiB in use; nothing changed (Force=true to apply anyway)"));
        if (mem >= 0 && mem < memUsed)
            return finish(std::move(done), Error(ErrorCode::kCommandFailure,
                                                 "AllocatedMemory " + std::to_string(mem) + " KiB is below the " +
                                                     std::to_string(memUsed) + " KiB in use; nothing changed (Force=true to apply anyway)"));
    }
    {
        dm::Engine::Batch batch(engine_);
        if (disk >= 0) ee->allocatedDiskKiB = disk;
        if (mem >= 0) ee->allocatedMemoryKiB = mem;
        if (cpu >= 0) ee->allocatedCpuPercent = cpu;
        set(ee->path + "AllocatedDiskSpace", std::to_string(ee->allocatedDiskKiB));
        set(ee->path + "AllocatedMemory", std::to_string(ee->allocatedMemoryKiB));
        set(ee->path + "AllocatedCPUPercent", std::to_string(ee->allocatedCpuPercent));
        (void)batch.commit();
    }
    applyEeLimits(*ee);  // with Force, the kernel reclaims or OOM-kills inside the EE
    finish(std::move(done), dm::ArgMap{});
}

void SoftwareModulesImpl::restartEe(const dm::CommandCall& call, dm::CommandDone done) {
    Ee* ee = findEe(call.objPath);
    auto finish = [this](dm::CommandDone d, Result<dm::ArgMap> r) { post([d = std::move(d), r = std::move(r)]() mutable { d(std::move(r)); }); };
    if (!ee || !ready_) return finish(std::move(done), Error(ErrorCode::kRequestDenied, "the ExecEnv is not ready", call.objPath));
    if (!ee->usable())
        return finish(std::move(done), Error(ErrorCode::kInvalidExecEnvState, "the ExecEnv is " + eeStatus(*ee) +
                                                                                  "; Restart() needs it Up", call.objPath));
    std::vector<std::string> ids;
    std::vector<std::string> paths;
    for (auto& [path, eu] : eus_) {
        if (eu.eePath != ee->path) continue;
        if (eu.busy)
            return finish(std::move(done), Error(ErrorCode::kInvalidExecEnvState,
                                                 "execution unit " + noDot(path) + " is " + std::string(euStatusName(eu.status)) +
                                                     "; retry when it settles"));
    }
    ee->restarting = true;
    refreshEeStatus(*ee);
    for (auto& [path, eu] : eus_) {
        if (eu.eePath != ee->path) continue;
        eu.backoff.reset();
        eu.healthy.reset();
        if (eu.status == EuStatus::kRestarting) setStatus(eu, EuStatus::kIdle);
        if (!eu.live) continue;
        eu.busy = true;
        eu.stopRequested = true;
        setStatus(eu, EuStatus::kStopping);
        ids.push_back(eu.euid);
        paths.push_back(path);
    }
    bool forceStop = call.input.count("Force") && call.input.at("Force") == "true";
    std::string reason = call.input.count("Reason") ? call.input.at("Reason") : std::string();
    auto rt = ee->rt;
    std::string eePath = ee->path;
    std::vector<std::chrono::milliseconds> delays;
    for (const auto& p : paths)
        delays.push_back(forceStop ? std::chrono::milliseconds(0) : std::chrono::seconds(record(eus_.at(p)).shutdownDelay));
    startJob_ = pool_.submit<bool>(
        [rt, ids, delays](const CancelToken&) {
            for (std::size_t i = 0; i < ids.size(); ++i) {
                (void)rt->containers->stop(ids[i], delays[i]);
                (void)rt->containers->remove(ids[i], true);
            }
            return true;
        },
        [this, eePath, paths, reason, done = std::move(done)](bool) mutable {
            Ee* e = findEe(eePath);
            for (const auto& p : paths)
                if (Eu* eu = euAt(p)) {
                    forgetWatch(*eu, *e);
                    eu->live = false;
                    eu->busy = false;
                    eu->stopRequested = false;
                    setStatus(*eu, EuStatus::kIdle);
                }
            e->restarting = false;
            e->restartCount++;
            e->currentRunLevel = e->initialRunLevel;
            std::string t = now();
            {
                dm::Engine::Batch batch(engine_);
                set(eePath + "RestartReason", reason.substr(0, 256));
                set(eePath + "RestartCount", std::to_string(e->restartCount));
                set(eePath + "LastRestarted", t);
                set(eePath + "CurrentRunLevel", std::to_string(e->currentRunLevel));
                (void)batch.commit();
            }
            refreshEeStatus(*e);
            (void)engine_.raiseEvent(eePath + "Restarted!", {{"RestartTime", t}, {"RestartReason", reason}});
            scheduleAutoStart(eePath);
            done(dm::ArgMap{});
        });
}

void SoftwareModulesImpl::setEeEnabled(Ee& ee, bool enabled) {
    if (ee.enabled == enabled) return;
    ee.enabled = enabled;
    refreshEeStatus(ee);
    if (!ready_) return;
    if (enabled) {
        scheduleAutoStart(ee.path);
        return;
    }
    // Disabling stops every EU; they show Unstartable until the EE is enabled again.
    for (auto& [path, eu] : eus_) {
        if (eu.eePath != ee.path) continue;
        eu.pending.reset();
        if (eu.status == EuStatus::kRestarting && !eu.busy) {
            eu.backoff.reset();
            setStatus(eu, EuStatus::kIdle);
        }
        if (eu.live && !eu.busy) stopEu(eu, EuFault::kUnstartable, "the ExecEnv was disabled");
        else if (!eu.live) setFault(eu, EuFault::kUnstartable, "the ExecEnv is disabled");
    }
}

// Controller-writable parameters reach the model here (also our own writes, which
// change nothing).
void SoftwareModulesImpl::onValueChange(std::string_view paramPath, std::string_view value) {
    if (paramPath.rfind(kEuTable, 0) == 0) {
        auto dot = paramPath.find('.', kEuTable.size());
        if (dot == std::string_view::npos) return;
        auto it = eus_.find(std::string(paramPath.substr(0, dot + 1)));
        if (it != eus_.end()) onEuParamChange(it->second, paramPath.substr(dot + 1), value);
        return;
    }
    if (paramPath.rfind(kEeTable, 0) != 0) return;
    auto dot = paramPath.rfind('.');
    Ee* ee = findEe(std::string(paramPath.substr(0, dot + 1)));
    if (!ee) return;
    std::string_view param = paramPath.substr(dot + 1);
    auto num = [&] {
        try {
            return static_cast<std::int64_t>(std::stoll(std::string(value)));
        } catch (...) {
            return std::int64_t{-1};
        }
    };
    if (param == "Enable") setEeEnabled(*ee, value == "true");
    else if (param == "InitialRunLevel") ee->initialRunLevel = num();
    else if (param == "InitialExecutionUnitRunLevel") ee->initialEuRunLevel = num();
}

// ---- computed parameters ------------------------------------------------------------------

int SoftwareModulesImpl::cpuPercentInUse(const Eu& eu, const Ee& ee) const {
    if (!eu.live || !ee.rt || !ee.rt->containers) return 0;
    auto f = ee.rt->containers->cgroupFigures(eu.cgroupPath);
    if (!f) return 0;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(clock_.now() - eu.activeSince).count();
    if (ns <= 0 || f->cpuNanos < eu.cpuAtStart) return 0;
    double pct = 100.0 * static_cast<double>(f->cpuNanos - eu.cpuAtStart) / (static_cast<double>(ns) * cpuCount());
    return std::clamp(static_cast<int>(pct + 0.5), 0, 100);
}

Result<std::string> SoftwareModulesImpl::get(const dm::ObjectView& obj, std::string_view param) {
    const std::string& path = obj.path();
    if (path.rfind(kEuTable, 0) == 0) {
        auto it = eus_.find(path);
        if (it == eus_.end()) return std::string("0");
        Eu& eu = it->second;
        Ee* ee = findEe(eu.eePath);
        bool running = eu.live && ee && ee->rt && ee->rt->containers;
        if (param == "Uptime") {
            if (eu.status != EuStatus::kActive) return std::string("0");
            return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(clock_.now() - eu.activeSince).count());
        }
        if (!running) return std::string("0");
        if (param == "DiskSpaceInUse") {
            auto f = ee->rt->containers->figures(eu.euid);
            return std::to_string(f ? f->diskBytes / 1024 : 0);
        }
        auto f = ee->rt->containers->cgroupFigures(eu.cgroupPath);
        if (!f) return std::string("0");
        if (param == "MemoryInUse") return std::to_string(f->memoryBytes / 1024);
        if (param == "CPUPercentInUse") return std::to_string(cpuPercentInUse(eu, *ee));
        return std::string("0");
    }
    Ee* ee = findEe(path);
    if (!ee) return std::string(param == "ActiveExecutionUnits" ? "" : "-1");
    if (param == "ActiveExecutionUnits") {
        std::string list;
        for (const auto& [p, eu] : eus_)
            if (eu.eePath == ee->path && eu.status == EuStatus::kActive) {
                if (!list.empty()) list += ",";
                list += noDot(p);
            }
        return list;
    }
    if (param == "AvailableMemory") {
        std::int64_t alloc = ee->allocatedMemoryKiB;
        if (alloc < 0) return std::to_string(memAvailableKiB());
        return std::to_string(std::max<std::int64_t>(0, alloc - eeMemoryInUseKiB(*ee)));
    }
    if (param == "AvailableDiskSpace") {
        std::int64_t alloc = ee->allocatedDiskKiB;
        if (alloc >= 0) return std::to_string(std::max<std::int64_t>(0, alloc - static_cast<std::int64_t>(ee->storeBytes / 1024)));
        struct statvfs sv {};
        std::string dir = ee->rt ? ee->rt->storageDir : options_.stateDir.string();
        if (::statvfs(dir.c_str(), &sv) != 0) return std::string("-1");
        return std::to_string(static_cast<std::uint64_t>(sv.f_bavail) * sv.f_frsize / 1024);
    }
    if (param == "AvailableCPUPercent") {
        std::int64_t alloc = ee->allocatedCpuPercent;
        std::int64_t used = 0;
        for (const auto& [p, eu] : eus_)
            if (eu.eePath == ee->path && eu.live) used += cpuPercentInUse(eu, *ee);
        return std::to_string(std::max<std::int64_t>(0, (alloc < 0 ? 100 : alloc) - used));
    }
    return std::string("-1");
}

}  // namespace berth::smm
