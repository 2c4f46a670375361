#pragma once
// Errors of the OCI runner.
//
// The runner knows nothing of USP. Every fallible function returns
// RunnerResult<T> (a value or a RunnerError) whose ErrorKind says precisely what
// went wrong; the SoftwareModules layer maps kinds to USP fault codes in one place.
// toError() turns a RunnerError into a berth::Error with a neutral code
// (kInternalError) for callers that only want to log or propagate it.

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "berth/core/error.h"

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

template <typename T>
class [[nodiscard]] RunnerResult {
public:
    static_assert(!std::is_same_v<T, RunnerError>, "RunnerResult<RunnerError> is meaningless");
    RunnerResult(T value) : v_(std::in_place_index<0>, std::move(value)) {}           // NOLINT
    RunnerResult(RunnerError error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT
    template <typename U, typename = std::enable_if_t<std::is_constructible_v<T, U&&> &&
                                                      !std::is_same_v<std::decay_t<U>, RunnerError> &&
                                                      !std::is_same_v<std::decay_t<U>, T>>>
    RunnerResult(U&& value) : v_(std::in_place_index<0>, T(std::forward<U>(value))) {}  // NOLINT

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& value() & { assert(ok()); return std::get<0>(v_); }
    const T& value() const& { assert(ok()); return std::get<0>(v_); }
    T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    const RunnerError& error() const& { assert(!ok()); return std::get<1>(v_); }
    RunnerError&& error() && { assert(!ok()); return std::get<1>(std::move(v_)); }

private:
    std::variant<T, RunnerError> v_;
};

template <>
class [[nodiscard]] RunnerResult<void> {
public:
    RunnerResult() = default;
    RunnerResult(RunnerError error) : error_(std::move(error)) {}  // NOLINT
    bool ok() const { return !error_.has_value(); }
    explicit operator bool() const { return ok(); }
    const RunnerError& error() const& { assert(!ok()); return *error_; }
    RunnerError&& error() && { assert(!ok()); return std::move(*error_); }

private:
    std::optional<RunnerError> error_;
};

using RunnerStatus = RunnerResult<void>;

}  // namespace berth::oci

// Propagates a RunnerError from an expression returning RunnerResult<...>.
#define BERTH_OCI_TRY(expr)                                              \
    do {                                                                 \
        auto berthOciTry_ = (expr);                                      \
        if (!berthOciTry_) return std::move(berthOciTry_).error();       \
    } while (0)
