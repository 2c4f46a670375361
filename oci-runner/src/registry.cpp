#include "berth/oci/registry.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>

#include <nlohmann/json.hpp>

#include "berth/core/fd.h"
#include "berth/core/log.h"
#include "berth/oci/digest.h"
#include "fs_util.h"

namespace berth::oci {
namespace {

using nlohmann::json;
constexpr std::size_t kMaxDocument = 4 << 20;  // manifests, indexes, token answers, configs

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

bool isRepoChar(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool isSeparator(char c) { return c == '.' || c == '_' || c == '-'; }

// One path component of a repository name: [a-z0-9]+ joined by ., _, __ or -.
bool validComponent(std::string_view c) {
    if (c.empty() || !isRepoChar(c.front()) || !isRepoChar(c.back())) return false;
    for (char ch : c)
        if (!isRepoChar(ch) && !isSeparator(ch)) return false;
    return true;
}

bool validTag(std::string_view t) {
    if (t.empty() || t.size() > 128) return false;
    auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
    if (!word(t.front())) return false;
    for (char c : t)
        if (!word(c) && c != '.' && c != '-') return false;
    return true;
}

bool validHost(std::string_view h) {
    if (h.empty()) return false;
    std::string_view name = h;
    if (h.front() == '[') {
        auto close = h.find(']');
        if (close == std::string_view::npos) return false;
        for (char c : h.substr(1, close - 1))
            if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return false;
        name = {};
        h = h.substr(close + 1);
        if (h.empty()) return true;
        if (h.front() != ':') return false;
    } else {
        auto colon = h.find(':');
        name = h.substr(0, colon);
        if (name.empty()) return false;
        for (char c : name)
            if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') return false;
        h = colon == std::string_view::npos ? std::string_view{} : h.substr(colon);
        if (h.empty()) return true;
    }
    std::string_view port = h.substr(1);
    if (port.empty() || port.size() > 5) return false;
    for (char c : port)
        if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    return std::stoul(std::string(port)) <= 65535;
}

std::string base64(std::string_view in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::string urlEncode(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(c);
        } else {
            char buf[4];
            std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
            out += buf;
        }
    }
    return out;
}

bool isLoopbackHost(std::string_view hostPort) {
    std::string host(hostPort);
    if (!host.empty() && host.front() == '[') return host.rfind("[::1]", 0) == 0;
    host = host.substr(0, host.find(':'));
    host = lower(host);
    return host == "localhost" || host.rfind("127.", 0) == 0;
}

// The host[:port] of an http(s) URL, for the loopback check on token realms.
std::string hostOfHttpUrl(const std::string& url) {
    auto s = url.find("://");
    if (s == std::string::npos) return {};
    std::string rest = url.substr(s + 3);
    return rest.substr(0, rest.find_first_of("/?#"));
}

struct CurlDeleter {
    void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
    void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

struct HttpReply {
    long status = 0;
    std::map<std::string, std::string> headers;  // lowercase names; last value wins
    std::string body;
    CURLcode curlCode = CURLE_OK;
};

struct Collect {
    HttpReply* reply = nullptr;
    std::size_t maxBody = 0;
    bool tooBig = false;
    const CancelToken* cancel = nullptr;
};

size_t collectBody(char* data, size_t size, size_t n, void* ctx) {
    auto* c = static_cast<Collect*>(ctx);
    if (c->reply->body.size() + size * n > c->maxBody) {
        c->tooBig = true;
        return 0;
    }
    c->reply->body.append(data, size * n);
    return size * n;
}

size_t collectHeader(char* data, size_t size, size_t n, void* ctx) {
    auto* c = static_cast<Collect*>(ctx);
    std::string_view line(data, size * n);
    if (line.substr(0, 5) == "HTTP/") {
        c->reply->headers.clear();  // a new response (after a redirect)
        return size * n;
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos) return size * n;
    std::string_view v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.remove_suffix(1);
    c->reply->headers[lower(line.substr(0, colon))] = std::string(v);
    return size * n;
}

int collectProgress(void* ctx, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* c = static_cast<Collect*>(ctx);
    return c->cancel && c->cancel->cancelled() ? 1 : 0;
}

}  // namespace

std::string RegistryReference::text() const {
    return host + "/" + repository + (digest.empty() ? ":" + tag : "@" + digest);
}

bool RegistryReference::isLoopback() const { return isLoopbackHost(host); }

bool isRegistryUrl(std::string_view url) { return url.substr(0, kRegistryScheme.size()) == kRegistryScheme; }

RunnerResult<RegistryReference> parseRegistryReference(std::string_view url) {
    auto bad = [&](const std::string& why) {
        return RunnerError(ErrorKind::kInvalidArgument, "malformed registry reference: " + why, std::string(url));
    };
    if (!isRegistryUrl(url)) return bad("it must start with docker://");
    std::string_view rest = url.substr(kRegistryScheme.size());
    for (char c : rest)
        if (static_cast<unsigned char>(c) <= ' ' || c == '?' || c == '#' || c == '\\' || c == 0x7f)
            return bad("it holds a space, control character, '?', '#' or '\\'");
    auto slash = rest.find('/');
    if (slash == std::string_view::npos) return bad("no repository after the registry host");
    RegistryReference r;
    std::string_view host = rest.substr(0, slash);
    if (host.find('@') != std::string_view::npos)
        return bad("credentials do not belong in the reference; use Username and Password");
    if (!validHost(host)) return bad("the registry host '" + std::string(host) + "' is not a host name[:port]");
    r.host = std::string(host);
    std::string_view path = rest.substr(slash + 1);
    auto at = path.find('@');
    if (at != std::string_view::npos) {
        r.digest = std::string(path.substr(at + 1));
        if (r.digest.rfind("sha256:", 0) != 0)
            return bad("only sha256 digests are supported (got '" + r.digest + "')");
        if (!isValidDigest(r.digest)) return bad("the digest '" + r.digest + "' is not sha256: and 64 lowercase hex digits");
        path = path.substr(0, at);
    }
    auto lastSlash = path.rfind('/');
    auto colon = path.rfind(':');
    if (colon != std::string_view::npos && (lastSlash == std::string_view::npos || colon > lastSlash)) {
        r.tag = std::string(path.substr(colon + 1));
        if (!validTag(r.tag)) return bad("the tag '" + r.tag + "' is not a valid tag");
        path = path.substr(0, colon);
    }
    if (path.empty() || path.size() > 255) return bad("the repository name is empty or too long");
    std::size_t start = 0;
    while (start <= path.size()) {
        auto end = path.find('/', start);
        if (end == std::string_view::npos) end = path.size();
        if (!validComponent(path.substr(start, end - start)))
            return bad("the repository '" + std::string(path) +
                       "' must be lowercase letters and digits separated by '.', '_', '-' or '/'");
        start = end + 1;
    }
    r.repository = std::string(path);
    if (r.tag.empty() && r.digest.empty()) r.tag = "latest";
    return r;
}

RunnerResult<AuthChallenge> parseWwwAuthenticate(std::string_view h) {
    auto bad = [&](const char* why) {
        return RunnerError(ErrorKind::kInvalidArgument, std::string("malformed WWW-Authenticate header: ") + why);
    };
    std::size_t i = 0;
    auto skipSpace = [&] {
        while (i < h.size() && (h[i] == ' ' || h[i] == '\t')) ++i;
    };
    auto isToken = [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    };
    skipSpace();
    AuthChallenge ch;
    while (i < h.size() && isToken(h[i])) ch.scheme.push_back(h[i++]);
    if (ch.scheme.empty()) return bad("no scheme");
    ch.scheme = lower(ch.scheme);
    skipSpace();
    while (i < h.size()) {
        std::string name;
        while (i < h.size() && isToken(h[i])) name.push_back(h[i++]);
        if (name.empty()) return bad("expected a parameter name");
        skipSpace();
        if (i >= h.size() || h[i] != '=') {
            // A token68 or the start of a second challenge: the first one is complete.
            if (ch.params.empty() && (i >= h.size() || h[i] == ',')) break;
            if (!ch.params.empty()) break;
            return bad("expected '=' after a parameter name");
        }
        ++i;
        skipSpace();
        std::string value;
        if (i < h.size() && h[i] == '"') {
            ++i;
            bool closed = false;
            while (i < h.size()) {
                char c = h[i++];
                if (c == '\\' && i < h.size()) {
                    value.push_back(h[i++]);
                } else if (c == '"') {
                    closed = true;
                    break;
                } else {
                    value.push_back(c);
                }
            }
            if (!closed) return bad("unterminated quoted value");
        } else {
            while (i < h.size() && h[i] != ',' && h[i] != ' ' && h[i] != '\t') value.push_back(h[i++]);
        }
        ch.params[lower(name)] = value;
        skipSpace();
        if (i < h.size()) {
            if (h[i] != ',') return bad("expected ',' between parameters");
            ++i;
            skipSpace();
        }
    }
    return ch;
}

namespace {

class Client {
public:
    Client(RegistryReference ref, const RegistryPullOptions& o, const CancelToken* cancel, RegistryStats* stats)
        : ref_(std::move(ref)), o_(o), cancel_(cancel), stats_(stats), start_(std::chrono::steady_clock::now()) {}

