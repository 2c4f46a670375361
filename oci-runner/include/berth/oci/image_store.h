#pragma once
// Pulling, verifying and storing OCI images.
//
// An image is an OCI image in a registry (docker://HOST/REPO:TAG, see registry.h:
// only the layers the store lacks are downloaded) or an OCI image layout archive (.tar, .tar.gz/.zst/.xz) as written by
// `skopeo copy ... oci-archive:` or `buildah push ... oci-archive:`. Pulling
// streams it to a staging file (file: URLs are read in place), extracts the
// blobs while hashing each one, selects the manifest for the platform, checks the
// size and sha256 of the manifest, config and every layer against their
// descriptors and each layer's diff_id after decompression, and unpacks the layers
// safely (see unpack.h). Any failure removes everything staged: nothing is left.
//
// Store layout (all under the root given to open(); several stores can coexist):
//   <root>/blobs/sha256/<hex>     manifests and configs, named by digest
//   <root>/layers/<diff-hex>/     one unpacked layer in overlay form, shared by
//                                 every image that has it (stored once)
//   <root>/images/<hex>.json      one record per image, named by manifest digest
//   <root>/tmp/                   staging; emptied by open(), except:
//   <root>/tmp/partial/<hex>      partial registry blob downloads, resumed with Range
//                                 (<hex>.lock: one pull at a time per blob);
//                                 removed by collectGarbage() after a day unused
//   <root>/lock                   flock for commits and garbage collection
// Reference counts are not stored: a layer's count is the number of image records
// naming it, recomputed by collectGarbage(), so a crash can never leave a wrong count.
// Compressed layer blobs are not kept after unpacking (gateway flash is scarce).
//
// Threading: every method blocks (call from a worker thread) and may be called
// from several threads at once; commits and GC are serialised by the lock.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "berth/core/worker_pool.h"
#include "berth/oci/error.h"
#include "berth/oci/fetch.h"
#include "berth/oci/image_spec.h"
#include "berth/oci/unpack.h"

namespace berth::oci {

struct ImageRecord {
    std::string manifestDigest;  // identity of the image in the store
    std::string configDigest;
    std::string sourceUrl;
    ImageConfig config;
    ImageMetadata metadata;
    std::vector<std::string> diffIds;  // lowest layer first
    std::uint64_t unpackedBytes = 0;
    std::int64_t pulledAt = 0;  // Unix seconds
};

struct PullRequest {
    FetchOptions fetch;                // url, credentials, TLS, download cap, local-file policy
    Platform platform = hostPlatform();
    // Called once the image is verified and unpacked in staging, under the store's
    // commit lock (so calls never overlap, within one process), with the record about
    // to be committed (unpackedBytes counts only layers new to the store). An error
    // stops the pull and removes everything staged. Empty: always admitted.
    std::function<RunnerStatus(const ImageRecord&)> admit;
};

struct PullStats {
    std::uint64_t downloadedBytes = 0;  // moved over the network by this pull
    std::uint64_t resumedBytes = 0;     // registry pulls: kept from partial downloads of earlier tries
    std::uint64_t layersUnpacked = 0;  // new layers (not already in the store)
    std::uint64_t layersShared = 0;    // layers the store already had
};

class ImageStore {
public:
    // Creates the directories if needed and empties tmp/. Errors: kIoError, kNoSpace.
    static RunnerResult<std::unique_ptr<ImageStore>> open(const std::string& root, UnpackLimits limits = {});

    // Fetches, verifies and stores an image. Pulling an image already stored
    // verifies the archive again and refreshes its record.
    RunnerResult<ImageRecord> pull(const PullRequest& request, const CancelToken* cancel = nullptr,
                                   PullStats* stats = nullptr);
    // The image whose manifest digest is `ref` (full digest, hex, or a unique hex
    // prefix of at least 6 characters). kNotFound when missing.
    RunnerResult<ImageRecord> get(const std::string& ref) const;
    RunnerResult<std::vector<ImageRecord>> list() const;
    // Deletes the record, then garbage-collects layers and blobs no image names.
    // The caller must have removed the image's containers first.
    RunnerStatus remove(const std::string& ref);
    // Removes unreferenced layers/blobs and leftovers in tmp/. Returns bytes freed.
    RunnerResult<std::uint64_t> collectGarbage();
    // Layer directories of an image, lowest first (for overlay lowerdir, reversed).
    std::vector<std::string> layerDirs(const ImageRecord& image) const;
    // How many image records name the layer.
    RunnerResult<int> layerRefCount(const std::string& diffId) const;

    const std::string& root() const { return root_; }
    const UnpackLimits& limits() const { return limits_; }

private:
    ImageStore(std::string root, UnpackLimits limits) : root_(std::move(root)), limits_(limits) {}
    std::string root_;
    UnpackLimits limits_;
};

// Verifies an image archive and applies all its layers into one directory
// `destDir` (must not exist; created by renaming a staged tree, so a failure
// leaves nothing). No store involved: the `berth-oci unpack` command and the
// copy-based rootfs use it. Blocking.
RunnerResult<ImageRecord> unpackArchive(const std::string& archivePath, const std::string& destDir,
                                        const UnpackLimits& limits, const Platform& platform = hostPlatform(),
                                        const CancelToken* cancel = nullptr);

// Record <-> JSON (the images/<hex>.json format).
std::string imageRecordToJson(const ImageRecord& record);
RunnerResult<ImageRecord> imageRecordFromJson(std::string_view json);

}  // namespace berth::oci
