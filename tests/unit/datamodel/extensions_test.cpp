// Providers, commands, events, change listeners and permissions.

#include <catch2/catch.hpp>

#include "dm_test_util.h"

using namespace berth;
using namespace berth::dm;
using namespace berth::dm::test;

// ---- Change events ---------------------------------------------------------------------

TEST_CASE("Every committed write is announced once, after commit, whoever made it", "[datamodel][events]") {
    Fixture f;
    RecordingListener l;
    f->addListener(&l);
    REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "a", true}}).results.at(0).success);
    CHECK(l.has("created Device.LocalAgent.Subscription.1."));
    CHECK(l.has("value Device.LocalAgent.SubscriptionNumberOfEntries=1"));
    l.log.clear();
    REQUIRE(setOne(*f, "Device.LocalAgent.Subscription.1.", {{"Enable", "true", true}, {"NotifRetry", "false", true}}).results.at(0).success);
    CHECK(l.log == std::vector<std::string>{"value Device.LocalAgent.Subscription.1.Enable=true"});  // unchanged values are silent
    l.log.clear();
    REQUIRE(f->setValue("Device.LocalAgent.Controller.1.ProvisioningCode", "TestValue52"));
    CHECK(l.has("value Device.LocalAgent.Controller.1.ProvisioningCode=TestValue52"));
    l.log.clear();
    REQUIRE(delPaths(*f, {"Device.LocalAgent.Controller.1."}).results.at(0).success);
    CHECK(l.has("deleted Device.LocalAgent.Controller.1."));
    CHECK(l.has("deleted Device.LocalAgent.Controller.1.BootParameter.1."));
    // The Subscription's strong reference to the Controller is cleared in the same commit.
    CHECK(l.has("value Device.LocalAgent.Subscription.1.Recipient="));
    l.log.clear();
    auto failed = setOne(*f, "Device.LocalAgent.Subscription.1.", {{"Enable", "false", true}, {"Bogus", "1", true}});
    REQUIRE(failed.error);
    CHECK(l.log.empty());  // nothing committed, nothing announced
    f->removeListener(&l);
}

TEST_CASE("A batch of internal writes commits and announces once", "[datamodel][events]") {
    Fixture f;
    RecordingListener l;
    f->addListener(&l);
    {
        Engine::Batch b(*f);
        REQUIRE(f->setValue("Device.LocalAgent.Controller.1.ProvisioningCode", "1"));
        REQUIRE(f->setValue("Device.LocalAgent.Controller.1.ProvisioningCode", "2"));
        REQUIRE(f->raiseEvent("Device.Boot!", {{"Cause", "LocalReboot"}}));
        CHECK(l.log.empty());
    }
    CHECK(l.log == std::vector<std::string>{"value Device.LocalAgent.Controller.1.ProvisioningCode=2", "event Device.Boot!"});
    CHECK(f->raiseEvent("Device.NoSuch!", {}).error().code == ErrorCode::kInvalidPath);
    CHECK(f->raiseEvent("Device.LocalAgent.Controller.9.Timer!", {}).error().code == ErrorCode::kInvalidPath);
    f->removeListener(&l);
}

TEST_CASE("Providers report externally changed values", "[datamodel][events]") {
    struct Status : Provider {
        std::string v = "Connecting";
        Result<std::string> get(const ObjectView&, std::string_view) override { return v; }
    } st;
    Fixture f;
    REQUIRE(f->addInstance("Device.MQTT.Client.", {{"Name", "c"}}));
    REQUIRE(f->registerProvider("Device.MQTT.Client.{i}.", &st, {"Status"}));
    RecordingListener l;
    f->addListener(&l);
    st.v = "Connected";
    REQUIRE(f->notifyValueChanged("Device.MQTT.Client.1.Status"));
    CHECK(l.log == std::vector<std::string>{"value Device.MQTT.Client.1.Status=Connected"});
    f->removeListener(&l);
}

