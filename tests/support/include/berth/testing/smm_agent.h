#pragma once
// The in-process agent slice every SoftwareModules test drives: event loop, worker
// pool, dm::Engine over a database file with a configuration applied as factory
// defaults, optionally the Subreaper, and SoftwareModules started until ready. The unit
// tests give it the fake OCI environment (fake_container_runtime.h); the integration
// tests leave the opener empty and get the image store and runc.
//
// Header-only: a test target using it links berth::smm and berth::datamodel.

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/process.h"
#include "berth/core/worker_pool.h"
#include "berth/datamodel/engine.h"
#include "berth/smm/software_modules.h"
#include "berth/testing/support.h"

namespace berth::testing {

// Records DUStateChange! events and every value change, in order.
struct SmmRecorder : dm::ChangeListener {
    std::vector<dm::ArgMap> duEvents;
    std::vector<std::pair<std::string, std::string>> values;
    void onValueChange(std::string_view p, std::string_view v) override { values.emplace_back(p, v); }
    void onObjectCreated(std::string_view, const std::vector<std::pair<std::string_view, std::string>>&) override {}
    void onObjectDeleted(std::string_view) override {}
    void onEvent(std::string_view p, const dm::ArgMap& args) override {
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

struct SmmCompletion {
    bool done = false;
    Result<dm::ArgMap> result = dm::ArgMap{};
};

struct SmmAgentOptions {
    std::filesystem::path dbPath;                             // the data model's database ("": in memory)
    std::filesystem::path stateDir;                           // SmmOptions::stateDir
    std::vector<std::pair<std::string, std::string>> config;  // factory defaults
    std::function<void(std::string_view)> journalHook;
    std::chrono::milliseconds startGrace{0};
    oci::OciEnvironmentOpener openEnvironment;  // empty: the image store and runc/crun
    bool subreaper = false;                     // become the subreaper of the containers
    std::chrono::seconds startTimeout{30};
    std::chrono::seconds runTimeout{60};   // run(): an async command to completion
    std::chrono::seconds waitTimeout{30};  // waitFor()/waitStatus()
};

class SmmAgent {
public:
    explicit SmmAgent(SmmAgentOptions o) : options_(std::move(o)) {
        dm::EngineOptions eo;
        eo.dbPath = options_.dbPath;
        auto e = dm::Engine::open(eo);
        REQUIRE(e);
        engine = std::move(*e);
        REQUIRE(engine->applyFactoryDefaults(options_.config));
        engine->addListener(&rec);
        pool = std::make_unique<WorkerPool>(loop, 2);
        if (options_.subreaper) {
            auto r = Subreaper::create(loop, [this](pid_t pid, ExitStatus st) {
                if (smm) smm->onOrphanReaped(pid, st);
            });
            REQUIRE(r);
            reaper = std::move(*r);
        }
        smm::SmmOptions so;
        so.stateDir = options_.stateDir;
        so.journalHook = options_.journalHook;
        so.startGrace = options_.startGrace;
        so.openEnvironment = options_.openEnvironment;
        auto s = smm::SoftwareModules::create(loop, clock, *engine, *pool, so);
        if (!s) FAIL(s.error().describe());
        smm = std::move(*s);
        bool ready = false;
        REQUIRE(smm->start([&] { ready = true; }));
        REQUIRE(runUntil(
            loop, [&] { return ready; }, options_.startTimeout));
    }
    ~SmmAgent() { drop(); }
    SmmAgent(const SmmAgent&) = delete;
    SmmAgent& operator=(const SmmAgent&) = delete;

    // Ends the agent as a crash would (operations in flight stay in the journal).
    void drop() {
        if (smm) smm->stop();
        smm.reset();
        pool.reset();
        if (engine) engine->removeListener(&rec);
        reaper.reset();
        engine.reset();
        loop.runOnce(std::chrono::milliseconds(0));
    }

    std::shared_ptr<SmmCompletion> operate(const std::string& command, const dm::ArgMap& args, std::string key = "k") {
        auto c = std::make_shared<SmmCompletion>();
        dm::OperateRequest req;
        req.command = command;
        req.commandKey = std::move(key);
        req.inputArgs = args;
        dm::AsyncHooks hooks;
        hooks.createRequest = [](const dm::CommandCall&) -> Result<std::string> {
            return std::string("Device.LocalAgent.Request.1");
        };
        hooks.completed = [c](const dm::CommandCall&, const std::string&, Result<dm::ArgMap> r) {
            c->done = true;
            c->result = std::move(r);
        };
        auto resp = engine->operate(req, dm::Permissions::fullAccess(), hooks);
        REQUIRE_FALSE(resp.error);
        REQUIRE(resp.results.size() == 1);
        const auto& res = resp.results[0];
        if (res.kind == dm::OperationResult::Kind::kFailure) {
            c->done = true;
            c->result = Error(res.err, res.errMsg);
        } else if (res.kind == dm::OperationResult::Kind::kOutputArgs) {
            c->done = true;
            c->result = res.outputArgs;
        }
        return c;
    }
    // Runs a command to completion.
    Result<dm::ArgMap> run(const std::string& command, const dm::ArgMap& args) {
        return run(command, args, options_.runTimeout);
    }
    Result<dm::ArgMap> run(const std::string& command, const dm::ArgMap& args, std::chrono::seconds timeout) {
        auto c = operate(command, args);
        REQUIRE(runUntil(
            loop, [&] { return c->done; }, timeout));
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
    bool waitFor(const std::function<bool()>& pred) { return runUntil(loop, pred, options_.waitTimeout); }
    bool waitFor(const std::function<bool()>& pred, std::chrono::seconds timeout) {
        return runUntil(loop, pred, timeout);
    }
    bool waitStatus(const std::string& eu, const std::string& status) {
        return waitFor([&] { return get(eu + "Status") == status; });
    }
    bool waitStatus(const std::string& eu, const std::string& status, std::chrono::seconds timeout) {
        return waitFor([&] { return get(eu + "Status") == status; }, timeout);
    }
    // Installs and returns (DU path, EU path), both with the trailing dot.
    std::pair<std::string, std::string> install(const dm::ArgMap& args) {
        std::size_t before = rec.duEvents.size();
        auto r = run("Device.SoftwareModules.InstallDU()", args);
        if (!r) FAIL(r.error().describe());
        REQUIRE(rec.duEvents.size() == before + 1);
        const dm::ArgMap& ev = rec.duEvents.back();
        REQUIRE(ev.at("CurrentState") == "Installed");
        return {ev.at("DeploymentUnitRef") + ".", ev.at("ExecutionUnitRefList") + "."};
    }
    // SetRequestedState(Active) and wait for Active.
    void activate(const std::string& eu) {
        auto s = operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}});
        REQUIRE(s->done);
        REQUIRE(s->result);
        REQUIRE(waitStatus(eu, "Active"));
    }

    SystemClock clock;
    EventLoop loop{clock};
    std::unique_ptr<dm::Engine> engine;
    std::unique_ptr<WorkerPool> pool;
    std::unique_ptr<Subreaper> reaper;
    std::unique_ptr<smm::SoftwareModules> smm;
    SmmRecorder rec;

private:
    SmmAgentOptions options_;
};

}  // namespace berth::testing