    RunnerError error(ErrorKind kind, const std::string& msg) const {
        std::string image = ref_.repository + (ref_.digest.empty() ? ":" + ref_.tag : "@" + ref_.digest);
        return RunnerError(kind, "registry " + ref_.host + ", image " + image + ": " + msg, ref_.text());
    }

    // Finds the scheme the registry speaks and authenticates to it.
    RunnerStatus connect() {
        base_ = "https://" + ref_.host;
        auto r = get(base_ + "/v2/", {}, kMaxDocument);
        if (!r && r.error().kind == ErrorKind::kTlsFailure && ref_.isLoopback() && plainHttpAnswers()) {
            base_ = "http://" + ref_.host;
            r = get(base_ + "/v2/", {}, kMaxDocument);
        }
        if (!r) return std::move(r).error();
        if (r->status == 401) {
            BERTH_OCI_TRY(authenticate(*r));
            return {};
        }
        if (r->status == 404) return error(ErrorKind::kNotFound, "no OCI distribution API at " + base_ + "/v2/");
        return checkStatus(*r, "the API check");
    }

    RunnerResult<HttpReply> manifest(const std::string& reference) {
        static const std::string kAccept = "Accept: " + std::string(kMediaTypeIndex) + ", " +
                                           std::string(kMediaTypeManifest) + ", " + std::string(kMediaTypeDockerList) +
                                           ", " + std::string(kMediaTypeDockerManifest);
        auto r = authedGet(base_ + "/v2/" + ref_.repository + "/manifests/" + reference, {kAccept}, kMaxDocument);
        if (!r) return std::move(r).error();
        if (r->status == 404)
            return error(ErrorKind::kNotFound, "unknown repository, tag or manifest '" + reference + "'" +
                                                   registryErrorCode(r->body));
        BERTH_OCI_TRY(checkStatus(*r, "manifest " + reference));
        return r;
    }

