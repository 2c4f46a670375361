#include "berth/agent/config_file.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "berth/testing/support.h"

using namespace berth;
using namespace berth::agent;

namespace {

// The single problem a one-bad-line text produces.
ConfigProblem onlyProblem(const std::string& text) {
    auto parsed = parseConfigText(text);
    REQUIRE(parsed.problems.size() == 1);
    return parsed.problems.front();
}

}  // namespace

TEST_CASE("A typical defaults file yields its assignments with line numbers", "[config]") {
    const std::string text =
        "# Factory defaults for the test agent\n"
        "\n"
        "Device.LocalAgent.Controller.1.EndpointID \"proto::controller\"\n"
        "Device.LocalAgent.Controller.1.Enable     \"true\"\n"
        "   Device.LocalAgent.MTP.1.Protocol\t\"MQTT\"   \n"
        "    # indented comment\n"
        "Device.MQTT.Client.1.BrokerAddress \"\"\n"
        "Device.LocalAgent.Controller.1.MTP.1.MQTT.Topic \"usp/controller\" # trailing comment\n";
    auto parsed = parseConfigText(text);
    REQUIRE(parsed.problems.empty());
    REQUIRE(parsed.entries.size() == 5);
    CHECK(parsed.entries[0].path == "Device.LocalAgent.Controller.1.EndpointID");
    CHECK(parsed.entries[0].value == "proto::controller");
    CHECK(parsed.entries[0].line == 3);
    CHECK(parsed.entries[1].value == "true");
    CHECK(parsed.entries[1].line == 4);
    CHECK(parsed.entries[2].path == "Device.LocalAgent.MTP.1.Protocol");
    CHECK(parsed.entries[2].value == "MQTT");
    CHECK(parsed.entries[3].value.empty());
    CHECK(parsed.entries[3].line == 7);
    CHECK(parsed.entries[4].value == "usp/controller");
    CHECK(parsed.entries[4].line == 8);

    auto result = parseConfig(text, "defaults.txt");
    REQUIRE(result);
    CHECK(result->entries.size() == 5);
}

TEST_CASE("Quotes and backslashes in values are written as escapes", "[config]") {
    auto parsed = parseConfigText(
        "Device.X.A \"say \\\"hi\\\"\"\n"
        "Device.X.B \"C:\\\\dir\"\n"
        "Device.X.C \"has # inside and 'single' quotes\"\n"
        "Device.X.D \"tab\there\"\n");
    REQUIRE(parsed.problems.empty());
    REQUIRE(parsed.entries.size() == 4);
    CHECK(parsed.entries[0].value == "say \"hi\"");
    CHECK(parsed.entries[1].value == "C:\\dir");
    CHECK(parsed.entries[2].value == "has # inside and 'single' quotes");
    CHECK(parsed.entries[3].value == "tab\there");
}

TEST_CASE("CRLF line ends, a byte-order mark and a missing final newline are accepted", "[config]") {
    auto parsed = parseConfigText("\xEF\xBB\xBF# c\r\nDevice.X.A \"1\"\r\nDevice.X.B \"2\"");
    REQUIRE(parsed.problems.empty());
    REQUIRE(parsed.entries.size() == 2);
    CHECK(parsed.entries[0].value == "1");
    CHECK(parsed.entries[0].line == 2);
    CHECK(parsed.entries[1].value == "2");
    CHECK(parsed.entries[1].line == 3);
}

TEST_CASE("An empty or comment-only file yields no entries and no problems", "[config]") {
    CHECK(parseConfigText("").entries.empty());
    auto parsed = parseConfigText("# nothing\n\n   \n\t# here\n");
    CHECK(parsed.entries.empty());
    CHECK(parsed.problems.empty());
}

TEST_CASE("An unquoted value runs to the end of the line, as in obuspa's files", "[config]") {
    auto parsed = parseConfigText(
        "Device.LocalAgent.MTP.1.Enable true\n"
        "Device.MQTT.Client.1.BrokerPort   1883   \n"
        "Device.X.Name two words # a comment\n"
        "Device.X.Path /usp/agent#not-a-comment\n");
    REQUIRE(parsed.problems.empty());
    REQUIRE(parsed.entries.size() == 4);
    CHECK(parsed.entries[0].value == "true");
    CHECK(parsed.entries[1].value == "1883");
    CHECK(parsed.entries[2].value == "two words");
    CHECK(parsed.entries[3].value == "/usp/agent#not-a-comment");
    CHECK(parsed.warnings.empty());
}

TEST_CASE("An unquoted value that ends in a double quote is reported", "[config]") {
    auto p = onlyProblem("# c\nDevice.X.Enable \"true\"\nDevice.X.Name true\"\n");
    CHECK(p.line == 3);
    CHECK_THAT(p.message, Catch::Contains("does not start with one"));
}

