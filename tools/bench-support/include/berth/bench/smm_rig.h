#pragma once
// SoftwareModules in-process, as berthd runs it but without the USP layer: a data-model
// Engine on its own SQLite database, a worker pool, a subreaper and SoftwareModules
// started on one event loop, driven by Operate() calls on the engine and timed. What the
// in-process SoftwareModules benchmarks (berth-smm-bench, berth-sec-bench) share.
//
// Header-only; users link berth::bench_support, berth::smm and berth::datamodel. Errors
// fail() (berth/bench/work_dir.h). Threading: one thread, the rig runs its loop itself.

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "berth/bench/work_dir.h"
#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/process.h"
#include "berth/core/worker_pool.h"
#include "berth/datamodel/engine.h"
#include "berth/smm/software_modules.h"

namespace berth::bench {

class InProcessSmm {
public:
    inline static const std::string kExecEnv = "Device.SoftwareModules.ExecEnv.1.";
    inline static const std::string kDu = "Device.SoftwareModules.DeploymentUnit.1.";
    inline static const std::string kEu = "Device.SoftwareModules.ExecutionUnit.1.";

    // The engine's database is <dir>/dm.db, SoftwareModules' state <dir>/smm. The
    // factory defaults configure ExecEnv.1 (Name, Enable, X_BERTH_CgroupParent, ...).
    // Returns once SoftwareModules has started (at most 30 s).
    InProcessSmm(const std::filesystem::path& dir, const std::vector<std::pair<std::string, std::string>>& defaults) {
        std::filesystem::create_directories(dir);
        dm::EngineOptions eo;
        eo.dbPath = dir / "dm.db";
        engine_ = must(dm::Engine::open(eo), "engine");
        if (!engine_->applyFactoryDefaults(defaults)) fail("factory defaults");
        engine_->addListener(&watch_);
        pool_ = std::make_unique<WorkerPool>(loop_, 2);
        reaper_ = must(Subreaper::create(loop_, [](pid_t, ExitStatus) {}), "subreaper");
        smm::SmmOptions opts;
        opts.stateDir = dir / "smm";
        smm_ = must(smm::SoftwareModules::create(loop_, clock_, *engine_, *pool_, opts), "SoftwareModules");
        bool ready = false;
        if (!smm_->start([&] { ready = true; }) || !runUntil([&] { return ready; }, std::chrono::seconds(30)))
            fail("SoftwareModules did not start");
        hooks_.createRequest = [](const dm::CommandCall&) -> Result<std::string> { return std::string("r"); };
    }
    ~InProcessSmm() {
        if (smm_) smm_->stop();
        smm_.reset();
        engine_->removeListener(&watch_);
    }
    InProcessSmm(const InProcessSmm&) = delete;
    InProcessSmm& operator=(const InProcessSmm&) = delete;

    // InstallDU() with these arguments (URL, HostObject.{i}.*, ...) until DUStateChange!;
    // milliseconds from the call to the event.
    double install(dm::ArgMap args) {
        watch_.duEvent = false;
        auto t0 = std::chrono::steady_clock::now();
        engine_->operate({"Device.SoftwareModules.InstallDU()", "k", std::move(args)}, dm::Permissions::fullAccess(),
                         hooks_);
        if (!runUntil([&] { return watch_.duEvent; }, std::chrono::seconds(60)))
            fail("no DUStateChange! for InstallDU");
        return millisSince(t0);
    }
    // SetRequestedState(Active) on `eu` until its Status is Active; milliseconds.
    double activate(const std::string& eu = kEu) {
        auto t0 = std::chrono::steady_clock::now();
        engine_->operate({eu + "SetRequestedState()", "k", {{"RequestedState", "Active"}}},
                         dm::Permissions::fullAccess(), hooks_);
        if (!runUntil([&] { return value(eu + "Status") == "Active"; }, std::chrono::seconds(60)))
            fail("activate: " + value(eu + "ExecutionFaultMessage"));
        return millisSince(t0);
    }
    // Uninstall() of `du`, waiting (at most 60 s) for its DUStateChange!.
    void uninstall(const std::string& du = kDu) {
        watch_.duEvent = false;
        engine_->operate({du + "Uninstall()", "k", {}}, dm::Permissions::fullAccess(), hooks_);
        (void)runUntil([&] { return watch_.duEvent; }, std::chrono::seconds(60));
    }

    std::string value(const std::string& path) {
        auto v = engine_->getValue(path);
        return v ? *v : std::string();
    }
    dm::Engine& engine() { return *engine_; }
    EventLoop& loop() { return loop_; }

private:
    struct Watch : dm::ChangeListener {
        bool duEvent = false;
        void onValueChange(std::string_view, std::string_view) override {}
        void onObjectCreated(std::string_view, const std::vector<std::pair<std::string_view, std::string>>&) override {}
        void onObjectDeleted(std::string_view) override {}
        void onEvent(std::string_view p, const dm::ArgMap&) override {
            if (p == "Device.SoftwareModules.DUStateChange!") duEvent = true;
        }
    };

    static double millisSince(std::chrono::steady_clock::time_point t0) {
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
    bool runUntil(const std::function<bool()>& pred, std::chrono::seconds timeout) {
        auto end = std::chrono::steady_clock::now() + timeout;
        while (!pred() && std::chrono::steady_clock::now() < end)
            loop_.runOnce(std::chrono::milliseconds(1));
        return pred();
    }

    SystemClock clock_;
    EventLoop loop_{clock_};
    Watch watch_;
    std::unique_ptr<dm::Engine> engine_;
    std::unique_ptr<WorkerPool> pool_;
    std::unique_ptr<Subreaper> reaper_;
    std::unique_ptr<smm::SoftwareModules> smm_;
    dm::AsyncHooks hooks_;
};

}  // namespace berth::bench
