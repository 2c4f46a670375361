// TP-469 notification cases that run against berthd over mosquitto, each named after
// its case. Waits the test plan gives in tens of seconds (retry base, TimeToLive,
// NotifExpiration, OnBoardingRestartTime, PeriodicNotifInterval) are scaled down to
// one to three seconds through the same parameters; the checks are the plan's.
#include <catch2/catch.hpp>

#include "notify_support.h"

using namespace berth::notifytest;
using berth::agenttest::paramValue;
using berth::agenttest::setConfigValue;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

const std::vector<std::string> kWatchSession{"--id", "self::berthctl-watch"};
const std::string kWatchTopic = "usp/controller/berthctl-watch";
const std::string kCtlTopic = "usp/controller/berthctl";

std::string instantiated(const berth::agenttest::CtlResult& r) {
    return r.json["add_resp"]["created_obj_results"][0]["oper_status"]["oper_success"]["instantiated_path"];
}

// A subscription of controller 2 on Controller.2.ProvisioningCode: changing that
// parameter after something else gives an ordered marker on controller 2's topic; any
// notification the earlier change caused would have arrived before it.
void addMarker(AgentFixture& f) {
    addSubscription(f, {"ID=marker", "Enable=true", "NotifType=ValueChange",
                        "ReferenceList=Device.LocalAgent.Controller.2.ProvisioningCode"},
                    kWatchSession);
}
void raiseMarker(AgentFixture& f, const RawListener& l, const std::string& value) {
    REQUIRE(f.ctl({"set", "Device.LocalAgent.Controller.2.ProvisioningCode=" + value}).exitCode == 0);
    bool seen = berth::testing::waitUntil([&] {
        for (const auto& r : l.notifications())
            if (r.notify.subscription_id() == "marker" && r.notify.value_change().param_value() == value) return true;
        return false;
    });
    INFO(l.output());
    REQUIRE(seen);
}
std::size_t countFor(const RawListener& l, const std::string& subId) {
    std::size_t n = 0;
    for (const auto& r : l.notifications()) n += r.notify.subscription_id() == subId;
    return n;
}

// Waits n notifications of `subId` and returns when each arrived.
std::vector<Clock::time_point> arrivals(const RawListener& l, const std::string& subId, std::size_t n,
                                        std::chrono::seconds timeout) {
    std::vector<Clock::time_point> at;
    auto deadline = Clock::now() + timeout;
    while (at.size() < n && Clock::now() < deadline) {
        auto c = countFor(l, subId);
        while (at.size() < c) at.push_back(Clock::now());
        (void)berth::testing::waitUntil([&] { return countFor(l, subId) > at.size(); }, 100ms);
    }
    return at;
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string withRole(std::string c, const std::string& param) {
    // Role 1 with a second, more specific permission on controller 1's own
    // PeriodicNotifInterval.
    return c + "\nDevice.LocalAgent.ControllerTrust.Role.1.Permission.2.Enable \"true\"\n"
               "Device.LocalAgent.ControllerTrust.Role.1.Permission.2.Order \"2\"\n"
               "Device.LocalAgent.ControllerTrust.Role.1.Permission.2.Targets "
               "\"Device.LocalAgent.Controller.1.PeriodicNotifInterval\"\n"
               "Device.LocalAgent.ControllerTrust.Role.1.Permission.2.Param \"" +
           param + "\"\n";
}

}  // namespace

TEST_CASE("TP-469 1.52: Notify - Subscription creation using Value Change", "[notify][tp469]") {
    AgentFixture f;
    Watch w(f, "notify52", "ValueChange", {"Device.LocalAgent.Controller.1.ProvisioningCode"});
    REQUIRE(f.ctl({"set", "Device.LocalAgent.Controller.1.ProvisioningCode=TestValue52"}).exitCode == 0);
    REQUIRE(w.waitCount(1));
    auto n = w.notifications().front();
    CHECK(n["subscription_id"] == w.subscriptionId());
    CHECK(n["value_change"]["param_path"] == "Device.LocalAgent.Controller.1.ProvisioningCode");
    CHECK(n["value_change"]["param_value"] == "TestValue52");
}

