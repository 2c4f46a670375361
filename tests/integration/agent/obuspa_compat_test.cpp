// berthd started the way obuspa users start obuspa: factory reset files written in the
// style of obuspa's examples (unquoted booleans, Internal.* lines, the deleted
// Controller.{i}.MTP.{i}.MQTT.Reference, a stray closing quote, no DeviceInfo and no
// roles) and obuspa's command-line options, against a real mosquitto.
//
// References in these files carry a trailing dot so that the tests do not depend on
// how berth writes references back.
#include <sys/stat.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>

#include "berth/core/process.h"
#include "berth/testing/agent_harness.h"
#include "berth/testing/test_certs.h"

using namespace berth::agenttest;
using namespace std::chrono_literals;

namespace {

const std::string kAgentTopic = "usp/agent/obuspa-style";
const std::string kControllerTopic = "usp/controller/berthctl";

// A factory reset file as obuspa's MQTT example writes it, aimed at the test broker.
// Line numbers matter to the tests: the deleted parameter is on line 21, the stray
// quote on line 22, Internal.Reboot.Cause on line 27.
std::string obuspaStyleFile(int brokerPort) {
    return "#\n"
           "# Factory reset file in the style of obuspa's mqtt_factory_reset_example.txt\n"
           "#\n"
           "Device.LocalAgent.Controller.1.EndpointID \"self::berthctl\"\n"
           "Device.MQTT.Client.1.BrokerAddress \"127.0.0.1\"\n"
           "Device.MQTT.Client.1.BrokerPort \"" +
           std::to_string(brokerPort) +
           "\"\n"
           "Device.MQTT.Client.1.ProtocolVersion \"5.0\"\n"
           "Device.MQTT.Client.1.Enable true\n"
           "Device.MQTT.Client.1.ClientID \"\"\n"
           "Device.MQTT.Client.1.ConnectRetryTime \"1\"\n"
           "Device.MQTT.Client.1.ConnectRetryIntervalMultiplier   \"2000\"\n"
           "Device.LocalAgent.MTP.1.Alias \"cpe-1\"\n"
           "Device.LocalAgent.MTP.1.Enable true\n"
           "Device.LocalAgent.MTP.1.Protocol \"MQTT\"\n"
           "Device.LocalAgent.MTP.1.MQTT.ResponseTopicConfigured \"" +
           kAgentTopic +
           "\"\n"
           "Device.LocalAgent.MTP.1.MQTT.Reference \"Device.MQTT.Client.1.\"\n"
           "Device.LocalAgent.Controller.1.Enable true\n"
           "Device.LocalAgent.Controller.1.AssignedRole \"Device.LocalAgent.ControllerTrust.Role.1.\"\n"
           "Device.LocalAgent.Controller.1.MTP.1.Enable true\n"
           "Device.LocalAgent.Controller.1.MTP.1.Protocol \"MQTT\"\n"
           "Device.LocalAgent.Controller.1.MTP.1.MQTT.Reference \"Device.MQTT.Client.1.\"\n"
           "Device.LocalAgent.Controller.1.MTP.1.MQTT.Topic \"" +
           kControllerTopic +
           "\"\"\n"
           "Device.LocalAgent.Controller.1.OnBoardingComplete true\n"
           "Device.LocalAgent.Subscription.1.Enable true\n"
           "Device.LocalAgent.Subscription.1.Recipient \"Device.LocalAgent.Controller.1.\"\n"
           "Device.LocalAgent.Subscription.1.NotifType \"Event\"\n"
           "Internal.Reboot.Cause \"LocalFactoryReset\"\n"
           "Device.LocalAgent.Subscription.1.ReferenceList \"Device.Boot!\"\n"
           "Device.LocalAgent.Subscription.1.ID \"boot\"\n"
           "Device.LocalAgent.Subscription.1.Persistent true\n";
}

// The first interface that is up, not a loopback and has a MAC address: its name and
// the serial number obuspa (and berth) derive from it.
std::pair<std::string, std::string> someInterface() {
    for (const auto& entry : fs::directory_iterator("/sys/class/net")) {
        auto read = [&](const char* f) {
            auto s = berth::testing::readFile(entry.path() / f);
            while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
                s.pop_back();
            return s;
        };
        unsigned long flags = std::strtoul(read("flags").c_str(), nullptr, 16);
        if (!(flags & 1) || (flags & 8) || read("type") != "1") continue;
        std::string serial;
        for (char c : read("address"))
            if (c != ':') serial += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        if (serial.size() == 12 && serial != "000000000000") return {entry.path().filename().string(), serial};
    }
    return {};
}

// A broker, a directory, and berthd started with the given command line.
struct ObuspaRig {
    berth::testing::TempDir tmp{"berth-obuspa-it"};
    std::unique_ptr<berth::testing::Mosquitto> broker;
    std::unique_ptr<berth::testing::ProcessGuard> agent;
    std::string agentId;