TEST_CASE("A stray double quote after a quoted value is accepted with a warning naming the line", "[config]") {
    auto parsed = parseConfigText(
        "Device.X.A \"1\"\n"
        "Device.LocalAgent.Controller.1.MTP.1.STOMP.Destination \"controller-notify-dest\"\"\n"
        "Device.X.B \"2\"\" # and a comment\n");
    REQUIRE(parsed.problems.empty());
    REQUIRE(parsed.entries.size() == 3);
    CHECK(parsed.entries[1].value == "controller-notify-dest");
    CHECK(parsed.entries[2].value == "2");
    REQUIRE(parsed.warnings.size() == 2);
    CHECK(parsed.warnings[0].line == 2);
    CHECK_THAT(parsed.warnings[0].message, Catch::Contains("stray double quote"));
    CHECK(parsed.warnings[1].line == 3);
}

TEST_CASE("Internal lines are returned apart from the Device entries", "[config]") {
    auto parsed = parseConfigText(
        "Device.X.A \"1\"\n"
        "Internal.Reboot.Cause \"LocalFactoryReset\"\n"
        "Internal.DualStackPreference IPv4\n");
    REQUIRE(parsed.problems.empty());
    REQUIRE(parsed.entries.size() == 1);
    REQUIRE(parsed.internal.size() == 2);
    CHECK(parsed.internal[0].path == "Internal.Reboot.Cause");
    CHECK(parsed.internal[0].value == "LocalFactoryReset");
    CHECK(parsed.internal[0].line == 2);
    CHECK(parsed.internal[1].value == "IPv4");
    CHECK_THAT(onlyProblem("Internal. \"x\"\n").message, Catch::Contains("names no parameter"));
    CHECK_THAT(onlyProblem("Internal.A-B \"x\"\n").message, Catch::Contains("may only hold"));
}

TEST_CASE("A controller MTP's deleted MQTT.Reference is read as AgentMTPReference to the agent MTP using that client",
          "[config]") {
    auto parsed = parseConfigText(
        "Device.LocalAgent.MTP.1.Protocol \"STOMP\"\n"
        "Device.LocalAgent.MTP.2.MQTT.Reference \"Device.MQTT.Client.1\"\n"
        "Device.LocalAgent.MTP.3.MQTT.Reference \"Device.MQTT.Client.2.\"\n"
        "Device.LocalAgent.Controller.1.MTP.1.MQTT.Reference \"Device.MQTT.Client.1\"\n"
        "Device.LocalAgent.Controller.1.MTP.2.MQTT.Reference \"Device.MQTT.Client.2.\"\n");
    REQUIRE(parsed.problems.empty());
    REQUIRE(parsed.entries.size() == 5);
    CHECK(parsed.entries[3].path == "Device.LocalAgent.Controller.1.MTP.1.MQTT.AgentMTPReference");
    CHECK(parsed.entries[3].value == "Device.LocalAgent.MTP.2");
    CHECK(parsed.entries[3].line == 4);
    // Written with a trailing dot, the reference keeps it.
    CHECK(parsed.entries[4].path == "Device.LocalAgent.Controller.1.MTP.2.MQTT.AgentMTPReference");
    CHECK(parsed.entries[4].value == "Device.LocalAgent.MTP.3.");
    REQUIRE(parsed.warnings.size() == 2);
    CHECK(parsed.warnings[0].line == 4);
    CHECK_THAT(parsed.warnings[0].message, Catch::Contains("deleted from TR-181"));
    CHECK_THAT(parsed.warnings[0].message, Catch::Contains("AgentMTPReference"));
}

TEST_CASE("A deleted MQTT.Reference that no agent MTP of the file uses is dropped with a warning", "[config]") {
    auto parsed = parseConfigText("Device.LocalAgent.Controller.1.MTP.1.MQTT.Reference \"Device.MQTT.Client.9\"\n");
    REQUIRE(parsed.problems.empty());
    CHECK(parsed.entries.empty());
    REQUIRE(parsed.warnings.size() == 1);
    CHECK(parsed.warnings[0].line == 1);
    CHECK_THAT(parsed.warnings[0].message, Catch::Contains("no Device.LocalAgent.MTP.{i} in this file uses"));
}