// ---- Providers ----------------------------------------------------------------------------

TEST_CASE("A provider may veto a Set and the object is left unchanged", "[datamodel][providers]") {
    struct Veto : Provider {
        std::vector<std::string> seen;
        Status validateSet(const ObjectView& o, const std::vector<std::string_view>& changed) override {
            for (auto c : changed) seen.emplace_back(c);
            if (o.get("BrokerPort") == "1") return Error(ErrorCode::kInvalidConfiguration, "port 1 is not allowed");
            return okStatus();
        }
    } veto;
    Fixture f;
    REQUIRE(f->addInstance("Device.MQTT.Client.", {{"Name", "c"}}));
    REQUIRE(f->registerProvider("Device.MQTT.Client.{i}.", &veto));
    auto bad = setOne(*f, "Device.MQTT.Client.1.", {{"BrokerPort", "1", true}});
    REQUIRE(bad.error);
    CHECK(bad.error->code == ErrorCode::kInvalidConfiguration);
    CHECK(value(*f, "Device.MQTT.Client.1.BrokerPort") == "1883");
    CHECK(veto.seen == std::vector<std::string>{"BrokerPort"});
    CHECK(setOne(*f, "Device.MQTT.Client.1.", {{"BrokerPort", "8883", true}}).results.at(0).success);
}

TEST_CASE("A provider may veto a Delete", "[datamodel][providers]") {
    struct Keep : Provider {
        Status onDelete(const ObjectView&) override { return Error(ErrorCode::kDeleteFailure, "in use"); }
    } keep;
    Fixture f;
    REQUIRE(f->registerProvider("Device.LocalAgent.Controller.{i}.", &keep));
    auto r = delPaths(*f, {"Device.LocalAgent.Controller.1."}, true);
    CHECK_FALSE(r.results.at(0).success);
    CHECK(r.results[0].err == ErrorCode::kDeleteFailure);
    CHECK(value(*f, "Device.LocalAgent.ControllerNumberOfEntries") == "1");
}

TEST_CASE("Writable provided parameters reach the provider only after commit", "[datamodel][providers]") {
    struct Clock : Provider {
        std::string zone = "UTC";
        std::vector<std::string> applied;
        Result<std::string> get(const ObjectView&, std::string_view) override { return zone; }
        void setProvided(const ObjectView&, std::string_view p, std::string_view v) override {
            applied.push_back(std::string(p) + "=" + std::string(v));
            zone = std::string(v);
        }
    } clk;
    Fixture f;
    REQUIRE(f->registerProvider("Device.Time.", &clk, {"LocalTimeZone"}));
    SetRequest req;
    req.objects.push_back({"Device.Time.", {{"LocalTimeZone", "CET-1CEST", true}}});
    req.objects.push_back({"Device.Time.", {{"Bogus", "x", true}}});
    CHECK(f->set(req, full()).error);
    CHECK(clk.applied.empty());
    CHECK(setOne(*f, "Device.Time.", {{"LocalTimeZone", "CET-1CEST", true}}).results.at(0).success);
    CHECK(clk.applied == std::vector<std::string>{"LocalTimeZone=CET-1CEST"});
    CHECK(value(*f, "Device.Time.LocalTimeZone") == "CET-1CEST");
}

// ---- Commands -------------------------------------------------------------------------------