    // Downloads the blob into `dest`, resuming a partial download, verifying size and digest.
    // Two pulls needing the same blob (parallel installs sharing a layer) take turns on
    // its partial file through a lock file beside it; the second finds the file gone
    // (moved into the first one's staging) and downloads its own copy.
    RunnerStatus blob(const Descriptor& d, const std::string& dest, const char* what) {
        std::string partial = o_.partialDir + "/" + digestHex(d.digest);
        std::string lockPath = partial + ".lock";
        UniqueFd lock;
        for (;;) {
            lock.reset(::open(lockPath.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
            if (!lock) return errnoError("open", errno, lockPath);
            while (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
                if (errno != EWOULDBLOCK && errno != EINTR) return errnoError("flock", errno, lockPath);
                if (cancel_ && cancel_->cancelled()) return error(ErrorKind::kCancelled, "cancelled");
                struct timespec pause {0, 50 * 1000 * 1000};
                ::nanosleep(&pause, nullptr);
            }
            // The holder before us unlinks the lock file: ours counts only if it is still the one at the path.
            struct stat held {}, now {};
            if (::fstat(lock.get(), &held) == 0 && ::stat(lockPath.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
                held.st_dev == now.st_dev)
                break;
        }
        auto st = blobLocked(d, dest, what, partial);
        // A token that expired during a long pull: authenticate again, once.
        if (!st && st.error().kind == ErrorKind::kAuthFailed && auth_.rfind("Authorization: Bearer ", 0) == 0 &&
            !reauthenticated_) {
            reauthenticated_ = true;
            BERTH_OCI_TRY(connect());
            st = blobLocked(d, dest, what, partial);
        }
        ::unlink(lockPath.c_str());  // still held: a waiter that got it next works on a fresh path
        return st;
    }

private:
    RunnerStatus blobLocked(const Descriptor& d, const std::string& dest, const char* what, const std::string& partial) {
        struct stat st {};
        auto size = static_cast<std::uint64_t>(d.size);
        if (::stat(partial.c_str(), &st) == 0 && static_cast<std::uint64_t>(st.st_size) >= size) {
            // Complete from an earlier try (interrupted before it was moved): check it.
            std::size_t have = 0;
            auto h = sha256File(partial, &have);
            if (h && *h == d.digest && have == size) {
                if (stats_) stats_->blobBytesResumed += size;
                return moveInto(partial, dest);
            }
            ::unlink(partial.c_str());
        }
        FetchOptions f = o_.fetch;
        f.url = base_ + "/v2/" + ref_.repository + "/blobs/" + d.digest;
        f.username.clear();
        f.password.clear();
        f.headers = auth_.empty() ? std::vector<std::string>{} : std::vector<std::string>{auth_};
        f.resume = true;
        f.maxBytes = size;
        f.fileDirectories = std::vector<std::string>{};
        if (o_.fetch.deadline.count() > 0) {
            auto left = o_.fetch.deadline - std::chrono::duration_cast<std::chrono::seconds>(
                                                std::chrono::steady_clock::now() - start_);
            if (left.count() <= 0)
                return error(ErrorKind::kDownloadFailed, "download not finished within its deadline of " +
                                                             std::to_string(o_.fetch.deadline.count()) + " s");
            f.deadline = left;
        }
        bool refused = false;
        std::uint64_t before = reservedDone_;
        if (o_.fetch.reserve)
            f.reserve = [this, before, &refused](std::uint64_t bytes) {
                bool ok = o_.fetch.reserve(before + bytes);
                if (!ok) refused = true;
                return ok;
            };
        auto r = fetchToFile(f, partial, cancel_);
        if (!r) {
            RunnerError e = std::move(r).error();
            if (e.kind == ErrorKind::kQuotaExceeded && !refused)
                return error(ErrorKind::kSizeMismatch, std::string(what) + " blob " + d.digest +
                                                           " is larger than its descriptor's " + std::to_string(size) +
                                                           " bytes");
            if (e.kind == ErrorKind::kNotFound)
                return error(ErrorKind::kNotFound, std::string(what) + " blob " + d.digest + " is not in the registry");
            if (e.kind == ErrorKind::kAuthFailed)
                return error(ErrorKind::kAuthFailed, std::string(what) + " blob " + d.digest + ": access refused");
            return error(e.kind, std::string(what) + " blob " + d.digest + ": " + e.message);
        }
        if (stats_) {
            stats_->bytesTransferred += r->transferred;
            stats_->blobBytesTransferred += r->transferred;
            stats_->blobBytesResumed += r->resumedFrom;
        }
        if (r->bytes != size) {
            ::unlink(partial.c_str());
            return error(ErrorKind::kSizeMismatch, std::string(what) + " blob " + d.digest + " is " +
                                                       std::to_string(r->bytes) + " bytes, its descriptor says " +
                                                       std::to_string(size));
        }
        if (r->sha256 != d.digest) {
            ::unlink(partial.c_str());
            return error(ErrorKind::kDigestMismatch, std::string(what) + " blob " + d.digest + " hashes to " + r->sha256);
        }
        reservedDone_ += size;
        return moveInto(partial, dest);
    }

    RunnerStatus moveInto(const std::string& from, const std::string& to) {
        if (::rename(from.c_str(), to.c_str()) != 0) return errnoError("rename", errno, to);
        return {};
    }

    static std::string registryErrorCode(const std::string& body) {
        json j = json::parse(body, nullptr, false);
        if (j.is_discarded() || !j.is_object() || !j.contains("errors") || !j["errors"].is_array() ||
            j["errors"].empty() || !j["errors"][0].is_object())
            return {};
        const auto& e = j["errors"][0];
        std::string code = e.value("code", "");
        return code.empty() ? std::string() : " (" + code + ")";
    }

    RunnerStatus checkStatus(const HttpReply& r, const std::string& what) const {
        if (r.status >= 200 && r.status < 300) return {};
        if (r.status == 401 || r.status == 403)
            return error(ErrorKind::kAuthFailed, what + ": access refused (HTTP " + std::to_string(r.status) + ")" +
                                                     registryErrorCode(r.body));
        if (r.status == 404) return error(ErrorKind::kNotFound, what + ": not found" + registryErrorCode(r.body));
        if (r.status == 429 || r.status >= 500)
            return error(ErrorKind::kServerUnreachable, what + ": HTTP " + std::to_string(r.status) + " from the registry");
        return error(ErrorKind::kDownloadFailed, what + ": HTTP " + std::to_string(r.status));
    }

    // A plain HTTP server answering the TLS handshake with an HTTP error is what a
    // loopback registry without TLS looks like; a TLS server with a bad certificate
    // must not be mistaken for one (that stays kTlsFailure).
    bool plainHttpAnswers() {
        auto r = get("http://" + ref_.host + "/v2/", {}, kMaxDocument);
        return r && r->headers.count("docker-distribution-api-version");
    }

    RunnerStatus authenticate(const HttpReply& challengeReply) {
        auto it = challengeReply.headers.find("www-authenticate");
        if (it == challengeReply.headers.end())
            return error(ErrorKind::kAuthFailed, "the registry asks for authentication without saying how");
        auto ch = parseWwwAuthenticate(it->second);
        if (!ch) return error(ErrorKind::kAuthFailed, ch.error().message);
        if (ch->scheme == "basic") {
            if (o_.fetch.username.empty())
                return error(ErrorKind::kAuthFailed, "the registry requires a user name and password");
            if (base_.rfind("http://", 0) == 0 && !ref_.isLoopback())
                return error(ErrorKind::kAuthFailed, "credentials are not sent over plain HTTP");
            auth_ = "Authorization: Basic " + base64(o_.fetch.username + ":" + o_.fetch.password);
            auto r = get(base_ + "/v2/", {auth_}, kMaxDocument);
            if (!r) return std::move(r).error();
            if (r->status == 401 || r->status == 403)
                return error(ErrorKind::kAuthFailed, "the registry refused the credentials of user '" +
                                                         o_.fetch.username + "'");
            return checkStatus(*r, "the API check");
        }
        if (ch->scheme != "bearer")
            return error(ErrorKind::kAuthFailed, "unsupported authentication scheme '" + ch->scheme + "'");
        std::string realm = ch->params.count("realm") ? ch->params.at("realm") : "";
        bool realmTls = realm.rfind("https://", 0) == 0;
        if (!realmTls && !(realm.rfind("http://", 0) == 0 && isLoopbackHost(hostOfHttpUrl(realm))))
            return error(ErrorKind::kAuthFailed, "the token realm '" + realm +
                                                     "' is not an https URL (plain http only on loopback)");
        std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
        if (ch->params.count("service")) url += "service=" + urlEncode(ch->params.at("service")) + "&";
        url += "scope=" + urlEncode("repository:" + ref_.repository + ":pull");
        std::vector<std::string> headers;
        if (!o_.fetch.username.empty())
            headers.push_back("Authorization: Basic " + base64(o_.fetch.username + ":" + o_.fetch.password));
        auto r = get(url, headers, kMaxDocument);
        if (!r) {
            RunnerError e = std::move(r).error();
            e.message = "token service " + hostOfHttpUrl(realm) + ": " + e.message;
            return e;
        }
        if (r->status == 401 || r->status == 403)
            return error(ErrorKind::kAuthFailed, "the token service " + hostOfHttpUrl(realm) + " refused " +
                                                     (o_.fetch.username.empty() ? std::string("anonymous access")
                                                                                : "the credentials of user '" +
                                                                                      o_.fetch.username + "'"));
        BERTH_OCI_TRY(checkStatus(*r, "the token request"));
        json j = json::parse(r->body, nullptr, false);
        std::string token;
        if (j.is_object()) {
            if (j.contains("token") && j["token"].is_string()) token = j["token"].get<std::string>();
            else if (j.contains("access_token") && j["access_token"].is_string())
                token = j["access_token"].get<std::string>();
        }
        if (token.empty() || token.find_first_of("\r\n") != std::string::npos)
            return error(ErrorKind::kAuthFailed, "the token service gave no usable token");
        auth_ = "Authorization: Bearer " + token;
        return {};
    }

    // A GET with the current authorization; a 401 once authenticated means the
    // credentials or token do not give access to this repository.
    RunnerResult<HttpReply> authedGet(const std::string& url, std::vector<std::string> headers, std::size_t maxBody) {
        if (!auth_.empty()) headers.push_back(auth_);
        return get(url, headers, maxBody);
    }

    RunnerResult<HttpReply> get(const std::string& url, const std::vector<std::string>& headers, std::size_t maxBody) {
        static std::once_flag once;
        std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
        std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
        if (!curl) return error(ErrorKind::kDownloadFailed, "curl_easy_init failed");
        CURL* c = curl.get();
        HttpReply reply;
        Collect col{&reply, maxBody, false, cancel_};
        char errbuf[CURL_ERROR_SIZE] = {0};
        std::unique_ptr<curl_slist, SlistDeleter> list;
        for (const auto& h : headers) {
            curl_slist* next = curl_slist_append(list.get(), h.c_str());
            if (!next) return error(ErrorKind::kDownloadFailed, "curl_slist_append failed");
            (void)list.release();
            list.reset(next);
        }
        const FetchOptions& f = o_.fetch;
        curl_easy_setopt(c, CURLOPT_URL, url.c_str());
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collectBody);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &col);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collectHeader);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &col);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, collectProgress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &col);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(f.connectTimeout.count()));
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(f.lowSpeedTime.count()));
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, f.verifyTls ? 1L : 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, f.verifyTls ? 2L : 0L);
        if (!f.caFile.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, f.caFile.c_str());
        if (list) curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
        reply.curlCode = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply.status);
        if (stats_) stats_->bytesTransferred += reply.body.size();
        std::string detail = errbuf[0] ? errbuf : curl_easy_strerror(reply.curlCode);
        switch (reply.curlCode) {
            case CURLE_OK: return reply;
            case CURLE_ABORTED_BY_CALLBACK: return error(ErrorKind::kCancelled, "cancelled");
            case CURLE_WRITE_ERROR:
                if (col.tooBig)
                    return error(ErrorKind::kCorruptData,
                                 "answer larger than " + std::to_string(maxBody) + " bytes from " + hostOfHttpUrl(url));
                return error(ErrorKind::kDownloadFailed, detail);
            case CURLE_COULDNT_RESOLVE_HOST:
            case CURLE_COULDNT_RESOLVE_PROXY:
            case CURLE_COULDNT_CONNECT:
            case CURLE_OPERATION_TIMEDOUT:
            case CURLE_GOT_NOTHING:
            case CURLE_RECV_ERROR:
            case CURLE_SEND_ERROR:
                return error(ErrorKind::kServerUnreachable, "unreachable: " + detail);
            case CURLE_SSL_CONNECT_ERROR:
            case CURLE_PEER_FAILED_VERIFICATION:
            case CURLE_SSL_CERTPROBLEM:
            case CURLE_SSL_CIPHER:
            case CURLE_SSL_CACERT_BADFILE:
            case CURLE_SSL_ISSUER_ERROR:
            case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
            case CURLE_SSL_INVALIDCERTSTATUS:
                return error(ErrorKind::kTlsFailure, "TLS failure: " + detail);
            default: return error(ErrorKind::kDownloadFailed, detail);
        }
    }

    RegistryReference ref_;
    const RegistryPullOptions& o_;
    const CancelToken* cancel_;
    RegistryStats* stats_;
    std::chrono::steady_clock::time_point start_;
    std::string base_;
    std::string auth_;  // the Authorization header line; never logged
    std::uint64_t reservedDone_ = 0;
    bool reauthenticated_ = false;
};

