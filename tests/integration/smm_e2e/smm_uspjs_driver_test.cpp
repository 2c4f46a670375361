// usp-js as the controller of the SoftwareModules flow: the e2e fixture (mosquitto,
// berthd with an ExecEnv in a temporary directory) plus a Controller row for usp-js;
// smm_uspjs_test.mjs does the rest. usp-js is installed into the build tree on first
// use with the lock file of tests/integration/uspjs; exit 77 (skipped) only when npm
// cannot reach its registry.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <iostream>

#include "berth/core/process.h"
#include "e2e_fixture.h"

extern char** environ;

using namespace berth::smme2e;
using namespace std::chrono_literals;

namespace {

const fs::path kNodeDir = USPJS_NODE_DIR;
const fs::path kPackageDir = USPJS_PACKAGE_DIR;
const fs::path kScript = SMM_USPJS_SCRIPT;

const std::string kUspJsController = R"(
Device.LocalAgent.Controller.9.Alias "cpe-uspjs"
Device.LocalAgent.Controller.9.EndpointID "proto::uspjs"
Device.LocalAgent.Controller.9.Enable "true"
Device.LocalAgent.Controller.9.AssignedRole "Device.LocalAgent.ControllerTrust.Role.1."
Device.LocalAgent.Controller.9.MTP.1.Alias "cpe-uspjs-mqtt"
Device.LocalAgent.Controller.9.MTP.1.Enable "true"
Device.LocalAgent.Controller.9.MTP.1.Protocol "MQTT"
Device.LocalAgent.Controller.9.MTP.1.MQTT.AgentMTPReference "Device.LocalAgent.MTP.1."
Device.LocalAgent.Controller.9.MTP.1.MQTT.Topic "usp/controller/uspjs"
)";

berth::RunOutput run(std::vector<std::string> argv, const fs::path& cwd, std::chrono::seconds deadline,
                     std::optional<std::vector<std::string>> env = {}) {
    berth::SpawnOptions o;
    o.argv = std::move(argv);
    o.workingDir = cwd.string();
    o.env = std::move(env);
    auto r = berth::runCommand(o, deadline);
    INFO(o.argv[0]);
    REQUIRE(r);
    return *r;
}

void ensureUspJs() {
    if (fs::exists(kNodeDir / "node_modules" / "usp-js" / "package.json")) return;
    REQUIRE(!berth::testing::findProgram("npm").empty());
    fs::create_directories(kNodeDir);
    for (const char* f : {"package.json", "package-lock.json"})
        fs::copy_file(kPackageDir / f, kNodeDir / f, fs::copy_options::overwrite_existing);
    auto install = run({"npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"}, kNodeDir, 300s);
    if (install.status.success() && !install.timedOut) return;
    auto ping = run({"npm", "ping"}, kNodeDir, 60s);
    if (!ping.status.success() || ping.timedOut) {
        std::cout << "SKIPPED: npm cannot reach its registry, so usp-js cannot be installed:\n"
                  << ping.err << ping.out << std::endl;
        std::exit(77);
    }
    FAIL("npm ci failed although the registry answers:\n" << install.out << install.err);
}

}  // namespace

TEST_CASE("usp-js installs a DU with an async operate, sees DUStateChange!, starts, stops and uninstalls it",
          "[smm_e2e][uspjs]") {
    REQUIRE(!berth::testing::findProgram("node").empty());
    ensureUspJs();
    Fixture f([](std::string conf) { return conf + kUspJsController; });
    std::string archive = buildApp(f.www, "jsapp", "1.0.0");
    fs::path out = f.host / "jsapp";
    makeEuWritableDir(out);

    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    env.push_back("USPJS_NODE_DIR=" + kNodeDir.string());
    env.push_back("BROKER_PORT=" + std::to_string(f.broker->port()));
    env.push_back("AGENT_ID=os::012345-0001");
    env.push_back("AGENT_TOPIC=usp/agent/os::012345-0001");
    env.push_back("CONTROLLER_ID=proto::uspjs");
    env.push_back("CONTROLLER_TOPIC=usp/controller/uspjs");
    env.push_back("APP_URL=" + f.http->url(archive));
    env.push_back("HOST_DIR=" + out.string());
    auto r = run({"node", kScript.string()}, f.tmp.path(), 240s, env);
    std::cout << r.out;
    INFO("usp-js output:\n" << r.out << "\nstderr:\n" << r.err << "\nberthd log:\n" << f.agent->log());
    CHECK(!r.timedOut);
    CHECK(r.status.success());
    CHECK(r.out.find("all usp-js software module steps passed") != std::string::npos);
    // What usp-js saw matches the runtime: nothing left.
    CHECK(f.runcList().empty());
    CHECK(f.filesIn(f.eeStore / "images") == 0);
}
