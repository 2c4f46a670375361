// Device.SoftwareModules end to end: InstallDU/Update/Uninstall through
// Engine::operate, EUs run by runc, faults, OOM, AutoRestart, adoption, AutoStart.
#include <sys/stat.h>
#include <sys/wait.h>

#include "smm_harness.h"

using namespace smmtest;
using berth::ErrorCode;

namespace {

const std::string kInstall = "Device.SoftwareModules.InstallDU()";

// The checks every failed install must pass: error code in both reports, nothing left.
void checkFailedInstall(Harness& h, Site& site, const berth::Result<ArgMap>& r, ErrorCode code) {
    REQUIRE_FALSE(r);
    CHECK(r.error().code == code);
    INFO(r.error().message);
    REQUIRE_FALSE(h.rec.duEvents.empty());
    const ArgMap& ev = h.rec.duEvents.back();
    CHECK(ev.at("CurrentState") == "Failed");
    CHECK(ev.at("OperationPerformed") == "Install");
    CHECK(ev.at("Fault.FaultCode") == std::to_string(static_cast<unsigned>(code)));
    CHECK_FALSE(ev.at("Fault.FaultString").empty());
    CHECK(h.rows("Device.SoftwareModules.DeploymentUnit.").empty());
    CHECK(h.rows("Device.SoftwareModules.ExecutionUnit.").empty());
    CHECK(site.stagingFiles() == 0);
    CHECK(site.imageRecords() == 0);
}

}  // namespace

