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
#include <string_view>
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
    // http/https only. Extra request headers ("Name: value"); never logged.
    std::vector<std::string> headers;
    // Resume: when destPath already holds a partial download, ask only for the rest
    // (Range: bytes=N-) and append; a server that answers 200 sends the whole body
    // again and the file starts over. On kServerUnreachable, kDownloadFailed, kCancelled
    // or kAuthFailed the partial file is kept for the next try (not after a 416 or a
    // 206 for another range: asking for its rest again could not work).
    bool resume = false;
};

struct FetchResult {
    std::uint64_t bytes = 0;        // size of the file now (resumed part included)
    std::uint64_t transferred = 0;  // bytes moved over the network by this call
    std::uint64_t resumedFrom = 0;  // bytes that were already there and were kept
    std::string sha256;             // of the whole file
};

RunnerResult<FetchResult> fetchToFile(const FetchOptions& options, const std::string& destPath,
                                      const CancelToken* cancel = nullptr);

// Range bookkeeping for a resumed download: what to do with the `have` bytes
// already on disk, given the response status and its Content-Range header.
//   kAppend  206 whose range starts at `have`: append the body
//   kRestart 200 (the server ignored Range): drop the partial bytes, take the body
//   kRefuse  206 starting elsewhere, or an unparsable range: the partial is useless
//   kNone    any other status (error statuses are handled by the caller)
enum class RangeAction { kNone, kAppend, kRestart, kRefuse };
RangeAction rangeAction(std::uint64_t have, long status, std::string_view contentRange);

// The local path of a file: URL (percent-decoded) or of a plain absolute path;
// nullopt for other URLs.
std::optional<std::string> localPathOfUrl(const std::string& url);

}  // namespace berth::oci
