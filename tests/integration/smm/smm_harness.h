#pragma once
// The SoftwareModules integration tests' site: one temporary directory, an ExecEnv
// configured the way the factory-defaults file does it, and the agent slice of
// tests/support (berth/testing/smm_agent.h) over it with real runc.
// Images are busybox images built offline and served over loopback HTTP.
//
// Needs root, runc, busybox-static and python3. Every harness has its own cgroup
// parent and runtime root; its destructor removes every container left behind.

#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/process.h"
#include "berth/core/worker_pool.h"
#include "berth/datamodel/engine.h"
#include "berth/oci/container.h"
#include "berth/oci/image_store.h"
#include "berth/smm/software_modules.h"
#include "berth/testing/smm_agent.h"
#include "berth/testing/support.h"
#include "oci_test_util.h"

namespace smmtest {

namespace fs = std::filesystem;
using berth::dm::ArgMap;

inline std::string uniqueSuffix() {
    static int n = 0;
    return std::to_string(::getpid()) + "-" + std::to_string(++n);
}

// The shell every test image runs: records its version and greeting in /out (when
// mounted), then runs $APP_CMD (default: idle until TERM).
inline const char* kAppScript =
    "echo \"$IMAGE_VERSION $GREETING\" > /out/ran 2>/dev/null; "
    "eval \"${APP_CMD:-trap 'exit 0' TERM; while :; do sleep 1 & wait \\$!; done}\"";

// Builds a busybox image archive `<name>-<version>.tar` in dir.
inline std::string buildApp(const fs::path& dir, const std::string& name, const std::string& version,
                            const std::string& vendor = "example.com") {
    std::string tag = name + "-" + version;
    fs::path rootfs = dir / (tag + "-rootfs");
    if (!fs::exists(rootfs)) berth::oci::testing::makeBusyboxRootfs(rootfs);
    fs::create_directories(rootfs / "out");
    std::string tar = (dir / (tag + "-layer.tar")).string();
    REQUIRE(berth::oci::tarDirectory(rootfs.string(), tar, false));
    berth::oci::ImageDefinition def;
    def.cmd = {"/bin/sh", "-c", kAppScript};
    def.env.push_back("IMAGE_VERSION=" + version);
    def.refName = version;
    def.annotations = {{"org.opencontainers.image.title", name},
                       {"org.opencontainers.image.vendor", vendor},
                       {"org.opencontainers.image.version", version},
                       {"org.opencontainers.image.description", "test app " + name}};
    auto img = berth::oci::testing::buildImage(dir, tag, {tar}, def);
    return fs::path(img.archive).filename().string();
}

// Hands a host directory to the mapped root of the n-th ExecEnv (default id map), as
// an operator does for a directory that EUs write through a rw HostObject.
inline std::uint32_t giveToMappedRoot(const fs::path& dir, std::uint32_t eeInstance = 1) {
    std::uint32_t root = berth::oci::defaultIdMapping(eeInstance).hostBase;
    REQUIRE(::chown(dir.c_str(), root, root) == 0);
    return root;
}

struct HttpServer {
    int port = berth::testing::freeTcpPort();
    std::unique_ptr<berth::testing::ProcessGuard> proc;
    explicit HttpServer(const fs::path& dir) {
        proc = berth::testing::ProcessGuard::start({"python3", "-m", "http.server", "--bind", "127.0.0.1",
                                                    std::to_string(port), "--directory", dir.string()},
                                                   (dir.parent_path() / "http.log").string());
        REQUIRE(berth::testing::waitUntil([&] { return berth::testing::tcpPortOpen(port); }));
    }
    std::string url(const std::string& file) const { return "http://127.0.0.1:" + std::to_string(port) + "/" + file; }
};

using Recorder = berth::testing::SmmRecorder;
using Completion = berth::testing::SmmCompletion;

// Directories shared by every harness opened over the same test (restarts).
struct Site {
    berth::testing::TempDir tmp{"smm-it"};
    fs::path images = tmp / "www";
    fs::path host = tmp / "host";
    fs::path state = tmp / "smm";
    std::string cgroupParent = "/berth-smm-it-" + uniqueSuffix();
    std::vector<std::pair<std::string, std::string>> config;
    Site() {
        fs::create_directories(images);
        fs::create_directories(host);
        config = {{"Device.SoftwareModules.ExecEnv.1.Name", "apps"},
                  {"Device.SoftwareModules.ExecEnv.1.Enable", "true"},
                  {"Device.SoftwareModules.ExecEnv.1.X_BERTH_Runtime", "runc"},
                  {"Device.SoftwareModules.ExecEnv.1.X_BERTH_CgroupParent", cgroupParent + "/apps"},
                  {"Device.SoftwareModules.ExecEnv.1.X_BERTH_HostObjectPrefixes", host.string()}};
    }
    fs::path eeState(const std::string& ee = "apps") const { return state / "ee" / ee / "state"; }
    fs::path eeStore(const std::string& ee = "apps") const { return state / "ee" / ee / "store"; }
    // Removes every container left in the ExecEnvs' state directories and the cgroups.
    void cleanupContainers(const std::vector<std::string>& ees = {"apps"}) {
        for (const auto& ee : ees) {
            if (!fs::exists(eeState(ee))) continue;
            auto store = berth::oci::ImageStore::open(eeStore(ee).string());
            if (!store) continue;
            berth::oci::ContainerManagerOptions o;
            o.stateDir = eeState(ee).string();
            o.cgroupParent = cgroupParent + "/" + ee;
            o.runtime = ee == "crunapps" ? berth::oci::RuntimeKind::kCrun : berth::oci::RuntimeKind::kRunc;
            auto m = berth::oci::ContainerManager::open(o, **store);
            if (!m) continue;
            if (auto l = (*m)->list())
                for (const auto& c : *l) (void)(*m)->remove(c.record.id, true);
            (*m)->removeCgroupParent();
        }
        for (const char* ctl : {"memory", "cpu", "cpuacct", "pids", "cpuset", "devices", "freezer", "blkio", "systemd", ""}) {
            std::error_code ec;
            fs::path base = fs::path("/sys/fs/cgroup") / ctl / cgroupParent.substr(1);
            for (const auto& ee : ees) fs::remove(base / ee, ec);
            fs::remove(base, ec);
        }
    }
    ~Site() { cleanupContainers({"apps", "crunapps"}); }
    // Files in the image store's staging directory (must stay empty between operations).
    std::size_t stagingFiles(const std::string& ee = "apps") const {
        fs::path t = eeStore(ee) / "tmp";
        if (!fs::exists(t)) return 0;
        return static_cast<std::size_t>(std::distance(fs::directory_iterator(t), fs::directory_iterator()));
    }
    std::size_t imageRecords(const std::string& ee = "apps") const {
        fs::path t = eeStore(ee) / "images";
        if (!fs::exists(t)) return 0;
        return static_cast<std::size_t>(std::distance(fs::directory_iterator(t), fs::directory_iterator()));
    }
};

// The shared agent slice (tests/support) over a Site, with real runc and the Subreaper.
class Harness : public berth::testing::SmmAgent {
public:
    explicit Harness(Site& site, std::function<void(std::string_view)> hook = {})
        : SmmAgent(optionsFor(site, std::move(hook))) {}

private:
    static berth::testing::SmmAgentOptions optionsFor(Site& site, std::function<void(std::string_view)> hook) {
        berth::testing::SmmAgentOptions o;
        o.dbPath = site.tmp / "dm.db";
        o.stateDir = site.state;
        o.config = site.config;
        o.journalHook = std::move(hook);
        o.startGrace = std::chrono::milliseconds(300);
        o.subreaper = true;
        o.startTimeout = std::chrono::seconds(60);
        return o;
    }
};

}  // namespace smmtest
