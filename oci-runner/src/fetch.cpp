#include "berth/oci/fetch.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "berth/core/fd.h"
#include "berth/oci/digest.h"

namespace berth::oci {
namespace {

struct Sink {
    int fd = -1;
    std::uint64_t bytes = 0;
    std::uint64_t maxBytes = 0;
    Sha256 hash;
    bool tooBig = false;
    int writeErrno = 0;
    const CancelToken* cancel = nullptr;
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    std::chrono::seconds deadline{0};
    std::uint64_t minRate = 0;
    std::chrono::seconds rateWindow{10};
    const std::function<bool(std::uint64_t)>* reserve = nullptr;
    std::uint64_t reserved = 0;
    CURL* curl = nullptr;
    bool noRoom = false;
    bool pastDeadline = false;
    bool tooSlow = false;
    // Resume bookkeeping: bytes already on disk, and what the response said about them.
    std::uint64_t have = 0;
    bool checkedStatus = false;
    bool discard = false;  // an error status: its body is not the file
    bool rangeRefused = false;
    std::string contentRange;
    std::uint64_t transferred = 0;
};

constexpr std::uint64_t kReserveStep = 1 << 20;  // growth step when the size is not announced

bool reserveFor(Sink* s, std::uint64_t total) {
    if (!s->reserve || !*s->reserve || total <= s->reserved) return true;
    if (!(*s->reserve)(total)) {
        s->noRoom = true;
        return false;
    }
    s->reserved = total;
    return true;
}

size_t onHeader(char* data, size_t size, size_t n, void* ctx) {
    auto* s = static_cast<Sink*>(ctx);
    std::string_view line(data, size * n);
    if (line.substr(0, 5) == "HTTP/") s->contentRange.clear();  // a new response (after a redirect)
    constexpr std::string_view kName = "content-range:";
    if (line.size() > kName.size()) {
        std::string lower(line.substr(0, kName.size()));
        for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (lower == kName) {
            std::string_view v = line.substr(kName.size());
            while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
            while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.remove_suffix(1);
            s->contentRange = std::string(v);
        }
    }
    return size * n;
}

// First body bytes of a response: decide what they mean for the file on disk.
bool checkStatus(Sink* s) {
    s->checkedStatus = true;
    long status = 0;
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
    bool http = status != 0;
    if (http && (status < 200 || status >= 300)) {
        s->discard = true;
        return true;
    }
    if (s->have == 0) return true;
    switch (rangeAction(s->have, status, s->contentRange)) {
        case RangeAction::kAppend: return true;
        case RangeAction::kRestart:
            if (::ftruncate(s->fd, 0) != 0 || ::lseek(s->fd, 0, SEEK_SET) != 0) {
                s->writeErrno = errno;
                return false;
            }
            s->hash = Sha256();
            s->bytes = 0;
            s->have = 0;
            return true;
        default: s->rangeRefused = true; return false;
    }
}

size_t onData(char* data, size_t size, size_t n, void* ctx) {
    auto* s = static_cast<Sink*>(ctx);
    size_t len = size * n;
    if (!s->checkedStatus && !checkStatus(s)) return 0;
    if (s->discard) return len;
    if (s->bytes + len > s->maxBytes) {
        s->tooBig = true;
        return 0;
    }
    if (s->bytes + len > s->reserved) {
        // The announced size when there is one (the body may start before the progress
        // callback has seen it), else the size so far plus a step, never past the cap.
        curl_off_t announced = -1;
        if (s->curl) curl_easy_getinfo(s->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced);
        std::uint64_t want = announced > 0 && static_cast<std::uint64_t>(announced) >= s->bytes + len
                                 ? static_cast<std::uint64_t>(announced)
                                 : std::min<std::uint64_t>(s->bytes + len + kReserveStep, s->maxBytes);
        if (!reserveFor(s, want)) return 0;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t w = ::write(s->fd, data + done, len - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            s->writeErrno = errno;
            return 0;
        }
        done += static_cast<size_t>(w);
    }
    s->hash.update(data, len);
    s->bytes += len;
    s->transferred += len;
    return len;
}

int onProgress(void* ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t, curl_off_t) {
    auto* s = static_cast<Sink*>(ctx);
    if (s->cancel && s->cancel->cancelled()) return 1;
    // The announced size is reserved before the body arrives.
    if (dltotal > 0 && !reserveFor(s, static_cast<std::uint64_t>(dltotal))) return 1;
    auto elapsed = std::chrono::steady_clock::now() - s->start;
    if (s->deadline.count() > 0 && elapsed > s->deadline) {
        s->pastDeadline = true;
        return 1;
    }
    if (s->minRate > 0 && elapsed > s->rateWindow) {
        double secs = std::chrono::duration<double>(elapsed).count();
        if (static_cast<double>(dlnow) / secs < static_cast<double>(s->minRate)) {
            s->tooSlow = true;
            return 1;
        }
    }
    return 0;
}

struct CurlDeleter {
    void operator()(CURL* c) const { curl_easy_cleanup(c); }
};

int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Hashes the bytes a resumed download keeps: the digest checked at the end covers the
// whole file.
RunnerStatus hashKeptBytes(int fd, const std::string& destPath, Sink& sink) {
    std::string buf(1 << 16, '\0');
    for (;;) {
        ssize_t r = ::read(fd, buf.data(), buf.size());
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return errnoError("read", errno, destPath);
        if (r == 0) break;
        sink.hash.update(buf.data(), static_cast<std::size_t>(r));
        sink.have += static_cast<std::uint64_t>(r);
    }
    sink.bytes = sink.have;
    return {};
}

struct SlistDeleter {
    void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

// What a transfer hands curl; each member lives as long as the transfer.
struct Transfer {
    char errbuf[CURL_ERROR_SIZE] = {0};
    std::string range;
    std::unique_ptr<curl_slist, SlistDeleter> headers;
};

RunnerStatus setTransferOptions(CURL* c, const FetchOptions& o, Sink& sink, Transfer& t) {
    curl_easy_setopt(c, CURLOPT_URL, o.url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https,file");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, t.errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, onData);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, onHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &sink);
    if (sink.have > 0) {
        t.range = std::to_string(sink.have) + "-";
        curl_easy_setopt(c, CURLOPT_RANGE, t.range.c_str());
    }
    for (const auto& h : o.headers) {
        curl_slist* next = curl_slist_append(t.headers.get(), h.c_str());
        if (!next) return RunnerError(ErrorKind::kDownloadFailed, "curl_slist_append failed");
        (void)t.headers.release();
        t.headers.reset(next);
    }
    if (t.headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, t.headers.get());
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, onProgress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &sink);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(o.connectTimeout.count()));
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(o.lowSpeedTime.count()));
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(o.maxBytes));
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, o.verifyTls ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, o.verifyTls ? 2L : 0L);
    if (!o.caFile.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, o.caFile.c_str());
    if (!o.username.empty()) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, o.username.c_str());
        curl_easy_setopt(c, CURLOPT_PASSWORD, o.password.c_str());
    }
    return {};
}

