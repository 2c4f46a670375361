#include "berth/oci/bundle.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <sstream>

#include "berth/core/fd.h"
#include "fs_util.h"

namespace berth::oci {
namespace {

using nlohmann::json;

bool isNumber(const std::string& s) {
    if (s.empty() || s.size() > 10) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

// Reads <rootfs>/etc/<file> without following links out of the rootfs.
std::string readImageFile(const std::string& rootfsDir, const std::string& rel) {
    if (rootfsDir.empty()) return {};
    UniqueFd root(::open(rootfsDir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root) return {};
    UniqueFd fd(detail::openBeneath(root.get(), rel, O_RDONLY));
    if (!fd) return {};
    std::string out;
    char buf[8192];
    ssize_t n;
    while ((n = ::read(fd.get(), buf, sizeof buf)) > 0 && out.size() < (1 << 20)) out.append(buf, static_cast<std::size_t>(n));
    return out;
}

// Finds `name` in a passwd/group style file; returns fields.
std::optional<std::vector<std::string>> lookup(const std::string& text, const std::string& name) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        std::vector<std::string> f;
        std::size_t i = 0;
        while (i <= line.size()) {
            auto j = line.find(':', i);
            if (j == std::string::npos) j = line.size();
            f.push_back(line.substr(i, j - i));
            i = j + 1;
        }
        if (f.size() >= 3 && f[0] == name) return f;
    }
    return std::nullopt;
}

RunnerResult<json> resolveUser(const std::string& spec, const std::string& rootfsDir) {
    std::string u = spec, g;
    auto colon = spec.find(':');
    if (colon != std::string::npos) {
        u = spec.substr(0, colon);
        g = spec.substr(colon + 1);
    }
    std::uint32_t uid = 0, gid = 0;
    std::string passwd = readImageFile(rootfsDir, "etc/passwd");
    if (isNumber(u)) {
        uid = static_cast<std::uint32_t>(std::stoul(u));
        // A numeric user takes its primary group from the passwd line with that uid.
        std::istringstream in(passwd);
        std::string line;
        while (std::getline(in, line)) {
            auto f = lookup(line, line.substr(0, line.find(':')));
            if (f && f->size() >= 4 && (*f)[2] == u && isNumber((*f)[3])) {
                gid = static_cast<std::uint32_t>(std::stoul((*f)[3]));
                break;
            }
        }
    } else {
        auto f = lookup(passwd, u);
        if (!f || f->size() < 4 || !isNumber((*f)[2]) || !isNumber((*f)[3]))
            return RunnerError(ErrorKind::kNotFound, "user '" + u + "' is not in the image's /etc/passwd");
        uid = static_cast<std::uint32_t>(std::stoul((*f)[2]));
        gid = static_cast<std::uint32_t>(std::stoul((*f)[3]));
    }
    if (!g.empty()) {
        if (isNumber(g)) {
            gid = static_cast<std::uint32_t>(std::stoul(g));
        } else {
            auto f = lookup(readImageFile(rootfsDir, "etc/group"), g);
            if (!f || !isNumber((*f)[2]))
                return RunnerError(ErrorKind::kNotFound, "group '" + g + "' is not in the image's /etc/group");
            gid = static_cast<std::uint32_t>(std::stoul((*f)[2]));
        }
    }
    return json{{"uid", uid}, {"gid", gid}};
}

bool validContainerPath(const std::string& p) { return !p.empty() && p.front() == '/' && p.find("/../") == std::string::npos && (p.size() < 3 || p.substr(p.size() - 3) != "/.."); }

// The image's environment with the settings' entries over it, and a PATH if neither has one.
RunnerResult<std::vector<std::string>> makeEnv(const ImageConfig& image, const ContainerSettings& s) {
    std::vector<std::string> env;
    auto keyOf = [](const std::string& kv) { return kv.substr(0, kv.find('=')); };
    auto setEnv = [&](const std::string& kv) {
        for (auto& e : env)
            if (keyOf(e) == keyOf(kv)) {
                e = kv;
                return;
            }
        env.push_back(kv);
    };
    for (const auto& e : image.env) setEnv(e);
    for (const auto& e : s.extraEnv) {
        if (e.find('=') == std::string::npos || e.front() == '=')
            return RunnerError(ErrorKind::kInvalidArgument, "environment entry '" + e + "' is not KEY=value");
        setEnv(e);
    }
    bool hasPath = false;
    for (const auto& e : env) hasPath |= keyOf(e) == "PATH";
    if (!hasPath) env.insert(env.begin(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    return env;
}

// config.json's "process": command, environment, user (inside the id map), capabilities.
RunnerResult<json> makeProcess(const ImageConfig& image, const ContainerSettings& s, const BundleParams& params) {
    std::vector<std::string> args = s.args;
    if (args.empty()) {
        args = image.entrypoint;
        args.insert(args.end(), image.cmd.begin(), image.cmd.end());
    }
    if (args.empty()) return RunnerError(ErrorKind::kInvalidArgument, "the image has no Entrypoint or Cmd and no command was given");
    auto env = makeEnv(image, s);
    if (!env) return std::move(env).error();

    json user = json{{"uid", 0}, {"gid", 0}};
    std::string userSpec = s.user ? *s.user : image.user.value_or("");
    if (!userSpec.empty()) {
        auto u = resolveUser(userSpec, params.rootfsDir);
        if (!u) return std::move(u).error();
        user = *u;
    }
    const SecurityPolicy& sec = params.security;
    if (sec.idMap.enabled()) {
        for (const char* k : {"uid", "gid"}) {
            auto id = user[k].get<std::uint32_t>();
            if (!sec.idMap.toHost(id))
                return RunnerError(ErrorKind::kInvalidArgument,
                                   std::string("the container's ") + k + " " + std::to_string(id) +
                                       " is outside the execution environment's id map of " +
                                       std::to_string(sec.idMap.size) + " ids");
        }
    }

    json caps = sec.capabilities;
    return json{
        {"terminal", s.terminal},
        {"user", user},
        {"args", args},
        {"env", *env},
        {"cwd", image.workingDir.value_or("/")},
        {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
        {"rlimits", json::array({{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}},
                                 {{"type", "RLIMIT_CORE"}, {"hard", 0}, {"soft", 0}}})},
        {"noNewPrivileges", true},
    };
}

// config.json's "mounts": the standard ones, then the settings' bind mounts.
RunnerResult<json> makeMounts(const ContainerSettings& s, const SecurityPolicy& sec) {
    json mounts = json::array({
        {{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
        {{"destination", "/dev"}, {"type", "tmpfs"}, {"source", "tmpfs"},
         {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
        {{"destination", "/dev/pts"}, {"type", "devpts"}, {"source", "devpts"},
         {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}}},
        {{"destination", "/dev/shm"}, {"type", "tmpfs"}, {"source", "shm"},
         {"options", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}},
        {{"destination", "/dev/mqueue"}, {"type", "mqueue"}, {"source", "mqueue"}, {"options", {"nosuid", "noexec", "nodev"}}},
    });
    if (sec.idMap.enabled() && s.hostNetwork)
        mounts.push_back({{"destination", "/sys"}, {"type", "none"}, {"source", "/sys"},
                          {"options", {"rbind", "nosuid", "noexec", "nodev", "ro"}}});
    else
        mounts.push_back({{"destination", "/sys"}, {"type", "sysfs"}, {"source", "sysfs"},
                          {"options", {"nosuid", "noexec", "nodev", "ro"}}});
    for (const auto& m : s.mounts) {
        if (!validContainerPath(m.destination))
            return RunnerError(ErrorKind::kInvalidArgument, "mount destination must be an absolute path", m.destination);
        if (m.source.empty() || m.source.front() != '/')
            return RunnerError(ErrorKind::kInvalidArgument, "mount source must be an absolute host path", m.source);
        json opts = {"rbind", "nosuid", "nodev"};
        opts.push_back(m.readOnly ? "ro" : "rw");
        if (m.noExec) opts.push_back("noexec");
        mounts.push_back({{"destination", m.destination}, {"type", "bind"}, {"source", m.source}, {"options", opts}});
    }
    return mounts;
}

// config.json's "linux": namespaces, resource limits, masked paths, id maps, seccomp.
RunnerResult<json> makeLinux(const ContainerSettings& s, const BundleParams& params) {
    const SecurityPolicy& sec = params.security;
    json namespaces = json::array({{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}});
    if (!s.hostNetwork) namespaces.push_back({{"type", "network"}});
    namespaces.push_back({{"type", "cgroup"}});
    if (sec.idMap.enabled()) namespaces.push_back({{"type", "user"}});

    json resources = json::object();
    resources["devices"] = json::array({{{"allow", false}, {"access", "rwm"}}});
    if (s.memoryLimitBytes) {
        if (*s.memoryLimitBytes <= 0) return RunnerError(ErrorKind::kInvalidArgument, "memory limit must be positive");
        resources["memory"] = {{"limit", *s.memoryLimitBytes}};
        if (params.swapLimit) resources["memory"]["swap"] = *s.memoryLimitBytes;
    }
    if (s.cpus) {
        if (!(*s.cpus > 0)) return RunnerError(ErrorKind::kInvalidArgument, "cpus must be positive");
        const std::int64_t period = 100000;
        resources["cpu"] = {{"period", period}, {"quota", static_cast<std::int64_t>(std::llround(*s.cpus * period))}};
    }
    if (s.pidsLimit) resources["pids"] = {{"limit", *s.pidsLimit}};

    json linux = {
        {"namespaces", namespaces},
        {"resources", resources},
        {"maskedPaths", {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                         "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                         "/proc/interrupts", "/sys/firmware", "/sys/devices/virtual/powercap"}},
        {"readonlyPaths", {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}},
    };
    if (!params.cgroupsPath.empty()) linux["cgroupsPath"] = params.cgroupsPath;
    if (sec.idMap.enabled()) {
        json map = json::array({{{"containerID", 0}, {"hostID", sec.idMap.hostBase}, {"size", sec.idMap.size}}});
        linux["uidMappings"] = map;
        linux["gidMappings"] = map;
    }
    if (!sec.seccomp.is_null()) linux["seccomp"] = sec.seccomp;
    return linux;
}

}  // namespace

RunnerResult<json> makeRuntimeConfig(const ImageConfig& image, const ContainerSettings& s, const std::string& id,
                                     const BundleParams& params) {
    auto process = makeProcess(image, s, params);
    if (!process) return std::move(process).error();
    auto mounts = makeMounts(s, params.security);
    if (!mounts) return std::move(mounts).error();
    auto linux = makeLinux(s, params);
    if (!linux) return std::move(linux).error();
    json config = {
        {"ociVersion", "1.0.2"},
        {"process", *process},
        {"root", {{"path", params.rootfsPath}, {"readonly", s.readOnlyRootfs || params.security.readOnlyRootfs}}},
        {"hostname", s.hostname.empty() ? id : s.hostname},
        {"mounts", *mounts},
        {"linux", *linux},
    };
    if (!s.annotations.empty()) config["annotations"] = s.annotations;
    return config;
}

}  // namespace berth::oci
