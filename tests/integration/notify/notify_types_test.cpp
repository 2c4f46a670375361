// Every notification type end to end: berthd as a process, a real mosquitto, and a
// controller on the other side (berthctl watch where it can subscribe; a raw MQTT
// listener for what berthctl watch cannot see: Boot! of a subscription that outlives the
// restart, and OnBoardRequest, which has no subscription).
#include <catch2/catch.hpp>

#include "notify_support.h"

using namespace berth::notifytest;
using berth::agenttest::paramValue;
using berth::agenttest::setConfigValue;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// A controller that is not onboarded yet, on its own topic, with a 1 s retry base. It
// starts disabled so a listener can be in place before the first OnBoardRequest.
const std::string kOnboardController = R"(
Device.LocalAgent.Controller.3.Alias "cpe-onboard"
Device.LocalAgent.Controller.3.EndpointID "proto::onboard"
Device.LocalAgent.Controller.3.Enable "false"
Device.LocalAgent.Controller.3.AssignedRole "Device.LocalAgent.ControllerTrust.Role.1."
Device.LocalAgent.Controller.3.OnBoardingComplete "false"
Device.LocalAgent.Controller.3.USPNotifRetryMinimumWaitInterval "1"
Device.LocalAgent.Controller.3.USPNotifRetryIntervalMultiplier "2000"
Device.LocalAgent.Controller.3.MTP.1.Alias "cpe-onboard-mqtt"
Device.LocalAgent.Controller.3.MTP.1.Enable "true"
Device.LocalAgent.Controller.3.MTP.1.Protocol "MQTT"
Device.LocalAgent.Controller.3.MTP.1.MQTT.AgentMTPReference "Device.LocalAgent.MTP.1."
Device.LocalAgent.Controller.3.MTP.1.MQTT.Topic "usp/controller/onboard"
)";

const std::vector<std::string> kWatchSession{"--id", "self::berthctl-watch"};

}  // namespace

TEST_CASE("ValueChange on a parameter path reaches berthctl watch", "[notify]") {
    AgentFixture f;
    Watch w(f, "vc-param", "ValueChange", {"Device.DeviceInfo.FriendlyName"});
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=first"}).exitCode == 0);
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=second"}).exitCode == 0);
    bool got = w.waitCount(2);
    INFO(w.output());
    REQUIRE(got);
    auto n = w.notifications();
    CHECK(n.size() == 2);
    CHECK(n[0]["subscription_id"] == w.subscriptionId());
    CHECK(n[0]["value_change"]["param_path"] == "Device.DeviceInfo.FriendlyName");
    CHECK(n[0]["value_change"]["param_value"] == "first");
    CHECK(n[1]["value_change"]["param_value"] == "second");
    CHECK(w.stop().success());
}

TEST_CASE("ValueChange on an object path reports every parameter changed below it", "[notify]") {
    AgentFixture f;
    Watch w(f, "vc-object", "ValueChange", {"Device.LocalAgent.Controller.2."});
    // Outside the object: nothing.
    REQUIRE(f.ctl({"set", "Device.LocalAgent.Controller.1.ProvisioningCode=outside"}).exitCode == 0);
    REQUIRE(f.ctl({"set", "Device.LocalAgent.Controller.2.ProvisioningCode=inside",
                   "Device.LocalAgent.Controller.2.PeriodicNotifTime=2030-01-01T00:00:00Z"})
                .exitCode == 0);
    bool got = w.waitCount(2);
    INFO(w.output());
    REQUIRE(got);
    std::map<std::string, std::string> seen;
    for (const auto& n : w.notifications()) seen[n["value_change"]["param_path"]] = n["value_change"]["param_value"];
    CHECK(seen.size() == 2);
    CHECK(seen["Device.LocalAgent.Controller.2.ProvisioningCode"] == "inside");
    CHECK(seen["Device.LocalAgent.Controller.2.PeriodicNotifTime"] == "2030-01-01T00:00:00Z");
    CHECK(seen.count("Device.LocalAgent.Controller.1.ProvisioningCode") == 0);
}

TEST_CASE("ValueChange on a wildcard path reports the instance that changed", "[notify]") {
    AgentFixture f;
    Watch w(f, "vc-wildcard", "ValueChange", {"Device.LocalAgent.Controller.*.ProvisioningCode"});
    REQUIRE(f.ctl({"set", "Device.LocalAgent.Controller.2.ProvisioningCode=two"}).exitCode == 0);
    REQUIRE(f.ctl({"set", "Device.LocalAgent.Controller.1.ProvisioningCode=one"}).exitCode == 0);
    bool got = w.waitCount(2);
    INFO(w.output());
    REQUIRE(got);
    auto n = w.notifications();
    CHECK(n[0]["value_change"]["param_path"] == "Device.LocalAgent.Controller.2.ProvisioningCode");
    CHECK(n[0]["value_change"]["param_value"] == "two");
    CHECK(n[1]["value_change"]["param_path"] == "Device.LocalAgent.Controller.1.ProvisioningCode");
    CHECK(n[1]["value_change"]["param_value"] == "one");
}

