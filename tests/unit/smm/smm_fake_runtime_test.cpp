// SoftwareModules' state machines on the fake OCI seam (tests/support): DU and EU
// transitions, faults, and crash recovery at every journal step, without root or runc.
//
// A crash is simulated in process: at the chosen journal step the hook copies the two
// databases (as SIGKILL would leave them: what was committed) and the fake runtime's
// state; the agent is then dropped, the copies put back, and a new agent starts over
// them and the runtime as it was.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/worker_pool.h"
#include "berth/datamodel/engine.h"
#include "berth/smm/journal.h"
#include "berth/smm/software_modules.h"
#include "berth/testing/fake_container_runtime.h"
#include "berth/testing/smm_agent.h"
#include "smm_fake_agent.h"
#include "berth/testing/support.h"

namespace fs = std::filesystem;
using berth::ErrorCode;
using berth::dm::ArgMap;
using berth::oci::ErrorKind;
using berth::oci::RunnerError;
using berth::testing::FakeImage;
using berth::testing::FakeOci;
using berth::testing::FakeOp;

using namespace smmfake;


TEST_CASE("InstallDU on the fake runtime makes the DU and EU rows from the image and reports Installed",
          "[smm][fake]") {
    Machine m;
    Agent a(m);
    CHECK(a.get(kEe + "Status") == "Up");
    auto r = a.run(kInstall, {{"URL", kUrlV1}, {"ExecutionEnvRef", "Device.SoftwareModules.ExecEnv.1"}});
    if (!r) FAIL(r.error().describe());
    CHECK(r->at("Version") == "1.0");
    REQUIRE(a.rec.duEvents.size() == 1);
    const ArgMap& ev = a.rec.duEvents[0];
    CHECK(ev.at("CurrentState") == "Installed");
    CHECK(ev.at("OperationPerformed") == "Install");
    CHECK(ev.at("Fault.FaultCode") == "0");
    const std::string du = ev.at("DeploymentUnitRef") + ".";
    const std::string eu = ev.at("ExecutionUnitRefList") + ".";
    CHECK(a.get(du + "Status") == "Installed");
    CHECK(a.get(du + "Name") == "app");
    CHECK(a.get(du + "Vendor") == "example.com");
    CHECK(a.get(du + "Version") == "1.0");
    CHECK(a.get(du + "URL") == kUrlV1);
    CHECK("sha256:" + a.get(du + "DUID") == berth::testing::fakeDigestOf(kUrlV1));
    CHECK(a.get(eu + "Status") == "Idle");
    CHECK(a.get(eu + "ExecutionFaultCode") == "NoFault");
    CHECK(m.oci.imageDigests().size() == 1);
    CHECK(m.oci.containerIds().empty());
}