TEST_CASE("InstallDU installs an image, its EU runs on request, stops on Idle, and Uninstall removes everything",
          "[smm][integration]") {
    Site site;
    std::string archive = buildApp(site.images, "hello", "1.0.0");
    HttpServer http(site.images);
    Harness h(site);
    CHECK(h.get("Device.SoftwareModules.ExecEnv.1.Status") == "Up");
    CHECK(h.get("Device.SoftwareModules.ExecEnvClass.1.Name") == "OCI-runc");
    CHECK(h.get("Device.SoftwareModules.ExecEnvClass.1.Capability.1.Specification") == "OCIImage");

    fs::path out = site.host / "hello-out";
    fs::create_directories(out);
    std::uint32_t mappedRoot = giveToMappedRoot(out);
    auto r = h.run(kInstall, {{"URL", http.url(archive)},
                              {"ExecutionEnvRef", "Device.SoftwareModules.ExecEnv.1"},
                              {"EnvVariable.1.Key", "GREETING"},
                              {"EnvVariable.1.Value", "hi"},
                              {"HostObject.1.Source", out.string()},
                              {"HostObject.1.Destination", "/out"},
                              {"HostObject.1.Options", "rw"},
                              {"ShutdownDelay", "3"}});
    if (!r) FAIL(r.error().describe());
    // TR-181 Annex: v5 UUID of "hello.example.com." (python3 uuid.uuid5(NAMESPACE_DNS, ...)).
    CHECK(r->at("UUID") == "d6a07715-9258-539c-afa1-10abde021673");
    CHECK(r->at("Version") == "1.0.0");
    CHECK(r->at("ExecEnvRef") == "Device.SoftwareModules.ExecEnv.1");

    REQUIRE(h.rec.duEvents.size() == 1);
    ArgMap ev = h.rec.duEvents[0];
    CHECK(ev.at("UUID") == "d6a07715-9258-539c-afa1-10abde021673");
    CHECK(ev.at("DeploymentUnitRef") == "Device.SoftwareModules.DeploymentUnit.1");
    CHECK(ev.at("Version") == "1.0.0");
    CHECK(ev.at("CurrentState") == "Installed");
    CHECK(ev.at("Resolved") == "true");
    CHECK(ev.at("ExecutionUnitRefList") == "Device.SoftwareModules.ExecutionUnit.1");
    CHECK(ev.at("OperationPerformed") == "Install");
    CHECK(ev.at("Fault.FaultCode") == "0");
    CHECK(ev.at("StartTime") != "0001-01-01T00:00:00Z");
    CHECK(ev.at("CompleteTime") >= ev.at("StartTime"));

    const std::string du = "Device.SoftwareModules.DeploymentUnit.1.";
    const std::string eu = "Device.SoftwareModules.ExecutionUnit.1.";
    CHECK(h.get(du + "Status") == "Installed");
    CHECK(h.get(du + "Name") == "hello");
    CHECK(h.get(du + "Vendor") == "example.com");
    CHECK(h.get(du + "Description") == "test app hello");
    CHECK(h.get(du + "DUID").size() == 64);
    CHECK(h.get(du + "URL") == http.url(archive));
    CHECK(h.get(du + "ExecutionUnitList") == "Device.SoftwareModules.ExecutionUnit.1");
    CHECK(h.get(eu + "EUID") == "apps.1");
    CHECK(h.get(eu + "Status") == "Idle");
    CHECK(h.get(eu + "ExecutionFaultCode") == "NoFault");
    CHECK(h.get(eu + "EnvVariable.1.Key") == "GREETING");
    CHECK(h.get(eu + "HostObject.1.Destination") == "/out");
    CHECK(h.get(eu + "MemoryInUse") == "0");

    auto s = h.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}});
    REQUIRE(s->done);
    REQUIRE(s->result);
    REQUIRE(h.waitStatus(eu, "Active"));
    REQUIRE(h.waitFor([&] { return berth::testing::readFile(out / "ran") == "1.0.0 hi\n"; }));
    struct stat ranStat {};
    REQUIRE(::stat((out / "ran").c_str(), &ranStat) == 0);
    CHECK(ranStat.st_uid == mappedRoot);  // written by the container's root, an unprivileged host id
    CHECK(std::stoll(h.get(eu + "MemoryInUse")) > 0);
    CHECK(h.get("Device.SoftwareModules.ExecEnv.1.ActiveExecutionUnits") == "Device.SoftwareModules.ExecutionUnit.1");
    auto statuses = h.rec.statusesOf(eu);
    REQUIRE(statuses.size() >= 2);
    CHECK(statuses[statuses.size() - 2] == "Starting");
    CHECK(statuses.back() == "Active");

    s = h.operate(eu + "SetRequestedState()", {{"RequestedState", "Idle"}});
    REQUIRE(s->result);
    REQUIRE(h.waitStatus(eu, "Idle"));
    statuses = h.rec.statusesOf(eu);
    CHECK(statuses[statuses.size() - 2] == "Stopping");
    CHECK(h.get(eu + "ExecutionFaultCode") == "NoFault");
    CHECK_FALSE(fs::exists(site.eeState() / "containers" / "apps.1"));

    // Active again, then Uninstall: TR-369 says uninstalling stops the EUs first.
    REQUIRE(h.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(h.waitStatus(eu, "Active"));
    CHECK(site.imageRecords() == 1);
    auto u = h.run(du + "Uninstall()", {});
    if (!u) FAIL(u.error().describe());
    REQUIRE(h.rec.duEvents.size() == 2);
    ev = h.rec.duEvents[1];
    CHECK(ev.at("CurrentState") == "Uninstalled");
    CHECK(ev.at("OperationPerformed") == "Uninstall");
    CHECK(ev.at("Version") == "1.0.0");
    CHECK(ev.at("ExecutionUnitRefList") == "Device.SoftwareModules.ExecutionUnit.1");
    CHECK(ev.at("Fault.FaultCode") == "0");
    CHECK(h.rows("Device.SoftwareModules.DeploymentUnit.").empty());
    CHECK(h.rows("Device.SoftwareModules.ExecutionUnit.").empty());
    CHECK_FALSE(fs::exists(site.eeState() / "containers" / "apps.1"));
    REQUIRE(h.waitFor([&] { return site.imageRecords() == 0; }));
}