    ObuspaRig() {
        ::chmod(tmp.path().c_str(), 0755);
        broker = std::make_unique<berth::testing::Mosquitto>(tmp / "broker");
    }
    fs::path resetFile(const std::string& text) {
        berth::testing::writeFile(tmp / "reset.txt", text);
        return tmp / "reset.txt";
    }
    void start(std::vector<std::string> args) {
        args.insert(args.begin(), BERTHD_BIN);
        agent = berth::testing::ProcessGuard::start(args, (tmp / "berthd.out").string());
    }
    std::string output() const { return berth::testing::readFile(tmp / "berthd.out"); }
    CtlResult ctl(std::vector<std::string> args, double timeout = 5) {
        std::vector<std::string> argv{
            BERTHCTL_BIN, "--mqtt",  broker->address(), "--timeout",     std::to_string(timeout),
            "--json",     "--agent", agentId,           "--agent-topic", kAgentTopic};
        argv.insert(argv.end(), args.begin(), args.end());
        return runCtl(argv);
    }
    bool waitAnswering() {
        return berth::testing::waitUntil(
                   [&] {
                       return !agent->running() || ctl({"get", "Device.LocalAgent.EndpointID"}, 0.5).exitCode == 0;
                   },
                   20s) &&
               agent->running();
    }
    std::optional<std::string> get(const std::string& path) {
        auto r = ctl({"get", path});
        return r.exitCode == 0 ? paramValue(r.json, path) : std::nullopt;
    }
};

// A berthd run that is expected to stop at once: its exit code and what it printed.
struct QuickRun {
    int exitCode = -1;
    std::string output;
};
QuickRun runBerthd(std::vector<std::string> args) {
    args.insert(args.begin(), BERTHD_BIN);
    berth::SpawnOptions o;
    o.argv = args;
    auto run = berth::runCommand(o, 30s);
    REQUIRE(run);
    REQUIRE(!run->timedOut);
    return {run->status.shellCode(), run->out + run->err};
}

}  // namespace

