#pragma once
// The images the benchmark programs build offline: a busybox image whose command idles
// until TERM (the EU the SoftwareModules benchmarks install and start), and busybox
// rootfs directories padded with incompressible bytes (the pull and unpack benchmarks).
//
// Header-only on berth::oci_test_images (link it); errors throw std::runtime_error.

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "berth/oci/layout_writer.h"
#include "oci_test_util.h"

namespace berth::oci::testing {

// sh that stays up until TERM, so Active means running.
inline constexpr const char* kIdleScript = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done";

struct IdleImage {
    std::filesystem::path rootfs;  // the unpacked rootfs it was built from
    std::string archive;           // <wwwDir>/bench.tar
    double archiveKiB = 0;
};

// Builds <workDir>/rootfs (busybox), <workDir>/layer.tar and the image archive
// <wwwDir>/bench.tar: one layer, command kIdleScript, title "bench", vendor
// example.com, version 1.0.0.
inline IdleImage buildIdleImage(const std::filesystem::path& workDir, const std::filesystem::path& wwwDir) {
    IdleImage out;
    out.rootfs = workDir / "rootfs";
    makeBusyboxRootfs(out.rootfs);
    std::string tar = (workDir / "layer.tar").string();
    if (auto st = tarDirectory(out.rootfs.string(), tar, false); !st) throw std::runtime_error(st.error().describe());
    ImageDefinition def;
    def.cmd = {"/bin/sh", "-c", kIdleScript};
    def.annotations = {{"org.opencontainers.image.title", "bench"},
                       {"org.opencontainers.image.vendor", "example.com"},
                       {"org.opencontainers.image.version", "1.0.0"}};
    std::filesystem::create_directories(wwwDir);
    auto img = buildImage(wwwDir, "bench", {tar}, def);
    out.archive = img.archive;
    out.archiveKiB = static_cast<double>(std::filesystem::file_size(img.archive)) / 1024.0;
    return out;
}

// Writes `bytes` from /dev/urandom to `path` (incompressible, so an archive holding it
// really has that size).
inline void writeRandomFile(const std::filesystem::path& path, std::size_t bytes) {
    std::ifstream rnd("/dev/urandom", std::ios::binary);
    std::ofstream f(path, std::ios::binary);
    std::string chunk(1 << 20, '\0');
    for (std::size_t done = 0; done < bytes; done += chunk.size()) {
        rnd.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
        f.write(chunk.data(), static_cast<std::streamsize>(std::min(chunk.size(), bytes - done)));
    }
    if (!f) throw std::runtime_error("cannot write " + path.string());
}

// A rootfs at `root`: busybox (when withBusybox) and `randomBytes` of incompressible
// data under data/, in files of at most `fileBytes`.
inline void makePaddedRootfs(const std::filesystem::path& root, bool withBusybox, std::size_t randomBytes,
                             std::size_t fileBytes = SIZE_MAX, const std::string& fileStem = "blob") {
    std::filesystem::create_directories(root / "data");
    if (withBusybox) makeBusyboxRootfs(root);
    for (std::size_t i = 0; randomBytes > 0; ++i) {
        std::size_t n = std::min(randomBytes, fileBytes);
        writeRandomFile(root / "data" / (fileStem + std::to_string(i) + ".bin"), n);
        randomBytes -= n;
    }
}

}  // namespace berth::oci::testing
