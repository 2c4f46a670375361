// berthd answering a real controller (berthctl) through a real mosquitto: every
// request type, per-path errors, access control for an unknown controller.
#include <catch2/catch.hpp>

#include "berth/testing/agent_harness.h"

using namespace berth::agenttest;
using nlohmann::json;

namespace {

const json& firstResult(const CtlResult& r, const char* resp, const char* list) {
    INFO(r.describe());
    REQUIRE(r.json.is_object());
    REQUIRE(r.json.contains(resp));
    REQUIRE(!r.json[resp][list].empty());
    return r.json[resp][list][0];
}

std::string addSubscription(AgentFixture& f, const std::string& id) {
    auto r = f.ctl({"add", "Device.LocalAgent.Subscription.", "ID=" + id, "NotifType=ValueChange",
                    "ReferenceList=Device.DeviceInfo.FriendlyName"});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    return firstResult(r, "add_resp", "created_obj_results")["oper_status"]["oper_success"]["instantiated_path"];
}

}  // namespace

TEST_CASE("Get of Device.DeviceInfo. returns the identity from the configuration", "[agent]") {
    AgentFixture f;
    auto r = f.ctl({"get", "Device.DeviceInfo."});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    CHECK(paramValue(r.json, "Device.DeviceInfo.ModelName") == "berth demo gateway");
    CHECK(paramValue(r.json, "Device.DeviceInfo.Manufacturer") == "berth");
    CHECK(paramValue(r.json, "Device.DeviceInfo.ManufacturerOUI") == "012345");
    CHECK(paramValue(r.json, "Device.DeviceInfo.SerialNumber") == "0001");
    const auto& rp = firstResult(r, "get_resp", "req_path_results");
    CHECK(rp["requested_path"] == "Device.DeviceInfo.");
    CHECK(rp["err_code"] == 0);

    // The same for people: one `path = value` line per parameter.
    auto text = f.ctlText({"get", "Device.DeviceInfo.ModelName"});
    CHECK(text.exitCode == 0);
    CHECK(text.out == "Device.DeviceInfo.ModelName = berth demo gateway\n");
}

TEST_CASE("Set then Get shows the new value", "[agent]") {
    AgentFixture f;
    auto set = f.ctl({"set", "Device.DeviceInfo.FriendlyName=kitchen gateway",
                      "Device.LocalAgent.Controller.1.PeriodicNotifInterval=123"});
    INFO(set.describe());
    REQUIRE(set.exitCode == 0);
    // Grouped by object: one UpdateObject per object path.
    REQUIRE(set.json["set_resp"]["updated_obj_results"].size() == 2);
    auto get = f.ctl({"get", "Device.DeviceInfo.FriendlyName", "Device.LocalAgent.Controller.1.PeriodicNotifInterval"});
    INFO(get.describe());
    REQUIRE(get.exitCode == 0);
    CHECK(paramValue(get.json, "Device.DeviceInfo.FriendlyName") == "kitchen gateway");
    CHECK(paramValue(get.json, "Device.LocalAgent.Controller.1.PeriodicNotifInterval") == "123");
}

TEST_CASE("Set of a read-only parameter fails with 7013 and leaves the value alone", "[agent]") {
    AgentFixture f;
    auto set = f.ctl({"set", "Device.DeviceInfo.ModelName=other"});
    INFO(set.describe());
    CHECK(set.exitCode == 1);
    REQUIRE(set.json.contains("error"));
    bool blamed = false;
    for (const auto& pe : set.json["error"]["param_errs"])
        if (pe["param_path"] == "Device.DeviceInfo.ModelName" && pe["err_code"] == 7013) blamed = true;
    CHECK(blamed);
    auto get = f.ctl({"get", "Device.DeviceInfo.ModelName"});
    CHECK(paramValue(get.json, "Device.DeviceInfo.ModelName") == "berth demo gateway");
}

