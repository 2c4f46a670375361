// TP-469 section 1 cases on Operate and OnBoardRequest, over MQTT against mosquitto:
// 1.60, 1.61, 1.62, 1.64, 1.65, 1.79, 1.91 and 1.100. The asynchronous cases use
// Device.ScheduleTimer() as the plan writes them (with a shorter DelaySeconds than
// 1.79's 30 s).
#include <catch2/catch.hpp>
#include <chrono>

#include "berth/agent/codec.h"
#include "berth/core/process.h"
#include "berth/testing/agent_harness.h"

using namespace berth::agenttest;
using namespace std::chrono_literals;

namespace {

// mosquitto_sub printing each message on `topic` as hex, one "MSG|" line each; ready
// once its SUBACK arrived.
class TopicTap {
public:
    TopicTap(const AgentFixture& f, const std::string& name, const std::string& topic) : out_(f.tmp / (name + ".out")) {
        proc_ =
            berth::testing::ProcessGuard::start({"stdbuf", "-oL", "mosquitto_sub", "-d", "-V", "5", "-h", "127.0.0.1",
                                                 "-p", std::to_string(f.broker->port()), "-t", topic, "-F", "MSG|%x"},
                                                out_.string());
        REQUIRE(berth::testing::waitUntil([&] { return output().find("received SUBACK") != std::string::npos; }));
    }
    std::string output() const { return berth::testing::readFile(out_); }
    // Every message decoded as a record from the agent to self::berthctl.
    std::vector<berth::agent::DecodedRecord> records() const {
        berth::agent::CodecConfig c;
        c.endpointId = "self::berthctl";
        c.servedRequests = {usp::Request::kNotify};
        berth::agent::RecordCodec codec(c);
        std::vector<berth::agent::DecodedRecord> out;
        std::string all = output();
        for (auto at = all.find("MSG|"); at != std::string::npos; at = all.find("MSG|", at + 1)) {
            auto end = all.find('\n', at);
            std::string hex = all.substr(at + 4, end == std::string::npos ? std::string::npos : end - at - 4);
            std::string bytes;
            for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
                bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
            out.push_back(codec.decode(bytes));
        }
        return out;
    }
    std::size_t count(usp::Header::MsgType type) const {
        std::size_t n = 0;
        for (const auto& r : records())
            if (r.msgType == type) ++n;
        return n;
    }

private:
    fs::path out_;
    std::unique_ptr<berth::testing::ProcessGuard> proc_;
};

const std::vector<std::string> kWatcher = {"--id", "self::berthctl-watch", "--topic", "usp/controller/berthctl-watch"};

// `berthctl watch` for OperationComplete of Device.ScheduleTimer() as the second
// controller of the example configuration, printing to a file.
std::unique_ptr<berth::testing::ProcessGuard> watchOperationComplete(const AgentFixture& f, const fs::path& out) {
    std::vector<std::string> argv{BERTHCTL_BIN, "--mqtt", f.broker->address(), "--json"};
    argv.insert(argv.end(), kWatcher.begin(), kWatcher.end());
    argv.insert(argv.end(), {"watch", "--type", "OperationComplete", "--timeout", "60", "Device.ScheduleTimer()"});
    auto proc = berth::testing::ProcessGuard::start(argv, out.string());
    return proc;
}

// JSON text without blanks, so that checks do not depend on its layout.
std::string compact(const std::string& text) {
    std::string out;
    for (char c : text)
        if (c != ' ' && c != '\n' && c != '\t') out += c;
    return out;
}

bool waitSubscribed(AgentFixture& f) {
    return berth::testing::waitUntil([&] {
        auto r = f.ctl({"get", "Device.LocalAgent.Subscription.*.NotifType"});
        return r.exitCode == 0 && r.out.find("OperationComplete") != std::string::npos;
    });
}

}  // namespace

// Sets an environment variable for the berthd this test starts (it inherits the
// test's environment) and removes it afterwards.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
    ~ScopedEnv() { ::unsetenv(name_); }

private:
    const char* name_;
};

std::string withoutIdentity(const std::string& conf) {
    std::string out;
    std::size_t pos = 0;
    while (pos < conf.size()) {
        auto nl = conf.find('\n', pos);
        std::string line = conf.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos + 1);
        pos = nl == std::string::npos ? conf.size() : nl + 1;
        if (line.rfind("Device.DeviceInfo.", 0) == 0 || line.rfind("Device.LocalAgent.EndpointID", 0) == 0) continue;
        out += line;
    }
    return out;
}

