#include "berth/oci/unpack.h"

#include <archive.h>
#include <dirent.h>
#include <climits>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <unordered_set>

#include "berth/core/log.h"
#include "berth/oci/digest.h"
#include "fs_util.h"

namespace berth::oci {
namespace {

using detail::openBeneath;
using detail::removeAt;

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

struct ArchiveDeleter {
    void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveDeleter>;

// Stage 1: the blob file, decompressed by libarchive's "raw" format.
struct RawSource {
    int fd = -1;
    std::string buf = std::string(1 << 17, '\0');
};

la_ssize_t rawRead(archive* a, void* ctx, const void** out) {
    auto* s = static_cast<RawSource*>(ctx);
    for (;;) {
        ssize_t n = ::read(s->fd, s->buf.data(), s->buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            archive_set_error(a, errno, "read: %s", std::strerror(errno));
            return -1;
        }
        *out = s->buf.data();
        return n;
    }
}

// Stage 2: the uncompressed tar stream, hashed for the diff_id and counted against
// the budget on its way into the tar reader.
struct TarSource {
    archive* raw = nullptr;
    Sha256 diff;
    std::uint64_t streamBytes = 0;
    std::uint64_t streamCap = 0;
    bool capExceeded = false;
    bool eof = false;
};

la_ssize_t tarRead(archive* a, void* ctx, const void** out) {
    auto* s = static_cast<TarSource*>(ctx);
    if (s->eof) return 0;
    const void* buf = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    int r = archive_read_data_block(s->raw, &buf, &size, &offset);
    if (r == ARCHIVE_EOF) {
        s->eof = true;
        return 0;
    }
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
        archive_set_error(a, -1, "decompression: %s", archive_error_string(s->raw));
        return -1;
    }
    s->streamBytes += size;
    if (s->streamBytes > s->streamCap) {
        s->capExceeded = true;
        archive_set_error(a, -1, "uncompressed stream exceeds the cap");
        return -1;
    }
    s->diff.update(buf, size);
    *out = buf;
    return static_cast<la_ssize_t>(size);
}

struct Split {
    std::vector<std::string> parent;
    std::string name;
};

RunnerResult<std::vector<std::string>> splitPath(std::string_view p, const char* what) {
    if (p.empty()) return RunnerError(ErrorKind::kCorruptData, std::string(what) + " with an empty path");
    if (p.front() == '/')
        return RunnerError(ErrorKind::kUnsafeArchive, std::string(what) + " with an absolute path", std::string(p));
    std::vector<std::string> comps;
    std::size_t i = 0;
    while (i <= p.size()) {
        auto j = p.find('/', i);
        if (j == std::string_view::npos) j = p.size();
        std::string_view c = p.substr(i, j - i);
        if (c == "..")
            return RunnerError(ErrorKind::kUnsafeArchive, std::string(what) + " with a '..' component", std::string(p));
        if (!c.empty() && c != ".") comps.emplace_back(c);
        i = j + 1;
    }
    return comps;
}

std::string joinPath(const std::vector<std::string>& comps, std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < n && i < comps.size(); ++i) {
        if (i) s += '/';
        s += comps[i];
    }
    return s.empty() ? "." : s;
}

class LayerWriter {
public:
    LayerWriter(int rootFd, std::string rootReal, WhiteoutMode mode, const UnpackLimits& limits,
                UnpackBudget& budget, std::uint64_t freeBytes)
        : rootFd_(rootFd), rootReal_(std::move(rootReal)), mode_(mode), limits_(limits), budget_(budget),
          freeBytes_(freeBytes) {}

