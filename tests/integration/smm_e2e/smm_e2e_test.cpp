// Device.SoftwareModules over MQTT through berthd, driven by berthctl: the lifecycle of a
// DU and its EU, Update, failed installs and an OOM-killed EU.
#include <signal.h>

#include <catch2/catch.hpp>

#include "berth/oci/layout_writer.h"
#include "e2e_fixture.h"
#include "oci_test_util.h"

using namespace berth::smme2e;
using namespace std::chrono_literals;
using berth::testing::readFile;
using berth::testing::waitUntil;

namespace {

// TR-181 Annex: v5 UUID of "<Name>.<Vendor>." for name hello, vendor example.com.
const std::string kHelloUuid = "d6a07715-9258-539c-afa1-10abde021673";

std::string noDot(const std::string& p) { return p.substr(0, p.size() - 1); }

// The files the ExecEnv holds for images: none once every DU is gone.
void checkStoreEmpty(Fixture& f) {
    for (const char* d : {"images", "layers", "tmp"}) {
        INFO(d);
        CHECK(f.filesIn(f.eeStore / d) == 0);
    }
    CHECK(f.filesIn(f.eeStore / "blobs" / "sha256") == 0);
    CHECK(f.filesIn(f.eeState / "containers") == 0);
}

bool processGone(pid_t pid) {
    return waitUntil([&] { return ::kill(pid, 0) != 0; }, 30s);
}

}  // namespace

TEST_CASE("InstallDU over MQTT announces DUStateChange! and OperationComplete, the EU runs on Active and stops on "
          "Idle, and Uninstall removes DU, EU, container and files",
          "[smm_e2e]") {
    Fixture f;
    std::string archive = buildApp(f.www, "hello", "1.0.0");
    fs::path out = f.host / "hello";
    makeEuWritableDir(out);
    Watch events(f, "Event", kDuStateChange);

    auto r = operateWait(f, kInstallDu,
                         {"URL=" + f.http->url(archive), "ExecutionEnvRef=" + kEe, "EnvVariable.1.Key=GREETING",
                          "EnvVariable.1.Value=hi", "HostObject.1.Source=" + out.string(),
                          "HostObject.1.Destination=/out", "HostObject.1.Options=rw", "ShutdownDelay=3"});
    INFO(r.run.describe());
    REQUIRE(r.errCode() == 0);
    REQUIRE(r.complete);
    CHECK((*r.complete)["command_name"] == "InstallDU()");
    CHECK((*r.complete)["obj_path"] == "Device.SoftwareModules.");
    CHECK(r.output("UUID") == kHelloUuid);
    CHECK(r.output("Version") == "1.0.0");
    CHECK(r.output("ExecEnvRef") == kEe);

    REQUIRE(events.waitCount(1));
    auto ev = eventArgs(events.notifications()[0]);
    CHECK(ev["UUID"] == kHelloUuid);
    CHECK(ev["Version"] == "1.0.0");
    CHECK(ev["CurrentState"] == "Installed");
    CHECK(ev["Resolved"] == "true");
    CHECK(ev["OperationPerformed"] == "Install");
    CHECK(ev["Fault.FaultCode"] == "0");
    CHECK(ev["StartTime"] <= ev["CompleteTime"]);
    REQUIRE(!ev["DeploymentUnitRef"].empty());
    REQUIRE(!ev["ExecutionUnitRefList"].empty());
    std::string du = ev["DeploymentUnitRef"] + ".";
    std::string eu = ev["ExecutionUnitRefList"] + ".";
    CHECK(f.instances(kDuTable) == std::vector<std::string>{du});
    CHECK(f.instances(kEuTable) == std::vector<std::string>{eu});
    CHECK(f.get(du + "Status") == "Installed");
    CHECK(f.get(du + "Name") == "hello");
    CHECK(f.get(du + "Version") == "1.0.0");
    CHECK(f.get(du + "URL") == f.http->url(archive));
    CHECK(f.get(du + "ExecutionUnitList") == noDot(eu));
    CHECK(f.get(eu + "Status") == "Idle");
    CHECK(f.get(eu + "EnvVariable.1.Value") == "hi");
    std::string euid = f.get(eu + "EUID");
    CHECK(f.runcList().empty());

    // Active: the container runs and writes through its HostObject.
    f.requestState(eu, "Active");
    REQUIRE(f.waitValue(eu + "Status", "Active"));
    REQUIRE(waitUntil([&] { return readFile(out / "ran") == "1.0.0 hi\n"; }, 30s));
    CHECK(f.runcList() == std::vector<std::string>{euid});
    pid_t pid = f.containerPid(euid);
    REQUIRE(pid > 0);
    CHECK(f.get(eu + "ExecutionFaultCode") == "NoFault");
    CHECK(std::stoll(f.get(eu + "MemoryInUse")) > 0);

    // Idle: the process is gone, so is the container.
    f.requestState(eu, "Idle");
    REQUIRE(f.waitValue(eu + "Status", "Idle"));
    CHECK(processGone(pid));
    CHECK(f.runcList().empty());
    CHECK(f.get(eu + "ExecutionFaultCode") == "NoFault");

    auto u = operateWait(f, du + "Uninstall()", {});
    INFO(u.run.describe());
    REQUIRE(u.errCode() == 0);
    REQUIRE(u.complete);
    REQUIRE(events.waitCount(2));
    ev = eventArgs(events.notifications()[1]);
    CHECK(ev["CurrentState"] == "Uninstalled");
    CHECK(ev["OperationPerformed"] == "Uninstall");
    CHECK(ev["DeploymentUnitRef"] == noDot(du));
    CHECK(ev["Fault.FaultCode"] == "0");
    CHECK(f.instances(kDuTable).empty());
    CHECK(f.instances(kEuTable).empty());
    CHECK(f.runcList().empty());
    checkStoreEmpty(f);
}