TEST_CASE("Operate validates input arguments: missing mandatory is 7027, unknown ignored, defaults filled (TP-469 1.91, 1.100)", "[datamodel][operate]") {
    Fixture f;
    std::vector<CommandCall> calls;
    REQUIRE(f->registerAsyncCommand("Device.SoftwareModules.InstallDU()", [&](const CommandCall& c, CommandDone done) {
        calls.push_back(c);
        done(ArgMap{{"UUID", "u"}});
    }));
    int created = 0;
    std::vector<std::string> completed;
    AsyncHooks hooks;
    hooks.createRequest = [&](const CommandCall&) -> Result<std::string> {
        return "Device.LocalAgent.Request." + std::to_string(++created) + ".";
    };
    hooks.completed = [&](const CommandCall& c, const std::string& req, Result<ArgMap> r) {
        completed.push_back(c.commandKey + "@" + req + (r ? "=" + r->at("UUID") : "!"));
    };
    auto missing = f->operate({"Device.SoftwareModules.InstallDU()", "k1", {{"UUID", "x"}}}, full(), hooks);
    REQUIRE_FALSE(missing.error);
    REQUIRE(missing.results.size() == 1);
    CHECK(missing.results[0].kind == OperationResult::Kind::kFailure);
    CHECK(missing.results[0].err == ErrorCode::kInvalidCommandArguments);
    CHECK(calls.empty());
    auto ok = f->operate({"Device.SoftwareModules.InstallDU()", "test64", {{"URL", "https://x/y"}, {"InvalidArgument", "1"}}}, full(), hooks);
    CAPTURE(ok.results.at(0).errMsg);
    REQUIRE(ok.results.at(0).kind == OperationResult::Kind::kRequestPath);
    CHECK(ok.results[0].requestPath == "Device.LocalAgent.Request.1.");
    CHECK(ok.results[0].executedCommand == "Device.SoftwareModules.InstallDU()");
    REQUIRE(calls.size() == 1);
    CHECK(calls[0].input.count("InvalidArgument") == 0);
    CHECK(calls[0].input.at("Privileged") == "false");
    CHECK(calls[0].input.at("ShutdownDelay") == "10");
    CHECK(completed == std::vector<std::string>{"test64@Device.LocalAgent.Request.1.=u"});
}

TEST_CASE("A running asynchronous call can be canceled through its cancel handler, found by its Request row", "[datamodel][operate]") {
    Fixture f;
    std::vector<std::pair<std::string, CommandDone>> running;  // request path -> done
    std::vector<std::string> cancelAsked;
    REQUIRE(f->registerAsyncCommand(
        "Device.SoftwareModules.InstallDU()",
        [&](const CommandCall& c, CommandDone done) { running.emplace_back(c.requestPath, std::move(done)); },
        [&](const CommandCall& c) -> Status {
            cancelAsked.push_back(c.requestPath);
            for (auto& [path, done] : running)
                if (path == c.requestPath && done) {
                    auto d = std::move(done);
                    d(Error(ErrorCode::kCommandCanceled, "canceled"));
                    return okStatus();
                }
            return Error(ErrorCode::kRequestDenied, "too late");
        }));
    int created = 0;
    std::vector<std::string> completed;
    std::vector<CommandCall> calls;
    AsyncHooks hooks;
    hooks.createRequest = [&](const CommandCall&) -> Result<std::string> {
        return "Device.LocalAgent.Request." + std::to_string(++created) + ".";
    };
    hooks.completed = [&](const CommandCall& c, const std::string& req, Result<ArgMap> r) {
        calls.push_back(c);
        completed.push_back(req + (r ? std::string("ok") : std::to_string(r.error().numeric())));
    };
    for (const char* key : {"a", "b"})
        REQUIRE(f->operate({"Device.SoftwareModules.InstallDU()", key, {{"URL", "https://x/y"}}}, full(), hooks)
                    .results.at(0).kind == OperationResult::Kind::kRequestPath);
    REQUIRE(running.size() == 2);
    CHECK(running[0].first == "Device.LocalAgent.Request.1.");
    CHECK(running[1].first == "Device.LocalAgent.Request.2.");

    CommandCall second{"Device.SoftwareModules.", "InstallDU()", "Device.SoftwareModules.InstallDU()", "b", {}};
    second.requestPath = "Device.LocalAgent.Request.2.";
    REQUIRE(f->cancelCommand(second));
    CHECK(cancelAsked == std::vector<std::string>{"Device.LocalAgent.Request.2."});
    CHECK(completed == std::vector<std::string>{"Device.LocalAgent.Request.2.7023"});
    REQUIRE(calls.size() == 1);
    CHECK(calls[0].requestPath == "Device.LocalAgent.Request.2.");
    // The first call is untouched and still completes normally.
    running[0].second(ArgMap{});
    CHECK(completed.back() == "Device.LocalAgent.Request.1.ok");
    // Canceling again is up to the handler, which refuses.
    auto again = f->cancelCommand(second);
    REQUIRE_FALSE(again);
    CHECK(again.error().code == ErrorCode::kRequestDenied);
}