TEST_CASE("Add and Delete of a Subscription row", "[agent]") {
    AgentFixture f;
    auto add = f.ctl({"add", "Device.LocalAgent.Subscription.", "ID=it-1", "Enable=true", "NotifType=ValueChange",
                      "ReferenceList=Device.DeviceInfo.FriendlyName"});
    INFO(add.describe());
    REQUIRE(add.exitCode == 0);
    const auto& ok = firstResult(add, "add_resp", "created_obj_results")["oper_status"]["oper_success"];
    std::string path = ok["instantiated_path"];
    CHECK(path.rfind("Device.LocalAgent.Subscription.", 0) == 0);
    CHECK(path.back() == '.');
    // All unique keys come back, the agent-assigned Alias included (R-ADD.5).
    CHECK(ok["unique_keys"]["ID"] == "it-1");
    CHECK(ok["unique_keys"].contains("Alias"));
    CHECK(!ok["unique_keys"]["Alias"].get<std::string>().empty());

    auto get = f.ctl({"get", path});
    INFO(get.describe());
    REQUIRE(get.exitCode == 0);
    CHECK(paramValue(get.json, path + "ID") == "it-1");
    CHECK(paramValue(get.json, path + "Enable") == "true");
    CHECK(paramValue(get.json, path + "NotifType") == "ValueChange");

    auto text = f.ctlText({"add", "Device.LocalAgent.Subscription.", "ID=it-2"});
    INFO(text.describe());
    CHECK(text.exitCode == 0);
    CHECK(text.out.rfind("Device.LocalAgent.Subscription.", 0) == 0);
    CHECK(text.out.find("  ID = it-2\n") != std::string::npos);

    auto del = f.ctl({"delete", path});
    INFO(del.describe());
    REQUIRE(del.exitCode == 0);
    CHECK(firstResult(del, "delete_resp", "deleted_obj_results")["oper_status"]["oper_success"]["affected_paths"] ==
          json::array({path}));
    auto gone = f.ctl({"get", path});
    CHECK(gone.exitCode == 1);
    CHECK(firstResult(gone, "get_resp", "req_path_results")["err_code"] == 7026);

    // A missing instance is an empty success (TP-469 1.25), an unknown object an Error (1.26).
    auto again = f.ctl({"delete", path});
    CHECK(again.exitCode == 0);
    CHECK(firstResult(again, "delete_resp", "deleted_obj_results")["oper_status"]["oper_success"]["affected_paths"]
              .empty());
    auto invalid = f.ctl({"delete", "Device.LocalAgent.InvalidObject.1."});
    CHECK(invalid.exitCode == 1);
    CHECK(invalid.json.contains("error"));
}

TEST_CASE("Add of a Subscription fills in Recipient and CreationDate", "[agent]") {
    // TR-181 Device.LocalAgent.Subscription.{i}.Recipient: "automatically populated" with
    // the creating Controller's Controller.{i}. path; CreationDate likewise.
    AgentFixture f;
    auto path = addSubscription(f, "recipient-check");
    auto get = f.ctl({"get", path});
    INFO(get.describe());
    auto recipient = paramValue(get.json, path + "Recipient");
    REQUIRE(recipient);
    // A reference to an object; accept it with or without the trailing dot.
    CHECK((*recipient == "Device.LocalAgent.Controller.1" || *recipient == "Device.LocalAgent.Controller.1."));
    auto created = paramValue(get.json, path + "CreationDate");
    REQUIRE(created);
    CHECK(created->size() >= 20);  // e.g. 2024-01-02T03:04:05Z
}

