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
    CHECK(result->size() == 5);
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

TEST_CASE("A value without quotes is reported with its line", "[config]") {
    auto p = onlyProblem("# c\nDevice.X.Enable \"true\"\nDevice.X.Name true\n");
    CHECK(p.line == 3);
    CHECK_THAT(p.message, Catch::Contains("double quotes"));
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
        "Device.X.B unquoted\n"
        "Device.X.C \"ok\"\n"
        "Other.X.D \"1\"\n",
        "/etc/berth/defaults.txt");
    REQUIRE_FALSE(result);
    CHECK(result.error().code == ErrorCode::kInvalidConfiguration);
    CHECK(result.error().path == "/etc/berth/defaults.txt");
    CHECK_THAT(result.error().message, Catch::Contains("/etc/berth/defaults.txt:2: value for 'Device.X.B'"));
    CHECK_THAT(result.error().message, Catch::Contains("/etc/berth/defaults.txt:4: path 'Other.X.D'"));
}

TEST_CASE("A defaults file is read from disk; a missing or binary one is an error", "[config]") {
    berth::testing::TempDir dir;
    const auto good = dir / "defaults.txt";
    {
        std::ofstream out(good);
        out << "Device.LocalAgent.Controller.1.EndpointID \"proto::controller\"\n";
    }
    auto entries = loadConfigFile(good);
    REQUIRE(entries);
    REQUIRE(entries->size() == 1);
    CHECK((*entries)[0].value == "proto::controller");

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
        out << "\n\nDevice.X.A 1\n";
    }
    auto r = loadConfigFile(bad2);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message, Catch::Contains("bad.txt:3:"));
}
