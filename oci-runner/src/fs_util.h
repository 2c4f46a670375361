#pragma once
// Private file-system helpers of the runner: fd-relative operations that never
// follow symlinks out of a root.

#include <string>
#include <vector>

#include "berth/core/fd.h"
#include "berth/oci/error.h"

namespace berth::oci::detail {

// openat2(dirfd, path, flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV).
// Returns -1 with errno set on failure.
int openBeneath(int dirfd, const std::string& path, int flags, unsigned mode = 0);

// Removes `name` in dirfd (recursively when a directory), never following symlinks.
RunnerStatus removeAt(int dirfd, const std::string& name);
// Removes every entry of the directory `dirfd` whose name is not in `keep`.
RunnerStatus clearDirectory(int dirfd, const std::vector<std::string>& keep = {});

// Writes a file atomically (temp file in the same directory, fsync unless !durable, rename).
RunnerStatus writeFileAtomic(const std::string& path, const std::string& content, bool durable = true,
                             unsigned mode = 0644);
RunnerResult<std::string> readSmallFile(const std::string& path, std::size_t maxBytes = 16 << 20);

// Sum of allocated bytes of a tree (st_blocks * 512), hardlinks counted once.
std::uint64_t diskUsage(const std::string& path);

// A random hex token for temp names.
std::string randomToken(std::size_t bytes = 8);

// mkdir -p with mode 0755 (0700 for the last component when privateLeaf).
RunnerStatus makeDirs(const std::string& path, bool privateLeaf = false);

}  // namespace berth::oci::detail
