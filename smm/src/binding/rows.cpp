// SoftwareModules binding: the DeploymentUnit.{i}. and ExecutionUnit.{i}. rows written
// from the model (inventory.h), the model persisted in the journal, and the one-time
// migration of an earlier version's rows into the model.
#include <algorithm>
#include <cassert>

#include "berth/core/log.h"
#include "binding/smm_impl.h"
#include "paths.h"

namespace berth::smm {

namespace {

constexpr std::string_view kTag = "smm";

std::string boolText(bool b) {
    return b ? "true" : "false";
}

std::string listOf(std::string_view table, const std::vector<std::uint32_t>& instances) {
    std::string out;
    for (auto n : instances) {
        if (!out.empty()) out += ",";
        out += std::string(table) + std::to_string(n);
    }
    return out;
}

// Row path ("...ExecEnv.2." or "...ExecEnv.2") -> 2; 0 when it is not a row of that table.
std::uint32_t instanceIn(std::string_view table, const std::string& ref) {
    std::string p = withDot(ref);
    if (p.rfind(table, 0) != 0) return 0;
    return static_cast<std::uint32_t>(std::strtoul(p.c_str() + table.size(), nullptr, 10));
}

}  // namespace

std::string SoftwareModulesImpl::duPathOf(std::uint32_t instance) {
    return std::string(kDuTable) + std::to_string(instance) + ".";
}
std::string SoftwareModulesImpl::euPathOf(std::uint32_t instance) {
    return std::string(kEuTable) + std::to_string(instance) + ".";
}

DeploymentUnit* SoftwareModulesImpl::duAt(const std::string& path) {
    std::uint32_t n = instanceIn(kDuTable, path);
    return n ? inv_.du(n) : nullptr;
}

ExecutionUnit& SoftwareModulesImpl::record(const Eu& eu) {
    ExecutionUnit* r = inv_.eu(eu.instance);
    assert(r && "an EU of the binding without a model record");
    return *r;
}

std::string SoftwareModulesImpl::eeStatus(const Ee& ee) const {
    if (!ee.openError.empty()) return "Error";
    if (!ee.enabled) return "Disabled";
    if (ee.restarting) return "Restarting";
    return "Up";
}

// ---- rows from the model ------------------------------------------------------------------

Status SoftwareModulesImpl::writeDuRow(const DeploymentUnit& du) {
    std::string p = duPathOf(du.instance);
    std::string eeRef = std::string(kEeTable) + std::to_string(du.execEnv);
    const std::pair<const char*, std::string> values[] = {
        {"UUID", du.uuid},
        {"DUID", du.duid},
        {"Name", du.name},
        {"Status", std::string(duStatusName(du.status))},
        {"Resolved", "true"},
        {"URL", du.url},
        {"Description", du.description},
        {"Vendor", du.vendor},
        {"Version", du.version},
        {"ExecutionEnvRef", eeRef},
        {"Installed", du.installed},
        {"LastUpdate", du.lastUpdate},
        {"ModuleVersion", du.moduleVersion.substr(0, 32)},
        {"ExecutionUnitList", listOf(noDot(std::string(kEuTable)) + ".", du.executionUnits)}};
    for (const auto& [name, value] : values)
        BERTH_TRY(engine_.setValue(p + name, value));
    return okStatus();
}

Status SoftwareModulesImpl::writeEuRow(const ExecutionUnit& eu) {
    std::string p = euPathOf(eu.instance);
    const AutoRestartPolicy& a = eu.autoRestart;
    const std::pair<const char*, std::string> values[] = {
        {"EUID", eu.euid},
        {"ExecEnvLabel", eu.euid},
        {"Name", eu.name},
        {"Status", std::string(euStatusName(eu.status))},
        {"ExecutionFaultCode", std::string(euFaultName(eu.fault))},
        {"ExecutionFaultMessage", eu.fault == EuFault::kNoFault ? std::string() : eu.faultMessage.substr(0, 256)},
        {"AutoStart", boolText(eu.autoStart)},
        {"RunLevel", std::to_string(eu.runLevel)},
        {"Vendor", eu.vendor},
        {"Version", eu.version},
        {"Description", eu.description},
        {"Privileged", "false"},
        {"CreationTime", eu.creationTime},
        {"ExecutionEnvRef", std::string(kEeTable) + std::to_string(eu.execEnv)},
        {"ShutdownDelay", std::to_string(eu.shutdownDelay)},
        {"AllocatedMemory", std::to_string(eu.allocatedMemoryKiB)},
        {"AllocatedCPUPercent", std::to_string(eu.allocatedCpuPercent)},
        // Per-EU disk quotas are not enforced (no project quotas); the value is not kept.
        {"AllocatedDiskSpace", "-1"},
        {"X_BERTH_ExitStatus", eu.exitStatus.substr(0, 64)},
        {"AutoRestart.Enable", boolText(a.enable)},
        {"AutoRestart.RetryMinimumWaitInterval", std::to_string(a.minWaitSeconds)},
        {"AutoRestart.RetryMaximumWaitInterval", std::to_string(a.maxWaitSeconds)},
        {"AutoRestart.RetryIntervalMultiplier", std::to_string(a.multiplier)},
        {"AutoRestart.MaximumRetryCount", std::to_string(a.maxRetries)},
        {"AutoRestart.ResetPeriod", std::to_string(a.resetPeriodSeconds)},
        {"AutoRestart.RetryCount", std::to_string(eu.retryCount)}};
    for (const auto& [name, value] : values)
        BERTH_TRY(engine_.setValue(p + name, value));
    if (!eu.lastRestarted.empty()) BERTH_TRY(engine_.setValue(p + "AutoRestart.LastRestarted", eu.lastRestarted));
    if (!eu.nextRestart.empty()) BERTH_TRY(engine_.setValue(p + "AutoRestart.NextRestart", eu.nextRestart));
    return okStatus();
}

// The EnvVariable.{i} and HostObject.{i} rows, made afresh.
Status SoftwareModulesImpl::writeEuTables(const ExecutionUnit& eu) {
    std::string p = euPathOf(eu.instance);
    for (const char* table : {"EnvVariable.", "HostObject."})
        if (auto rows = engine_.resolveObjects(p + table))
            for (const auto& r : *rows)
                BERTH_TRY(engine_.deleteInstance(r));
    for (const auto& [k, v] : eu.env) {
        auto r = engine_.addInstance(p + "EnvVariable.", {{"Key", k}, {"Value", v}});
        if (!r) return r.error();
    }
    for (const auto& h : eu.hostObjects) {
        auto r = engine_.addInstance(p + "HostObject.",
                                     {{"Source", h.source}, {"Destination", h.destination}, {"Options", h.options}});
        if (!r) return r.error();
    }
    return okStatus();
}

// The rows of a DU and its EUs at the model's instance numbers (the caller batches).
Status SoftwareModulesImpl::addRows(const DeploymentUnit& du, const std::vector<const ExecutionUnit*>& eus) {
    for (const auto* eu : eus) {
        auto r = engine_.addInstance(kEuTable, {}, eu->instance);
        if (!r) return r.error();
        BERTH_TRY(writeEuRow(*eu));
        BERTH_TRY(writeEuTables(*eu));
    }
    auto r = engine_.addInstance(kDuTable, {}, du.instance);
    if (!r) return r.error();
    return writeDuRow(du);
}

// ---- the model in the journal -------------------------------------------------------------

void SoftwareModulesImpl::saveDu(const DeploymentUnit& du) {
    std::vector<const ExecutionUnit*> eus;
    for (auto n : du.executionUnits)
        if (const ExecutionUnit* eu = inv_.eu(n)) eus.push_back(eu);
    if (auto st = journal_->saveDu(du, eus); !st) BERTH_LOG_ERROR(kTag) << st.error().describe();
}

// EU records change on every state transition: they are written once per loop turn, so
// the journal's fsync is never between a runtime result and the Status row it sets.
void SoftwareModulesImpl::persistEu(const Eu& eu) {
    dirtyEus_.insert(eu.instance);
    if (flushPosted_) return;
    flushPosted_ = true;
    post([this] { flushEus(); });
}

void SoftwareModulesImpl::flushEus() {
    flushPosted_ = false;
    for (auto n : dirtyEus_)
        if (const ExecutionUnit* eu = inv_.eu(n))
            if (auto st = journal_->saveEu(*eu); !st) BERTH_LOG_ERROR(kTag) << st.error().describe();
    dirtyEus_.clear();
}

// The model from the journal; a journal from an earlier version gets it from the rows
// that version wrote, once.
void SoftwareModulesImpl::loadInventory() {
    if (journal_->needsMigration()) {
        Inventory old = readEarlierRows();
        if (auto st = journal_->migrate(old); !st) {
            BERTH_LOG_ERROR(kTag) << "cannot migrate the deployment units into the journal: " << st.error().describe();
            inv_ = std::move(old);
            return;
        }
        if (!old.dus().empty())
            BERTH_LOG_INFO(kTag) << "migrated " << old.dus().size() << " deployment units and " << old.eus().size()
                                 << " execution units from the data model into the journal";
    }
    auto inv = journal_->loadInventory();
    if (!inv) {
        BERTH_LOG_ERROR(kTag) << "cannot read the deployment units from the journal: " << inv.error().describe();
        return;
    }
    inv_ = std::move(*inv);
    for (auto n : inv_.orphanEus()) {
        BERTH_LOG_WARN(kTag) << "removing execution unit " << n << ": no deployment unit lists it";
        (void)journal_->removeEu(n);
        inv_.removeEu(n);
    }
}

// The rows agree with the model: rows of DUs and EUs it does not hold are deleted, the
// ones missing (a data model without persistence, a lost database) are made.
void SoftwareModulesImpl::syncRows() {
    dm::Engine::Batch batch(engine_);
    for (std::string_view table : {kDuTable, kEuTable})
        if (auto rows = engine_.resolveObjects(table))
            for (const auto& r : *rows) {
                std::uint32_t n = instanceIn(table, r);
                bool known = table == kDuTable ? inv_.du(n) != nullptr : inv_.eu(n) != nullptr;
                if (known) continue;
                BERTH_LOG_WARN(kTag) << "removing " << r << ": not in the journal's inventory";
                (void)engine_.deleteInstance(r);
            }
    for (const auto& [n, du] : inv_.dus()) {
        std::vector<const ExecutionUnit*> eus;
        for (auto e : du.executionUnits)
            if (const ExecutionUnit* eu = inv_.eu(e)) eus.push_back(eu);
        auto have = engine_.resolveObjects(duPathOf(n));
        Status st = okStatus();
        if (!have || have->empty()) {
            st = addRows(du, eus);
        } else {
            st = writeDuRow(du);
            for (const auto* eu : eus) {
                auto row = engine_.resolveObjects(euPathOf(eu->instance));
                if (st && (!row || row->empty())) {
                    auto r = engine_.addInstance(kEuTable, {}, eu->instance);
                    if (!r) st = r.error();
                    if (st) st = writeEuTables(*eu);
                }
                if (st) st = writeEuRow(*eu);
            }
        }
        if (!st)
            BERTH_LOG_ERROR(kTag) << "cannot write the rows of deployment unit " << n << ": " << st.error().describe();
    }
    if (auto st = batch.commit(); !st)
        BERTH_LOG_ERROR(kTag) << "cannot write the deployment unit rows: " << st.error().describe();
}

// ---- controller-writable EU parameters ------------------------------------------------------

void SoftwareModulesImpl::onEuParamChange(Eu& eu, std::string_view param, std::string_view value) {
    ExecutionUnit& r = record(eu);
    auto num = [&](std::int64_t fallback) {
        try {
            return static_cast<std::int64_t>(std::stoll(std::string(value)));
        } catch (...) {
            return fallback;
        }
    };
    auto u32 = [&](std::uint32_t fallback) {
        return static_cast<std::uint32_t>(std::max<std::int64_t>(0, num(fallback)));
    };
    ExecutionUnit before = r;
    AutoRestartPolicy& a = r.autoRestart;
    if (param == "AutoStart")
        r.autoStart = value == "true" || value == "1";
    else if (param == "RunLevel")
        r.runLevel = num(r.runLevel);
    else if (param == "ShutdownDelay")
        r.shutdownDelay = u32(r.shutdownDelay);
    else if (param == "AutoRestart.Enable")
        a.enable = value == "true" || value == "1";
    else if (param == "AutoRestart.RetryMinimumWaitInterval")
        a.minWaitSeconds = u32(a.minWaitSeconds);
    else if (param == "AutoRestart.RetryMaximumWaitInterval")
        a.maxWaitSeconds = u32(a.maxWaitSeconds);
    else if (param == "AutoRestart.RetryIntervalMultiplier")
        a.multiplier = u32(a.multiplier);
    else if (param == "AutoRestart.MaximumRetryCount")
        a.maxRetries = u32(a.maxRetries);
    else if (param == "AutoRestart.ResetPeriod")
        a.resetPeriodSeconds = u32(a.resetPeriodSeconds);
    else if (param == "AutoRestart.RetryCount")
        r.retryCount = u32(r.retryCount);
    else
        return;
    // A controller's write is rare and must survive a crash right after it: at once.
    if (!(before == r))
        if (auto st = journal_->saveEu(r); !st) BERTH_LOG_ERROR(kTag) << st.error().describe();
}

// ---- migration --------------------------------------------------------------------------------

namespace {

// Reads an earlier version's rows.
struct RowReader {
    dm::Engine& engine;
    std::string val(const std::string& path) const {
        auto v = engine.getValue(path);
        return v ? *v : std::string();
    }
    std::int64_t num(const std::string& path, std::int64_t fallback) const {
        try {
            std::string v = val(path);
            return v.empty() ? fallback : static_cast<std::int64_t>(std::stoll(v));
        } catch (...) {
            return fallback;
        }
    }
    std::uint32_t u32(const std::string& path, std::uint32_t fallback) const {
        return static_cast<std::uint32_t>(std::clamp<std::int64_t>(num(path, fallback), 0, 0xFFFFFFFFll));
    }
    std::vector<std::string> rows(const std::string& table) const {
        auto r = engine.resolveObjects(table);
        return r ? *r : std::vector<std::string>{};
    }