std::string mediaTypeOf(const HttpReply& r) {
    auto it = r.headers.find("content-type");
    std::string ct = it == r.headers.end() ? "" : it->second.substr(0, it->second.find(';'));
    while (!ct.empty() && ct.back() == ' ') ct.pop_back();
    if (ct.empty() || ct == "application/json" || ct == "text/plain") {
        json j = json::parse(r.body, nullptr, false);
        if (j.is_object() && j.contains("mediaType") && j["mediaType"].is_string()) ct = j["mediaType"].get<std::string>();
        else if (j.is_object() && j.contains("manifests")) ct = std::string(kMediaTypeIndex);
        else if (j.is_object() && j.contains("layers")) ct = std::string(kMediaTypeManifest);
    }
    return ct;
}

bool isIndexType(std::string_view t) { return t == kMediaTypeIndex || t == kMediaTypeDockerList; }

std::string sha256Of(const std::string& bytes) {
    Sha256 h;
    h.update(bytes.data(), bytes.size());
    return h.finish();
}

// From the manifest (or index) the reference names to the image manifest for our
// platform, each document checked against its digest; fills img.entry, manifestDesc,
// manifest and manifestJson and stores the manifest in outDir.
RunnerStatus resolveManifest(Client& client, const RegistryReference& ref, const RegistryPullOptions& o,
                             RegistryImage& img) {
    auto reply = client.manifest(ref.reference());
    if (!reply) return std::move(reply).error();
    std::string digest = sha256Of(reply->body);
    if (!ref.digest.empty() && digest != ref.digest)
        return client.error(ErrorKind::kDigestMismatch, "the manifest sent for " + ref.digest + " hashes to " + digest);
    auto dcd = reply->headers.find("docker-content-digest");
    if (ref.digest.empty() && dcd != reply->headers.end() && dcd->second.rfind("sha256:", 0) == 0 &&
        dcd->second != digest)
        return client.error(ErrorKind::kDigestMismatch,
                            "the manifest hashes to " + digest + ", the registry announced " + dcd->second);
    Descriptor d;
    d.mediaType = mediaTypeOf(*reply);
    d.digest = digest;
    d.size = static_cast<std::int64_t>(reply->body.size());
    img.entry = d;
    std::string body = std::move(reply->body);
    for (int depth = 0; isIndexType(d.mediaType); ++depth) {
        if (depth >= 4) return client.error(ErrorKind::kCorruptData, "indexes nested too deeply");
        auto index = parseIndex(body);
        if (!index) return client.error(index.error().kind, index.error().message);
        auto sel = selectManifest(*index, o.platform);
        if (!sel)
            return client.error(sel.error().kind, sel.error().message + " (host " + o.platform.os + "/" +
                                                      o.platform.architecture + ")");
        d = *sel;
        img.entry = d;
        auto next = client.manifest(d.digest);
        if (!next) return std::move(next).error();
        std::string got = sha256Of(next->body);
        if (got != d.digest)
            return client.error(ErrorKind::kDigestMismatch, "the manifest sent for " + d.digest + " hashes to " + got);
        if (next->body.size() != static_cast<std::size_t>(d.size))
            return client.error(ErrorKind::kSizeMismatch, "manifest " + d.digest + " is " +
                                                              std::to_string(next->body.size()) +
                                                              " bytes, its descriptor says " + std::to_string(d.size));
        std::string nextType = mediaTypeOf(*next);
        if (!nextType.empty()) d.mediaType = nextType;
        body = std::move(next->body);
    }
    img.manifestDesc = d;
    auto manifest = parseManifest(body);
    if (!manifest) return client.error(manifest.error().kind, manifest.error().message);
    img.manifest = std::move(*manifest);
    img.manifestJson = std::move(body);
    return detail::writeFileAtomic(o.outDir + "/" + digestHex(d.digest), img.manifestJson);
}

