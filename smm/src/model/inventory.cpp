#include "berth/smm/inventory.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace berth::smm {

using json = nlohmann::json;

std::string_view duStatusName(DuStatus status) {
    switch (status) {
        case DuStatus::kInstalled:
            return "Installed";
        case DuStatus::kUpdating:
            return "Updating";
        case DuStatus::kUninstalling:
            return "Uninstalling";
    }
    return "Installed";
}

DuStatus duStatusFrom(std::string_view name) {
    if (name == "Updating") return DuStatus::kUpdating;
    if (name == "Uninstalling") return DuStatus::kUninstalling;
    return DuStatus::kInstalled;
}

namespace {

EuStatus euStatusFrom(std::string_view name) {
    for (EuStatus s :
         {EuStatus::kIdle, EuStatus::kStarting, EuStatus::kActive, EuStatus::kStopping, EuStatus::kRestarting})
        if (euStatusName(s) == name) return s;
    return EuStatus::kIdle;
}

EuFault euFaultFrom(std::string_view name) {
    for (EuFault f :
         {EuFault::kNoFault, EuFault::kFailureOnStart, EuFault::kFailureOnAutoStart, EuFault::kFailureOnStop,
          EuFault::kFailureWhileActive, EuFault::kDependencyFailure, EuFault::kUnstartable})
        if (euFaultName(f) == name) return f;
    return EuFault::kNoFault;
}

template <typename T>
void take(const json& j, const char* key, T& out) {
    auto it = j.find(key);
    if (it != j.end() && !it->is_null()) out = it->get<T>();
}

}  // namespace

bool DeploymentUnit::operator==(const DeploymentUnit& o) const {
    return serialize(*this) == serialize(o);
}
bool ExecutionUnit::operator==(const ExecutionUnit& o) const {
    return serialize(*this) == serialize(o);
}

std::string serialize(const DeploymentUnit& du) {
    json j{{"instance", du.instance},
           {"execEnv", du.execEnv},
           {"uuid", du.uuid},
           {"duid", du.duid},
           {"name", du.name},
           {"url", du.url},
           {"description", du.description},
           {"vendor", du.vendor},
           {"version", du.version},
           {"moduleVersion", du.moduleVersion},
           {"installed", du.installed},
           {"lastUpdate", du.lastUpdate},
           {"status", std::string(duStatusName(du.status))},
           {"executionUnits", du.executionUnits}};
    return j.dump();
}

std::string serialize(const ExecutionUnit& eu) {
    json env = json::array();
    for (const auto& [k, v] : eu.env)
        env.push_back({k, v});
    json hosts = json::array();
    for (const auto& h : eu.hostObjects)
        hosts.push_back({h.source, h.destination, h.options});
    const AutoRestartPolicy& p = eu.autoRestart;
    json j{{"instance", eu.instance},
           {"deploymentUnit", eu.deploymentUnit},
           {"execEnv", eu.execEnv},
           {"euid", eu.euid},
           {"name", eu.name},
           {"vendor", eu.vendor},
           {"version", eu.version},
           {"description", eu.description},
           {"creationTime", eu.creationTime},
           {"status", std::string(euStatusName(eu.status))},
           {"fault", std::string(euFaultName(eu.fault))},
           {"faultMessage", eu.faultMessage},
           {"exitStatus", eu.exitStatus},
           {"autoStart", eu.autoStart},
           {"runLevel", eu.runLevel},
           {"shutdownDelay", eu.shutdownDelay},
           {"autoRestart",
            {{"enable", p.enable},
             {"minWait", p.minWaitSeconds},
             {"maxWait", p.maxWaitSeconds},
             {"multiplier", p.multiplier},
             {"maxRetries", p.maxRetries},
             {"resetPeriod", p.resetPeriodSeconds}}},
           {"retryCount", eu.retryCount},
           {"lastRestarted", eu.lastRestarted},
           {"nextRestart", eu.nextRestart},
           {"allocatedMemoryKiB", eu.allocatedMemoryKiB},
           {"allocatedCpuPercent", eu.allocatedCpuPercent},
           {"env", env},
           {"hostObjects", hosts}};
    return j.dump();
}

Result<DeploymentUnit> parseDeploymentUnit(std::string_view text) {
    try {
        json j = json::parse(text);
        DeploymentUnit du;
        take(j, "instance", du.instance);
        take(j, "execEnv", du.execEnv);
        take(j, "uuid", du.uuid);
        take(j, "duid", du.duid);
        take(j, "name", du.name);
        take(j, "url", du.url);
        take(j, "description", du.description);
        take(j, "vendor", du.vendor);
        take(j, "version", du.version);
        take(j, "moduleVersion", du.moduleVersion);
        take(j, "installed", du.installed);
        take(j, "lastUpdate", du.lastUpdate);
        std::string status;
        take(j, "status", status);
        du.status = duStatusFrom(status);
        take(j, "executionUnits", du.executionUnits);
        if (du.instance == 0)
            return Error(ErrorCode::kInternalError, "journal: a deployment unit without instance number");
        return du;
    } catch (const std::exception& e) {
        return Error(ErrorCode::kInternalError, std::string("journal: unreadable deployment unit: ") + e.what());
    }
}

