// InstallDU()/Update() arguments, parsed in phases: the URL, what is refused outright,
// the indexed groups (EnvVariable.{i}, HostObject.{i}), Resources, AutoRestart.
#include "binding/du_args.h"

#include <map>
#include <sstream>

#include "berth/datamodel/path.h"
#include "berth/oci/registry.h"
#include "berth/smm/host_objects.h"
#include "berth/smm/uuid.h"

namespace berth::smm {

namespace {

using dm::startsWith;
using Groups = std::map<std::string, std::map<std::string, std::string>>;

bool cleanAbsolute(const std::string& p) {
    if (p.empty() || p[0] != '/') return false;
    std::stringstream ss(p);
    std::string part;
    while (std::getline(ss, part, '/'))
        if (part == "..") return false;
    return true;
}

class Input {
public:
    explicit Input(const dm::ArgMap& in) : in_(in) {}
    std::string get(const std::string& k) const {
        auto it = in_.find(k);
        return it == in_.end() ? std::string() : it->second;
    }
    // A non-negative number; nullopt when absent, negative or not a number.
    std::optional<std::int64_t> num(const std::string& k) const {
        std::string v = get(k);
        if (v.empty()) return std::nullopt;
        try {
            std::int64_t n = std::stoll(v);
            if (n < 0) return std::nullopt;
            return n;
        } catch (const std::exception&) {
            return std::nullopt;
        }
    }
    const dm::ArgMap& all() const { return in_; }

private:
    const dm::ArgMap& in_;
};

Status checkUrl(const std::string& url, const DuArgsContext& ee) {
    if (url.empty()) return okStatus();
    if (!startsWith(url, "http://") && !startsWith(url, "https://") && !startsWith(url, "file:") &&
        !oci::isRegistryUrl(url))
        return Error(ErrorCode::kInvalidArguments,
                     "URL must be http://, https://, file: or docker://HOST/REPO:TAG (got '" + url + "')");
    if (oci::isRegistryUrl(url)) {
        auto ref = oci::parseRegistryReference(url);
        if (!ref) return Error(ErrorCode::kInvalidArguments, ref.error().message + " (got '" + url + "')");
    }
    if (startsWith(url, "file:") && !ee.fileUrls)
        return Error(ErrorCode::kInvalidArguments, "file: URLs are not enabled in this ExecEnv (an operator enables them "
                                                   "for chosen directories with X_BERTH_FileURLDirectories)");
    std::string authority = url.substr(url.find("://") == std::string::npos ? 0 : url.find("://") + 3);
    authority = authority.substr(0, authority.find('/'));
    if (authority.find('@') != std::string::npos)
        return Error(ErrorCode::kInvalidArguments, "URL must not carry credentials; use Username and Password");
    return okStatus();
}

// What this agent never grants, whatever the ExecEnv.
Status refuseUnsupported(const Input& in) {
    if (in.get("Privileged") == "true")
        return Error(ErrorCode::kRequestDenied, "privileged execution units are not allowed in this ExecEnv");
    if (!in.get("Signature").empty())
        return Error(ErrorCode::kBadSignature, "signed deployment units are not supported yet: the signature cannot be verified");
    if (!in.get("RequiredRoles").empty())
        return Error(ErrorCode::kUnavailableRole, "RequiredRoles cannot be granted: the ExecEnv offers no roles");
    if (!in.get("RequiredUserRoles").empty())
        return Error(ErrorCode::kUnavailableUserRole, "RequiredUserRoles cannot be granted: the ExecEnv offers no user roles");
    return okStatus();
}

// Splits EnvVariable.{i}.X and HostObject.{i}.X into groups; notes Resources.* and
// AutoRestart.*; refuses NetworkConfig and ApplicationData.
Status collectGroups(const Input& in, DuArgs& a, Groups& env, Groups& host) {
    for (const auto& [k, v] : in.all()) {
        if (startsWith(k, "NetworkConfig.") && !v.empty())
            return Error(ErrorCode::kInvalidArguments,
                         "NetworkConfig (access interfaces, port mappings) is not supported: execution units get a "
                         "private network namespace with loopback only; install without NetworkConfig");
        if (startsWith(k, "ApplicationData."))
            return Error(ErrorCode::kInvalidArguments,
                         "ApplicationData volumes are not supported yet; use a HostObject bind mount instead");
        auto split = [&](std::string_view prefix, Groups& into) {
            if (!startsWith(k, prefix)) return;
            std::string rest = k.substr(prefix.size());
            auto dot = rest.find('.');
            if (dot != std::string::npos) into[rest.substr(0, dot)][rest.substr(dot + 1)] = v;
        };
        split("EnvVariable.", env);
        split("HostObject.", host);
        if (startsWith(k, "Resources.")) a.hasResources = true;
        if (startsWith(k, "AutoRestart.")) a.hasAutoRestart = true;
    }
    return okStatus();
}

Status parseResources(const Input& in, DuArgs& a) {
    if (!a.hasResources) return okStatus();
    a.memKiB = in.num("Resources.AllocatedMemory");
    a.cpuPercent = in.num("Resources.AllocatedCPUPercent");
    a.diskKiB = in.num("Resources.AllocatedDiskSpace");
    if (a.memKiB && *a.memKiB < 4096)
        return Error(ErrorCode::kInvalidArguments, "Resources.AllocatedMemory must be at least 4096 KiB");
    return okStatus();
}

Status parseEnv(const Groups& env, DuArgs& a) {
    for (const auto& [n, kv] : env) {
        auto k = kv.find("Key");
        if (k == kv.end() || k->second.empty() || k->second.find('=') != std::string::npos)
            return Error(ErrorCode::kInvalidArguments, "EnvVariable." + n + ".Key must be given and hold no '='");
        a.env.emplace_back(k->second, kv.count("Value") ? kv.at("Value") : "");
    }
    a.hasEnv = !env.empty();
    return okStatus();
}

Status parseHostObjects(const Groups& host, const DuArgsContext& ee, DuArgs& a) {
    for (const auto& [n, kv] : host) {
        DuArgs::Host h;
        h.source = kv.count("Source") ? kv.at("Source") : "";
        h.destination = kv.count("Destination") ? kv.at("Destination") : "";
        h.options = kv.count("Options") ? kv.at("Options") : "";
        if (!cleanAbsolute(h.source) || !cleanAbsolute(h.destination))
            return Error(ErrorCode::kInvalidArguments,
                         "HostObject." + n + ": Source and Destination must be absolute paths without '..'");
        if (h.options.empty()) h.options = "ro,nosuid,nodev";
        if (auto o = parseHostObjectOptions(h.options); !o)
            return Error(o.error().code, "HostObject." + n + ".Options: " + o.error().message);
        // Resolved now to refuse what cannot work; resolved again at every start, and only
        // what is resolved then is mounted.
        auto fd = resolveHostObject(ee.hostPrefixes, h.source);
        if (!fd) return Error(fd.error().code, "HostObject." + n + ": " + fd.error().message);
        a.hostObjects.push_back(std::move(h));
    }
    a.hasHostObjects = !host.empty();
    return okStatus();
}

void parseAutoRestart(const Input& in, DuArgs& a) {
    if (!a.hasAutoRestart) return;
    AutoRestartPolicy& p = a.autoRestart;
    p.enable = in.get("AutoRestart.Enable") == "true";
    if (auto v = in.num("AutoRestart.RetryMinimumWaitInterval")) p.minWaitSeconds = static_cast<std::uint32_t>(*v);
    if (auto v = in.num("AutoRestart.RetryMaximumWaitInterval")) p.maxWaitSeconds = static_cast<std::uint32_t>(*v);
    if (auto v = in.num("AutoRestart.RetryIntervalMultiplier")) p.multiplier = static_cast<std::uint32_t>(*v);
    if (auto v = in.num("AutoRestart.MaximumRetryCount")) p.maxRetries = static_cast<std::uint32_t>(*v);
    if (auto v = in.num("AutoRestart.ResetPeriod")) p.resetPeriodSeconds = static_cast<std::uint32_t>(*v);
}

}  // namespace

Result<DuArgs> parseDuArgs(const dm::ArgMap& args, bool install, const DuArgsContext& ee) {
    Input in(args);
    DuArgs a;
    a.url = in.get("URL");
    a.username = in.get("Username");
    a.password = in.get("Password");
    a.uuid = in.get("UUID");
    a.moduleVersion = in.get("ModuleVersion");
    a.eeRef = in.get("ExecutionEnvRef");
    BERTH_TRY(checkUrl(a.url, ee));
    if (install && !a.uuid.empty() && !isValidUuid(a.uuid))
        return Error(ErrorCode::kInvalidArguments, "UUID '" + a.uuid + "' is not of the form 8-4-4-4-12 hex digits");
    BERTH_TRY(refuseUnsupported(in));
    Groups env, host;
    BERTH_TRY(collectGroups(in, a, env, host));
    BERTH_TRY(parseResources(in, a));
    BERTH_TRY(parseEnv(env, a));
    BERTH_TRY(parseHostObjects(host, ee, a));
    parseAutoRestart(in, a);
    if (auto v = in.num("ShutdownDelay")) a.shutdownDelay = static_cast<std::uint32_t>(*v);
    return a;
}

}  // namespace berth::smm
