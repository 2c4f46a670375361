// berthd over time: restarts (clean and kill -9), run-time MQTT reconfiguration,
// broker restarts, hostile payloads on its topic.
#include <catch2/catch.hpp>

#include <signal.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "berth/agent/codec.h"
#include "berth/core/process.h"
#include "berth/testing/agent_harness.h"

using namespace berth::agenttest;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const std::string kAgentTopic = "usp/agent/os::012345-0001";

std::string sqlite(const fs::path& db, const std::string& sql) {
    berth::SpawnOptions o;
    o.argv = {"sqlite3", db.string(), sql};
    auto r = berth::runCommand(o, 30s);
    REQUIRE(r);
    INFO(r->err);
    REQUIRE(r->status.success());
    return r->out;
}

void publish(const AgentFixture& f, std::vector<std::string> args) {
    std::vector<std::string> argv{"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(f.broker->port()), "-t",
                                  kAgentTopic};
    argv.insert(argv.end(), args.begin(), args.end());
    berth::SpawnOptions o;
    o.argv = argv;
    auto r = berth::runCommand(o, 30s);
    REQUIRE(r);
    INFO(r->err);
    REQUIRE(r->status.success());
}

// A serialized Get from self::berthctl to the agent.
std::string encodedGet() {
    berth::agent::CodecConfig c;
    c.endpointId = "self::berthctl";
    berth::agent::RecordCodec codec(c);
    usp::Msg msg;
    msg.mutable_header()->set_msg_id("raw-1");
    msg.mutable_header()->set_msg_type(usp::Header::GET);
    msg.mutable_body()->mutable_request()->mutable_get()->add_param_paths("Device.DeviceInfo.");
    auto rec = codec.encodeMsg(msg, "os::012345-0001");
    REQUIRE(rec);
    return *rec;
}

}  // namespace

TEST_CASE("A value set survives a berthd restart (SIGTERM)", "[agent]") {
    AgentFixture f;
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=persisted"}).exitCode == 0);
    auto add = f.ctl({"add", "Device.LocalAgent.Subscription.", "ID=keep", "Persistent=true"});
    REQUIRE(add.exitCode == 0);
    std::string sub = add.json["add_resp"]["created_obj_results"][0]["oper_status"]["oper_success"]["instantiated_path"];

    auto st = f.agent->stop();
    CHECK(st.success());  // a clean shutdown exits 0
    f.agent->start();
    REQUIRE(f.waitAnswering());
    auto get = f.ctl({"get", "Device.DeviceInfo.FriendlyName", "Device.DeviceInfo.ModelName", sub + "ID"});
    INFO(get.describe());
    CHECK(paramValue(get.json, "Device.DeviceInfo.FriendlyName") == "persisted");
    CHECK(paramValue(get.json, sub + "ID") == "keep");
    // The configuration file is applied to a new database only: the value is not reset.
    CHECK(paramValue(get.json, "Device.DeviceInfo.ModelName") == "berth demo gateway");
}

TEST_CASE("kill -9 during traffic leaves a consistent database", "[agent]") {
    AgentFixture f;
    std::mutex mu;
    std::vector<int> acknowledged;  // Set values the agent confirmed
    std::vector<std::string> added;  // Subscription rows the agent confirmed
    int attempted = 0;
    std::atomic<bool> stop{false};
    std::thread traffic([&] {
        for (int i = 1; !stop && i < 10000; ++i) {
            {
                std::lock_guard<std::mutex> lock(mu);
                attempted = i;
            }
            berth::SpawnOptions o;
            o.argv = {BERTHCTL_BIN, "--mqtt", f.broker->address(), "--timeout", "1", "--json", "set",
                      "Device.DeviceInfo.FriendlyName=v" + std::to_string(i),
                      "Device.LocalAgent.Controller.1.PeriodicNotifInterval=" + std::to_string(i)};
            auto r = berth::runCommand(o, 30s);
            if (r && r->status.success()) {
                std::lock_guard<std::mutex> lock(mu);
                acknowledged.push_back(i);
            }
            if (i % 3 == 0) {
                o.argv = {BERTHCTL_BIN, "--mqtt", f.broker->address(), "--timeout", "1", "--json", "add",
                          "Device.LocalAgent.Subscription.", "ID=k" + std::to_string(i), "Persistent=true"};
                auto a = berth::runCommand(o, 30s);
                if (a && a->status.success()) {
                    auto j = json::parse(a->out, nullptr, false);
                    std::lock_guard<std::mutex> lock(mu);
                    added.push_back(
                        j["add_resp"]["created_obj_results"][0]["oper_status"]["oper_success"]["instantiated_path"]);
                }
            }
        }
    });
    bool busy = berth::testing::waitUntil(
        [&] {
            std::lock_guard<std::mutex> lock(mu);
            return acknowledged.size() >= 12;
        },
        60s);
    auto st = f.agent->kill9();
    stop = true;
    traffic.join();
    REQUIRE(busy);
    CHECK(st.signal == SIGKILL);

    CHECK(sqlite(f.agent->db(), "PRAGMA integrity_check;") == "ok\n");
    f.agent->start();
    REQUIRE(f.waitAnswering());
    auto get = f.ctl({"get", "Device.DeviceInfo.FriendlyName", "Device.LocalAgent.Controller.1.PeriodicNotifInterval"});
    INFO(get.describe());
    REQUIRE(get.exitCode == 0);
    auto name = paramValue(get.json, "Device.DeviceInfo.FriendlyName");
    auto interval = paramValue(get.json, "Device.LocalAgent.Controller.1.PeriodicNotifInterval");
    REQUIRE(name);
    REQUIRE(interval);
    REQUIRE(name->size() > 1);
    int value = std::stoi(name->substr(1));
    // The last confirmed Set or a later one that was under way; both parameters of one
    // Set together (one transaction).
    CHECK(value >= acknowledged.back());
    CHECK(value <= attempted);
    CHECK(*interval == std::to_string(value));

    auto inst = f.ctl({"instances", "Device.LocalAgent.Subscription."});
    REQUIRE(inst.exitCode == 0);
    std::set<std::string> rows;
    for (const auto& i : inst.json["get_instances_resp"]["req_path_results"][0]["curr_insts"])
        CHECK(rows.insert(i["instantiated_obj_path"].get<std::string>()).second);
    for (const auto& p : added) CHECK(rows.count(p) == 1);
}

