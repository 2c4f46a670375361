// berthd started with factory reset files written as obuspa's STOMP and WebSocket
// examples are (quoted and unquoted values, a stray closing quote, Internal lines, no
// DeviceInfo and no roles), reached over a real ActiveMQ and over its own WebSocket
// server. References carry a trailing dot, so the tests do not depend on how berth
// writes references back.
#include <catch2/catch.hpp>

#include "berth/core/process.h"
#include "berth/testing/activemq.h"
#include "berth/testing/agent_harness.h"

using namespace berth;
using namespace berth::agenttest;
using namespace std::chrono_literals;

namespace {

// berthd with obuspa's options and a fixed serial number (obuspa's USP_BOARD_SERIAL),
// so its endpoint ID is os::000000-<serial>.
std::unique_ptr<testing::ProcessGuard> startObuspaStyle(const fs::path& dir, const std::string& file,
                                                        const std::string& serial) {
    fs::create_directories(dir);
    testing::writeFile(dir / "reset.txt", file);
    return testing::ProcessGuard::start(
        {BERTHD_BIN, "-r", (dir / "reset.txt").string(), "-f", (dir / "usp.db").string(), "-v", "4"},
        (dir / "berthd.out").string(), std::vector<std::string>{"USP_BOARD_SERIAL=" + serial, "PATH=/usr/bin:/bin"});
}

bool waitAnswering(testing::ProcessGuard& agent, const std::vector<std::string>& transport) {
    return testing::waitUntil(
               [&] {
                   if (!agent.running()) return true;
                   std::vector<std::string> argv{BERTHCTL_BIN};
                   argv.insert(argv.end(), transport.begin(), transport.end());
                   argv.insert(argv.end(), {"--timeout", "2", "get", "Device.LocalAgent.EndpointID"});
                   SpawnOptions o;
                   o.argv = argv;
                   auto run = runCommand(o, 30s);
                   return run && run->status.success();
               },
               30s) &&
           agent.running();
}

std::optional<std::string> getValue(const std::vector<std::string>& transport, const std::string& path) {
    std::vector<std::string> argv{BERTHCTL_BIN};
    argv.insert(argv.end(), transport.begin(), transport.end());
    argv.insert(argv.end(), {"--timeout", "5", "--json", "get", path});
    auto r = runCtl(argv);
    return r.exitCode == 0 ? paramValue(r.json, path) : std::nullopt;
}

}  // namespace

TEST_CASE("A factory file in the style of obuspa's STOMP example starts berthd, which answers over ActiveMQ",
          "[agent-mtps][stomp][obuspa]") {
    testing::TempDir tmp("berth-obuspa-stomp");
    testing::ActiveMq broker(tmp / "broker");
    const std::string file =
        "# obuspa-style STOMP factory reset file\n"
        "Device.LocalAgent.Controller.1.EndpointID \"self::berthctl\"\n"
        "Device.STOMP.Connection.1.Host \"127.0.0.1\"\n"
        "Device.STOMP.Connection.1.Username \"username\"\n"
        "Device.STOMP.Connection.1.Password \"password\"\n"
        "Device.LocalAgent.MTP.1.Alias \"cpe-1\"\n"
        "Device.LocalAgent.MTP.1.Enable \"true\"\n"
        "Device.LocalAgent.MTP.1.Protocol \"STOMP\"\n"
        "Device.LocalAgent.MTP.1.STOMP.Reference \"Device.STOMP.Connection.1.\"\n"
        "Device.LocalAgent.MTP.1.STOMP.Destination \"/queue/agent-1\"\n"
        "Device.LocalAgent.Controller.1.Alias \"cpe-1\"\n"
        "Device.LocalAgent.Controller.1.Enable true\n"
        "Device.LocalAgent.Controller.1.AssignedRole \"Device.LocalAgent.ControllerTrust.Role.1.\"\n"
        "Device.LocalAgent.Controller.1.PeriodicNotifInterval \"86400\"\n"
        "Device.LocalAgent.Controller.1.MTP.1.Alias \"cpe-1\" \n"
        "Device.LocalAgent.Controller.1.MTP.1.Enable \"true\"\n"
        "Device.LocalAgent.Controller.1.MTP.1.Protocol \"STOMP\"\n"
        "Device.LocalAgent.Controller.1.MTP.1.STOMP.Reference \"Device.STOMP.Connection.1.\"\n"
        "Device.LocalAgent.Controller.1.MTP.1.STOMP.Destination \"/queue/controller-notify-dest\"\"\n"
        "Device.STOMP.Connection.1.Alias \"cpe-1\"\n"
        "Device.STOMP.Connection.1.Enable true\n"
        "Device.STOMP.Connection.1.Port \"" +
        std::to_string(broker.stompPort()) +
        "\"\n"
        "Device.STOMP.Connection.1.EnableEncryption false\n"
        "Device.STOMP.Connection.1.VirtualHost \"/\"\n"
        "Device.STOMP.Connection.1.EnableHeartbeats \"true\"\n"
        "Device.STOMP.Connection.1.OutgoingHeartbeat \"30000\"\n"
        "Device.STOMP.Connection.1.IncomingHeartbeat \"300000\"\n"
        "Device.STOMP.Connection.1.ServerRetryInitialInterval \"1\"\n"
        "Internal.Reboot.Cause \"LocalFactoryReset\"\n";
    auto agent = startObuspaStyle(tmp / "agent", file, "SN-STOMP");
    const std::vector<std::string> transport{"--stomp",
                                             "127.0.0.1:" + std::to_string(broker.stompPort()),
                                             "--agent",
                                             "os::000000-SN-STOMP",
                                             "--agent-destination",
                                             "/queue/agent-1"};
    bool up = waitAnswering(*agent, transport);
    auto out = testing::readFile(tmp / "agent" / "berthd.out");
    INFO(out);
    REQUIRE(up);
    CHECK(getValue(transport, "Device.LocalAgent.Controller.1.MTP.1.STOMP.Destination") ==
          "/queue/controller-notify-dest");
    CHECK(getValue(transport, "Device.STOMP.Connection.1.EnableEncryption") == "false");
    CHECK(getValue(transport, "Device.DeviceInfo.SerialNumber") == "SN-STOMP");
    CHECK(out.find("reset.txt:19: stray double quote") != std::string::npos);
}

