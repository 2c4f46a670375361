#include "berth/oci/error.h"

#include <cerrno>
#include <cstring>

namespace berth::oci {

std::string_view errorKindName(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::kInvalidArgument: return "InvalidArgument";
        case ErrorKind::kDownloadFailed: return "DownloadFailed";
        case ErrorKind::kServerUnreachable: return "ServerUnreachable";
        case ErrorKind::kTlsFailure: return "TlsFailure";
        case ErrorKind::kAuthFailed: return "AuthFailed";
        case ErrorKind::kNotFound: return "NotFound";
        case ErrorKind::kCorruptData: return "CorruptData";
        case ErrorKind::kDigestMismatch: return "DigestMismatch";
        case ErrorKind::kSizeMismatch: return "SizeMismatch";
        case ErrorKind::kUnsupportedMediaType: return "UnsupportedMediaType";
        case ErrorKind::kNoMatchingPlatform: return "NoMatchingPlatform";
        case ErrorKind::kUnsafeArchive: return "UnsafeArchive";
        case ErrorKind::kQuotaExceeded: return "QuotaExceeded";
        case ErrorKind::kNoSpace: return "NoSpace";
        case ErrorKind::kRuntimeFailed: return "RuntimeFailed";
        case ErrorKind::kTimeout: return "Timeout";
        case ErrorKind::kCancelled: return "Cancelled";
        case ErrorKind::kConflict: return "Conflict";
        case ErrorKind::kIoError: return "IoError";
    }
    return "Unknown";
}

std::string RunnerError::describe() const {
    std::string s(errorKindName(kind));
    s += ": ";
    s += message;
    if (!path.empty()) s += " (" + path + ")";
    return s;
}

Error RunnerError::toError() const { return Error(ErrorCode::kInternalError, describe(), path); }

RunnerError errnoError(std::string_view what, int err, std::string path) {
    ErrorKind kind = ErrorKind::kIoError;
    if (err == ENOENT) kind = ErrorKind::kNotFound;
    if (err == ENOSPC || err == EDQUOT) kind = ErrorKind::kNoSpace;
    // openat2 (Linux 5.6) is the newest call the runner needs; an older kernel, or an
    // emulator, answers ENOSYS, whose strerror ("Function not implemented") names nothing.
    if (err == ENOSYS)
        return RunnerError(
            kind, std::string(what) + ": the kernel lacks a system call berth needs (Linux 5.6 or later is needed)",
            std::move(path));
    return RunnerError(kind, std::string(what) + ": " + std::strerror(err), std::move(path));
}

RunnerError fromCore(const Error& e, ErrorKind kind) { return RunnerError(kind, e.message, e.path); }

}  // namespace berth::oci
