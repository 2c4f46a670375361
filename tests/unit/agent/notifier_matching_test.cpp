// Which changes, events and command completions reach which subscriptions.

#include <catch2/catch.hpp>

#include "notifier_fixture.h"

using namespace berth;
using namespace berth::agent;
using namespace berth::agent::test;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> valuePaths(const std::vector<Sent>& sent) {
    std::vector<std::string> out;
    for (const auto& s : sent) out.push_back(s.notify().value_change().param_path());
    return out;
}

// Two BootParameter rows under controller 1: instance 1 "Device.DeviceInfo.SerialNumber",
// instance 2 "Device.DeviceInfo.ModelName".
void addBootParameters(Harness& h) {
    auto one = h.engine->addInstance(kCtrl1 + "BootParameter.", {{"ParameterName", "Device.DeviceInfo.SerialNumber"}});
    REQUIRE(one);
    REQUIRE(*one == kCtrl1 + "BootParameter.1.");
    auto two = h.engine->addInstance(kCtrl1 + "BootParameter.", {{"ParameterName", "Device.DeviceInfo.ModelName"}});
    REQUIRE(two);
    REQUIRE(*two == kCtrl1 + "BootParameter.2.");
}

// A provided parameter whose value the test controls.
struct UpTimeProvider : dm::Provider {
    std::string value = "1";
    Result<std::string> get(const dm::ObjectView&, std::string_view) override { return value; }
};

}  // namespace

TEST_CASE("ValueChange on a parameter path notifies that parameter only, with the subscription's ID", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.ProvisioningCode", {{"ID", "notify52", true}});
    h.set(kCtrl1, "ProvisioningCode", "TestValue52");
    h.set(kCtrl1, "ControllerCode", "other");
    auto sent = h.sentTo(kEp1);
    REQUIRE(sent.size() == 1);
    const auto& n = sent[0].notify();
    CHECK(n.subscription_id() == "notify52");
    CHECK_FALSE(n.send_resp());
    CHECK(n.value_change().param_path() == "Device.LocalAgent.Controller.1.ProvisioningCode");
    CHECK(n.value_change().param_value() == "TestValue52");
    CHECK(sent[0].msg.header().msg_type() == usp::Header::NOTIFY);
    // Controller 2 subscribed to nothing.
    CHECK(h.sentTo(kEp2).empty());
}

TEST_CASE("ValueChange on an object path covers every parameter below it and nothing beside it", "[notify]") {
    Harness h;
    h.standardControllers();
    addBootParameters(h);
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.BootParameter.");
    h.set(kCtrl1 + "BootParameter.2.", "Enable", "true");
    h.set(kCtrl1, "ProvisioningCode", "x");
    REQUIRE(h.engine->addInstance(kCtrl2 + "BootParameter.", {{"ParameterName", "Device.DeviceInfo.ModelName"}}));
    h.set(kCtrl2 + "BootParameter.1.", "Enable", "true");
    CHECK(valuePaths(h.sentTo(kEp1)) == std::vector<std::string>{kCtrl1 + "BootParameter.2.Enable"});
}

TEST_CASE("ValueChange with a wildcard covers every instance (TP-469 1.84)", "[notify]") {
    Harness h;
    h.standardControllers();
    addBootParameters(h);
    REQUIRE(h.engine->addInstance(kCtrl2 + "BootParameter.", {{"ParameterName", "Device.DeviceInfo.ModelName"}}));
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.*.BootParameter.*.Enable");
    h.set(kCtrl1 + "BootParameter.1.", "Enable", "true");
    h.set(kCtrl2 + "BootParameter.1.", "Enable", "true");
    h.set(kCtrl2 + "BootParameter.1.", "ParameterName", "Device.DeviceInfo.SerialNumber");
    CHECK(valuePaths(h.sentTo(kEp1)) ==
          std::vector<std::string>{kCtrl1 + "BootParameter.1.Enable", kCtrl2 + "BootParameter.1.Enable"});
}