TEST_CASE("A factory file in the style of obuspa's WebSocket example starts berthd, which answers on its server",
          "[agent-mtps][websocket][obuspa]") {
    testing::TempDir tmp("berth-obuspa-ws");
    const int port = testing::freeTcpPort();
    const std::string file =
        "# obuspa-style WebSocket factory reset file\n"
        "Device.LocalAgent.Controller.1.EndpointID \"self::berthctl\"\n"
        "Device.LocalAgent.MTP.1.WebSocket.Port \"" +
        std::to_string(port) +
        "\"\n"
        "Device.LocalAgent.MTP.1.WebSocket.Path \"/usp\"\n"
        "Device.LocalAgent.MTP.1.WebSocket.EnableEncryption false\n"
        "Device.LocalAgent.MTP.1.Alias \"cpe-1\"\n"
        "Device.LocalAgent.MTP.1.Enable true\n"
        "Device.LocalAgent.MTP.1.Protocol \"WebSocket\"\n"
        "Device.LocalAgent.MTP.1.WebSocket.KeepAliveInterval \"30\"\n"
        "Device.LocalAgent.Controller.1.Alias \"cpe-1\"\n"
        "Device.LocalAgent.Controller.1.Enable \"true\"\n"
        "Device.LocalAgent.Controller.1.AssignedRole \"Device.LocalAgent.ControllerTrust.Role.1.\"\n"
        "Device.LocalAgent.Controller.1.MTP.1.Alias \"cpe-1\"\n"
        "Device.LocalAgent.Controller.1.MTP.1.Enable \"true\"\n"
        "Device.LocalAgent.Controller.1.MTP.1.Protocol \"WebSocket\"\n"
        "Device.LocalAgent.Controller.1.MTP.1.WebSocket.IsEncrypted false\n"
        "Device.LocalAgent.Controller.1.MTP.1.WebSocket.SessionRetryMinimumWaitInterval \"5\"\n"
        "Internal.Reboot.Cause \"LocalFactoryReset\"\n";
    auto agent = startObuspaStyle(tmp / "agent", file, "SN-WS");
    const std::vector<std::string> transport{"--ws", "127.0.0.1:" + std::to_string(port), "--agent",
                                             "os::000000-SN-WS"};
    bool up = waitAnswering(*agent, transport);
    auto out = testing::readFile(tmp / "agent" / "berthd.out");
    INFO(out);
    REQUIRE(up);
    CHECK(getValue(transport, "Device.LocalAgent.MTP.1.WebSocket.EnableEncryption") == "false");
    // The deleted IsEncrypted became EnableEncryption, with a warning naming the line.
    CHECK(getValue(transport, "Device.LocalAgent.Controller.1.MTP.1.WebSocket.EnableEncryption") == "false");
    CHECK(out.find("reset.txt:16: 'Device.LocalAgent.Controller.1.MTP.1.WebSocket.IsEncrypted' is deleted") !=
          std::string::npos);
}