TEST_CASE("A command registered without a cancel handler refuses Cancel with 7002", "[datamodel][operate]") {
    Fixture f;
    REQUIRE(f->registerAsyncCommand("Device.SoftwareModules.InstallDU()", [](const CommandCall&, CommandDone) {}));
    CommandCall call{"Device.SoftwareModules.", "InstallDU()", "Device.SoftwareModules.InstallDU()", "k", {}};
    call.requestPath = "Device.LocalAgent.Request.1.";
    auto st = f->cancelCommand(call);
    REQUIRE_FALSE(st);
    CHECK(st.error().code == ErrorCode::kRequestDenied);
}

TEST_CASE("Synchronous commands return output arguments per matched object", "[datamodel][operate]") {
    Fixture f;
    REQUIRE(f->addInstance("Device.SoftwareModules.ExecutionUnit.", {{"EUID", "e1"}}));
    REQUIRE(f->addInstance("Device.SoftwareModules.ExecutionUnit.", {{"EUID", "e2"}}));
    std::vector<std::string> seen;
    REQUIRE(f->registerCommand("Device.SoftwareModules.ExecutionUnit.{i}.SetRequestedState()", [&](const CommandCall& c) -> Result<ArgMap> {
        seen.push_back(c.objPath + c.input.at("RequestedState"));
        if (c.objPath.find(".2.") != std::string::npos) return Error(ErrorCode::kInvalidValue, "EE disabled");
        return ArgMap{};
    }));
    auto r = f->operate({"Device.SoftwareModules.ExecutionUnit.*.SetRequestedState()", "", {{"RequestedState", "Active"}}}, full(), {});
    REQUIRE(r.results.size() == 2);
    CHECK(r.results[0].kind == OperationResult::Kind::kOutputArgs);
    CHECK(r.results[1].kind == OperationResult::Kind::kFailure);
    CHECK(r.results[1].err == ErrorCode::kInvalidValue);
    CHECK(seen.size() == 2);
    auto badEnum = f->operate({"Device.SoftwareModules.ExecutionUnit.1.SetRequestedState()", "", {{"RequestedState", "Sleeping"}}}, full(), {});
    CHECK(badEnum.results.at(0).err == ErrorCode::kInvalidCommandArguments);
    CHECK(f->operate({"Device.Reboot()", "", {}}, full(), {}).results.at(0).err == ErrorCode::kCommandFailure);  // no handler
    CHECK(f->operate({"Device.NoSuch()", "", {}}, full(), {}).error->code == ErrorCode::kInvalidPath);
    CHECK(f->operate({"Device.SoftwareModules.ExecutionUnit.9.Restart()", "", {}}, full(), {}).error->code == ErrorCode::kObjectDoesNotExist);
    CHECK(f->operate({"Device.LocalAgent.", "", {}}, full(), {}).error->code == ErrorCode::kInvalidPathSyntax);
    CHECK(f->registerCommand("Device.NoSuch()", [](const CommandCall&) -> Result<ArgMap> { return ArgMap{}; }).error().code ==
          ErrorCode::kInvalidPath);
}

// ---- Permissions ------------------------------------------------------------------------------

