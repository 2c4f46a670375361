#include "berth/oci/container.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "berth/core/log.h"
#include "berth/oci/unpack.h"
#include "fs_util.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace berth::oci {
namespace {

using nlohmann::json;

int pidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

std::int64_t unixNow() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Waits (blocking) until the process behind pidfd exits or the timeout passes.
bool waitExit(int pidfd, std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
        pollfd p{pidfd, POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(std::max<long long>(left.count(), 0)));
        if (r > 0) return true;
        if (r == 0) return false;
        if (errno != EINTR) return false;
    }
}

void unmountQuietly(const std::string& path) {
    if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
        BERTH_LOG_WARN("oci") << "umount " << path << ": " << std::strerror(errno);
    }
}

}  // namespace

std::string containerRecordToJson(const ContainerRecord& r) {
    return json{{"id", r.id},
                {"imageDigest", r.imageDigest},
                {"cgroupPath", r.cgroupPath},
                {"rootfsMode", r.rootfsMode},
                {"createdAt", r.createdAt}}
        .dump(2);
}

RunnerResult<ContainerRecord> containerRecordFromJson(std::string_view text) {
    json j = json::parse(text.begin(), text.end(), nullptr, false);
    if (!j.is_object()) return RunnerError(ErrorKind::kCorruptData, "container record is not a JSON object");
    ContainerRecord r;
    auto str = [&](const char* k) { return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string(); };
    r.id = str("id");
    r.imageDigest = str("imageDigest");
    r.cgroupPath = str("cgroupPath");
    r.rootfsMode = str("rootfsMode");
    r.createdAt = j.contains("createdAt") && j["createdAt"].is_number_integer() ? j["createdAt"].get<std::int64_t>() : 0;
    if (!isValidContainerId(r.id)) return RunnerError(ErrorKind::kCorruptData, "container record without a valid id");
    return r;
}

RunnerResult<std::unique_ptr<ContainerManager>> ContainerManager::open(ContainerManagerOptions o, ImageStore& images) {
    if (o.stateDir.empty()) return RunnerError(ErrorKind::kInvalidArgument, "a state directory is required");
    BERTH_OCI_TRY(detail::makeDirs(o.stateDir + "/containers", true));
    BERTH_OCI_TRY(detail::makeDirs(o.stateDir + "/runtime", true));
    if (o.security.seccomp.is_null() && o.seccompProfile != "unconfined") {
        auto profile = o.seccompProfile.empty() ? defaultSeccompProfile() : loadSeccompProfile(o.seccompProfile);
        if (!profile) return std::move(profile).error();
        o.security.seccomp = std::move(*profile);
    }
    const IdMapping& map = o.security.idMap;
    if (map.enabled()) {
        IdMapping owners = images.limits().ownerMap();
        if (owners.hostBase != map.hostBase || owners.size != map.size)
            return RunnerError(ErrorKind::kInvalidArgument,
                               "the image store's layers are owned for another id map than the containers'", images.root());
        // The runtime mounts rootfs/ from inside the user namespace, as the mapped root.
        // As Docker's userns-remap does: the state directory admits root and the mapped
        // root's group only (0710), so neither other host users nor other ExecEnvs'
        // containers can reach the rootfs below it.
        std::string containers = o.stateDir + "/containers";
        if (::chown(o.stateDir.c_str(), 0, map.hostBase) != 0) return errnoError("chown", errno, o.stateDir);
        if (::chmod(o.stateDir.c_str(), 0710) != 0) return errnoError("chmod", errno, o.stateDir);
        if (::chmod(containers.c_str(), 0711) != 0) return errnoError("chmod", errno, containers);
        std::error_code ec;
        auto real = std::filesystem::canonical(o.stateDir, ec);
        if (ec) return errnoError("realpath", ec.value(), o.stateDir);
        for (auto p = real.parent_path(); !p.empty(); p = p.parent_path()) {
            struct stat st {};
            if (::stat(p.c_str(), &st) != 0) return errnoError("stat", errno, p.string());
            if (!(st.st_mode & S_IXOTH))
                return RunnerError(ErrorKind::kInvalidArgument,
                                   "directory " + p.string() +
                                       " is not searchable by other users, so a container's mapped root cannot reach "
                                       "its rootfs; chmod o+x it or choose another state directory",
                                   p.string());
            if (p == p.root_path()) break;
        }
    }
    auto cg = CgroupLayout::detect(o.mountinfo);
    if (!cg) return std::move(cg).error();
    RuntimeOptions ro;
    ro.kind = o.runtime;
    ro.binary = o.runtimeBinary;
    ro.root = o.stateDir + "/runtime";
    ro.timeout = o.runtimeTimeout;
    ro.hybridWorkaround = o.runtime == RuntimeKind::kCrun && cg->version == CgroupVersion::kHybrid;
    Runtime rt(ro);
    return std::unique_ptr<ContainerManager>(new ContainerManager(std::move(o), images, std::move(*cg), std::move(rt)));
}

