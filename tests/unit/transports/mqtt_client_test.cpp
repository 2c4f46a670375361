#ifdef BERTH_WITH_MQTT
// MqttClient's rules driven through a fake connection and a FakeClock: no broker, no
// sleeping. The fake records what the client asked for; the test plays the broker by
// calling the connection events.
#include <catch2/catch.hpp>

#include "berth/core/log.h"
#include "berth/transports/mqtt.h"

using namespace berth;
using namespace berth::transports;
using namespace std::chrono_literals;

namespace {

struct FakeBroker {
    struct Conn final : MqttConnection {
        Conn(FakeBroker& b, EventLoop& l, MqttConnectionEvents& e, std::string id)
            : broker(b), loop(l), events(e), clientId(std::move(id)) {}
        ~Conn() override {
            if (broker.live == this) broker.live = nullptr;
        }
        Status connect() override {
            broker.connects.push_back(clientId);
            return {};
        }
        Status subscribe(const std::string& filter, int) override {
            broker.subscribes.push_back(filter);
            return {};
        }
        Status unsubscribe(const std::string& filter) override {
            broker.unsubscribes.push_back(filter);
            return {};
        }
        Status publish(const MqttMessage& m) override {
            broker.published.push_back(m);
            return {};
        }
        void disconnect(std::function<void()> done) override {
            ++broker.disconnects;
            if (broker.live == this) broker.live = nullptr;
            loop.post(std::move(done));
        }
        FakeBroker& broker;
        EventLoop& loop;
        MqttConnectionEvents& events;
        std::string clientId;
    };

    MqttConnectionFactory factory() {
        return [this](EventLoop& loop, const MqttClientConfig& config, const std::string& id,
                      MqttConnectionEvents& ev) -> Result<std::unique_ptr<MqttConnection>> {
            lastConfig = config;
            auto c = std::make_unique<Conn>(*this, loop, ev, id);
            live = c.get();
            return std::unique_ptr<MqttConnection>(std::move(c));
        };
    }
    MqttConnectionEvents& ev() {
        REQUIRE(live);
        return live->events;
    }
    // CONNACK and a SUBACK for every SUBSCRIBE sent so far.
    void accept(MqttConnack ack = {}) {
        std::size_t before = subscribes.size();
        ev().onConnected(ack);
        for (std::size_t i = before; i < subscribes.size(); ++i) ev().onSubscribeResult(subscribes[i], true, "");
    }

    Conn* live = nullptr;
    MqttClientConfig lastConfig;
    std::vector<std::string> connects;
    std::vector<std::string> subscribes;
    std::vector<std::string> unsubscribes;
    std::vector<MqttMessage> published;
    int disconnects = 0;
};

MqttClientConfig baseConfig() {
    MqttClientConfig c;
    c.brokerAddress = "192.0.2.1";
    c.brokerPort = 1883;
    c.endpointId = "proto::agent-1";
    c.responseTopicConfigured = "usp/agent";
    c.connectRetryTime = 5s;
    c.connectRetryIntervalMultiplier = 2000;
    c.connectRetryMaxInterval = 60s;
    return c;
}

struct Rig {
    FakeClock clock;
    EventLoop loop{clock};
    FakeBroker broker;
    std::unique_ptr<MqttClient> client;
    std::vector<std::pair<MtpStatus, std::string>> statuses;
    std::vector<InboundRecord> inbound;

    explicit Rig(MqttClientConfig config = baseConfig()) {
        auto c = MqttClient::create(loop, std::move(config), broker.factory());
        REQUIRE(c);
        client = std::move(*c);
        client->seedRetryJitter(42);
        client->onStatus([this](MtpStatus s, const std::string& d) { statuses.emplace_back(s, d); });
        client->onRecord([this](InboundRecord r) { inbound.push_back(std::move(r)); });
    }
    ~Rig() { client.reset(); }
    void advance(std::chrono::milliseconds d) {
        clock.advance(d);
        loop.runOnce(0ms);
    }
    void settle() { loop.runOnce(0ms); }
};

}  // namespace

