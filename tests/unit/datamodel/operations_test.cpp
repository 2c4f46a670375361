// USP operations on the engine, modelled on TP-469 section 1 (Messages and Path Names).

#include <catch2/catch.hpp>

#include "dm_test_util.h"

using namespace berth;
using namespace berth::dm;
using namespace berth::dm::test;

namespace {

std::string sub(Engine& e, int inst, const char* param) {
    return value(e, "Device.LocalAgent.Subscription." + std::to_string(inst) + "." + param);
}

int subscriptionCount(Engine& e) { return std::stoi(value(e, "Device.LocalAgent.SubscriptionNumberOfEntries")); }

std::string keyOf(const CreatedObjectResult& r, std::string_view k) {
    for (const auto& [n, v] : r.uniqueKeys)
        if (n == k) return v;
    return "<absent>";
}

}  // namespace

// ---- Add ------------------------------------------------------------------------------

TEST_CASE("Add with allow_partial false creates the object and returns its unique keys (TP-469 1.1)", "[datamodel][add]") {
    Fixture f;
    auto r = addOne(*f, "Device.LocalAgent.Subscription.",
                    {{"Enable", "true", true}, {"ID", "add1", true}, {"NotifType", "ValueChange", true},
                     {"ReferenceList", "Device.LocalAgent.EndpointID", true}});
    REQUIRE_FALSE(r.error);
    REQUIRE(r.results.size() == 1);
    const auto& c = r.results[0];
    CHECK(c.success);
    CHECK(c.instantiatedPath == "Device.LocalAgent.Subscription.1.");
    CHECK(c.paramErrors.empty());
    CHECK(keyOf(c, "Alias") == "cpe-1");
    CHECK(keyOf(c, "ID") == "add1");
    CHECK(keyOf(c, "Recipient") == "Device.LocalAgent.Controller.1");
    CHECK(sub(*f, 1, "Enable") == "true");
    CHECK(sub(*f, 1, "ReferenceList") == "Device.LocalAgent.EndpointID");
    CHECK(sub(*f, 1, "TriggerAction") == "Notify");  // schema default
}

TEST_CASE("Add with a failing required parameter and allow_partial false creates nothing (TP-469 1.3, 1.7)", "[datamodel][add]") {
    Fixture f;
    AddRequest req;
    req.objects.push_back({"Device.LocalAgent.Subscription.", {{"Enable", "InvalidValue", true}, {"ID", "add71", false}}});
    req.objects.push_back({"Device.LocalAgent.Subscription.", {{"Enable", "true", true}, {"ID", "add72", false}}});
    auto r = f->add(req, full());
    REQUIRE(r.error);
    CHECK(r.error->code == ErrorCode::kInvalidArguments);
    REQUIRE(r.error->paramErrors.size() == 1);
    CHECK(r.error->paramErrors[0].path == "Device.LocalAgent.Subscription.1.Enable");
    CHECK(r.error->paramErrors[0].code == ErrorCode::kInvalidType);
    CHECK(subscriptionCount(*f) == 0);
}

TEST_CASE("Add on an unsupported object fails the whole message (TP-469 1.4, 1.6)", "[datamodel][add]") {
    Fixture f;
    AddRequest req;
    req.objects.push_back({"Device.LocalAgent.Subscription.", {{"ID", "ok", false}}});
    req.objects.push_back({"Device.LocalAgent.InvalidObject.", {}});
    auto r = f->add(req, full());
    REQUIRE(r.error);
    REQUIRE(r.error->paramErrors.size() == 1);
    CHECK(r.error->paramErrors[0].path == "Device.LocalAgent.InvalidObject.");
    CHECK(r.error->paramErrors[0].code == ErrorCode::kInvalidPath);
    CHECK(subscriptionCount(*f) == 0);
}

TEST_CASE("Add of two objects with allow_partial false creates both (TP-469 1.5)", "[datamodel][add]") {
    Fixture f;
    AddRequest req;
    req.objects.push_back({"Device.LocalAgent.Subscription.", {{"ID", "a", true}}});
    req.objects.push_back({"Device.LocalAgent.Subscription.", {{"ID", "b", true}}});
    auto r = f->add(req, full());
    REQUIRE_FALSE(r.error);
    REQUIRE(r.results.size() == 2);
    CHECK(r.results[0].instantiatedPath == "Device.LocalAgent.Subscription.1.");
    CHECK(r.results[1].instantiatedPath == "Device.LocalAgent.Subscription.2.");
    CHECK(subscriptionCount(*f) == 2);
}

TEST_CASE("Add with allow_partial true reports oper_failure for the failed object only (TP-469 1.8, 1.9)", "[datamodel][add]") {
    Fixture f;
    AddRequest req;
    req.allowPartial = true;
    req.objects.push_back({"Device.LocalAgent.Subscription.", {{"ID", "good", true}}});
    req.objects.push_back({"Device.LocalAgent.Subscription.", {{"InvalidParameter", "x", true}}});
    req.objects.push_back({"Device.LocalAgent.Subscription.", {{"Enable", "maybe", true}}});
    auto r = f->add(req, full());
    REQUIRE_FALSE(r.error);
    REQUIRE(r.results.size() == 3);
    CHECK(r.results[0].success);
    CHECK_FALSE(r.results[1].success);
    CHECK(r.results[1].err == ErrorCode::kUnsupportedParameter);
    CHECK_FALSE(r.results[2].success);
    CHECK(r.results[2].err == ErrorCode::kInvalidType);
    CHECK(subscriptionCount(*f) == 1);
    CHECK(sub(*f, 1, "ID") == "good");
}

