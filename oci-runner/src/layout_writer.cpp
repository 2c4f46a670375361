#include "berth/oci/layout_writer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "berth/oci/digest.h"
#include "fs_util.h"

namespace berth::oci {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct WriteDeleter {
    void operator()(archive* a) const { archive_write_free(a); }
};

void collect(const fs::path& base, const fs::path& rel, std::vector<fs::path>& out) {
    std::vector<fs::path> names;
    for (const auto& e : fs::directory_iterator(base / rel)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
        fs::path r = rel.empty() ? n : rel / n;
        out.push_back(r);
        struct stat st {};
        if (::lstat((base / r).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) collect(base, r, out);
    }
}

RunnerResult<std::string> storeBlobFile(const std::string& tmp, const std::string& layoutDir, std::int64_t* size) {
    std::size_t sz = 0;
    auto digest = sha256File(tmp, &sz);
    if (!digest) return std::move(digest).error();
    BERTH_OCI_TRY(detail::makeDirs(layoutDir + "/blobs/sha256"));
    std::string dest = layoutDir + "/blobs/sha256/" + digestHex(*digest);
    if (::rename(tmp.c_str(), dest.c_str()) != 0) return errnoError("rename", errno, dest);
    *size = static_cast<std::int64_t>(sz);
    return *digest;
}

RunnerStatus gzipFile(const std::string& in, const std::string& out) {
    UniqueFd src(::open(in.c_str(), O_RDONLY | O_CLOEXEC));
    if (!src) return errnoError("open", errno, in);
    gzFile gz = gzopen(out.c_str(), "wb6");
    if (!gz) return RunnerError(ErrorKind::kIoError, "gzopen failed", out);
    std::string buf(1 << 17, '\0');
    for (;;) {
        ssize_t n = ::read(src.get(), buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            gzclose(gz);
            return errnoError("read", errno, in);
        }
        if (n == 0) break;
        if (gzwrite(gz, buf.data(), static_cast<unsigned>(n)) != n) {
            gzclose(gz);
            return RunnerError(ErrorKind::kIoError, "gzwrite failed", out);
        }
    }
    if (gzclose(gz) != Z_OK) return RunnerError(ErrorKind::kIoError, "gzclose failed", out);
    return {};
}

}  // namespace

RunnerStatus tarDirectory(const std::string& dir, const std::string& archivePath, bool gzip) {
    std::vector<fs::path> entries;
    std::error_code ec;
    try {
        collect(dir, {}, entries);
    } catch (const fs::filesystem_error& e) {
        return RunnerError(ErrorKind::kIoError, e.what(), dir);
    }
    std::unique_ptr<archive, WriteDeleter> a(archive_write_new());
    archive_write_set_format_pax_restricted(a.get());
    if (gzip) {
        archive_write_add_filter_gzip(a.get());
        archive_write_set_filter_option(a.get(), "gzip", "timestamp", nullptr);
    }
    if (archive_write_open_filename(a.get(), archivePath.c_str()) != ARCHIVE_OK)
        return RunnerError(ErrorKind::kIoError, archive_error_string(a.get()), archivePath);
    std::string buf(1 << 17, '\0');
    for (const auto& rel : entries) {
        std::string full = dir + "/" + rel.string();
        struct stat st {};
        if (::lstat(full.c_str(), &st) != 0) return errnoError("stat", errno, full);
        std::unique_ptr<archive_entry, void (*)(archive_entry*)> e(archive_entry_new(), archive_entry_free);
        archive_entry_copy_stat(e.get(), &st);
        archive_entry_set_pathname(e.get(), rel.c_str());
        archive_entry_set_uid(e.get(), 0);
        archive_entry_set_gid(e.get(), 0);
        archive_entry_set_mtime(e.get(), 0, 0);
        archive_entry_unset_atime(e.get());
        archive_entry_unset_ctime(e.get());
        archive_entry_unset_birthtime(e.get());
        archive_entry_set_nlink(e.get(), 1);
        if (S_ISLNK(st.st_mode)) {
            std::string target(static_cast<std::size_t>(st.st_size) + 1, '\0');
            ssize_t n = ::readlink(full.c_str(), target.data(), target.size());
            if (n < 0) return errnoError("readlink", errno, full);
            target.resize(static_cast<std::size_t>(n));
            archive_entry_set_symlink(e.get(), target.c_str());
        }
        if (!S_ISREG(st.st_mode)) archive_entry_set_size(e.get(), 0);
        if (archive_write_header(a.get(), e.get()) != ARCHIVE_OK)
            return RunnerError(ErrorKind::kIoError, archive_error_string(a.get()), full);
        if (S_ISREG(st.st_mode)) {
            UniqueFd fd(::open(full.c_str(), O_RDONLY | O_CLOEXEC));
            if (!fd) return errnoError("open", errno, full);
            for (;;) {
                ssize_t n = ::read(fd.get(), buf.data(), buf.size());
                if (n < 0 && errno == EINTR) continue;
                if (n < 0) return errnoError("read", errno, full);
                if (n == 0) break;
                if (archive_write_data(a.get(), buf.data(), static_cast<std::size_t>(n)) < 0)
                    return RunnerError(ErrorKind::kIoError, archive_error_string(a.get()), archivePath);
            }
        }
    }
    if (archive_write_close(a.get()) != ARCHIVE_OK)
        return RunnerError(ErrorKind::kIoError, archive_error_string(a.get()), archivePath);
    return {};
}

RunnerResult<LayerBlob> writeLayerFromTar(const std::string& tarPath, const std::string& layoutDir, bool gzip) {
    LayerBlob b;
    auto diff = sha256File(tarPath);
    if (!diff) return std::move(diff).error();
    b.diffId = *diff;
    BERTH_OCI_TRY(detail::makeDirs(layoutDir + "/blobs/sha256"));
    std::string tmp = layoutDir + "/blobs/.layer-" + detail::randomToken();
    if (gzip) {
        BERTH_OCI_TRY(gzipFile(tarPath, tmp));
    } else {
        std::error_code ec;
        fs::copy_file(tarPath, tmp, ec);
        if (ec) return errnoError("copy", ec.value(), tarPath);
    }
    auto digest = storeBlobFile(tmp, layoutDir, &b.size);
    if (!digest) return std::move(digest).error();
    b.digest = *digest;
    b.mediaType = std::string(gzip ? kMediaTypeLayerGzip : kMediaTypeLayer);
    return b;
}

RunnerResult<LayerBlob> writeLayerFromDirectory(const std::string& dir, const std::string& layoutDir, bool gzip) {
    BERTH_OCI_TRY(detail::makeDirs(layoutDir + "/blobs"));
    std::string tar = layoutDir + "/blobs/.tar-" + detail::randomToken();
    auto st = tarDirectory(dir, tar, false);
    if (!st) {
        ::unlink(tar.c_str());
        return std::move(st).error();
    }
    auto r = writeLayerFromTar(tar, layoutDir, gzip);
    ::unlink(tar.c_str());
    return r;
}

RunnerResult<Descriptor> writeBlob(const std::string& layoutDir, const std::string& mediaType,
                                   const std::string& content) {
    BERTH_OCI_TRY(detail::makeDirs(layoutDir + "/blobs/sha256"));
    Sha256 h;
    h.update(content.data(), content.size());
    Descriptor d;
    d.mediaType = mediaType;
    d.digest = h.finish();
    d.size = static_cast<std::int64_t>(content.size());
    BERTH_OCI_TRY(detail::writeFileAtomic(layoutDir + "/blobs/sha256/" + digestHex(d.digest), content));
    return d;
}

RunnerResult<Descriptor> writeImageLayout(const ImageDefinition& img, const std::string& layoutDir) {
    json cfg;
    cfg["architecture"] = img.platform.architecture;
    cfg["os"] = img.platform.os;
    if (!img.platform.variant.empty()) cfg["variant"] = img.platform.variant;
    json c = json::object();
    if (!img.entrypoint.empty()) c["Entrypoint"] = img.entrypoint;
    if (!img.cmd.empty()) c["Cmd"] = img.cmd;
    if (!img.env.empty()) c["Env"] = img.env;
    if (!img.workingDir.empty()) c["WorkingDir"] = img.workingDir;
    if (!img.user.empty()) c["User"] = img.user;
    cfg["config"] = c;
    json diffIds = json::array();
    for (const auto& l : img.layers) diffIds.push_back(l.diffId);
    cfg["rootfs"] = json{{"type", "layers"}, {"diff_ids", diffIds}};
    auto cfgDesc = writeBlob(layoutDir, std::string(kMediaTypeConfig), cfg.dump());
    if (!cfgDesc) return std::move(cfgDesc).error();

    json man;
    man["schemaVersion"] = 2;
    man["mediaType"] = kMediaTypeManifest;
    man["config"] = json{{"mediaType", kMediaTypeConfig}, {"digest", cfgDesc->digest}, {"size", cfgDesc->size}};
    json layers = json::array();
    for (const auto& l : img.layers) layers.push_back(json{{"mediaType", l.mediaType}, {"digest", l.digest}, {"size", l.size}});
    man["layers"] = layers;
    if (!img.annotations.empty()) man["annotations"] = img.annotations;
    auto manDesc = writeBlob(layoutDir, std::string(kMediaTypeManifest), man.dump());
    if (!manDesc) return std::move(manDesc).error();

    json entry{{"mediaType", kMediaTypeManifest}, {"digest", manDesc->digest}, {"size", manDesc->size}};
    if (img.indexPlatform) {
        json p{{"architecture", img.platform.architecture}, {"os", img.platform.os}};
        if (!img.platform.variant.empty()) p["variant"] = img.platform.variant;
        entry["platform"] = p;
    }
    if (!img.refName.empty()) entry["annotations"] = json{{"org.opencontainers.image.ref.name", img.refName}};
    json index{{"schemaVersion", 2}, {"mediaType", kMediaTypeIndex}, {"manifests", json::array({entry})}};
    BERTH_OCI_TRY(detail::writeFileAtomic(layoutDir + "/index.json", index.dump()));
    BERTH_OCI_TRY(detail::writeFileAtomic(layoutDir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
    return *manDesc;
}

}  // namespace berth::oci