std::string ContainerManager::containerDir(const std::string& id) const { return options_.stateDir + "/containers/" + id; }

bool ContainerManager::chownToMappedRoot(const std::string& path) const {
    const IdMapping& map = options_.security.idMap;
    if (!map.enabled()) return true;
    return ::chown(path.c_str(), map.hostBase, map.hostBase) == 0;
}

RunnerStatus ContainerManager::prepareRootfs(const ImageRecord& image, const std::string& dir, std::string& mode) {
    std::string rootfs = dir + "/rootfs";
    if (::mkdir(rootfs.c_str(), 0755) != 0) return errnoError("mkdir", errno, rootfs);
    auto layers = images_.layerDirs(image);
    if (options_.allowOverlay) {
        std::string lower;
        bool usable = true;
        for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
            if (it->find_first_of(":,") != std::string::npos) usable = false;
            if (!lower.empty()) lower += ':';
            lower += *it;
        }
        if (lower.empty()) {
            lower = dir + "/empty";
            ::mkdir(lower.c_str(), 0755);
        }
        std::string opts = "lowerdir=" + lower + ",upperdir=" + dir + "/upper,workdir=" + dir + "/work";
        usable = usable && opts.size() < 4000 && dir.find_first_of(":,") == std::string::npos;
        if (usable && ::mkdir((dir + "/upper").c_str(), 0755) == 0 && ::mkdir((dir + "/work").c_str(), 0700) == 0 &&
            chownToMappedRoot(dir + "/upper")) {
            if (::mount("overlay", rootfs.c_str(), "overlay", 0, opts.c_str()) == 0) {
                mode = "overlay";
                return {};
            }
            BERTH_LOG_WARN("oci") << "overlay mount failed (" << std::strerror(errno) << "); copying the image instead";
            ::rmdir((dir + "/upper").c_str());
            ::rmdir((dir + "/work").c_str());
        }
    }
    if (!chownToMappedRoot(rootfs)) return errnoError("chown", errno, rootfs);
    for (const auto& l : layers) BERTH_OCI_TRY(mergeOverlayLayer(l, rootfs));
    mode = "copy";
    return {};
}