TEST_CASE("A deleted parameter whose successor the file also sets is ignored with a warning naming both lines",
          "[config]") {
    auto parsed = parseConfigText(
        "Device.LocalAgent.MTP.1.MQTT.Reference \"Device.MQTT.Client.1\"\n"
        "Device.LocalAgent.Controller.1.MTP.1.MQTT.Reference \"Device.MQTT.Client.1\"\n"
        "Device.LocalAgent.Controller.1.MTP.1.MQTT.AgentMTPReference \"Device.LocalAgent.MTP.1.\"\n");
    REQUIRE(parsed.problems.empty());
    REQUIRE(parsed.entries.size() == 2);
    CHECK(parsed.entries[1].path == "Device.LocalAgent.Controller.1.MTP.1.MQTT.AgentMTPReference");
    CHECK(parsed.entries[1].value == "Device.LocalAgent.MTP.1.");
    REQUIRE(parsed.warnings.size() == 1);
    CHECK(parsed.warnings[0].line == 2);
    CHECK_THAT(parsed.warnings[0].message, Catch::Contains("line 3"));
}

TEST_CASE("Deleted encryption flags are read as their successors", "[config]") {
    auto parsed = parseConfigText(
        "Device.LocalAgent.Controller.1.MTP.1.WebSocket.IsEncrypted false\n"
        "Device.STOMP.Connection.1.IsEncrypted \"true\"\n"
        "Device.MQTT.Client.1.EnableEncryption true\n"
        "Device.MQTT.Client.2.EnableEncryption false\n");
    REQUIRE(parsed.problems.empty());
    REQUIRE(parsed.entries.size() == 3);
    CHECK(parsed.entries[0].path == "Device.LocalAgent.Controller.1.MTP.1.WebSocket.EnableEncryption");
    CHECK(parsed.entries[0].value == "false");
    CHECK(parsed.entries[1].path == "Device.STOMP.Connection.1.EnableEncryption");
    CHECK(parsed.entries[2].path == "Device.MQTT.Client.1.TransportProtocol");
    CHECK(parsed.entries[2].value == "TLS");
    CHECK(parsed.warnings.size() == 4);
}

TEST_CASE("A file in the style of obuspa's STOMP example parses without problems", "[config]") {
    auto parsed = parseConfigText(
        "#\n# factory reset file\n#\n"
        "Device.LocalAgent.Controller.1.EndpointID \"self::usp-controller.com\"\n"
        "Device.LocalAgent.MTP.1.Enable \"true\"\n"
        "Device.LocalAgent.Controller.1.MTP.1.Alias \"cpe-1\" \n"
        "Device.LocalAgent.Controller.1.MTP.1.STOMP.Destination \"controller-notify-dest\"\"\n"
        "Device.STOMP.Connection.1.Enable true\n"
        "\n"
        "Internal.Reboot.Cause \"LocalFactoryReset\"\n");
    CHECK(parsed.problems.empty());
    CHECK(parsed.entries.size() == 5);
    CHECK(parsed.internal.size() == 1);
    CHECK(parsed.warnings.size() == 1);
}

TEST_CASE("A missing value is reported", "[config]") {
    CHECK_THAT(onlyProblem("Device.X.Name\n").message, Catch::Contains("missing value"));
    CHECK_THAT(onlyProblem("Device.X.Name    # no value\n").message, Catch::Contains("missing value"));
}

TEST_CASE("A missing closing quote is reported", "[config]") {
    auto p = onlyProblem("\n\nDevice.X.Name \"unterminated\n");
    CHECK(p.line == 3);
    CHECK_THAT(p.message, Catch::Contains("closing double quote"));
    CHECK_THAT(onlyProblem("Device.X.Name \"ends in backslash\\\n").message, Catch::Contains("closing double quote"));
}

TEST_CASE("Text after the closing quote is reported as trailing garbage", "[config]") {
    CHECK_THAT(onlyProblem("Device.X.Name \"a\" b\n").message, Catch::Contains("after the closing quote"));
    CHECK_THAT(onlyProblem("Device.X.Name \"a\"\"b\"\n").message, Catch::Contains("after the closing quote"));
    CHECK_THAT(onlyProblem("Device.X.Name \"a\"# glued comment\n").message, Catch::Contains("after the closing quote"));
}

TEST_CASE("An unknown escape in a value is reported", "[config]") {
    CHECK_THAT(onlyProblem("Device.X.Name \"a\\nb\"\n").message, Catch::Contains("unknown escape"));
}

TEST_CASE("A path not starting with Device. is reported", "[config]") {
    CHECK_THAT(onlyProblem("LocalAgent.Controller.1.Enable \"true\"\n").message,
               Catch::Contains("does not start with 'Device.'"));
    CHECK_THAT(onlyProblem("device.X.Y \"1\"\n").message, Catch::Contains("does not start with 'Device.'"));
    CHECK_THAT(onlyProblem("Device \"1\"\n").message, Catch::Contains("names no parameter"));
    CHECK_THAT(onlyProblem("\"1\"\n").message, Catch::Contains("missing path"));
}

