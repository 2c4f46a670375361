#pragma once
// HostObjects: host files or directories an ExecutionUnit sees at a path of its own.
//
// A Source is resolved beneath the ExecEnv's allowed prefix (X_BERTH_HostObjectPrefixes)
// with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS): a path
// that holds a symbolic link anywhere is refused. What was resolved is mounted, never the
// string: the fd is cloned with open_tree() and moved onto a private staging mount point
// under berth's own state directory, and the runtime binds that staging path. The
// staging mount is removed as soon as the runtime has created the container (its mount
// namespace keeps its own copy), and any left by a crash is removed when the ExecEnv
// opens. So a link swapped in after the check cannot redirect the mount.

#include <string>
#include <string_view>
#include <vector>

#include "berth/core/fd.h"
#include "berth/core/result.h"

namespace berth::smm {

// The parsed Options of a HostObject: a comma-separated list from the allow-list
// bind, rbind, ro, rw, nosuid, nodev, noexec, private, rprivate. Default "ro,nosuid,nodev".
// nosuid and nodev are always applied, asked for or not.
struct HostObjectOptions {
    bool readOnly = true;
    bool recursive = false;  // rbind: submounts below the source come along
    bool noExec = false;     // noexec: nothing on the mount may be executed
};

// Errors: 7004 naming the first option not on the allow-list (or ro with rw).
Result<HostObjectOptions> parseHostObjectOptions(std::string_view options);

// Opens `source` (O_PATH) beneath the first of `prefixes` it lies below.
// Errors: 7002 when it is below none; 7004 when it holds a symbolic link ("... holds a
// symbolic link ...") or does not exist; 7003 for anything else.
Result<UniqueFd> resolveHostObject(const std::vector<std::string>& prefixes, const std::string& source);

// Mounts what `fd` refers to at `target` (created here: a directory for a directory, an
// empty file otherwise; its parent must exist), private, nosuid, nodev, read-only if
// asked, with submounts when recursive. Blocking: worker thread. Errors: 7003.
Status stageHostObject(int fd, const std::string& target, const HostObjectOptions& options);

// Lazily unmounts the staging mounts directly in `dir` and removes them and dir.
// Never follows a symbolic link nor descends into a mount. Blocking: worker thread.
void clearHostObjectStaging(const std::string& dir);
// The recovery sweep: clearHostObjectStaging() on every directory in `root` (one per
// container start that a crash interrupted).
void sweepHostObjectStaging(const std::string& root);

}  // namespace berth::smm
