#ifdef BERTH_WITH_MQTT
#include <catch2/catch.hpp>

#include "berth/testing/support.h"
#include "berth/transports/mqtt.h"

using namespace berth;
using namespace berth::transports;

namespace {

MqttClientConfig validConfig() {
    MqttClientConfig c;
    c.brokerAddress = "127.0.0.1";
    c.brokerPort = 1883;
    c.endpointId = "proto::agent-1";
    c.responseTopicConfigured = "usp/agent";
    return c;
}

}  // namespace

TEST_CASE("A 3.1.1 reply-to suffix encodes slashes as %2F", "[mqtt]") {
    CHECK(appendReplyTo("usp/agent", "usp/controller/1") == "usp/agent/reply-to=usp%2Fcontroller%2F1");
    CHECK(appendReplyTo("a", "/leading") == "a/reply-to=%2Fleading");
}

TEST_CASE("A 3.1.1 reply-to suffix is split off and decoded", "[mqtt]") {
    auto s = splitReplyTo("usp/agent/reply-to=usp%2Fcontroller%2F1");
    REQUIRE(s);
    CHECK(s->first == "usp/agent");
    CHECK(s->second == "usp/controller/1");
    auto lower = splitReplyTo("t/reply-to=a%2fb");
    REQUIRE(lower);
    CHECK(lower->second == "a/b");
    // Only %2F is an escape; other percent signs stay as they are.
    auto pct = splitReplyTo("t/reply-to=50%25off%2");
    REQUIRE(pct);
    CHECK(pct->second == "50%25off%2");
    CHECK_FALSE(splitReplyTo("usp/agent"));
    CHECK_FALSE(splitReplyTo("usp/agent/reply-to="));
}

TEST_CASE("Encoding then decoding a reply-to gives the topic back", "[mqtt]") {
    for (std::string t : {"c", "usp/ctrl", "/a/b/c/", "x y/z"}) {
        auto s = splitReplyTo(appendReplyTo("base/topic", t));
        REQUIRE(s);
        CHECK(s->first == "base/topic");
        CHECK(s->second == t);
    }
}

TEST_CASE("Topic filters match as MQTT defines", "[mqtt]") {
    CHECK(mqttTopicMatches("a/b", "a/b"));
    CHECK_FALSE(mqttTopicMatches("a/b", "a/b/c"));
    CHECK(mqttTopicMatches("a/+", "a/b"));
    CHECK_FALSE(mqttTopicMatches("a/+", "a/b/c"));
    CHECK(mqttTopicMatches("a/#", "a"));
    CHECK(mqttTopicMatches("a/#", "a/b/c"));
    CHECK(mqttTopicMatches("#", "x/y"));
    CHECK_FALSE(mqttTopicMatches("#", "$SYS/x"));
    CHECK(mqttTopicMatches("+/+/reply-to=x", "a/b/reply-to=x"));
    CHECK_FALSE(isValidMqttTopicName("a/+"));
    CHECK_FALSE(isValidMqttTopicName(""));
    CHECK(isValidMqttTopicName("a/b"));
}

TEST_CASE("Without CONNACK hints an MQTT 5 client subscribes to ResponseTopicConfigured and replies from it",
          "[mqtt]") {
    auto c = validConfig();
    MqttConnack ack;
    auto plan = planMqttTopics(c, ack);
    REQUIRE(plan);
    CHECK(plan->responseTopic == "usp/agent");
    REQUIRE(plan->filters.size() == 1);
    CHECK(plan->filters[0].filter == "usp/agent");
}

TEST_CASE("CONNACK subscribe-topic and Response Information are subscribed and the latter is the reply-to",
          "[mqtt]") {
    auto c = validConfig();
    c.subscriptions = {{"configured/+", 0, true}, {"disabled/t", 1, false}};
    MqttConnack ack;
    ack.subscribeTopics = {"broker/given", "configured/x"};  // the second is covered by configured/+
    ack.responseInformation = "broker/resp";
    auto plan = planMqttTopics(c, ack);
    REQUIRE(plan);
    CHECK(plan->responseTopic == "broker/resp");
    std::vector<std::string> filters;
    for (auto& f : plan->filters) filters.push_back(f.filter);
    CHECK(filters == std::vector<std::string>{"configured/+", "broker/given", "broker/resp"});
    CHECK(plan->filters[0].qos == 0);
}

TEST_CASE("A 3.1.1 client subscribes to the subtree of its reply-to topic", "[mqtt]") {
    auto c = validConfig();
    c.protocolVersion = MqttVersion::kV311;
    MqttConnack ack;
    ack.version = MqttVersion::kV311;
    ack.responseInformation = "ignored/for/311";
    auto plan = planMqttTopics(c, ack);
    REQUIRE(plan);
    CHECK(plan->responseTopic == "usp/agent");
    REQUIRE(plan->filters.size() == 1);
    CHECK(plan->filters[0].filter == "usp/agent/#");

    c.subscriptions = {{"usp/agent/+", 1, true}};  // already covers the suffixed topics
    plan = planMqttTopics(c, ack);
    REQUIRE(plan);
    REQUIRE(plan->filters.size() == 1);
    CHECK(plan->filters[0].filter == "usp/agent/+");
}