TEST_CASE("Update over MQTT swaps 1.0.0 for 1.1.0, keeps the EU's settings and restarts it, and Uninstall of a DU "
          "whose EU is Active stops the EU first",
          "[smm_e2e]") {
    Fixture f;
    std::string v1 = buildApp(f.www, "upd", "1.0.0");
    std::string v2 = buildApp(f.www, "upd", "1.1.0");
    fs::path out = f.host / "upd";
    makeEuWritableDir(out);
    Watch events(f, "Event", kDuStateChange);
    auto r = operateWait(f, kInstallDu,
                         {"URL=" + f.http->url(v1), "EnvVariable.1.Key=GREETING", "EnvVariable.1.Value=kept",
                          "HostObject.1.Source=" + out.string(), "HostObject.1.Destination=/out",
                          "HostObject.1.Options=rw", "Resources.AllocatedMemory=65536", "ShutdownDelay=3"});
    INFO(r.run.describe());
    REQUIRE(r.errCode() == 0);
    REQUIRE(events.waitCount(1));
    auto ev = eventArgs(events.notifications()[0]);
    std::string du = ev["DeploymentUnitRef"] + ".";
    std::string eu = ev["ExecutionUnitRefList"] + ".";
    std::string uuid = ev["UUID"];
    std::string euid = f.get(eu + "EUID");
    std::string oldDuid = f.get(du + "DUID");
    f.requestState(eu, "Active");
    REQUIRE(f.waitValue(eu + "Status", "Active"));
    REQUIRE(waitUntil([&] { return readFile(out / "ran") == "1.0.0 kept\n"; }, 30s));
    pid_t oldPid = f.containerPid(euid);
    REQUIRE(oldPid > 0);

    auto up = operateWait(f, du + "Update()", {"URL=" + f.http->url(v2)});
    INFO(up.run.describe());
    REQUIRE(up.errCode() == 0);
    REQUIRE(up.complete);
    CHECK((*up.complete)["command_name"] == "Update()");
    REQUIRE(events.waitCount(2));
    ev = eventArgs(events.notifications()[1]);
    CHECK(ev["OperationPerformed"] == "Update");
    CHECK(ev["CurrentState"] == "Installed");
    CHECK(ev["Version"] == "1.1.0");
    CHECK(ev["UUID"] == uuid);
    CHECK(ev["Fault.FaultCode"] == "0");
    CHECK(f.get(du + "Version") == "1.1.0");
    CHECK(f.get(du + "UUID") == uuid);
    CHECK(f.get(du + "DUID") != oldDuid);
    CHECK(f.get(du + "URL") == f.http->url(v2));
    CHECK(f.get(eu + "EnvVariable.1.Key") == "GREETING");
    CHECK(f.get(eu + "EnvVariable.1.Value") == "kept");
    CHECK(f.get(eu + "AllocatedMemory") == "65536");
    CHECK(f.get(eu + "HostObject.1.Destination") == "/out");
    // The EU that was Active runs again, on the new image.
    REQUIRE(f.waitValue(eu + "Status", "Active"));
    REQUIRE(waitUntil([&] { return readFile(out / "ran") == "1.1.0 kept\n"; }, 30s));
    CHECK(processGone(oldPid));
    pid_t newPid = f.containerPid(euid);
    CHECK(newPid > 0);
    CHECK(newPid != oldPid);
    CHECK(f.filesIn(f.eeStore / "images") == 1);

    // docs/software-modules.md: an Uninstall of a DU with an Active EU stops the EU
    // (ShutdownDelay, then KILL) and then removes the DU.
    auto u = operateWait(f, du + "Uninstall()", {});
    INFO(u.run.describe());
    REQUIRE(u.errCode() == 0);
    REQUIRE(events.waitCount(3));
    ev = eventArgs(events.notifications()[2]);
    CHECK(ev["CurrentState"] == "Uninstalled");
    CHECK(ev["Version"] == "1.1.0");
    CHECK(processGone(newPid));
    CHECK(f.runcList().empty());
    CHECK(f.instances(kDuTable).empty());
    CHECK(f.instances(kEuTable).empty());
    checkStoreEmpty(f);
}

