// Device.LocalAgent.Subscription.{i}. table rules enforced by the Notifier.

#include <catch2/catch.hpp>

#include "notifier_fixture.h"

using namespace berth;
using namespace berth::agent;
using namespace berth::agent::test;
using namespace std::chrono_literals;

TEST_CASE("A Subscription added by a controller gets it as Recipient, a generated ID and a CreationDate", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    h.clock.setWall(std::chrono::system_clock::time_point(std::chrono::seconds(1735732800)));  // 2025-01-01T12:00:00Z
    std::string row = h.subscribe(kCtrl2, "ValueChange", "Device.LocalAgent.Controller.2.ProvisioningCode");
    CHECK(h.value(row + "Recipient") == "Device.LocalAgent.Controller.2");
    CHECK_FALSE(h.value(row + "ID").empty());
    CHECK(h.value(row + "CreationDate") == "2025-01-01T12:00:00Z");

    // Two subscriptions without ID (TP-469 1.81): different IDs, same Recipient.
    std::string other = h.subscribe(kCtrl2, "ValueChange", "Device.LocalAgent.Controller.2.ProvisioningCode");
    CHECK(h.value(other + "ID") != h.value(row + "ID"));
    CHECK(h.value(other + "Recipient") == h.value(row + "Recipient"));
}

TEST_CASE("A Subscription added without any controller behind it is refused", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    dm::AddRequest req;
    req.objects.push_back(dm::CreateObject{"Device.LocalAgent.Subscription.", {{"NotifType", "ValueChange", true}}});
    auto resp = h.engine->add(req, dm::Permissions::fullAccess());
    REQUIRE(resp.error);
    CHECK(h.engine->resolveObjects("Device.LocalAgent.Subscription.*.")->empty());
}

TEST_CASE("Subscription IDs are unique per recipient and may repeat across recipients", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    std::string ref = "Device.LocalAgent.Controller.1.ProvisioningCode";
    h.subscribe(kCtrl1, "ValueChange", ref, {{"ID", "mine", true}});
    auto dup = h.addSubscription(kCtrl1, {{"ID", "mine", true}, {"NotifType", "ValueChange", true}, {"ReferenceList", ref, true}});
    REQUIRE(dup.error);
    REQUIRE(dup.error->paramErrors.size() == 1);
    CHECK(dup.error->paramErrors[0].code == ErrorCode::kDuplicateUniqueKey);
    // The same ID for another controller is fine.
    std::string theirs = h.subscribe(kCtrl2, "ValueChange", ref, {{"ID", "mine", true}});
    CHECK(h.value(theirs + "ID") == "mine");
    // A generated ID steps around one the controller already chose.
    auto rows = h.engine->resolveObjects("Device.LocalAgent.Subscription.*.");
    REQUIRE(rows);
    std::string lastRow = rows->back();
    std::uint32_t nextInstance = static_cast<std::uint32_t>(std::stoul(lastRow.substr(lastRow.rfind('.', lastRow.size() - 2) + 1))) + 1;
    h.subscribe(kCtrl1, "ValueChange", ref, {{"ID", "cpe-sub-" + std::to_string(nextInstance + 1), true}});
    std::string gen = h.subscribe(kCtrl1, "ValueChange", ref);
    CHECK(h.value(gen + "ID") == "cpe-sub-" + std::to_string(nextInstance + 1) + "-2");
}

TEST_CASE("A non-empty ReferenceList cannot be changed, an empty one can be set once", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    std::string row = h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.ProvisioningCode");
    auto r = h.set(row, "ReferenceList", "Device.LocalAgent.Controller.1.Enable");
    REQUIRE(r.error);
    CHECK(h.value(row + "ReferenceList") == "Device.LocalAgent.Controller.1.ProvisioningCode");
    // Writing the same value again is no change and is accepted.
    CHECK_FALSE(h.set(row, "ReferenceList", "Device.LocalAgent.Controller.1.ProvisioningCode").error);

    auto empty = h.addSubscription(kCtrl1, {{"NotifType", "ValueChange", true}});
    REQUIRE_FALSE(empty.error);
    std::string row2 = empty.results.at(0).instantiatedPath;
    CHECK_FALSE(h.set(row2, "ReferenceList", "Device.LocalAgent.Controller.1.Enable").error);
    CHECK(h.set(row2, "ReferenceList", "Device.LocalAgent.Controller.1.ProvisioningCode").error);
}

