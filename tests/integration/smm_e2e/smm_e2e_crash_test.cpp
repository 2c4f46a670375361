// kill -9 of berthd in the middle of InstallDU, Update and Uninstall, then a restart on
// the same database and state: every DU is fully there or fully gone, the staging area
// is empty, the interrupted operation ends with an OperationComplete error delivered to
// a controller with a persistent OperationComplete subscription, and the data model
// agrees with `runc list` and the disk. Running containers outlive berthd.
#include <signal.h>

#include <catch2/catch.hpp>

#include <set>

#include "e2e_fixture.h"

using namespace berth::smme2e;
using namespace std::chrono_literals;
using berth::testing::readFile;
using berth::testing::waitUntil;

namespace {

// What the data model says, compared with the store and the runtime. Empty when they agree.
std::string inconsistency(Fixture& f) {
    std::string why;
    if (f.filesIn(f.eeStore / "tmp") != 0) why += "staging area not empty; ";
    auto dus = f.instances(kDuTable);
    if (f.filesIn(f.eeStore / "images") != dus.size()) why += "image records differ from DU rows; ";
    for (const auto& du : dus) {
        if (f.get(du + "Status") != "Installed") why += du + " not Installed; ";
        if (!fs::exists(f.eeStore / "images" / (f.get(du + "DUID") + ".json"))) why += du + " has no image; ";
    }
    std::set<std::string> active;
    for (const auto& eu : f.instances(kEuTable))
        if (f.get(eu + "Status") == "Active") active.insert(f.get(eu + "EUID"));
    auto listed = f.runcList();
    if (std::set<std::string>(listed.begin(), listed.end()) != active) why += "runc list differs from Active EUs; ";
    if (f.filesIn(f.eeState / "containers") != active.size()) why += "bundles differ from Active EUs; ";
    return why;
}

void checkConsistent(Fixture& f) {
    std::string why;
    bool ok = waitUntil(
        [&] {
            why = inconsistency(f);
            return why.empty();
        },
        30s);
    INFO(why << "\nberthd log:\n" << f.agent->log());
    CHECK(ok);
}

// The OperationComplete the listener got for command_key `key` (waits up to 60 s).
std::optional<usp::Notify> completionFor(const Listener& l, const std::string& key) {
    std::optional<usp::Notify> found;
    waitUntil(
        [&] {
            for (auto& n : l.operationCompletes())
                if (n.oper_complete().command_key() == key) found = n;
            return found.has_value();
        },
        60s);
    return found;
}

void operateAsync(Fixture& f, const std::string& command, std::vector<std::string> args, const std::string& key) {
    std::vector<std::string> argv{"operate", command};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--key", key});
    auto r = f.ctl(argv);
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
}

// Installs and returns (DU path, EU path), reading the listener's DUStateChange!.
std::pair<std::string, std::string> install(Fixture& f, const Listener& l, std::vector<std::string> args) {
    std::size_t before = l.events("Device.SoftwareModules.", "DUStateChange!").size();
    auto r = operateWait(f, kInstallDu, args);
    INFO(r.run.describe());
    REQUIRE(r.errCode() == 0);
    std::vector<usp::Notify> evs;
    REQUIRE(waitUntil(
        [&] {
            evs = l.events("Device.SoftwareModules.", "DUStateChange!");
            return evs.size() > before;
        },
        30s));
    auto ev = eventArgs(evs.back());
    REQUIRE(ev["CurrentState"] == "Installed");
    return {ev["DeploymentUnitRef"] + ".", ev["ExecutionUnitRefList"] + "."};
}

}  // namespace

TEST_CASE("berthd killed mid-download of an InstallDU restarts with no DU, a clean staging area and an "
          "OperationComplete 7003, and killed right after DUStateChange! it keeps the DU",
          "[smm_e2e][crash]") {
    Fixture f;
    std::string archive = buildApp(f.www, "crashinst", "1.0.0");
    StallingServer slow(f.www, f.tmp / "slow.log");
    Listener l(f.broker->port(), f.tmp / "listener.out");
    f.subscribeListener();

    operateAsync(f, kInstallDu, {"URL=" + slow.url(archive)}, "crash-install");
    REQUIRE(waitUntil([&] { return slow.stalled(); }, 30s));
    f.crashAndRestart();
    auto oc = completionFor(l, "crash-install");
    INFO("berthd log:\n" << f.agent->log());
    REQUIRE(oc);
    CHECK(oc->oper_complete().obj_path() == "Device.SoftwareModules.");
    CHECK(oc->oper_complete().command_name() == "InstallDU()");
    REQUIRE(oc->oper_complete().has_cmd_failure());
    CHECK(oc->oper_complete().cmd_failure().err_code() == 7003);
    auto evs = l.events("Device.SoftwareModules.", "DUStateChange!");
    REQUIRE(evs.size() == 1);
    CHECK(eventArgs(evs[0])["CurrentState"] == "Failed");
    CHECK(eventArgs(evs[0])["OperationPerformed"] == "Install");
    CHECK(eventArgs(evs[0])["Fault.FaultCode"] == "7003");
    CHECK(f.instances(kDuTable).empty());
    CHECK(f.instances(kEuTable).empty());
    checkConsistent(f);

    // Killed right after the DUStateChange!: the install had committed, the DU stays.
    auto [du, eu] = install(f, l, {"URL=" + f.http->url(archive)});
    std::string duid = f.get(du + "DUID");
    f.crashAndRestart();
    CHECK(f.instances(kDuTable) == std::vector<std::string>{du});
    CHECK(f.instances(kEuTable) == std::vector<std::string>{eu});
    CHECK(f.get(du + "DUID") == duid);
    CHECK(f.get(eu + "Status") == "Idle");
    checkConsistent(f);
    // The EU of the kept DU still starts.
    f.requestState(eu, "Active");
    CHECK(f.waitValue(eu + "Status", "Active"));
    for (const auto& n : l.operationCompletes())
        if (n.oper_complete().command_key() != "crash-install") CHECK_FALSE(n.oper_complete().has_cmd_failure());
}