TEST_CASE("ResponseTopicConfigured set at run time moves the agent to the new topic", "[agent]") {
    AgentFixture f;
    auto set = f.ctl({"set", "Device.LocalAgent.MTP.1.MQTT.ResponseTopicConfigured=usp/agent/moved"});
    INFO(set.describe());
    REQUIRE(set.exitCode == 0);
    bool moved = f.waitAnswering(10s, {"--agent-topic", "usp/agent/moved"});
    INFO(f.agent->log());
    REQUIRE(moved);
    // The old topic is unsubscribed (R-MQTT.34).
    auto old = f.ctl({"--timeout", "1", "get", "Device.DeviceInfo.ModelName"});
    CHECK(old.exitCode == 3);
    auto discovered = f.ctl({"--agent-topic", "usp/agent/moved", "get", "Device.LocalAgent.MTP.1.MQTT."});
    CHECK(paramValue(discovered.json, "Device.LocalAgent.MTP.1.MQTT.ResponseTopicDiscovered") == "usp/agent/moved");
}

TEST_CASE("BrokerPort set at run time moves the agent to another broker without a restart", "[agent]") {
    AgentFixture f;
    berth::testing::Mosquitto second(f.tmp / "broker2");
    pid_t pid = f.agent->pid();
    auto set = f.ctl({"set", "Device.MQTT.Client.1.BrokerPort=" + std::to_string(second.port())});
    INFO(set.describe());
    // The answer may or may not make it out before the client reconnects elsewhere.
    CHECK((set.exitCode == 0 || set.exitCode == 3));
    bool answered = false;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!answered && std::chrono::steady_clock::now() < deadline) {
        auto r = runCtl({BERTHCTL_BIN, "--mqtt", second.address(), "--timeout", "0.5", "--json", "get",
                         "Device.MQTT.Client.1.BrokerPort"});
        answered = r.exitCode == 0 && paramValue(r.json, "Device.MQTT.Client.1.BrokerPort") == std::to_string(second.port());
    }
    INFO(f.agent->log());
    CHECK(answered);
    CHECK(f.agent->pid() == pid);
    CHECK(f.agent->running());
}

TEST_CASE("berthd reconnects after the broker restarts and answers again", "[agent]") {
    AgentFixture f;
    f.broker->stop();
    auto down = runCtl({BERTHCTL_BIN, "--mqtt", f.broker->address(), "--timeout", "1", "get", "Device."});
    CHECK(down.exitCode == 4);
    f.broker->start();
    auto t0 = std::chrono::steady_clock::now();
    bool back = f.waitAnswering(15s);
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    INFO(f.agent->log());
    REQUIRE(back);
    // ConnectRetryTime 1 s in the example configuration: back within a few seconds.
    CHECK(took < 5s);
    WARN("berthd answered " << took.count() << " ms after the broker came back");
}

TEST_CASE("Garbage, truncated, empty and oversized payloads are logged and dropped", "[agent]") {
    AgentFixture f;
    auto record = encodedGet();
    berth::testing::writeFile(f.tmp / "truncated.bin", record.substr(0, record.size() / 2));
    std::string garbage;
    for (int i = 0; i < 4096; ++i) garbage.push_back(static_cast<char>((i * 7919 + 13) & 0xff));
    berth::testing::writeFile(f.tmp / "garbage.bin", garbage);
    berth::testing::writeFile(f.tmp / "big.bin", std::string(6 * 1024 * 1024, 'x'));

    publish(f, {"-f", (f.tmp / "garbage.bin").string()});
    publish(f, {"-f", (f.tmp / "truncated.bin").string()});
    publish(f, {"-n"});
    publish(f, {"-m", "not a usp record"});
    publish(f, {"-f", (f.tmp / "big.bin").string()});

    bool logged = berth::testing::waitUntil([&] {
        auto log = f.agent->log();
        return log.find("exceeds the limit") != std::string::npos;
    });
    INFO(f.agent->log());
    CHECK(logged);
    auto drops = [&] {
        auto log = f.agent->log();
        std::size_t n = 0;
        for (auto at = log.find("dropped record"); at != std::string::npos; at = log.find("dropped record", at + 1)) ++n;
        return n;
    };
    CHECK(drops() >= 4);
    REQUIRE(f.agent->running());
    auto r = f.ctl({"get", "Device.DeviceInfo.ModelName"});
    INFO(r.describe());
    CHECK(r.exitCode == 0);
    CHECK(paramValue(r.json, "Device.DeviceInfo.ModelName") == "berth demo gateway");
}