TEST_CASE("GetInstances lists rows with their unique keys", "[agent]") {
    AgentFixture f;
    auto p1 = addSubscription(f, "gi-1");
    auto p2 = addSubscription(f, "gi-2");
    auto r = f.ctl({"instances", "Device.LocalAgent.Subscription.", "Device.LocalAgent.Controller."});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    const auto& results = r.json["get_instances_resp"]["req_path_results"];
    REQUIRE(results.size() == 2);
    std::map<std::string, json> subs;
    for (const auto& inst : results[0]["curr_insts"]) subs[inst["instantiated_obj_path"]] = inst["unique_keys"];
    REQUIRE(subs.size() == 2);
    CHECK(subs[p1]["ID"] == "gi-1");
    CHECK(subs[p2]["ID"] == "gi-2");
    REQUIRE(results[1]["curr_insts"].size() >= 1);
    bool found = false;
    for (const auto& inst : results[1]["curr_insts"])
        if (inst["instantiated_obj_path"] == "Device.LocalAgent.Controller.1." &&
            inst["unique_keys"]["EndpointID"] == "self::berthctl")
            found = true;
    CHECK(found);

    // Nested tables are listed too, unless first_level_only (TP-469 1.66, 1.67).
    bool nested = false;
    for (const auto& inst : results[1]["curr_insts"])
        if (inst["instantiated_obj_path"] == "Device.LocalAgent.Controller.1.MTP.1.") nested = true;
    CHECK(nested);
    auto first = f.ctl({"instances", "--first-level-only", "Device.LocalAgent.Controller."});
    INFO(first.describe());
    REQUIRE(first.exitCode == 0);
    for (const auto& inst : first.json["get_instances_resp"]["req_path_results"][0]["curr_insts"])
        CHECK(inst["instantiated_obj_path"].get<std::string>().find(".MTP.") == std::string::npos);
}

TEST_CASE("GetSupportedDM describes the Subscription table", "[agent]") {
    AgentFixture f;
    auto r = f.ctl({"gsdm", "--first-level-only", "Device.LocalAgent.Subscription."});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    const auto& ro = firstResult(r, "get_supported_dm_resp", "req_obj_results");
    CHECK(ro["err_code"] == 0);
    CHECK(ro["data_model_inst_uri"].get<std::string>().rfind("urn:broadband-forum-org:tr-181-2-", 0) == 0);
    REQUIRE(ro["supported_objs"].size() == 1);
    const auto& obj = ro["supported_objs"][0];
    CHECK(obj["supported_obj_path"] == "Device.LocalAgent.Subscription.{i}.");
    CHECK(obj["is_multi_instance"] == true);
    CHECK(obj["access"] == "OBJ_ADD_DELETE");
    std::map<std::string, json> params;
    for (const auto& p : obj["supported_params"]) params[p["param_name"]] = p;
    REQUIRE(params.count("NotifType"));
    CHECK(params["NotifType"]["access"] == "PARAM_READ_WRITE");
    CHECK(params["NotifType"]["value_type"] == "PARAM_STRING");
    REQUIRE(params.count("Enable"));
    CHECK(params["Enable"]["value_type"] == "PARAM_BOOLEAN");
    REQUIRE(params.count("Recipient"));
    CHECK(params["Recipient"]["access"] == "PARAM_READ_ONLY");
    bool aliasKey = false;
    for (const auto& ks : obj["unique_key_sets"])
        if (ks["key_names"] == json::array({"Alias"})) aliasKey = true;
    CHECK(aliasKey);

    auto unknown = f.ctl({"gsdm", "Device.NoSuchThing."});
    CHECK(unknown.exitCode == 1);
    CHECK(firstResult(unknown, "get_supported_dm_resp", "req_obj_results")["err_code"] == 7026);
}

TEST_CASE("GetSupportedProtocol answers the USP versions berthd honours", "[agent]") {
    AgentFixture f;
    auto r = f.ctl({"proto", "1.3,1.4"});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    CHECK(r.json["get_supported_protocol_resp"]["agent_supported_protocol_versions"] == "1.0,1.1,1.2,1.3,1.4");
}