TEST_CASE("Reconnect waits follow the TR-369 schedule and are capped by ConnectRetryMaxInterval", "[mqtt]") {
    Rig rig;
    REQUIRE(rig.client->start());
    REQUIRE(rig.broker.connects.size() == 1);
    CHECK(rig.client->status() == MtpStatus::kConnecting);

    // m = 5 s, k = 2.0, cap 60 s: retry n waits within [5*2^(n-1), 5*2^n] s, capped.
    const std::pair<long, long> expected[] = {{5000, 10000}, {10000, 20000}, {20000, 40000}, {40000, 60000},
                                              {60000, 60000}};
    std::size_t attempts = 1;
    for (auto [lo, hi] : expected) {
        rig.broker.ev().onConnectFailed("connection refused");
        CHECK(rig.client->status() == MtpStatus::kError);
        auto f = rig.client->figures();
        CHECK(f.retryCount == attempts);
        INFO("retry " << attempts << " waits " << f.nextRetryDelay.count() << " ms");
        CHECK(f.nextRetryDelay.count() >= lo);
        CHECK(f.nextRetryDelay.count() <= hi);
        // Not a millisecond early...
        rig.advance(f.nextRetryDelay - 1ms);
        CHECK(rig.broker.connects.size() == attempts);
        // ...and on time.
        rig.advance(1ms);
        ++attempts;
        CHECK(rig.broker.connects.size() == attempts);
        CHECK(rig.client->status() == MtpStatus::kConnecting);
    }
}

TEST_CASE("After a successful connection the retry count restarts, so a lost broker is retried within [m, m*k]",
          "[mqtt]") {
    Rig rig;
    REQUIRE(rig.client->start());
    for (int i = 0; i < 4; ++i) {  // broker down for a while: waits grow
        rig.broker.ev().onConnectFailed("connection refused");
        rig.advance(rig.client->figures().nextRetryDelay);
    }
    CHECK(rig.client->figures().retryCount == 4);
    rig.broker.accept();
    REQUIRE(rig.client->status() == MtpStatus::kUp);
    CHECK(rig.client->figures().retryCount == 0);

    rig.broker.ev().onConnectionLost("connection lost: broker maintenance");
    CHECK(rig.client->status() == MtpStatus::kConnecting);
    auto f = rig.client->figures();
    CHECK(f.retryCount == 1);
    CHECK(f.nextRetryDelay >= 5000ms);
    CHECK(f.nextRetryDelay <= 10000ms);
    auto connectsBefore = rig.broker.connects.size();
    rig.advance(f.nextRetryDelay);
    CHECK(rig.broker.connects.size() == connectsBefore + 1);
    rig.broker.accept();
    CHECK(rig.client->status() == MtpStatus::kUp);
}

TEST_CASE("Nothing is published before a subscription is acknowledged (R-MQTT.17)", "[mqtt]") {
    Rig rig;
    REQUIRE(rig.client->start());
    auto st = rig.client->send({"rec", "usp/controller"});
    REQUIRE_FALSE(st);
    CHECK(st.error().code == ErrorCode::kMessageFailed);

    rig.broker.ev().onConnected({});
    REQUIRE(rig.broker.subscribes == std::vector<std::string>{"usp/agent"});
    CHECK(rig.client->status() == MtpStatus::kConnecting);
    CHECK_FALSE(rig.client->send({"rec", "usp/controller"}));
    CHECK(rig.broker.published.empty());

    rig.broker.ev().onSubscribeResult("usp/agent", true, "");
    REQUIRE(rig.client->status() == MtpStatus::kUp);
    REQUIRE(rig.statuses.back() == std::make_pair(MtpStatus::kUp, std::string("usp/agent")));
    CHECK(rig.client->agentAddress() == "usp/agent");
    CHECK(rig.client->send({"rec", "usp/controller"}));
    CHECK(rig.broker.published.size() == 1);
}

TEST_CASE("MQTT 5 publishes carry the Response Topic and Content Type usp.msg", "[mqtt]") {
    auto cfg = baseConfig();
    cfg.publishQos = 2;
    cfg.publishRetainNotify = true;
    Rig rig(cfg);
    REQUIRE(rig.client->start());
    MqttConnack ack;
    ack.maximumQos = 1;
    rig.broker.accept(ack);
    REQUIRE(rig.client->send({"resp", "usp/controller", RecordKind::kResponse}));
    REQUIRE(rig.client->send({"notify", "usp/controller", RecordKind::kNotify}));
    REQUIRE(rig.broker.published.size() == 2);
    const auto& m = rig.broker.published[0];
    CHECK(m.topic == "usp/controller");
    CHECK(m.responseTopic == "usp/agent");
    CHECK(m.contentType == "usp.msg");
    CHECK(m.payload == "resp");
    CHECK(m.qos == 1);  // PublishQoS 2 capped by the broker's Maximum QoS
    CHECK_FALSE(m.retain);
    CHECK(rig.broker.published[1].retain);  // PublishRetainNotify
    CHECK_FALSE(rig.client->send({"x", "bad/+/dest"}));
}