TEST_CASE("Add reports non-required parameter failures inside oper_success", "[datamodel][add]") {
    Fixture f;
    auto r = addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "x", true}, {"NotifRetry", "notabool", false}}, true);
    REQUIRE(r.results.at(0).success);
    REQUIRE(r.results[0].paramErrors.size() == 1);
    CHECK(r.results[0].paramErrors[0].path == "Device.LocalAgent.Subscription.1.NotifRetry");
    CHECK(r.results[0].paramErrors[0].code == ErrorCode::kInvalidType);
    CHECK(sub(*f, 1, "NotifRetry") == "false");
}

TEST_CASE("Add with unique-key addressing in the path creates a nested row (TP-469 1.10)", "[datamodel][add]") {
    Fixture f;
    auto r = addOne(*f, "Device.LocalAgent.Controller.[EndpointID==\"proto::controller-1\"&&Alias==\"ctrl1\"].BootParameter.",
                    {{"ParameterName", "Device.LocalAgent.SoftwareVersion", true}, {"Enable", "true", false}});
    REQUIRE_FALSE(r.error);
    REQUIRE(r.results.at(0).success);
    CHECK(r.results[0].instantiatedPath == "Device.LocalAgent.Controller.1.BootParameter.3.");
    CHECK(keyOf(r.results[0], "ParameterName") == "Device.LocalAgent.SoftwareVersion");
    CHECK(keyOf(r.results[0], "Alias") == "cpe-3");
}

TEST_CASE("Add on a search path creates one row per matched parent (TP-469 1.95)", "[datamodel][add]") {
    Fixture f;
    REQUIRE(f->addInstance("Device.LocalAgent.Controller.", {{"EndpointID", "c2"}, {"Enable", "true"}}));
    REQUIRE(f->addInstance("Device.LocalAgent.Controller.", {{"EndpointID", "c3"}, {"Enable", "false"}}));
    auto r = addOne(*f, "Device.LocalAgent.Controller.[Enable==true].BootParameter.", {{"ParameterName", "X", true}});
    REQUIRE_FALSE(r.error);
    REQUIRE(r.results.size() == 2);
    CHECK(r.results[0].requestedPath == r.results[1].requestedPath);
    CHECK(r.results[0].instantiatedPath == "Device.LocalAgent.Controller.1.BootParameter.3.");
    CHECK(r.results[1].instantiatedPath == "Device.LocalAgent.Controller.2.BootParameter.1.");
}

TEST_CASE("Two Adds without ID or Alias get different generated keys (TP-469 1.81)", "[datamodel][add]") {
    Fixture f;
    auto a = addOne(*f, "Device.LocalAgent.Subscription.", {});
    auto b = addOne(*f, "Device.LocalAgent.Subscription.", {});
    REQUIRE(a.results.at(0).success);
    REQUIRE(b.results.at(0).success);
    CHECK(keyOf(a.results[0], "Alias") != keyOf(b.results[0], "Alias"));
    CHECK(keyOf(a.results[0], "ID") != keyOf(b.results[0], "ID"));
    CHECK(keyOf(a.results[0], "Recipient") == keyOf(b.results[0], "Recipient"));
}

TEST_CASE("Add with an invalid Alias fails even when not required (TP-469 1.88)", "[datamodel][add]") {
    Fixture f;
    auto r = addOne(*f, "Device.LocalAgent.Subscription.", {{"Alias", "88InvalidAlias", false}, {"ID", "x", false}});
    REQUIRE(r.error);
    CHECK(r.error->paramErrors.at(0).code == ErrorCode::kInvalidValue);
    CHECK(subscriptionCount(*f) == 0);
}

TEST_CASE("Add with a duplicate unique key reports 7025", "[datamodel][add]") {
    Fixture f;
    REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "dup", true}}).results.at(0).success);
    auto r = addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "dup", true}});
    REQUIRE(r.error);
    CHECK(r.error->paramErrors.at(0).code == ErrorCode::kDuplicateUniqueKey);
    auto alias = addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "other", true}, {"Alias", "cpe-1", false}}, true);
    CHECK_FALSE(alias.results.at(0).success);
    CHECK(alias.results[0].err == ErrorCode::kDuplicateUniqueKey);
    CHECK(subscriptionCount(*f) == 1);
}

TEST_CASE("Add on a non-table, read-only table or instance path gives 7018 / 7019", "[datamodel][add]") {
    Fixture f;
    CHECK(addOne(*f, "Device.LocalAgent.", {}).error->paramErrors.at(0).code == ErrorCode::kObjectNotTable);
    CHECK(addOne(*f, "Device.LocalAgent.Controller.1.", {}).error->paramErrors.at(0).code == ErrorCode::kObjectNotTable);
    CHECK(addOne(*f, "Device.SoftwareModules.DeploymentUnit.", {}).error->paramErrors.at(0).code == ErrorCode::kObjectNotCreatable);
    CHECK(addOne(*f, "Device.LocalAgent.Controller.7.BootParameter.", {}).error->paramErrors.at(0).code == ErrorCode::kObjectDoesNotExist);
    CHECK(addOne(*f, "Device.LocalAgent.Controller.1.Enable", {}).error->paramErrors.at(0).code == ErrorCode::kInvalidPathSyntax);
    auto ro = addOne(*f, "Device.LocalAgent.Subscription.", {{"Recipient", "Device.LocalAgent.Controller.1", true}});
    CHECK(ro.error->paramErrors.at(0).code == ErrorCode::kParameterNotWritable);
}

