// usp-js as the controller of the SoftwareModules flow: the e2e fixture (mosquitto,
// berthd with an ExecEnv in a temporary directory) plus a Controller row for usp-js;
// smm_uspjs_test.mjs does the rest. usp-js is installed into the build tree on first
// use with the lock file of tests/integration/uspjs; exit 77 (skipped) only when npm
// cannot reach its registry.
#include <catch2/catch.hpp>

#include <iostream>

#include "berth/testing/uspjs.h"
#include "e2e_fixture.h"

using namespace berth::smme2e;
using namespace std::chrono_literals;

namespace {

const fs::path kNodeDir = USPJS_NODE_DIR;
const fs::path kPackageDir = USPJS_PACKAGE_DIR;
const fs::path kScript = SMM_USPJS_SCRIPT;

}  // namespace

TEST_CASE("usp-js installs a DU with an async operate, sees DUStateChange!, starts, stops and uninstalls it",
          "[smm_e2e][uspjs]") {
    REQUIRE(!berth::testing::findProgram("node").empty());
    berth::testing::ensureUspJs(kNodeDir, kPackageDir);
    Fixture f([](std::string conf) { return conf + berth::testing::kUspJsControllerConfig; });
    std::string archive = buildApp(f.www, "jsapp", "1.0.0");
    fs::path out = f.host / "jsapp";
    makeEuWritableDir(out);

    auto env = berth::testing::uspJsEnvironment(kNodeDir, f.broker->port());
    env.push_back("APP_URL=" + f.http->url(archive));
    env.push_back("HOST_DIR=" + out.string());
    auto r = berth::testing::runNode(kScript, f.tmp.path(), 240s, env);
    std::cout << r.out;
    INFO("usp-js output:\n" << r.out << "\nstderr:\n" << r.err << "\nberthd log:\n" << f.agent->log());
    CHECK(!r.timedOut);
    CHECK(r.status.success());
    CHECK(r.out.find("all usp-js software module steps passed") != std::string::npos);
    // What usp-js saw matches the runtime: nothing left.
    CHECK(f.runcList().empty());
    CHECK(f.filesIn(f.eeStore / "images") == 0);
}