TEST_CASE("Path syntax errors are reported", "[config]") {
    CHECK_THAT(onlyProblem("Device..X \"1\"\n").message, Catch::Contains("empty segment"));
    CHECK_THAT(onlyProblem("Device.X-Y.Z \"1\"\n").message, Catch::Contains("letters, digits and '_'"));
    CHECK_THAT(onlyProblem("Device.X.1a.Z \"1\"\n").message, Catch::Contains("neither a name nor an instance number"));
    CHECK_THAT(onlyProblem("Device.X.0.Z \"1\"\n").message, Catch::Contains("positive"));
    CHECK_THAT(onlyProblem("Device.X.01.Z \"1\"\n").message, Catch::Contains("leading zeros"));
    CHECK_THAT(onlyProblem("Device.X.1 \"1\"\n").message, Catch::Contains("ends in an instance number"));
    CHECK_THAT(onlyProblem("Device.X.\xC3\xA9t\xC3\xA9 \"1\"\n").message, Catch::Contains("must start with a letter"));
    CHECK_THAT(onlyProblem("Device.X.Y\"1\"\n").message, Catch::Contains("blanks between"));
}

TEST_CASE("Wildcards, searches and {i} are refused in a defaults file", "[config]") {
    for (const char* line :
         {"Device.X.*.Enable \"1\"\n", "Device.X.[Alias==\"a\"].Enable \"1\"\n", "Device.X.{i}.Enable \"1\"\n"}) {
        INFO(line);
        CHECK_THAT(onlyProblem(line).message, Catch::Contains("wildcard"));
    }
}

TEST_CASE("An object path ending in a dot is refused where a parameter is expected", "[config]") {
    auto p = onlyProblem("Device.LocalAgent.Controller.1. \"x\"\n");
    CHECK(p.line == 1);
    CHECK_THAT(p.message, Catch::Contains("ends in '.'"));
}

TEST_CASE("Assigning the same path twice names both lines", "[config]") {
    auto parsed = parseConfigText(
        "Device.X.1.Enable \"true\"\n"
        "Device.X.1.Name \"a\"\n"
        "\n"
        "Device.X.1.Enable \"false\"\n");
    REQUIRE(parsed.problems.size() == 1);
    CHECK(parsed.problems[0].line == 4);
    CHECK_THAT(parsed.problems[0].message, Catch::Contains("first assigned on line 1"));
    CHECK(parsed.entries.size() == 2);
    CHECK(parsed.entries[0].value == "true");
}

TEST_CASE("Every bad line is reported in one error naming the file and lines", "[config]") {
    auto result = parseConfig(
        "Device.X.A \"ok\"\n"
        "Device.X.B unquoted\"\n"
        "Device.X.C \"ok\"\n"
        "Other.X.D \"1\"\n",
        "/etc/berth/defaults.txt");
    REQUIRE_FALSE(result);
    CHECK(result.error().code == ErrorCode::kInvalidConfiguration);
    CHECK(result.error().path == "/etc/berth/defaults.txt");
    CHECK_THAT(result.error().message, Catch::Contains("/etc/berth/defaults.txt:2: value for 'Device.X.B' ends in"));
    CHECK_THAT(result.error().message, Catch::Contains("/etc/berth/defaults.txt:4: path 'Other.X.D'"));
}

TEST_CASE("A defaults file is read from disk, and a missing or binary one is an error", "[config]") {
    berth::testing::TempDir dir;
    const auto good = dir / "defaults.txt";
    {
        std::ofstream out(good);
        out << "Device.LocalAgent.Controller.1.EndpointID \"proto::controller\"\n";
    }
    auto entries = loadConfigFile(good);
    REQUIRE(entries);
    REQUIRE(entries->entries.size() == 1);
    CHECK(entries->entries[0].value == "proto::controller");

    auto missing = loadConfigFile(dir / "nope.txt");
    REQUIRE_FALSE(missing);
    CHECK_THAT(missing.error().message, Catch::Contains("nope.txt: cannot open"));

    const auto binary = dir / "binary.txt";
    {
        std::ofstream out(binary, std::ios::binary);
        out << std::string("Device.X.A \"1\"\n\0\0\0", 18);
    }
    auto bad = loadConfigFile(binary);
    REQUIRE_FALSE(bad);
    CHECK_THAT(bad.error().message, Catch::Contains("NUL"));

    const auto bad2 = dir / "bad.txt";
    {
        std::ofstream out(bad2);
        out << "\n\nDevice.X.A 1\"\n";
    }
    auto r = loadConfigFile(bad2);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message, Catch::Contains("bad.txt:3:"));
}
