#pragma once
// An in-process agent slice for the SoftwareModules tests: loop, worker pool,
// engine with a database, Subreaper and SoftwareModules over one temporary
// directory, with an ExecEnv configured the way the factory-defaults file does it.
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

struct Recorder : berth::dm::ChangeListener {
    std::vector<ArgMap> duEvents;
    std::vector<std::pair<std::string, std::string>> values;
    void onValueChange(std::string_view p, std::string_view v) override { values.emplace_back(p, v); }
    void onObjectCreated(std::string_view, const std::vector<std::pair<std::string_view, std::string>>&) override {}
    void onObjectDeleted(std::string_view) override {}
    void onEvent(std::string_view p, const ArgMap& args) override {
        if (p == "Device.SoftwareModules.DUStateChange!") duEvents.push_back(args);
    }
    // Status values an EU went through, in order.
    std::vector<std::string> statusesOf(const std::string& euPath) const {
        std::vector<std::string> out;
        for (const auto& [p, v] : values)
            if (p == euPath + "Status") out.push_back(v);
        return out;
    }
};

struct Completion {
    bool done = false;
    berth::Result<ArgMap> result = ArgMap{};
};

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

class Harness {
public:
    explicit Harness(Site& site, std::function<void(std::string_view)> hook = {}) : site_(site) {
        berth::dm::EngineOptions eo;
        eo.dbPath = site.tmp / "dm.db";
        auto e = berth::dm::Engine::open(eo);
        REQUIRE(e);
        engine = std::move(*e);
        REQUIRE(engine->applyFactoryDefaults(site.config));
        engine->addListener(&rec);
        pool = std::make_unique<berth::WorkerPool>(loop, 2);
        auto r = berth::Subreaper::create(loop, [this](pid_t pid, berth::ExitStatus st) {
            if (smm) smm->onOrphanReaped(pid, st);
        });
        REQUIRE(r);
        reaper = std::move(*r);
        berth::smm::SmmOptions o;
        o.stateDir = site.state;
        o.journalHook = std::move(hook);
        o.startGrace = std::chrono::milliseconds(300);
        auto s = berth::smm::SoftwareModules::create(loop, clock, *engine, *pool, o);
        if (!s) FAIL(s.error().describe());
        smm = std::move(*s);
        bool ready = false;
        REQUIRE(smm->start([&] { ready = true; }));
        REQUIRE(berth::testing::runUntil(loop, [&] { return ready; }, std::chrono::seconds(60)));
    }
    ~Harness() {
        if (smm) smm->stop();
        smm.reset();
        pool.reset();
        if (engine) engine->removeListener(&rec);
        reaper.reset();
        engine.reset();
        loop.runOnce(std::chrono::milliseconds(0));
    }

    std::shared_ptr<Completion> operate(const std::string& command, const ArgMap& args, std::string key = "k") {
        auto c = std::make_shared<Completion>();
        berth::dm::OperateRequest req;
        req.command = command;
        req.commandKey = std::move(key);
        req.inputArgs = args;
        berth::dm::AsyncHooks hooks;
        hooks.createRequest = [](const berth::dm::CommandCall&) -> berth::Result<std::string> {
            return std::string("Device.LocalAgent.Request.1");
        };
        hooks.completed = [c](const berth::dm::CommandCall&, const std::string&, berth::Result<ArgMap> r) {
            c->done = true;
            c->result = std::move(r);
        };
        auto resp = engine->operate(req, berth::dm::Permissions::fullAccess(), hooks);
        REQUIRE_FALSE(resp.error);
        REQUIRE(resp.results.size() == 1);
        const auto& res = resp.results[0];
        if (res.kind == berth::dm::OperationResult::Kind::kFailure) {
            c->done = true;
            c->result = berth::Error(res.err, res.errMsg);
        } else if (res.kind == berth::dm::OperationResult::Kind::kOutputArgs) {
            c->done = true;
            c->result = res.outputArgs;
        }
        return c;
    }
    // Runs an async command to completion.
    berth::Result<ArgMap> run(const std::string& command, const ArgMap& args, std::chrono::seconds timeout = std::chrono::seconds(60)) {
        auto c = operate(command, args);
        REQUIRE(berth::testing::runUntil(loop, [&] { return c->done; }, timeout));
        return c->result;
    }
    std::string get(const std::string& path) {
        auto v = engine->getValue(path);
        return v ? *v : std::string("<missing>");
    }
    std::vector<std::string> rows(const std::string& table) {
        auto r = engine->resolveObjects(table);
        return r ? *r : std::vector<std::string>{};
    }
    bool waitFor(const std::function<bool()>& pred, std::chrono::seconds timeout = std::chrono::seconds(30)) {
        return berth::testing::runUntil(loop, pred, timeout);
    }
    bool waitStatus(const std::string& eu, const std::string& status, std::chrono::seconds timeout = std::chrono::seconds(30)) {
        return waitFor([&] { return get(eu + "Status") == status; }, timeout);
    }
    // Installs and returns (DU path, EU path).
    std::pair<std::string, std::string> install(const ArgMap& args) {
        std::size_t before = rec.duEvents.size();
        auto r = run("Device.SoftwareModules.InstallDU()", args);
        if (!r) FAIL(r.error().describe());
        REQUIRE(rec.duEvents.size() == before + 1);
        const ArgMap& ev = rec.duEvents.back();
        REQUIRE(ev.at("CurrentState") == "Installed");
        std::string du = ev.at("DeploymentUnitRef") + ".";
        std::string eu = ev.at("ExecutionUnitRefList") + ".";
        return {du, eu};
    }

    berth::SystemClock clock;
    berth::EventLoop loop{clock};
    std::unique_ptr<berth::dm::Engine> engine;
    std::unique_ptr<berth::WorkerPool> pool;
    std::unique_ptr<berth::Subreaper> reaper;
    std::unique_ptr<berth::smm::SoftwareModules> smm;
    Recorder rec;

private:
    Site& site_;
};

}  // namespace smmtest
