#pragma once
// The OCI image-spec documents the runner reads: index, manifest and config, and
// selection of the manifest for the host platform.
//
// The parse functions accept untrusted bytes (they are the fuzz targets): they
// never throw, and refuse with kCorruptData (not JSON / wrong shape) or
// kUnsupportedMediaType (a media type or schema version the runner does not take).
// Pure functions; any thread.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "berth/oci/error.h"

namespace berth::oci {

inline constexpr std::string_view kMediaTypeIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kMediaTypeManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kMediaTypeConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kMediaTypeLayer = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view kMediaTypeLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view kMediaTypeLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
// Docker schema 2 equivalents, accepted because skopeo/buildah sometimes keep them.
inline constexpr std::string_view kMediaTypeDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kMediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kMediaTypeDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view kMediaTypeDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";

struct Platform {
    std::string os;            // "linux"
    std::string architecture;  // GOARCH names: "amd64", "arm64", "arm"
    std::string variant;       // "v7", "v8" or empty
};

struct Descriptor {
    std::string mediaType;
    std::string digest;  // validated "sha256:<hex>"
    std::int64_t size = 0;
    std::optional<Platform> platform;
    std::map<std::string, std::string> annotations;
};

struct ImageIndex {
    std::vector<Descriptor> manifests;
    std::map<std::string, std::string> annotations;
};

struct ImageManifest {
    Descriptor config;
    std::vector<Descriptor> layers;
    std::map<std::string, std::string> annotations;
};

struct ImageConfig {
    Platform platform;
    std::optional<std::string> user;
    std::vector<std::string> env;         // "KEY=value"
    std::vector<std::string> entrypoint;
    std::vector<std::string> cmd;
    std::optional<std::string> workingDir;
    std::optional<std::string> stopSignal;
    std::map<std::string, std::string> labels;
    std::vector<std::string> diffIds;     // rootfs.diff_ids, validated digests
};

// Layer compression named by a layer media type.
enum class Compression { kNone, kGzip, kZstd };
// kUnsupportedMediaType for non-layer or foreign (e.g. non-distributable) types.
RunnerResult<Compression> layerCompression(std::string_view mediaType);

RunnerResult<ImageIndex> parseIndex(std::string_view json);
RunnerResult<ImageManifest> parseManifest(std::string_view json);
RunnerResult<ImageConfig> parseConfig(std::string_view json);
// Checks an `oci-layout` file: {"imageLayoutVersion": "1.0.0"}.
RunnerStatus parseLayoutFile(std::string_view json);

// The host platform in OCI terms (from uname): os "linux", GOARCH architecture.
Platform hostPlatform();

// Picks the manifest for `host`: the first entry of media type manifest whose
// platform matches (os and architecture equal; variant equal when both give one).
// Entries without a platform match any host (single-image layouts written by
// skopeo carry none); the config's own platform is checked later. Nested indexes
// are returned as-is for the caller to open. kNoMatchingPlatform when none fits.
RunnerResult<Descriptor> selectManifest(const ImageIndex& index, const Platform& host);
bool platformMatches(const Platform& wanted, const Platform& host);

// Human-facing metadata from org.opencontainers.image.* annotations of the
// manifest, falling back to the index entry's annotations and then to config labels.
struct ImageMetadata {
    std::string name;         // title, else repository part of ref.name
    std::string refName;      // org.opencontainers.image.ref.name
    std::string vendor;
    std::string version;      // version, else tag part of ref.name
    std::string description;
    std::string url;
    std::string source;
    std::string created;
    std::map<std::string, std::string> annotations;  // the merged set
};
ImageMetadata extractMetadata(const ImageManifest& manifest, const Descriptor& indexEntry,
                              const ImageConfig& config);

}  // namespace berth::oci
