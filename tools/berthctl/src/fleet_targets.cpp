#include "fleet_targets.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace berthctl::fleet {

using berth::Error;
using berth::ErrorCode;

namespace {

std::string trim(const std::string& s) {
    auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return {};
    auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

bool readWhole(const std::string& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::ostringstream os;
    os << in.rdbuf();
    out = os.str();
    return true;
}

std::vector<std::string> splitTabs(const std::string& line) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (true) {
        auto tab = line.find('\t', start);
        out.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
        if (tab == std::string::npos) break;
        start = tab + 1;
    }
    return out;
}

bool validEndpointId(const std::string& id) {
    if (id.empty()) return false;
    for (char c : id)
        if (static_cast<unsigned char>(c) <= ' ' || c == '\t' || c == '+' || c == '#') return false;
    return true;
}

}  // namespace

berth::Result<std::vector<std::string>> parseTargets(const std::string& text) {
    std::vector<std::string> out;
    std::set<std::string> seen;
    std::istringstream in(text);
    std::string line;
    unsigned lineNo = 0;
    while (std::getline(in, line)) {
        ++lineNo;
        auto hash = line.find('#');
        if (hash != std::string::npos) line.erase(hash);
        auto id = trim(line);
        if (id.empty()) continue;
        // '+' and white space cannot be in an MQTT topic level we publish to.
        if (!validEndpointId(id))
            return Error(ErrorCode::kInvalidArguments,
                         "line " + std::to_string(lineNo) + ": '" + id + "' is not an endpoint ID (no spaces, '+')");
        if (seen.insert(id).second) out.push_back(id);
    }
    return out;
}

berth::Result<std::vector<std::string>> readTargetsFile(const std::string& path) {
    std::string text;
    if (!readWhole(path, text))
        return Error(ErrorCode::kInvalidArguments, "cannot read targets file: " + std::string(std::strerror(errno)),
                     path);
    auto ids = parseTargets(text);
    if (!ids) return Error(ErrorCode::kInvalidArguments, path + ": " + ids.error().message, path);
    if (ids->empty()) return Error(ErrorCode::kInvalidArguments, "no endpoint IDs in " + path, path);
    return ids;
}

std::vector<KnownEndpoint> parseKnownEndpoints(const std::string& text) {
    std::vector<KnownEndpoint> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        auto f = splitTabs(line);
        if (f.size() < 3 || !validEndpointId(f[0])) continue;
        mergeKnownEndpoint(out, {f[0], f[1], f[2], f.size() > 3 ? f[3] : std::string()});
    }
    return out;
}

std::string formatKnownEndpoints(const std::vector<KnownEndpoint>& endpoints) {
    std::string out = "# berthctl fleet discover: endpoint\thow\tseen (UTC)\tdetail\n";
    auto clean = [](std::string s) {
        for (char& c : s)
            if (c == '\t' || c == '\n' || c == '\r') c = ' ';
        return s;
    };
    for (const auto& e : endpoints)
        out += clean(e.endpointId) + "\t" + clean(e.how) + "\t" + clean(e.seenAt) + "\t" + clean(e.detail) + "\n";
    return out;
}

void mergeKnownEndpoint(std::vector<KnownEndpoint>& endpoints, KnownEndpoint e) {
    for (auto& k : endpoints) {
        if (k.endpointId == e.endpointId) {
            k = std::move(e);
            return;
        }
    }
    endpoints.push_back(std::move(e));
}

berth::Result<std::vector<KnownEndpoint>> readKnownEndpoints(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return std::vector<KnownEndpoint>{};
    std::string text;
    if (!readWhole(path, text))
        return Error(ErrorCode::kInternalError, "cannot read known endpoints: " + std::string(std::strerror(errno)),
                     path);
    return parseKnownEndpoints(text);
}

berth::Status writeKnownEndpoints(const std::string& path, const std::vector<KnownEndpoint>& endpoints) {
    namespace fs = std::filesystem;
    std::error_code ec;
    auto parent = fs::path(path).parent_path();
    if (!parent.empty()) fs::create_directories(parent, ec);
    std::string tmp = path + ".tmp";
    std::string text = formatKnownEndpoints(endpoints);
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Error(ErrorCode::kInternalError, "cannot write " + tmp + ": " + std::strerror(errno), path);
    std::size_t done = 0;
    bool ok = true;
    while (done < text.size()) {
        auto n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            ok = false;
            break;
        }
        done += static_cast<std::size_t>(n);
    }
    int err = errno;
    if (ok && ::fsync(fd) != 0) {
        ok = false;
        err = errno;
    }
    ::close(fd);
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
        if (ok) err = errno;
        ::unlink(tmp.c_str());
        return Error(ErrorCode::kInternalError, "cannot write " + path + ": " + std::strerror(err), path);
    }
    return {};
}

berth::Result<std::vector<std::string>> selectByGlob(const std::vector<KnownEndpoint>& known, const std::string& glob) {
    if (glob.empty()) return Error(ErrorCode::kInvalidArguments, "empty --match glob");
    std::vector<std::string> out;
    for (const auto& k : known)
        if (::fnmatch(glob.c_str(), k.endpointId.c_str(), 0) == 0) out.push_back(k.endpointId);
    if (out.empty())
        return Error(ErrorCode::kInvalidArguments, "no known endpoint matches '" + glob + "' (" +
                                                       std::to_string(known.size()) +
                                                       " known; run `berthctl fleet discover` to record agents)");
    return out;
}

std::string defaultKnownEndpointsPath() {
    if (const char* p = std::getenv("BERTHCTL_KNOWN_ENDPOINTS"); p && *p) return p;
    if (const char* p = std::getenv("XDG_STATE_HOME"); p && *p) return std::string(p) + "/berthctl/known-endpoints";
    const char* home = std::getenv("HOME");
    return std::string(home && *home ? home : ".") + "/.local/state/berthctl/known-endpoints";
}

}  // namespace berthctl::fleet