TEST_CASE("TP-469 1.60: OnBoardRequest Notification from an agent whose configuration has no DeviceInfo",
          "[agent][tp469]") {
    // No DeviceInfo and no EndpointID in the configuration: berth's defaults give the
    // OUI, ProductClass, SerialNumber (here from obuspa's USP_BOARD_SERIAL) and the ID.
    ScopedEnv serial("USP_BOARD_SERIAL", "SN-160");
    AgentFixture f(withoutIdentity, {"--agent", "os::000000-SN-160", "--agent-topic", "usp/agent/os::012345-0001"});
    TopicTap tap(f, "ctrl", "usp/controller/berthctl");
    auto r = f.ctl({"operate", "Device.LocalAgent.Controller.1.SendOnBoardRequest()", "--no-resp"});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    const usp::Notify* onBoard = nullptr;
    std::vector<berth::agent::DecodedRecord> recs;
    REQUIRE(berth::testing::waitUntil([&] {
        recs = tap.records();
        for (const auto& d : recs)
            if (d.msgType == usp::Header::NOTIFY && d.msg.body().request().notify().has_on_board_req())
                onBoard = &d.msg.body().request().notify();
        return onBoard != nullptr;
    }));
    CHECK(onBoard->subscription_id().empty());
    CHECK(onBoard->on_board_req().oui() == "000000");
    CHECK(onBoard->on_board_req().product_class() == "berth");
    CHECK(onBoard->on_board_req().serial_number() == "SN-160");
    CHECK_FALSE(onBoard->on_board_req().agent_supported_protocol_versions().empty());
    // send_resp=false: no OperateResp.
    CHECK(tap.count(usp::Header::OPERATE_RESP) == 0);
}

TEST_CASE("TP-469 1.61: Operate message using Reboot() with send_resp true", "[agent][tp469]") {
    AgentFixture f;
    auto r = f.ctl({"operate", "Device.Reboot()"});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    const auto& result = r.json["operate_resp"]["operation_results"][0];
    CHECK(result["executed_command"] == "Device.Reboot()");
    CHECK((!result.contains("req_output_args") || result["req_output_args"]["output_args"].empty()));
    // The EUT comes back: a second start of berthd, answering again.
    REQUIRE(berth::testing::waitUntil([&] {
        auto log = f.agent->log();
        return log.find("running as", log.find("running as") + 1) != std::string::npos;
    }));
    CHECK(f.waitAnswering());
}

TEST_CASE("TP-469 1.62: Operate message using Reboot() with send_resp false", "[agent][tp469]") {
    AgentFixture f;
    TopicTap tap(f, "ctrl", "usp/controller/berthctl");
    auto r = f.ctl({"operate", "Device.Reboot()", "--no-resp"});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    REQUIRE(berth::testing::waitUntil([&] {
        auto log = f.agent->log();
        return log.find("running as", log.find("running as") + 1) != std::string::npos;
    }));
    REQUIRE(f.waitAnswering());
    // Everything the agent sent before it answered again holds no OperateResp.
    CHECK(tap.count(usp::Header::OPERATE_RESP) == 0);
    CHECK(tap.count(usp::Header::GET_RESP) >= 1);
}

TEST_CASE("TP-469 1.64: Asynchronous operation with send_resp true, on Device.ScheduleTimer()", "[agent][tp469]") {
    AgentFixture f;
    auto r = f.ctl(
        {"operate", "Device.ScheduleTimer()", "DelaySeconds=1", "--key", "test64", "--wait", "--wait-timeout", "30"});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    // The OperateResp names the Request row, then the OperationComplete arrives.
    auto out = compact(r.out);
    auto resp = out.find("\"req_obj_path\":\"Device.LocalAgent.Request.");
    auto complete = out.find("\"oper_complete\"");
    CHECK(resp != std::string::npos);
    REQUIRE(complete != std::string::npos);
    CHECK(resp < complete);
    CHECK(out.find("\"command_key\":\"test64\"") != std::string::npos);
    CHECK(out.find("\"command_name\":\"ScheduleTimer()\"") != std::string::npos);
    CHECK(out.find("\"obj_path\":\"Device.\"") != std::string::npos);
}

