#pragma once
// Writing OCI image layouts: reproducible layers from a directory, config,
// manifest, index and the layout archive. Used by the tests and the benchmark to
// build images with no network, and by `berth-oci build`.
//
// Layers are reproducible: entries sorted by name, owner 0:0, mtime 0, gzip
// without timestamp. Blocking; any thread.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "berth/oci/error.h"
#include "berth/oci/image_spec.h"

namespace berth::oci {

struct LayerBlob {
    std::string digest;     // of the blob as stored
    std::int64_t size = 0;
    std::string diffId;     // of the uncompressed tar
    std::string mediaType;
};

// Tars `dir` (its content, not the directory itself) into a layer blob under
// <layoutDir>/blobs/sha256/.
RunnerResult<LayerBlob> writeLayerFromDirectory(const std::string& dir, const std::string& layoutDir, bool gzip = true);
// Turns an existing tar file into a layer blob (compressing it when gzip).
RunnerResult<LayerBlob> writeLayerFromTar(const std::string& tarPath, const std::string& layoutDir, bool gzip = true);

struct ImageDefinition {
    std::vector<LayerBlob> layers;  // lowest first
    Platform platform = hostPlatform();
    std::vector<std::string> entrypoint;
    std::vector<std::string> cmd;
    std::vector<std::string> env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    std::string workingDir;
    std::string user;
    std::map<std::string, std::string> annotations;  // on the manifest
    std::string refName;                             // index entry org.opencontainers.image.ref.name
    bool indexPlatform = true;                       // write the platform into the index entry
};

// Writes the config and manifest blobs, index.json and oci-layout into layoutDir.
// Returns the manifest descriptor.
RunnerResult<Descriptor> writeImageLayout(const ImageDefinition& image, const std::string& layoutDir);

// Stores `content` as a blob of the layout; returns its descriptor.
RunnerResult<Descriptor> writeBlob(const std::string& layoutDir, const std::string& mediaType,
                                   const std::string& content);

// Tars a directory's content into an archive, reproducibly; gzip optional.
RunnerStatus tarDirectory(const std::string& dir, const std::string& archivePath, bool gzip);

}  // namespace berth::oci