Result<ExecutionUnit> parseExecutionUnit(std::string_view text) {
    try {
        json j = json::parse(text);
        ExecutionUnit eu;
        take(j, "instance", eu.instance);
        take(j, "deploymentUnit", eu.deploymentUnit);
        take(j, "execEnv", eu.execEnv);
        take(j, "euid", eu.euid);
        take(j, "name", eu.name);
        take(j, "vendor", eu.vendor);
        take(j, "version", eu.version);
        take(j, "description", eu.description);
        take(j, "creationTime", eu.creationTime);
        std::string s;
        take(j, "status", s);
        eu.status = euStatusFrom(s);
        s.clear();
        take(j, "fault", s);
        eu.fault = euFaultFrom(s);
        take(j, "faultMessage", eu.faultMessage);
        take(j, "exitStatus", eu.exitStatus);
        take(j, "autoStart", eu.autoStart);
        take(j, "runLevel", eu.runLevel);
        take(j, "shutdownDelay", eu.shutdownDelay);
        if (auto a = j.find("autoRestart"); a != j.end() && a->is_object()) {
            AutoRestartPolicy& p = eu.autoRestart;
            take(*a, "enable", p.enable);
            take(*a, "minWait", p.minWaitSeconds);
            take(*a, "maxWait", p.maxWaitSeconds);
            take(*a, "multiplier", p.multiplier);
            take(*a, "maxRetries", p.maxRetries);
            take(*a, "resetPeriod", p.resetPeriodSeconds);
        }
        take(j, "retryCount", eu.retryCount);
        take(j, "lastRestarted", eu.lastRestarted);
        take(j, "nextRestart", eu.nextRestart);
        take(j, "allocatedMemoryKiB", eu.allocatedMemoryKiB);
        take(j, "allocatedCpuPercent", eu.allocatedCpuPercent);
        if (auto e = j.find("env"); e != j.end())
            for (const auto& kv : *e)
                eu.env.emplace_back(kv.at(0).get<std::string>(), kv.at(1).get<std::string>());
        if (auto h = j.find("hostObjects"); h != j.end())
            for (const auto& x : *h)
                eu.hostObjects.push_back(
                    {x.at(0).get<std::string>(), x.at(1).get<std::string>(), x.at(2).get<std::string>()});
        if (eu.instance == 0)
            return Error(ErrorCode::kInternalError, "journal: an execution unit without instance number");
        return eu;
    } catch (const std::exception& e) {
        return Error(ErrorCode::kInternalError, std::string("journal: unreadable execution unit: ") + e.what());
    }
}

DeploymentUnit* Inventory::du(std::uint32_t instance) {
    auto it = dus_.find(instance);
    return it == dus_.end() ? nullptr : &it->second;
}
const DeploymentUnit* Inventory::du(std::uint32_t instance) const {
    auto it = dus_.find(instance);
    return it == dus_.end() ? nullptr : &it->second;
}
ExecutionUnit* Inventory::eu(std::uint32_t instance) {
    auto it = eus_.find(instance);
    return it == eus_.end() ? nullptr : &it->second;
}
const ExecutionUnit* Inventory::eu(std::uint32_t instance) const {
    auto it = eus_.find(instance);
    return it == eus_.end() ? nullptr : &it->second;
}

void Inventory::removeDu(std::uint32_t instance) {
    auto it = dus_.find(instance);
    if (it == dus_.end()) return;
    for (auto eu : it->second.executionUnits)
        eus_.erase(eu);
    dus_.erase(it);
}

const DeploymentUnit* Inventory::findDu(std::uint32_t execEnv, const std::string& uuid, const std::string& version,
                                        std::uint32_t except) const {
    for (const auto& [n, du] : dus_)
        if (n != except && du.execEnv == execEnv && du.uuid == uuid && du.version == version) return &du;
    return nullptr;
}

bool Inventory::uuidInUse(std::uint32_t execEnv, const std::string& uuid, std::uint32_t except) const {
    return std::any_of(dus_.begin(), dus_.end(), [&](const auto& d) {
        return d.first != except && d.second.execEnv == execEnv && d.second.uuid == uuid;
    });
}

bool Inventory::digestInUse(std::uint32_t execEnv, const std::string& hex) const {
    return std::any_of(dus_.begin(), dus_.end(),
                       [&](const auto& d) { return d.second.execEnv == execEnv && d.second.duid == hex; });
}

std::vector<std::uint32_t> Inventory::orphanEus() const {
    std::vector<std::uint32_t> out;
    for (const auto& [n, eu] : eus_) {
        const DeploymentUnit* du = this->du(eu.deploymentUnit);
        if (!du || std::find(du->executionUnits.begin(), du->executionUnits.end(), n) == du->executionUnits.end())
            out.push_back(n);
    }
    return out;
}

}  // namespace berth::smm
