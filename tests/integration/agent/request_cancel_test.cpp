// Device.LocalAgent.Request.{i}.Cancel() end to end: an InstallDU() whose download
// stalls is canceled by a controller; the waiting controller gets OperationComplete
// with 7023 and nothing is installed.
#include <catch2/catch.hpp>
#include <string>

#include "berth/testing/agent_harness.h"

#ifdef BERTH_WITH_OCI

using namespace berth::agenttest;
using namespace std::chrono_literals;

namespace {

// Answers every request with the headers of a 100 MB body, sends 1 KiB of it and
// then nothing: a download that never finishes.
constexpr const char* kStallingServer = R"(
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
held = []
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n" + b"\0" * 1024)
    held.append(c)
)";

}  // namespace

TEST_CASE("Cancel() of an InstallDU that is still downloading ends it with 7023 and installs nothing",
          "[integration][cancel]") {
    AgentFixture f;
    REQUIRE(f.waitAnswering());
    int webPort = berth::testing::freeTcpPort();
    berth::testing::writeFile(f.tmp / "stall.py", kStallingServer);
    auto web = berth::testing::ProcessGuard::start({"python3", (f.tmp / "stall.py").string(), std::to_string(webPort)},
                                                   (f.tmp / "stall.log").string());
    REQUIRE(berth::testing::waitUntil([&] { return berth::testing::tcpPortOpen(webPort); }));

    // The operator's session starts the install and waits for its OperationComplete.
    std::string url = "http://127.0.0.1:" + std::to_string(webPort) + "/app.tar";
    auto waiter = berth::testing::ProcessGuard::start(
        {BERTHCTL_BIN, "--mqtt", f.broker->address(), "--timeout", "10", "operate",
         "Device.SoftwareModules.InstallDU()", "URL=" + url, "ExecutionEnvRef=Device.SoftwareModules.ExecEnv.1.", "--wait",
         "--wait-timeout", "60"},
        (f.tmp / "waiter.out").string());

    // A second session (the watch controller of the example configuration) cancels it.
    const std::vector<std::string> second = {"--id", "self::berthctl-watch", "--topic", "usp/controller/berthctl-watch"};
    auto withSecond = [&](std::vector<std::string> args) {
        std::vector<std::string> all = second;
        all.insert(all.end(), args.begin(), args.end());
        return f.ctl(all);
    };
    REQUIRE(berth::testing::waitUntil(
        [&] {
            auto g = withSecond({"get", "Device.LocalAgent.Request.1.Status"});
            return g.exitCode == 0 && paramValue(g.json, "Device.LocalAgent.Request.1.Status") == "Active";
        },
        30s));
    auto cancel = withSecond({"operate", "Device.LocalAgent.Request.1.Cancel()"});
    REQUIRE(cancel.exitCode == 0);

    // The waiting session sees the failure with 7023 and exits with 1 (the agent answered with an error).
    REQUIRE(berth::testing::waitUntil([&] { return !waiter->running(); }, 30s));
    auto status = waiter->stop();
    std::string out = berth::testing::readFile(f.tmp / "waiter.out");
    INFO(out);
    CHECK(status.exited);
    CHECK(status.code == 1);
    CHECK(out.find("7023") != std::string::npos);

    // Nothing was installed and the Request row is gone.
    auto dus = withSecond({"instances", "Device.SoftwareModules.DeploymentUnit."});
    CHECK(dus.exitCode == 0);
    CHECK(dus.out.find("DeploymentUnit.1") == std::string::npos);
    auto req = withSecond({"get", "Device.LocalAgent.Request.1.Status"});
    CHECK(req.exitCode != 0);
    // A second Cancel() of a finished request is refused, not silently accepted.
    auto again = withSecond({"operate", "Device.LocalAgent.Request.1.Cancel()"});
    CHECK(again.exitCode != 0);
}

#endif