namespace {

// Role 1 "Full": everything. Role 2 "Limited": read LocalAgent, but Subscription
// read/write/add/delete, and no access to MQTT; a higher-Order rule hides Controller.
void makeRoles(Engine& e) {
    REQUIRE(e.addInstance("Device.LocalAgent.ControllerTrust.Role.", {{"Name", "Full"}, {"Enable", "true"}}));
    REQUIRE(e.addInstance("Device.LocalAgent.ControllerTrust.Role.1.Permission.",
                          {{"Enable", "true"}, {"Order", "1"}, {"Targets", "Device."}, {"Param", "rw-n"}, {"Obj", "rw-n"},
                           {"InstantiatedObj", "rw-n"}, {"CommandEvent", "r-xn"}}));
    REQUIRE(e.addInstance("Device.LocalAgent.ControllerTrust.Role.", {{"Name", "Limited"}, {"Enable", "true"}}));
    REQUIRE(e.addInstance("Device.LocalAgent.ControllerTrust.Role.2.Permission.",
                          {{"Enable", "true"}, {"Order", "1"}, {"Targets", "Device.LocalAgent."}, {"Param", "r---"}, {"Obj", "r---"},
                           {"InstantiatedObj", "r---"}, {"CommandEvent", "r---"}}));
    REQUIRE(e.addInstance("Device.LocalAgent.ControllerTrust.Role.2.Permission.",
                          {{"Enable", "true"}, {"Order", "2"}, {"Targets", "Device.LocalAgent.Subscription."}, {"Param", "rw--"},
                           {"Obj", "rw--"}, {"InstantiatedObj", "rw--"}, {"CommandEvent", "----"}}));
    REQUIRE(e.addInstance("Device.LocalAgent.ControllerTrust.Role.2.Permission.",
                          {{"Enable", "true"}, {"Order", "3"}, {"Targets", "Device.LocalAgent.Controller.*."}, {"Param", "----"},
                           {"Obj", "----"}, {"InstantiatedObj", "----"}, {"CommandEvent", "----"}}));
    REQUIRE(e.addInstance("Device.LocalAgent.ControllerTrust.Role.2.Permission.",
                          {{"Enable", "true"}, {"Order", "4"}, {"Targets", "Device.LocalAgent.EndpointID"}, {"Param", "----"}}));
}

}  // namespace

TEST_CASE("Permission strings parse rwxn positions", "[datamodel][permissions]") {
    CHECK(parsePermString("rwxn") == kPermAll);
    CHECK(parsePermString("r---") == kPermRead);
    CHECK(parsePermString("---n") == kPermNotify);
    CHECK(parsePermString("-w-n") == (kPermWrite | kPermNotify));
    CHECK(parsePermString("wrxn") == 0);
    CHECK(parsePermString("rw") == 0);
}

TEST_CASE("A controller without permission gets 7006 and nothing changes", "[datamodel][permissions]") {
    Fixture f;
    makeRoles(*f);
    auto limited = Permissions::fromRoles(*f, {"Limited"});
    auto set = setOne(*f, "Device.LocalAgent.Controller.1.", {{"ProvisioningCode", "x", true}}, false, limited);
    REQUIRE(set.error);  // the Controller table is invisible to this role
    CHECK(value(*f, "Device.LocalAgent.Controller.1.ProvisioningCode") == "");
    auto mqtt = addOne(*f, "Device.MQTT.Client.", {{"Name", "x", true}}, false, limited);
    REQUIRE(mqtt.error);
    CHECK(mqtt.error->code == ErrorCode::kPermissionDenied);
    CHECK(value(*f, "Device.MQTT.ClientNumberOfEntries") == "0");
    auto agentParam = setOne(*f, "Device.LocalAgent.", {{"MaxSubscriptionChangeAdoptionTime", "10", true}}, false, limited);
    REQUIRE(agentParam.error);
    CHECK(agentParam.error->code == ErrorCode::kPermissionDenied);
    CHECK(agentParam.error->paramErrors.at(0).code == ErrorCode::kPermissionDenied);
    auto ok = addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "lim", true}}, false, limited);
    REQUIRE_FALSE(ok.error);
    CHECK(ok.results.at(0).success);
    auto op = f->operate({"Device.Reboot()", "", {}}, limited, {});
    CHECK(op.results.at(0).err == ErrorCode::kPermissionDenied);
    auto del = delPaths(*f, {"Device.LocalAgent.ControllerTrust.Role.1."}, false, limited);
    REQUIRE(del.error);
    CHECK(del.error->code == ErrorCode::kPermissionDenied);
    CHECK(value(*f, "Device.LocalAgent.ControllerTrust.RoleNumberOfEntries") == "2");
}