TEST_CASE("TP-469 1.53: Notify - Subscription Deletion Using Value Change", "[notify][tp469]") {
    AgentFixture f;
    auto sub = addSubscription(f, {"ID=notify53", "Enable=true", "NotifType=ValueChange",
                                   "ReferenceList=Device.DeviceInfo.FriendlyName"},
                               kWatchSession);
    addMarker(f);
    RawListener l(f, kWatchTopic);
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=before delete"}).exitCode == 0);
    REQUIRE(berth::testing::waitUntil([&] { return countFor(l, "notify53") == 1; }));
    auto del = f.ctl({"delete", sub});
    INFO(del.describe());
    REQUIRE(del.exitCode == 0);
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=after delete"}).exitCode == 0);
    raiseMarker(f, l, "after-53");
    CHECK(countFor(l, "notify53") == 1);
}

TEST_CASE("TP-469 1.54: Notification Retry using Value Change", "[notify][tp469]") {
    // USPNotifRetryMinimumWaitInterval 1 s instead of 5 s: retries after [1, 2] s and
    // then [2, 4] s.
    AgentFixture f([](std::string c) {
        return setConfigValue(c, "Device.LocalAgent.Controller.2.USPNotifRetryMinimumWaitInterval", "1");
    });
    addSubscription(f, {"ID=notify54", "Enable=true", "NotifRetry=true", "NotifType=ValueChange",
                        "ReferenceList=Device.DeviceInfo.FriendlyName"},
                    kWatchSession);
    RawListener l(f, kWatchTopic);
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=TestValue54"}).exitCode == 0);
    auto at = arrivals(l, "notify54", 3, 15s);
    INFO(l.output());
    REQUIRE(at.size() == 3);
    auto n = l.notifications();
    CHECK(n[0].notify.send_resp());
    CHECK(n[1].msgId == n[0].msgId);
    CHECK(n[2].msgId == n[0].msgId);
    // Arrival times are seen by polling every 100 ms; allow for that.
    CHECK(seconds(at[1] - at[0]) >= 0.8);
    CHECK(seconds(at[1] - at[0]) <= 2.5);
    CHECK(seconds(at[2] - at[1]) >= 1.8);
    CHECK(seconds(at[2] - at[1]) <= 4.5);
}

TEST_CASE("TP-469 1.55: Subscription Expiration using Value Change", "[notify][tp469]") {
    AgentFixture f;
    auto sub = addSubscription(f, {"ID=notify55", "Enable=true", "TimeToLive=3", "NotifType=ValueChange",
                                   "ReferenceList=Device.DeviceInfo.FriendlyName"},
                               kWatchSession);
    addMarker(f);
    RawListener l(f, kWatchTopic);
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=before expiry"}).exitCode == 0);
    REQUIRE(berth::testing::waitUntil([&] { return countFor(l, "notify55") == 1; }));
    bool removed = berth::testing::waitUntil(
        [&] {
            auto r = f.ctl({"instances", "Device.LocalAgent.Subscription."});
            return r.exitCode == 0 && r.out.find("\"" + sub + "\"") == std::string::npos;
        },
        15s);
    CHECK(removed);
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=after expiry"}).exitCode == 0);
    raiseMarker(f, l, "after-55");
    CHECK(countFor(l, "notify55") == 1);
}

TEST_CASE("TP-469 1.56: Notification Retry Expiration using Value Change", "[notify][tp469]") {
    AgentFixture f([](std::string c) {
        return setConfigValue(c, "Device.LocalAgent.Controller.2.USPNotifRetryMinimumWaitInterval", "1");
    });
    addSubscription(f, {"ID=notify56", "Enable=true", "NotifRetry=true", "NotifExpiration=3", "NotifType=ValueChange",
                        "ReferenceList=Device.DeviceInfo.FriendlyName"},
                    kWatchSession);
    RawListener l(f, kWatchTopic);
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=TestValue56"}).exitCode == 0);
    auto at = arrivals(l, "notify56", 2, 10s);
    INFO(l.output());
    REQUIRE(at.size() == 2);  // retried within the expiration
    // Past the 3 s (plus the longest wait that may have started before it), nothing more.
    (void)berth::testing::waitUntil([&] { return Clock::now() - at[0] > 3500ms; }, 5s);
    auto count = countFor(l, "notify56");
    CHECK(!berth::testing::waitUntil([&] { return countFor(l, "notify56") > count; }, 6s));
    for (const auto& r : l.notifications()) CHECK(r.msgId == l.notifications().front().msgId);
}

