#pragma once
// The fake-runtime unit tests' machine (what survives an agent restart) and agent, over
// the shared agent slice of tests/support. Included by the smm unit tests only.

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "berth/smm/software_modules.h"
#include "berth/testing/fake_container_runtime.h"
#include "berth/testing/smm_agent.h"
#include "berth/testing/support.h"

namespace smmfake {

namespace fs = std::filesystem;
using berth::dm::ArgMap;
using berth::testing::FakeImage;
using berth::testing::FakeOci;

inline const std::string kInstall = "Device.SoftwareModules.InstallDU()";
inline const std::string kEe = "Device.SoftwareModules.ExecEnv.1.";
inline const std::string kDuTable = "Device.SoftwareModules.DeploymentUnit.";
inline const std::string kEuTable = "Device.SoftwareModules.ExecutionUnit.";
inline const std::string kUrlV1 = "http://images.invalid/app-1.0.tar";
inline const std::string kUrlV2 = "http://images.invalid/app-2.0.tar";

using Recorder = berth::testing::SmmRecorder;
using Completion = berth::testing::SmmCompletion;

// What survives an agent restart: the directories, the configuration and the
// fake runtime with its images and containers.
struct Machine {
    berth::testing::TempDir tmp{"smm-fake"};
    fs::path state = tmp / "smm";
    FakeOci oci;
    std::vector<std::pair<std::string, std::string>> config = {
        {"Device.SoftwareModules.ExecEnv.1.Name", "apps"},
        {"Device.SoftwareModules.ExecEnv.1.Enable", "true"},
        {"Device.SoftwareModules.ExecEnv.1.X_BERTH_Runtime", "runc"},
        {"Device.SoftwareModules.ExecEnv.1.X_BERTH_CgroupParent", "/berth-fake/apps"}};
    std::chrono::milliseconds startGrace{0};
    Machine() {
        FakeImage v1;
        v1.title = "app";
        v1.version = "1.0";
        oci.publish(kUrlV1, v1);
        FakeImage v2 = v1;
        v2.version = "2.0";
        oci.publish(kUrlV2, v2);
    }

    // The database files as a crash would leave them, and the runtime's state.
    struct CrashImage {
        fs::path dir;
        FakeOci::Snapshot runtime;
    };
    std::optional<CrashImage> crash;

    std::vector<fs::path> dbFiles() const { return {tmp / "dm.db", state / "smm.db"}; }
    void takeCrashImage() {
        CrashImage c;
        c.dir = tmp / "crash";
        fs::remove_all(c.dir);
        fs::create_directories(c.dir);
        for (const auto& db : dbFiles())
            for (const char* suffix : {"", "-wal", "-journal"}) {
                fs::path f = db.string() + suffix;
                if (fs::exists(f)) fs::copy_file(f, c.dir / f.filename());
            }
        c.runtime = oci.snapshot();
        crash = std::move(c);
    }
    // After the agent was dropped: the disk and the runtime as they were at the crash.
    void restoreCrashImage() {
        REQUIRE(crash);
        for (const auto& db : dbFiles()) {
            for (const char* suffix : {"", "-wal", "-journal", "-shm"}) fs::remove(db.string() + suffix);
            for (const char* suffix : {"", "-wal", "-journal"}) {
                fs::path f = crash->dir / (db.filename().string() + suffix);
                if (fs::exists(f)) fs::copy_file(f, db.string() + suffix);
            }
        }
        oci.restore(crash->runtime);
    }
};

// One agent over a Machine: the shared agent slice (tests/support) on the fake runtime.
class Agent : public berth::testing::SmmAgent {
public:
    explicit Agent(Machine& m, std::function<void(std::string_view)> hook = {}) : SmmAgent(optionsFor(m, std::move(hook))) {}

private:
    static berth::testing::SmmAgentOptions optionsFor(Machine& m, std::function<void(std::string_view)> hook) {
        berth::testing::SmmAgentOptions o;
        o.dbPath = m.tmp / "dm.db";
        o.stateDir = m.state;
        o.config = m.config;
        o.journalHook = std::move(hook);
        o.startGrace = m.startGrace;
        o.openEnvironment = m.oci.opener();
        o.startTimeout = std::chrono::seconds(10);
        o.runTimeout = std::chrono::seconds(10);
        o.waitTimeout = std::chrono::seconds(10);
        return o;
    }
};

inline std::string euid(Agent& a, const std::string& eu) { return a.get(eu + "EUID"); }

// The data model agrees with the fake runtime: one image per DU, a container exactly
// for each Active EU, every DU Installed.
inline void checkConsistent(Agent& a, Machine& m) {
    auto dus = a.rows(kDuTable);
    auto images = m.oci.imageDigests();
    CHECK(images.size() == dus.size());
    for (const auto& du : dus) {
        CHECK(a.get(du + "Status") == "Installed");
        CHECK(std::count(images.begin(), images.end(), "sha256:" + a.get(du + "DUID")) == 1);
    }
    auto ids = m.oci.containerIds();
    std::size_t active = 0;
    for (const auto& eu : a.rows(kEuTable)) {
        bool running = m.oci.container(euid(a, eu)).has_value();
        CHECK(running == (a.get(eu + "Status") == "Active"));
        if (running) ++active;
    }
    CHECK(ids.size() == active);
}


}  // namespace smmfake