TEST_CASE("Operate of a sync command answers with its output arguments", "[agent]") {
    AgentFixture f;
    auto r = f.ctl({"operate", "Device.LocalAgent.Controller.1.SendOnBoardRequest()"});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    const auto& res = firstResult(r, "operate_resp", "operation_results");
    CHECK(res["executed_command"] == "Device.LocalAgent.Controller.1.SendOnBoardRequest()");
    CHECK(res.contains("req_output_args"));
    auto text = f.ctlText({"operate", "Device.LocalAgent.Controller.1.SendOnBoardRequest()"});
    CHECK(text.out == "Device.LocalAgent.Controller.1.SendOnBoardRequest(): ok\n");
}

TEST_CASE("Device.Reboot() answers, restarts berthd, and berthd answers again", "[agent]") {
    AgentFixture f;
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=before reboot"}).exitCode == 0);
    auto r = f.ctl({"operate", "Device.Reboot()", "Cause=RemoteReboot", "Reason=test"});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    CHECK(firstResult(r, "operate_resp", "operation_results")["executed_command"] == "Device.Reboot()");
    bool restarted = berth::testing::waitUntil([&] { return f.agent->log().find("restarting") != std::string::npos; });
    INFO(f.agent->log());
    CHECK(restarted);
    REQUIRE(f.waitAnswering());
    auto get = f.ctl({"get", "Device.DeviceInfo.FriendlyName"});
    CHECK(paramValue(get.json, "Device.DeviceInfo.FriendlyName") == "before reboot");
}

TEST_CASE("Operate: commands without an implementation fail with 7022, unknown ones with 7026", "[agent]") {
    AgentFixture f;
    // An async command that cannot start is reported in the OperateResp, not as an Error
    // message (R-OPR.1).
    auto async = f.ctl({"operate", "Device.SelfTestDiagnostics()"});
    INFO(async.describe());
    CHECK(async.exitCode == 1);
    CHECK(firstResult(async, "operate_resp", "operation_results")["cmd_failure"]["err_code"] == 7022);

    auto unknown = f.ctl({"operate", "Device.NoSuchCommand()"});
    INFO(unknown.describe());
    CHECK(unknown.exitCode == 1);
    REQUIRE(unknown.json.contains("error"));
    CHECK(unknown.json["error"]["err_code"] == 7026);

    // The text form names the command and the code.
    auto text = f.ctlText({"operate", "Device.SelfTestDiagnostics()"});
    CHECK(text.out.rfind("Device.SelfTestDiagnostics(): error 7022 Command failure", 0) == 0);
}

TEST_CASE("operate --wait adds an OperationComplete subscription and deletes it again", "[agent]") {
    // No asynchronous command has an implementation yet, so the wait for
    // OperationComplete itself cannot run here: this checks the subscription's life
    // around a sync command and a failing async one.
    AgentFixture f;
    auto ok = f.ctlText({"operate", "--wait", "Device.LocalAgent.Controller.1.SendOnBoardRequest()"});
    INFO(ok.describe());
    CHECK(ok.exitCode == 0);
    auto failed = f.ctlText({"operate", "--wait", "Device.SelfTestDiagnostics()"});
    INFO(failed.describe());
    CHECK(failed.exitCode == 1);
    CHECK(failed.err.find("could not delete") == std::string::npos);
    auto inst = f.ctl({"instances", "Device.LocalAgent.Subscription."});
    CHECK(inst.json["get_instances_resp"]["req_path_results"][0]["curr_insts"].empty());
    // Both Adds went through: the next row number shows it.
    auto add = f.ctl({"add", "Device.LocalAgent.Subscription.", "ID=after"});
    CHECK(add.json["add_resp"]["created_obj_results"][0]["oper_status"]["oper_success"]["instantiated_path"] ==
          "Device.LocalAgent.Subscription.3.");
}