TEST_CASE("Instance numbers are never reused after a Delete", "[datamodel][add]") {
    Fixture f;
    REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "a", true}}).results.at(0).success);
    REQUIRE(delPaths(*f, {"Device.LocalAgent.Subscription.1."}).results.at(0).success);
    auto r = addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "b", true}});
    CHECK(r.results.at(0).instantiatedPath == "Device.LocalAgent.Subscription.2.");
}

// ---- Set ------------------------------------------------------------------------------

TEST_CASE("Set with required parameters updates and reports the new values (TP-469 1.11, 1.12)", "[datamodel][set]") {
    Fixture f;
    REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "s", true}}).results.at(0).success);
    for (bool partial : {false, true}) {
        auto r = setOne(*f, "Device.LocalAgent.Subscription.1.", {{"NotifRetry", partial ? "1" : "false", true}}, partial);
        REQUIRE_FALSE(r.error);
        REQUIRE(r.results.at(0).success);
        REQUIRE(r.results[0].updated.size() == 1);
        CHECK(r.results[0].updated[0].affectedPath == "Device.LocalAgent.Subscription.1.");
        REQUIRE(r.results[0].updated[0].updatedParams.size() == 1);
        CHECK(r.results[0].updated[0].updatedParams[0].first == "NotifRetry");
        CHECK(r.results[0].updated[0].updatedParams[0].second == (partial ? "true" : "false"));
        CHECK(sub(*f, 1, "NotifRetry") == (partial ? "true" : "false"));
    }
}

TEST_CASE("Set failing a required parameter in one object rolls back the others (TP-469 1.14, 1.15)", "[datamodel][set]") {
    Fixture f;
    REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "a", true}}).results.at(0).success);
    REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "b", true}}).results.at(0).success);
    SetRequest req;
    req.objects.push_back({"Device.LocalAgent.Subscription.1.", {{"NotifRetry", "true", true}}});
    req.objects.push_back({"Device.LocalAgent.Subscription.2.", {{"InvalidParameter", "x", true}}});
    auto r = f->set(req, full());
    REQUIRE(r.error);
    REQUIRE(r.error->paramErrors.size() == 1);
    CHECK(r.error->paramErrors[0].path == "Device.LocalAgent.Subscription.2.InvalidParameter");
    CHECK(r.error->paramErrors[0].code == ErrorCode::kUnsupportedParameter);
    CHECK(sub(*f, 1, "NotifRetry") == "false");
}

TEST_CASE("Set with allow_partial true reports success and failure per object (TP-469 1.16, 1.17)", "[datamodel][set]") {
    Fixture f;
    REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "a", true}}).results.at(0).success);
    REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "b", true}}).results.at(0).success);
    SetRequest req;
    req.allowPartial = true;
    req.objects.push_back({"Device.LocalAgent.Subscription.1.", {{"NotifRetry", "true", true}, {"InvalidParameter", "x", false}}});
    req.objects.push_back({"Device.LocalAgent.Subscription.2.", {{"InvalidParameter", "x", true}}});
    auto r = f->set(req, full());
    REQUIRE_FALSE(r.error);
    REQUIRE(r.results.size() == 2);
    CHECK(r.results[0].success);
    REQUIRE(r.results[0].updated.at(0).paramErrors.size() == 1);
    CHECK(r.results[0].updated[0].paramErrors[0].path == "Device.LocalAgent.Subscription.1.InvalidParameter");
    CHECK_FALSE(r.results[1].success);
    CHECK(r.results[1].err == ErrorCode::kRequiredParameterFailed);
    REQUIRE(r.results[1].failures.size() == 1);
    CHECK(r.results[1].failures[0].affectedPath == "Device.LocalAgent.Subscription.2.");
    CHECK(r.results[1].failures[0].paramErrors.at(0).code == ErrorCode::kUnsupportedParameter);
    CHECK(sub(*f, 1, "NotifRetry") == "true");
}

TEST_CASE("Set on a wildcard path is atomic across all matched objects (TP-469 1.19-1.21, R-SET.2a)", "[datamodel][set]") {
    Fixture f;
    REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "a", true}}).results.at(0).success);
    REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "b", true}}).results.at(0).success);
    auto ok = setOne(*f, "Device.LocalAgent.Subscription.*.", {{"NotifRetry", "true", true}});
    REQUIRE_FALSE(ok.error);
    CHECK(ok.results.at(0).updated.size() == 2);
    // Make instance 2 fail through a unique-key clash while instance 1 would succeed.
    REQUIRE(setOne(*f, "Device.LocalAgent.Subscription.1.", {{"Enable", "true", true}}).results.at(0).success);
    auto partial = setOne(*f, "Device.LocalAgent.Subscription.*.", {{"Enable", "maybe", true}}, true);
    REQUIRE_FALSE(partial.error);
    CHECK_FALSE(partial.results.at(0).success);
    CHECK(partial.results[0].failures.size() == 2);
    auto strict = setOne(*f, "Device.LocalAgent.Subscription.*.", {{"InvalidParameter", "1", true}});
    REQUIRE(strict.error);
    CHECK(strict.error->paramErrors.size() == 2);
    CHECK(sub(*f, 1, "Enable") == "true");
    CHECK(sub(*f, 2, "Enable") == "false");
}

