#pragma once
// The typed model of what is installed: DeploymentUnits and ExecutionUnits as plain
// records, keyed by their instance numbers. It is the source of truth of SoftwareModules:
// the TR-181 binding writes the DeploymentUnit.{i}. / ExecutionUnit.{i}. rows from it
// (never the other way round) and the journal persists it (journal.h), so an agent comes
// back with the same DUs and EUs whatever its data-model database holds.
//
// No TR-181 path strings here: references between records are instance numbers
// (ExecEnv.{n}, DeploymentUnit.{n}, ExecutionUnit.{n}).
//
// Threading: an Inventory belongs to the loop thread. Pure data; no I/O.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/core/result.h"
#include "berth/smm/eu_state.h"

namespace berth::smm {

enum class DuStatus { kInstalled, kUpdating, kUninstalling };
std::string_view duStatusName(DuStatus status);  // the TR-181 enumeration value
DuStatus duStatusFrom(std::string_view name);    // unknown: kInstalled

struct HostObjectSpec {
    std::string source, destination, options;
    bool operator==(const HostObjectSpec& o) const {
        return source == o.source && destination == o.destination && options == o.options;
    }
};

struct DeploymentUnit {
    std::uint32_t instance = 0;
    std::uint32_t execEnv = 0;  // ExecEnv instance
    std::string uuid;
    std::string duid;  // manifest digest, hex
    std::string name, url, description, vendor, version, moduleVersion;
    std::string installed, lastUpdate;  // dateTime
    DuStatus status = DuStatus::kInstalled;
    std::vector<std::uint32_t> executionUnits;
    bool operator==(const DeploymentUnit& o) const;
};

struct ExecutionUnit {
    std::uint32_t instance = 0;
    std::uint32_t deploymentUnit = 0;
    std::uint32_t execEnv = 0;
    std::string euid;  // container ID, "<ExecEnv Name>.<instance>"
    std::string name, vendor, version, description, creationTime;
    EuStatus status = EuStatus::kIdle;
    EuFault fault = EuFault::kNoFault;
    std::string faultMessage;
    std::string exitStatus;  // X_BERTH_ExitStatus
    // Controller-writable settings.
    bool autoStart = false;
    std::int64_t runLevel = 0;
    std::uint32_t shutdownDelay = 10;  // seconds
    AutoRestartPolicy autoRestart;
    std::uint32_t retryCount = 0;  // AutoRestart.RetryCount
    std::string lastRestarted, nextRestart;
    // From InstallDU()/Update().
    std::int64_t allocatedMemoryKiB = -1, allocatedCpuPercent = -1;
    std::vector<std::pair<std::string, std::string>> env;
    std::vector<HostObjectSpec> hostObjects;
    bool operator==(const ExecutionUnit& o) const;
};

// Serialised form of a record for the journal (JSON text). Parsing errors: 7003.
std::string serialize(const DeploymentUnit& du);
std::string serialize(const ExecutionUnit& eu);
Result<DeploymentUnit> parseDeploymentUnit(std::string_view text);
Result<ExecutionUnit> parseExecutionUnit(std::string_view text);

class Inventory {
public:
    const std::map<std::uint32_t, DeploymentUnit>& dus() const { return dus_; }
    const std::map<std::uint32_t, ExecutionUnit>& eus() const { return eus_; }
    DeploymentUnit* du(std::uint32_t instance);
    const DeploymentUnit* du(std::uint32_t instance) const;
    ExecutionUnit* eu(std::uint32_t instance);
    const ExecutionUnit* eu(std::uint32_t instance) const;

    void put(DeploymentUnit du) { dus_[du.instance] = std::move(du); }
    void put(ExecutionUnit eu) { eus_[eu.instance] = std::move(eu); }
    // Removes the DU and its EUs.
    void removeDu(std::uint32_t instance);
    void removeEu(std::uint32_t instance) { eus_.erase(instance); }
    void clear() {
        dus_.clear();
        eus_.clear();
    }

    // The DU of that UUID and version in that ExecEnv, other than `except`; nullptr if none.
    const DeploymentUnit* findDu(std::uint32_t execEnv, const std::string& uuid, const std::string& version,
                                 std::uint32_t except = 0) const;
    // Whether another DU than `except` of that ExecEnv has that UUID.
    bool uuidInUse(std::uint32_t execEnv, const std::string& uuid, std::uint32_t except) const;
    // Whether a DU of that ExecEnv uses the image with that manifest digest (hex).
    bool digestInUse(std::uint32_t execEnv, const std::string& hex) const;
    // EUs whose DU is missing or does not list them (to be dropped).
    std::vector<std::uint32_t> orphanEus() const;

private:
    std::map<std::uint32_t, DeploymentUnit> dus_;
    std::map<std::uint32_t, ExecutionUnit> eus_;
};

}  // namespace berth::smm
