// Boot!, OnBoardRequest and Periodic!.

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "berth/agent/codec.h"
#include "notifier_fixture.h"

using namespace berth;
using namespace berth::agent;
using namespace berth::agent::test;
using namespace std::chrono_literals;

namespace {

std::vector<Sent> onBoardRequests(const Harness& h, const std::string& ep) {
    std::vector<Sent> out;
    for (const auto& s : h.sentTo(ep))
        if (s.notify().has_on_board_req()) out.push_back(s);
    return out;
}

}  // namespace

TEST_CASE("Boot! carries the boot cause and each recipient's own BootParameter values", "[notify]") {
    testing::TempDir dir("berth-notify");
    NotifierOptions o;
    o.boot.cause = "RemoteReboot";
    o.boot.commandKey = "reboot-7";
    o.boot.firmwareUpdated = true;
    Harness h(dir.path(), o);
    h.standardControllers();
    REQUIRE(h.engine->setValue("Device.DeviceInfo.SerialNumber", "SN-1"));
    REQUIRE(h.engine->addInstance(kCtrl1 + "BootParameter.", {{"Enable", "true"}, {"ParameterName", "Device.DeviceInfo.SerialNumber"}}));
    REQUIRE(h.engine->addInstance(kCtrl1 + "BootParameter.", {{"Enable", "false"}, {"ParameterName", "Device.DeviceInfo.ModelName"}}));
    REQUIRE(h.engine->addInstance(kCtrl2 + "BootParameter.",
                                  {{"Enable", "true"}, {"ParameterName", "Device.LocalAgent.Controller.*.EndpointID"}}));
    h.createNotifier(false);
    h.subscribe(kCtrl1, "Event", "Device.Boot!", {{"Persistent", "true", true}});
    h.subscribe(kCtrl2, "Event", "Device.", {{"Persistent", "true", true}});
    h.notifier->start();
    h.pump();

    auto one = h.sentTo(kEp1);
    REQUIRE(one.size() == 1);
    const auto& ev = one[0].notify().event();
    CHECK(ev.obj_path() == "Device.");
    CHECK(ev.event_name() == "Boot!");
    CHECK(ev.params().at("Cause") == "RemoteReboot");
    CHECK(ev.params().at("CommandKey") == "reboot-7");
    CHECK(ev.params().at("FirmwareUpdated") == "true");
    auto map1 = nlohmann::json::parse(ev.params().at("ParameterMap"));
    CHECK(map1 == nlohmann::json{{"Device.DeviceInfo.SerialNumber", "SN-1"}});

    auto two = h.sentTo(kEp2);
    REQUIRE(two.size() == 1);
    auto map2 = nlohmann::json::parse(two[0].notify().event().params().at("ParameterMap"));
    CHECK(map2 == nlohmann::json{{"Device.LocalAgent.Controller.1.EndpointID", kEp1},
                                 {"Device.LocalAgent.Controller.2.EndpointID", kEp2}});

    // Device.Boot! raised through the engine (as the agent used to) is not sent twice.
    REQUIRE(h.engine->raiseEvent("Device.Boot!", {{"Cause", "LocalReboot"}}));
    h.pump();
    CHECK(h.sent.size() == 2);
}