TEST_CASE("With no topic at all the plan is refused (R-MQTT.16)", "[mqtt]") {
    auto c = validConfig();
    c.responseTopicConfigured.clear();
    auto plan = planMqttTopics(c, MqttConnack{});
    REQUIRE_FALSE(plan);
    CHECK(plan.error().code == ErrorCode::kInvalidConfiguration);
    CHECK_THAT(plan.error().message, Catch::Contains("no topic to subscribe to"));

    c.subscriptions = {{"only/+/wild", 1, true}};
    plan = planMqttTopics(c, MqttConnack{});
    REQUIRE_FALSE(plan);
    CHECK_THAT(plan.error().message, Catch::Contains("reply-to"));

    c.subscriptions = {{"plain/topic", 1, true}};
    plan = planMqttTopics(c, MqttConnack{});
    REQUIRE(plan);
    CHECK(plan->responseTopic == "plain/topic");
}

TEST_CASE("ClientID: configured, else assigned earlier, else empty for 5.0 and the EndpointID for 3.1.1",
          "[mqtt]") {
    auto c = validConfig();
    CHECK(chooseMqttClientId(c, "") == "");
    CHECK(chooseMqttClientId(c, "auto-1") == "auto-1");
    c.protocolVersion = MqttVersion::kV311;
    CHECK(chooseMqttClientId(c, "") == "proto::agent-1");
    c.clientId = "mine";
    CHECK(chooseMqttClientId(c, "auto-1") == "mine");
}

TEST_CASE("Config validation rejects bad ports and ranges with the field named", "[mqtt]") {
    auto c = validConfig();
    CHECK(validateMqttConfig(c));
    for (int port : {0, -1, 65536}) {
        c.brokerPort = port;
        auto st = validateMqttConfig(c);
        REQUIRE_FALSE(st);
        CHECK(st.error().code == ErrorCode::kInvalidConfiguration);
        CHECK(st.error().path == "BrokerPort");
    }
    c = validConfig();
    c.brokerAddress = "";
    CHECK(validateMqttConfig(c).error().path == "BrokerAddress");
    c = validConfig();
    c.connectRetryIntervalMultiplier = 999;
    CHECK(validateMqttConfig(c).error().path == "ConnectRetryIntervalMultiplier");
    c = validConfig();
    c.connectRetryMaxInterval = std::chrono::seconds(1);
    CHECK(validateMqttConfig(c).error().path == "ConnectRetryMaxInterval");
    c = validConfig();
    c.publishQos = 3;
    CHECK(validateMqttConfig(c).error().path == "PublishQoS");
    c = validConfig();
    c.protocolVersion = MqttVersion::kV311;
    c.endpointId.clear();
    CHECK(validateMqttConfig(c).error().path == "ClientID");
    c = validConfig();
    c.responseTopicConfigured = "wild/#";
    CHECK(validateMqttConfig(c).error().path == "ResponseTopicConfigured");
}

TEST_CASE("A missing TLS CA file is reported with its name and the system's reason", "[mqtt]") {
    auto c = validConfig();
    c.transport = MqttTransport::kTls;
    c.tls.caFile = "/nonexistent/ca.pem";
    auto st = validateMqttConfig(c);
    REQUIRE_FALSE(st);
    CHECK(st.error().path == "/nonexistent/ca.pem");
    CHECK_THAT(st.error().message, Catch::Contains("TLS CA file /nonexistent/ca.pem") &&
                                       Catch::Contains("No such file or directory"));
}

TEST_CASE("Unparseable TLS files are reported with the file and OpenSSL's reason", "[mqtt]") {
    testing::TempDir dir;
    auto junk = (dir / "junk.pem").string();
    testing::writeFile(junk, "this is not PEM\n");
    auto c = validConfig();
    c.transport = MqttTransport::kTls;

    c.tls.caFile = junk;
    auto st = validateMqttConfig(c);
    REQUIRE_FALSE(st);
    CHECK_THAT(st.error().message, Catch::Contains("TLS CA file " + junk) && Catch::Contains("no PEM certificate"));

    c.tls.caFile.clear();
    c.tls.certFile = junk;
    st = validateMqttConfig(c);
    REQUIRE_FALSE(st);
    CHECK(st.error().path == junk);
    CHECK_THAT(st.error().message, Catch::Contains("TLS client certificate " + junk) && Catch::Contains("error:"));

    c.tls.certFile.clear();
    c.tls.keyFile = junk;
    st = validateMqttConfig(c);
    REQUIRE_FALSE(st);
    CHECK_THAT(st.error().message, Catch::Contains("without a client certificate"));

    c.tls.keyFile.clear();
    c.tls.caDir = junk;
    st = validateMqttConfig(c);
    REQUIRE_FALSE(st);
    CHECK_THAT(st.error().message, Catch::Contains("not a directory"));
}

TEST_CASE("TLS files are not checked when the transport is plain TCP", "[mqtt]") {
    auto c = validConfig();
    c.tls.caFile = "/nonexistent/ca.pem";
    CHECK(validateMqttConfig(c));
}
#endif