TEST_CASE("Set through a search expression and unique keys uses instance numbers (TP-469 1.18, 1.22, 1.23)", "[datamodel][set]") {
    Fixture f;
    REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "a", true}, {"NotifExpiration", "30", true}}).results.at(0).success);
    REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "b", true}}).results.at(0).success);
    auto byKey = setOne(*f, "Device.LocalAgent.Subscription.[ID==\"b\"&&Recipient==\"Device.LocalAgent.Controller.1\"].",
                        {{"NotifRetry", "true", true}});
    CHECK(byKey.results.at(0).updated.at(0).affectedPath == "Device.LocalAgent.Subscription.2.");
    auto bySearch = setOne(*f, "Device.LocalAgent.Subscription.[NotifExpiration>0].", {{"NotifRetry", "true", true}});
    REQUIRE(bySearch.results.at(0).updated.size() == 1);
    CHECK(bySearch.results[0].updated[0].affectedPath == "Device.LocalAgent.Subscription.1.");
    auto none = setOne(*f, "Device.LocalAgent.Subscription.[ID==\"InvalidValue\"].", {{"NotifRetry", "true", true}}, true);
    REQUIRE_FALSE(none.error);
    CHECK(none.results.at(0).success);
    CHECK(none.results[0].updated.empty());
}

TEST_CASE("Set of a non-functional unique key or a written Alias is refused (TP-469 1.96, 1.104)", "[datamodel][set]") {
    Fixture f;
    REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "add96", true}, {"Alias", "test-1-104", true}}).results.at(0).success);
    auto id = setOne(*f, "Device.LocalAgent.Subscription.1.", {{"ID", "changed", true}});
    REQUIRE(id.error);
    CHECK(id.error->paramErrors.at(0).code == ErrorCode::kParameterNotWritable);
    auto alias = setOne(*f, "Device.LocalAgent.Subscription.1.", {{"Alias", "other", true}});
    REQUIRE(alias.error);
    CHECK(sub(*f, 1, "ID") == "add96");
    CHECK(sub(*f, 1, "Alias") == "test-1-104");
    // The same value is not a change.
    CHECK_FALSE(setOne(*f, "Device.LocalAgent.Subscription.1.", {{"ID", "add96", true}}).error);
}

TEST_CASE("Set validates types, ranges, sizes and enumerations", "[datamodel][set]") {
    Fixture f;
    static const std::string kTooLong(65, 'x');
    struct Case {
        const char* param;
        const char* value;
        ErrorCode expect;
    };
    const Case cases[] = {
        {"USPNotifRetryMinimumWaitInterval", "0", ErrorCode::kInvalidValue},
        {"USPNotifRetryMinimumWaitInterval", "65536", ErrorCode::kInvalidValue},
        {"USPNotifRetryMinimumWaitInterval", "-1", ErrorCode::kInvalidType},
        {"USPNotifRetryMinimumWaitInterval", "12x", ErrorCode::kInvalidType},
        {"USPNotifRetryMinimumWaitInterval", "65535", ErrorCode::kOk},
        {"USPNotifRetryIntervalMultiplier", "999", ErrorCode::kInvalidValue},
        {"USPNotifRetryIntervalMultiplier", "1000", ErrorCode::kOk},
        {"PeriodicNotifTime", "2024-02-30", ErrorCode::kInvalidType},
        {"PeriodicNotifTime", "2024-02-03T04:05:06Z", ErrorCode::kOk},
        {"PeriodicNotifTime", "2024-02-03T04:05:06.123+01:00", ErrorCode::kOk},
        {"ProvisioningCode", kTooLong.c_str(), ErrorCode::kInvalidValue},
        {"ProvisioningCode", "TestValue52", ErrorCode::kOk},
        {"Enable", "TRUE", ErrorCode::kInvalidType},
        {"MTPNumberOfEntries", "3", ErrorCode::kParameterNotWritable},
        {"InheritedRole", "", ErrorCode::kParameterNotWritable},
        {"AssignedRole", "Device.LocalAgent.ControllerTrust.Role.9", ErrorCode::kInvalidValue},
        {"E2ESession.SessionMode", "Sometimes", ErrorCode::kInvalidValue},
        {"E2ESession.SessionMode", "Allow", ErrorCode::kOk},
    };
    for (const auto& c : cases) {
        CAPTURE(c.param, c.value);
        auto r = setOne(*f, "Device.LocalAgent.Controller.1.", {{c.param, c.value, true}});
        if (c.expect == ErrorCode::kOk) {
            REQUIRE_FALSE(r.error);
            CHECK(r.results.at(0).success);
        } else {
            REQUIRE(r.error);
            CHECK(r.error->code == ErrorCode::kInvalidArguments);
            CHECK(r.error->paramErrors.at(0).code == c.expect);
        }
    }
    CHECK(value(*f, "Device.LocalAgent.Controller.1.E2ESession.SessionMode") == "Allow");
}