    RunnerStatus apply(archive* tar, archive_entry* e);
    std::uint64_t bytes() const { return bytes_; }
    std::uint64_t files() const { return files_; }

private:
    RunnerResult<int> parentDir(const std::vector<std::string>& comps, std::size_t n);
    RunnerStatus chargeFile(const std::string& path);
    RunnerStatus chargeBytes(std::uint64_t n, const std::string& path);
    RunnerStatus writeRegular(archive* tar, archive_entry* e, int dirfd, const std::string& name, const std::string& path);
    RunnerStatus writeSymlink(archive_entry* e, int dirfd, const std::string& name, const std::string& path);
    RunnerStatus writeHardlink(archive_entry* e, int dirfd, const std::string& name, const std::string& path);
    RunnerStatus writeDirectory(archive_entry* e, int dirfd, const std::string& name, const std::string& path);
    RunnerStatus applyMetadata(int fd, archive_entry* e, const std::string& path, bool isDir);
    // The entry's owner as stored on the host (shifted by limits_.owners).
    RunnerResult<std::pair<uid_t, gid_t>> ownerOf(archive_entry* e, const std::string& path) const {
        la_int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
        if (uid < 0 || gid < 0 || uid > 0xFFFFFFFEll || gid > 0xFFFFFFFEll)
            return RunnerError(ErrorKind::kUnsafeArchive, "entry with an invalid owner", path);
        auto u = limits_.ownerMap().toHost(static_cast<std::uint32_t>(uid));
        auto g = limits_.ownerMap().toHost(static_cast<std::uint32_t>(gid));
        if (!u || !g)
            return RunnerError(ErrorKind::kUnsafeArchive,
                               "entry owned by " + std::to_string(uid) + ":" + std::to_string(gid) +
                                   ", outside the " + std::to_string(limits_.ownerMap().size) +
                                   " ids the execution environment maps",
                               path);
        return std::pair<uid_t, gid_t>{static_cast<uid_t>(*u), static_cast<gid_t>(*g)};
    }
    // Removes whatever sits at dirfd/name; the cached parent may have been inside it.
    RunnerStatus clearSlot(int dirfd, const std::string& name) {
        struct stat st {};
        if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return {};
        invalidateCache();
        return removeAt(dirfd, name);
    }
    // Forgets the cached parent path. The fd itself stays open until the next
    // parentDir() call because the entry being applied still borrows it.
    void invalidateCache() { cachedPath_.clear(); }

