// Bounds on subscriptions and notifications: the subscription caps, the index by path,
// the bookkeeping-counter policy and the byte bound on a controller's queue.

#include <catch2/catch.hpp>

#include "../../../agent/src/notify/subscription_index.h"
#include "notifier_fixture.h"

using namespace berth;
using namespace berth::agent;
using namespace berth::agent::test;
using namespace std::chrono_literals;

namespace {

NotifierOptions caps(std::size_t perController, std::size_t total) {
    NotifierOptions o;
    o.maxSubscriptionsPerController = perController;
    o.maxSubscriptions = total;
    return o;
}

std::size_t subscriptionRows(Harness& h) {
    auto rows = h.engine->resolveObjects("Device.LocalAgent.Subscription.");
    REQUIRE(rows);
    return rows->size();
}

std::vector<dm::ParamSetting> valueChangeOn(const std::string& refs) {
    return {{"Enable", "true", true}, {"NotifType", "ValueChange", true}, {"ReferenceList", refs, true}};
}

}  // namespace

TEST_CASE("The subscription index returns the rows filed under the changed path or its ancestors, nothing beside them",
          "[notify][limits]") {
    notify::SubscriptionIndex idx;
    idx.add("S.1.", {"Device."});
    idx.add("S.2.", {"Device.LocalAgent.Controller."});
    idx.add("S.3.", {"Device.DeviceInfo."});
    idx.add("S.4.", {""});  // follows references: a candidate everywhere
    idx.add("S.5.", {"Device.LocalAgent.Controller.1.", "Device.DeviceInfo."});

    auto c = idx.candidates("Device.LocalAgent.Controller.1.");
    CHECK(c == std::set<std::string>{"S.1.", "S.2.", "S.4.", "S.5."});
    CHECK(idx.candidates("Device.LocalAgent.Controller.2.") == std::set<std::string>{"S.1.", "S.2.", "S.4."});
    CHECK(idx.candidates("Device.DeviceInfo.") == std::set<std::string>{"S.1.", "S.3.", "S.4.", "S.5."});
    // "Device.LocalAgent.ControllerNumberOfEntries" lives in "Device.LocalAgent.": the
    // Controller table's subscriptions are not candidates for it.
    CHECK(idx.candidates("Device.LocalAgent.") == std::set<std::string>{"S.1.", "S.4."});
}

TEST_CASE("The subscription index forgets a removed row and refiles a row added again", "[notify][limits]") {
    notify::SubscriptionIndex idx;
    idx.add("S.1.", {"Device.DeviceInfo."});
    idx.add("S.2.", {"Device.DeviceInfo."});
    idx.remove("S.1.");
    CHECK(idx.candidates("Device.DeviceInfo.") == std::set<std::string>{"S.2."});
    idx.add("S.2.", {"Device.LocalAgent."});
    CHECK(idx.candidates("Device.DeviceInfo.").empty());
    CHECK(idx.candidates("Device.LocalAgent.MTP.1.") == std::set<std::string>{"S.2."});
    CHECK(idx.rows() == 1);
    idx.remove("S.2.");
    idx.remove("S.9.");  // unknown rows are ignored
    CHECK(idx.rows() == 0);
    CHECK(idx.candidates("Device.").empty());
}

TEST_CASE("An Add beyond the per-controller subscription cap is refused with 7005 and adds no row",
          "[notify][limits]") {
    Harness h({}, caps(3, 100));
    h.standardControllers();
    h.createNotifier();
    for (int i = 0; i < 3; ++i)
        h.subscribe(kCtrl1, "ValueChange", "Device.");
    auto refused = h.addSubscription(kCtrl1, valueChangeOn("Device."));
    REQUIRE(refused.error);
    CHECK(refused.error->code == ErrorCode::kResourcesExceeded);
    CHECK_THAT(refused.error->message, Catch::Contains("limit is 3"));
    CHECK(subscriptionRows(h) == 3);
    // Another controller still has room of its own.
    h.subscribe(kCtrl2, "ValueChange", "Device.");
    CHECK(subscriptionRows(h) == 4);
    // Deleting one of controller 1's rows makes room again.
    REQUIRE(h.engine->deleteInstance("Device.LocalAgent.Subscription.1."));
    h.pump();
    h.subscribe(kCtrl1, "ValueChange", "Device.");
    CHECK(subscriptionRows(h) == 4);
}

TEST_CASE("An Add beyond the total subscription cap is refused with 7005 for every controller", "[notify][limits]") {
    Harness h({}, caps(10, 4));
    h.standardControllers();
    h.createNotifier();
    for (int i = 0; i < 2; ++i)
        h.subscribe(kCtrl1, "ValueChange", "Device.DeviceInfo.");
    for (int i = 0; i < 2; ++i)
        h.subscribe(kCtrl2, "ValueChange", "Device.DeviceInfo.");
    for (const auto& ctrl : {kCtrl1, kCtrl2}) {
        auto refused = h.addSubscription(ctrl, valueChangeOn("Device.DeviceInfo."));
        REQUIRE(refused.error);
        CHECK(refused.error->code == ErrorCode::kResourcesExceeded);
        CHECK_THAT(refused.error->message, Catch::Contains("limit is 4"));
    }
    CHECK(subscriptionRows(h) == 4);
}

