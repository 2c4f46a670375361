#include "berth/core/beneath.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace berth {

namespace {

std::string trimSlash(std::string p) {
    while (p.size() > 1 && p.back() == '/')
        p.pop_back();
    return p;
}

}  // namespace

bool pathIsBelow(const std::string& dir, const std::string& path) {
    std::string d = trimSlash(dir);
    std::string p = trimSlash(path);
    if (d.empty() || p.empty()) return false;
    if (p == d) return true;
    if (d == "/") return p.front() == '/';
    return p.size() > d.size() && p.compare(0, d.size(), d) == 0 && p[d.size()] == '/';
}

BeneathResult openBeneath(const std::string& dir, const std::string& path, int flags) {
    BeneathResult r;
    auto fail = [&](BeneathFailure kind, int err, std::string msg) {
        r.error = BeneathError{kind, err, std::move(msg)};
        return std::move(r);
    };
    if (!pathIsBelow(dir, path)) return fail(BeneathFailure::kNotBelow, EXDEV, path + " is not below " + dir);
    UniqueFd root(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root)
        return fail(errno == ENOENT ? BeneathFailure::kMissing : BeneathFailure::kOther, errno,
                    "cannot open " + dir + ": " + std::strerror(errno));
    std::string d = trimSlash(dir), p = trimSlash(path);
    std::string rel = p == d ? "." : p.substr(d == "/" ? 1 : d.size() + 1);
    open_how how{};
    how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    long fd = -1;
    // EAGAIN: a rename or mount raced the lookup; the kernel asks for a retry.
    for (int tries = 0; tries < 64; ++tries) {
        fd = ::syscall(SYS_openat2, root.get(), rel.c_str(), &how, sizeof how);
        if (fd >= 0 || (errno != EINTR && errno != EAGAIN)) break;
    }
    if (fd >= 0) {
        r.fd = UniqueFd(static_cast<int>(fd));
        return r;
    }
    int e = errno;
    switch (e) {
        case ELOOP:
            return fail(BeneathFailure::kSymlink, e,
                        path + " holds a symbolic link (in it or in a directory on the way); links are never followed");
        case EXDEV:
            return fail(BeneathFailure::kNotBelow, e, path + " leads outside " + dir);
        case ENOENT:
        case ENOTDIR:
            return fail(BeneathFailure::kMissing, e, path + " does not exist");
        case ENOSYS:
            return fail(BeneathFailure::kOther, e, "the kernel has no openat2 (Linux 5.6 or later is needed)");
        default:
            return fail(BeneathFailure::kOther, e, "cannot open " + path + ": " + std::strerror(e));
    }
}

}  // namespace berth
