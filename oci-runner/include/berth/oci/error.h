#pragma once
// Errors of the OCI runner.
//
// The runner knows nothing of USP. Every fallible function returns
// RunnerResult<T> (a value or a RunnerError) whose ErrorKind says precisely what
// went wrong; the SoftwareModules layer maps kinds to USP fault codes in one place.
// toError() turns a RunnerError into a berth::Error with a neutral code
// (kInternalError) for callers that only want to log or propagate it.

#include <string>
#include <string_view>
#include <utility>

#include "berth/core/error.h"
#include "berth/core/result.h"

namespace berth::oci {

enum class ErrorKind {
    kInvalidArgument,       // bad URL, bad container ID, bad option value
    kDownloadFailed,        // transfer broke off (other than the kinds below)
    kServerUnreachable,     // DNS, connect, timeout, HTTP 5xx
    kTlsFailure,            // certificate or TLS handshake problem
    kAuthFailed,            // HTTP 401/403
    kNotFound,              // HTTP 404, missing file, unknown image or container
    kCorruptData,           // unparsable archive or JSON, missing blob, decompression error
    kDigestMismatch,        // a blob's or layer's sha256 differs from its descriptor / diff_id
    kSizeMismatch,          // a blob's size differs from its descriptor
    kUnsupportedMediaType,  // not an OCI image, unknown media type or layout version
    kNoMatchingPlatform,    // no manifest for this host's os/architecture
    kUnsafeArchive,         // path escape, device node, setuid, link escape
    kQuotaExceeded,         // more bytes or files than the configured cap
    kNoSpace,               // not enough free space on the storage
    kRuntimeFailed,         // the OCI runtime (runc/crun) reported an error
    kTimeout,               // a deadline passed
    kCancelled,             // the caller's cancel token fired
    kConflict,              // already exists / wrong state (e.g. container running)
    kIoError,               // other local system error
};

std::string_view errorKindName(ErrorKind kind);

struct RunnerError {
    ErrorKind kind = ErrorKind::kIoError;
    std::string message;  // for people: what went wrong and where
    std::string path;     // file, blob digest or container ID concerned; may be empty

    RunnerError() = default;
    RunnerError(ErrorKind k, std::string msg, std::string p = {})
        : kind(k), message(std::move(msg)), path(std::move(p)) {}
    // "DigestMismatch: layer sha256:ab.. has sha256:cd.. (path: ...)"
    std::string describe() const;
    // Same text in a berth::Error with code kInternalError.
    Error toError() const;
};

// Error from errno: "open /x: No such file or directory" with kind kNotFound for
// ENOENT, kNoSpace for ENOSPC/EDQUOT, kIoError otherwise.
RunnerError errnoError(std::string_view what, int err, std::string path = {});

// Wraps a berth::Error (from core) into a RunnerError of the given kind.
RunnerError fromCore(const Error& e, ErrorKind kind);

// A value or a RunnerError: the one Result type of core with the runner's error.
template <typename T>
using RunnerResult = Result<T, RunnerError>;
using RunnerStatus = Result<void, RunnerError>;

}  // namespace berth::oci

// Older name of BERTH_TRY, which propagates any Result's error.
#define BERTH_OCI_TRY(expr) BERTH_TRY(expr)