namespace {

struct FailedInstall {
    unsigned code;
    std::string url;
    std::vector<std::string> extra;
};

// Every failed install: the error in OperationComplete, DUStateChange! Failed with the
// same FaultCode, and nothing left in the data model, the runtime or the stores.
void checkFailedInstall(Fixture& f, const FailedInstall& c) {
    auto before = f.storeFiles();
    fs::path small = f.tmp / "small" / "store";
    auto smallBefore = f.filesIn(small / "images");
    Watch events(f, "Event", kDuStateChange);
    std::vector<std::string> args{"URL=" + c.url};
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    auto r = operateWait(f, kInstallDu, args);
    INFO(r.run.describe());
    CHECK(r.errCode() == c.code);
    CHECK_FALSE(r.errMsg().empty());
    REQUIRE(events.waitCount(1));
    auto ev = eventArgs(events.notifications()[0]);
    CHECK(ev["CurrentState"] == "Failed");
    CHECK(ev["OperationPerformed"] == "Install");
    CHECK(ev["Fault.FaultCode"] == std::to_string(c.code));
    CHECK_FALSE(ev["Fault.FaultString"].empty());
    CHECK(ev["DeploymentUnitRef"].empty());
    CHECK(f.instances(kDuTable).empty());
    CHECK(f.instances(kEuTable).empty());
    CHECK(f.runcList().empty());
    CHECK(f.storeFiles() == before);
    CHECK(f.filesIn(f.eeStore / "tmp") == 0);
    CHECK(f.filesIn(small / "images") == smallBefore);
    CHECK(f.filesIn(small / "tmp") == 0);
    // berthd is still there and still installs.
    CHECK(f.agent->running());
}

}  // namespace