TEST_CASE("ValueChange with a search expression is evaluated against the model when the change happens", "[notify]") {
    Harness h;
    h.standardControllers();
    addBootParameters(h);
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange",
                "Device.LocalAgent.Controller.1.BootParameter.[ParameterName==\"Device.DeviceInfo.SerialNumber\"].Enable");
    h.set(kCtrl1 + "BootParameter.2.", "Enable", "true");  // ModelName row: no
    h.set(kCtrl1 + "BootParameter.1.", "Enable", "true");  // SerialNumber row: yes
    REQUIRE(h.sentTo(kEp1).size() == 1);
    // The ModelName row now matches the expression and the SerialNumber row does not.
    h.set(kCtrl1 + "BootParameter.1.", "ParameterName", "Device.DeviceInfo.HardwareVersion");
    h.set(kCtrl1 + "BootParameter.2.", "ParameterName", "Device.DeviceInfo.SerialNumber");
    h.set(kCtrl1 + "BootParameter.1.", "Enable", "false");
    h.set(kCtrl1 + "BootParameter.2.", "Enable", "false");
    CHECK(valuePaths(h.sentTo(kEp1)) ==
          std::vector<std::string>{kCtrl1 + "BootParameter.1.Enable", kCtrl1 + "BootParameter.2.Enable"});
}

TEST_CASE("Changes made inside the agent and changes a provider reports are notified", "[notify]") {
    Harness h;
    h.standardControllers();
    UpTimeProvider provider;
    REQUIRE(h.engine->registerProvider("Device.DeviceInfo.", &provider, {"UpTime"}));
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", "Device.DeviceInfo.");
    REQUIRE(h.engine->setValue("Device.DeviceInfo.ProvisioningCode", "internal"));
    provider.value = "42";
    REQUIRE(h.engine->notifyValueChanged("Device.DeviceInfo.UpTime"));
    auto sent = h.sentTo(kEp1);
    REQUIRE(sent.size() == 2);
    CHECK(sent[0].notify().value_change().param_path() == "Device.DeviceInfo.ProvisioningCode");
    CHECK(sent[1].notify().value_change().param_path() == "Device.DeviceInfo.UpTime");
    CHECK(sent[1].notify().value_change().param_value() == "42");
    REQUIRE(h.engine->registerProvider("Device.DeviceInfo.", nullptr));
}

TEST_CASE("Provided parameters that cannot report changes are sampled while subscribed", "[notify]") {
    NotifierOptions o;
    o.sampledParams = {"Device.DeviceInfo.UpTime"};
    o.sampleInterval = 5s;
    Harness h({}, o);
    h.standardControllers();
    UpTimeProvider provider;
    REQUIRE(h.engine->registerProvider("Device.DeviceInfo.", &provider, {"UpTime"}));
    h.createNotifier();
    provider.value = "2";  // not subscribed yet: nothing to notice
    h.advance(6s, 1s);
    CHECK(h.sent.empty());
    h.subscribe(kCtrl1, "ValueChange", "Device.DeviceInfo.UpTime");
    provider.value = "3";
    h.advance(4s, 1s);
    h.advance(2s, 1s);  // within one sample interval
    auto sent = h.sentTo(kEp1);
    REQUIRE(sent.size() == 1);
    CHECK(sent[0].notify().value_change().param_value() == "3");
    h.advance(10s, 1s);  // unchanged: nothing more
    CHECK(h.sentTo(kEp1).size() == 1);
    REQUIRE(h.engine->registerProvider("Device.DeviceInfo.", nullptr));
}

TEST_CASE("ObjectCreation reports new rows of the subscribed table with their unique keys (TP-469 1.57)", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl2, "ObjectCreation", "Device.LocalAgent.Controller.*.BootParameter.");
    h.subscribe(kCtrl1, "ObjectCreation", "Device.LocalAgent.Subscription.", {{"ID", "notify57", true}});
    std::string added = h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.Enable", {{"ID", "other", true}});
    auto sent = h.sentTo(kEp1);
    REQUIRE(sent.size() == 1);
    const auto& oc = sent[0].notify().obj_creation();
    CHECK(sent[0].notify().subscription_id() == "notify57");
    CHECK(oc.obj_path() == added);
    CHECK(oc.unique_keys().at("ID") == "other");
    CHECK(oc.unique_keys().at("Recipient") == "Device.LocalAgent.Controller.1");
    CHECK(oc.unique_keys().count("Alias") == 1);
    // Nested table through a wildcard.
    REQUIRE(h.engine->addInstance(kCtrl1 + "BootParameter.", {{"ParameterName", "Device.DeviceInfo.ModelName"}}));
    auto two = h.sentTo(kEp2);
    REQUIRE(two.size() == 1);
    CHECK(two[0].notify().obj_creation().obj_path() == kCtrl1 + "BootParameter.1.");
    CHECK(two[0].notify().obj_creation().unique_keys().at("ParameterName") == "Device.DeviceInfo.ModelName");
}