TEST_CASE("The allow_partial / required matrix decides between Error, oper_failure and param_errs", "[datamodel][set]") {
    for (bool partial : {false, true})
        for (bool required : {false, true}) {
            CAPTURE(partial, required);
            Fixture f;
            REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "a", true}}).results.at(0).success);
            auto r = setOne(*f, "Device.LocalAgent.Subscription.1.", {{"NotifRetry", "true", true}, {"Enable", "bad", required}}, partial);
            if (!required) {
                REQUIRE_FALSE(r.error);
                CHECK(r.results.at(0).success);
                CHECK(r.results[0].updated.at(0).paramErrors.size() == 1);
                CHECK(sub(*f, 1, "NotifRetry") == "true");
            } else if (!partial) {
                REQUIRE(r.error);
                CHECK(r.error->paramErrors.at(0).path == "Device.LocalAgent.Subscription.1.Enable");
                CHECK(sub(*f, 1, "NotifRetry") == "false");
            } else {
                REQUIRE_FALSE(r.error);
                CHECK_FALSE(r.results.at(0).success);
                CHECK(r.results[0].err == ErrorCode::kRequiredParameterFailed);
                CHECK(sub(*f, 1, "NotifRetry") == "false");
            }
        }
}

TEST_CASE("Set that duplicates a functional unique key reports 7025 and changes nothing", "[datamodel][set]") {
    Fixture f;
    auto r = setOne(*f, "Device.LocalAgent.Controller.1.BootParameter.2.",
                    {{"ParameterName", "Device.LocalAgent.EndpointID", true}, {"Enable", "true", true}});
    REQUIRE(r.error);
    CHECK(r.error->paramErrors.at(0).code == ErrorCode::kDuplicateUniqueKey);
    CHECK(value(*f, "Device.LocalAgent.Controller.1.BootParameter.2.Enable") == "false");
    // Disabled rows do not take part in functional-key uniqueness.
    CHECK_FALSE(setOne(*f, "Device.LocalAgent.Controller.1.BootParameter.2.", {{"ParameterName", "Device.LocalAgent.EndpointID", true}}).error);
}

TEST_CASE("References written with key addressing read back with instance numbers (R-ARC.11)", "[datamodel][set]") {
    Fixture f;
    REQUIRE(f->addInstance("Device.LocalAgent.ControllerTrust.Role.", {{"Name", "Full"}, {"Enable", "true"}}));
    auto r = setOne(*f, "Device.LocalAgent.Controller.1.", {{"AssignedRole", "Device.LocalAgent.ControllerTrust.Role.[Name==\"Full\"]", true}});
    REQUIRE_FALSE(r.error);
    CHECK(value(*f, "Device.LocalAgent.Controller.1.AssignedRole") == "Device.LocalAgent.ControllerTrust.Role.1");
    // Deleting the target clears the strong reference.
    REQUIRE(f->deleteInstance("Device.LocalAgent.ControllerTrust.Role.1."));
    CHECK(value(*f, "Device.LocalAgent.Controller.1.AssignedRole") == "");
}

// ---- Delete ---------------------------------------------------------------------------

TEST_CASE("Delete removes instances and reports them (TP-469 1.24, 1.27, 1.34)", "[datamodel][delete]") {
    Fixture f;
    for (const char* id : {"a", "b", "c"})
        REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", id, true}}).results.at(0).success);
    auto one = delPaths(*f, {"Device.LocalAgent.Subscription.1."});
    REQUIRE_FALSE(one.error);
    CHECK(one.results.at(0).affectedPaths == std::vector<std::string>{"Device.LocalAgent.Subscription.1."});
    auto all = delPaths(*f, {"Device.LocalAgent.Subscription.*."});
    REQUIRE_FALSE(all.error);
    CHECK(all.results.at(0).affectedPaths.size() == 2);
    CHECK(subscriptionCount(*f) == 0);
}

TEST_CASE("Delete of a missing instance is an empty success (TP-469 1.25, 1.29, 1.90)", "[datamodel][delete]") {
    Fixture f;
    for (bool partial : {false, true}) {
        auto r = delPaths(*f, {"Device.LocalAgent.Subscription.77.", "Device.LocalAgent.Subscription.[Enable==false]."}, partial);
        REQUIRE_FALSE(r.error);
        REQUIRE(r.results.size() == 2);
        CHECK(r.results[0].success);
        CHECK(r.results[0].affectedPaths.empty());
        CHECK(r.results[1].success);
    }
}

TEST_CASE("Delete of an unsupported object fails per allow_partial (TP-469 1.26, 1.28, 1.30, 1.31)", "[datamodel][delete]") {
    Fixture f;
    REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "a", true}}).results.at(0).success);
    auto strict = delPaths(*f, {"Device.LocalAgent.Subscription.1.", "Device.LocalAgent.InvalidObject."});
    REQUIRE(strict.error);
    CHECK(strict.error->paramErrors.at(0).path == "Device.LocalAgent.InvalidObject.");
    CHECK(strict.error->paramErrors.at(0).code == ErrorCode::kInvalidPath);
    CHECK(subscriptionCount(*f) == 1);
    auto partial = delPaths(*f, {"Device.LocalAgent.Subscription.1.", "Device.LocalAgent.InvalidObject."}, true);
    REQUIRE_FALSE(partial.error);
    CHECK(partial.results.at(0).success);
    CHECK_FALSE(partial.results.at(1).success);
    CHECK(partial.results[1].err == ErrorCode::kInvalidPath);
    CHECK(subscriptionCount(*f) == 0);
}