TEST_CASE("TP-469 1.57: ObjectCreation Notification", "[notify][tp469]") {
    AgentFixture f;
    Watch w(f, "notify57", "ObjectCreation", {"Device.LocalAgent.Subscription."});
    auto path = addSubscription(f, {"ID=created57", "NotifType=ValueChange",
                                    "ReferenceList=Device.DeviceInfo.FriendlyName"});
    REQUIRE(w.waitCount(1));
    auto n = w.notifications().front();
    CHECK(n["subscription_id"] == w.subscriptionId());
    CHECK(n["obj_creation"]["obj_path"] == path);
    CHECK(n["obj_creation"]["unique_keys"]["ID"] == "created57");
    CHECK(n["obj_creation"]["unique_keys"]["Recipient"] == "Device.LocalAgent.Controller.1");
    CHECK(n["obj_creation"]["unique_keys"].contains("Alias"));
}

TEST_CASE("TP-469 1.58: ObjectDeletion Notification", "[notify][tp469]") {
    AgentFixture f;
    auto path = addSubscription(f, {"ID=deleted58", "NotifType=ValueChange",
                                    "ReferenceList=Device.DeviceInfo.FriendlyName"});
    Watch w(f, "notify58", "ObjectDeletion", {"Device.LocalAgent.Subscription."});
    REQUIRE(f.ctl({"delete", path}).exitCode == 0);
    REQUIRE(w.waitCount(1));
    auto n = w.notifications().front();
    CHECK(n["subscription_id"] == w.subscriptionId());
    CHECK(n["obj_deletion"]["obj_path"] == path);
}

TEST_CASE("TP-469 1.59: Event Notification using Periodic!", "[notify][tp469]") {
    // PeriodicNotifInterval 2 s instead of 60 s.
    AgentFixture f;
    addSubscription(f, {"ID=notify59", "Enable=true", "NotifType=Event", "ReferenceList=Device.LocalAgent.Periodic!"},
                    kWatchSession);
    RawListener l(f, kWatchTopic);
    auto set = f.ctl({"set", "Device.LocalAgent.Controller.2.PeriodicNotifInterval=2",
                      "Device.LocalAgent.Controller.2.PeriodicNotifTime=0001-01-01T00:00:00Z"});
    INFO(set.describe());
    REQUIRE(set.exitCode == 0);
    auto at = arrivals(l, "notify59", 3, 15s);
    INFO(l.output());
    REQUIRE(at.size() == 3);
    auto n = l.notifications();
    CHECK(n[0].notify.event().obj_path() == "Device.LocalAgent.");
    CHECK(n[0].notify.event().event_name() == "Periodic!");
    CHECK(seconds(at[2] - at[1]) >= 1.5);
    CHECK(seconds(at[2] - at[1]) <= 2.5);
}

TEST_CASE("TP-469 1.60: OnBoardRequest Notification", "[notify][tp469]") {
    AgentFixture f;
    RawListener l(f, kCtlTopic);
    auto r = f.ctl({"operate", "--no-resp", "Device.LocalAgent.Controller.1.SendOnBoardRequest()"});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    REQUIRE(l.waitCount(1));
    auto n = l.notifications().front();
    CHECK(n.notify.subscription_id().empty());
    REQUIRE(n.notify.has_on_board_req());
    CHECK(n.notify.on_board_req().oui() == "012345");
    CHECK(n.notify.on_board_req().product_class() == "demo");
    CHECK(n.notify.on_board_req().serial_number() == "0001");
    CHECK(!n.notify.on_board_req().agent_supported_protocol_versions().empty());
    sendNotifyResp(f, "self::berthctl", n.msgId, "");
}

#ifdef BERTH_WITH_OCI
TEST_CASE("TP-469 1.64: Asynchronous operation with send_resp true", "[notify][tp469]") {
    AgentFixture f;
    Watch w(f, "notify64", "OperationComplete", {"Device.SoftwareModules.InstallDU()"});
    auto url = "http://127.0.0.1:" + std::to_string(berth::testing::freeTcpPort()) + "/du.tar";
    auto r = f.ctl({"operate", "Device.SoftwareModules.InstallDU()", "--key", "test64", "URL=" + url,
                    "ExecutionEnvRef=Device.SoftwareModules.ExecEnv.1."});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    std::string req = r.json["operate_resp"]["operation_results"][0]["req_obj_path"];
    CHECK(req.rfind("Device.LocalAgent.Request.", 0) == 0);
    REQUIRE(w.waitCount(1, 60s));
    auto n = w.notifications().front();
    CHECK(n["oper_complete"]["obj_path"] == "Device.SoftwareModules.");
    CHECK(n["oper_complete"]["command_name"] == "InstallDU()");
    CHECK(n["oper_complete"]["command_key"] == "test64");
}

