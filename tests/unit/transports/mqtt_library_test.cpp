#ifdef BERTH_WITH_MQTT
// Choosing the MQTT library, and what the libmosquitto binding refuses before it
// touches the network.
#include <catch2/catch.hpp>

#include "berth/core/clock.h"
#include "berth/transports/mqtt.h"

using namespace berth;
using namespace berth::transports;

TEST_CASE("An MQTT library is named paho or mosquitto and anything else is refused with 7004", "[mqtt]") {
    auto paho = parseMqttLibrary("paho");
    REQUIRE(paho);
    CHECK(*paho == MqttLibrary::kPaho);
    auto mosq = parseMqttLibrary("mosquitto");
    REQUIRE(mosq);
    CHECK(*mosq == MqttLibrary::kMosquitto);
    CHECK(mqttLibraryName(MqttLibrary::kPaho) == "paho");
    CHECK(mqttLibraryName(MqttLibrary::kMosquitto) == "mosquitto");
    for (const char* bad : {"", "Paho", "libmosquitto", "wolfmqtt"}) {
        INFO(bad);
        auto r = parseMqttLibrary(bad);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidArguments);
        CHECK_THAT(r.error().message, Catch::Contains("paho or mosquitto"));
    }
}

TEST_CASE("Every library the build carries has a factory, Paho always", "[mqtt]") {
    SystemClock clock;
    EventLoop loop(clock);
    WorkerPool pool(loop, 1);
    CHECK(mqttLibraryAvailable(MqttLibrary::kPaho));
    CHECK(mqttConnectionFactory(MqttLibrary::kPaho, pool));
    auto mosq = mqttConnectionFactory(MqttLibrary::kMosquitto, pool);
#ifdef BERTH_WITH_MOSQUITTO
    CHECK(mqttLibraryAvailable(MqttLibrary::kMosquitto));
    CHECK(mosq);
#else
    CHECK_FALSE(mqttLibraryAvailable(MqttLibrary::kMosquitto));
    REQUIRE_FALSE(mosq);
    CHECK(mosq.error().code == ErrorCode::kInvalidConfiguration);
#endif
}

#ifdef BERTH_WITH_MOSQUITTO
namespace {
struct NoEvents final : MqttConnectionEvents {
    void onConnected(const MqttConnack&) override { ++calls; }
    void onConnectFailed(const std::string&) override { ++calls; }
    void onConnectionLost(const std::string&) override { ++calls; }
    void onSubscribeResult(const std::string&, bool, const std::string&) override { ++calls; }
    void onMessage(MqttMessage) override { ++calls; }
    void onPublishFailed(const std::string&, const std::string&) override { ++calls; }
    int calls = 0;
};
}  // namespace

TEST_CASE("The libmosquitto binding refuses a broker-assigned ClientID without CleanSession with 7007",
          "[mqtt]") {
    SystemClock clock;
    EventLoop loop(clock);
    WorkerPool pool(loop, 1);
    MqttClientConfig c;
    c.brokerAddress = "127.0.0.1";
    c.cleanSession = false;
    NoEvents events;
    auto made = mosquittoMqttConnectionFactory(pool)(loop, c, "", events);
    REQUIRE_FALSE(made);
    CHECK(made.error().code == ErrorCode::kInvalidConfiguration);
    CHECK(made.error().path == "ClientID");
    CHECK_THAT(made.error().message, Catch::Contains("CleanSession"));
    // With a ClientID the same settings are fine, and nothing happens before connect().
    auto ok = mosquittoMqttConnectionFactory(pool)(loop, c, "proto::agent-1", events);
    REQUIRE(ok);
    CHECK((*ok)->setsTcpNoDelay());
    (void)loop.runOnce(std::chrono::milliseconds(0));
    CHECK(events.calls == 0);
}

TEST_CASE("The libmosquitto binding reports a refused TCP connect as a failed attempt, not a lost connection",
          "[mqtt]") {
    SystemClock clock;
    EventLoop loop(clock);
    WorkerPool pool(loop, 1);
    MqttClientConfig c;
    c.brokerAddress = "127.0.0.1";
    c.brokerPort = 1;  // nothing listens on port 1 here
    struct Events final : MqttConnectionEvents {
        void onConnected(const MqttConnack&) override { ++other; }
        void onConnectFailed(const std::string& why) override { failed.push_back(why); }
        void onConnectionLost(const std::string&) override { ++other; }
        void onSubscribeResult(const std::string&, bool, const std::string&) override { ++other; }
        void onMessage(MqttMessage) override { ++other; }
        void onPublishFailed(const std::string&, const std::string&) override { ++other; }
        std::vector<std::string> failed;
        int other = 0;
    } events;
    auto made = mosquittoMqttConnectionFactory(pool)(loop, c, "proto::agent-1", events);
    REQUIRE(made);
    auto st = (*made)->connect();
    // Loopback refuses at once (an error here) or by the time the socket is writable (an event).
    if (st) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (events.failed.empty() && std::chrono::steady_clock::now() < until)
            (void)loop.runOnce(std::chrono::milliseconds(50));
        REQUIRE(events.failed.size() == 1);
        CHECK_THAT(events.failed[0], Catch::Contains("refused"));
    } else {
        CHECK(st.error().code == ErrorCode::kMessageFailed);
        CHECK_THAT(st.error().message, Catch::Contains("refused"));
    }
    CHECK(events.other == 0);
}
#endif
#endif