TEST_CASE("Delete with unique keys and search expressions removes only the matches (TP-469 1.33, 1.35)", "[datamodel][delete]") {
    Fixture f;
    auto r = delPaths(*f, {"Device.LocalAgent.Controller.1.BootParameter.[Enable==true]."});
    REQUIRE_FALSE(r.error);
    CHECK(r.results.at(0).affectedPaths == std::vector<std::string>{"Device.LocalAgent.Controller.1.BootParameter.1."});
    auto k = delPaths(*f, {"Device.LocalAgent.Controller.[EndpointID==\"proto::controller-1\"&&Alias==\"ctrl1\"].BootParameter.2."});
    CHECK(k.results.at(0).affectedPaths == std::vector<std::string>{"Device.LocalAgent.Controller.1.BootParameter.2."});
    CHECK(value(*f, "Device.LocalAgent.Controller.1.BootParameterNumberOfEntries") == "0");
}

TEST_CASE("Delete of non-instances and read-only tables reports 7024", "[datamodel][delete]") {
    Fixture f;
    CHECK(delPaths(*f, {"Device.LocalAgent.Subscription."}).error->paramErrors.at(0).code == ErrorCode::kDeleteFailure);
    CHECK(delPaths(*f, {"Device.LocalAgent."}).error->paramErrors.at(0).code == ErrorCode::kDeleteFailure);
    REQUIRE(f->addInstance("Device.SoftwareModules.DeploymentUnit.", {{"UUID", "11111111-2222-3333-4444-555555555555"}}));
    CHECK(delPaths(*f, {"Device.SoftwareModules.DeploymentUnit.1."}).error->paramErrors.at(0).code == ErrorCode::kDeleteFailure);
    CHECK(value(*f, "Device.SoftwareModules.DeploymentUnitNumberOfEntries") == "1");
}

TEST_CASE("Deleting a Controller deletes its nested rows too", "[datamodel][delete]") {
    Fixture f;
    auto r = delPaths(*f, {"Device.LocalAgent.Controller.1."});
    REQUIRE_FALSE(r.error);
    CHECK(r.results.at(0).affectedPaths.size() == 3);
    CHECK(value(*f, "Device.LocalAgent.ControllerNumberOfEntries") == "0");
}

// ---- Get ------------------------------------------------------------------------------

TEST_CASE("Get of a parameter path resolves to its object with one relative name (TP-469 1.36-1.38)", "[datamodel][get]") {
    Fixture f;
    REQUIRE(f->setValue("Device.LocalAgent.EndpointID", "os::012345-berth"));
    GetRequest req;
    req.paths = {"Device.LocalAgent.EndpointID", "Device.LocalAgent.Controller.1.Enable", "Device.LocalAgent.InvalidParameter"};
    auto r = f->get(req, full());
    REQUIRE(r.results.size() == 3);
    REQUIRE(r.results[0].resolved.size() == 1);
    CHECK(r.results[0].resolved[0].path == "Device.LocalAgent.");
    REQUIRE(r.results[0].resolved[0].params.size() == 1);
    CHECK(r.results[0].resolved[0].params[0].name == "EndpointID");
    CHECK(r.results[0].resolved[0].params[0].value == "os::012345-berth");
    CHECK(r.results[1].resolved.at(0).path == "Device.LocalAgent.Controller.1.");
    CHECK(r.results[2].err == ErrorCode::kInvalidPath);  // TP-469 1.41, 1.42
}

TEST_CASE("Get of an object path returns the object and every sub-object (TP-469 1.39, 1.40, 1.45)", "[datamodel][get]") {
    Fixture f;
    auto r = getOne(*f, "Device.LocalAgent.");
    std::vector<std::string> paths;
    for (const auto& o : r.resolved) paths.push_back(o.path);
    CHECK(std::find(paths.begin(), paths.end(), "Device.LocalAgent.") != paths.end());
    CHECK(std::find(paths.begin(), paths.end(), "Device.LocalAgent.Controller.1.") != paths.end());
    CHECK(std::find(paths.begin(), paths.end(), "Device.LocalAgent.Controller.1.BootParameter.2.") != paths.end());
    CHECK(std::find(paths.begin(), paths.end(), "Device.LocalAgent.Controller.1.E2ESession.") != paths.end());
    for (const auto& o : r.resolved)
        for (const auto& p : o.params) CHECK(p.name.find('.') == std::string_view::npos);
    auto inst = getOne(*f, "Device.LocalAgent.Controller.1.BootParameter.1.");
    REQUIRE(inst.resolved.size() == 1);
    CHECK(findParam(inst.resolved[0], "ParameterName") == "Device.LocalAgent.EndpointID");
    CHECK(findParam(inst.resolved[0], "Alias") == "cpe-1");
}

TEST_CASE("Get with max_depth limits the object levels returned (TP-469 1.89)", "[datamodel][get]") {
    Fixture f;
    auto d1 = getOne(*f, "Device.LocalAgent.", 1);
    REQUIRE(d1.resolved.size() == 1);
    CHECK(d1.resolved[0].path == "Device.LocalAgent.");
    CHECK(findParam(d1.resolved[0], "ControllerNumberOfEntries") == "1");
    auto d2 = getOne(*f, "Device.LocalAgent.", 2);
    bool hasController = false, hasBoot = false;
    for (const auto& o : d2.resolved) {
        hasController |= o.path == "Device.LocalAgent.Controller.1.";
        hasBoot |= o.path.find("BootParameter") != std::string::npos;
    }
    CHECK(hasController);
    CHECK_FALSE(hasBoot);
    CHECK(getOne(*f, "Device.LocalAgent.", 0).resolved.size() > d2.resolved.size());
}