TEST_CASE("ObjectDeletion matches table paths, instance paths and searches evaluated before the deletion", "[notify]") {
    Harness h;
    h.standardControllers();
    addBootParameters(h);
    REQUIRE(h.engine->addInstance(kCtrl1 + "BootParameter.", {{"ParameterName", "Device.DeviceInfo.HardwareVersion"}}));
    h.createNotifier();
    h.subscribe(kCtrl1, "ObjectDeletion", "Device.LocalAgent.Controller.1.BootParameter.", {{"ID", "table", true}});
    h.subscribe(kCtrl1, "ObjectDeletion", "Device.LocalAgent.Controller.1.BootParameter.2.", {{"ID", "instance", true}});
    h.subscribe(kCtrl1, "ObjectDeletion",
                "Device.LocalAgent.Controller.1.BootParameter.[ParameterName==\"Device.DeviceInfo.HardwareVersion\"].",
                {{"ID", "search", true}});
    auto ids = [&](const std::string& path) {
        h.sent.clear();
        REQUIRE(h.engine->deleteInstance(path));
        h.pump();
        std::vector<std::string> out;
        for (const auto& s : h.sentTo(kEp1)) {
            CHECK(s.notify().obj_deletion().obj_path() == path);
            out.push_back(s.notify().subscription_id());
        }
        std::sort(out.begin(), out.end());
        return out;
    };
    CHECK(ids(kCtrl1 + "BootParameter.1.") == std::vector<std::string>{"table"});
    CHECK(ids(kCtrl1 + "BootParameter.2.") == std::vector<std::string>{"instance", "table"});
    CHECK(ids(kCtrl1 + "BootParameter.3.") == std::vector<std::string>{"search", "table"});
}

TEST_CASE("A search in an ObjectDeletion subscription follows values changed after it was made", "[notify]") {
    Harness h;
    h.standardControllers();
    addBootParameters(h);
    h.createNotifier();
    h.subscribe(kCtrl1, "ObjectDeletion", "Device.LocalAgent.Controller.1.BootParameter.[Enable==true].");
    h.set(kCtrl1 + "BootParameter.2.", "Enable", "true");
    REQUIRE(h.engine->deleteInstance(kCtrl1 + "BootParameter.1."));
    REQUIRE(h.engine->deleteInstance(kCtrl1 + "BootParameter.2."));
    h.pump();
    auto sent = h.sentTo(kEp1);
    REQUIRE(sent.size() == 1);
    CHECK(sent[0].notify().obj_deletion().obj_path() == kCtrl1 + "BootParameter.2.");
}

TEST_CASE("Event subscriptions match event paths and object-path prefixes", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl1, "Event", "Device.SoftwareModules.", {{"ID", "prefix", true}});
    h.subscribe(kCtrl2, "Event", "Device.SoftwareModules.DUStateChange!", {{"ID", "exact", true}});
    h.subscribe(kCtrl2, "Event", "Device.LocalAgent.TransferComplete!", {{"ID", "unrelated", true}});
    dm::ArgMap args{{"UUID", "u-1"}, {"CurrentState", "Installed"}, {"Fault.FaultCode", "0"}};
    REQUIRE(h.engine->raiseEvent("Device.SoftwareModules.DUStateChange!", args));
    h.pump();
    for (const auto& ep : {kEp1, kEp2}) {
        auto sent = h.sentTo(ep);
        REQUIRE(sent.size() == 1);
        const auto& ev = sent[0].notify().event();
        CHECK(ev.obj_path() == "Device.SoftwareModules.");
        CHECK(ev.event_name() == "DUStateChange!");
        CHECK(ev.params().at("Fault.FaultCode") == "0");
        CHECK(ev.params().at("UUID") == "u-1");
    }
    CHECK(h.sentTo(kEp1)[0].notify().subscription_id() == "prefix");
    CHECK(h.sentTo(kEp2)[0].notify().subscription_id() == "exact");
}