TEST_CASE("MQTT 3.1.1 publishes append the reply-to suffix and subscribe to the subtree", "[mqtt]") {
    auto cfg = baseConfig();
    cfg.protocolVersion = MqttVersion::kV311;
    cfg.responseTopicConfigured = "usp/agent/1";
    Rig rig(cfg);
    REQUIRE(rig.client->start());
    CHECK(rig.broker.connects.back() == "proto::agent-1");  // R-MQTT.8
    MqttConnack ack;
    ack.version = MqttVersion::kV311;
    rig.broker.accept(ack);
    CHECK(rig.broker.subscribes == std::vector<std::string>{"usp/agent/1/#"});
    REQUIRE(rig.client->status() == MtpStatus::kUp);
    CHECK(rig.client->agentAddress() == "usp/agent/1");
    REQUIRE(rig.client->send({"rec", "usp/controller"}));
    CHECK(rig.broker.published.back().topic == "usp/controller/reply-to=usp%2Fagent%2F1");
    CHECK(rig.broker.published.back().responseTopic.empty());
}

TEST_CASE("Inbound records take their reply-to from the Response Topic, the suffix, or nothing", "[mqtt]") {
    Rig rig;
    REQUIRE(rig.client->start());
    rig.broker.accept();
    MqttMessage v5;
    v5.topic = "usp/agent";
    v5.payload = "a";
    v5.responseTopic = "ctrl/one";
    v5.contentType = "usp.msg";
    v5.userProperties = {{"usp-endpoint-id", "self::ctrl"}};
    rig.broker.ev().onMessage(v5);

    MqttMessage v3;
    v3.topic = "usp/agent/reply-to=ctrl%2Ftwo";
    v3.payload = "b";
    rig.broker.ev().onMessage(v3);

    MqttMessage bare;  // usp-js: no reply-to at all
    bare.topic = "usp/agent";
    bare.payload = "c";
    bare.contentType = "application/vnd.bbf.usp.msg";
    rig.broker.ev().onMessage(bare);

    MqttMessage other;
    other.topic = "usp/agent";
    other.payload = "d";
    other.contentType = "application/json";
    rig.broker.ev().onMessage(other);

    REQUIRE(rig.inbound.size() == 3);
    CHECK(rig.inbound[0].payload == "a");
    CHECK(rig.inbound[0].replyTo == "ctrl/one");
    CHECK(rig.inbound[0].peerId == "self::ctrl");
    CHECK(rig.inbound[1].replyTo == "ctrl/two");
    CHECK(rig.inbound[2].replyTo.empty());
    CHECK(rig.client->figures().recordsDropped == 1);
    CHECK(rig.client->figures().recordsReceived == 3);
}

TEST_CASE("CONNACK hints decide the subscriptions and the reply-to, and an assigned ClientID is reused", "[mqtt]") {
    Rig rig;
    REQUIRE(rig.client->start());
    CHECK(rig.broker.connects.back().empty());  // 5.0 with no ClientID: the broker assigns one
    MqttConnack ack;
    ack.assignedClientId = "auto-7F3A";
    ack.subscribeTopics = {"broker/sub"};
    ack.responseInformation = "broker/resp";
    rig.broker.accept(ack);
    CHECK(rig.broker.subscribes == std::vector<std::string>{"broker/sub", "broker/resp"});
    REQUIRE(rig.client->status() == MtpStatus::kUp);
    CHECK(rig.client->agentAddress() == "broker/resp");
    auto f = rig.client->figures();
    CHECK(f.responseTopicDiscovered == "broker/resp");
    CHECK(f.assignedClientId == "auto-7F3A");

    rig.broker.ev().onConnectionLost("gone");
    rig.advance(rig.client->figures().nextRetryDelay);
    CHECK(rig.broker.connects.back() == "auto-7F3A");  // R-MQTT.11
}

TEST_CASE("When the broker refuses every subscription the client disconnects and retries", "[mqtt]") {
    Rig rig;
    REQUIRE(rig.client->start());
    rig.broker.ev().onConnected({});
    rig.broker.ev().onSubscribeResult("usp/agent", false, "Not authorized");
    CHECK(rig.client->status() == MtpStatus::kError);
    CHECK(rig.broker.disconnects == 1);
    CHECK(rig.broker.published.empty());
    CHECK(rig.client->figures().nextRetryDelay >= 5000ms);
}