TEST_CASE("TP-469 1.65: Asynchronous operation with send_resp false, on Device.ScheduleTimer()", "[agent][tp469]") {
    AgentFixture f;
    TopicTap tap(f, "ctrl", "usp/controller/berthctl");
    auto watch = watchOperationComplete(f, f.tmp / "watch.out");
    REQUIRE(waitSubscribed(f));
    auto r = f.ctl({"operate", "Device.ScheduleTimer()", "DelaySeconds=1", "--key", "test65", "--no-resp"});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    bool completed = berth::testing::waitUntil(
        [&] { return berth::testing::readFile(f.tmp / "watch.out").find("\"test65\"") != std::string::npos; }, 15s);
    INFO(berth::testing::readFile(f.tmp / "watch.out"));
    CHECK(completed);
    CHECK(tap.count(usp::Header::OPERATE_RESP) == 0);
}

TEST_CASE("TP-469 1.79: Operate message using input arguments", "[agent][tp469]") {
    AgentFixture f;
    auto watch = watchOperationComplete(f, f.tmp / "watch.out");
    REQUIRE(waitSubscribed(f));
    auto r = f.ctl({"operate", "Device.ScheduleTimer()", "DelaySeconds=3", "--key", "test79"});
    auto answered = std::chrono::steady_clock::now();
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    std::string req = r.json["operate_resp"]["operation_results"][0]["req_obj_path"];
    CHECK(req.rfind("Device.LocalAgent.Request.", 0) == 0);
    // Not before DelaySeconds: the timer has not fired one second in.
    auto early = f.ctl({"get", "Device.LocalAgent.Request.*.CommandKey"});
    CHECK(early.out.find("test79") != std::string::npos);
    CHECK(berth::testing::readFile(f.tmp / "watch.out").find("\"test79\"") == std::string::npos);
    REQUIRE(berth::testing::waitUntil(
        [&] { return berth::testing::readFile(f.tmp / "watch.out").find("\"test79\"") != std::string::npos; }, 20s));
    CHECK(std::chrono::steady_clock::now() - answered >= 2s);
    auto out = compact(berth::testing::readFile(f.tmp / "watch.out"));
    INFO(out);
    CHECK(out.find("\"command_name\":\"ScheduleTimer()\"") != std::string::npos);
    CHECK(out.find("\"obj_path\":\"Device.\"") != std::string::npos);
    // The Request row is gone once the operation completed.
    CHECK(berth::testing::waitUntil([&] {
        return f.ctl({"get", "Device.LocalAgent.Request.*.CommandKey"}).out.find("test79") == std::string::npos;
    }));
}

TEST_CASE("TP-469 1.91: Unknown arguments in an Operate message", "[agent][tp469]") {
    AgentFixture f;
    auto r = f.ctl({"operate", "Device.ScheduleTimer()", "DelaySeconds=1", "InvalidArgument=1", "--key", "test91"});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    const auto& result = r.json["operate_resp"]["operation_results"][0];
    CHECK(result["executed_command"] == "Device.ScheduleTimer()");
    CHECK(result.contains("req_obj_path"));
    CHECK_FALSE(result.contains("cmd_failure"));
}

TEST_CASE("TP-469 1.100: Command with missing mandatory input_args", "[agent][tp469]") {
    AgentFixture f;
    auto watch = watchOperationComplete(f, f.tmp / "watch.out");
    REQUIRE(waitSubscribed(f));
    auto r = f.ctl({"operate", "Device.ScheduleTimer()", "--key", "test100"});
    INFO(r.describe());
    CHECK(r.exitCode == 1);
    const auto& result = r.json["operate_resp"]["operation_results"][0];
    REQUIRE(result.contains("cmd_failure"));
    CHECK(result["cmd_failure"]["err_code"] == 7027);
    // No OperationComplete for it: a later timer's completion arrives, and it is the only one.
    REQUIRE(f.ctl({"operate", "Device.ScheduleTimer()", "DelaySeconds=1", "--key", "after100"}).exitCode == 0);
    REQUIRE(berth::testing::waitUntil(
        [&] { return berth::testing::readFile(f.tmp / "watch.out").find("\"after100\"") != std::string::npos; }, 15s));
    auto out = berth::testing::readFile(f.tmp / "watch.out");
    INFO(out);
    CHECK(out.find("test100") == std::string::npos);
}