    ExecutionUnit eu(const std::string& ep, std::uint32_t n, const DeploymentUnit& du) const {
        ExecutionUnit eu;
        eu.instance = n;
        eu.deploymentUnit = du.instance;
        eu.execEnv = du.execEnv;
        eu.euid = val(ep + "EUID");
        eu.name = val(ep + "Name");
        eu.vendor = val(ep + "Vendor");
        eu.version = val(ep + "Version");
        eu.description = val(ep + "Description");
        eu.creationTime = val(ep + "CreationTime");
        std::string status = val(ep + "Status");
        for (EuStatus s :
             {EuStatus::kIdle, EuStatus::kStarting, EuStatus::kActive, EuStatus::kStopping, EuStatus::kRestarting})
            if (euStatusName(s) == status) eu.status = s;
        std::string fault = val(ep + "ExecutionFaultCode");
        for (EuFault f :
             {EuFault::kNoFault, EuFault::kFailureOnStart, EuFault::kFailureOnAutoStart, EuFault::kFailureOnStop,
              EuFault::kFailureWhileActive, EuFault::kDependencyFailure, EuFault::kUnstartable})
            if (euFaultName(f) == fault) eu.fault = f;
        eu.faultMessage = val(ep + "ExecutionFaultMessage");
        eu.exitStatus = val(ep + "X_BERTH_ExitStatus");
        eu.autoStart = val(ep + "AutoStart") == "true";
        eu.runLevel = num(ep + "RunLevel", 0);
        eu.shutdownDelay = u32(ep + "ShutdownDelay", 10);
        eu.allocatedMemoryKiB = num(ep + "AllocatedMemory", -1);
        eu.allocatedCpuPercent = num(ep + "AllocatedCPUPercent", -1);
        AutoRestartPolicy& a = eu.autoRestart;
        std::string ar = ep + "AutoRestart.";
        a.enable = val(ar + "Enable") == "true";
        a.minWaitSeconds = u32(ar + "RetryMinimumWaitInterval", a.minWaitSeconds);
        a.maxWaitSeconds = u32(ar + "RetryMaximumWaitInterval", a.maxWaitSeconds);
        a.multiplier = u32(ar + "RetryIntervalMultiplier", a.multiplier);
        a.maxRetries = u32(ar + "MaximumRetryCount", a.maxRetries);
        a.resetPeriodSeconds = u32(ar + "ResetPeriod", 0);
        eu.retryCount = u32(ar + "RetryCount", 0);
        eu.lastRestarted = val(ar + "LastRestarted");
        eu.nextRestart = val(ar + "NextRestart");
        for (const auto& r : rows(ep + "EnvVariable."))
            eu.env.emplace_back(val(r + "Key"), val(r + "Value"));
        for (const auto& r : rows(ep + "HostObject."))
            eu.hostObjects.push_back({val(r + "Source"), val(r + "Destination"), val(r + "Options")});
        return eu;
    }

