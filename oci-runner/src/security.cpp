#include "berth/oci/security.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "fs_util.h"
#include "seccomp_profiles.h"

namespace berth::oci {
namespace {

using nlohmann::json;

// Every capability the kernel headers of Linux 6.x know (capability.h).
const std::set<std::string>& knownCapabilities() {
    static const std::set<std::string> caps = {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
        "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
        "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"};
    return caps;
}

bool isStringArray(const json& j) {
    if (!j.is_array()) return false;
    return std::all_of(j.begin(), j.end(), [](const json& e) { return e.is_string(); });
}

bool isAction(const json& j) { return j.is_string() && j.get<std::string>().rfind("SCMP_ACT_", 0) == 0; }

RunnerError invalid(const std::string& why) {
    return RunnerError(ErrorKind::kInvalidArgument, "seccomp profile: " + why);
}

}  // namespace

std::optional<std::uint32_t> IdMapping::toHost(std::uint32_t id) const {
    if (!enabled()) return id;
    if (id >= size) return std::nullopt;
    return hostBase + id;
}

IdMapping defaultIdMapping(std::uint32_t instance) {
    IdMapping m;
    std::uint64_t n = instance > 0 ? instance - 1 : 0;
    std::uint64_t base = kDefaultIdMapFirst + n * kDefaultIdMapSize;
    // 2^32 - 1 is the "no id" value; 2^30 + 49151 * 65536 stays below it.
    if (base + kDefaultIdMapSize >= 0xFFFFFFFFull) base = kDefaultIdMapFirst;
    m.hostBase = static_cast<std::uint32_t>(base);
    m.size = kDefaultIdMapSize;
    return m;
}

std::vector<std::string> SecurityPolicy::defaultCapabilities() {
    return {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"};
}

RunnerResult<json> checkSeccompProfile(const json& p) {
    if (!p.is_object()) return invalid("not a JSON object");
    if (!p.contains("defaultAction") || !isAction(p["defaultAction"]))
        return invalid("defaultAction must be an SCMP_ACT_* string");
    json out = {{"defaultAction", p["defaultAction"]}};
    if (p.contains("defaultErrnoRet")) {
        if (!p["defaultErrnoRet"].is_number_unsigned()) return invalid("defaultErrnoRet must be a positive number");
        out["defaultErrnoRet"] = p["defaultErrnoRet"];
    }
    for (const char* k : {"architectures", "flags"}) {
        if (!p.contains(k)) continue;
        if (!isStringArray(p[k])) return invalid(std::string(k) + " must be an array of strings");
        out[k] = p[k];
    }
    if (p.contains("listenerPath")) return invalid("listenerPath (a seccomp agent) is not supported");
    json syscalls = json::array();
    if (p.contains("syscalls")) {
        if (!p["syscalls"].is_array()) return invalid("syscalls must be an array");
        for (const auto& s : p["syscalls"]) {
            if (!s.is_object() || !s.contains("names") || !isStringArray(s["names"]) || s["names"].empty())
                return invalid("each syscalls entry needs a non-empty names array");
            if (!s.contains("action") || !isAction(s["action"]))
                return invalid("syscalls entry for " + s["names"][0].get<std::string>() + " has no SCMP_ACT_* action");
            json e = {{"names", s["names"]}, {"action", s["action"]}};
            if (s.contains("errnoRet")) {
                if (!s["errnoRet"].is_number_unsigned()) return invalid("errnoRet must be a positive number");
                e["errnoRet"] = s["errnoRet"];
            }
            if (s.contains("args")) {
                if (!s["args"].is_array()) return invalid("args must be an array");
                for (const auto& a : s["args"]) {
                    if (!a.is_object() || !a.contains("index") || !a["index"].is_number_unsigned() ||
                        !a.contains("value") || !a["value"].is_number_unsigned() || !a.contains("op") ||
                        !a["op"].is_string() || a["op"].get<std::string>().rfind("SCMP_CMP_", 0) != 0)
                        return invalid("each args entry needs index, value and an SCMP_CMP_* op");
                    if (a.contains("valueTwo") && !a["valueTwo"].is_number_unsigned())
                        return invalid("valueTwo must be a number");
                }
                e["args"] = s["args"];
            }
            syscalls.push_back(std::move(e));
        }
    }
    out["syscalls"] = std::move(syscalls);
    return out;
}

RunnerResult<json> shippedSeccompProfile(const std::string& arch) {
    const char* text = nullptr;
    if (arch == "x86_64" || arch == "amd64") text = detail::kSeccompX86_64;
    else if (arch == "aarch64" || arch == "arm64") text = detail::kSeccompAarch64;
    if (!text)
        return RunnerError(ErrorKind::kInvalidArgument,
                           "no seccomp profile ships for architecture " + arch + "; name one with X_BERTH_SeccompProfile");
    json p = json::parse(text, nullptr, false);
    if (p.is_discarded()) return RunnerError(ErrorKind::kCorruptData, "the built-in seccomp profile is not JSON");
    return checkSeccompProfile(p);
}

RunnerResult<json> defaultSeccompProfile() {
#if defined(__x86_64__)
    return shippedSeccompProfile("x86_64");
#elif defined(__aarch64__)
    return shippedSeccompProfile("aarch64");
#else
    return shippedSeccompProfile("unknown");
#endif
}

RunnerResult<json> loadSeccompProfile(const std::string& path) {
    auto text = detail::readSmallFile(path, 1 << 20);
    if (!text) return std::move(text).error();
    json p = json::parse(*text, nullptr, false);
    if (p.is_discarded()) return RunnerError(ErrorKind::kCorruptData, "seccomp profile is not valid JSON", path);
    auto checked = checkSeccompProfile(p);
    if (!checked) {
        RunnerError e = std::move(checked).error();
        e.path = path;
        return e;
    }
    return checked;
}

RunnerResult<std::vector<std::string>> parseCapabilities(const std::string& list) {
    std::vector<std::string> out;
    std::string cur;
    auto flush = [&]() -> RunnerStatus {
        if (cur.empty()) return {};
        std::string name;
        for (char c : cur) name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        if (name.rfind("CAP_", 0) != 0) name = "CAP_" + name;
        cur.clear();
        if (!knownCapabilities().count(name))
            return RunnerError(ErrorKind::kInvalidArgument, "unknown capability " + name);
        if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
        return {};
    };
    for (char c : list) {
        if (c == ',' || c == ' ' || c == '\t') {
            BERTH_OCI_TRY(flush());
        } else {
            cur += c;
        }
    }
    BERTH_OCI_TRY(flush());
    return out;
}

}  // namespace berth::oci