RunnerResult<ContainerInfo> ContainerManager::create(const std::string& id, const std::string& imageRef,
                                                     const ContainerSettings& settings) {
    if (!isValidContainerId(id))
        return RunnerError(ErrorKind::kInvalidArgument, "container IDs are 1-64 characters of [A-Za-z0-9_+.-]", id);
    auto image = images_.get(imageRef);
    if (!image) return std::move(image).error();
    std::string dir = containerDir(id);
    if (::mkdir(dir.c_str(), 0700) != 0) {
        if (errno == EEXIST) return RunnerError(ErrorKind::kConflict, "a container with this ID exists", id);
        return errnoError("mkdir", errno, dir);
    }
    // Search only (no listing) for the mapped root, which must reach rootfs/.
    if (options_.security.idMap.enabled()) ::chmod(dir.c_str(), 0711);
    bool created = false;
    bool ok = false;
    struct Cleanup {
        std::function<void()> fn;
        ~Cleanup() { fn(); }
    } cleanup{[&] {
        if (ok) return;
        if (created) (void)runtime_.remove(id, true);
        unmountQuietly(dir + "/rootfs");
        (void)removeTree(dir);
    }};

    ContainerRecord rec;
    rec.id = id;
    rec.imageDigest = image->manifestDigest;
    rec.cgroupPath = options_.cgroupParent + "/" + id;
    rec.createdAt = unixNow();
    BERTH_OCI_TRY(prepareRootfs(*image, dir, rec.rootfsMode));

    BundleParams params;
    params.rootfsDir = dir + "/rootfs";
    params.cgroupsPath = rec.cgroupPath;
    params.security = options_.security;
    if (cgroups_.usesV1()) {
        struct stat st {};
        params.swapLimit = ::stat((cgroups_.dirFor("memory", "") + "/memory.memsw.limit_in_bytes").c_str(), &st) == 0;
    }
    auto config = makeRuntimeConfig(image->config, settings, id, params);
    if (!config) return std::move(config).error();
    // No fsync: these files matter only while the container lives, and a power loss
    // that could lose them ends the container too (its directory is then removed at
    // the next start). Each fsync costs ~8 ms of the start on a gateway's flash.
    // Mode 0600: the directory is searchable by others when there is an id map, and
    // config.json holds the EU's environment.
    BERTH_OCI_TRY(detail::writeFileAtomic(dir + "/config.json", config->dump(), false, 0600));
    BERTH_OCI_TRY(detail::writeFileAtomic(dir + "/record.json", containerRecordToJson(rec), false, 0600));

    UniqueFd console(::open((dir + "/console.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
    if (!console) return errnoError("open", errno, dir + "/console.log");
    // No `state` probe before create: the runtime refuses an existing ID itself,
    // and each extra runtime call costs ~10 ms.
    if (auto c = runtime_.create(id, dir, console.get(), dir + "/runtime.log"); !c) {
        if (c.error().message.find("exists") != std::string::npos)
            return RunnerError(ErrorKind::kConflict, "the runtime already has a container with this ID", id);
        created = true;  // a failed create may have left runtime state behind
        return std::move(c).error();
    }
    created = true;
    // The init pid from --pid-file saves a `state` call.
    auto pidText = detail::readSmallFile(dir + "/init.pid", 64);
    pid_t pid = pidText ? static_cast<pid_t>(std::atoi(pidText->c_str())) : 0;
    if (pid <= 0) {
        auto st = runtime_.state(id);
        if (!st) return std::move(st).error();
        pid = st->pid;
    }
    ok = true;
    ContainerInfo info;
    info.record = rec;
    info.status = "created";
    info.pid = pid;
    BERTH_LOG_INFO("oci") << "created container " << id << " (" << rec.rootfsMode << ", pid " << info.pid << ")";
    return info;
}

RunnerStatus ContainerManager::start(const std::string& id) {
    if (!isValidContainerId(id)) return RunnerError(ErrorKind::kInvalidArgument, "invalid container ID", id);
    return runtime_.start(id, containerDir(id) + "/runtime.log");
}

RunnerResult<ContainerInfo> ContainerManager::run(const std::string& id, const std::string& imageRef,
                                                  const ContainerSettings& settings) {
    auto info = create(id, imageRef, settings);
    if (!info) return info;
    auto st = start(id);
    if (!st) {
        (void)remove(id, true);
        return std::move(st).error();
    }
    info->status = "running";
    return info;
}

RunnerResult<StopResult> ContainerManager::stop(const std::string& id, std::chrono::milliseconds grace, int signal) {
    if (!isValidContainerId(id)) return RunnerError(ErrorKind::kInvalidArgument, "invalid container ID", id);
    auto st = runtime_.state(id);
    if (!st) return std::move(st).error();
    StopResult result;
    if (st->status == "stopped" || st->pid <= 0) return result;
    UniqueFd pidfd(pidfdOpen(st->pid));
    if (!pidfd) {
        if (errno == ESRCH) return result;
        return errnoError("pidfd_open", errno, id);
    }
    if (auto k = runtime_.kill(id, signal); !k && k.error().kind != ErrorKind::kConflict) return std::move(k).error();
    if (waitExit(pidfd.get(), grace)) return result;
    BERTH_LOG_INFO("oci") << "container " << id << " ignored signal " << signal << " for " << grace.count()
                          << " ms; killing it";
    result.killed = true;
    if (auto k = runtime_.kill(id, SIGKILL, false); !k && k.error().kind != ErrorKind::kConflict)
        return std::move(k).error();
    if (!waitExit(pidfd.get(), std::chrono::seconds(10)))
        return RunnerError(ErrorKind::kTimeout, "container survived SIGKILL for 10 s", id);
    return result;
}

RunnerStatus ContainerManager::remove(const std::string& id, bool force) {
    if (!isValidContainerId(id)) return RunnerError(ErrorKind::kInvalidArgument, "invalid container ID", id);
    std::string dir = containerDir(id);
    struct stat sb {};
    bool haveDir = ::stat(dir.c_str(), &sb) == 0;
    auto st = runtime_.state(id);
    if (!st && st.error().kind != ErrorKind::kNotFound) return std::move(st).error();
    if (!st && !haveDir) return RunnerError(ErrorKind::kNotFound, "no such container", id);
    if (st) {
        if (!force && st->status == "running")
            return RunnerError(ErrorKind::kConflict, "container is running; stop it first or force", id);
        BERTH_OCI_TRY(runtime_.remove(id, force || st->status != "stopped"));
    }
    unmountQuietly(dir + "/rootfs");
    BERTH_OCI_TRY(removeTree(dir));
    BERTH_LOG_INFO("oci") << "removed container " << id;
    return {};
}

RunnerResult<ContainerRecord> ContainerManager::readRecord(const std::string& id) const {
    auto text = detail::readSmallFile(containerDir(id) + "/record.json", 1 << 20);
    if (!text) {
        if (text.error().kind == ErrorKind::kNotFound) return RunnerError(ErrorKind::kNotFound, "no such container", id);
        return std::move(text).error();
    }
    return containerRecordFromJson(*text);
}

RunnerResult<ContainerInfo> ContainerManager::info(const std::string& id) const {
    if (!isValidContainerId(id)) return RunnerError(ErrorKind::kInvalidArgument, "invalid container ID", id);
    ContainerInfo info;
    auto rec = readRecord(id);
    auto st = runtime_.state(id);
    if (!rec && !st) return std::move(rec).error();
    if (rec) info.record = *rec;
    else {
        info.hasRecord = false;
        info.record.id = id;
    }
    if (st) {
        info.status = st->status;
        info.pid = st->pid;
    } else if (st.error().kind == ErrorKind::kNotFound) {
        info.status = "absent";
    } else {
        return std::move(st).error();
    }
    return info;
}

RunnerResult<std::vector<ContainerInfo>> ContainerManager::list() const {
    std::vector<ContainerInfo> out;
    auto states = runtime_.list();
    if (!states) return std::move(states).error();
    std::map<std::string, RuntimeState> byId;
    for (auto& s : *states) byId[s.id] = s;
    std::set<std::string> seen;
    std::string base = options_.stateDir + "/containers";
    DIR* d = ::opendir(base.c_str());
    if (!d) return errnoError("opendir", errno, base);
    std::vector<std::string> names;
    {
        std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
        while (dirent* e = ::readdir(d)) {
            std::string n = e->d_name;
            if (isValidContainerId(n)) names.push_back(n);
        }
    }
    for (const auto& n : names) {
        ContainerInfo info;
        auto rec = readRecord(n);
        if (!rec) {
            BERTH_LOG_WARN("oci") << "container directory " << n << " has no readable record: " << rec.error().describe();
            info.hasRecord = false;
            info.record.id = n;
        } else {
            info.record = *rec;
        }
        auto it = byId.find(n);
        if (it != byId.end()) {
            info.status = it->second.status;
            info.pid = it->second.pid;
        } else {
            info.status = "absent";
        }
        seen.insert(n);
        out.push_back(std::move(info));
    }
    for (const auto& [id, s] : byId) {
        if (seen.count(id)) continue;
        ContainerInfo info;
        info.hasRecord = false;
        info.record.id = id;
        info.status = s.status;
        info.pid = s.pid;
        out.push_back(std::move(info));
    }
    return out;
}

RunnerResult<ContainerFigures> ContainerManager::figures(const std::string& id) const {
    auto rec = readRecord(id);
    if (!rec) return std::move(rec).error();
    ContainerFigures f;
    auto cg = readCgroupFigures(cgroups_, rec->cgroupPath);
    if (cg) f.cgroup = *cg;
    else if (cg.error().kind != ErrorKind::kNotFound) return std::move(cg).error();
    std::string dir = containerDir(id);
    f.diskBytes = detail::diskUsage(dir + (rec->rootfsMode == "overlay" ? "/upper" : "/rootfs"));
    struct stat st {};
    if (::stat((dir + "/console.log").c_str(), &st) == 0) f.logBytes = static_cast<std::uint64_t>(st.st_size);
    return f;
}

RunnerStatus ContainerManager::enforceLogCap(const std::string& id) {
    std::string path = logPath(id);
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) return errnoError("open", errno, path);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return errnoError("stat", errno, path);
    if (static_cast<std::uint64_t>(st.st_size) <= options_.logCapBytes) return {};
    UniqueFd old(::open((path + ".1").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
    if (!old) return errnoError("open", errno, path + ".1");
    // Keep the newest cap bytes in .1; lines written between the copy and the
    // truncate are lost (copy-truncate, as logrotate does for O_APPEND writers).
    off_t from = st.st_size > static_cast<off_t>(options_.logCapBytes) ? st.st_size - static_cast<off_t>(options_.logCapBytes) : 0;
    off_t left = st.st_size - from;
    while (left > 0) {
        ssize_t n = ::copy_file_range(fd.get(), &from, old.get(), nullptr, static_cast<size_t>(left), 0);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            break;
        }
        left -= n;
    }
    if (::ftruncate(fd.get(), 0) != 0) return errnoError("truncate", errno, path);
    return {};
}

void ContainerManager::removeCgroupParent() {
    if (options_.cgroupParent.empty() || options_.cgroupParent == "/") return;
    std::set<std::string> dirs;
    if (cgroups_.usesV1()) {
        for (const auto& [controller, mount] : cgroups_.v1Mounts) dirs.insert(cgroups_.dirFor(controller, options_.cgroupParent));
        if (!cgroups_.unifiedMount.empty()) dirs.insert(cgroups_.unifiedMount + options_.cgroupParent);
    } else {
        dirs.insert(cgroups_.dirFor("", options_.cgroupParent));
    }
    for (const auto& d : dirs) ::rmdir(d.c_str());  // fails (EBUSY/ENOENT) unless empty: that is the point
}

// --- ContainerWatcher -------------------------------------------------------------

struct ContainerWatcher::Watch {
    std::string id;
    pid_t pid = 0;
    std::string cgroupPath;
    UniqueFd pidfd;
    ExitCallback cb;
    std::unique_ptr<FdWatch> fdWatch;
};

ContainerWatcher::ContainerWatcher(EventLoop& loop, CgroupLayout cgroups) : loop_(loop), cgroups_(std::move(cgroups)) {}
ContainerWatcher::~ContainerWatcher() = default;

RunnerStatus ContainerWatcher::watch(const std::string& id, pid_t pid, const std::string& cgroupPath, ExitCallback cb) {
    if (pid <= 0) return RunnerError(ErrorKind::kInvalidArgument, "no init pid to watch", id);
    auto w = std::make_unique<Watch>();
    w->id = id;
    w->pid = pid;
    w->cgroupPath = cgroupPath;
    w->cb = std::move(cb);
    w->pidfd.reset(pidfdOpen(pid));
    if (!w->pidfd) return errnoError("pidfd_open", errno, id);
    auto fw = loop_.watchFd(w->pidfd.get(), EPOLLIN, [this, id](std::uint32_t) {
        auto it = watches_.find(id);
        if (it == watches_.end()) return;
        siginfo_t si{};
        std::optional<ExitStatus> status;
        if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(it->second->pidfd.get()), &si,
                     WEXITED | WNOHANG) == 0 &&
            si.si_pid != 0) {
            ExitStatus s;
            if (si.si_code == CLD_EXITED) {
                s.exited = true;
                s.code = si.si_status;
            } else {
                s.signal = si.si_status;
            }
            status = s;
        }
        // ECHILD: not our child (adopted after a restart) or already reaped by the
        // Subreaper sweep, which reports through onReaped(); the code is unknown here.
        finish(id, status);
    });
    if (!fw) return fromCore(fw.error(), ErrorKind::kIoError);
    w->fdWatch = std::move(*fw);
    watches_[id] = std::move(w);
    return {};
}

void ContainerWatcher::unwatch(const std::string& id) {
    auto it = watches_.find(id);
    if (it == watches_.end()) return;
    // The watch may be the one dispatching right now: destroy it after the callback.
    Watch* raw = it->second.release();
    watches_.erase(it);
    loop_.post([raw] { delete raw; });
}

bool ContainerWatcher::onReaped(pid_t pid, const ExitStatus& status) {
    for (auto& [id, w] : watches_) {
        if (w->pid == pid) {
            std::string copy = id;
            finish(copy, status);
            return true;
        }
    }
    return false;
}

void ContainerWatcher::finish(const std::string& id, std::optional<ExitStatus> status) {
    auto it = watches_.find(id);
    if (it == watches_.end()) return;
    ContainerExit ex;
    ex.id = id;
    ex.status = status;
    auto fig = readCgroupFigures(cgroups_, it->second->cgroupPath);
    if (fig) {
        ex.oomKills = fig->oomKills;
        ex.oomKilled = fig->oomKills > 0;
    }
    ExitCallback cb = std::move(it->second->cb);
    unwatch(id);
    BERTH_LOG_INFO("oci") << "container " << id << " exited: "
                          << (status ? status->describe() : std::string("status unknown (not our child)"))
                          << (ex.oomKilled ? ", OOM-killed" : "");
    if (cb) cb(ex);
}

}  // namespace berth::oci