TEST_CASE("With no topic to subscribe to the client disconnects and stops retrying (R-MQTT.16)", "[mqtt]") {
    auto cfg = baseConfig();
    cfg.responseTopicConfigured.clear();
    Rig rig(cfg);
    REQUIRE(rig.client->start());
    rig.broker.ev().onConnected({});
    CHECK(rig.client->status() == MtpStatus::kError);
    CHECK_THAT(rig.statuses.back().second, Catch::Contains("no topic"));
    CHECK(rig.broker.disconnects == 1);
    CHECK(rig.client->figures().nextRetryDelay == 0ms);
    rig.advance(1h);
    CHECK(rig.broker.connects.size() == 1);

    // A new configuration with a topic brings it back.
    cfg.responseTopicConfigured = "usp/agent";
    REQUIRE(rig.client->applyConfig(cfg));
    CHECK(rig.broker.connects.size() == 2);
}

TEST_CASE("The EndpointID is published retained once Up when configured", "[mqtt]") {
    auto cfg = baseConfig();
    cfg.publishEndpointId = true;
    Rig rig(cfg);
    REQUIRE(rig.client->start());
    rig.broker.accept();
    REQUIRE(rig.broker.published.size() == 1);
    CHECK(rig.broker.published[0].topic == "obuspa/EndpointID");
    CHECK(rig.broker.published[0].payload == "proto::agent-1");
    CHECK(rig.broker.published[0].retain);
}

TEST_CASE("Changing only subscriptions resubscribes in place, changing the broker reconnects at once", "[mqtt]") {
    auto cfg = baseConfig();
    Rig rig(cfg);
    REQUIRE(rig.client->start());
    rig.broker.accept();
    REQUIRE(rig.client->status() == MtpStatus::kUp);

    cfg.subscriptions = {{"extra/topic", 1, true}};
    REQUIRE(rig.client->applyConfig(cfg));
    CHECK(rig.broker.connects.size() == 1);
    CHECK(rig.broker.subscribes.back() == "extra/topic");
    rig.broker.ev().onSubscribeResult("extra/topic", true, "");
    CHECK(rig.client->figures().subscriptions.size() == 2);

    cfg.subscriptions[0].enable = false;
    REQUIRE(rig.client->applyConfig(cfg));
    CHECK(rig.broker.unsubscribes == std::vector<std::string>{"extra/topic"});
    CHECK(rig.client->status() == MtpStatus::kUp);

    // Invalid: refused, the running configuration stays.
    auto bad = cfg;
    bad.brokerPort = 0;
    CHECK_FALSE(rig.client->applyConfig(bad));
    CHECK(rig.client->config().brokerPort == 1883);
    CHECK(rig.broker.connects.size() == 1);

    // Failures pile up, then a new broker is configured: it is tried at once.
    rig.broker.ev().onConnectionLost("gone");
    rig.advance(rig.client->figures().nextRetryDelay);
    rig.broker.ev().onConnectFailed("refused");
    cfg.brokerPort = 1884;
    REQUIRE(rig.client->applyConfig(cfg));
    CHECK(rig.broker.connects.size() == 3);
    CHECK(rig.broker.lastConfig.brokerPort == 1884);
    CHECK(rig.client->figures().retryCount == 0);
}

TEST_CASE("stop() disconnects, reports Down and ends retries and callbacks", "[mqtt]") {
    Rig rig;
    REQUIRE(rig.client->start());
    rig.broker.accept();
    rig.client->stop();
    CHECK(rig.client->status() == MtpStatus::kDown);
    CHECK(rig.statuses.back().first == MtpStatus::kDown);
    CHECK(rig.broker.disconnects == 1);
    auto n = rig.statuses.size();
    rig.advance(1h);
    CHECK(rig.statuses.size() == n);
    CHECK(rig.broker.connects.size() == 1);
    CHECK_FALSE(rig.client->send({"x", "t"}));
}

TEST_CASE("A failed connect is logged with its reason and the next retry", "[mqtt]") {
    struct Sink {
        std::vector<std::string> lines;
    } sink;
    log::setTestSink(
        [](log::Level, std::string_view tag, std::string_view msg, void* ctx) {
            if (tag == "mqtt") static_cast<Sink*>(ctx)->lines.emplace_back(msg);
        },
        &sink);
    Rig rig;
    REQUIRE(rig.client->start());
    rig.broker.ev().onConnectFailed("tcp://192.0.2.1:1883: Bad user name or password");
    log::setTestSink(nullptr, nullptr);
    REQUIRE_FALSE(sink.lines.empty());
    CHECK_THAT(sink.lines.back(), Catch::Contains("Bad user name or password") && Catch::Contains("retry 1 in"));
    CHECK(rig.statuses.back().first == MtpStatus::kError);
    CHECK_THAT(rig.statuses.back().second, Catch::Contains("Bad user name or password"));
}
#endif