TEST_CASE("Per-path errors: 7026 for an unknown path beside a good one", "[agent]") {
    AgentFixture f;
    auto r = f.ctl({"get", "Device.DeviceInfo.ModelName", "Device.Foo.", "Device.DeviceInfo.NoSuchParam"});
    INFO(r.describe());
    CHECK(r.exitCode == 1);
    const auto& results = r.json["get_resp"]["req_path_results"];
    REQUIRE(results.size() == 3);
    CHECK(results[0]["err_code"] == 0);
    CHECK(paramValue(r.json, "Device.DeviceInfo.ModelName") == "berth demo gateway");
    CHECK(results[1]["requested_path"] == "Device.Foo.");
    CHECK(results[1]["err_code"] == 7026);
    CHECK(results[2]["err_code"] == 7026);

    auto text = f.ctlText({"get", "Device.DeviceInfo.ModelName", "Device.Foo."});
    CHECK(text.exitCode == 1);
    CHECK(text.out.find("Device.DeviceInfo.ModelName = berth demo gateway\n") != std::string::npos);
    CHECK(text.out.find("Device.Foo.: error 7026 Invalid path: ") != std::string::npos);

    // A search that matches nothing is not an error (R-GET.1a).
    auto none = f.ctl({"get", "Device.LocalAgent.Subscription.[ID==\"none\"]."});
    INFO(none.describe());
    CHECK(none.exitCode == 0);
    CHECK(none.json["get_resp"]["req_path_results"][0]["resolved_path_results"].empty());
}

TEST_CASE("An unknown controller gets the untrusted role, which reads and writes nothing", "[agent]") {
    // Spec digest §8: unknown controllers get UntrustedRole (R-SEC.6); the example's
    // untrusted role has no permissions. §4.3 (R-GET.1): objects and parameters without
    // Read permission are treated as absent, so a Get answers 7026 per path rather
    // than an Error message. The reply still reaches the stranger through the MQTT 5
    // Response Topic of its request.
    AgentFixture f;
    std::vector<std::string> as{"--id", "self::stranger"};
    auto with = [&](std::vector<std::string> args) {
        args.insert(args.begin(), as.begin(), as.end());
        return f.ctl(args);
    };
    auto get = with({"get", "Device.DeviceInfo.", "Device.DeviceInfo.ModelName"});
    INFO(get.describe());
    CHECK(get.exitCode == 1);
    REQUIRE(get.json.contains("get_resp"));
    for (const auto& rp : get.json["get_resp"]["req_path_results"]) {
        CHECK(rp["err_code"] == 7026);
        CHECK(rp["resolved_path_results"].empty());
    }
    // A search over what it cannot read finds nothing.
    auto search = with({"get", "Device.LocalAgent.Controller.*.EndpointID"});
    CHECK(search.json["get_resp"]["req_path_results"][0]["resolved_path_results"].empty());

    auto set = with({"set", "Device.DeviceInfo.FriendlyName=evil"});
    INFO(set.describe());
    CHECK(set.exitCode == 1);
    REQUIRE(set.json.contains("error"));
    CHECK(set.json["error"]["err_code"] == 7006);
    auto check = f.ctl({"get", "Device.DeviceInfo.FriendlyName"});
    CHECK(paramValue(check.json, "Device.DeviceInfo.FriendlyName") == "");

    auto add = with({"add", "Device.LocalAgent.Subscription.", "ID=evil"});
    CHECK(add.exitCode == 1);
    CHECK(add.json["error"]["err_code"] == 7006);
    auto op = with({"operate", "Device.Reboot()"});
    CHECK(firstResult(op, "operate_resp", "operation_results")["cmd_failure"]["err_code"] == 7006);
    auto inst = with({"instances", "Device.LocalAgent.Controller."});
    CHECK(inst.exitCode == 0);
    CHECK(inst.json["get_instances_resp"]["req_path_results"][0]["curr_insts"].empty());

    // What a stranger may ask: which protocol versions are supported.
    auto proto = with({"proto"});
    CHECK(proto.exitCode == 0);
    CHECK(proto.json["get_supported_protocol_resp"]["agent_supported_protocol_versions"] == "1.0,1.1,1.2,1.3,1.4");
}

