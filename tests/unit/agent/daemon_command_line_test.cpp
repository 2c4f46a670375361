// berthd's command line (agent/src/daemon/command_line.h): the options berthd has always
// taken, obuspa's names and spellings, and the errors bad input gets.
#include <catch2/catch.hpp>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include "../../../agent/src/daemon/command_line.h"
#include "berth/testing/support.h"

namespace {

using berth::agent::DaemonCommandLine;
using Action = DaemonCommandLine::Action;

DaemonCommandLine parse(std::initializer_list<std::string> words) {
    std::vector<std::string> storage{"berthd"};
    storage.insert(storage.end(), words.begin(), words.end());
    std::vector<const char*> argv;
    for (const auto& w : storage)
        argv.push_back(w.c_str());
    return berth::agent::parseDaemonCommandLine(static_cast<int>(argv.size()), argv.data());
}

}  // namespace

TEST_CASE("berthd with no options runs with the documented defaults", "[agent][cmdline]") {
    auto cl = parse({});
    REQUIRE(cl.action == Action::kRun);
    CHECK(cl.options.dbFile == "/var/lib/berth/berth.db");
    CHECK(cl.options.configFile.empty());
    CHECK(cl.logLevel == "info");
    CHECK(cl.verbosity == -1);
    CHECK(cl.stopTimeoutSeconds == 4.0);
    CHECK(cl.options.maxSubscriptions == 500);
    CHECK(cl.options.bounds.maxAsyncOperationsPerController == 8);
    CHECK_FALSE(cl.options.protocolTrace);
}

TEST_CASE("berthd's own options set what they name, in both spellings", "[agent][cmdline]") {
    berth::testing::TempDir tmp("berth-cmdline");
    berth::testing::writeFile(tmp / "factory.txt", "Device.LocalAgent.EndpointID \"os::1\"\n");
    auto factory = (tmp / "factory.txt").string();
    auto cl = parse({"-c",
                     factory,
                     "--db=/tmp/x.db",
                     "--state-dir",
                     "/tmp/st",
                     "--endpoint-id",
                     "os::000000-1",
                     "--reboot-command",
                     "reboot -f",
                     "--log-level",
                     "debug",
                     "--syslog",
                     "--max-subscriptions-per-controller",
                     "7",
                     "--max-subscriptions=0",
                     "--notify-queue-messages",
                     "12",
                     "--notify-queue-bytes",
                     "4096",
                     "--stop-timeout",
                     "0.5",
                     "--max-paths-per-message",
                     "3",
                     "--max-params-per-message",
                     "4",
                     "--max-response-bytes",
                     "5000",
                     "--inbound-queue-records",
                     "6",
                     "--inbound-queue-bytes",
                     "7000",
                     "--max-async-operations",
                     "2",
                     "-s",
                     "none"});
    REQUIRE(cl.action == Action::kRun);
    CHECK(cl.options.configFile == factory);
    CHECK(cl.options.dbFile == "/tmp/x.db");
    CHECK(cl.options.stateDir == "/tmp/st");
    CHECK(cl.options.endpointId == "os::000000-1");
    CHECK(cl.options.rebootCommand == "reboot -f");
    CHECK(cl.logLevel == "debug");
    CHECK(cl.syslog);
    CHECK(cl.options.maxSubscriptionsPerController == 7);
    CHECK(cl.options.maxSubscriptions == 0);
    CHECK(cl.options.notifyQueueMessages == 12);
    CHECK(cl.options.notifyQueueBytes == 4096);
    CHECK(cl.stopTimeoutSeconds == 0.5);
    CHECK(cl.options.bounds.maxPathsPerMessage == 3);
    CHECK(cl.options.bounds.maxParamsPerMessage == 4);
    CHECK(cl.options.bounds.maxResponseBytes == 5000);
    CHECK(cl.options.bounds.inboundQueueRecords == 6);
    CHECK(cl.options.bounds.inboundQueueBytes == 7000);
    CHECK(cl.options.bounds.maxAsyncOperationsPerController == 2);
    CHECK(cl.options.cliSocketPath == "none");
}

TEST_CASE("obuspa's options work with one dash, two dashes and as letters", "[agent][cmdline][obuspa]") {
    berth::testing::TempDir tmp("berth-cmdline");
    berth::testing::writeFile(tmp / "reset.txt", "\n");
    berth::testing::writeFile(tmp / "cert.pem", "x\n");
    auto reset = (tmp / "reset.txt").string();
    auto cert = (tmp / "cert.pem").string();
    auto a = parse({"-resetfile", reset, "-dbfile", "/tmp/u.db", "-v", "4", "-l", "/tmp/log", "-pme", "-interface",
                    "eth9", "-cli", "/tmp/s.sock", "-authcert", cert, "-truststore", tmp.path().string()});
    REQUIRE(a.action == Action::kRun);
    CHECK(a.options.configFile == reset);
    CHECK(a.options.dbFile == "/tmp/u.db");
    CHECK(a.verbosity == 4);
    CHECK(a.logDestination == "/tmp/log");
    CHECK(a.options.protocolTrace);
    CHECK(a.meminfo);
    CHECK(a.callstack);
    CHECK(a.options.interface == "eth9");
    CHECK(a.options.cliSocketPath == "/tmp/s.sock");
    CHECK(a.options.authCertFile == cert);
    CHECK(a.options.trustStore == tmp.path().string());

    auto b = parse({"-r" + reset, "-f", "/tmp/v.db", "--verbose=2", "-R", "Device.X.", "-x", "a.so", "-xb.so"});
    REQUIRE(b.action == Action::kRun);
    CHECK(b.options.configFile == reset);
    CHECK(b.verbosity == 2);
    CHECK(b.registerPath == "Device.X.");
    CHECK(b.plugins == std::vector<std::string>{"a.so", "b.so"});
}

