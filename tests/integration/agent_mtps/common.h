#pragma once
// The checks every transport runs: the same berthctl commands, the same answers.

#include "mtp_fixtures.h"

namespace berth::agenttest {

inline const nlohmann::json& firstResult(const CtlResult& r, const char* resp, const char* list) {
    INFO(r.describe());
    REQUIRE(r.json.is_object());
    REQUIRE(r.json.contains(resp));
    REQUIRE(!r.json[resp][list].empty());
    return r.json[resp][list][0];
}

// get, set, add, delete and operate through `ctl`, each checked as a user would.
inline void exerciseMessages(const std::function<CtlResult(std::vector<std::string>, bool)>& ctl) {
    auto get = ctl({"get", "Device.LocalAgent.EndpointID", "Device.DeviceInfo.ModelName"}, true);
    INFO(get.describe());
    REQUIRE(get.exitCode == 0);
    CHECK(paramValue(get.json, "Device.LocalAgent.EndpointID") == kAgentId);
    CHECK(paramValue(get.json, "Device.DeviceInfo.ModelName") == "berth demo gateway");

    auto text = ctl({"get", "Device.DeviceInfo.ModelName"}, false);
    CHECK(text.exitCode == 0);
    CHECK(text.out == "Device.DeviceInfo.ModelName = berth demo gateway\n");

    auto set = ctl({"set", "Device.DeviceInfo.FriendlyName=over another MTP"}, true);
    INFO(set.describe());
    REQUIRE(set.exitCode == 0);
    auto after = ctl({"get", "Device.DeviceInfo.FriendlyName"}, true);
    CHECK(paramValue(after.json, "Device.DeviceInfo.FriendlyName") == "over another MTP");

    auto add = ctl({"add", "Device.LocalAgent.Subscription.", "ID=mtps-1", "NotifType=ValueChange",
                    "ReferenceList=Device.DeviceInfo.FriendlyName"},
                   true);
    INFO(add.describe());
    REQUIRE(add.exitCode == 0);
    std::string row = firstResult(add, "add_resp", "created_obj_results")["oper_status"]["oper_success"]["instantiated_path"];
    REQUIRE(!row.empty());
    auto del = ctl({"delete", row}, true);
    INFO(del.describe());
    REQUIRE(del.exitCode == 0);
    auto inst = ctl({"instances", "Device.LocalAgent.Subscription."}, false);
    CHECK(inst.exitCode == 0);
    CHECK(inst.out.find(row) == std::string::npos);

    auto op = ctl({"operate", "Device.LocalAgent.Controller.1.SendOnBoardRequest()"}, true);
    INFO(op.describe());
    REQUIRE(op.exitCode == 0);
    CHECK(firstResult(op, "operate_resp", "operation_results")["executed_command"] ==
          "Device.LocalAgent.Controller.1.SendOnBoardRequest()");

    // Errors keep their exit code: 1 for an agent error.
    auto bad = ctl({"get", "Device.NoSuchObject."}, false);
    CHECK(bad.exitCode == 1);
}

}  // namespace berth::agenttest
