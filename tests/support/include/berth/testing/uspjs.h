#pragma once
// usp-js (npm) as a real controller in tests: its Controller row for berthd's
// configuration, its installation into the build tree, and a node driver script run
// with the environment such scripts read.
//
// Failures end the running Catch2 test (REQUIRE); the process exits 77 (ctest: skipped)
// only when npm cannot reach its registry.

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "berth/core/process.h"

namespace berth::testing {

// Controller.9, endpoint proto::uspjs, on usp/controller/uspjs: usp-js speaks MQTT 3.1.1
// without a reply-to, so berthd answers on this topic. Append it to a configuration.
extern const char* const kUspJsControllerConfig;

// Installs usp-js into nodeDir (npm ci with the package.json and package-lock.json of
// packageDir) unless it is there. Exits 77 when npm cannot reach its registry; any other
// npm failure fails the test.
void ensureUspJs(const std::filesystem::path& nodeDir, const std::filesystem::path& packageDir);

// This process's environment plus what every usp-js driver script reads: USPJS_NODE_DIR,
// BROKER_PORT, AGENT_ID/AGENT_TOPIC (examples/berth.conf's agent), CONTROLLER_ID and
// CONTROLLER_TOPIC (kUspJsControllerConfig's). Add script-specific "K=V" entries to it.
std::vector<std::string> uspJsEnvironment(const std::filesystem::path& nodeDir, int brokerPort);

// Runs `node script` in cwd with `env`; fails the test when it cannot be started. A run
// past `deadline` is killed and reported as timedOut.
RunOutput runNode(const std::filesystem::path& script, const std::filesystem::path& cwd, std::chrono::seconds deadline,
                  std::vector<std::string> env);

}  // namespace berth::testing