TEST_CASE("TP-469 1.65: Asynchronous operation with send_resp false", "[notify][tp469]") {
    AgentFixture f;
    Watch w(f, "notify65", "OperationComplete", {"Device.SoftwareModules.InstallDU()"});
    auto url = "http://127.0.0.1:" + std::to_string(berth::testing::freeTcpPort()) + "/du.tar";
    auto r = f.ctl({"operate", "--no-resp", "Device.SoftwareModules.InstallDU()", "--key", "test65", "URL=" + url,
                    "ExecutionEnvRef=Device.SoftwareModules.ExecEnv.1."});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    CHECK(r.out.empty());  // no OperateResp
    REQUIRE(w.waitCount(1, 60s));
    auto n = w.notifications().front();
    CHECK(n["oper_complete"]["command_name"] == "InstallDU()");
    CHECK(n["oper_complete"]["command_key"] == "test65");
}
#endif

TEST_CASE("TP-469 1.78: Removal of subscriptions that have no associated controller", "[notify][tp469]") {
    AgentFixture f;
    auto ctl = f.ctl({"add", "Device.LocalAgent.Controller.", "EndpointID=proto::secondary", "Enable=true",
                      "AssignedRole=Device.LocalAgent.ControllerTrust.Role.1."});
    INFO(ctl.describe());
    REQUIRE(ctl.exitCode == 0);
    auto controller = instantiated(ctl);
    auto sub = addSubscription(f, {"ID=notify78", "Enable=true", "NotifType=ValueChange",
                                   "ReferenceList=Device.DeviceInfo.FriendlyName"},
                               {"--id", "proto::secondary"});
    auto recipient = f.ctl({"get", sub + "Recipient"});
    CHECK(paramValue(recipient.json, sub + "Recipient") == controller.substr(0, controller.size() - 1));
    REQUIRE(f.ctl({"delete", controller}).exitCode == 0);
    auto inst = f.ctl({"instances", "Device.LocalAgent.Subscription."});
    INFO(inst.describe());
    CHECK(inst.out.find("\"" + sub + "\"") == std::string::npos);
}

TEST_CASE("TP-469 1.81: Automatic unique key generation", "[notify][tp469]") {
    AgentFixture f;
    auto a = f.ctl({"add", "Device.LocalAgent.Subscription.", "NotifType=ValueChange",
                    "ReferenceList=Device.DeviceInfo.FriendlyName"});
    auto b = f.ctl({"add", "Device.LocalAgent.Subscription.", "NotifType=ValueChange",
                    "ReferenceList=Device.DeviceInfo.FriendlyName"});
    INFO(a.describe() << "\n" << b.describe());
    REQUIRE(a.exitCode == 0);
    REQUIRE(b.exitCode == 0);
    auto ka = a.json["add_resp"]["created_obj_results"][0]["oper_status"]["oper_success"]["unique_keys"];
    auto kb = b.json["add_resp"]["created_obj_results"][0]["oper_status"]["oper_success"]["unique_keys"];
    CHECK(!ka["ID"].get<std::string>().empty());
    CHECK(ka["ID"] != kb["ID"]);
    CHECK(ka["Alias"] != kb["Alias"]);
    CHECK(ka["Recipient"] == kb["Recipient"]);
}

TEST_CASE("TP-469 1.84: Notification - Subscription using search paths", "[notify][tp469]") {
    AgentFixture f;
    std::vector<std::string> rows;
    for (const std::string name : {"Device.DeviceInfo.SerialNumber", "Device.DeviceInfo.ModelName"}) {
        auto r = f.ctl({"add", "Device.LocalAgent.Controller.1.BootParameter.", "Enable=true", "ParameterName=" + name});
        REQUIRE(r.exitCode == 0);
        rows.push_back(instantiated(r));
    }
    Watch w(f, "notify84", "ValueChange", {"Device.LocalAgent.Controller.1.BootParameter.*.Enable"});
    REQUIRE(f.ctl({"set", rows[1] + "Enable=false"}).exitCode == 0);
    REQUIRE(w.waitCount(1));
    auto n = w.notifications();
    CHECK(n.size() == 1);
    CHECK(n[0]["value_change"]["param_path"] == rows[1] + "Enable");
    CHECK(n[0]["value_change"]["param_value"] == "false");
}