TEST_CASE("OperationComplete carries output arguments on success and err_code on failure", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl1, "OperationComplete", "Device.SoftwareModules.InstallDU()", {{"ID", "cmd", true}});
    h.subscribe(kCtrl2, "OperationComplete", "Device.SoftwareModules.", {{"ID", "prefix", true}});
    h.subscribe(kCtrl2, "OperationComplete", "Device.SoftwareModules.DeploymentUnit.*.Update()", {{"ID", "wild", true}});

    h.notifier->operationComplete("Device.SoftwareModules.", "InstallDU()", "test64", dm::ArgMap{{"Out", "1"}});
    auto one = h.sentTo(kEp1);
    REQUIRE(one.size() == 1);
    const auto& oc = one[0].notify().oper_complete();
    CHECK(oc.obj_path() == "Device.SoftwareModules.");
    CHECK(oc.command_name() == "InstallDU()");
    CHECK(oc.command_key() == "test64");
    REQUIRE(oc.has_req_output_args());
    CHECK(oc.req_output_args().output_args().at("Out") == "1");
    REQUIRE(h.sentTo(kEp2).size() == 1);
    CHECK(h.sentTo(kEp2)[0].notify().subscription_id() == "prefix");

    h.sent.clear();
    h.notifier->operationComplete("Device.SoftwareModules.DeploymentUnit.3.", "Update()", "k",
                                  Error(ErrorCode::kCommandCanceled, "canceled by request"));
    CHECK(h.sentTo(kEp1).empty());
    auto two = h.sentTo(kEp2);
    REQUIRE(two.size() == 2);
    for (const auto& s : two) {
        const auto& f = s.notify().oper_complete();
        REQUIRE(f.has_cmd_failure());
        CHECK(f.cmd_failure().err_code() == 7023);
        CHECK(f.cmd_failure().err_msg() == "canceled by request");
        CHECK(f.obj_path() == "Device.SoftwareModules.DeploymentUnit.3.");
    }
}

TEST_CASE("Without the n permission a controller receives no notifications (TP-469 2.19, 2.20)", "[notify]") {
    Harness h;
    std::string quiet = h.addRole("Quiet", "rw--", "rw--", "rw--", "r-x-");
    std::string loud = h.addRole("Loud", "rw-n", "rw-n", "rw-n", "r-xn");
    REQUIRE(h.addController(kEp1, quiet) == kCtrl1);
    REQUIRE(h.addController(kEp2, loud) == kCtrl2);
    h.createNotifier();
    for (const auto& c : {kCtrl1, kCtrl2}) {
        h.subscribe(c, "ValueChange", "Device.LocalAgent.Controller.1.PeriodicNotifInterval");
        h.subscribe(c, "ObjectCreation", "Device.LocalAgent.Controller.1.BootParameter.");
        h.subscribe(c, "Event", "Device.SoftwareModules.DUStateChange!");
        h.subscribe(c, "OperationComplete", "Device.SoftwareModules.InstallDU()");
    }
    h.set(kCtrl1, "PeriodicNotifInterval", "60");
    REQUIRE(h.engine->addInstance(kCtrl1 + "BootParameter.", {{"ParameterName", "Device.DeviceInfo.ModelName"}}));
    REQUIRE(h.engine->raiseEvent("Device.SoftwareModules.DUStateChange!", {}));
    h.notifier->operationComplete("Device.SoftwareModules.", "InstallDU()", "", dm::ArgMap{});
    h.pump();
    CHECK(h.sentTo(kEp1).empty());
    CHECK(h.sentTo(kEp2).size() == 4);
    // Rights granted later take effect at once.
    REQUIRE(h.engine->setValue(quiet + "Permission.1.Param", "r--n"));
    h.set(kCtrl1, "PeriodicNotifInterval", "61");
    CHECK(h.sentTo(kEp1).size() == 1);
}

TEST_CASE("Without read permission a ValueChange is not sent even with n", "[notify]") {
    Harness h;
    std::string blind = h.addRole("Blind", "-w-n", "rw-n", "rw-n", "r-xn");
    REQUIRE(h.addController(kEp1, blind) == kCtrl1);
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.ProvisioningCode");
    h.set(kCtrl1, "ProvisioningCode", "secret");
    CHECK(h.sent.empty());
}

TEST_CASE("A disabled recipient controller receives nothing", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl2, "ValueChange", "Device.LocalAgent.Controller.1.ProvisioningCode");
    REQUIRE(h.engine->setValue(kCtrl2 + "Enable", "false"));
    h.set(kCtrl1, "ProvisioningCode", "x");
    CHECK(h.sentTo(kEp2).empty());
}

TEST_CASE("TriggerAction Config applies TriggerConfigSettings and sends nothing (TP-469 1.93, 1.94)", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    std::string cfg = h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.ProvisioningCode",
                                  {{"TriggerAction", "Config", true}});
    REQUIRE(h.engine->setValue(cfg + "TriggerConfigSettings", cfg + "Enable=false"));
    std::string both = h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.ControllerCode",
                                   {{"TriggerAction", "NotifyAndConfig", true}});
    REQUIRE(h.engine->setValue(both + "TriggerConfigSettings", both + "Enable=false"));
    h.set(kCtrl1, "ProvisioningCode", "x");
    CHECK(h.value(cfg + "Enable") == "false");
    CHECK(h.sent.empty());
    h.set(kCtrl1, "ControllerCode", "y");
    CHECK(h.value(both + "Enable") == "false");
    CHECK(h.sentTo(kEp1).size() == 1);
}