TEST_CASE("Boot! ParameterMap only holds what the recipient may read", "[notify]") {
    Harness h;
    std::string full = h.addRole("Full", "rwxn", "rwxn", "rwxn", "rwxn");
    auto role = h.engine->addInstance("Device.LocalAgent.ControllerTrust.Role.", {{"Name", "Partial"}, {"Enable", "true"}});
    REQUIRE(role);
    REQUIRE(h.engine->addInstance(*role + "Permission.", {{"Enable", "true"}, {"Order", "1"}, {"Targets", "Device."},
                                                          {"Param", "r--n"}, {"Obj", "r--n"}, {"InstantiatedObj", "r--n"},
                                                          {"CommandEvent", "r--n"}}));
    REQUIRE(h.engine->addInstance(*role + "Permission.", {{"Enable", "true"}, {"Order", "2"},
                                                          {"Targets", "Device.DeviceInfo.ModelName"}, {"Param", "----"}}));
    REQUIRE(h.addController(kEp1, full) == kCtrl1);
    REQUIRE(h.addController(kEp2, *role) == kCtrl2);
    REQUIRE(h.engine->addInstance(kCtrl2 + "BootParameter.", {{"Enable", "true"}, {"ParameterName", "Device.DeviceInfo.ModelName"}}));
    REQUIRE(h.engine->addInstance(kCtrl2 + "BootParameter.", {{"Enable", "true"}, {"ParameterName", "Device.DeviceInfo.ProductClass"}}));
    h.createNotifier(false);
    h.subscribe(kCtrl2, "Event", "Device.Boot!");
    h.notifier->start();
    h.pump();
    auto sent = h.sentTo(kEp2);
    REQUIRE(sent.size() == 1);
    auto map = nlohmann::json::parse(sent[0].notify().event().params().at("ParameterMap"));
    CHECK(map.contains("Device.DeviceInfo.ProductClass"));
    CHECK_FALSE(map.contains("Device.DeviceInfo.ModelName"));
}

TEST_CASE("OnBoardRequest goes to enabled controllers that are not onboarded and is retried until answered", "[notify]") {
    Harness h;
    REQUIRE(h.engine->setValue("Device.DeviceInfo.ManufacturerOUI", "00D09E"));
    REQUIRE(h.engine->setValue("Device.DeviceInfo.ProductClass", "Gateway"));
    REQUIRE(h.engine->setValue("Device.DeviceInfo.SerialNumber", "SN-9"));
    std::string full = h.addRole("Full", "rwxn", "rwxn", "rwxn", "rwxn");
    h.addController(kEp1, full, false);
    h.addController(kEp2, full, true);
    h.createNotifier();
    auto first = onBoardRequests(h, kEp1);
    REQUIRE(first.size() == 1);
    CHECK(onBoardRequests(h, kEp2).empty());
    const auto& n = first[0].notify();
    CHECK(n.subscription_id().empty());
    CHECK(n.send_resp());
    CHECK(n.on_board_req().oui() == "00D09E");
    CHECK(n.on_board_req().product_class() == "Gateway");
    CHECK(n.on_board_req().serial_number() == "SN-9");
    CHECK(n.on_board_req().agent_supported_protocol_versions() == std::string(kSupportedUspVersions));

    h.advance(40s, 500ms);  // retries at +5..10 and +10..20 after that
    auto retried = onBoardRequests(h, kEp1);
    CHECK(retried.size() >= 3);
    for (const auto& s : retried) CHECK(s.msgId() == first[0].msgId());
    h.notifier->onNotifyResp(kEp1, first[0].msgId());
    std::size_t count = onBoardRequests(h, kEp1).size();
    h.advance(3600s, 10s);
    CHECK(onBoardRequests(h, kEp1).size() == count);  // OnBoardingRestartTime 0: done
}

TEST_CASE("OnBoardRequest is sent again after OnBoardingRestartTime until OnBoardingComplete (TP-469 1.102)", "[notify]") {
    Harness h;
    std::string full = h.addRole("Full", "rwxn", "rwxn", "rwxn", "rwxn");
    h.addController(kEp1, full, false, {{"OnBoardingRestartTime", "60"}});
    h.createNotifier();
    auto first = onBoardRequests(h, kEp1);
    REQUIRE(first.size() == 1);
    h.notifier->onNotifyResp(kEp1, first[0].msgId());
    h.advance(59s, 1s);
    CHECK(onBoardRequests(h, kEp1).size() == 1);
    h.advance(2s, 1s);
    auto second = onBoardRequests(h, kEp1);
    REQUIRE(second.size() == 2);
    CHECK(second[1].msgId() != first[0].msgId());
    h.notifier->onNotifyResp(kEp1, second[1].msgId());
    REQUIRE(h.engine->setValue(kCtrl1 + "OnBoardingComplete", "true"));
    h.advance(300s, 5s);
    CHECK(onBoardRequests(h, kEp1).size() == 2);
}

