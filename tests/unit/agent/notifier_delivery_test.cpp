// Delivery: send_resp and retries, NotifyResp, NotifExpiration, queueing while a
// controller is unreachable, the queue bound, and persistence across restarts.

#include <catch2/catch.hpp>

#include "notifier_fixture.h"

using namespace berth;
using namespace berth::agent;
using namespace berth::agent::test;
using namespace std::chrono_literals;

namespace {

const std::string kCode = "Device.LocalAgent.Controller.1.ProvisioningCode";

std::vector<std::string> values(const std::vector<Sent>& sent) {
    std::vector<std::string> out;
    for (const auto& s : sent) out.push_back(s.notify().value_change().param_value());
    return out;
}

}  // namespace

TEST_CASE("NotifRetry notifications ask for a response and are retried on the TR-369 schedule (TP-469 1.54)", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", kCode, {{"NotifRetry", "true", true}});
    h.set(kCtrl1, "ProvisioningCode", "x");
    h.advance(200s, 100ms);
    auto sent = h.sentTo(kEp1);
    // m=5 s, k=2.0: retry n waits [5*2^(n-1), 5*2^n]: sends at 0, +[5,10], +[10,20], +[20,40], +[40,80] ...
    REQUIRE(sent.size() >= 4);
    for (const auto& s : sent) {
        CHECK(s.notify().send_resp());
        CHECK(s.msgId() == sent[0].msgId());
    }
    for (std::size_t n = 1; n < 4; ++n) {
        double gap = std::chrono::duration<double>(sent[n].at - sent[n - 1].at).count();
        double lo = 5.0 * (1u << (n - 1)), hi = 5.0 * (1u << n);
        CAPTURE(n, gap);
        CHECK(gap >= lo - 0.01);
        CHECK(gap <= hi + 0.11);  // the fake clock moves in 100 ms steps
    }
}

TEST_CASE("The controller's USPNotifRetry parameters shape the retry schedule", "[notify]") {
    Harness h;
    h.standardControllers();
    REQUIRE(h.engine->setValue(kCtrl1 + "USPNotifRetryMinimumWaitInterval", "30"));
    REQUIRE(h.engine->setValue(kCtrl1 + "USPNotifRetryIntervalMultiplier", "1000"));
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", kCode, {{"NotifRetry", "true", true}});
    h.set(kCtrl1, "ProvisioningCode", "x");
    h.advance(95s, 1s);
    auto sent = h.sentTo(kEp1);
    REQUIRE(sent.size() == 4);  // k=1.0: exactly every 30 s
    for (std::size_t n = 1; n < sent.size(); ++n)
        CHECK(std::chrono::duration<double>(sent[n].at - sent[n - 1].at).count() == Approx(30.0).margin(1.0));
}

TEST_CASE("A NotifyResp stops the retries of that notification only", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", kCode, {{"NotifRetry", "true", true}});
    h.set(kCtrl1, "ProvisioningCode", "a");
    h.set(kCtrl1, "ProvisioningCode", "b");
    REQUIRE(h.sent.size() == 2);
    std::string first = h.sent[0].msgId();
    CHECK(first != h.sent[1].msgId());
    // A response from the wrong controller does not count.
    h.notifier->onNotifyResp(kEp2, first);
    h.notifier->onNotifyResp(kEp1, first);
    h.sent.clear();
    h.advance(60s, 1s);
    CHECK_FALSE(h.sent.empty());
    for (const auto& s : h.sent) CHECK(s.notify().value_change().param_value() == "b");
    h.notifier->onNotifyResp(kEp1, h.sent[0].msgId());
    h.sent.clear();
    h.advance(300s, 1s);
    CHECK(h.sent.empty());
}

TEST_CASE("Retries stop once NotifExpiration has passed (TP-469 1.56)", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", kCode, {{"NotifRetry", "true", true}, {"NotifExpiration", "20", true}});
    h.set(kCtrl1, "ProvisioningCode", "x");
    Clock::MonoTime t0 = h.clock.now();
    h.advance(120s, 500ms);
    auto sent = h.sentTo(kEp1);
    REQUIRE(sent.size() >= 2);  // the first retry comes 5-10 s later
    for (const auto& s : sent) CHECK(std::chrono::duration<double>(s.at - t0).count() <= 20.0);
}

TEST_CASE("Notifications without NotifRetry are sent once with send_resp false", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", kCode);
    h.set(kCtrl1, "ProvisioningCode", "x");
    h.advance(120s, 1s);
    REQUIRE(h.sent.size() == 1);
    CHECK_FALSE(h.sent[0].notify().send_resp());
}

TEST_CASE("Notifications raised while a controller is unreachable are delivered in order when it comes back", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", kCode);
    h.subscribe(kCtrl2, "ValueChange", kCode);
    h.unreachable.insert(kEp1);
    for (const char* v : {"1", "2", "3"}) h.set(kCtrl1, "ProvisioningCode", v);
    CHECK(h.sentTo(kEp1).empty());
    CHECK(values(h.sentTo(kEp2)) == std::vector<std::string>{"1", "2", "3"});  // others unaffected
    h.unreachable.clear();
    h.notifier->onControllerReachable(kEp1);
    CHECK(values(h.sentTo(kEp1)) == std::vector<std::string>{"1", "2", "3"});
    // Nothing is sent twice.
    h.notifier->onControllerReachable(kEp1);
    CHECK(h.sentTo(kEp1).size() == 3);
}

