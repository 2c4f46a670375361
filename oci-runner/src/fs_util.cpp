#include "fs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <random>
#include <set>
#include <utility>

namespace berth::oci::detail {

int openBeneath(int dirfd, const std::string& path, int flags, unsigned mode) {
    open_how how{};
    how.flags = static_cast<unsigned long long>(flags | O_CLOEXEC);
    how.mode = mode;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    for (;;) {
        long fd = ::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how);
        if (fd >= 0) return static_cast<int>(fd);
        if (errno == EINTR || errno == EAGAIN) continue;  // EAGAIN: concurrent rename, retry
        return -1;
    }
}

namespace {

RunnerResult<std::vector<std::string>> listDir(int dirfd) {
    int dup = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dup < 0) return errnoError("open directory", errno);
    DIR* d = ::fdopendir(dup);
    if (!d) {
        int err = errno;
        ::close(dup);  // fdopendir failed: the fd is still ours
        return errnoError("fdopendir", err);
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") names.push_back(std::move(n));
    }
    ::closedir(d);
    return names;
}

}  // namespace

RunnerStatus clearDirectory(int dirfd, const std::vector<std::string>& keep) {
    auto names = listDir(dirfd);
    if (!names) return std::move(names).error();
    std::set<std::string> keepSet(keep.begin(), keep.end());
    for (const auto& n : *names) {
        if (keepSet.count(n)) continue;
        BERTH_OCI_TRY(removeAt(dirfd, n));
    }
    return {};
}

RunnerStatus removeAt(int dirfd, const std::string& name) {
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return {};
        return errnoError("stat", errno, name);
    }
    if (S_ISDIR(st.st_mode)) {
        UniqueFd sub(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) return errnoError("open", errno, name);
        BERTH_OCI_TRY(clearDirectory(sub.get()));
        if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
            return errnoError("rmdir", errno, name);
        return {};
    }
    if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) return errnoError("unlink", errno, name);
    return {};
}

RunnerStatus writeFileAtomic(const std::string& path, const std::string& content, bool durable, unsigned mode) {
    std::string tmp = path + ".tmp-" + randomToken(4);
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, static_cast<mode_t>(mode)));
    if (!fd) return errnoError("create", errno, tmp);
    std::size_t off = 0;
    while (off < content.size()) {
        ssize_t n = ::write(fd.get(), content.data() + off, content.size() - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            int err = errno;
            ::unlink(tmp.c_str());
            return errnoError("write", err, tmp);
        }
        off += static_cast<std::size_t>(n);
    }
    if ((durable && ::fsync(fd.get()) != 0) || ::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        return errnoError("commit", err, path);
    }
    return {};
}

RunnerResult<std::string> readSmallFile(const std::string& path, std::size_t maxBytes) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return errnoError("open", errno, path);
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errnoError("read", errno, path);
        }
        if (n == 0) break;
        out.append(buf, static_cast<std::size_t>(n));
        if (out.size() > maxBytes)
            return RunnerError(ErrorKind::kQuotaExceeded, "file larger than " + std::to_string(maxBytes) + " bytes", path);
    }
    return out;
}

std::uint64_t diskUsage(const std::string& path) {
    std::uint64_t total = 0;
    std::set<std::pair<dev_t, ino_t>> seen;
    std::error_code ec;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return 0;
    total += static_cast<std::uint64_t>(st.st_blocks) * 512;
    if (!S_ISDIR(st.st_mode)) return total;
    for (auto it = std::filesystem::recursive_directory_iterator(
             path, std::filesystem::directory_options::skip_permission_denied, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
        if (::lstat(it->path().c_str(), &st) != 0) continue;
        if (st.st_nlink > 1 && !S_ISDIR(st.st_mode) && !seen.insert({st.st_dev, st.st_ino}).second) continue;
        total += static_cast<std::uint64_t>(st.st_blocks) * 512;
    }
    return total;
}

std::string randomToken(std::size_t bytes) {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    static const char kHex[] = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < bytes; ++i) {
        auto v = static_cast<unsigned>(rng() & 0xff);
        s.push_back(kHex[v >> 4]);
        s.push_back(kHex[v & 15]);
    }
    return s;
}

RunnerStatus makeDirs(const std::string& path, bool privateLeaf) {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) return errnoError("mkdir", ec.value(), path);
    if (privateLeaf) ::chmod(path.c_str(), 0700);
    return {};
}

}  // namespace berth::oci::detail