TEST_CASE("berthd --help and --version are answered without running", "[agent][cmdline]") {
    CHECK(parse({"--help"}).action == Action::kHelp);
    CHECK(parse({"-h", "--db", "/tmp/x"}).action == Action::kHelp);
    CHECK(parse({"-help"}).action == Action::kHelp);
    CHECK(parse({"--version"}).action == Action::kVersion);
    auto help = berth::agent::daemonHelp();
    for (const char* name :
         {"--config", "--resetfile", "--dbfile", "--state-dir", "--endpoint-id", "--log-level", "--verbose",
          "--max-subscriptions-per-controller", "--notify-queue-bytes", "--stop-timeout", "--max-async-operations",
          "--cli-socket", "--truststore", "--plugin", "UINT=500", "show database"})
        CHECK(help.find(name) != std::string::npos);
}

TEST_CASE("Bad berthd command lines are refused with a line naming the option", "[agent][cmdline]") {
    auto error = [](std::initializer_list<std::string> words) {
        auto cl = parse(words);
        CHECK(cl.action == Action::kError);
        return cl.error;
    };
    CHECK(error({"--bogus"}) == "The following argument was not expected: --bogus");
    CHECK(error({"-z"}) == "The following argument was not expected: -z");
    CHECK(error({"extra"}) == "The following argument was not expected: extra");
    CHECK(error({"--conf", "/etc/hosts"}) == "The following argument was not expected: --conf");
    CHECK(error({"--syslog=1"}) == "The following argument was not expected: --syslog=1");
    CHECK(error({"-d"}) == "--db: 1 required argument missing");
    CHECK(error({"--endpoint-id"}) == "--endpoint-id: 1 required argument missing");
    CHECK(error({"-v", "9"}) == "--verbose: Value 9 not in range 0 to 5");
    CHECK(error({"-v", "x"}) == "--verbose: Value x not in range 0 to 5");
    CHECK(error({"-f", "/tmp/a", "--db", "/tmp/b"}) == "--db excludes --dbfile");
    CHECK(error({"--log-level", "info", "-v", "3"}) == "--log-level excludes --verbose");
    CHECK(error({"--log-level", "loud"}) == "--log-level: loud not in {trace,debug,info,warn,warning,error,off}");
    CHECK(error({"-c", "/nonexistent/berth.conf"}) == "--config: File does not exist: /nonexistent/berth.conf");
    CHECK(error({"-c", "/"}) == "--config: File is actually a directory: /");
    CHECK(error({"-a", "/nonexistent/x.pem"}) == "--authcert: File does not exist: /nonexistent/x.pem");
    CHECK(error({"-t", "/nonexistent/ca"}) == "--truststore: Path does not exist: /nonexistent/ca");
    CHECK(error({"--stop-timeout", "0"}) == "--stop-timeout: Value 0 not in range 0.1 to 300");
    CHECK(error({"--stop-timeout", "soon"}) == "Could not convert: --stop-timeout = soon");
    CHECK(error({"--notify-queue-messages", "0"}) == "--notify-queue-messages: Value 0 is not a positive number");
    CHECK(error({"--max-subscriptions", "abc"}) == "Could not convert: --max-subscriptions = abc");
    CHECK(error({"--max-subscriptions", "-1"}) == "Could not convert: --max-subscriptions = -1");
    CHECK(error({"--max-response-bytes", "99999999999999999999999"}) ==
          "Could not convert: --max-response-bytes = 99999999999999999999999");
    CHECK(error({"-v", "1", "-v", "2"}) == "--verbose: At Most 1 required but received 2");
    CHECK(error({"--endpoint-id", "a", "--endpoint-id", "b"}) == "--endpoint-id: At Most 1 required but received 2");
}

TEST_CASE("A berthd command line can be parsed again in the same process", "[agent][cmdline]") {
    CHECK(parse({"--bogus"}).action == Action::kError);
    auto cl = parse({"--endpoint-id", "os::2", "-p"});
    REQUIRE(cl.action == Action::kRun);
    CHECK(cl.options.endpointId == "os::2");
    CHECK(cl.options.protocolTrace);
}

TEST_CASE("berthd's --mqtt-library takes paho or mosquitto, defaults to paho and refuses anything else",
          "[agent][cmdline]") {
    using berth::transports::MqttLibrary;
    CHECK(parse({}).options.mqttLibrary == MqttLibrary::kPaho);
    auto mosq = parse({"--mqtt-library", "mosquitto"});
    REQUIRE(mosq.action == Action::kRun);
    CHECK(mosq.options.mqttLibrary == MqttLibrary::kMosquitto);
    auto paho = parse({"--mqtt-library=paho"});
    REQUIRE(paho.action == Action::kRun);
    CHECK(paho.options.mqttLibrary == MqttLibrary::kPaho);
    auto bad = parse({"--mqtt-library", "hivemq"});
    REQUIRE(bad.action == Action::kError);
    CHECK(bad.error == "--mqtt-library: hivemq not in {paho,mosquitto}");
    auto twice = parse({"--mqtt-library", "paho", "--mqtt-library", "mosquitto"});
    CHECK(twice.action == Action::kError);
    CHECK(berth::agent::daemonHelp().find("--mqtt-library") != std::string::npos);
}