TEST_CASE("Update swaps the image, keeps the EU's settings and restarts the EU that was Active", "[smm][integration]") {
    Site site;
    std::string v1 = buildApp(site.images, "upd", "1.0.0");
    std::string v2 = buildApp(site.images, "upd", "2.0.0");
    HttpServer http(site.images);
    Harness h(site);
    fs::path out = site.host / "upd";
    fs::create_directories(out);
    giveToMappedRoot(out);
    auto [du, eu] = h.install({{"URL", http.url(v1)},
                               {"EnvVariable.1.Key", "GREETING"},
                               {"EnvVariable.1.Value", "kept"},
                               {"HostObject.1.Source", out.string()},
                               {"HostObject.1.Destination", "/out"},
                               {"HostObject.1.Options", "rw"},
                               {"Resources.AllocatedMemory", "65536"},
                               {"ShutdownDelay", "3"}});
    std::string uuid = h.get(du + "UUID");
    std::string oldDuid = h.get(du + "DUID");
    REQUIRE(h.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(h.waitFor([&] { return berth::testing::readFile(out / "ran") == "1.0.0 kept\n"; }));
    // The app writes /out/ran before the start call has returned; Update() refuses an EU
    // that is still Starting (7229).
    REQUIRE(h.waitStatus(eu, "Active"));

    auto r = h.run(du + "Update()", {{"URL", http.url(v2)}});
    if (!r) FAIL(r.error().describe());
    const ArgMap& ev = h.rec.duEvents.back();
    CHECK(ev.at("OperationPerformed") == "Update");
    CHECK(ev.at("CurrentState") == "Installed");
    CHECK(ev.at("Version") == "2.0.0");
    CHECK(ev.at("UUID") == uuid);
    CHECK(ev.at("ExecutionUnitRefList") == eu.substr(0, eu.size() - 1));
    CHECK(h.get(du + "Version") == "2.0.0");
    CHECK(h.get(du + "UUID") == uuid);
    CHECK(h.get(du + "DUID") != oldDuid);
    CHECK(h.get(eu + "Version") == "2.0.0");
    CHECK(h.get(eu + "AllocatedMemory") == "65536");
    CHECK(h.get(eu + "EnvVariable.1.Value") == "kept");
    REQUIRE(h.waitStatus(eu, "Active"));
    REQUIRE(h.waitFor([&] { return berth::testing::readFile(out / "ran") == "2.0.0 kept\n"; }));
    REQUIRE(h.waitFor([&] { return site.imageRecords() == 1; }));

    // A downgrade is refused (7229) and leaves the DU at 2.0.0, its EU running.
    r = h.run(du + "Update()", {{"URL", http.url(v1)}});
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kInvalidDuState);
    CHECK(h.rec.duEvents.back().at("CurrentState") == "Failed");
    CHECK(h.rec.duEvents.back().at("Version") == "2.0.0");
    CHECK(h.get(du + "Version") == "2.0.0");
    CHECK(h.get(du + "Status") == "Installed");
    REQUIRE(h.waitStatus(eu, "Active"));
    REQUIRE(h.waitFor([&] { return site.imageRecords() == 1; }));

    // Update without a URL re-fetches the stored one.
    r = h.run(du + "Update()", {});
    if (!r) FAIL(r.error().describe());
    CHECK(h.get(du + "Version") == "2.0.0");
}