TEST_CASE(
    "berthd started the obuspa way (-r FILE -f DB -v 4 -p -i IF) with an obuspa-style file answers and the values "
    "landed",
    "[agent][obuspa]") {
    auto [ifname, serial] = someInterface();
    REQUIRE_FALSE(ifname.empty());
    ObuspaRig rig;
    auto reset = rig.resetFile(obuspaStyleFile(rig.broker->port()));
    // No DeviceInfo in the file: the endpoint ID is os::<default OUI>-<MAC of -i>.
    rig.agentId = "os::000000-" + serial;
    rig.start({"-r", reset.string(), "-f", (rig.tmp / "db" / "usp.db").string(), "-v", "4", "-p", "-i", ifname});
    bool up = rig.waitAnswering();
    INFO(rig.output());
    REQUIRE(up);

    CHECK(rig.get("Device.LocalAgent.EndpointID") == rig.agentId);
    CHECK(rig.get("Device.DeviceInfo.ManufacturerOUI") == "000000");
    CHECK(rig.get("Device.DeviceInfo.ProductClass") == "berth");
    CHECK(rig.get("Device.DeviceInfo.SerialNumber") == serial);
    // Unquoted booleans landed as booleans.
    CHECK(rig.get("Device.LocalAgent.MTP.1.Enable") == "true");
    CHECK(rig.get("Device.MQTT.Client.1.Enable") == "true");
    // The stray closing quote was dropped, not kept in the value.
    CHECK(rig.get("Device.LocalAgent.Controller.1.MTP.1.MQTT.Topic") == kControllerTopic);
    // The deleted MQTT.Reference became AgentMTPReference to the agent's MTP row.
    auto ref = rig.get("Device.LocalAgent.Controller.1.MTP.1.MQTT.AgentMTPReference");
    REQUIRE(ref);
    CHECK(ref->rfind("Device.LocalAgent.MTP.1", 0) == 0);
    CHECK(ref->size() <= std::string("Device.LocalAgent.MTP.1.").size());
    // obuspa's built-in roles: Role.1 gives the controller full access (the Gets above).
    CHECK(rig.get("Device.LocalAgent.ControllerTrust.Role.1.Name") == "Full Access");

    auto out = rig.output();
    // Warnings name the file and line.
    CHECK(out.find(reset.string() +
                   ":21: 'Device.LocalAgent.Controller.1.MTP.1.MQTT.Reference' is deleted from TR-181") !=
          std::string::npos);
    CHECK(out.find(reset.string() + ":22: stray double quote") != std::string::npos);
    // -v 4 is debug, -p traces every USP message.
    CHECK(out.find(" DEBUG ") != std::string::npos);
    CHECK(out.find("[usp] received GET msg_id") != std::string::npos);
    CHECK(out.find("[usp] sent GET_RESP msg_id") != std::string::npos);
}

TEST_CASE("Internal.Reboot.Cause of the factory file is the cause Boot! reports for the new database",
          "[agent][obuspa]") {
    ObuspaRig rig;
    auto reset = rig.resetFile(obuspaStyleFile(rig.broker->port()));
    rig.agentId = "os::000000-SN-BOOT";
    // Boot! is sent as soon as the MTP is up: listen on the controller's topic first.
    auto subOut = rig.tmp / "sub.out";
    auto sub = berth::testing::ProcessGuard::start(
        {"stdbuf", "-oL", "mosquitto_sub", "-d", "-h", "127.0.0.1", "-p", std::to_string(rig.broker->port()), "-V", "5",
         "-t", kControllerTopic, "-F", "MSG|%x"},
        subOut.string());
    REQUIRE(berth::testing::waitUntil(
        [&] { return berth::testing::readFile(subOut).find("received SUBACK") != std::string::npos; }));
    auto env = std::vector<std::string>{"USP_BOARD_SERIAL=SN-BOOT", "PATH=/usr/bin:/bin"};
    rig.agent = berth::testing::ProcessGuard::start(
        {BERTHD_BIN, "--resetfile", reset.string(), "--dbfile", (rig.tmp / "usp.db").string(), "--verbose", "3"},
        (rig.tmp / "berthd.out").string(), env);
    bool up = rig.waitAnswering();
    INFO(rig.output());
    REQUIRE(up);
    CHECK(rig.get("Device.DeviceInfo.SerialNumber") == "SN-BOOT");

    // The Boot! Notify carries Cause=LocalFactoryReset (the hex dump holds the text).
    auto hexOf = [](const std::string& s) {
        static const char* d = "0123456789abcdef";
        std::string out;
        for (unsigned char c : s) {
            out += d[c >> 4];
            out += d[c & 15];
        }
        return out;
    };
    bool boot = berth::testing::waitUntil([&] {
        auto text = berth::testing::readFile(subOut);
        return text.find(hexOf("Boot!")) != std::string::npos &&
               text.find(hexOf("LocalFactoryReset")) != std::string::npos;
    });
    INFO(berth::testing::readFile(subOut));
    CHECK(boot);
    // The Internal line itself is used, not warned about.
    CHECK(rig.output().find("Internal.Reboot.Cause is obuspa-internal") == std::string::npos);
}

