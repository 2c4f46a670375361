#pragma once
// Private (TR-181 binding): the input arguments of InstallDU() and
// DeploymentUnit.{i}.Update(), parsed and checked before anything is journaled or
// pulled. Pure: no engine, no runtime; HostObject Sources are resolved beneath the
// ExecEnv's prefixes (openat2) to refuse what could never be mounted.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "berth/core/result.h"
#include "berth/datamodel/engine.h"
#include "berth/smm/eu_state.h"

namespace berth::smm {

struct DuArgs {
    std::string url, username, password, uuid, eeRef, moduleVersion;
    std::optional<std::int64_t> memKiB, cpuPercent, diskKiB;  // Resources.*
    bool hasResources = false;
    std::vector<std::pair<std::string, std::string>> env;       // EnvVariable.{i}
    bool hasEnv = false;
    struct Host { std::string source, destination, options; };
    std::vector<Host> hostObjects;
    bool hasHostObjects = false;
    bool hasAutoRestart = false;
    AutoRestartPolicy autoRestart;
    std::uint32_t shutdownDelay = 10;
};

// What the parser needs to know of the target ExecEnv.
struct DuArgsContext {
    bool fileUrls = false;                  // X_BERTH_FileURLDirectories is set
    std::vector<std::string> hostPrefixes;  // X_BERTH_HostObjectPrefixes
};

// `install`: InstallDU() (UUID is checked); otherwise Update().
// Errors, with TR-181/TR-369 codes: 7004 (bad URL, credentials in the URL, bad UUID,
// NetworkConfig or ApplicationData, Resources.AllocatedMemory below 4096 KiB, a bad
// EnvVariable key or HostObject path or options), 7002 (Privileged, a HostObject
// outside the prefixes), 7036 (Signature), 7032 / 7037 (RequiredRoles / UserRoles).
Result<DuArgs> parseDuArgs(const dm::ArgMap& in, bool install, const DuArgsContext& ee);

}  // namespace berth::smm