// The image config: downloaded into outDir, parsed, and checked against our platform
// and the manifest's layer count.
RunnerStatus fetchConfig(Client& client, const RegistryPullOptions& o, RegistryImage& img) {
    const Descriptor& cd = img.manifest.config;
    if (cd.size > static_cast<std::int64_t>(kMaxDocument))
        return client.error(ErrorKind::kCorruptData, "config " + cd.digest + " is too large");
    std::string configPath = o.outDir + "/" + digestHex(cd.digest);
    BERTH_OCI_TRY(client.blob(cd, configPath, "config"));
    auto ctext = detail::readSmallFile(configPath, kMaxDocument);
    if (!ctext) return std::move(ctext).error();
    auto config = parseConfig(*ctext);
    if (!config) return client.error(config.error().kind, config.error().message);
    img.config = std::move(*config);
    img.configJson = std::move(*ctext);
    if (!platformMatches(img.config.platform, o.platform))
        return client.error(ErrorKind::kNoMatchingPlatform, "image is for " + img.config.platform.os + "/" +
                                                                img.config.platform.architecture + ", host is " +
                                                                o.platform.os + "/" + o.platform.architecture);
    if (img.config.diffIds.size() != img.manifest.layers.size())
        return client.error(ErrorKind::kCorruptData, "config lists " + std::to_string(img.config.diffIds.size()) +
                                                         " diff_ids for " +
                                                         std::to_string(img.manifest.layers.size()) + " layers");
    return {};
}