TEST_CASE("Get silently omits what a role may not read, and higher Order wins within a role", "[datamodel][permissions]") {
    Fixture f;
    makeRoles(*f);
    REQUIRE(f->setValue("Device.LocalAgent.EndpointID", "os::me"));
    auto limited = Permissions::fromRoles(*f, {"Device.LocalAgent.ControllerTrust.Role.2"});
    auto la = getOne(*f, "Device.LocalAgent.", 0, limited);
    CHECK(la.err == ErrorCode::kOk);
    bool sawController = false, sawAgent = false;
    for (const auto& o : la.resolved) {
        sawController |= o.path.find("Controller.") != std::string::npos && o.path.find("ControllerTrust") == std::string::npos;
        if (o.path == "Device.LocalAgent.") {
            sawAgent = true;
            CHECK(findParam(o, "EndpointID") == "<absent>");  // Order 4 rule removes read
            CHECK(findParam(o, "SoftwareVersion") == "");
        }
    }
    CHECK(sawAgent);
    CHECK_FALSE(sawController);
    CHECK(getOne(*f, "Device.MQTT.", 0, limited).resolved.empty());
    // Union across roles: Limited + Full sees everything.
    auto both = Permissions::fromRoles(*f, {"Limited", "Full"});
    CHECK(getOne(*f, "Device.LocalAgent.EndpointID", 0, both).resolved.at(0).params.at(0).value == "os::me");
    GetInstancesRequest gi;
    gi.paths = {"Device.LocalAgent.Controller."};
    CHECK(f->getInstances(gi, limited).results.at(0).instances.empty());
    CHECK(f->getInstances(gi, both).results.at(0).instances.size() == 3);  // the Controller and its 2 BootParameters
}

TEST_CASE("Secured values read as empty without a secured role", "[datamodel][permissions]") {
    Fixture f;
    makeRoles(*f);
    REQUIRE(f->addInstance("Device.MQTT.Client.", {{"Name", "c"}, {"Password", "pw"}}));
    auto plain = Permissions::fromRoles(*f, {"Full"});
    auto secured = Permissions::fromRoles(*f, {"Full"}, true);
    CHECK(getOne(*f, "Device.MQTT.Client.1.Password", 0, plain).resolved.at(0).params.at(0).value == "");
    CHECK(getOne(*f, "Device.MQTT.Client.1.Password", 0, secured).resolved.at(0).params.at(0).value == "pw");
}

TEST_CASE("GetSupportedDM hides objects and elements a role may not read", "[datamodel][permissions]") {
    Fixture f;
    makeRoles(*f);
    auto limited = Permissions::fromRoles(*f, {"Limited"});
    GsdmRequest req;
    req.paths = {"Device.LocalAgent."};
    auto r = f->getSupportedDm(req, limited).results.at(0);
    CHECK(r.err == ErrorCode::kOk);
    for (const auto& o : r.objects) CHECK(o.path.find("Device.LocalAgent.Controller.{i}") == std::string_view::npos);
    req.paths = {"Device.MQTT."};
    CHECK(f->getSupportedDm(req, limited).results.at(0).err == ErrorCode::kInvalidPath);
    CHECK(Permissions::fromRoles(*f, {"NoSuchRole"}).forObject("Device.").obj == 0);
}
