#pragma once
// Opening a path beneath a trusted directory without following any symbolic link:
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) from an fd
// of the directory. What the returned fd refers to cannot be redirected by a link
// swapped in later; callers use the fd (or /proc/self/fd/N of it), never the string.
// Any thread; blocking only as long as the lookups on the file system.

#include <string>

#include "berth/core/fd.h"

namespace berth {

enum class BeneathFailure {
    kNotBelow,  // `path` is not `dir` nor below it, or a lookup left it ("..")
    kSymlink,   // a component of the path is a symbolic link
    kMissing,   // a component does not exist
    kOther,     // permission, I/O, kernel without openat2 ...
};

struct BeneathError {
    BeneathFailure kind = BeneathFailure::kOther;
    int err = 0;          // errno
    std::string message;  // "/a/b holds a symbolic link ...", for people
};

// Opens `path` (absolute) beneath `dir` (absolute; the directory itself is opened
// normally, it is trusted configuration). `flags` are open(2) flags; O_CLOEXEC is
// always added. Example: openBeneath("/srv/apps", "/srv/apps/one/data", O_PATH).
struct BeneathResult {
    UniqueFd fd;
    BeneathError error;
    explicit operator bool() const { return fd.valid(); }
};
BeneathResult openBeneath(const std::string& dir, const std::string& path, int flags);

// True when `path` is `dir` or lies below it, comparing whole components ("/a/bc"
// is not below "/a/b"). Pure string check, used to pick the directory to resolve from.
bool pathIsBelow(const std::string& dir, const std::string& path);

}  // namespace berth