TEST_CASE("Failed installs over MQTT report the fault in OperationComplete and DUStateChange! and leave nothing "
          "behind",
          "[smm_e2e]") {
    Fixture f;
    SECTION("a URL that answers 404 -> 7033") {
        checkFailedInstall(f, {7033, f.http->url("missing.tar"), {}});
    }
    SECTION("a layer whose digest does not match the manifest -> 7035") {
        fs::path rootfs = f.www / "bad-rootfs";
        berth::oci::testing::makeBusyboxRootfs(rootfs);
        std::string tar = (f.www / "bad-layer.tar").string();
        REQUIRE(berth::oci::tarDirectory(rootfs.string(), tar, false));
        berth::oci::ImageDefinition def;
        def.cmd = {"/bin/sh"};
        berth::oci::testing::buildImage(f.www, "tampered", {tar}, def, [](berth::oci::testing::BuiltImage& img) {
            std::string blob = img.layoutDir + "/blobs/sha256/" + img.layers[0].digest.substr(7);
            std::string content = readFile(blob);
            content[content.size() / 2] ^= 0x55;
            berth::testing::writeFile(blob, content);
        });
        checkFailedInstall(f, {7035, f.http->url("tampered.tar"), {}});
    }
    SECTION("a layer with a path traversal entry -> 7035, nothing written outside") {
        std::string tar = (f.www / "evil-layer.tar").string();
        {
            berth::oci::testing::TarBuilder t(tar);
            t.file("ok", "fine").file("../../../escape-e2e", "gotcha").file("../../escape-e2e-2", "gotcha");
        }
        berth::oci::ImageDefinition def;
        def.cmd = {"/ok"};
        berth::oci::testing::buildImage(f.www, "evil", {tar}, def);
        checkFailedInstall(f, {7035, f.http->url("evil.tar"), {}});
        for (const auto& dir : {f.eeStore, f.eeStore / "layers", f.eeStore / "tmp", f.eeStore.parent_path(), f.tmp.path()}) {
            CHECK_FALSE(fs::exists(dir / "escape-e2e"));
            CHECK_FALSE(fs::exists(dir / "escape-e2e-2"));
        }
    }
    SECTION("an archive over the ExecEnv's disk budget -> 7227") {
        std::string good = buildApp(f.www, "big", "1.0.0");
        checkFailedInstall(f, {7227, f.http->url(good), {"ExecutionEnvRef=" + kSmallEe}});
    }
    SECTION("an unknown ExecutionEnvRef -> 7223") {
        std::string good = buildApp(f.www, "good", "1.0.0");
        checkFailedInstall(f, {7223, f.http->url(good), {"ExecutionEnvRef=Device.SoftwareModules.ExecEnv.9"}});
    }
}

TEST_CASE("An EU over its memory limit shows the OOM fault over MQTT while berthd and another EU keep running",
          "[smm_e2e]") {
    Fixture f;
    std::string a = buildApp(f.www, "hog", "1.0.0");
    std::string b = buildApp(f.www, "calm", "1.0.0");
    Watch events(f, "Event", kDuStateChange);
    auto r = operateWait(f, kInstallDu,
                         {"URL=" + f.http->url(a), "Resources.AllocatedMemory=32768", "EnvVariable.1.Key=APP_CMD",
                          "EnvVariable.1.Value=sleep 1; dd if=/dev/zero of=/dev/null bs=256M count=1"});
    INFO(r.run.describe());
    REQUIRE(r.errCode() == 0);
    r = operateWait(f, kInstallDu, {"URL=" + f.http->url(b), "ShutdownDelay=2"});
    REQUIRE(r.errCode() == 0);
    REQUIRE(events.waitCount(2));
    auto evs = events.notifications();
    std::string hog = eventArgs(evs[0])["ExecutionUnitRefList"] + ".";
    std::string calm = eventArgs(evs[1])["ExecutionUnitRefList"] + ".";
    std::string calmId = f.get(calm + "EUID");
    f.requestState(calm, "Active");
    REQUIRE(f.waitValue(calm + "Status", "Active"));
    pid_t calmPid = f.containerPid(calmId);
    REQUIRE(calmPid > 0);

    f.requestState(hog, "Active");
    REQUIRE(f.waitValue(hog + "ExecutionFaultCode", "FailureWhileActive", 60s));
    REQUIRE(f.waitValue(hog + "Status", "Idle"));
    std::string message = f.get(hog + "ExecutionFaultMessage");
    INFO(message);
    CHECK(message.find("OOM") != std::string::npos);
    CHECK(message.find("32768 KiB") != std::string::npos);
    CHECK(f.get(hog + "X_BERTH_ExitStatus").find("OOM") != std::string::npos);
    CHECK(f.agent->running());
    CHECK(f.get(calm + "Status") == "Active");
    CHECK(f.get(calm + "ExecutionFaultCode") == "NoFault");
    CHECK(f.containerPid(calmId) == calmPid);
    CHECK(f.runcList() == std::vector<std::string>{calmId});
}

