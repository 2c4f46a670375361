// Delivery guarantees end to end: notifications raised while the broker is down,
// retried notifications of persistent subscriptions across kill -9, which
// subscriptions survive a restart, and the notify permission.
#include <signal.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "notify_support.h"

using namespace berth::notifytest;
using berth::agenttest::setConfigValue;
using namespace std::chrono_literals;

namespace {

const std::vector<std::string> kWatchSession{"--id", "self::berthctl-watch"};
const std::string kWatchTopic = "usp/controller/berthctl-watch";

// A role that may read and write everything but is never notified, and a controller
// holding only that role.
const std::string kNoNotifyController = R"(
Device.LocalAgent.ControllerTrust.Role.3.Alias "cpe-no-notify"
Device.LocalAgent.ControllerTrust.Role.3.Name "No notifications"
Device.LocalAgent.ControllerTrust.Role.3.Enable "true"
Device.LocalAgent.ControllerTrust.Role.3.Permission.1.Enable "true"
Device.LocalAgent.ControllerTrust.Role.3.Permission.1.Order "1"
Device.LocalAgent.ControllerTrust.Role.3.Permission.1.Targets "Device."
Device.LocalAgent.ControllerTrust.Role.3.Permission.1.Param "rw--"
Device.LocalAgent.ControllerTrust.Role.3.Permission.1.Obj "rw--"
Device.LocalAgent.ControllerTrust.Role.3.Permission.1.InstantiatedObj "rw--"
Device.LocalAgent.ControllerTrust.Role.3.Permission.1.CommandEvent "r-x-"
Device.LocalAgent.Controller.4.Alias "cpe-no-notify"
Device.LocalAgent.Controller.4.EndpointID "proto::silent"
Device.LocalAgent.Controller.4.Enable "true"
Device.LocalAgent.Controller.4.AssignedRole "Device.LocalAgent.ControllerTrust.Role.3."
Device.LocalAgent.Controller.4.OnBoardingComplete "true"
Device.LocalAgent.Controller.4.MTP.1.Alias "cpe-no-notify-mqtt"
Device.LocalAgent.Controller.4.MTP.1.Enable "true"
Device.LocalAgent.Controller.4.MTP.1.Protocol "MQTT"
Device.LocalAgent.Controller.4.MTP.1.MQTT.AgentMTPReference "Device.LocalAgent.MTP.1."
Device.LocalAgent.Controller.4.MTP.1.MQTT.Topic "usp/controller/silent"
)";

std::vector<std::string> instances(AgentFixture& f) {
    auto r = f.ctl({"instances", "Device.LocalAgent.Subscription."});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    std::vector<std::string> out;
    for (const auto& i : r.json["get_instances_resp"]["req_path_results"][0]["curr_insts"])
        out.push_back(i["instantiated_obj_path"]);
    return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

std::size_t countMsgId(const std::vector<Received>& v, const std::string& msgId) {
    return static_cast<std::size_t>(
        std::count_if(v.begin(), v.end(), [&](const Received& r) { return r.msgId == msgId; }));
}

}  // namespace

TEST_CASE("Notifications raised while the broker is down arrive after it returns, in order, once each",
          "[notify][delivery]") {
    // What changes while no controller can reach berthd is berthd's own connection: the
    // Status of its MQTT client and of its MTP. Controller 2 subscribes to both.
    AgentFixture f([](std::string c) {
        c = setConfigValue(c, "Device.LocalAgent.MTP.1.MQTT.PublishQoS", "1");
        return c;
    });
    // The broker keeps the listener's session (and what arrives for it) across its
    // restart, so the listener's own reconnect cannot race berthd's.
    int port = f.broker->port();
    auto store = f.tmp / "broker-store";
    std::filesystem::create_directories(store);
    ::chmod(store.c_str(), 0777);
    f.broker.reset();
    f.broker = std::make_unique<berth::testing::Mosquitto>(
        f.tmp / "broker-persistent", port,
        "persistence true\npersistence_location " + store.string() + "/\nqueue_qos0_messages true\n");
    REQUIRE(f.waitAnswering(20s));

    auto sub = addSubscription(f, {"ID=status", "Enable=true", "NotifType=ValueChange",
                                   "ReferenceList=Device.MQTT.Client.1.Status,Device.LocalAgent.MTP.1.Status"},
                               kWatchSession);
    RawListener listener(f, kWatchTopic, {"notify-down-listener"});
    REQUIRE(listener.notifications().empty());

    f.broker->stop();
    // berthd notices the lost connection (its client reports the change in its log).
    bool noticed = berth::testing::waitUntil(
        [&] { return f.agent->log().find("notification(s) queued") != std::string::npos; }, 15s);
    f.broker->start();
    INFO(f.agent->log());
    CHECK(noticed);

    // Both parameters go away from their "up" value and come back to it.
    auto settled = [&] {
        std::map<std::string, std::string> last;
        for (const auto& r : listener.notifications())
            last[r.notify.value_change().param_path()] = r.notify.value_change().param_value();
        return last["Device.MQTT.Client.1.Status"] == "Connected" && last["Device.LocalAgent.MTP.1.Status"] == "Up";
    };
    bool back = berth::testing::waitUntil(settled, 30s);
    auto got = listener.notifications();
    std::string seen;
    for (const auto& r : got) seen += describe(r) + "\n";
    INFO("received:\n" << seen);
    INFO(listener.output());
    REQUIRE(back);
    std::set<std::string> ids;
    long long previous = -1;
    std::map<std::string, int> downs;
    for (const auto& r : got) {
        INFO(describe(r));
        CHECK(r.notify.subscription_id() == "status");
        CHECK(ids.insert(r.msgId).second);  // no duplicates
        auto seq = notifySequence(r.msgId);
        CHECK(seq > previous);  // in the order they were raised
        previous = seq;
        const auto& v = r.notify.value_change().param_value();
        if (v != "Connected" && v != "Up") ++downs[r.notify.value_change().param_path()];
    }
    // The changes to a "down" state were raised while the broker was away.
    CHECK(downs["Device.MQTT.Client.1.Status"] >= 1);
    CHECK(downs["Device.LocalAgent.MTP.1.Status"] >= 1);
}

