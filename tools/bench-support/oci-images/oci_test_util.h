#pragma once
// Helpers for the OCI runner tests: raw tar construction (so tests can write the
// hostile entries no normal tool would) and image archives built offline.

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "berth/oci/layout_writer.h"

namespace berth::oci::testing {

class TarBuilder {
public:
    explicit TarBuilder(const std::string& path, bool gzip = false) : a_(archive_write_new()) {
        archive_write_set_format_pax_restricted(a_);
        if (gzip) archive_write_add_filter_gzip(a_);
        if (archive_write_open_filename(a_, path.c_str()) != ARCHIVE_OK) throw std::runtime_error("tar open");
    }
    ~TarBuilder() { close(); }
    TarBuilder(const TarBuilder&) = delete;
    TarBuilder& operator=(const TarBuilder&) = delete;

    TarBuilder& file(const std::string& path, const std::string& content, int mode = 0644) {
        auto* e = entry(path, AE_IFREG, mode);
        archive_entry_set_size(e, static_cast<la_int64_t>(content.size()));
        write(e, content);
        return *this;
    }
    // A file whose declared size is `size`, filled with zeros (decompression bombs).
    TarBuilder& zeros(const std::string& path, std::size_t size) {
        auto* e = entry(path, AE_IFREG, 0644);
        archive_entry_set_size(e, static_cast<la_int64_t>(size));
        if (archive_write_header(a_, e) != ARCHIVE_OK) throw std::runtime_error("tar header");
        std::string chunk(1 << 20, '\0');
        for (std::size_t done = 0; done < size; done += chunk.size())
            archive_write_data(a_, chunk.data(), std::min(chunk.size(), size - done));
        archive_entry_free(e);
        return *this;
    }
    TarBuilder& dir(const std::string& path, int mode = 0755) {
        write(entry(path, AE_IFDIR, mode), "");
        return *this;
    }
    TarBuilder& symlink(const std::string& path, const std::string& target) {
        auto* e = entry(path, AE_IFLNK, 0777);
        archive_entry_set_symlink(e, target.c_str());
        write(e, "");
        return *this;
    }
    TarBuilder& hardlink(const std::string& path, const std::string& target) {
        auto* e = entry(path, AE_IFREG, 0644);
        archive_entry_set_hardlink(e, target.c_str());
        archive_entry_set_size(e, 0);
        write(e, "");
        return *this;
    }
    TarBuilder& device(const std::string& path, bool block = false) {
        auto* e = entry(path, block ? AE_IFBLK : AE_IFCHR, 0600);
        archive_entry_set_rdev(e, makedev(1, 3));
        write(e, "");
        return *this;
    }
    // Owner of the entries written after this call.
    TarBuilder& owner(la_int64_t uid, la_int64_t gid) {
        uid_ = uid;
        gid_ = gid;
        return *this;
    }
    void close() {
        if (a_) {
            archive_write_close(a_);
            archive_write_free(a_);
            a_ = nullptr;
        }
    }

private:
    archive_entry* entry(const std::string& path, unsigned type, int mode) {
        auto* e = archive_entry_new();
        archive_entry_set_pathname(e, path.c_str());
        archive_entry_set_filetype(e, type);
        archive_entry_set_perm(e, static_cast<mode_t>(mode));
        archive_entry_set_mtime(e, 0, 0);
        archive_entry_set_uid(e, uid_);
        archive_entry_set_gid(e, gid_);
        return e;
    }
    void write(archive_entry* e, const std::string& content) {
        if (archive_write_header(a_, e) != ARCHIVE_OK)
            throw std::runtime_error(std::string("tar header: ") + archive_error_string(a_));
        if (!content.empty()) archive_write_data(a_, content.data(), content.size());
        archive_entry_free(e);
    }
    archive* a_;
    la_int64_t uid_ = 0;
    la_int64_t gid_ = 0;
};

struct BuiltImage {
    std::string archive;
    std::string layoutDir;
    Descriptor manifest;
    std::vector<LayerBlob> layers;
};

// Builds an image archive from layer tars (in order). `tamper` may change the
// layout directory before it is tarred.
inline BuiltImage buildImage(const std::filesystem::path& workDir, const std::string& name,
                             const std::vector<std::string>& layerTars, ImageDefinition def = {},
                             const std::function<void(BuiltImage&)>& tamper = {}, bool gzipArchive = false) {
    BuiltImage img;
    img.layoutDir = (workDir / (name + ".layout")).string();
    std::filesystem::create_directories(img.layoutDir);
    for (const auto& t : layerTars) {
        auto b = writeLayerFromTar(t, img.layoutDir, true);
        if (!b) throw std::runtime_error(b.error().describe());
        img.layers.push_back(*b);
    }
    def.layers = img.layers;
    auto m = writeImageLayout(def, img.layoutDir);
    if (!m) throw std::runtime_error(m.error().describe());
    img.manifest = *m;
    if (tamper) tamper(img);
    img.archive = (workDir / (name + (gzipArchive ? ".tar.gz" : ".tar"))).string();
    auto st = tarDirectory(img.layoutDir, img.archive, gzipArchive);
    if (!st) throw std::runtime_error(st.error().describe());
    return img;
}

// A busybox rootfs (the static binary and a few applet links) for images.
inline void makeBusyboxRootfs(const std::filesystem::path& root) {
    namespace fs = std::filesystem;
    fs::create_directories(root / "bin");
    for (const char* d : {"etc", "tmp", "proc", "sys", "dev", "data", "var"}) fs::create_directories(root / d);
    fs::copy_file("/bin/busybox", root / "bin/busybox", fs::copy_options::overwrite_existing);
    for (const char* app : {"sh", "cat", "echo", "sleep", "ls", "dd", "head", "true", "id", "env", "touch", "mkdir", "unshare", "grep"})
        fs::create_symlink("busybox", root / "bin" / app);
    std::FILE* f = std::fopen((root / "etc/passwd").c_str(), "w");
    std::fputs("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n", f);
    std::fclose(f);
    f = std::fopen((root / "etc/group").c_str(), "w");
    std::fputs("root:x:0:\nnogroup:x:65534:\n", f);
    std::fclose(f);
}

}  // namespace berth::oci::testing
