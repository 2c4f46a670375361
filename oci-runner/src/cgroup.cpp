// Why the cgroup files are read directly instead of through libcgroup: the runner
// needs five counters from a cgroup it did not create (the runtime did) and knows
// the path of. libcgroup would need cgroup_init() to scan mounts into global
// state, its v2 support in 2.0 is partial for hybrid hosts, and its
// cgroup_get_cgroup() reads every file of every controller to return one value.
// Parsing mountinfo and reading the few files is shorter, has no global state and
// behaves the same on v1, v2 and hybrid hosts.
#include "berth/oci/cgroup.h"

#include <fstream>
#include <sstream>
#include <vector>

#include "fs_util.h"

namespace berth::oci {
namespace {

std::optional<std::uint64_t> readNumber(const std::string& path) {
    std::ifstream f(path);
    if (!f) return std::nullopt;
    std::string s;
    f >> s;
    if (s.empty() || s == "max") return std::nullopt;
    try {
        return std::stoull(s);
    } catch (...) {
        return std::nullopt;
    }
}

std::optional<std::uint64_t> readKey(const std::string& path, const std::string& key) {
    std::ifstream f(path);
    std::string k;
    std::uint64_t v;
    while (f >> k >> v)
        if (k == key) return v;
    return std::nullopt;
}

std::string unescapeMount(const std::string& s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size()) {
            out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8)));
            i += 3;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

}  // namespace

std::string_view cgroupVersionName(CgroupVersion v) {
    switch (v) {
        case CgroupVersion::kV1: return "v1";
        case CgroupVersion::kV2: return "v2";
        case CgroupVersion::kHybrid: return "hybrid";
    }
    return "?";
}

RunnerResult<CgroupLayout> CgroupLayout::detect(const std::string& mountinfo) {
    std::ifstream f(mountinfo);
    if (!f) return RunnerError(ErrorKind::kNotFound, "cannot read mountinfo", mountinfo);
    CgroupLayout layout;
    std::string line;
    while (std::getline(f, line)) {
        // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
        std::istringstream in(line);
        std::vector<std::string> fields;
        std::string w;
        while (in >> w) fields.push_back(w);
        std::size_t dash = 0;
        for (std::size_t i = 6; i < fields.size(); ++i)
            if (fields[i] == "-") {
                dash = i;
                break;
            }
        if (dash == 0 || dash + 3 > fields.size() || fields.size() < 5) continue;
        const std::string& fstype = fields[dash + 1];
        std::string mountPoint = unescapeMount(fields[4]);
        if (fstype == "cgroup2") {
            if (layout.unifiedMount.empty()) layout.unifiedMount = mountPoint;
        } else if (fstype == "cgroup" && dash + 3 <= fields.size() - 0) {
            std::string opts = fields.size() > dash + 3 ? fields[dash + 3] : "";
            std::istringstream os(opts);
            std::string o;
            while (std::getline(os, o, ','))
                if (o == "memory" || o == "cpu" || o == "cpuacct" || o == "pids" || o == "cpuset" || o == "blkio" ||
                    o == "devices" || o == "freezer" || o == "net_cls" || o == "net_prio" || o == "hugetlb" ||
                    o == "perf_event" || o.rfind("name=", 0) == 0)
                    layout.v1Mounts.emplace(o, mountPoint);
        }
    }
    if (!layout.v1Mounts.empty()) {
        layout.version = layout.unifiedMount.empty() ? CgroupVersion::kV1 : CgroupVersion::kHybrid;
    } else if (!layout.unifiedMount.empty()) {
        layout.version = CgroupVersion::kV2;
    } else {
        return RunnerError(ErrorKind::kNotFound, "no cgroup file system is mounted", mountinfo);
    }
    return layout;
}

std::string CgroupLayout::dirFor(const std::string& controller, const std::string& cgroupPath) const {
    std::string rel = cgroupPath.empty() || cgroupPath.front() == '/' ? cgroupPath : "/" + cgroupPath;
    if (!usesV1()) return unifiedMount + rel;
    auto it = v1Mounts.find(controller);
    return (it == v1Mounts.end() ? std::string("/nonexistent") : it->second) + rel;
}

RunnerResult<CgroupFigures> readCgroupFigures(const CgroupLayout& l, const std::string& path) {
    CgroupFigures fig;
    if (l.usesV1()) {
        std::string mem = l.dirFor("memory", path);
        auto usage = readNumber(mem + "/memory.usage_in_bytes");
        if (!usage) return RunnerError(ErrorKind::kNotFound, "no memory cgroup", mem);
        fig.memoryBytes = *usage;
        auto limit = readNumber(mem + "/memory.limit_in_bytes");
        // v1 writes "unlimited" as a huge page-rounded number.
        if (limit && *limit < (1ull << 62)) fig.memoryLimitBytes = *limit;
        fig.oomKills = readKey(mem + "/memory.oom_control", "oom_kill").value_or(0);
        fig.memoryFailCount = readNumber(mem + "/memory.failcnt").value_or(0);
        fig.cpuNanos = readNumber(l.dirFor("cpuacct", path) + "/cpuacct.usage").value_or(0);
        fig.pids = readNumber(l.dirFor("pids", path) + "/pids.current").value_or(0);
        return fig;
    }
    std::string dir = l.dirFor("", path);
    auto usage = readNumber(dir + "/memory.current");
    if (!usage) {
        std::ifstream probe(dir + "/cgroup.procs");
        if (!probe) return RunnerError(ErrorKind::kNotFound, "no such cgroup", dir);
    }
    fig.memoryBytes = usage.value_or(0);
    fig.memoryLimitBytes = readNumber(dir + "/memory.max");
    fig.oomKills = readKey(dir + "/memory.events", "oom_kill").value_or(0);
    fig.memoryFailCount = readKey(dir + "/memory.events", "max").value_or(0);
    fig.cpuNanos = readKey(dir + "/cpu.stat", "usage_usec").value_or(0) * 1000;
    fig.pids = readNumber(dir + "/pids.current").value_or(0);
    return fig;
}

}  // namespace berth::oci