struct Failure {
    ErrorKind kind;
    std::string message;
};

// Why a transfer curl reports as failed (rc != CURLE_OK) failed: the sink's own reasons
// first, then curl's.
Failure transferFailure(CURLcode rc, const Sink& sink, const FetchOptions& o, const std::string& detail) {
    if (sink.noRoom)
        return {ErrorKind::kQuotaExceeded, "no room for the download in the disk budget (" +
                                               std::to_string(sink.reserved ? sink.reserved : sink.bytes) +
                                               " bytes held so far)"};
    if (sink.pastDeadline)
        return {ErrorKind::kDownloadFailed,
                "download not finished within its deadline of " + std::to_string(o.deadline.count()) + " s"};
    if (sink.tooSlow)
        return {ErrorKind::kDownloadFailed,
                "download slower than the minimum average rate of " + std::to_string(o.minBytesPerSecond) + " bytes/s"};
    if (sink.tooBig || rc == CURLE_FILESIZE_EXCEEDED)
        return {ErrorKind::kQuotaExceeded, "download larger than " + std::to_string(o.maxBytes) + " bytes"};
    if (sink.writeErrno == ENOSPC || sink.writeErrno == EDQUOT)
        return {ErrorKind::kNoSpace, "no space left for the download"};
    if (sink.rangeRefused)
        return {ErrorKind::kDownloadFailed, "the server answered the resumed download with range '" +
                                                sink.contentRange + "', not from byte " + std::to_string(sink.have)};
    if (sink.writeErrno) return {ErrorKind::kIoError, std::string("write: ") + std::strerror(sink.writeErrno)};
    switch (rc) {
        case CURLE_ABORTED_BY_CALLBACK: return {ErrorKind::kCancelled, "download cancelled"};
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_CONNECT:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_GOT_NOTHING:
            return {ErrorKind::kServerUnreachable, "server unreachable: " + detail};
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
            return {ErrorKind::kTlsFailure, "TLS failure: " + detail};
        case CURLE_FILE_COULDNT_READ_FILE:
        case CURLE_REMOTE_FILE_NOT_FOUND:
            return {ErrorKind::kNotFound, "not found: " + detail};
        case CURLE_LOGIN_DENIED: return {ErrorKind::kAuthFailed, "login denied: " + detail};
        default: return {ErrorKind::kDownloadFailed, "download failed: " + detail};
    }
}