// The layers not already stored (o.haveLayer), after checking that together they fit
// the download cap.
RunnerStatus fetchLayers(Client& client, const RegistryPullOptions& o, RegistryImage& img, RegistryStats& stats) {
    std::uint64_t needed = 0;
    img.layerFetched.assign(img.manifest.layers.size(), false);
    std::vector<bool> skip(img.manifest.layers.size(), false);
    for (std::size_t i = 0; i < img.manifest.layers.size(); ++i) {
        const auto& l = img.manifest.layers[i];
        BERTH_OCI_TRY(layerCompression(l.mediaType));
        if (o.haveLayer && o.haveLayer(img.config.diffIds[i])) {
            skip[i] = true;
            continue;
        }
        needed += static_cast<std::uint64_t>(l.size);
    }
    if (needed > o.fetch.maxBytes)
        return client.error(ErrorKind::kQuotaExceeded, "the layers to download hold " + std::to_string(needed) +
                                                           " bytes, more than the cap of " +
                                                           std::to_string(o.fetch.maxBytes));
    for (std::size_t i = 0; i < img.manifest.layers.size(); ++i) {
        if (skip[i]) {
            ++stats.layersSkipped;
            continue;
        }
        const auto& l = img.manifest.layers[i];
        std::string dest = o.outDir + "/" + digestHex(l.digest);
        struct stat st {};
        if (::stat(dest.c_str(), &st) != 0) BERTH_OCI_TRY(client.blob(l, dest, "layer"));  // a layer listed twice
        img.layerFetched[i] = true;
        ++stats.layersFetched;
    }
    return {};
}

}  // namespace

RunnerResult<RegistryImage> fetchRegistryImage(const RegistryPullOptions& o, const CancelToken* cancel,
                                               RegistryStats* stats) {
    RegistryStats localStats;
    if (!stats) stats = &localStats;
    auto ref = parseRegistryReference(o.fetch.url);
    if (!ref) return std::move(ref).error();
    Client client(*ref, o, cancel, stats);
    BERTH_LOG_INFO("oci") << "pulling " << ref->text() << " from registry " << ref->host;
    BERTH_OCI_TRY(client.connect());

    RegistryImage img;
    img.ref = *ref;
    BERTH_OCI_TRY(resolveManifest(client, *ref, o, img));
    BERTH_OCI_TRY(fetchConfig(client, o, img));
    BERTH_OCI_TRY(fetchLayers(client, o, img, *stats));
    BERTH_LOG_INFO("oci") << "pulled " << ref->text() << ": " << stats->layersFetched << " layer(s) downloaded, "
                          << stats->layersSkipped << " already stored, " << stats->blobBytesTransferred
                          << " blob bytes moved";
    return img;
}

}  // namespace berth::oci