TEST_CASE("An Active EU's container keeps running across kill -9 of berthd, and an Update killed mid-download leaves the "
          "DU at its old version with an OperationComplete 7003",
          "[smm_e2e][crash]") {
    Fixture f;
    std::string v1 = buildApp(f.www, "crashupd", "1.0.0");
    std::string v2 = buildApp(f.www, "crashupd", "1.1.0");
    StallingServer slow(f.www, f.tmp / "slow.log");
    Listener l(f.broker->port(), f.tmp / "listener.out");
    f.subscribeListener();
    fs::path out = f.host / "upd";
    makeEuWritableDir(out);
    auto [du, eu] = install(f, l,
                            {"URL=" + f.http->url(v1), "HostObject.1.Source=" + out.string(),
                             "HostObject.1.Destination=/out", "HostObject.1.Options=rw", "ShutdownDelay=2"});
    std::string euid = f.get(eu + "EUID");
    f.requestState(eu, "Active");
    REQUIRE(f.waitValue(eu + "Status", "Active"));
    pid_t pid = f.containerPid(euid);
    REQUIRE(pid > 0);

    f.crashAndRestart();
    CHECK(::kill(pid, 0) == 0);
    CHECK(f.waitValue(eu + "Status", "Active"));
    CHECK(f.containerPid(euid) == pid);
    CHECK(f.get(eu + "ExecutionFaultCode") == "NoFault");
    checkConsistent(f);

    std::string oldDuid = f.get(du + "DUID");
    operateAsync(f, du + "Update()", {"URL=" + slow.url(v2)}, "crash-update");
    REQUIRE(waitUntil([&] { return slow.stalled(); }, 30s));
    f.crashAndRestart();
    auto oc = completionFor(l, "crash-update");
    INFO("berthd log:\n" << f.agent->log());
    REQUIRE(oc);
    CHECK(oc->oper_complete().obj_path() == du);
    CHECK(oc->oper_complete().command_name() == "Update()");
    REQUIRE(oc->oper_complete().has_cmd_failure());
    CHECK(oc->oper_complete().cmd_failure().err_code() == 7003);
    CHECK(f.get(du + "Version") == "1.0.0");
    CHECK(f.get(du + "DUID") == oldDuid);
    CHECK(f.get(du + "Status") == "Installed");
    // The download had not reached the point where Update stops the EU.
    CHECK(f.waitValue(eu + "Status", "Active"));
    CHECK(f.containerPid(euid) == pid);
    checkConsistent(f);

    // After all that the Update goes through.
    auto up = operateWait(f, du + "Update()", {"URL=" + f.http->url(v2)});
    INFO(up.run.describe());
    CHECK(up.errCode() == 0);
    CHECK(f.get(du + "Version") == "1.1.0");
    CHECK(f.waitValue(eu + "Status", "Active"));
    CHECK(waitUntil([&] { return readFile(out / "ran") == "1.1.0 \n"; }, 30s));
    checkConsistent(f);
}

TEST_CASE("berthd killed while an Uninstall waits for a TERM-ignoring container restarts with the DU either fully "
          "there or fully gone and an OperationComplete for the Uninstall",
          "[smm_e2e][crash]") {
    Fixture f;
    std::string app = buildApp(f.www, "stubborn", "1.0.0");
    Listener l(f.broker->port(), f.tmp / "listener.out");
    f.subscribeListener();
    auto [du, eu] = install(f, l,
                            {"URL=" + f.http->url(app), "EnvVariable.1.Key=APP_CMD",
                             "EnvVariable.1.Value=trap '' TERM; while :; do sleep 1; done", "ShutdownDelay=120"});
    std::string euid = f.get(eu + "EUID");
    f.requestState(eu, "Active");
    REQUIRE(f.waitValue(eu + "Status", "Active"));
    pid_t pid = f.containerPid(euid);
    REQUIRE(pid > 0);

    operateAsync(f, du + "Uninstall()", {}, "crash-uninstall");
    REQUIRE(f.waitValue(eu + "Status", "Stopping"));
    CHECK(f.get(du + "Status") == "Uninstalling");
    f.crashAndRestart();
    auto oc = completionFor(l, "crash-uninstall");
    INFO("berthd log:\n" << f.agent->log());
    REQUIRE(oc);
    CHECK(oc->oper_complete().obj_path() == du);
    CHECK(oc->oper_complete().command_name() == "Uninstall()");
    // Cut short before its data-model commit: docs/software-modules.md says the DU is
    // back to Installed and the operation failed with 7003.
    REQUIRE(oc->oper_complete().has_cmd_failure());
    CHECK(oc->oper_complete().cmd_failure().err_code() == 7003);
    CHECK(f.instances(kDuTable) == std::vector<std::string>{du});
    CHECK(f.get(du + "Status") == "Installed");
    checkConsistent(f);
    // The container ignored TERM and still runs, so berthd adopted it.
    CHECK(::kill(pid, 0) == 0);
    CHECK(f.get(eu + "Status") == "Active");
    auto evs = l.events("Device.SoftwareModules.", "DUStateChange!");
    REQUIRE(evs.size() == 2);
    CHECK(eventArgs(evs[1])["OperationPerformed"] == "Uninstall");
    CHECK(eventArgs(evs[1])["CurrentState"] == "Failed");
    CHECK(eventArgs(evs[1])["Fault.FaultCode"] == "7003");
}