TEST_CASE("Failed installs report the TR-181 fault code and leave nothing behind", "[smm][integration]") {
    Site site;
    std::string good = buildApp(site.images, "good", "1.0.0");
    // Digest mismatch: a layer blob altered after the manifest was written.
    {
        fs::path rootfs = site.images / "bad-rootfs";
        berth::oci::testing::makeBusyboxRootfs(rootfs);
        std::string tar = (site.images / "bad-layer.tar").string();
        REQUIRE(berth::oci::tarDirectory(rootfs.string(), tar, false));
        berth::oci::ImageDefinition def;
        def.cmd = {"/bin/sh"};
        berth::oci::testing::buildImage(site.images, "tampered", {tar}, def, [](berth::oci::testing::BuiltImage& img) {
            std::string blob = img.layoutDir + "/blobs/sha256/" + img.layers[0].digest.substr(7);
            std::string content = berth::testing::readFile(blob);
            content[content.size() / 2] ^= 0x55;
            berth::testing::writeFile(blob, content);
        });
    }
    // Path traversal in a layer.
    {
        std::string tar = (site.images / "evil-layer.tar").string();
        {
            berth::oci::testing::TarBuilder t(tar);
            t.file("ok", "fine").file("../../escape", "gotcha");
        }
        berth::oci::ImageDefinition def;
        def.cmd = {"/ok"};
        berth::oci::testing::buildImage(site.images, "evil", {tar}, def);
    }
    // Bigger than the disk budget of a second, small ExecEnv.
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.Name", "small"});
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.Enable", "true"});
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.X_BERTH_CgroupParent", site.cgroupParent + "/small"});
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.AllocatedDiskSpace", "256"});
    HttpServer http(site.images);
    Harness h(site);

    SECTION("404 -> 7033") {
        checkFailedInstall(h, site, h.run(kInstall, {{"URL", http.url("missing.tar")}}), ErrorCode::kServerUnreachable);
    }
    SECTION("digest mismatch -> 7035") {
        checkFailedInstall(h, site, h.run(kInstall, {{"URL", http.url("tampered.tar")}}), ErrorCode::kCorruptData);
    }
    SECTION("path traversal in a layer -> 7035") {
        auto r = h.run(kInstall, {{"URL", http.url("evil.tar")}});
        checkFailedInstall(h, site, r, ErrorCode::kCorruptData);
        CHECK_FALSE(fs::exists(site.state / "escape"));
    }
    SECTION("an archive over the ExecEnv's disk budget -> 7227") {
        auto r = h.run(kInstall, {{"URL", http.url(good)}, {"ExecutionEnvRef", "Device.SoftwareModules.ExecEnv.2"}});
        checkFailedInstall(h, site, r, ErrorCode::kSystemResourcesExceeded);
        CHECK(site.stagingFiles("small") == 0);
        CHECK(site.imageRecords("small") == 0);
    }
    SECTION("an unknown ExecutionEnvRef -> 7223") {
        auto r = h.run(kInstall, {{"URL", http.url(good)}, {"ExecutionEnvRef", "Device.SoftwareModules.ExecEnv.9"}});
        checkFailedInstall(h, site, r, ErrorCode::kUnknownExecEnv);
    }
    SECTION("credentials in the URL -> 7004") {
        auto r = h.run(kInstall, {{"URL", "http://user:pw@127.0.0.1:" + std::to_string(http.port) + "/" + good}});
        checkFailedInstall(h, site, r, ErrorCode::kInvalidArguments);
    }
    SECTION("port mappings -> 7004 with a clear message") {
        auto r = h.run(kInstall, {{"URL", http.url(good)}, {"NetworkConfig.PortMapping.1.ExternalPort", "8080"}});
        checkFailedInstall(h, site, r, ErrorCode::kInvalidArguments);
        CHECK(r.error().message.find("not supported") != std::string::npos);
    }
    SECTION("a HostObject outside the allowed prefixes -> 7002") {
        auto r = h.run(kInstall, {{"URL", http.url(good)}, {"HostObject.1.Source", "/etc"}, {"HostObject.1.Destination", "/x"}});
        checkFailedInstall(h, site, r, ErrorCode::kRequestDenied);
    }
    SECTION("the same UUID and version twice -> 7226, the first stays") {
        h.install({{"URL", http.url(good)}});
        auto r = h.run(kInstall, {{"URL", http.url(good)}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kDuplicateDeploymentUnit);
        CHECK(h.rec.duEvents.back().at("Fault.FaultCode") == "7226");
        CHECK(h.rows("Device.SoftwareModules.DeploymentUnit.").size() == 1);
        CHECK(site.imageRecords() == 1);
    }
}

TEST_CASE("An EU OOM-killed right after it started shows FailureWhileActive with an OOM message while another EU keeps running",
          "[smm][integration]") {
    Site site;
    std::string a = buildApp(site.images, "hog", "1.0.0");
    std::string b = buildApp(site.images, "calm", "1.0.0");
    HttpServer http(site.images);
    Harness h(site);
    auto [hogDu, hog] = h.install({{"URL", http.url(a)},
                                   {"Resources.AllocatedMemory", "32768"},
                                   {"EnvVariable.1.Key", "APP_CMD"},
                                   {"EnvVariable.1.Value", "dd if=/dev/zero of=/dev/null bs=256M count=1"}});
    auto [calmDu, calm] = h.install({{"URL", http.url(b)}, {"ShutdownDelay", "2"}});
    REQUIRE(h.operate(calm + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(h.waitStatus(calm, "Active"));
    REQUIRE(h.operate(hog + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(h.waitFor([&] { return h.get(hog + "ExecutionFaultCode") == "FailureWhileActive"; }));
    REQUIRE(h.waitStatus(hog, "Idle"));
    CHECK(h.get(hog + "ExecutionFaultMessage").find("OOM") != std::string::npos);
    CHECK(h.get(hog + "ExecutionFaultMessage").find("32768 KiB") != std::string::npos);
    CHECK(h.get(hog + "X_BERTH_ExitStatus").find("OOM") != std::string::npos);
    CHECK(h.get(calm + "Status") == "Active");
    CHECK(h.get(calm + "ExecutionFaultCode") == "NoFault");
}

TEST_CASE("AutoRestart restarts a crashing EU and gives up with a fault after MaximumRetryCount", "[smm][integration]") {
    Site site;
    std::string a = buildApp(site.images, "crashy", "1.0.0");
    HttpServer http(site.images);
    Harness h(site);
    auto [du, eu] = h.install({{"URL", http.url(a)},
                               {"EnvVariable.1.Key", "APP_CMD"},
                               {"EnvVariable.1.Value", "sleep 0.5; exit 3"},
                               {"AutoRestart.Enable", "true"},
                               {"AutoRestart.RetryMinimumWaitInterval", "0"},
                               {"AutoRestart.RetryMaximumWaitInterval", "0"},
                               {"AutoRestart.RetryIntervalMultiplier", "2000"},
                               {"AutoRestart.MaximumRetryCount", "2"}});
    REQUIRE(h.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(h.waitFor([&] { return h.get(eu + "ExecutionFaultMessage").find("gave up") != std::string::npos; },
                      std::chrono::seconds(60)));
    CHECK(h.get(eu + "Status") == "Idle");
    CHECK(h.get(eu + "AutoRestart.RetryCount") == "2");
    CHECK(h.get(eu + "ExecutionFaultCode") == "FailureWhileActive");
    CHECK(h.get(eu + "ExecutionFaultMessage").find("exit 3") != std::string::npos);
    auto st = h.rec.statusesOf(eu);
    CHECK(std::count(st.begin(), st.end(), "Restarting") == 2);
    CHECK(std::count(st.begin(), st.end(), "Active") == 3);
}

TEST_CASE("Running containers survive a restart of the manager and are adopted, unknown containers are removed, and "
          "AutoStart EUs start at boot",
          "[smm][integration]") {
    Site site;
    std::string a = buildApp(site.images, "keeper", "1.0.0");
    std::string b = buildApp(site.images, "booter", "1.0.0");
    HttpServer http(site.images);
    std::string keeper, booter;
    pid_t pid = 0;
    {
        Harness h(site);
        keeper = h.install({{"URL", http.url(a)}, {"ShutdownDelay", "2"}}).second;
        booter = h.install({{"URL", http.url(b)}, {"ShutdownDelay", "2"}}).second;
        REQUIRE(h.engine->setValue(booter + "AutoStart", "true"));
        REQUIRE(h.operate(keeper + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
        REQUIRE(h.waitStatus(keeper, "Active"));
        // A container no EU knows, in the ExecEnv's runtime root.
        auto store = berth::oci::ImageStore::open(site.eeStore().string());
        REQUIRE(store);
        berth::oci::ContainerManagerOptions o;
        o.stateDir = site.eeState().string();
        o.cgroupParent = site.cgroupParent + "/apps";
        auto m = berth::oci::ContainerManager::open(o, **store);
        REQUIRE(m);
        auto images = (*store)->list();
        REQUIRE(images);
        REQUIRE_FALSE(images->empty());
        berth::oci::ContainerSettings s;
        s.args = {"/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"};
        REQUIRE((*m)->run("stray", images->front().manifestDigest, s));
        auto info = (*m)->info(h.get(keeper + "EUID"));
        REQUIRE(info);
        pid = info->pid;
    }
    REQUIRE(pid > 0);
    CHECK(::kill(pid, 0) == 0);  // still running without its manager
    Harness h(site);
    CHECK(h.get(keeper + "Status") == "Active");
    CHECK(std::stoll(h.get(keeper + "MemoryInUse")) > 0);
    CHECK_FALSE(fs::exists(site.eeState() / "containers" / "stray"));
    REQUIRE(h.waitStatus(booter, "Active"));
    // The adopted EU can still be stopped.
    REQUIRE(h.operate(keeper + "SetRequestedState()", {{"RequestedState", "Idle"}})->result);
    REQUIRE(h.waitStatus(keeper, "Idle"));
    REQUIRE(h.waitFor([&] { return ::kill(pid, 0) != 0; }));
}

TEST_CASE("ModifyConstraints refuses a memory limit below current use with 7022 unless forced, and SetRunLevel stops "
          "and starts AutoStart EUs",
          "[smm][integration]") {
    Site site;
    std::string a = buildApp(site.images, "user", "1.0.0");
    HttpServer http(site.images);
    Harness h(site);
    const std::string ee = "Device.SoftwareModules.ExecEnv.1.";
    auto [du, eu] = h.install({{"URL", http.url(a)}, {"ShutdownDelay", "2"}});
    REQUIRE(h.engine->setValue(eu + "AutoStart", "true"));
    REQUIRE(h.engine->setValue(eu + "RunLevel", "5"));
    REQUIRE(h.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(h.waitStatus(eu, "Active"));
    auto r = h.run(ee + "ModifyConstraints()", {{"AllocatedMemory", "1"}});
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kCommandFailure);
    CHECK(h.get(ee + "AllocatedMemory") == "-1");
    r = h.run(ee + "ModifyConstraints()", {{"AllocatedMemory", "1048576"}});
    REQUIRE(r);
    CHECK(h.get(ee + "AllocatedMemory") == "1048576");
    CHECK(std::stoll(h.get(ee + "AvailableMemory")) < 1048576);

    auto s = h.operate(ee + "SetRunLevel()", {{"RequestedRunLevel", "2"}});
    REQUIRE(s->result);
    REQUIRE(h.waitStatus(eu, "Idle"));
    s = h.operate(ee + "SetRunLevel()", {{"RequestedRunLevel", "5"}});
    REQUIRE(s->result);
    REQUIRE(h.waitStatus(eu, "Active"));
}

TEST_CASE("Two ExecEnvs side by side run their EUs with their own runtime (runc and crun)", "[smm][integration]") {
    if (berth::testing::findProgram("crun").empty()) SUCCEED("crun not installed");
    Site site;
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.Name", "crunapps"});
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.Enable", "true"});
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.X_BERTH_Runtime", "crun"});
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.X_BERTH_CgroupParent", site.cgroupParent + "/crunapps"});
    std::string a = buildApp(site.images, "twin", "1.0.0");
    HttpServer http(site.images);
    Harness h(site);
    CHECK(h.get("Device.SoftwareModules.ExecEnv.2.Status") == "Up");
    auto [du1, eu1] = h.install({{"URL", http.url(a)}, {"ShutdownDelay", "2"}});
    auto [du2, eu2] = h.install({{"URL", http.url(a)}, {"ExecutionEnvRef", "Device.SoftwareModules.ExecEnv.2"}, {"ShutdownDelay", "2"}});
    CHECK(h.get(du1 + "UUID") == h.get(du2 + "UUID"));  // same DU in two EEs
    CHECK(h.get(eu2 + "EUID") == "crunapps.2");
    CHECK(h.get("Device.SoftwareModules.ExecEnv.2.ExecEnvClassRef") != h.get("Device.SoftwareModules.ExecEnv.1.ExecEnvClassRef"));
    REQUIRE(h.operate(eu1 + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(h.operate(eu2 + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(h.waitStatus(eu1, "Active"));
    REQUIRE(h.waitStatus(eu2, "Active"));
    CHECK(fs::exists(site.eeState("crunapps") / "containers" / "crunapps.2"));
    REQUIRE(h.run(du2 + "Uninstall()", {}));
    CHECK(h.get(eu1 + "Status") == "Active");
}