TEST_CASE("A new notification does not overtake queued ones", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", kCode);
    h.unreachable.insert(kEp1);
    h.set(kCtrl1, "ProvisioningCode", "old");
    h.unreachable.clear();  // back, but the agent has not said so yet
    h.set(kCtrl1, "ProvisioningCode", "new");
    CHECK(values(h.sentTo(kEp1)) == std::vector<std::string>{"old", "new"});
}

TEST_CASE("A full queue drops the oldest notification that is not retried first", "[notify]") {
    NotifierOptions o;
    o.maxQueuedPerController = 3;
    Harness h({}, o);
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", kCode);
    h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.ControllerCode", {{"NotifRetry", "true", true}});
    h.unreachable.insert(kEp1);
    h.set(kCtrl1, "ControllerCode", "r1");       // retried
    for (const char* v : {"p1", "p2", "p3", "p4"}) h.set(kCtrl1, "ProvisioningCode", v);
    h.unreachable.clear();
    h.notifier->onControllerReachable(kEp1);
    // p1 and p2 went (oldest non-retried); r1, older than both, was kept.
    CHECK(values(h.sentTo(kEp1)) == std::vector<std::string>{"r1", "p3", "p4"});

    // With only retried notifications queued, the oldest of them goes.
    h.sent.clear();
    h.unreachable.insert(kEp1);
    for (const char* v : {"r2", "r3", "r4", "r5"}) h.set(kCtrl1, "ControllerCode", v);
    h.unreachable.clear();
    h.notifier->onControllerReachable(kEp1);
    CHECK(values(h.sentTo(kEp1)) == std::vector<std::string>{"r3", "r4", "r5"});
}

TEST_CASE("Retried notifications of persistent subscriptions survive a restart", "[notify]") {
    testing::TempDir dir("berth-notify");
    Harness h(dir.path());
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", kCode, {{"NotifRetry", "true", true}, {"Persistent", "true", true}});
    h.subscribe(kCtrl1, "ValueChange", "Device.LocalAgent.Controller.1.ControllerCode",
                {{"NotifRetry", "true", true}, {"Persistent", "true", true}});
    h.unreachable.insert(kEp1);
    h.set(kCtrl1, "ProvisioningCode", "queued");
    h.unreachable.clear();
    h.set(kCtrl1, "ControllerCode", "sent-not-acked");
    REQUIRE(h.sentTo(kEp1).size() == 2);
    std::string queuedId = h.sent[0].msgId();
    std::string unackedId = h.sent[1].msgId();

    h.restart();
    auto again = h.sentTo(kEp1);
    REQUIRE(again.size() == 2);
    CHECK(again[0].msgId() == queuedId);
    CHECK(again[0].notify().value_change().param_value() == "queued");
    CHECK(again[1].msgId() == unackedId);
    CHECK(again[0].notify().send_resp());

    // New msg_ids never repeat those of an earlier run.
    h.set(kCtrl1, "ProvisioningCode", "fresh");
    std::string fresh = h.sentTo(kEp1).back().msgId();
    CHECK(fresh != queuedId);
    CHECK(fresh != unackedId);

    // Acknowledged ones are gone for good; the unacknowledged one comes back once more.
    h.notifier->onNotifyResp(kEp1, queuedId);
    h.notifier->onNotifyResp(kEp1, fresh);
    h.restart();
    auto third = h.sentTo(kEp1);
    REQUIRE(third.size() == 1);
    CHECK(third[0].msgId() == unackedId);
}

TEST_CASE("Restored notifications whose NotifExpiration passed during the restart are dropped", "[notify]") {
    testing::TempDir dir("berth-notify");
    Harness h(dir.path());
    h.standardControllers();
    h.createNotifier();
    h.subscribe(kCtrl1, "ValueChange", kCode,
                {{"NotifRetry", "true", true}, {"Persistent", "true", true}, {"NotifExpiration", "30", true}});
    h.unreachable.insert(kEp1);
    h.set(kCtrl1, "ProvisioningCode", "x");
    h.closeNotifier();
    h.clock.advance(31s);
    h.unreachable.clear();
    h.restart();
    CHECK(h.sent.empty());
}

TEST_CASE("Deleting a subscription drops its pending notifications", "[notify]") {
    Harness h;
    h.standardControllers();
    h.createNotifier();
    std::string row = h.subscribe(kCtrl1, "ValueChange", kCode, {{"NotifRetry", "true", true}});
    h.set(kCtrl1, "ProvisioningCode", "x");
    REQUIRE(h.sent.size() == 1);
    REQUIRE(h.engine->deleteInstance(row));
    h.pump();
    h.sent.clear();
    h.advance(120s, 1s);
    CHECK(h.sent.empty());
}
