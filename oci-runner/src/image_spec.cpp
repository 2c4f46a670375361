#include "berth/oci/image_spec.h"

#include <sys/utsname.h>

#include <nlohmann/json.hpp>

#include "berth/oci/digest.h"

namespace berth::oci {
namespace {

using nlohmann::json;

RunnerError corrupt(const std::string& what) { return RunnerError(ErrorKind::kCorruptData, what); }

RunnerResult<json> parseObject(std::string_view text, const char* what) {
    json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return corrupt(std::string(what) + " is not valid JSON");
    if (!j.is_object()) return corrupt(std::string(what) + " is not a JSON object");
    return j;
}

// Optional string member; wrong type is an error.
RunnerResult<std::optional<std::string>> optString(const json& o, const char* key, const char* what) {
    auto it = o.find(key);
    if (it == o.end() || it->is_null()) return std::optional<std::string>();
    if (!it->is_string()) return corrupt(std::string(what) + ": '" + key + "' is not a string");
    return std::optional<std::string>(it->get<std::string>());
}

RunnerResult<std::vector<std::string>> optStringArray(const json& o, const char* key, const char* what) {
    std::vector<std::string> out;
    auto it = o.find(key);
    if (it == o.end() || it->is_null()) return out;
    if (!it->is_array()) return corrupt(std::string(what) + ": '" + key + "' is not an array");
    for (const auto& e : *it) {
        if (!e.is_string()) return corrupt(std::string(what) + ": '" + key + "' holds a non-string");
        out.push_back(e.get<std::string>());
    }
    return out;
}

RunnerResult<std::map<std::string, std::string>> optStringMap(const json& o, const char* key, const char* what) {
    std::map<std::string, std::string> out;
    auto it = o.find(key);
    if (it == o.end() || it->is_null()) return out;
    if (!it->is_object()) return corrupt(std::string(what) + ": '" + key + "' is not an object");
    for (const auto& [k, v] : it->items()) {
        if (!v.is_string()) return corrupt(std::string(what) + ": '" + key + "." + k + "' is not a string");
        out[k] = v.get<std::string>();
    }
    return out;
}

RunnerResult<Descriptor> parseDescriptor(const json& o, const char* what) {
    if (!o.is_object()) return corrupt(std::string(what) + ": descriptor is not an object");
    Descriptor d;
    auto mt = optString(o, "mediaType", what);
    if (!mt) return std::move(mt).error();
    d.mediaType = mt->value_or("");
    auto dg = optString(o, "digest", what);
    if (!dg) return std::move(dg).error();
    if (!*dg) return corrupt(std::string(what) + ": descriptor without digest");
    if (!isValidDigest(**dg)) {
        if ((*dg)->rfind("sha256:", 0) != 0)
            return RunnerError(ErrorKind::kUnsupportedMediaType,
                               std::string(what) + ": unsupported digest algorithm", **dg);
        return corrupt(std::string(what) + ": malformed digest '" + **dg + "'");
    }
    d.digest = **dg;
    auto sz = o.find("size");
    if (sz == o.end() || !sz->is_number_integer()) return corrupt(std::string(what) + ": descriptor without integer size");
    d.size = sz->get<std::int64_t>();
    if (d.size < 0) return corrupt(std::string(what) + ": negative size");
    auto ann = optStringMap(o, "annotations", what);
    if (!ann) return std::move(ann).error();
    d.annotations = std::move(*ann);
    auto pf = o.find("platform");
    if (pf != o.end() && !pf->is_null()) {
        if (!pf->is_object()) return corrupt(std::string(what) + ": platform is not an object");
        Platform p;
        auto os = optString(*pf, "os", what);
        auto arch = optString(*pf, "architecture", what);
        auto var = optString(*pf, "variant", what);
        if (!os) return std::move(os).error();
        if (!arch) return std::move(arch).error();
        if (!var) return std::move(var).error();
        p.os = os->value_or("");
        p.architecture = arch->value_or("");
        p.variant = var->value_or("");
        d.platform = p;
    }
    return d;
}

RunnerStatus checkSchemaVersion(const json& o, const char* what) {
    auto it = o.find("schemaVersion");
    if (it == o.end() || !it->is_number_integer() || it->get<std::int64_t>() != 2)
        return RunnerError(ErrorKind::kUnsupportedMediaType, std::string(what) + ": schemaVersion must be 2");
    return {};
}

std::string normaliseArch(const std::string& machine) {
    if (machine == "x86_64") return "amd64";
    if (machine == "aarch64" || machine == "arm64") return "arm64";
    if (machine.rfind("armv", 0) == 0) return "arm";
    if (machine == "i686" || machine == "i386") return "386";
    if (machine == "mips") return "mips";
    if (machine == "ppc64le") return "ppc64le";
    if (machine == "riscv64") return "riscv64";
    if (machine == "s390x") return "s390x";
    return machine;
}

}  // namespace

RunnerResult<Compression> layerCompression(std::string_view mt) {
    if (mt == kMediaTypeLayer || mt == "application/vnd.docker.image.rootfs.diff.tar") return Compression::kNone;
    if (mt == kMediaTypeLayerGzip || mt == kMediaTypeDockerLayerGzip) return Compression::kGzip;
    if (mt == kMediaTypeLayerZstd) return Compression::kZstd;
    return RunnerError(ErrorKind::kUnsupportedMediaType, "unsupported layer media type '" + std::string(mt) + "'");
}

RunnerResult<ImageIndex> parseIndex(std::string_view text) {
    auto j = parseObject(text, "index");
    if (!j) return std::move(j).error();
    BERTH_OCI_TRY(checkSchemaVersion(*j, "index"));
    auto mt = optString(*j, "mediaType", "index");
    if (!mt) return std::move(mt).error();
    if (*mt && **mt != kMediaTypeIndex && **mt != kMediaTypeDockerList)
        return RunnerError(ErrorKind::kUnsupportedMediaType, "index has media type '" + **mt + "'");
    ImageIndex idx;
    auto ms = j->find("manifests");
    if (ms == j->end() || !ms->is_array()) return corrupt("index: 'manifests' is missing or not an array");
    for (const auto& m : *ms) {
        auto d = parseDescriptor(m, "index");
        if (!d) return std::move(d).error();
        idx.manifests.push_back(std::move(*d));
    }
    auto ann = optStringMap(*j, "annotations", "index");
    if (!ann) return std::move(ann).error();
    idx.annotations = std::move(*ann);
    return idx;
}

RunnerResult<ImageManifest> parseManifest(std::string_view text) {
    auto j = parseObject(text, "manifest");
    if (!j) return std::move(j).error();
    BERTH_OCI_TRY(checkSchemaVersion(*j, "manifest"));
    auto mt = optString(*j, "mediaType", "manifest");
    if (!mt) return std::move(mt).error();
    if (*mt && **mt != kMediaTypeManifest && **mt != kMediaTypeDockerManifest)
        return RunnerError(ErrorKind::kUnsupportedMediaType, "manifest has media type '" + **mt + "'");
    ImageManifest m;
    auto cfg = j->find("config");
    if (cfg == j->end()) return corrupt("manifest: no config descriptor");
    auto c = parseDescriptor(*cfg, "manifest config");
    if (!c) return std::move(c).error();
    if (c->mediaType != kMediaTypeConfig && c->mediaType != kMediaTypeDockerConfig)
        return RunnerError(ErrorKind::kUnsupportedMediaType, "config has media type '" + c->mediaType + "'");
    m.config = std::move(*c);
    auto ls = j->find("layers");
    if (ls == j->end() || !ls->is_array()) return corrupt("manifest: 'layers' is missing or not an array");
    for (const auto& l : *ls) {
        auto d = parseDescriptor(l, "manifest layer");
        if (!d) return std::move(d).error();
        auto comp = layerCompression(d->mediaType);
        if (!comp) return std::move(comp).error();
        m.layers.push_back(std::move(*d));
    }
    auto ann = optStringMap(*j, "annotations", "manifest");
    if (!ann) return std::move(ann).error();
    m.annotations = std::move(*ann);
    return m;
}

RunnerResult<ImageConfig> parseConfig(std::string_view text) {
    auto j = parseObject(text, "config");
    if (!j) return std::move(j).error();
    ImageConfig c;
    auto os = optString(*j, "os", "config");
    auto arch = optString(*j, "architecture", "config");
    auto var = optString(*j, "variant", "config");
    if (!os) return std::move(os).error();
    if (!arch) return std::move(arch).error();
    if (!var) return std::move(var).error();
    if (!*os || !*arch) return corrupt("config: 'os' and 'architecture' are required");
    c.platform = Platform{**os, **arch, var->value_or("")};
    auto cf = j->find("config");
    if (cf != j->end() && !cf->is_null()) {
        if (!cf->is_object()) return corrupt("config: 'config' is not an object");
        auto user = optString(*cf, "User", "config");
        auto wd = optString(*cf, "WorkingDir", "config");
        auto sig = optString(*cf, "StopSignal", "config");
        auto env = optStringArray(*cf, "Env", "config");
        auto ep = optStringArray(*cf, "Entrypoint", "config");
        auto cmd = optStringArray(*cf, "Cmd", "config");
        auto labels = optStringMap(*cf, "Labels", "config");
        if (!user) return std::move(user).error();
        if (!wd) return std::move(wd).error();
        if (!sig) return std::move(sig).error();
        if (!env) return std::move(env).error();
        if (!ep) return std::move(ep).error();
        if (!cmd) return std::move(cmd).error();
        if (!labels) return std::move(labels).error();
        if (*user && !(*user)->empty()) c.user = **user;
        if (*wd && !(*wd)->empty()) c.workingDir = **wd;
        c.stopSignal = *sig;
        c.env = std::move(*env);
        c.entrypoint = std::move(*ep);
        c.cmd = std::move(*cmd);
        c.labels = std::move(*labels);
    }
    auto rf = j->find("rootfs");
    if (rf == j->end() || !rf->is_object()) return corrupt("config: 'rootfs' is missing");
    auto type = optString(*rf, "type", "config rootfs");
    if (!type) return std::move(type).error();
    if (!*type || **type != "layers") return corrupt("config: rootfs.type must be 'layers'");
    auto ids = optStringArray(*rf, "diff_ids", "config rootfs");
    if (!ids) return std::move(ids).error();
    for (const auto& id : *ids)
        if (!isValidDigest(id)) return corrupt("config: malformed diff_id '" + id + "'");
    c.diffIds = std::move(*ids);
    return c;
}

RunnerStatus parseLayoutFile(std::string_view text) {
    auto j = parseObject(text, "oci-layout");
    if (!j) return std::move(j).error();
    auto v = optString(*j, "imageLayoutVersion", "oci-layout");
    if (!v) return std::move(v).error();
    if (!*v || (*v)->rfind("1.", 0) != 0)
        return RunnerError(ErrorKind::kUnsupportedMediaType, "oci-layout: unsupported imageLayoutVersion");
    return {};
}

Platform hostPlatform() {
    Platform p;
    p.os = "linux";
    utsname u{};
    ::uname(&u);
    std::string machine = u.machine;
    p.architecture = normaliseArch(machine);
    if (p.architecture == "arm64") p.variant = "v8";
    if (machine.rfind("armv7", 0) == 0) p.variant = "v7";
    if (machine.rfind("armv6", 0) == 0) p.variant = "v6";
    return p;
}

bool platformMatches(const Platform& wanted, const Platform& host) {
    if (wanted.os != host.os || wanted.architecture != host.architecture) return false;
    if (wanted.variant.empty() || host.variant.empty()) return true;
    return wanted.variant == host.variant;
}

RunnerResult<Descriptor> selectManifest(const ImageIndex& index, const Platform& host) {
    std::string seen;
    for (const auto& d : index.manifests) {
        bool isIndex = d.mediaType == kMediaTypeIndex || d.mediaType == kMediaTypeDockerList;
        bool isManifest = d.mediaType == kMediaTypeManifest || d.mediaType == kMediaTypeDockerManifest;
        if (!isIndex && !isManifest) continue;
        if (!d.platform || platformMatches(*d.platform, host)) return d;
        if (!seen.empty()) seen += ", ";
        seen += d.platform->os + "/" + d.platform->architecture +
                (d.platform->variant.empty() ? "" : "/" + d.platform->variant);
    }
    return RunnerError(ErrorKind::kNoMatchingPlatform,
                       "no manifest for " + host.os + "/" + host.architecture +
                           (seen.empty() ? std::string(" (the index lists no manifests)") : " (the index offers " + seen + ")"));
}

ImageMetadata extractMetadata(const ImageManifest& manifest, const Descriptor& entry, const ImageConfig& config) {
    ImageMetadata md;
    md.annotations = config.labels;
    for (const auto& [k, v] : entry.annotations) md.annotations[k] = v;
    for (const auto& [k, v] : manifest.annotations) md.annotations[k] = v;
    auto get = [&](const char* k) {
        auto it = md.annotations.find(std::string("org.opencontainers.image.") + k);
        return it == md.annotations.end() ? std::string() : it->second;
    };
    md.refName = get("ref.name");
    md.name = get("title");
    md.vendor = get("vendor");
    md.version = get("version");
    md.description = get("description");
    md.url = get("url");
    md.source = get("source");
    md.created = get("created");
    // ref.name is "repo:tag" in fully qualified form, or just a tag as skopeo writes it.
    if (!md.refName.empty()) {
        auto slash = md.refName.rfind('/');
        auto colon = md.refName.rfind(':');
        bool hasTag = colon != std::string::npos && (slash == std::string::npos || colon > slash);
        std::string repo = hasTag ? md.refName.substr(0, colon) : md.refName;
        std::string tag = hasTag ? md.refName.substr(colon + 1) : "";
        if (!hasTag && md.refName.find('/') == std::string::npos) {
            tag = md.refName;  // a bare tag
            repo.clear();
        }
        if (md.name.empty()) md.name = repo;
        if (md.version.empty()) md.version = tag;
    }
    return md;
}

}  // namespace berth::oci
