#pragma once
// Pulling images from an OCI registry (the OCI distribution API, /v2/).
//
// References are written docker://HOST[:PORT]/REPO:TAG or docker://HOST[:PORT]/REPO@sha256:HEX
// (a reference without tag or digest means :latest). The registry is spoken to over
// HTTPS, with the system trust store or FetchOptions::caFile; plain HTTP is used only
// for a loopback registry (localhost, 127.0.0.0/8, [::1]) that does not speak TLS, as
// Docker does for its "insecure" local registries.
//
// Authentication follows the registry's WWW-Authenticate challenge: none, Basic (the
// FetchOptions username/password), or Bearer, where a token for
// "repository:REPO:pull" is fetched from the challenge's realm (with the credentials
// as Basic when given, anonymously otherwise). Credentials and tokens are only ever
// sent in request headers: never logged, never put in an error message or on disk.
//
// fetchRegistryImage() resolves the reference (an index is narrowed to the
// platform's manifest), checks every document and blob against its digest and size,
// and writes the manifest, config and the layer blobs it needs into a directory,
// named by the hex of their digest. Layers the caller already has (by diff_id) are
// not downloaded. Blob downloads go through fetchToFile() with its limits (deadline,
// minimum rate, byte cap, disk reservation, cancel token) and resume with HTTP Range
// from a partial file kept in `partialDir` (named by digest) after a broken
// connection or a restart; the partial file is checked against the digest at the end.
//
// Blocking: call from a worker thread. Thread-safe (no shared state).
//
// Errors (RunnerError, its message names the registry and the reference):
// kInvalidArgument (malformed reference), kNotFound (unknown repository, tag or
// digest), kAuthFailed (credentials or token refused), kServerUnreachable (DNS,
// connect, 5xx), kTlsFailure, kDigestMismatch / kSizeMismatch (a document or blob
// differs from its digest), kNoMatchingPlatform, kUnsupportedMediaType, and the
// fetchToFile() kinds for blob downloads.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "berth/core/worker_pool.h"
#include "berth/oci/error.h"
#include "berth/oci/fetch.h"
#include "berth/oci/image_spec.h"

namespace berth::oci {

struct RegistryReference {
    std::string host;        // "HOST" or "HOST:PORT" or "[v6]:PORT", as written
    std::string repository;  // "team/app" (lowercase path components)
    std::string tag;         // empty when a digest is given
    std::string digest;      // "sha256:<hex>" or empty
    // What goes after /manifests/: the digest when given, else the tag.
    const std::string& reference() const { return digest.empty() ? tag : digest; }
    // "HOST/REPO:TAG" or "HOST/REPO@sha256:..."; for messages.
    std::string text() const;
    bool isLoopback() const;
};

inline constexpr std::string_view kRegistryScheme = "docker://";
bool isRegistryUrl(std::string_view url);
// kInvalidArgument naming what is wrong for anything but a well-formed reference.
RunnerResult<RegistryReference> parseRegistryReference(std::string_view url);

// One challenge of a WWW-Authenticate header: `Bearer realm="...",service="..."`.
struct AuthChallenge {
    std::string scheme;                         // lowercase: "basic", "bearer"
    std::map<std::string, std::string> params;  // lowercase names, unquoted values
};
// Parses the first challenge of the header value. kInvalidArgument when malformed.
RunnerResult<AuthChallenge> parseWwwAuthenticate(std::string_view header);

struct RegistryPullOptions {
    FetchOptions fetch;  // url (docker://...), credentials, caFile, verifyTls, limits, reserve
    Platform platform = hostPlatform();
    std::string outDir;      // existing directory: receives <hex> files of fetched blobs
    std::string partialDir;  // existing directory: partial blob downloads, kept across tries
    // True when the store already has the unpacked layer with this diff_id: its blob
    // is not downloaded. Empty: every layer is downloaded.
    std::function<bool(const std::string& diffId)> haveLayer;
};

struct RegistryImage {
    RegistryReference ref;
    Descriptor entry;         // the index entry chosen (or the manifest's own descriptor)
    Descriptor manifestDesc;  // the image manifest
    ImageManifest manifest;
    ImageConfig config;
    std::string manifestJson;
    std::string configJson;
    std::vector<bool> layerFetched;  // per manifest layer: its blob is in outDir
};

struct RegistryStats {
    std::uint64_t bytesTransferred = 0;  // all response bodies: documents, tokens, blobs
    std::uint64_t blobBytesTransferred = 0;
    std::uint64_t blobBytesResumed = 0;  // kept from partial files instead of downloaded
    std::uint64_t layersFetched = 0;
    std::uint64_t layersSkipped = 0;  // already in the store
};

RunnerResult<RegistryImage> fetchRegistryImage(const RegistryPullOptions& options, const CancelToken* cancel = nullptr,
                                               RegistryStats* stats = nullptr);

}  // namespace berth::oci