TEST_CASE("TP-469 1.93: Subscription using TriggerAction Config", "[notify][tp469]") {
    AgentFixture f;
    auto sub = addSubscription(f, {"ID=notify93", "NotifType=ValueChange", "TriggerAction=Config",
                                   "ReferenceList=Device.DeviceInfo.FriendlyName"},
                               kWatchSession);
    REQUIRE(f.ctl({"set", sub + "TriggerConfigSettings=" + sub + "Enable=false", sub + "Enable=true"}).exitCode == 0);
    addMarker(f);
    RawListener l(f, kWatchTopic);
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=TestValue93"}).exitCode == 0);
    bool disabled = berth::testing::waitUntil([&] {
        return paramValue(f.ctl({"get", sub + "Enable"}).json, sub + "Enable") == std::optional<std::string>("false");
    });
    CHECK(disabled);
    raiseMarker(f, l, "after-93");
    CHECK(countFor(l, "notify93") == 0);  // Config alone notifies nobody
}

TEST_CASE("TP-469 1.94: Subscription using TriggerAction NotifyAndConfig", "[notify][tp469]") {
    AgentFixture f;
    auto sub = addSubscription(f, {"ID=notify94", "NotifType=ValueChange", "TriggerAction=NotifyAndConfig",
                                   "ReferenceList=Device.DeviceInfo.FriendlyName"},
                               kWatchSession);
    REQUIRE(f.ctl({"set", sub + "TriggerConfigSettings=" + sub + "Enable=false", sub + "Enable=true"}).exitCode == 0);
    RawListener l(f, kWatchTopic);
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=TestValue94"}).exitCode == 0);
    REQUIRE(berth::testing::waitUntil([&] { return countFor(l, "notify94") == 1; }));
    CHECK(l.notifications().front().notify.value_change().param_value() == "TestValue94");
    auto get = f.ctl({"get", sub + "Enable"});
    CHECK(paramValue(get.json, sub + "Enable") == "false");
}

TEST_CASE("TP-469 1.101: OnBoardRequest Notification - OnBoardingComplete set to false", "[notify][tp469]") {
    AgentFixture f;
    RawListener l(f, kCtlTopic);
    REQUIRE(f.ctl({"operate", "Device.LocalAgent.Controller.1.SendOnBoardRequest()"}).exitCode == 0);
    REQUIRE(l.waitCount(1));
    CHECK(l.notifications().front().notify.has_on_board_req());
    sendNotifyResp(f, "self::berthctl", l.notifications().front().msgId, "");
    auto get = f.ctl({"get", "Device.LocalAgent.Controller.1.OnBoardingComplete"});
    CHECK(paramValue(get.json, "Device.LocalAgent.Controller.1.OnBoardingComplete") == "false");
    REQUIRE(f.ctl({"set", "Device.LocalAgent.Controller.1.OnBoardingComplete=true"}).exitCode == 0);
}

TEST_CASE("TP-469 1.102: OnBoardRequest Notification - OnBoardingRestartTime", "[notify][tp469]") {
    // OnBoardingRestartTime 2 s instead of 60 s.
    AgentFixture f;
    REQUIRE(f.ctl({"set", "Device.LocalAgent.Controller.1.OnBoardingRestartTime=2"}).exitCode == 0);
    RawListener l(f, kCtlTopic);
    REQUIRE(f.ctl({"operate", "Device.LocalAgent.Controller.1.SendOnBoardRequest()"}).exitCode == 0);
    REQUIRE(l.waitCount(1));
    auto acked = Clock::now();
    sendNotifyResp(f, "self::berthctl", l.notifications()[0].msgId, "");
    REQUIRE(l.waitCount(2, 10s));
    auto again = Clock::now();
    auto n = l.notifications();
    CHECK(n[1].notify.has_on_board_req());
    CHECK(n[1].msgId != n[0].msgId);  // a new request, not a retry
    CHECK(seconds(again - acked) >= 1.5);
    sendNotifyResp(f, "self::berthctl", n[1].msgId, "");
    REQUIRE(f.ctl({"set", "Device.LocalAgent.Controller.1.OnBoardingComplete=true"}).exitCode == 0);
    auto count = l.notifications().size();
    CHECK(!berth::testing::waitUntil([&] { return l.notifications().size() > count + 1; }, 5s));
}

TEST_CASE("TP-469 1.103: OnBoardRequest Notification - OnBoardingRestartTime disabled", "[notify][tp469]") {
    AgentFixture f;
    REQUIRE(f.ctl({"set", "Device.LocalAgent.Controller.1.OnBoardingRestartTime=0"}).exitCode == 0);
    RawListener l(f, kCtlTopic);
    REQUIRE(f.ctl({"operate", "Device.LocalAgent.Controller.1.SendOnBoardRequest()"}).exitCode == 0);
    REQUIRE(l.waitCount(1));
    sendNotifyResp(f, "self::berthctl", l.notifications()[0].msgId, "");
    CHECK(!berth::testing::waitUntil([&] { return l.notifications().size() > 1; }, 6s));
}