TEST_CASE("Rows of one Add message count against the cap before they are committed", "[notify][limits]") {
    Harness h({}, caps(2, 100));
    h.standardControllers();
    h.createNotifier();
    dm::AddRequest req;
    for (int i = 0; i < 3; ++i)
        req.objects.push_back(dm::CreateObject{"Device.LocalAgent.Subscription.", valueChangeOn("Device.")});
    h.notifier->setOriginator(kCtrl1);
    auto resp = h.engine->add(req, dm::Permissions::fullAccess());
    h.notifier->clearOriginator();
    h.pump();
    REQUIRE(resp.error);
    CHECK(resp.error->code == ErrorCode::kResourcesExceeded);
    CHECK(subscriptionRows(h) == 0);  // allow_partial=false: nothing of the message stays

    req.allowPartial = true;
    h.notifier->setOriginator(kCtrl1);
    resp = h.engine->add(req, dm::Permissions::fullAccess());
    h.notifier->clearOriginator();
    h.pump();
    REQUIRE_FALSE(resp.error);
    REQUIRE(resp.results.size() == 3);
    CHECK(resp.results[0].success);
    CHECK(resp.results[1].success);
    CHECK_FALSE(resp.results[2].success);
    CHECK(resp.results[2].err == ErrorCode::kResourcesExceeded);
    CHECK(subscriptionRows(h) == 2);
}

TEST_CASE("Adding Subscription rows does not notify earlier Device. subscriptions of the row counter",
          "[notify][limits]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    for (int i = 0; i < 20; ++i)
        h.subscribe(kCtrl1, "ValueChange", "Device.");
    CHECK(h.sent.empty());
    // A real change below Device. still reaches every one of them, once each.
    h.set(kCtrl1, "ProvisioningCode", "abc");
    CHECK(h.sentTo(kEp1).size() == 20);
}

TEST_CASE("A subscription naming a NumberOfEntries counter itself is notified when it changes", "[notify][limits]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl2, "ValueChange", "Device.LocalAgent.SubscriptionNumberOfEntries");
    h.sent.clear();
    h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.");
    auto sent = h.sentTo(kEp2);
    REQUIRE(sent.size() == 1);
    CHECK(sent[0].notify().value_change().param_path() == "Device.LocalAgent.SubscriptionNumberOfEntries");
    CHECK(sent[0].notify().value_change().param_value() == "2");
    CHECK(h.sentTo(kEp1).empty());
}

TEST_CASE("The queue to an unreachable controller is bounded in bytes: the oldest plain notifications go first",
          "[notify][limits]") {
    NotifierOptions o;
    o.maxQueuedPerController = 1000;
    o.maxQueuedBytesPerController = 500;
    Harness h({}, o);
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.ProvisioningCode");
    h.unreachable.insert(kEp1);
    const std::string big(40, 'x');  // ProvisioningCode holds up to 64 characters
    for (int i = 0; i < 20; ++i)
        REQUIRE_FALSE(h.set(kCtrl1, "ProvisioningCode", big + std::to_string(i)).error);
    CHECK(h.sent.empty());
    h.unreachable.clear();
    h.notifier->onControllerReachable(kEp1);
    auto sent = h.sentTo(kEp1);
    // A Notify here is about 150 bytes: a few fit in 500; the newest are those kept, in order.
    REQUIRE(sent.size() >= 2);
    REQUIRE(sent.size() < 20);
    std::size_t bytes = 0;
    for (const auto& s : sent)
        bytes += s.msg.ByteSizeLong();
    CHECK(bytes <= 500);
    CHECK(sent.back().notify().value_change().param_value() == big + "19");
    for (std::size_t i = 1; i < sent.size(); ++i)
        CHECK(sent[i].notify().value_change().param_value() == big + std::to_string(20 - sent.size() + i));
}

TEST_CASE("Queued notifications go out on the queue's retry timer once sending works again", "[notify][limits]") {
    NotifierOptions o;
    o.queueRetryInterval = 2s;
    Harness h({}, o);
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.ProvisioningCode");
    h.unreachable.insert(kEp1);  // an MTP that is up but refuses (a full buffer)
    h.set(kCtrl1, "ProvisioningCode", "one");
    h.set(kCtrl1, "ProvisioningCode", "two");
    CHECK(h.sent.empty());
    h.unreachable.clear();
    h.advance(1s);
    CHECK(h.sent.empty());
    h.advance(1500ms);
    auto sent = h.sentTo(kEp1);
    REQUIRE(sent.size() == 2);
    CHECK(sent[0].notify().value_change().param_value() == "one");
    CHECK(sent[1].notify().value_change().param_value() == "two");
}

TEST_CASE("A ValueChange subscription searching on a secured parameter is no password oracle", "[notify][limits]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    auto client = h.engine->addInstance("Device.MQTT.Client.", {{"Name", "uplink"}, {"Password", "s3cret"}});
    REQUIRE(client);
    std::string guessed = h.subscribe(kCtrl1, "ValueChange", "Device.MQTT.Client.[Password==\"s3cret\"].Username");
    std::string byName = h.subscribe(kCtrl1, "ValueChange", "Device.MQTT.Client.[Name==\"uplink\"].Username");
    h.sent.clear();

    auto set = h.set(*client, "Username", "operator");
    INFO((set.error ? set.error->message : std::string()));
    REQUIRE_FALSE(set.error);
    std::set<std::string> notified;
    for (const auto& s : h.sentTo(kEp1))
        if (s.notify().has_value_change()) notified.insert(s.notify().subscription_id());
    // The control subscription fires: the change did happen and matching works.
    CHECK(notified.count(h.value(byName + "ID")) == 1);
    // The right guess does not: the secured value compares as "" in a ReferenceList.
    CHECK(notified.count(h.value(guessed + "ID")) == 0);
}