TEST_CASE("A factory file with an unknown path still stops berthd with the file, line and reason", "[agent][obuspa]") {
    ObuspaRig rig;
    auto text = obuspaStyleFile(rig.broker->port());
    text += "Device.LocalAgent.NoSuchThing true\n";  // line 31
    auto reset = rig.resetFile(text);
    auto run = runBerthd({"-r", reset.string(), "-f", (rig.tmp / "usp.db").string()});
    INFO(run.output);
    CHECK(run.exitCode == 3);
    CHECK(run.output.find(reset.string() + ":31: Device.LocalAgent.NoSuchThing") != std::string::npos);
    CHECK(run.output.find("running as") == std::string::npos);
}

TEST_CASE("A factory file with a bad unquoted value stops berthd with the file, line and reason", "[agent][obuspa]") {
    ObuspaRig rig;
    auto text = obuspaStyleFile(rig.broker->port());
    auto at = text.find("Device.LocalAgent.MTP.1.Enable true");
    REQUIRE(at != std::string::npos);
    text.replace(at, std::string("Device.LocalAgent.MTP.1.Enable true").size(), "Device.LocalAgent.MTP.1.Enable maybe");
    auto reset = rig.resetFile(text);
    auto run = runBerthd({"--resetfile", reset.string(), "--dbfile", (rig.tmp / "usp.db").string()});
    INFO(run.output);
    CHECK(run.exitCode == 3);
    CHECK(run.output.find(reset.string() + ":13: Device.LocalAgent.MTP.1.Enable") != std::string::npos);
    CHECK(run.output.find("maybe") != std::string::npos);
}

TEST_CASE("An obuspa Internal line berth has no use for is ignored with a warning naming file and line",
          "[agent][obuspa]") {
    ObuspaRig rig;
    auto reset = rig.resetFile(obuspaStyleFile(rig.broker->port()) + "Internal.DualStackPreference IPv6\n");
    rig.agentId = "os::000000-SN-1";
    rig.agent = berth::testing::ProcessGuard::start(
        {BERTHD_BIN, "-r", reset.string(), "-f", (rig.tmp / "usp.db").string()}, (rig.tmp / "berthd.out").string(),
        std::vector<std::string>{"USP_BOARD_SERIAL=SN-1", "PATH=/usr/bin:/bin"});
    bool up = rig.waitAnswering();
    INFO(rig.output());
    REQUIRE(up);
    CHECK(rig.output().find(reset.string() + ":31: Internal.DualStackPreference is obuspa-internal state") !=
          std::string::npos);
}

TEST_CASE("obuspa options: -l writes the log to a file, single-dash long names work, -m and -e only warn",
          "[agent][obuspa]") {
    ObuspaRig rig;
    auto reset = rig.resetFile(obuspaStyleFile(rig.broker->port()));
    rig.agentId = "os::000000-SN-2";
    auto logFile = rig.tmp / "agent.log";
    rig.agent = berth::testing::ProcessGuard::start(
        {BERTHD_BIN, "-resetfile", reset.string(), "-dbfile", (rig.tmp / "usp.db").string(), "-l", logFile.string(),
         "-v", "3", "-m", "-e"},
        (rig.tmp / "berthd.out").string(), std::vector<std::string>{"USP_BOARD_SERIAL=SN-2", "PATH=/usr/bin:/bin"});
    bool up = rig.waitAnswering();
    auto log = berth::testing::readFile(logFile);
    INFO(rig.output() << "\nlog file:\n" << log);
    REQUIRE(up);
    CHECK(log.find("running as os::000000-SN-2") != std::string::npos);
    CHECK(log.find("-m/--meminfo ignored") != std::string::npos);
    CHECK(log.find("-e/--error ignored") != std::string::npos);
    // Nothing went to stderr: the file took the log.
    CHECK(rig.output().find("running as") == std::string::npos);
}