TEST_CASE("Get with search expressions returns only matches, or nothing without error (TP-469 1.44-1.51, 1.82, 1.86, 1.87)", "[datamodel][get]") {
    Fixture f;
    CHECK(getOne(*f, "Device.LocalAgent.Subscription.[Enable==true].").resolved.empty());
    CHECK(getOne(*f, "Device.LocalAgent.Subscription.[Enable==true].").err == ErrorCode::kOk);
    CHECK(getOne(*f, "Device.LocalAgent.Subscription.").resolved.empty());
    CHECK(getOne(*f, "Device.LocalAgent.Subscription.").err == ErrorCode::kOk);
    for (const char* exp : {"5", "10", "20"})
        REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", std::string("e") + exp, true}, {"NotifExpiration", exp, true},
                                                             {"Enable", std::string(exp) == "10" ? "true" : "false", true}})
                    .results.at(0).success);
    auto count = [&](const std::string& p) { return getOne(*f, p).resolved.size(); };
    CHECK(count("Device.LocalAgent.Subscription.*.Enable") == 3);
    CHECK(count("Device.LocalAgent.Subscription.[Enable==true].") == 1);
    CHECK(count("Device.LocalAgent.Subscription.[Enable!=true].") == 2);
    CHECK(count("Device.LocalAgent.Subscription.[NotifExpiration>10].") == 1);
    CHECK(count("Device.LocalAgent.Subscription.[NotifExpiration<10].") == 1);
    CHECK(count("Device.LocalAgent.Subscription.[NotifExpiration>=10].") == 2);
    CHECK(count("Device.LocalAgent.Subscription.[NotifExpiration<=10].") == 2);
    auto key = getOne(*f, "Device.LocalAgent.Subscription.[ID==\"e20\"&&Recipient==\"Device.LocalAgent.Controller.1\"].Enable");
    REQUIRE(key.resolved.size() == 1);
    CHECK(key.resolved[0].path == "Device.LocalAgent.Subscription.3.");  // TP-469 1.43
}

TEST_CASE("Get reads provided values through the provider", "[datamodel][get]") {
    struct UpTime : Provider {
        int calls = 0;
        Result<std::string> get(const ObjectView&, std::string_view p) override {
            ++calls;
            return std::string(p == "UpTime" ? "4242" : "?");
        }
    } up;
    Fixture f;
    REQUIRE(f->registerProvider("Device.LocalAgent.", &up, {"UpTime"}));
    CHECK(value(*f, "Device.LocalAgent.UpTime") == "4242");
    auto g = getOne(*f, "Device.LocalAgent.", 1);
    CHECK(findParam(g.resolved.at(0), "UpTime") == "4242");
    CHECK(up.calls == 2);
    CHECK(f->registerProvider("Device.LocalAgent.", &up, {"NoSuchParam"}).error().code == ErrorCode::kInvalidPath);
}

// ---- GetInstances ---------------------------------------------------------------------

TEST_CASE("GetInstances lists instances with unique keys, first level or all (TP-469 1.66-1.68, 1.70, 1.71, 1.83)", "[datamodel][getinstances]") {
    Fixture f;
    REQUIRE(addOne(*f, "Device.LocalAgent.Controller.1.MTP.", {{"Protocol", "MQTT", true}}).results.at(0).success);
    GetInstancesRequest req;
    req.paths = {"Device.LocalAgent.Controller."};
    req.firstLevelOnly = true;
    auto first = f->getInstances(req, full());
    REQUIRE(first.results.at(0).instances.size() == 1);
    CHECK(first.results[0].instances[0].path == "Device.LocalAgent.Controller.1.");
    bool hasEndpoint = false;
    for (const auto& [k, v] : first.results[0].instances[0].uniqueKeys) hasEndpoint |= (k == "EndpointID" && v == "proto::controller-1");
    CHECK(hasEndpoint);
    req.firstLevelOnly = false;
    auto all = f->getInstances(req, full());
    CHECK(all.results.at(0).instances.size() == 4);  // controller, MTP, 2 boot parameters
    req.paths = {"Device.LocalAgent.Controller.*.MTP.", "Device.LocalAgent.Controller.[Alias==\"ctrl1\"].BootParameter.",
                 "Device.LocalAgent.Controller.[Alias==\"none\"].BootParameter.", "Device.LocalAgent.Controller.1.Enable",
                 "Device.LocalAgent.Nope.", "Device.LocalAgent.Controller.5."};
    auto multi = f->getInstances(req, full());
    CHECK(multi.results.at(0).instances.at(0).path == "Device.LocalAgent.Controller.1.MTP.1.");
    CHECK(multi.results.at(1).instances.size() == 2);
    CHECK(multi.results.at(2).instances.empty());
    CHECK(multi.results.at(2).err == ErrorCode::kOk);
    CHECK(multi.results.at(3).err == ErrorCode::kInvalidPathSyntax);
    CHECK(multi.results.at(4).err == ErrorCode::kInvalidPath);
    CHECK(multi.results.at(5).err == ErrorCode::kObjectDoesNotExist);
}