TEST_CASE("ValueChange on a search expression reports only the rows it selects", "[notify]") {
    AgentFixture f;
    Watch w(f, "vc-search", "ValueChange",
            {"Device.LocalAgent.Controller.[Alias==\"cpe-controller-watch\"].ProvisioningCode"});
    // The row the search does not select changes first: if it were reported, it would
    // come before the one that is selected.
    REQUIRE(f.ctl({"set", "Device.LocalAgent.Controller.1.ProvisioningCode=not-selected"}).exitCode == 0);
    REQUIRE(f.ctl({"set", "Device.LocalAgent.Controller.2.ProvisioningCode=selected"}).exitCode == 0);
    bool got = w.waitCount(1);
    INFO(w.output());
    REQUIRE(got);
    auto n = w.notifications();
    CHECK(n.size() == 1);
    CHECK(n[0]["value_change"]["param_path"] == "Device.LocalAgent.Controller.2.ProvisioningCode");
    CHECK(n[0]["value_change"]["param_value"] == "selected");
}

TEST_CASE("ObjectCreation carries the new instance and all its unique keys", "[notify]") {
    AgentFixture f;
    Watch w(f, "creation", "ObjectCreation", {"Device.LocalAgent.Controller.1.BootParameter."});
    auto add = f.ctl({"add", "Device.LocalAgent.Controller.1.BootParameter.", "Enable=true",
                      "ParameterName=Device.DeviceInfo.SerialNumber"});
    INFO(add.describe());
    REQUIRE(add.exitCode == 0);
    std::string path = add.json["add_resp"]["created_obj_results"][0]["oper_status"]["oper_success"]["instantiated_path"];
    bool got = w.waitCount(1);
    INFO(w.output());
    REQUIRE(got);
    auto n = w.notifications().front();
    CHECK(n["subscription_id"] == w.subscriptionId());
    CHECK(n["obj_creation"]["obj_path"] == path);
    CHECK(n["obj_creation"]["unique_keys"]["ParameterName"] == "Device.DeviceInfo.SerialNumber");
    CHECK(!n["obj_creation"]["unique_keys"]["Alias"].get<std::string>().empty());
}

TEST_CASE("ObjectDeletion names the deleted instance", "[notify]") {
    AgentFixture f;
    auto add = f.ctl({"add", "Device.LocalAgent.Controller.1.BootParameter.", "Enable=true",
                      "ParameterName=Device.DeviceInfo.ModelName"});
    REQUIRE(add.exitCode == 0);
    std::string path = add.json["add_resp"]["created_obj_results"][0]["oper_status"]["oper_success"]["instantiated_path"];
    Watch w(f, "deletion", "ObjectDeletion", {"Device.LocalAgent.Controller.1.BootParameter."});
    REQUIRE(f.ctl({"delete", path}).exitCode == 0);
    bool got = w.waitCount(1);
    INFO(w.output());
    REQUIRE(got);
    auto n = w.notifications();
    CHECK(n.size() == 1);
    CHECK(n[0]["obj_deletion"]["obj_path"] == path);
}

TEST_CASE("Event: Device.LocalAgent.Periodic! arrives at the controller's interval", "[notify]") {
    AgentFixture f;
    Watch w(f, "periodic", "Event", {"Device.LocalAgent.Periodic!"});
    REQUIRE(f.ctl({"set", "Device.LocalAgent.Controller.1.PeriodicNotifInterval=1"}).exitCode == 0);
    auto start = std::chrono::steady_clock::now();
    bool got = w.waitCount(2, 10s);
    auto took = std::chrono::steady_clock::now() - start;
    INFO(w.output());
    REQUIRE(got);
    auto n = w.notifications();
    CHECK(n[0]["event"]["obj_path"] == "Device.LocalAgent.");
    CHECK(n[0]["event"]["event_name"] == "Periodic!");
    // Two events one second apart take at least one second.
    CHECK(took >= 900ms);
}