TEST_CASE("obuspa options that would make berthd something else are refused with a clear message", "[agent][obuspa]") {
    berth::testing::TempDir tmp("berth-obuspa-cli");
    auto db = (tmp / "usp.db").string();
    auto reg = runBerthd({"-f", db, "-R", "Device.X."});
    CHECK(reg.exitCode == 2);
    CHECK(reg.output.find("-R/--register: berth runs as a USP Agent only") != std::string::npos);
    auto plugin = runBerthd({"-f", db, "-x", "/usr/lib/vendor.so"});
    CHECK(plugin.exitCode == 2);
    CHECK(plugin.output.find("-x/--plugin: berth loads no vendor plug-ins") != std::string::npos);
    auto verbose = runBerthd({"-f", db, "-v", "9"});
    CHECK(verbose.exitCode == 2);
    auto both = runBerthd({"-f", db, "--db", db});
    CHECK(both.exitCode == 2);
    // -i naming an interface that does not exist stops the start, naming it.
    auto noIf = runBerthd({"-f", db, "--endpoint-id", "os::000000-X", "-i", "no-such-if0"});
    CHECK(noIf.exitCode == 3);
    CHECK(noIf.output.find("'no-such-if0' does not exist") != std::string::npos);
    CHECK_FALSE(fs::exists(tmp / "berthd.sock"));
}

TEST_CASE("obuspa's -a and -t give the client certificate and trust store to an MTP whose row names none",
          "[agent][obuspa]") {
    ObuspaRig rig;
    berth::testing::TestCerts certs(rig.tmp / "certs");
    ::chmod(certs("server.key").c_str(), 0644);
    ::chmod(certs.dir().c_str(), 0755);
    // A second broker listener that speaks TLS only and demands a client certificate.
    const int tlsPort = berth::testing::freeTcpPort();
    rig.broker.reset();
    rig.broker = std::make_unique<berth::testing::Mosquitto>(
        rig.tmp / "broker-tls", 0,
        "listener " + std::to_string(tlsPort) + " 127.0.0.1\ncafile " + certs("ca.pem") + "\ncertfile " +
            certs("server.pem") + "\nkeyfile " + certs("server.key") + "\nrequire_certificate true\n");
    REQUIRE(berth::testing::waitUntil([&] { return berth::testing::tcpPortOpen(tlsPort); }));
    // obuspa's -a file holds the certificate and its key together.
    berth::testing::writeFile(rig.tmp / "device.pem", berth::testing::readFile(certs("client.pem")) +
                                                          berth::testing::readFile(certs("client.key")));
    auto text = obuspaStyleFile(tlsPort) + "Device.MQTT.Client.1.TransportProtocol \"TLS\"\n";
    auto reset = rig.resetFile(text);
    rig.agentId = "os::000000-SN-TLS";
    rig.agent = berth::testing::ProcessGuard::start(
        {BERTHD_BIN, "-r", reset.string(), "-f", (rig.tmp / "usp.db").string(), "-a", (rig.tmp / "device.pem").string(),
         "-t", certs("ca.pem")},
        (rig.tmp / "berthd.out").string(), std::vector<std::string>{"USP_BOARD_SERIAL=SN-TLS", "PATH=/usr/bin:/bin"});
    bool up = rig.waitAnswering();
    INFO(rig.output() << "\nbroker log:\n" << rig.broker->log());
    REQUIRE(up);
    CHECK(rig.get("Device.MQTT.Client.1.Status") == "Connected");
    CHECK(rig.get("Device.MQTT.Client.1.X_BERTH_CertFile") == "");
    CHECK(rig.broker->log().find("on port " + std::to_string(tlsPort)) != std::string::npos);
}