TEST_CASE("A ValueChange subscription on ExecutionUnit.*.Status reports the Status of EUs installed after it",
          "[smm_e2e]") {
    Fixture f;
    std::string a = buildApp(f.www, "vc", "1.0.0");
    Watch status(f, "ValueChange", "Device.SoftwareModules.ExecutionUnit.*.Status");
    Watch events(f, "Event", kDuStateChange);
    auto sawActive = [&](const std::string& eu) {
        return waitUntil(
            [&] {
                for (const auto& n : status.notifications())
                    if (n["notify"].contains("value_change") && n["notify"]["value_change"]["param_path"] == eu + "Status" &&
                        n["notify"]["value_change"]["param_value"] == "Active")
                        return true;
                return false;
            },
            30s);
    };
    for (int round = 1; round <= 2; ++round) {
        INFO("round " << round);
        auto r = operateWait(f, kInstallDu, {"URL=" + f.http->url(a), "ShutdownDelay=2"});
        REQUIRE(r.errCode() == 0);
        REQUIRE(events.waitCount(static_cast<std::size_t>(2 * round - 1)));
        auto ev = eventArgs(events.notifications().back());
        std::string du = ev["DeploymentUnitRef"] + ".";
        std::string eu = ev["ExecutionUnitRefList"] + ".";
        f.requestState(eu, "Active");
        REQUIRE(f.waitValue(eu + "Status", "Active"));
        CHECK(sawActive(eu));
        auto u = operateWait(f, du + "Uninstall()", {});
        REQUIRE(u.errCode() == 0);
        REQUIRE(events.waitCount(static_cast<std::size_t>(2 * round)));
    }
}

TEST_CASE("An image installed again right after its DU was uninstalled is complete and its EU runs", "[smm_e2e]") {
    // The Uninstall's image removal runs on a worker after the Uninstall has completed; a
    // pull of the same image must neither find it half removed nor have it removed under it.
    // Uninstall and InstallDU are published back to back, closer than berthctl runs can be.
    Fixture f;
    std::string a = buildApp(f.www, "again", "1.0.0");
    Watch events(f, "Event", kDuStateChange);
    auto r = operateWait(f, kInstallDu, {"URL=" + f.http->url(a), "ShutdownDelay=2"});
    INFO(r.run.describe());
    REQUIRE(r.errCode() == 0);
    std::size_t seen = 1;
    REQUIRE(events.waitCount(seen));
    std::string du = eventArgs(events.notifications().back())["DeploymentUnitRef"] + ".";
    for (int round = 1; round <= 5; ++round) {
        INFO("round " << round);
        f.publishOperate(du + "Uninstall()", {}, "uninstall-" + std::to_string(round));
        f.publishOperate(kInstallDu, {{"URL", f.http->url(a)}, {"ShutdownDelay", "2"}}, "install-" + std::to_string(round));
        seen += 2;
        REQUIRE(events.waitCount(seen));
        auto evs = events.notifications();
        std::string eu;
        for (std::size_t i = seen - 2; i < seen; ++i) {
            auto ev = eventArgs(evs[i]);
            INFO(evs[i].dump());
            if (ev["CurrentState"] == "Installed") {
                du = ev["DeploymentUnitRef"] + ".";
                eu = ev["ExecutionUnitRefList"] + ".";
            } else if (ev["OperationPerformed"] == "Install") {
                // The install may reach its commit while the old DU (same UUID and
                // version) is still there: 7226, and nothing else may have changed.
                CHECK(ev["Fault.FaultCode"] == "7226");
            } else {
                CHECK(ev["Fault.FaultCode"] == "0");
            }
        }
        if (eu.empty()) {
            auto again = operateWait(f, kInstallDu, {"URL=" + f.http->url(a), "ShutdownDelay=2"});
            REQUIRE(again.errCode() == 0);
            REQUIRE(events.waitCount(++seen));
            auto ev = eventArgs(events.notifications().back());
            du = ev["DeploymentUnitRef"] + ".";
            eu = ev["ExecutionUnitRefList"] + ".";
        }
        f.requestState(eu, "Active");
        bool active = f.waitValue(eu + "Status", "Active");
        INFO(f.get(eu + "ExecutionFaultMessage"));
        CHECK(active);
        f.requestState(eu, "Idle");
        REQUIRE(f.waitValue(eu + "Status", "Idle"));
    }
    auto u = operateWait(f, du + "Uninstall()", {});
    REQUIRE(u.errCode() == 0);
    CHECK(waitUntil([&] { return f.filesIn(f.eeStore / "images") == 0; }, 30s));
    CHECK(f.runcList().empty());
}