TEST_CASE("A retried notification of a persistent subscription survives kill -9 and stops at NotifyResp",
          "[notify][delivery]") {
    AgentFixture f([](std::string c) {
        return setConfigValue(c, "Device.LocalAgent.Controller.2.USPNotifRetryMinimumWaitInterval", "1");
    });
    addSubscription(f, {"ID=kept", "Enable=true", "Persistent=true", "NotifRetry=true", "NotifType=ValueChange",
                        "ReferenceList=Device.DeviceInfo.FriendlyName"},
                    kWatchSession);
    // Controller 2 listens but does not answer.
    RawListener listener(f, kWatchTopic);
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=survivor"}).exitCode == 0);
    REQUIRE(listener.waitCount(1));
    auto first = listener.notifications().front();
    INFO(describe(first));
    CHECK(first.notify.send_resp());
    CHECK(first.notify.value_change().param_value() == "survivor");
    const std::string msgId = first.msgId;

    auto killed = f.agent->kill9();
    CHECK(killed.signal == SIGKILL);
    auto before = listener.notifications().size();
    f.agent->start();
    bool resent = listener.waitCount(before + 1, 15s);
    INFO(listener.output());
    INFO(f.agent->log());
    REQUIRE(resent);
    auto after = listener.notifications();
    CHECK(after[before].msgId == msgId);
    CHECK(after[before].notify.value_change().param_value() == "survivor");
    CHECK(after[before].notify.subscription_id() == "kept");

    sendNotifyResp(f, "self::berthctl-watch", msgId, "kept");
    // Retries after the restart wait [1, 2] s, then [2, 4] s: past 5 s without one
    // more than what may have crossed the NotifyResp, they have stopped.
    auto answered = countMsgId(listener.notifications(), msgId);
    CHECK(!berth::testing::waitUntil([&] { return countMsgId(listener.notifications(), msgId) > answered + 1; }, 6s));

    // Nor does it come back after another restart: a newer change arrives first.
    CHECK(f.agent->stop().success());
    auto total = listener.notifications().size();
    auto withId = countMsgId(listener.notifications(), msgId);
    f.agent->start();
    REQUIRE(f.waitAnswering());
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=newer"}).exitCode == 0);
    REQUIRE(listener.waitCount(total + 1));
    auto last = listener.notifications();
    CHECK(last[total].notify.value_change().param_value() == "newer");
    CHECK(countMsgId(last, msgId) == withId);
}

TEST_CASE("After a restart persistent subscriptions remain and deliver, non-persistent ones are gone",
          "[notify][delivery]") {
    AgentFixture f;
    auto kept = addSubscription(f, {"ID=persistent", "Enable=true", "Persistent=true", "NotifType=ValueChange",
                                    "ReferenceList=Device.DeviceInfo.FriendlyName"},
                                kWatchSession);
    auto gone = addSubscription(f, {"ID=transient", "Enable=true", "Persistent=false", "NotifType=ValueChange",
                                    "ReferenceList=Device.DeviceInfo.FriendlyName"},
                                kWatchSession);
    auto both = instances(f);
    REQUIRE(contains(both, kept));
    REQUIRE(contains(both, gone));

    SECTION("after a clean stop") { CHECK(f.agent->stop().success()); }
    SECTION("after kill -9") { CHECK(f.agent->kill9().signal == SIGKILL); }
    f.agent->start();
    REQUIRE(f.waitAnswering());
    auto now = instances(f);
    CHECK(contains(now, kept));
    CHECK(!contains(now, gone));

    RawListener listener(f, kWatchTopic);
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=after restart"}).exitCode == 0);
    REQUIRE(listener.waitCount(1));
    auto n = listener.notifications();
    CHECK(n.size() == 1);
    CHECK(n[0].notify.subscription_id() == "persistent");
}

TEST_CASE("A controller whose role lacks the notify permission gets no notifications", "[notify][delivery]") {
    AgentFixture f([](std::string c) { return c + kNoNotifyController; });
    // The silent controller may add its subscription (it has write access to the table)...
    addSubscription(f, {"ID=denied", "Enable=true", "NotifType=ValueChange",
                        "ReferenceList=Device.DeviceInfo.FriendlyName"},
                    {"--id", "proto::silent"});
    // ...and a controller with `n` subscribes to the same parameter after it.
    addSubscription(f, {"ID=allowed", "Enable=true", "NotifType=ValueChange",
                        "ReferenceList=Device.DeviceInfo.FriendlyName"},
                    kWatchSession);
    RawListener silent(f, "usp/controller/silent");
    RawListener allowed(f, kWatchTopic);
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=gated"}).exitCode == 0);
    REQUIRE(f.ctl({"set", "Device.DeviceInfo.FriendlyName=gated again"}).exitCode == 0);
    REQUIRE(allowed.waitCount(2));
    // Ask the silent controller something: its answer on the same topic comes after
    // anything berthd sent it before.
    auto r = f.ctl({"--id", "proto::silent", "get", "Device.DeviceInfo.FriendlyName"});
    CHECK(r.exitCode == 0);
    INFO(silent.output());
    CHECK(silent.notifications().empty());
    CHECK(silent.output().find("MSG|") != std::string::npos);  // the listener did see the GetResp
}