// An HTTP status that is not a success, as a failure.
std::optional<Failure> httpStatusFailure(long status) {
    if (status == 401 || status == 403)
        return Failure{ErrorKind::kAuthFailed, "HTTP " + std::to_string(status) + ": credentials refused"};
    if (status == 404 || status == 410) return Failure{ErrorKind::kNotFound, "HTTP " + std::to_string(status)};
    if (status >= 500) return Failure{ErrorKind::kServerUnreachable, "HTTP " + std::to_string(status) + " from server"};
    if (status < 200 || status >= 300) return Failure{ErrorKind::kDownloadFailed, "HTTP " + std::to_string(status)};
    return std::nullopt;
}

}  // namespace


RangeAction rangeAction(std::uint64_t have, long status, std::string_view contentRange) {
    if (status == 200) return RangeAction::kRestart;
    if (status != 206) return RangeAction::kNone;
    // "bytes START-END/TOTAL" (TOTAL may be "*")
    constexpr std::string_view kUnit = "bytes ";
    if (contentRange.substr(0, kUnit.size()) != kUnit) return RangeAction::kRefuse;
    std::string_view rest = contentRange.substr(kUnit.size());
    std::size_t dash = rest.find('-');
    if (dash == 0 || dash == std::string_view::npos) return RangeAction::kRefuse;
    std::uint64_t start = 0;
    for (char ch : rest.substr(0, dash)) {
        if (ch < '0' || ch > '9' || start > (UINT64_MAX - 9) / 10) return RangeAction::kRefuse;
        start = start * 10 + static_cast<std::uint64_t>(ch - '0');
    }
    return start == have ? RangeAction::kAppend : RangeAction::kRefuse;
}

std::optional<std::string> localPathOfUrl(const std::string& url) {
    if (!url.empty() && url.front() == '/') return url;
    constexpr std::string_view kFile = "file://";
    if (url.compare(0, kFile.size(), kFile) != 0) return std::nullopt;
    std::string rest = url.substr(kFile.size());
    if (rest.rfind("localhost/", 0) == 0) rest = rest.substr(9);
    if (rest.empty() || rest.front() != '/') return std::nullopt;
    std::string out;
    for (std::size_t i = 0; i < rest.size(); ++i) {
        if (rest[i] == '%' && i + 2 < rest.size() && hexValue(rest[i + 1]) >= 0 && hexValue(rest[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hexValue(rest[i + 1]) * 16 + hexValue(rest[i + 2])));
            i += 2;
        } else {
            out.push_back(rest[i]);
        }
    }
    return out;
}

RunnerResult<FetchResult> fetchToFile(const FetchOptions& o, const std::string& destPath, const CancelToken* cancel) {
    bool isHttp = o.url.rfind("http://", 0) == 0 || o.url.rfind("https://", 0) == 0;
    bool isFile = o.url.rfind("file://", 0) == 0;
    if (!isHttp && !isFile)
        return RunnerError(ErrorKind::kInvalidArgument, "unsupported URL scheme (http, https and file are)", o.url);
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });

    bool resume = o.resume && isHttp;
    UniqueFd fd(::open(destPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (resume ? 0 : O_TRUNC), 0600));
    if (!fd) return errnoError("create", errno, destPath);
    Sink sink;
    if (resume) BERTH_TRY(hashKeptBytes(fd.get(), destPath, sink));
    std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
    if (!curl) return RunnerError(ErrorKind::kDownloadFailed, "curl_easy_init failed");
    CURL* c = curl.get();
    sink.fd = fd.get();
    sink.maxBytes = o.maxBytes;
    sink.cancel = cancel;
    sink.curl = c;
    sink.deadline = o.deadline;
    sink.minRate = o.minBytesPerSecond;
    sink.rateWindow = o.rateWindow;
    sink.reserve = &o.reserve;
    Transfer transfer;
    BERTH_TRY(setTransferOptions(c, o, sink, transfer));
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    std::optional<Failure> failure;
    if (rc != CURLE_OK) {
        failure = transferFailure(rc, sink, o, transfer.errbuf[0] ? transfer.errbuf : curl_easy_strerror(rc));
    } else if (isHttp) {
        failure = httpStatusFailure(status);
    }
    if (!failure && ::fsync(fd.get()) != 0 && errno != EINVAL) failure = Failure{ErrorKind::kIoError, "fsync failed"};
    if (failure) {
        const ErrorKind k = failure->kind;
        // A partial file is checked against its digest at the end, so keeping it is safe;
        // it is dropped only when asking for its rest cannot work (range refused, 416).
        bool keep = resume && !sink.rangeRefused && status != 416 &&
                    (k == ErrorKind::kServerUnreachable || k == ErrorKind::kDownloadFailed ||
                     k == ErrorKind::kCancelled || k == ErrorKind::kAuthFailed);
        if (!keep) ::unlink(destPath.c_str());
        return RunnerError(k, std::move(failure->message), o.url);
    }
    FetchResult r;
    r.bytes = sink.bytes;
    r.transferred = sink.transferred;
    r.resumedFrom = sink.have;
    r.sha256 = sink.hash.finish();
    return r;
}

}  // namespace berth::oci
