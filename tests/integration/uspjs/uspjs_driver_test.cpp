// Starts mosquitto and berthd (with a Controller row for usp-js), then runs
// uspjs_test.mjs with node. usp-js is installed into the build tree on first use.
#include <catch2/catch.hpp>

#include <iostream>

#include "berth/testing/agent_harness.h"
#include "berth/testing/uspjs.h"

using namespace berth::agenttest;
using namespace std::chrono_literals;

namespace {

const fs::path kNodeDir = USPJS_NODE_DIR;
const fs::path kSourceDir = USPJS_SOURCE_DIR;

}  // namespace

TEST_CASE("usp-js gets, sets, adds, deletes, operates and subscribes against berthd", "[uspjs]") {
    REQUIRE(!berth::testing::findProgram("node").empty());
    berth::testing::ensureUspJs(kNodeDir, kSourceDir);
    AgentFixture f([](std::string conf) { return conf + berth::testing::kUspJsControllerConfig; });

    auto env = berth::testing::uspJsEnvironment(kNodeDir, f.broker->port());
    env.push_back("ONBOARD_COMMAND=Device.LocalAgent.Controller.9.SendOnBoardRequest()");
    auto r = berth::testing::runNode(kSourceDir / "uspjs_test.mjs", f.tmp.path(), 120s, env);
    std::cout << r.out;
    INFO("usp-js output:\n" << r.out << "\nstderr:\n" << r.err << "\nberthd log:\n" << f.agent->log());
    CHECK(!r.timedOut);
    CHECK(r.status.success());
    CHECK(r.out.find("all usp-js steps passed") != std::string::npos);
}