TEST_CASE("TP-469 2.19: Permissions - Value Change Notification Allowed on Parameter", "[notify][tp469]") {
    AgentFixture f([](std::string c) { return withRole(c, "rw-n"); });
    Watch w(f, "notify219", "ValueChange", {"Device.LocalAgent.Controller.1.PeriodicNotifInterval"});
    REQUIRE(f.ctl({"set", "Device.LocalAgent.Controller.1.PeriodicNotifInterval=86400"}).exitCode == 0);
    REQUIRE(w.waitCount(1));
    CHECK(w.notifications().front()["value_change"]["param_value"] == "86400");
}

TEST_CASE("TP-469 2.20: Permissions - Value Change Notification Not Allowed on Parameter", "[notify][tp469]") {
    AgentFixture f([](std::string c) { return withRole(c, "rw--"); });
    // The same watch also covers FriendlyName, which the role may be notified of: its
    // change, made after the denied one, arrives; the denied one must not come before it.
    Watch w(f, "notify220", "ValueChange",
            {"Device.LocalAgent.Controller.1.PeriodicNotifInterval", "Device.DeviceInfo.FriendlyName"});
    REQUIRE(f.ctl({"set", "Device.LocalAgent.Controller.1.PeriodicNotifInterval=86400"}).exitCode == 0);
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=after-220"}).exitCode == 0);
    REQUIRE(w.waitCount(1));
    auto n = w.notifications();
    CHECK(n.size() == 1);
    CHECK(n[0]["value_change"]["param_path"] == "Device.DeviceInfo.FriendlyName");
}

TEST_CASE("TP-469 9.9: Adding a New Controller - OnBoardRequest", "[notify][tp469]") {
    AgentFixture f;
    auto ctl = f.ctl({"add", "Device.LocalAgent.Controller.", "EndpointID=proto::new99", "Enable=true",
                      "AssignedRole=Device.LocalAgent.ControllerTrust.Role.1.", "OnBoardingComplete=true"});
    INFO(ctl.describe());
    REQUIRE(ctl.exitCode == 0);
    auto controller = instantiated(ctl);
    auto mtp = f.ctl({"add", controller + "MTP.", "Enable=true", "Protocol=MQTT",
                      "MQTT.AgentMTPReference=Device.LocalAgent.MTP.1.", "MQTT.Topic=usp/controller/new99"});
    INFO(mtp.describe());
    REQUIRE(mtp.exitCode == 0);
    RawListener l(f, "usp/controller/new99");
    auto op = f.ctl({"operate", controller + "SendOnBoardRequest()"});
    INFO(op.describe());
    REQUIRE(op.exitCode == 0);
    REQUIRE(l.waitCount(1));
    auto n = l.notifications().front();
    CHECK(n.notify.has_on_board_req());
    CHECK(n.notify.subscription_id().empty());
}

TEST_CASE("TP-469 9.10: Use of the Boot! event and BootParameters", "[notify][tp469]") {
    AgentFixture f;
    addSubscription(f, {"ID=boot910", "Enable=true", "Persistent=true", "NotifType=Event",
                        "ReferenceList=Device.Boot!"},
                    kWatchSession);
    auto bp = f.ctl({"add", "Device.LocalAgent.Controller.2.BootParameter.", "Enable=true",
                     "ParameterName=Device.DeviceInfo.BootFirmwareImage"});
    INFO(bp.describe());
    REQUIRE(bp.exitCode == 0);
    RawListener l(f, kWatchTopic);
    auto r = f.ctl({"operate", "Device.Reboot()", "Cause=RemoteReboot", "Reason=tp469-9.10"});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    REQUIRE(l.waitCount(1, 30s));
    auto n = l.notifications().front().notify;
    CHECK(n.subscription_id() == "boot910");
    CHECK(n.event().event_name() == "Boot!");
    CHECK(n.event().params().at("Cause") == "RemoteReboot");
    CHECK(n.event().params().at("Reason") == "tp469-9.10");
    auto map = nlohmann::json::parse(n.event().params().at("ParameterMap"), nullptr, false);
    INFO(n.event().params().at("ParameterMap"));
    CHECK(map.contains("Device.DeviceInfo.BootFirmwareImage"));
}
