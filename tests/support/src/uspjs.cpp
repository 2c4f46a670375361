#include "berth/testing/uspjs.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <iostream>
#include <optional>

#include "berth/testing/support.h"

extern char** environ;

namespace berth::testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const char* const kUspJsControllerConfig = R"(
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

namespace {

RunOutput run(std::vector<std::string> argv, const fs::path& cwd, std::chrono::seconds deadline,
              std::optional<std::vector<std::string>> env = {}) {
    SpawnOptions o;
    o.argv = std::move(argv);
    o.workingDir = cwd.string();
    o.env = std::move(env);
    auto r = runCommand(o, deadline);
    INFO(o.argv[0]);
    REQUIRE(r);
    return *r;
}

}  // namespace

void ensureUspJs(const fs::path& nodeDir, const fs::path& packageDir) {
    if (fs::exists(nodeDir / "node_modules" / "usp-js" / "package.json")) return;
    REQUIRE(!findProgram("npm").empty());
    fs::create_directories(nodeDir);
    for (const char* f : {"package.json", "package-lock.json"})
        fs::copy_file(packageDir / f, nodeDir / f, fs::copy_options::overwrite_existing);
    auto install = run({"npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"}, nodeDir, 300s);
    if (install.status.success() && !install.timedOut) return;
    auto ping = run({"npm", "ping"}, nodeDir, 60s);
    if (!ping.status.success() || ping.timedOut) {
        std::cout << "SKIPPED: npm cannot reach its registry, so usp-js cannot be installed:\n"
                  << ping.err << ping.out << std::endl;
        std::exit(77);
    }
    FAIL("npm ci failed although the registry answers:\n" << install.out << install.err);
}

std::vector<std::string> uspJsEnvironment(const fs::path& nodeDir, int brokerPort) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e)
        env.emplace_back(*e);
    env.push_back("USPJS_NODE_DIR=" + nodeDir.string());
    env.push_back("BROKER_PORT=" + std::to_string(brokerPort));
    env.push_back("AGENT_ID=os::012345-0001");
    env.push_back("AGENT_TOPIC=usp/agent/os::012345-0001");
    env.push_back("CONTROLLER_ID=proto::uspjs");
    env.push_back("CONTROLLER_TOPIC=usp/controller/uspjs");
    return env;
}

RunOutput runNode(const fs::path& script, const fs::path& cwd, std::chrono::seconds deadline,
                  std::vector<std::string> env) {
    REQUIRE(!findProgram("node").empty());
    return run({"node", script.string()}, cwd, deadline, std::move(env));
}

}  // namespace berth::testing