TEST_CASE("berthctl exit codes: usage 2, no answer 3 naming agent, topic and broker, no broker 4", "[agent]") {
    AgentFixture f;
    auto usage = f.ctl({"set", "Device.DeviceInfo.FriendlyName"});
    CHECK(usage.exitCode == 2);
    CHECK(usage.err.find("expected Name=value") != std::string::npos);

    auto silent = f.ctl({"--agent", "os::nobody", "--timeout", "1", "get", "Device."});
    INFO(silent.describe());
    CHECK(silent.exitCode == 3);
    CHECK(silent.err.find("os::nobody") != std::string::npos);
    CHECK(silent.err.find("usp/agent/os::nobody") != std::string::npos);
    CHECK(silent.err.find(f.broker->address()) != std::string::npos);

    int closed = berth::testing::freeTcpPort();
    auto noBroker = runCtl({BERTHCTL_BIN, "--mqtt", "127.0.0.1:" + std::to_string(closed), "get", "Device."});
    INFO(noBroker.describe());
    CHECK(noBroker.exitCode == 4);
    CHECK(noBroker.err.find("cannot connect") != std::string::npos);

    auto help = runCtl({BERTHCTL_BIN, "--help"});
    CHECK(help.exitCode == 0);
    CHECK(help.out.find("Exit codes:") != std::string::npos);
}

TEST_CASE("watch prints notifications and deletes its subscription when stopped", "[agent]") {
    AgentFixture f;
    auto out = f.tmp / "watch.out";
    auto watcher = berth::testing::ProcessGuard::start(
        {BERTHCTL_BIN, "--mqtt", f.broker->address(), "--json", "watch", "--type", "ValueChange",
         "Device.DeviceInfo.FriendlyName", "--sub-id", "watch-1", "--timeout", "60"},
        out.string());
    auto subscribed = [&] {
        auto r = f.ctl({"get", "Device.LocalAgent.Subscription.[ID==\"watch-1\"].Enable"});
        return r.exitCode == 0 && !r.json["get_resp"]["req_path_results"][0]["resolved_path_results"].empty();
    };
    REQUIRE(berth::testing::waitUntil(subscribed, std::chrono::seconds(10)));
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=watched"}).exitCode == 0);
    bool notified = berth::testing::waitUntil(
        [&] { return berth::testing::readFile(out).find("\"param_value\":\"watched\"") != std::string::npos; },
        std::chrono::seconds(15));
    INFO(berth::testing::readFile(out));
    INFO(f.agent->log());
    CHECK(notified);
    // One JSON document per line.
    auto firstLine = berth::testing::readFile(out).substr(0, berth::testing::readFile(out).find('\n'));
    auto j = nlohmann::json::parse(firstLine, nullptr, false);
    CHECK(j["notify"]["subscription_id"] == "watch-1");
    CHECK(j["notify"]["value_change"]["param_path"] == "Device.DeviceInfo.FriendlyName");

    auto st = watcher->stop();  // SIGTERM: ends the watch like Ctrl-C
    CHECK(st.success());
    CHECK(!subscribed());
}

TEST_CASE("watch ends at --timeout with exit 0 and leaves no subscription behind", "[agent]") {
    AgentFixture f;
    auto r = f.ctlText({"watch", "--type", "ObjectCreation", "Device.LocalAgent.Subscription.", "--timeout", "1"});
    INFO(r.describe());
    CHECK(r.exitCode == 0);
    CHECK(r.err.find("watching ObjectCreation Device.LocalAgent.Subscription. as subscription "
                     "Device.LocalAgent.Subscription.") != std::string::npos);
    auto inst = f.ctl({"instances", "Device.LocalAgent.Subscription."});
    CHECK(inst.json["get_instances_resp"]["req_path_results"][0]["curr_insts"].empty());
}