TEST_CASE("SendOnBoardRequest() sends an OnBoardRequest and resets OnBoardingComplete (TP-469 1.60, 1.101)", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    CHECK(h.sent.empty());
    dm::OperateRequest req;
    req.command = kCtrl2 + "SendOnBoardRequest()";
    auto resp = h.engine->operate(req, dm::Permissions::fullAccess(), {});
    REQUIRE_FALSE(resp.error);
    REQUIRE(resp.results.size() == 1);
    CHECK(resp.results[0].kind == dm::OperationResult::Kind::kOutputArgs);
    h.pump();
    CHECK(h.value(kCtrl2 + "OnBoardingComplete") == "false");
    auto sent = onBoardRequests(h, kEp2);
    REQUIRE(sent.size() == 1);
    CHECK(onBoardRequests(h, kEp1).empty());
}

TEST_CASE("A controller added and enabled at run time is onboarded", "[notify]") {
    Harness h;
    std::string full = h.addRole("Full", "rwxn", "rwxn", "rwxn", "rwxn");
    h.createNotifier();
    CHECK(h.sent.empty());
    h.addController(kEp1, full, false);
    h.pump();
    CHECK(onBoardRequests(h, kEp1).size() == 1);
    // Unreachable when it is added: the request waits for it.
    h.unreachable.insert(kEp2);
    h.addController(kEp2, full, false);
    h.pump();
    CHECK(onBoardRequests(h, kEp2).empty());
    h.unreachable.clear();
    h.notifier->onControllerReachable(kEp2);
    CHECK(onBoardRequests(h, kEp2).size() == 1);
}

TEST_CASE("Periodic! follows the recipient's PeriodicNotifInterval and PeriodicNotifTime (TP-469 1.59)", "[notify]") {
    Harness h;
    h.standardControllers();
    h.clock.setWall(std::chrono::system_clock::time_point(std::chrono::seconds(1735732800)));  // 12:00:00Z
    REQUIRE(h.engine->setValue(kCtrl1 + "PeriodicNotifInterval", "60"));
    REQUIRE(h.engine->setValue(kCtrl1 + "PeriodicNotifTime", "2025-01-01T00:00:30Z"));  // fires at :30 of every minute
    REQUIRE(h.engine->setValue(kCtrl2 + "PeriodicNotifInterval", "10"));              // subscribes to nothing
    h.createNotifier();
    h.subscribe(kCtrl1, "Event", "Device.LocalAgent.Periodic!");
    Clock::MonoTime t0 = h.clock.now();
    h.advance(155s, 500ms);
    auto sent = h.sentTo(kEp1);
    REQUIRE(sent.size() == 3);  // 12:00:30, 12:01:30, 12:02:30
    CHECK(sent[0].notify().event().event_name() == "Periodic!");
    CHECK(sent[0].notify().event().obj_path() == "Device.LocalAgent.");
    CHECK(std::chrono::duration<double>(sent[0].at - t0).count() == Approx(30.0).margin(0.6));
    CHECK(std::chrono::duration<double>(sent[1].at - sent[0].at).count() == Approx(60.0).margin(0.6));
    CHECK(h.sentTo(kEp2).empty());
    // A new interval takes effect at once.
    REQUIRE(h.engine->setValue(kCtrl1 + "PeriodicNotifTime", "0001-01-01T00:00:00Z"));
    REQUIRE(h.engine->setValue(kCtrl1 + "PeriodicNotifInterval", "20"));
    h.sent.clear();
    h.advance(61s, 500ms);
    CHECK(h.sentTo(kEp1).size() == 3);
}
