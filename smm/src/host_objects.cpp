#include "berth/smm/host_objects.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "berth/core/beneath.h"

namespace berth::smm {

Result<HostObjectOptions> parseHostObjectOptions(std::string_view options) {
    HostObjectOptions o;
    bool sawRo = false, sawRw = false;
    std::size_t pos = 0;
    while (pos <= options.size()) {
        std::size_t comma = options.find(',', pos);
        std::string_view opt =
            options.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
        while (!opt.empty() && opt.front() == ' ')
            opt.remove_prefix(1);
        while (!opt.empty() && opt.back() == ' ')
            opt.remove_suffix(1);
        if (opt == "ro")
            sawRo = true;
        else if (opt == "rw")
            sawRw = true;
        else if (opt == "rbind")
            o.recursive = true;
        else if (opt == "noexec")
            o.noExec = true;
        else if (opt == "bind" || opt == "nosuid" || opt == "nodev" || opt == "private" || opt == "rprivate" ||
                 opt.empty()) {
        } else if (opt == "shared" || opt == "rshared" || opt == "slave" || opt == "rslave" ||
                   opt == "unbindable" || opt == "runbindable") {
            return Error(ErrorCode::kInvalidArguments,
                         "HostObject option '" + std::string(opt) +
                             "' is not supported: the mount is always private, nosuid and nodev (allowed: bind, rbind, "
                             "ro, rw, nosuid, nodev, noexec, private, rprivate)");
        } else {
            return Error(ErrorCode::kInvalidArguments,
                         "unknown HostObject option '" + std::string(opt) +
                             "' (allowed: bind, rbind, ro, rw, nosuid, nodev, noexec, private, rprivate)");
        }
        if (comma == std::string_view::npos) break;
        pos = comma + 1;
    }
    if (sawRo && sawRw)
        return Error(ErrorCode::kInvalidArguments, "HostObject options 'ro' and 'rw' contradict each other");
    o.readOnly = !sawRw;
    return o;
}

Result<UniqueFd> resolveHostObject(const std::vector<std::string>& prefixes, const std::string& source) {
    // The longest prefix wins, so a narrower allowed directory is resolved from itself.
    const std::string* best = nullptr;
    for (const auto& p : prefixes)
        if (!p.empty() && p.front() == '/' && pathIsBelow(p, source) && (!best || p.size() > best->size())) best = &p;
    if (!best)
        return Error(ErrorCode::kRequestDenied,
                     source + " is not below a path the ExecEnv allows (X_BERTH_HostObjectPrefixes)");
    BeneathResult r = openBeneath(*best, source, O_PATH);
    if (r) return std::move(r.fd);
    switch (r.error.kind) {
        case BeneathFailure::kSymlink:
        case BeneathFailure::kMissing:
        case BeneathFailure::kNotBelow:
            return Error(ErrorCode::kInvalidArguments, r.error.message);
        case BeneathFailure::kOther:
            break;
    }
    return Error(ErrorCode::kInternalError, r.error.message);
}

Status stageHostObject(int fd, const std::string& target, const HostObjectOptions& options) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return sysError("fstat of a HostObject", errno);
    if (S_ISDIR(st.st_mode)) {
        if (::mkdir(target.c_str(), 0700) != 0) return sysError("mkdir " + target, errno);
    } else {
        UniqueFd f(::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!f) return sysError("create " + target, errno);
    }
    unsigned int rec = options.recursive ? AT_RECURSIVE : 0;
    UniqueFd tree(::open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | rec));
    if (!tree) return sysError("open_tree of a HostObject", errno);
    mount_attr attr{};
    attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (options.readOnly ? MOUNT_ATTR_RDONLY : 0) |
                    (options.noExec ? MOUNT_ATTR_NOEXEC : 0);
    attr.propagation = MS_PRIVATE;
    if (::mount_setattr(tree.get(), "", AT_EMPTY_PATH | rec, &attr, sizeof attr) != 0)
        return sysError("mount_setattr of a HostObject", errno);
    if (::move_mount(tree.get(), "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
        return sysError("move_mount of a HostObject onto " + target, errno);
    return okStatus();
}

namespace {

void unmountAll(const std::string& p) {
    // Mounts may be stacked; UMOUNT_NOFOLLOW: never act on what a link names.
    for (int i = 0; i < 16 && ::umount2(p.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0; ++i) {
    }
}

}  // namespace

void clearHostObjectStaging(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(fs::symlink_status(dir, ec))) return;
    // Never descends: below a staged mount lies the host's data. remove() is not
    // recursive, and a path that is still a mount point cannot be removed (EBUSY).
    std::vector<std::string> entries;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
        entries.push_back(it->path().string());
    for (const auto& p : entries) {
        unmountAll(p);
        (void)::remove(p.c_str());
    }
    (void)::rmdir(dir.c_str());
}

void sweepHostObjectStaging(const std::string& root) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(fs::symlink_status(root, ec))) return;
    std::vector<std::string> dirs;
    for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec))
        dirs.push_back(it->path().string());
    for (const auto& d : dirs) {
        unmountAll(d);
        clearHostObjectStaging(d);
    }
}

}  // namespace berth::smm
