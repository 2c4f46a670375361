// Crash recovery: a forked child runs the engine + SoftwareModules and is SIGKILLed
// from the journal hook at each step of InstallDU, Update and Uninstall; a fresh
// engine + SoftwareModules over the same directories must then agree with the disk
// and the runtime, report the interrupted operation, and leave no staging files.
#include <sys/wait.h>

#include "smm_harness.h"

using namespace smmtest;

namespace {

// Runs body in a child whose journal hook kills it at `step`. True when it died by SIGKILL.
bool crashAt(Site& site, const std::string& step, const std::function<void(Harness&)>& body) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        try {
            Harness h(site, [step](std::string_view s) {
                if (s == step) ::raise(SIGKILL);
            });
            body(h);
        } catch (...) {
            ::_exit(2);
        }
        ::_exit(3);  // the step was never reached
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

void runOp(Harness& h, const std::string& command, const ArgMap& args) {
    auto c = h.operate(command, args, "crash-key");
    berth::testing::runUntil(h.loop, [&] { return c->done; }, std::chrono::seconds(60));
}

// The data model agrees with the store and the runtime.
void checkConsistent(Harness& h, Site& site) {
    CHECK(site.stagingFiles() == 0);
    auto dus = h.rows("Device.SoftwareModules.DeploymentUnit.");
    CHECK(site.imageRecords() == dus.size());
    for (const auto& du : dus) {
        CHECK(h.get(du + "Status") == "Installed");
        CHECK(fs::exists(site.eeStore() / "images" / (h.get(du + "DUID") + ".json")));
    }
    for (const auto& eu : h.rows("Device.SoftwareModules.ExecutionUnit.")) {
        bool container = fs::exists(site.eeState() / "containers" / h.get(eu + "EUID"));
        CHECK(container == (h.get(eu + "Status") == "Active"));
    }
}

void checkInterrupted(Harness& h, const std::string& operation, bool completed) {
    auto ops = h.smm->interruptedOperations();
    REQUIRE(ops.size() == 1);
    CHECK(ops[0].operation == operation);
    CHECK(ops[0].commandKey == "crash-key");
    CHECK(static_cast<bool>(ops[0].outcome) == completed);
    if (!completed) CHECK(ops[0].outcome.error().code == berth::ErrorCode::kInternalError);
    REQUIRE(h.rec.duEvents.size() == 1);
    CHECK(h.rec.duEvents[0].at("OperationPerformed") == operation);
    CHECK(h.rec.duEvents[0].at("Fault.FaultCode") == (completed ? "0" : "7003"));
}

}  // namespace

TEST_CASE("An InstallDU killed at any journal step is rolled back completely after a restart", "[smm][integration][crash]") {
    std::string step = GENERATE(as<std::string>{}, "install.started", "install.pulled", "install.committing",
                                "install.committed");
    Site site;
    std::string a = buildApp(site.images, "crashinst", "1.0.0");
    HttpServer http(site.images);
    { Harness prepare(site); }  // the database exists before the child opens it
    REQUIRE(crashAt(site, step, [&](Harness& h) { runOp(h, "Device.SoftwareModules.InstallDU()", {{"URL", http.url(a)}}); }));
    Harness h(site);
    INFO(step);
    CHECK(h.rows("Device.SoftwareModules.DeploymentUnit.").empty());
    CHECK(h.rows("Device.SoftwareModules.ExecutionUnit.").empty());
    checkConsistent(h, site);
    checkInterrupted(h, "Install", false);
    CHECK(h.rec.duEvents[0].at("CurrentState") == "Failed");
    // And the same install works afterwards.
    h.install({{"URL", http.url(a)}});
}

TEST_CASE("An Update killed at any journal step leaves the DU at one version with its image", "[smm][integration][crash]") {
    std::string step = GENERATE(as<std::string>{}, "update.started", "update.pulled", "update.stopped",
                                "update.committing", "update.committed");
    Site site;
    std::string v1 = buildApp(site.images, "crashupd", "1.0.0");
    std::string v2 = buildApp(site.images, "crashupd", "2.0.0");
    HttpServer http(site.images);
    std::string du, eu;
    {
        Harness h(site);
        std::tie(du, eu) = h.install({{"URL", http.url(v1)}, {"ShutdownDelay", "2"}});
        REQUIRE(h.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
        REQUIRE(h.waitStatus(eu, "Active"));
    }
    REQUIRE(crashAt(site, step, [&](Harness& h) { runOp(h, du + "Update()", {{"URL", http.url(v2)}}); }));
    Harness h(site);
    INFO(step);
    bool completed = step == "update.committed";
    CHECK(h.get(du + "Version") == (completed ? "2.0.0" : "1.0.0"));
    checkConsistent(h, site);
    checkInterrupted(h, "Update", completed);
    CHECK(h.rec.duEvents[0].at("CurrentState") == (completed ? "Installed" : "Failed"));
    // Still usable: the EU starts from whatever version the DU has.
    REQUIRE(h.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(h.waitStatus(eu, "Active"));
}

TEST_CASE("An Uninstall killed at any journal step leaves the DU either installed or gone", "[smm][integration][crash]") {
    std::string step = GENERATE(as<std::string>{}, "uninstall.started", "uninstall.stopped", "uninstall.committing",
                                "uninstall.committed");
    Site site;
    std::string a = buildApp(site.images, "crashrm", "1.0.0");
    HttpServer http(site.images);
    std::string du, eu;
    {
        Harness h(site);
        std::tie(du, eu) = h.install({{"URL", http.url(a)}, {"ShutdownDelay", "2"}});
        REQUIRE(h.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
        REQUIRE(h.waitStatus(eu, "Active"));
    }
    REQUIRE(crashAt(site, step, [&](Harness& h) { runOp(h, du + "Uninstall()", {}); }));
    Harness h(site);
    INFO(step);
    bool completed = step == "uninstall.committed";
    CHECK(h.rows("Device.SoftwareModules.DeploymentUnit.").size() == (completed ? 0u : 1u));
    checkConsistent(h, site);
    checkInterrupted(h, "Uninstall", completed);
    CHECK(h.rec.duEvents[0].at("CurrentState") == (completed ? "Uninstalled" : "Failed"));
    if (!completed) {
        CHECK(h.get(du + "Status") == "Installed");
        REQUIRE(h.run(du + "Uninstall()", {}));
        CHECK(h.rows("Device.SoftwareModules.DeploymentUnit.").empty());
    }
}