TEST_CASE("OnBoardRequest and unknown paths cannot be subscribed to", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    auto onboard = h.addSubscription(kCtrl1, {{"NotifType", "OnBoardRequest", true}, {"ReferenceList", "Device.", true}});
    CHECK(onboard.error);
    auto bogus = h.addSubscription(kCtrl1, {{"NotifType", "ValueChange", true}, {"ReferenceList", "Device.NoSuchThing.X", true}});
    CHECK(bogus.error);
    auto badSyntax = h.addSubscription(kCtrl1, {{"NotifType", "ValueChange", true}, {"ReferenceList", "Device..X", true}});
    CHECK(badSyntax.error);
    // ObjectCreation needs a multi-instance object.
    auto single = h.addSubscription(kCtrl1, {{"NotifType", "ObjectCreation", true}, {"ReferenceList", "Device.DeviceInfo.", true}});
    CHECK(single.error);
    // A Set that would make the pair inconsistent is refused as well.
    std::string row = h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.Enable");
    CHECK(h.set(row, "NotifType", "ObjectCreation").error);
    CHECK(h.value(row + "NotifType") == "ValueChange");
    CHECK(h.engine->resolveObjects("Device.LocalAgent.Subscription.*.")->size() == 1);
}

TEST_CASE("TimeToLive removes the subscription when it expires", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    std::string row = h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.ProvisioningCode",
                                  {{"TimeToLive", "20", true}});
    h.advance(19s, 1s);
    CHECK(h.engine->resolveObjects(row)->size() == 1);
    h.set(kCtrl1, "ProvisioningCode", "before");
    CHECK(h.sentTo(kEp1).size() == 1);
    h.advance(2s, 1s);
    CHECK(h.engine->resolveObjects("Device.LocalAgent.Subscription.*.")->empty());
    h.set(kCtrl1, "ProvisioningCode", "after");
    CHECK(h.sentTo(kEp1).size() == 1);
}

TEST_CASE("TimeToLive counts from CreationDate across a restart", "[notify]") {
    testing::TempDir dir("berth-notify");
    Harness h(dir.path());
    h.standardControllers();
    h.createNotifier();
    std::string row = h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.Enable",
                                  {{"TimeToLive", "30", true}, {"Persistent", "true", true}});
    h.advance(20s, 1s);
    h.restart();
    CHECK(h.engine->resolveObjects(row)->size() == 1);
    h.advance(11s, 1s);
    CHECK(h.engine->resolveObjects("Device.LocalAgent.Subscription.*.")->empty());
}

TEST_CASE("Non-persistent subscriptions are removed when the agent restarts", "[notify]") {
    testing::TempDir dir("berth-notify");
    Harness h(dir.path());
    h.standardControllers();
    h.createNotifier();
    std::string keep = h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.Enable", {{"Persistent", "true", true}});
    std::string gone = h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.ProvisioningCode");
    h.restart();
    CHECK(h.engine->resolveObjects(keep)->size() == 1);
    auto rows = h.engine->resolveObjects("Device.LocalAgent.Subscription.*.");
    REQUIRE(rows);
    CHECK(*rows == std::vector<std::string>{keep});
    CHECK(gone != keep);
    // The persistent one still works.
    h.set(kCtrl1, "Enable", "false");
    h.set(kCtrl1, "Enable", "true");
    CHECK(h.sentTo(kEp1).size() == 1);
}

TEST_CASE("Deleting a controller removes the subscriptions it receives", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl2, "ValueChange", "Device.LocalAgent.Controller.1.ProvisioningCode");
    std::string mine = h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.ProvisioningCode");
    REQUIRE(h.engine->deleteInstance(kCtrl2));
    h.pump();
    auto rows = h.engine->resolveObjects("Device.LocalAgent.Subscription.*.");
    REQUIRE(rows);
    CHECK(*rows == std::vector<std::string>{mine});
}

TEST_CASE("A disabled subscription sends nothing", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    std::string row = h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.ProvisioningCode",
                                  {{"Enable", "false", true}});
    h.set(kCtrl1, "ProvisioningCode", "one");
    CHECK(h.sent.empty());
    h.set(row, "Enable", "true");
    h.set(kCtrl1, "ProvisioningCode", "two");
    CHECK(h.sent.size() == 1);
}
