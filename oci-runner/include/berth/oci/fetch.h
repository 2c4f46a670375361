#pragma once
// Downloads with libcurl, streamed to a file (never held in memory).
//
// http and https (certificate verification on by default, optional extra CA
// file, optional HTTP Basic credentials) and file URLs. Blocking: call from a
// worker thread; cancellable through the token. Thread-safe.
//
// Errors: kInvalidArgument (unsupported scheme), kServerUnreachable (DNS, connect,
// timeout, HTTP 5xx), kTlsFailure, kAuthFailed (401/403), kNotFound (404, missing
// file), kQuotaExceeded (larger than maxBytes, or `reserve` refused), kNoSpace,
// kCancelled (seen by the progress callback, at least once a second even on a
// stalled connection), kDownloadFailed (deadline, minimum rate, anything else).

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

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
    // Whole-transfer limits (http/https): give up after `deadline` (0: none), and once
    // `rateWindow` has passed, whenever the average since the start is below
    // `minBytesPerSecond` (0: no minimum). Error kDownloadFailed naming the limit.
    std::chrono::seconds deadline{0};
    std::uint64_t minBytesPerSecond = 0;
    std::chrono::seconds rateWindow{10};
    // Disk reservation, called on the downloading thread with the total bytes the
    // download will hold on disk: once the size is announced (Content-Length), else as
    // it grows. false: no room; the download stops with kQuotaExceeded. Empty: none.
    std::function<bool(std::uint64_t bytes)> reserve;
    // file: URLs and plain paths (ImageStore::pull). nullopt: any local regular file;
    // otherwise only regular files beneath one of these directories, resolved without
    // following symbolic links (an empty list turns local files off).
    std::optional<std::vector<std::string>> fileDirectories;
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
