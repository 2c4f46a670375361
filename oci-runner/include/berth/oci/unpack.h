#pragma once
// Safe application of one OCI layer (a tar stream, optionally gzip/zstd) to a
// directory.
//
// Every path is resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
// RESOLVE_NO_XDEV) from the root directory's fd, so an entry can never write
// outside the root, even through a symlink planted by an earlier entry. Refused
// with kUnsafeArchive: absolute paths, `..` components, relative symlinks whose
// target climbs above the root, hardlinks whose target is outside the root or not
// in the layer, character/block devices, setuid/setgid on files (unless allowed).
// Refused with kQuotaExceeded: more content bytes or entries than the budget, and
// with kNoSpace: less free space than needed (keeping UnpackLimits::reserveBytes).
// The uncompressed stream's sha256 must equal the expected diff_id
// (kDigestMismatch); a broken tar or compressed stream is kCorruptData.
//
// Extended attributes: only user.* are applied; trusted.* and security.* from an
// archive are dropped (they could forge overlay whiteouts or file capabilities).
//
// applyLayer() does not clean up on failure: callers unpack into a staging
// directory and rename it into place only on success (ImageStore does).
// Blocking; call from a worker thread. Thread-safe for distinct roots.

#include <cstdint>
#include <optional>
#include <string>

#include "berth/core/worker_pool.h"
#include "berth/oci/error.h"
#include "berth/oci/image_spec.h"
#include "berth/oci/security.h"

namespace berth::oci {

struct UnpackLimits {
    std::uint64_t maxBytes = 4ull << 30;  // uncompressed bytes over all layers of an image
    std::uint64_t maxFiles = 1'000'000;   // entries over all layers of an image
    std::uint64_t reserveBytes = 16ull << 20;  // free space that must remain on the filesystem
    bool allowSetuid = false;             // keep setuid/setgid bits on regular files
    // Owners as the host sees them: with a mapping, an entry owned by uid/gid n is
    // stored as hostBase + n (directories the archive leaves out are owned by
    // hostBase), so a container whose user namespace has the same mapping sees the
    // archive's owners. An owner outside the mapping is refused (kUnsafeArchive).
    // ImageStore::open(): nullopt keeps the mapping the store was made with; a
    // value different from it re-owns the stored layers.
    std::optional<IdMapping> owners;
    IdMapping ownerMap() const { return owners.value_or(IdMapping{}); }
};

// Running totals for one image, shared by the layers applied one after another.
struct UnpackBudget {
    std::uint64_t bytes = 0;
    std::uint64_t files = 0;
};

enum class WhiteoutMode {
    // Layer kept as its own directory for overlayfs: whiteouts become 0/0 character
    // devices and opaque directories get trusted.overlay.opaque=y.
    kOverlay,
    // Layers applied on top of each other in one directory: whiteouts delete.
    kApply,
};

struct LayerSource {
    std::string blobPath;       // the layer blob as stored
    Compression compression = Compression::kGzip;
    std::string expectedDiffId; // "sha256:..." of the uncompressed tar; empty: not checked
};

struct LayerStats {
    std::string diffId;         // computed
    std::uint64_t bytes = 0;    // content bytes written
    std::uint64_t files = 0;    // entries written
};

RunnerResult<LayerStats> applyLayer(const LayerSource& source, const std::string& rootDir, WhiteoutMode mode,
                                    const UnpackLimits& limits, UnpackBudget& budget,
                                    const CancelToken* cancel = nullptr);

// Copies a layer directory in overlay form (see kOverlay) onto `destDir`, turning
// whiteouts into deletions: used to build a container rootfs by copying when
// overlayfs is unavailable. Blocking. Errors: kIoError, kNoSpace.
RunnerStatus mergeOverlayLayer(const std::string& layerDir, const std::string& destDir);

// Removes a directory tree without following symlinks (fd-based). Missing is fine.
RunnerStatus removeTree(const std::string& path);

}  // namespace berth::oci