TEST_CASE("An EU goes Idle, Starting, Active, Stopping, Idle on request, with a container only while Active",
          "[smm][fake]") {
    Machine m;
    Agent a(m);
    auto [du, eu] = a.install({{"URL", kUrlV1}, {"EnvVariable.1.Key", "GREETING"}, {"EnvVariable.1.Value", "hi"}});
    a.activate(eu);
    auto c = m.oci.container(euid(a, eu));
    REQUIRE(c);
    CHECK(c->status == "running");
    CHECK(c->pid >= FakeOci::kFirstPid);
    CHECK(std::count(c->settings.extraEnv.begin(), c->settings.extraEnv.end(), "GREETING=hi") == 1);
    CHECK(a.get(kEe + "ActiveExecutionUnits") == eu.substr(0, eu.size() - 1));
    CHECK(std::stoll(a.get(eu + "MemoryInUse")) == 1024);  // the fake's 1 MiB

    REQUIRE(a.operate(eu + "SetRequestedState()", {{"RequestedState", "Idle"}})->result);
    REQUIRE(a.waitStatus(eu, "Idle"));
    auto st = a.rec.statusesOf(eu);
    CHECK(st == std::vector<std::string>{"Starting", "Active", "Stopping", "Idle"});
    CHECK(a.get(eu + "ExecutionFaultCode") == "NoFault");
    CHECK_FALSE(m.oci.container(euid(a, eu)));
    // Active again, and an Active request while Active changes nothing.
    a.activate(eu);
    REQUIRE(a.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    CHECK(m.oci.calls(FakeOp::kRun) == 2);
}

TEST_CASE("A request while the runtime is still starting the EU is deferred and applied when the start ends",
          "[smm][fake]") {
    Machine m;
    Agent a(m);
    auto [du, eu] = a.install({{"URL", kUrlV1}});
    m.oci.hold(FakeOp::kRun);
    REQUIRE(a.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(a.waitFor([&] { return m.oci.waiting(FakeOp::kRun) == 1; }));
    CHECK(a.get(eu + "Status") == "Starting");
    REQUIRE(a.operate(eu + "SetRequestedState()", {{"RequestedState", "Idle"}})->result);
    CHECK(a.get(eu + "Status") == "Starting");
    m.oci.release(FakeOp::kRun);
    REQUIRE(a.waitStatus(eu, "Idle"));
    CHECK(a.rec.statusesOf(eu) == std::vector<std::string>{"Starting", "Active", "Stopping", "Idle"});
    CHECK(m.oci.containerIds().empty());
}

TEST_CASE("A start the runtime refuses leaves the EU Idle with FailureOnStart and the runtime's message",
          "[smm][fake]") {
    Machine m;
    Agent a(m);
    auto [du, eu] = a.install({{"URL", kUrlV1}});
    m.oci.failNext(FakeOp::kRun, RunnerError(ErrorKind::kRuntimeFailed, "runc create: permission denied"));
    REQUIRE(a.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(a.waitFor([&] { return a.get(eu + "ExecutionFaultCode") == "FailureOnStart"; }));
    REQUIRE(a.waitStatus(eu, "Idle"));
    CHECK(a.get(eu + "ExecutionFaultMessage").find("permission denied") != std::string::npos);
    CHECK(m.oci.containerIds().empty());
    // The next start works and clears the fault.
    a.activate(eu);
    CHECK(a.get(eu + "ExecutionFaultCode") == "NoFault");
}

TEST_CASE("A container left by an interrupted stop is removed and the start retried", "[smm][fake]") {
    Machine m;
    Agent a(m);
    auto [du, eu] = a.install({{"URL", kUrlV1}});
    m.oci.failNext(FakeOp::kRun, RunnerError(ErrorKind::kConflict, "container exists"));
    a.activate(eu);
    CHECK(m.oci.calls(FakeOp::kRun) == 2);
    CHECK(m.oci.calls(FakeOp::kRemove) >= 1);
}

TEST_CASE("A stop the runtime refuses keeps the EU Active with FailureOnStop", "[smm][fake]") {
    Machine m;
    Agent a(m);
    auto [du, eu] = a.install({{"URL", kUrlV1}});
    a.activate(eu);
    m.oci.failNext(FakeOp::kStop, RunnerError(ErrorKind::kTimeout, "runc kill timed out"));
    REQUIRE(a.operate(eu + "SetRequestedState()", {{"RequestedState", "Idle"}})->result);
    REQUIRE(a.waitFor([&] { return a.get(eu + "ExecutionFaultCode") == "FailureOnStop"; }));
    CHECK(a.get(eu + "Status") == "Active");
    CHECK(a.get(eu + "ExecutionFaultMessage").find("timed out") != std::string::npos);
    CHECK(m.oci.container(euid(a, eu)));
}

TEST_CASE("Container exits: within the start grace FailureOnStart, later FailureWhileActive, an OOM kill says OOM, "
          "exit 0 is no fault",
          "[smm][fake]") {
    Machine m;
    SECTION("within the start grace") {
        m.startGrace = std::chrono::hours(1);
        Agent a(m);
        auto [du, eu] = a.install({{"URL", kUrlV1}});
        a.activate(eu);
        m.oci.exit(euid(a, eu), 1);
        REQUIRE(a.waitFor([&] { return a.get(eu + "ExecutionFaultCode") == "FailureOnStart"; }));
        REQUIRE(a.waitStatus(eu, "Idle"));
        CHECK(a.get(eu + "X_BERTH_ExitStatus") == "exit 1");
    }
    SECTION("after the start grace") {
        Agent a(m);
        auto [du, eu] = a.install({{"URL", kUrlV1}});
        a.activate(eu);
        m.oci.exit(euid(a, eu), 3);
        REQUIRE(a.waitFor([&] { return a.get(eu + "ExecutionFaultCode") == "FailureWhileActive"; }));
        REQUIRE(a.waitStatus(eu, "Idle"));
        CHECK(a.get(eu + "ExecutionFaultMessage").find("exit 3") != std::string::npos);
        REQUIRE(a.waitFor([&] { return m.oci.containerIds().empty(); }));
    }
    SECTION("an OOM kill") {
        m.startGrace = std::chrono::hours(1);
        Agent a(m);
        auto [du, eu] = a.install({{"URL", kUrlV1}, {"Resources.AllocatedMemory", "32768"}});
        a.activate(eu);
        m.oci.exit(euid(a, eu), 0, true);
        REQUIRE(a.waitFor([&] { return a.get(eu + "ExecutionFaultCode") == "FailureWhileActive"; }));
        REQUIRE(a.waitStatus(eu, "Idle"));
        CHECK(a.get(eu + "ExecutionFaultMessage").find("OOM") != std::string::npos);
        CHECK(a.get(eu + "ExecutionFaultMessage").find("32768 KiB") != std::string::npos);
    }
    SECTION("a clean exit") {
        Agent a(m);
        auto [du, eu] = a.install({{"URL", kUrlV1}});
        a.activate(eu);
        m.oci.exit(euid(a, eu), 0);
        REQUIRE(a.waitStatus(eu, "Idle"));
        CHECK(a.get(eu + "ExecutionFaultCode") == "NoFault");
    }
}

TEST_CASE("AutoRestart restarts a crashing EU through Restarting and gives up after MaximumRetryCount",
          "[smm][fake]") {
    Machine m;
    Agent a(m);
    auto [du, eu] = a.install({{"URL", kUrlV1},
                               {"AutoRestart.Enable", "true"},
                               {"AutoRestart.RetryMinimumWaitInterval", "0"},
                               {"AutoRestart.RetryMaximumWaitInterval", "0"},
                               {"AutoRestart.RetryIntervalMultiplier", "2000"},
                               {"AutoRestart.MaximumRetryCount", "2"}});
    a.activate(eu);
    for (int i = 0; i < 3; ++i) {
        REQUIRE(a.waitFor([&] { return m.oci.container(euid(a, eu)) && a.get(eu + "Status") == "Active"; }));
        m.oci.exit(euid(a, eu), 3);
        REQUIRE(a.waitFor([&] { return a.get(eu + "Status") != "Active"; }));
    }
    REQUIRE(a.waitFor([&] { return a.get(eu + "ExecutionFaultMessage").find("gave up") != std::string::npos; }));
    REQUIRE(a.waitStatus(eu, "Idle"));
    CHECK(a.get(eu + "AutoRestart.RetryCount") == "2");
    CHECK(a.get(eu + "ExecutionFaultCode") == "FailureWhileActive");
    auto st = a.rec.statusesOf(eu);
    CHECK(std::count(st.begin(), st.end(), "Restarting") == 2);
    CHECK(std::count(st.begin(), st.end(), "Active") == 3);
    CHECK(m.oci.calls(FakeOp::kRun) == 3);
}

TEST_CASE("A failed pull reports its TR-181 fault code in the result and DUStateChange! and leaves nothing behind",
          "[smm][fake]") {
    struct Case {
        ErrorKind kind;
        ErrorCode code;
    };
    auto c = GENERATE(Case{ErrorKind::kNotFound, ErrorCode::kServerUnreachable},
                      Case{ErrorKind::kServerUnreachable, ErrorCode::kServerUnreachable},
                      Case{ErrorKind::kTlsFailure, ErrorCode::kServerInsecure},
                      Case{ErrorKind::kAuthFailed, ErrorCode::kRequestDenied},
                      Case{ErrorKind::kDigestMismatch, ErrorCode::kCorruptData},
                      Case{ErrorKind::kUnsafeArchive, ErrorCode::kCorruptData},
                      Case{ErrorKind::kNoMatchingPlatform, ErrorCode::kDuExecEnvMismatch},
                      Case{ErrorKind::kNoSpace, ErrorCode::kSystemResourcesExceeded});
    Machine m;
    Agent a(m);
    m.oci.failNext(FakeOp::kPull, RunnerError(c.kind, "scripted failure"));
    auto r = a.run(kInstall, {{"URL", kUrlV1}});
    INFO(berth::oci::errorKindName(c.kind));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == c.code);
    REQUIRE(a.rec.duEvents.size() == 1);
    CHECK(a.rec.duEvents[0].at("CurrentState") == "Failed");
    CHECK(a.rec.duEvents[0].at("Fault.FaultCode") == std::to_string(static_cast<unsigned>(c.code)));
    CHECK(a.rows(kDuTable).empty());
    CHECK(a.rows(kEuTable).empty());
    CHECK(m.oci.imageDigests().empty());
    // The same install then works.
    a.install({{"URL", kUrlV1}});
}

TEST_CASE("Bad InstallDU arguments are refused with their codes before anything is pulled or journaled",
          "[smm][fake]") {
    Machine m;
    Agent a(m);
    bool reachesSmm = true;  // false: the engine's type check refuses it first (no DUStateChange!)
    SECTION("an unknown ExecutionEnvRef -> 7223") {
        auto r = a.run(kInstall, {{"URL", kUrlV1}, {"ExecutionEnvRef", "Device.SoftwareModules.ExecEnv.9"}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kUnknownExecEnv);
    }
    SECTION("credentials in the URL -> 7004") {
        auto r = a.run(kInstall, {{"URL", "http://user:pw@images.invalid/app-1.0.tar"}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidArguments);
    }
    SECTION("port mappings -> 7004") {
        auto r = a.run(kInstall, {{"URL", kUrlV1}, {"NetworkConfig.PortMapping.1.ExternalPort", "8080"}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidArguments);
    }
    SECTION("a URL of another scheme -> 7004") {
        auto r = a.run(kInstall, {{"URL", "ftp://images.invalid/app.tar"}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidArguments);
    }
    SECTION("a file: URL where the ExecEnv names no directories -> 7004") {
        auto r = a.run(kInstall, {{"URL", "file:///tmp/app.tar"}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidArguments);
        CHECK(r.error().message.find("X_BERTH_FileURLDirectories") != std::string::npos);
    }
    SECTION("a malformed UUID -> 7027 (the argument's type)") {
        auto r = a.run(kInstall, {{"URL", kUrlV1}, {"UUID", "not-a-uuid"}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidCommandArguments);
        reachesSmm = false;
    }
    SECTION("Privileged -> 7002") {
        auto r = a.run(kInstall, {{"URL", kUrlV1}, {"Privileged", "true"}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kRequestDenied);
    }
    SECTION("a Signature -> 7036") {
        auto r = a.run(kInstall, {{"URL", kUrlV1}, {"Signature", "abc"}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kBadSignature);
    }
    SECTION("RequiredRoles -> 7032") {
        auto r = a.run(kInstall, {{"URL", kUrlV1}, {"RequiredRoles", "Device.LocalAgent.ControllerTrust.Role.1"}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kUnavailableRole);
    }
    SECTION("an EnvVariable key holding '=' -> 7004") {
        auto r = a.run(kInstall, {{"URL", kUrlV1}, {"EnvVariable.1.Key", "A=B"}, {"EnvVariable.1.Value", "x"}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidArguments);
        CHECK(r.error().message.find("EnvVariable.1.Key") != std::string::npos);
    }
    SECTION("a memory limit below 4096 KiB -> 7004") {
        auto r = a.run(kInstall, {{"URL", kUrlV1}, {"Resources.AllocatedMemory", "1024"}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidArguments);
    }
    SECTION("a HostObject with a relative or climbing path -> 7004") {
        auto r = a.run(kInstall, {{"URL", kUrlV1}, {"HostObject.1.Source", "/srv/../etc"}, {"HostObject.1.Destination", "/x"}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidArguments);
        CHECK(r.error().message.find("HostObject.1") != std::string::npos);
    }
    SECTION("ApplicationData -> 7004") {
        auto r = a.run(kInstall, {{"URL", kUrlV1}, {"ApplicationData.1.Name", "data"}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidArguments);
    }
    CHECK(m.oci.calls(FakeOp::kPull) == 0);
    CHECK(a.rows(kDuTable).empty());
    REQUIRE(a.rec.duEvents.size() == (reachesSmm ? 1u : 0u));
    if (reachesSmm) CHECK(a.rec.duEvents[0].at("CurrentState") == "Failed");
}

TEST_CASE("Cancel() of an InstallDU whose pull is still running ends it with 7023 and leaves nothing, while an EU "
          "start goes through meanwhile",
          "[smm][fake]") {
    Machine m;
    Agent a(m);
    auto [du, eu] = a.install({{"URL", kUrlV1}});
    m.oci.hold(FakeOp::kPull);
    auto c = a.operate(kInstall, {{"URL", kUrlV2}});
    REQUIRE(a.waitFor([&] { return m.oci.waiting(FakeOp::kPull) == 1; }));
    a.activate(eu);  // the pull holds a download thread, not the worker pool
    CHECK_FALSE(c->done);
    berth::dm::CommandCall call;
    call.objPath = "Device.SoftwareModules.";
    call.command = "InstallDU()";
    call.commandPath = kInstall;
    call.requestPath = "Device.LocalAgent.Request.1";
    REQUIRE(a.engine->cancelCommand(call));
    REQUIRE(a.waitFor([&] { return c->done; }));
    REQUIRE_FALSE(c->result);
    CHECK(c->result.error().code == ErrorCode::kCommandCanceled);
    REQUIRE(a.waitFor([&] { return m.oci.waiting(FakeOp::kPull) == 0; }));
    m.oci.release(FakeOp::kPull);
    CHECK(a.rows(kDuTable).size() == 1);
    CHECK(m.oci.imageDigests().size() == 1);
    CHECK(a.get(eu + "Status") == "Active");
}

TEST_CASE("The same DU twice is refused with 7226 and the first stays", "[smm][fake]") {
    Machine m;
    Agent a(m);
    a.install({{"URL", kUrlV1}});
    auto r = a.run(kInstall, {{"URL", kUrlV1}});
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kDuplicateDeploymentUnit);
    CHECK(a.rows(kDuTable).size() == 1);
    CHECK(m.oci.imageDigests().size() == 1);
}

TEST_CASE("Update swaps the image and restarts the EU that was Active, and a failed Update keeps the old version running",
          "[smm][fake]") {
    Machine m;
    Agent a(m);
    auto [du, eu] = a.install({{"URL", kUrlV1}});
    a.activate(eu);
    SECTION("success") {
        auto r = a.run(du + "Update()", {{"URL", kUrlV2}});
        if (!r) FAIL(r.error().describe());
        CHECK(a.get(du + "Version") == "2.0");
        REQUIRE(a.waitStatus(eu, "Active"));
        auto c = m.oci.container(euid(a, eu));
        REQUIRE(c);
        CHECK(c->imageDigest == berth::testing::fakeDigestOf(kUrlV2));
        REQUIRE(a.waitFor([&] { return m.oci.imageDigests().size() == 1; }));
        CHECK(a.rec.duEvents.back().at("OperationPerformed") == "Update");
        CHECK(a.rec.duEvents.back().at("CurrentState") == "Installed");
    }
    SECTION("the pull fails") {
        m.oci.failNext(FakeOp::kPull, RunnerError(ErrorKind::kDigestMismatch, "layer altered"));
        auto r = a.run(du + "Update()", {{"URL", kUrlV2}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kCorruptData);
        CHECK(a.get(du + "Version") == "1.0");
        CHECK(a.get(eu + "Status") == "Active");
        auto c = m.oci.container(euid(a, eu));
        REQUIRE(c);
        CHECK(c->imageDigest == berth::testing::fakeDigestOf(kUrlV1));
        CHECK(a.rec.duEvents.back().at("CurrentState") == "Failed");
    }
    checkConsistent(a, m);
}

TEST_CASE("An Update with new credentials stores them for the next Update without arguments", "[smm][fake]") {
    Machine m;
    std::string du, uuid;
    {
        Agent a(m);
        auto [d, eu] = a.install({{"URL", kUrlV1}, {"Username", "first"}, {"Password", "first-pw"}});
        du = d;
        uuid = a.get(du + "UUID");
        auto r = a.run(du + "Update()", {{"URL", kUrlV2}, {"Username", "second"}, {"Password", "second-pw"}});
        if (!r) FAIL(r.error().describe());
        CHECK(a.get(du + "Version") == "2.0");
    }
    auto j = berth::smm::Journal::open(m.state / "smm.db");
    REQUIRE(j);
    auto c = (*j)->credentials(kEe, uuid);
    REQUIRE(c);
    CHECK(c->first == "second");
    CHECK(c->second == "second-pw");
}

TEST_CASE("Uninstall stops the EU, removes the DU and EU rows and then the image", "[smm][fake]") {
    Machine m;
    Agent a(m);
    auto [du, eu] = a.install({{"URL", kUrlV1}});
    a.activate(eu);
    auto r = a.run(du + "Uninstall()", {});
    if (!r) FAIL(r.error().describe());
    CHECK(a.rec.duEvents.back().at("CurrentState") == "Uninstalled");
    CHECK(a.rows(kDuTable).empty());
    CHECK(a.rows(kEuTable).empty());
    CHECK(m.oci.containerIds().empty());
    REQUIRE(a.waitFor([&] { return m.oci.imageDigests().empty(); }));
}

TEST_CASE("After a restart running containers are adopted, unknown ones removed, and an Active EU whose container "
          "is gone is Idle with FailureWhileActive",
          "[smm][fake]") {
    Machine m;
    std::string keep, lost;
    {
        Agent a(m);
        keep = a.install({{"URL", kUrlV1}}).second;
        lost = a.install({{"URL", kUrlV2}, {"AutoStart", "false"}}).second;
        a.activate(keep);
        a.activate(lost);
        std::string lostId = euid(a, lost);
        a.drop();
        // While the agent is down: one container dies and is cleaned away, a stranger appears.
        auto snap = m.oci.snapshot();
        snap.containers.erase(lostId);
        berth::testing::FakeContainer stranger;
        stranger.id = "apps.99";
        stranger.status = "running";
        stranger.pid = FakeOci::kFirstPid + 999;
        snap.containers[stranger.id] = stranger;
        m.oci.restore(snap);
    }
    Agent a(m);
    CHECK(a.get(keep + "Status") == "Active");
    CHECK(a.get(lost + "Status") == "Idle");
    CHECK(a.get(lost + "ExecutionFaultCode") == "FailureWhileActive");
    CHECK_FALSE(m.oci.container("apps.99"));
    REQUIRE(m.oci.container(euid(a, keep)));
    // The adopted container is watched: its exit is noticed.
    m.oci.exit(euid(a, keep), 3);
    REQUIRE(a.waitStatus(keep, "Idle"));
    CHECK(a.get(keep + "ExecutionFaultCode") == "FailureWhileActive");
}

TEST_CASE("AutoStart EUs start when the ExecEnv comes up, and SetRunLevel stops and starts them", "[smm][fake]") {
    Machine m;
    std::string eu;
    {
        Agent a(m);
        eu = a.install({{"URL", kUrlV1}}).second;
        REQUIRE(a.engine->setValue(eu + "AutoStart", "true"));
    }
    Agent a(m);
    REQUIRE(a.waitStatus(eu, "Active"));
    CHECK(m.oci.container(euid(a, eu)));
    REQUIRE(a.engine->setValue(eu + "RunLevel", "5"));
    REQUIRE(a.operate(kEe + "SetRunLevel()", {{"RequestedRunLevel", "2"}})->result);
    REQUIRE(a.waitStatus(eu, "Idle"));
    CHECK(m.oci.containerIds().empty());
    REQUIRE(a.operate(kEe + "SetRunLevel()", {{"RequestedRunLevel", "5"}})->result);
    REQUIRE(a.waitStatus(eu, "Active"));
}

TEST_CASE("ModifyConstraints refuses a memory limit below current use with 7022 and sets the parent cgroup limits",
          "[smm][fake]") {
    Machine m;
    Agent a(m);
    auto [du, eu] = a.install({{"URL", kUrlV1}});
    a.activate(eu);
    m.oci.setMemory(euid(a, eu), 64ull << 20);
    auto r = a.run(kEe + "ModifyConstraints()", {{"AllocatedMemory", "1024"}});
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kCommandFailure);
    CHECK(a.get(kEe + "AllocatedMemory") == "-1");
    CHECK_FALSE(m.oci.parentLimits().first);
    r = a.run(kEe + "ModifyConstraints()", {{"AllocatedMemory", "1048576"}});
    REQUIRE(r);
    CHECK(a.get(kEe + "AllocatedMemory") == "1048576");
    REQUIRE(m.oci.parentLimits().first);
    CHECK(*m.oci.parentLimits().first == 1048576ull * 1024);
}

TEST_CASE("An ExecEnv whose runtime cannot be opened is Error and an install into it fails with the reason",
          "[smm][fake]") {
    Machine m;
    m.oci.failNext(FakeOp::kOpen, RunnerError(ErrorKind::kNotFound, "runc: not found"));
    Agent a(m);
    CHECK(a.get(kEe + "Status") == "Error");
    CHECK(a.get(kEe + "X_BERTH_StatusMessage").find("runc: not found") != std::string::npos);
    auto r = a.run(kInstall, {{"URL", kUrlV1}});
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kInvalidValue);
    CHECK(r.error().message.find("runc: not found") != std::string::npos);
    CHECK(m.oci.calls(FakeOp::kPull) == 0);
    CHECK(a.rows(kDuTable).empty());
}

// ---- crash recovery -----------------------------------------------------------------------

namespace {

// Runs `command` on a fresh agent over `m` until the journal reaches `step`, then drops
// the agent and puts back the disk and the runtime as they were at that step.
void crashAt(Machine& m, const std::string& step, const std::string& command, const ArgMap& args) {
    bool reached = false;
    {
        Agent a(m, [&](std::string_view s) {
            if (s == step && !reached) {
                reached = true;
                m.takeCrashImage();
            }
        });
        auto c = a.operate(command, args, "crash-key");
        REQUIRE(a.waitFor([&] { return reached || c->done; }));
        REQUIRE(reached);
    }
    m.restoreCrashImage();
}

void checkInterrupted(Agent& a, const std::string& operation, bool completed) {
    auto ops = a.smm->interruptedOperations();
    REQUIRE(ops.size() == 1);
    CHECK(ops[0].operation == operation);
    CHECK(ops[0].commandKey == "crash-key");
    CHECK(static_cast<bool>(ops[0].outcome) == completed);
    if (!completed) CHECK(ops[0].outcome.error().code == ErrorCode::kInternalError);
    REQUIRE(a.rec.duEvents.size() == 1);
    CHECK(a.rec.duEvents[0].at("OperationPerformed") == operation);
    CHECK(a.rec.duEvents[0].at("Fault.FaultCode") == (completed ? "0" : "7003"));
}

}  // namespace

TEST_CASE("An InstallDU dropped at any journal step is rolled back completely by the next start", "[smm][fake][crash]") {
    std::string step =
        GENERATE(as<std::string>{}, "install.started", "install.pulled", "install.committing", "install.committed");
    INFO(step);
    Machine m;
    crashAt(m, step, kInstall, {{"URL", kUrlV1}});
    Agent a(m);
    CHECK(a.rows(kDuTable).empty());
    CHECK(a.rows(kEuTable).empty());
    checkConsistent(a, m);
    checkInterrupted(a, "Install", false);
    CHECK(a.rec.duEvents[0].at("CurrentState") == "Failed");
    a.install({{"URL", kUrlV1}});
}

TEST_CASE("An Update dropped at any journal step leaves the DU at one version with its image", "[smm][fake][crash]") {
    std::string step = GENERATE(as<std::string>{}, "update.started", "update.pulled", "update.stopped",
                                "update.committing", "update.committed");
    INFO(step);
    Machine m;
    std::string du, eu;
    {
        Agent a(m);
        std::tie(du, eu) = a.install({{"URL", kUrlV1}});
        a.activate(eu);
    }
    crashAt(m, step, du + "Update()", {{"URL", kUrlV2}});
    Agent a(m);
    bool completed = step == "update.committed";
    CHECK(a.get(du + "Version") == (completed ? "2.0" : "1.0"));
    checkConsistent(a, m);
    checkInterrupted(a, "Update", completed);
    CHECK(a.rec.duEvents[0].at("CurrentState") == (completed ? "Installed" : "Failed"));
    a.activate(eu);
    auto c = m.oci.container(euid(a, eu));
    REQUIRE(c);
    CHECK(c->imageDigest == berth::testing::fakeDigestOf(completed ? kUrlV2 : kUrlV1));
}

TEST_CASE("An Uninstall dropped at any journal step leaves the DU either installed or gone", "[smm][fake][crash]") {
    std::string step = GENERATE(as<std::string>{}, "uninstall.started", "uninstall.stopped", "uninstall.committing",
                                "uninstall.committed");
    INFO(step);
    Machine m;
    std::string du, eu;
    {
        Agent a(m);
        std::tie(du, eu) = a.install({{"URL", kUrlV1}});
        a.activate(eu);
    }
    crashAt(m, step, du + "Uninstall()", {});
    Agent a(m);
    bool completed = step == "uninstall.committed";
    CHECK(a.rows(kDuTable).size() == (completed ? 0u : 1u));
    checkConsistent(a, m);
    checkInterrupted(a, "Uninstall", completed);
    CHECK(a.rec.duEvents[0].at("CurrentState") == (completed ? "Uninstalled" : "Failed"));
    if (!completed) {
        CHECK(a.get(du + "Status") == "Installed");
        REQUIRE(a.run(du + "Uninstall()", {}));
        CHECK(a.rows(kDuTable).empty());
    }
}
