#pragma once
// Downloads with libcurl, streamed to a file (never held in memory).
//
// http and https (certificate verification on by default, optional extra CA
// file, optional HTTP Basic credentials) and file URLs. Blocking: call from a
// worker thread; cancellable through the token. Thread-safe.
//
// Errors: kInvalidArgument (unsupported scheme), kServerUnreachable (DNS, connect,
// timeout, HTTP 5xx), kTlsFailure, kAuthFailed (401/403), kNotFound (404, missing
// file), kQuotaExceeded (larger than maxBytes), kNoSpace, kCancelled,
// kDownloadFailed (anything else).

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "berth/core/worker_pool.h"
#include "berth/oci/error.h"

namespace berth::oci {

struct FetchOptions {
    std::string url;
    std::string username;  // HTTP Basic when non-empty
    std::string password;
    std::string caFile;    // extra CA bundle (PEM); empty: system store
    bool verifyTls = true;
    std::uint64_t maxBytes = 4ull << 30;
    std::chrono::seconds connectTimeout{30};
    std::chrono::seconds lowSpeedTime{60};  // give up below 1 KiB/s for this long
};

struct FetchResult {
    std::uint64_t bytes = 0;
    std::string sha256;  // of the downloaded bytes
};

RunnerResult<FetchResult> fetchToFile(const FetchOptions& options, const std::string& destPath,
                                      const CancelToken* cancel = nullptr);

// The local path of a file: URL (percent-decoded) or of a plain absolute path;
// nullopt for other URLs.
std::optional<std::string> localPathOfUrl(const std::string& url);

}  // namespace berth::oci