    int rootFd_;
    std::string rootReal_;
    WhiteoutMode mode_;
    const UnpackLimits& limits_;
    UnpackBudget& budget_;
    std::uint64_t freeBytes_;
    std::uint64_t bytes_ = 0;
    std::uint64_t files_ = 0;
    std::unordered_set<std::string> written_;  // kApply: paths this layer wrote (for opaque dirs)
    std::string cachedPath_;
    UniqueFd cachedFd_;
};

RunnerStatus LayerWriter::chargeFile(const std::string& path) {
    ++files_;
    if (++budget_.files > limits_.maxFiles)
        return RunnerError(ErrorKind::kQuotaExceeded,
                           "image has more than " + std::to_string(limits_.maxFiles) + " entries", path);
    return {};
}

RunnerStatus LayerWriter::chargeBytes(std::uint64_t n, const std::string& path) {
    bytes_ += n;
    budget_.bytes += n;
    if (budget_.bytes > limits_.maxBytes)
        return RunnerError(ErrorKind::kQuotaExceeded,
                           "image unpacks to more than " + std::to_string(limits_.maxBytes) + " bytes", path);
    if (bytes_ + limits_.reserveBytes > freeBytes_)
        return RunnerError(ErrorKind::kNoSpace, "not enough free space to unpack the layer", path);
    return {};
}

// Opens (creating missing directories) the directory made of the first n
// components, resolved beneath the root. Returns a borrowed fd (cached).
RunnerResult<int> LayerWriter::parentDir(const std::vector<std::string>& comps, std::size_t n) {
    std::string path = joinPath(comps, n);
    if (cachedFd_ && !cachedPath_.empty() && path == cachedPath_) return cachedFd_.get();
    invalidateCache();
    cachedFd_.reset();
    UniqueFd fd(openBeneath(rootFd_, path, O_RDONLY | O_DIRECTORY));
    if (!fd && errno == ENOENT) {
        // Walk down, creating what is missing; tars often omit parent entries.
        UniqueFd cur(::openat(rootFd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        for (std::size_t i = 0; i < n; ++i) {
            std::string prefix = joinPath(comps, i + 1);
            UniqueFd next(openBeneath(rootFd_, prefix, O_RDONLY | O_DIRECTORY));
            if (!next && errno == ENOENT) {
                if (::mkdirat(cur.get(), comps[i].c_str(), 0755) != 0 && errno != EEXIST)
                    return errnoError("mkdir", errno, prefix);
                if (limits_.ownerMap().enabled() &&
                    ::fchownat(cur.get(), comps[i].c_str(), limits_.ownerMap().hostBase, limits_.ownerMap().hostBase,
                               AT_SYMLINK_NOFOLLOW) != 0 &&
                    errno != EPERM)
                    return errnoError("chown", errno, prefix);
                BERTH_OCI_TRY(chargeFile(prefix));
                if (mode_ == WhiteoutMode::kApply) written_.insert(prefix);
                next.reset(openBeneath(rootFd_, prefix, O_RDONLY | O_DIRECTORY));
            }
            if (!next) {
                if (errno == EXDEV || errno == ELOOP)
                    return RunnerError(ErrorKind::kUnsafeArchive, "path resolves outside the root", prefix);
                return errnoError("open directory", errno, prefix);
            }
            cur = std::move(next);
        }
        fd = std::move(cur);
    }
    if (!fd) {
        if (errno == EXDEV || errno == ELOOP)
            return RunnerError(ErrorKind::kUnsafeArchive, "path resolves outside the root", path);
        if (errno == ENOTDIR)
            return RunnerError(ErrorKind::kCorruptData, "a parent of the entry is not a directory", path);
        return errnoError("open directory", errno, path);
    }
    cachedPath_ = path;
    cachedFd_ = std::move(fd);
    return cachedFd_.get();
}

RunnerStatus LayerWriter::applyMetadata(int fd, archive_entry* e, const std::string& path, bool isDir) {
    auto mode = static_cast<mode_t>(archive_entry_perm(e));
    if (!isDir && (mode & (S_ISUID | S_ISGID)) && !limits_.allowSetuid)
        return RunnerError(ErrorKind::kUnsafeArchive, "setuid/setgid file refused", path);
    auto owner = ownerOf(e, path);
    if (!owner) return std::move(owner).error();
    if (::fchown(fd, owner->first, owner->second) != 0 && errno != EPERM) return errnoError("chown", errno, path);
    if (::fchmod(fd, mode & 07777) != 0) return errnoError("chmod", errno, path);
    // Only user.* attributes: trusted.overlay.* could forge whiteouts, security.* grants capabilities.
    const char* xname = nullptr;
    const void* xval = nullptr;
    size_t xsize = 0;
    archive_entry_xattr_reset(e);
    while (archive_entry_xattr_next(e, &xname, &xval, &xsize) == ARCHIVE_OK) {
        if (std::strncmp(xname, "user.", 5) != 0) continue;
        if (::fsetxattr(fd, xname, xval, xsize, 0) != 0) {
            BERTH_LOG_DEBUG("oci") << "xattr " << xname << " on " << path << ": " << std::strerror(errno);
        }
    }
    if (!isDir && archive_entry_mtime_is_set(e)) {
        timespec ts[2];
        ts[0].tv_sec = ts[1].tv_sec = archive_entry_mtime(e);
        ts[0].tv_nsec = ts[1].tv_nsec = archive_entry_mtime_nsec(e);
        ::futimens(fd, ts);
    }
    return {};
}

RunnerStatus LayerWriter::writeRegular(archive* tar, archive_entry* e, int dirfd, const std::string& name,
                                       const std::string& path) {
    auto declared = archive_entry_size(e);
    if (declared < 0) return RunnerError(ErrorKind::kCorruptData, "negative file size", path);
    BERTH_OCI_TRY(chargeBytes(static_cast<std::uint64_t>(declared), path));
    BERTH_OCI_TRY(clearSlot(dirfd, name));
    UniqueFd fd(::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) return errnoError("create", errno, path);
    const void* buf = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    std::uint64_t end = 0;
    for (;;) {
        int r = archive_read_data_block(tar, &buf, &size, &offset);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
            return RunnerError(ErrorKind::kCorruptData, std::string("reading layer: ") + archive_error_string(tar), path);
        if (offset < 0 || static_cast<std::uint64_t>(offset) + size > static_cast<std::uint64_t>(declared))
            return RunnerError(ErrorKind::kCorruptData, "file data beyond its declared size", path);
        const char* p = static_cast<const char*>(buf);
        std::size_t done = 0;
        while (done < size) {
            ssize_t n = ::pwrite(fd.get(), p + done, size - done, offset + static_cast<off_t>(done));
            if (n < 0) {
                if (errno == EINTR) continue;
                return errnoError("write", errno, path);
            }
            done += static_cast<std::size_t>(n);
        }
        end = std::max<std::uint64_t>(end, static_cast<std::uint64_t>(offset) + size);
    }
    if (end < static_cast<std::uint64_t>(declared) && ::ftruncate(fd.get(), declared) != 0)
        return errnoError("truncate", errno, path);
    return applyMetadata(fd.get(), e, path, false);
}

RunnerStatus LayerWriter::writeSymlink(archive_entry* e, int dirfd, const std::string& name, const std::string& path) {
    const char* target = archive_entry_symlink(e);
    if (!target || !*target) return RunnerError(ErrorKind::kCorruptData, "symlink without a target", path);
    std::string t = target;
    if (t.front() != '/') {
        // Depth of the directory the link really sits in (after resolution), so a
        // relative target is judged from where it will be followed.
        char real[PATH_MAX];
        std::string procPath = "/proc/self/fd/" + std::to_string(dirfd);
        ssize_t n = ::readlink(procPath.c_str(), real, sizeof real - 1);
        if (n < 0) return errnoError("readlink", errno, path);
        std::string dir(real, static_cast<std::size_t>(n));
        if (dir.compare(0, rootReal_.size(), rootReal_) != 0)
            return RunnerError(ErrorKind::kUnsafeArchive, "symlink placed outside the root", path);
        long depth = 0;
        for (char c : dir.substr(rootReal_.size()))
            if (c == '/') ++depth;
        std::size_t i = 0;
        while (i <= t.size()) {
            auto j = t.find('/', i);
            if (j == std::string::npos) j = t.size();
            std::string c = t.substr(i, j - i);
            if (c == "..") {
                if (--depth < 0)
                    return RunnerError(ErrorKind::kUnsafeArchive, "symlink target '" + t + "' escapes the root", path);
            } else if (!c.empty() && c != ".") {
                ++depth;
            }
            i = j + 1;
        }
    }
    BERTH_OCI_TRY(clearSlot(dirfd, name));
    if (::symlinkat(t.c_str(), dirfd, name.c_str()) != 0) return errnoError("symlink", errno, path);
    auto owner = ownerOf(e, path);
    if (!owner) return std::move(owner).error();
    if (::fchownat(dirfd, name.c_str(), owner->first, owner->second, AT_SYMLINK_NOFOLLOW) != 0 && errno != EPERM)
        return errnoError("chown", errno, path);
    if (archive_entry_mtime_is_set(e)) {
        timespec ts[2];
        ts[0].tv_sec = ts[1].tv_sec = archive_entry_mtime(e);
        ts[0].tv_nsec = ts[1].tv_nsec = archive_entry_mtime_nsec(e);
        ::utimensat(dirfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW);
    }
    invalidateCache();
    return {};
}

RunnerStatus LayerWriter::writeHardlink(archive_entry* e, int dirfd, const std::string& name, const std::string& path) {
    auto target = splitPath(archive_entry_hardlink(e), "hardlink target");
    if (!target) return std::move(target).error();
    if (target->empty()) return RunnerError(ErrorKind::kUnsafeArchive, "hardlink to the root directory", path);
    std::string tdir = joinPath(*target, target->size() - 1);
    UniqueFd tfd(openBeneath(rootFd_, tdir, O_RDONLY | O_DIRECTORY));
    if (!tfd) {
        if (errno == EXDEV || errno == ELOOP)
            return RunnerError(ErrorKind::kUnsafeArchive, "hardlink target resolves outside the root", path);
        return RunnerError(ErrorKind::kCorruptData, "hardlink target is not in this layer", path);
    }
    struct stat st {};
    if (::fstatat(tfd.get(), target->back().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        return RunnerError(ErrorKind::kCorruptData, "hardlink target is not in this layer", path);
    if (S_ISDIR(st.st_mode)) return RunnerError(ErrorKind::kUnsafeArchive, "hardlink to a directory", path);
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
        return RunnerError(ErrorKind::kUnsafeArchive, "hardlink to a device node", path);
    BERTH_OCI_TRY(clearSlot(dirfd, name));
    // flags 0: a link to a symlink links the symlink itself, never what it points to.
    if (::linkat(tfd.get(), target->back().c_str(), dirfd, name.c_str(), 0) != 0)
        return errnoError("link", errno, path);
    return {};
}

RunnerStatus LayerWriter::writeDirectory(archive_entry* e, int dirfd, const std::string& name, const std::string& path) {
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
        BERTH_OCI_TRY(clearSlot(dirfd, name));
        invalidateCache();
    }
    if (::mkdirat(dirfd, name.c_str(), 0700) != 0 && errno != EEXIST) return errnoError("mkdir", errno, path);
    UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return errnoError("open directory", errno, path);
    return applyMetadata(fd.get(), e, path, true);
}

RunnerStatus LayerWriter::apply(archive* tar, archive_entry* e) {
    const char* rawPath = archive_entry_pathname(e);
    auto comps = splitPath(rawPath ? rawPath : "", "entry");
    if (!comps) return std::move(comps).error();
    if (comps->empty()) return {};  // "./": the root itself keeps its own metadata
    std::string path = joinPath(*comps, comps->size());
    std::string name = comps->back();
    auto dir = parentDir(*comps, comps->size() - 1);
    if (!dir) return std::move(dir).error();
    int dirfd = *dir;
    std::string parentPath = joinPath(*comps, comps->size() - 1);

    if (name.compare(0, kWhiteoutPrefix.size(), kWhiteoutPrefix) == 0) {
        BERTH_OCI_TRY(chargeFile(path));
        if (name == kOpaqueMarker) {
            if (mode_ == WhiteoutMode::kOverlay) {
                if (::fsetxattr(dirfd, "trusted.overlay.opaque", "y", 1, 0) != 0)
                    return errnoError("set opaque xattr", errno, parentPath);
                return {};
            }
            std::vector<std::string> keep;
            std::string prefix = parentPath == "." ? "" : parentPath + "/";
            for (const auto& w : written_)
                if (w.size() > prefix.size() && w.compare(0, prefix.size(), prefix) == 0 &&
                    w.find('/', prefix.size()) == std::string::npos)
                    keep.push_back(w.substr(prefix.size()));
            invalidateCache();
            return detail::clearDirectory(dirfd, keep);
        }
        std::string hidden = name.substr(kWhiteoutPrefix.size());
        if (hidden.empty() || hidden == "." || hidden == ".." || hidden.find('/') != std::string::npos)
            return RunnerError(ErrorKind::kCorruptData, "malformed whiteout", path);
        BERTH_OCI_TRY(removeAt(dirfd, hidden));
        invalidateCache();
        if (mode_ == WhiteoutMode::kOverlay) {
            if (::mknodat(dirfd, hidden.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0)
                return errnoError("create whiteout", errno, path);
        }
        return {};
    }

    BERTH_OCI_TRY(chargeFile(path));
    if (mode_ == WhiteoutMode::kApply) written_.insert(path);
    if (archive_entry_hardlink(e)) return writeHardlink(e, dirfd, name, path);
    switch (archive_entry_filetype(e)) {
        case AE_IFREG: return writeRegular(tar, e, dirfd, name, path);
        case AE_IFDIR: return writeDirectory(e, dirfd, name, path);
        case AE_IFLNK: return writeSymlink(e, dirfd, name, path);
        case AE_IFIFO:
            BERTH_OCI_TRY(clearSlot(dirfd, name));
            if (::mkfifoat(dirfd, name.c_str(), archive_entry_perm(e) & 0777) != 0) return errnoError("mkfifo", errno, path);
            return {};
        case AE_IFCHR:
        case AE_IFBLK: return RunnerError(ErrorKind::kUnsafeArchive, "device node refused", path);
        case AE_IFSOCK: return {};  // sockets in a tar carry nothing; skip
        default: return RunnerError(ErrorKind::kCorruptData, "unknown entry type", path);
    }
}

// The raw (decompressed) stream of a layer blob, checked to be compressed as its media
// type says. `empty`: the blob holds no bytes at all.
RunnerResult<ArchivePtr> openDecompressed(const LayerSource& source, RawSource& rawSrc, const std::string& layerName,
                                          bool& empty) {
    ArchivePtr raw(archive_read_new());
    archive_read_support_format_raw(raw.get());
    if (source.compression == Compression::kGzip) archive_read_support_filter_gzip(raw.get());
    if (source.compression == Compression::kZstd) archive_read_support_filter_zstd(raw.get());
    if (archive_read_open(raw.get(), &rawSrc, nullptr, rawRead, nullptr) != ARCHIVE_OK)
        return RunnerError(ErrorKind::kCorruptData, std::string("layer: ") + archive_error_string(raw.get()),
                           source.blobPath);
    archive_entry* rawEntry = nullptr;
    int rh = archive_read_next_header(raw.get(), &rawEntry);
    empty = rh == ARCHIVE_EOF;
    if (!empty && rh != ARCHIVE_OK)
        return RunnerError(ErrorKind::kCorruptData, std::string("layer: ") + archive_error_string(raw.get()), layerName);
    int wantFilter = source.compression == Compression::kGzip   ? ARCHIVE_FILTER_GZIP
                     : source.compression == Compression::kZstd ? ARCHIVE_FILTER_ZSTD
                                                                : ARCHIVE_FILTER_NONE;
    if (!empty && archive_filter_code(raw.get(), 0) != wantFilter)
        return RunnerError(ErrorKind::kCorruptData, "layer compression does not match its media type", layerName);
    return raw;
}

// A failure reading the tar stream: past the size cap, or corrupt.
RunnerError tarStreamError(const TarSource& tarSrc, archive* tar, const std::string& layerName) {
    if (tarSrc.capExceeded)
        return RunnerError(ErrorKind::kQuotaExceeded, "layer decompresses past the size cap", layerName);
    return RunnerError(ErrorKind::kCorruptData, std::string("layer: ") + archive_error_string(tar), layerName);
}

// Writes every entry of the tar stream, then reads the rest of the stream (trailing
// padding) so that its diff_id covers all of it.
RunnerStatus writeEntries(archive* tar, TarSource& tarSrc, LayerWriter& writer, const CancelToken* cancel,
                          const std::string& layerName) {
    for (;;) {
        if (cancel && cancel->cancelled()) return RunnerError(ErrorKind::kCancelled, "unpack cancelled", layerName);
        archive_entry* e = nullptr;
        int r = archive_read_next_header(tar, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return tarStreamError(tarSrc, tar, layerName);
        auto st = writer.apply(tar, e);
        if (!st) {
            if (tarSrc.capExceeded)
                return RunnerError(ErrorKind::kQuotaExceeded, "layer decompresses past the size cap", layerName);
            return std::move(st).error();
        }
    }
    const void* dummy = nullptr;
    while (!tarSrc.eof) {
        la_ssize_t n = tarRead(tar, &tarSrc, &dummy);
        if (n < 0) return tarStreamError(tarSrc, tar, layerName);
    }
    return {};
}

}  // namespace

RunnerResult<LayerStats> applyLayer(const LayerSource& source, const std::string& rootDir, WhiteoutMode mode,
                                    const UnpackLimits& limits, UnpackBudget& budget, const CancelToken* cancel) {
    UniqueFd blob(::open(source.blobPath.c_str(), O_RDONLY | O_CLOEXEC));
    if (!blob) return errnoError("open layer", errno, source.blobPath);
    UniqueFd root(::open(rootDir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root) return errnoError("open root", errno, rootDir);
    char real[PATH_MAX];
    if (!::realpath(rootDir.c_str(), real)) return errnoError("realpath", errno, rootDir);
    struct statvfs vfs {};
    if (::fstatvfs(root.get(), &vfs) != 0) return errnoError("statvfs", errno, rootDir);
    std::uint64_t freeBytes = static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;

    const std::string layerName = source.expectedDiffId.empty() ? source.blobPath : source.expectedDiffId;
    RawSource rawSrc;
    rawSrc.fd = blob.get();
    bool empty = false;
    auto raw = openDecompressed(source, rawSrc, layerName, empty);
    if (!raw) return std::move(raw).error();

    TarSource tarSrc;
    tarSrc.raw = raw->get();
    tarSrc.eof = empty;
    // The tar stream is at most the content plus headers and padding; twice the
    // remaining content budget plus a margin catches bombs made of padding.
    std::uint64_t remaining = limits.maxBytes > budget.bytes ? limits.maxBytes - budget.bytes : 0;
    tarSrc.streamCap = remaining * 2 + (8u << 20);
    ArchivePtr tar(archive_read_new());
    archive_read_support_format_tar(tar.get());
    archive_read_support_format_empty(tar.get());
    if (archive_read_open(tar.get(), &tarSrc, nullptr, tarRead, nullptr) != ARCHIVE_OK)
        return tarStreamError(tarSrc, tar.get(), layerName);

    LayerWriter writer(root.get(), real, mode, limits, budget, freeBytes);
    BERTH_OCI_TRY(writeEntries(tar.get(), tarSrc, writer, cancel, layerName));
    LayerStats stats;
    stats.diffId = tarSrc.diff.finish();
    stats.bytes = writer.bytes();
    stats.files = writer.files();
    if (!source.expectedDiffId.empty() && stats.diffId != source.expectedDiffId)
        return RunnerError(ErrorKind::kDigestMismatch,
                           "uncompressed layer has " + stats.diffId + ", config says " + source.expectedDiffId,
                           source.blobPath);
    return stats;
}

RunnerStatus removeTree(const std::string& path) {
    auto slash = path.find_last_of('/');
    std::string parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    UniqueFd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) {
        if (errno == ENOENT) return {};
        return errnoError("open", errno, parent);
    }
    return removeAt(dir.get(), name);
}

namespace {

RunnerStatus copyFile(int srcDir, int dstDir, const std::string& name, const struct stat& st) {
    UniqueFd in(::openat(srcDir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!in) return errnoError("open", errno, name);
    UniqueFd out(::openat(dstDir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out) return errnoError("create", errno, name);
    off_t left = st.st_size;
    while (left > 0) {
        ssize_t n = ::copy_file_range(in.get(), nullptr, out.get(), nullptr, static_cast<size_t>(left), 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errnoError("copy", errno, name);
        }
        if (n == 0) break;
        left -= n;
    }
    if (::fchown(out.get(), st.st_uid, st.st_gid) != 0 && errno != EPERM) return errnoError("chown", errno, name);
    ::fchmod(out.get(), st.st_mode & 07777);
    timespec ts[2] = {st.st_atim, st.st_mtim};
    ::futimens(out.get(), ts);
    return {};
}

RunnerStatus mergeDir(int srcDir, int dstDir) {
    int dupfd = ::openat(srcDir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dupfd < 0) return errnoError("open", errno);
    DIR* d = ::fdopendir(dupfd);
    if (!d) {
        ::close(dupfd);
        return errnoError("fdopendir", errno);
    }
    std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        struct stat st {};
        if (::fstatat(srcDir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errnoError("stat", errno, name);
        if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
            BERTH_OCI_TRY(removeAt(dstDir, name));
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            struct stat dst {};
            bool exists = ::fstatat(dstDir, name.c_str(), &dst, AT_SYMLINK_NOFOLLOW) == 0;
            if (exists && !S_ISDIR(dst.st_mode)) {
                BERTH_OCI_TRY(removeAt(dstDir, name));
                exists = false;
            }
            if (!exists && ::mkdirat(dstDir, name.c_str(), 0700) != 0) return errnoError("mkdir", errno, name);
            UniqueFd s(::openat(srcDir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            UniqueFd t(::openat(dstDir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (!s || !t) return errnoError("open directory", errno, name);
            char v = 0;
            if (exists && ::fgetxattr(s.get(), "trusted.overlay.opaque", &v, 1) == 1 && v == 'y')
                BERTH_OCI_TRY(detail::clearDirectory(t.get()));
            if (::fchown(t.get(), st.st_uid, st.st_gid) != 0 && errno != EPERM) return errnoError("chown", errno, name);
            ::fchmod(t.get(), st.st_mode & 07777);
            BERTH_OCI_TRY(mergeDir(s.get(), t.get()));
            continue;
        }
        BERTH_OCI_TRY(removeAt(dstDir, name));
        if (S_ISREG(st.st_mode)) {
            BERTH_OCI_TRY(copyFile(srcDir, dstDir, name, st));
        } else if (S_ISLNK(st.st_mode)) {
            std::string target(static_cast<std::size_t>(st.st_size) + 1, '\0');
            ssize_t n = ::readlinkat(srcDir, name.c_str(), target.data(), target.size());
            if (n < 0) return errnoError("readlink", errno, name);
            target.resize(static_cast<std::size_t>(n));
            if (::symlinkat(target.c_str(), dstDir, name.c_str()) != 0) return errnoError("symlink", errno, name);
            if (::fchownat(dstDir, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0 && errno != EPERM)
                return errnoError("chown", errno, name);
        } else if (S_ISFIFO(st.st_mode)) {
            if (::mkfifoat(dstDir, name.c_str(), st.st_mode & 0777) != 0) return errnoError("mkfifo", errno, name);
        }
    }
    return {};
}

}  // namespace

RunnerStatus mergeOverlayLayer(const std::string& layerDir, const std::string& destDir) {
    UniqueFd src(::open(layerDir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!src) return errnoError("open", errno, layerDir);
    UniqueFd dst(::open(destDir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dst) return errnoError("open", errno, destDir);
    return mergeDir(src.get(), dst.get());
}

}  // namespace berth::oci
