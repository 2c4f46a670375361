#pragma once
// cgroup figures of a container: memory in use, CPU time, pids, OOM kills.
//
// The layout is detected once from /proc/self/mountinfo: cgroup v2 (unified),
// v1, or hybrid (v1 controllers plus an almost empty cgroup2, as on the build
// machines; treated as v1). Reading is a handful of small files; any thread.

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "berth/oci/error.h"

namespace berth::oci {

enum class CgroupVersion { kV1, kV2, kHybrid };
std::string_view cgroupVersionName(CgroupVersion v);

struct CgroupLayout {
    CgroupVersion version = CgroupVersion::kV2;
    std::string unifiedMount;                        // cgroup2 mount point ("" if none)
    std::map<std::string, std::string> v1Mounts;     // controller -> mount point

    // Parses a mountinfo file. Errors: kNotFound when no cgroup fs is mounted.
    static RunnerResult<CgroupLayout> detect(const std::string& mountinfo = "/proc/self/mountinfo");
    // The directory of `cgroupPath` for a v1 controller, or the unified one.
    std::string dirFor(const std::string& controller, const std::string& cgroupPath) const;
    bool usesV1() const { return version != CgroupVersion::kV2; }
};

struct CgroupFigures {
    std::uint64_t memoryBytes = 0;                 // memory.current / memory.usage_in_bytes
    std::optional<std::uint64_t> memoryLimitBytes; // none when unlimited
    std::uint64_t cpuNanos = 0;                    // cpu.stat usage_usec*1000 / cpuacct.usage
    std::uint64_t pids = 0;
    std::uint64_t oomKills = 0;                    // memory.events oom_kill / memory.oom_control oom_kill
    std::uint64_t memoryFailCount = 0;             // v1 memory.failcnt; v2 memory.events max
};

// Errors: kNotFound when the cgroup does not exist (container gone).
RunnerResult<CgroupFigures> readCgroupFigures(const CgroupLayout& layout, const std::string& cgroupPath);

}  // namespace berth::oci