TEST_CASE("Event: Device.Boot! after a restart carries Cause and the controller's ParameterMap", "[notify]") {
    AgentFixture f;
    // Controller 2 (self::berthctl-watch) owns a persistent Boot! subscription and
    // three BootParameter rows, one of them disabled.
    auto sub = addSubscription(f, {"ID=boot", "Enable=true", "Persistent=true", "NotifType=Event",
                                   "ReferenceList=Device.Boot!"},
                               kWatchSession);
    for (const auto& [name, enable] : std::vector<std::pair<std::string, std::string>>{
             {"Device.DeviceInfo.SerialNumber", "true"},
             {"Device.DeviceInfo.Manufacturer", "true"},
             {"Device.DeviceInfo.ModelName", "false"}}) {
        auto r = f.ctl({"add", "Device.LocalAgent.Controller.2.BootParameter.", "Enable=" + enable,
                        "ParameterName=" + name});
        INFO(r.describe());
        REQUIRE(r.exitCode == 0);
    }
    RawListener listener(f, "usp/controller/berthctl-watch");
    CHECK(f.agent->stop().success());
    f.agent->start();
    bool got = listener.waitCount(1, 15s);
    INFO(listener.output());
    INFO(f.agent->log());
    REQUIRE(got);
    auto n = listener.notifications().front().notify;
    CHECK(n.subscription_id() == "boot");
    REQUIRE(n.has_event());
    CHECK(n.event().obj_path() == "Device.");
    CHECK(n.event().event_name() == "Boot!");
    const auto& params = n.event().params();
    REQUIRE(params.count("Cause"));
    CHECK(std::set<std::string>{"LocalReboot", "RemoteReboot", "FactoryReset", "LocalFactoryReset",
                                "RemoteFactoryReset"}
              .count(params.at("Cause")) == 1);
    REQUIRE(params.count("ParameterMap"));
    auto map = json::parse(params.at("ParameterMap"), nullptr, false);
    INFO(params.at("ParameterMap"));
    REQUIRE(map.is_object());
    CHECK(map["Device.DeviceInfo.SerialNumber"] == "0001");
    CHECK(map["Device.DeviceInfo.Manufacturer"] == "berth");
    CHECK(!map.contains("Device.DeviceInfo.ModelName"));
    // Controller 1 has no Boot! subscription: the notification went to controller 2 only.
    CHECK(listener.notifications().size() == 1);
}

#ifdef BERTH_WITH_OCI
TEST_CASE("OperationComplete of InstallDU() with an unreachable URL reports the failure", "[notify]") {
    AgentFixture f;
    Watch w(f, "opcomplete", "OperationComplete", {"Device.SoftwareModules.InstallDU()"});
    auto url = "http://127.0.0.1:" + std::to_string(berth::testing::freeTcpPort()) + "/nothing.tar";
    auto r = f.ctl({"operate", "Device.SoftwareModules.InstallDU()", "--key", "bad-url", "URL=" + url,
                    "ExecutionEnvRef=Device.SoftwareModules.ExecEnv.1."});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    std::string request = r.json["operate_resp"]["operation_results"][0]["req_obj_path"];
    CHECK(request.rfind("Device.LocalAgent.Request.", 0) == 0);
    bool got = w.waitCount(1, 60s);
    INFO(w.output());
    INFO(f.agent->log());
    REQUIRE(got);
    auto n = w.notifications().front();
    CHECK(n["oper_complete"]["obj_path"] == "Device.SoftwareModules.");
    CHECK(n["oper_complete"]["command_name"] == "InstallDU()");
    CHECK(n["oper_complete"]["command_key"] == "bad-url");
    REQUIRE(n["oper_complete"].contains("cmd_failure"));
    CHECK(n["oper_complete"]["cmd_failure"]["err_code"].get<int>() != 0);
}
#endif

TEST_CASE("OnBoardRequest is retried on the controller's schedule until a NotifyResp arrives", "[notify]") {
    AgentFixture f([](std::string c) { return c + kOnboardController; });
    RawListener listener(f, "usp/controller/onboard");
    REQUIRE(f.ctl({"set", "Device.LocalAgent.Controller.3.Enable=true"}).exitCode == 0);
    // The first send and two retries (waits in [1, 2] s and [2, 4] s).
    auto start = std::chrono::steady_clock::now();
    bool got = listener.waitCount(3, 15s);
    auto took = std::chrono::steady_clock::now() - start;
    INFO(listener.output());
    INFO(f.agent->log());
    REQUIRE(got);
    auto n = listener.notifications();
    for (const auto& r : n) {
        INFO(describe(r));
        CHECK(r.notify.has_on_board_req());
        CHECK(r.notify.subscription_id().empty());
        CHECK(r.notify.send_resp());
        CHECK(r.msgId == n[0].msgId);  // a retry is the same message
    }
    CHECK(n[0].notify.on_board_req().oui() == "012345");
    CHECK(n[0].notify.on_board_req().product_class() == "demo");
    CHECK(n[0].notify.on_board_req().serial_number() == "0001");
    CHECK(n[0].notify.on_board_req().agent_supported_protocol_versions().find("1.4") != std::string::npos);
    // 1 s + 2 s at least between the first send and the second retry.
    CHECK(took >= 2900ms);
    CHECK(took <= 8s);

    sendNotifyResp(f, "proto::onboard", n[0].msgId, "");
    // The next retry would come at most 8 s after the previous one; wait past that.
    auto answered = listener.notifications().size();
    CHECK(!berth::testing::waitUntil([&] { return listener.notifications().size() > answered + 1; }, 9s));
    // At most one retry can have crossed the NotifyResp on the wire.
    CHECK(listener.notifications().size() <= answered + 1);
    auto get = f.ctl({"get", "Device.LocalAgent.Controller.3.OnBoardingComplete"});
    CHECK(paramValue(get.json, "Device.LocalAgent.Controller.3.OnBoardingComplete") == "false");
}