// ---- GetSupportedDM -------------------------------------------------------------------

TEST_CASE("GetSupportedDM reports objects, params, commands, events and key sets (TP-469 1.72-1.77)", "[datamodel][gsdm]") {
    Fixture f;
    GsdmRequest req;
    req.paths = {"Device.LocalAgent."};
    req.firstLevelOnly = true;
    auto r = f->getSupportedDm(req, full());
    const auto& res = r.results.at(0);
    CHECK(res.err == ErrorCode::kOk);
    CHECK(res.dataModelInstUri == "urn:broadband-forum-org:tr-181-2-19-1-usp");
    REQUIRE(res.objects.size() > 3);
    CHECK(res.objects[0].path == "Device.LocalAgent.");
    CHECK_FALSE(res.objects[0].params.empty());
    CHECK(res.objects[0].uniqueKeySets.empty());
    for (std::size_t i = 1; i < res.objects.size(); ++i) {
        CHECK(res.objects[i].params.empty());
        CHECK(std::count(res.objects[i].path.begin(), res.objects[i].path.end(), '.') <= 4);
    }
    req.firstLevelOnly = false;
    auto deep = f->getSupportedDm(req, full());
    bool sawBoot = false;
    for (const auto& o : deep.results.at(0).objects)
        if (o.path == "Device.LocalAgent.Controller.{i}.BootParameter.{i}.") {
            sawBoot = true;
            CHECK(o.multiInstance);
            CHECK(o.access == ObjAccess::kAddDelete);
            CHECK(o.params.size() == 3);
            CHECK(o.uniqueKeySets.size() == 2);
        }
    CHECK(sawBoot);
    req.paths = {"Device.LocalAgent.UnsupportedObject."};
    CHECK(f->getSupportedDm(req, full()).results.at(0).err == ErrorCode::kInvalidPath);
}

TEST_CASE("GetSupportedDM lists the Subscription key sets and parameter metadata (TP-469 1.99)", "[datamodel][gsdm]") {
    Fixture f;
    GsdmRequest req;
    req.paths = {"Device.LocalAgent.Subscription.{i}."};
    req.firstLevelOnly = true;
    auto o = f->getSupportedDm(req, full()).results.at(0).objects.at(0);
    REQUIRE(o.uniqueKeySets.size() == 2);
    CHECK(o.uniqueKeySets[0] == std::vector<std::string_view>{"Alias"});
    CHECK(o.uniqueKeySets[1] == std::vector<std::string_view>{"Recipient", "ID"});
    for (const auto& p : o.params) {
        if (p.name == "Alias") CHECK(p.access == GsdmParamAccess::kReadWrite);  // writeOnceReadOnly
        if (p.name == "Recipient") CHECK(p.access == GsdmParamAccess::kReadOnly);
        if (p.name == "Enable") CHECK(p.type == ValueType::kBoolean);
        if (p.name == "NotifExpiration") CHECK(p.type == ValueType::kUnsignedInt);
    }
    req.paths = {"Device.LocalAgent.Subscription."};  // the trailing {i}. may be omitted
    CHECK(f->getSupportedDm(req, full()).results.at(0).objects.at(0).path == "Device.LocalAgent.Subscription.{i}.");
    req.paths = {"Device.LocalAgent.Subscription.3."};  // instantiated paths map to the supported one
    CHECK(f->getSupportedDm(req, full()).results.at(0).objects.at(0).path == "Device.LocalAgent.Subscription.{i}.");
}

TEST_CASE("GetSupportedDM on a command, event or parameter lists only that element (TP-469 1.97, 1.98, 1.105-1.107)", "[datamodel][gsdm]") {
    Fixture f;
    GsdmRequest req;
    req.paths = {"Device.SoftwareModules.InstallDU()", "Device.Boot!", "Device.LocalAgent.EndpointID", "Device.NoSuch()"};
    auto r = f->getSupportedDm(req, full());
    const auto& cmd = r.results.at(0).objects.at(0);
    REQUIRE(cmd.commands.size() == 1);
    CHECK(cmd.params.empty());
    CHECK(cmd.commands[0].name == "InstallDU()");
    CHECK(cmd.commands[0].type == CommandType::kAsync);
    CHECK(std::find(cmd.commands[0].inputArgs.begin(), cmd.commands[0].inputArgs.end(), "URL") != cmd.commands[0].inputArgs.end());
    const auto& ev = r.results.at(1).objects.at(0);
    REQUIRE(ev.events.size() == 1);
    CHECK(ev.events[0].name == "Boot!");
    CHECK(ev.events[0].args.size() == 5);
    const auto& par = r.results.at(2).objects.at(0);
    REQUIRE(par.params.size() == 1);
    CHECK(par.params[0].name == "EndpointID");
    CHECK(par.commands.empty());
    CHECK(r.results.at(3).err == ErrorCode::kInvalidPath);
    GsdmRequest whole;
    whole.paths = {"Device."};
    auto all = f->getSupportedDm(whole, full()).results.at(0);
    CHECK(all.objects.size() == f->schema().objectCount());
    bool duState = false;
    for (const auto& o : all.objects)
        for (const auto& e : o.events) duState |= e.name == "DUStateChange!" && e.args.size() > 5;
    CHECK(duState);
}