    DeploymentUnit du(const std::string& p) const {
        DeploymentUnit du;
        du.instance = instanceNumber(p);
        du.execEnv = instanceIn(kEeTable, val(p + "ExecutionEnvRef"));
        du.uuid = val(p + "UUID");
        du.duid = val(p + "DUID");
        du.name = val(p + "Name");
        du.url = val(p + "URL");
        du.description = val(p + "Description");
        du.vendor = val(p + "Vendor");
        du.version = val(p + "Version");
        du.moduleVersion = val(p + "ModuleVersion");
        du.installed = val(p + "Installed");
        du.lastUpdate = val(p + "LastUpdate");
        du.status = duStatusFrom(val(p + "Status"));
        return du;
    }
};

}  // namespace

// The DUs and EUs as an earlier version kept them: in the data-model rows only. The one
// place that reads DU/EU state from rows.
Inventory SoftwareModulesImpl::readEarlierRows() {
    RowReader read{engine_};
    Inventory inv;
    for (const auto& p : read.rows(std::string(kDuTable))) {
        DeploymentUnit du = read.du(p);
        for (const auto& e : splitList(read.val(p + "ExecutionUnitList"))) {
            std::string ep = withDot(e);
            std::uint32_t n = instanceIn(kEuTable, ep);
            if (!n || read.rows(ep).empty()) continue;
            inv.put(read.eu(ep, n, du));
            du.executionUnits.push_back(n);
        }
        inv.put(std::move(du));
    }
    return inv;
}

}  // namespace berth::smm
