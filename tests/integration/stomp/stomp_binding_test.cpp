// The STOMP binding against a real ActiveMQ 5.17 (plain, TLS and mutual TLS
// connectors) and against a scriptable fake server for what ActiveMQ cannot be made to
// do (subscribe-dest, silence, malformed frames). One ActiveMQ serves every test in a
// process; the restart test has its own. Every wait is driven by the event loop.
#include <catch2/catch.hpp>

#include <random>

#include "berth/core/log.h"
#include "berth/testing/activemq.h"
#include "berth/testing/support.h"
#include "berth/testing/test_certs.h"
#include "berth/transports/stomp.h"
#include "fake_stomp_server.h"

using namespace berth;
using namespace berth::transports;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// The broker (and its certificates) shared by the tests of one process, made on first
// use and stopped by PID when the process exits.
struct SharedBroker {
    SharedBroker()
        : dir("berth-stomp-it"), certs(dir / "certs"),
          broker(dir / "activemq", [&] {
              testing::ActiveMqOptions o;
              o.withSsl = true;
              o.keyStore = certs.pkcs12KeyStore("server", "changeit");
              o.keyStorePassword = "changeit";
              o.trustStore = certs.pkcs12TrustStore("changeit");
              o.trustStorePassword = "changeit";
              return o;
          }()) {
        WARN("ActiveMQ started in " << broker.lastStartTime().count() << " ms");
    }
    testing::TempDir dir;
    testing::TestCerts certs;
    testing::ActiveMq broker;
};

SharedBroker& shared() {
    static SharedBroker b;
    return b;
}

std::string unique(const std::string& prefix) {
    static std::mt19937_64 rng(std::random_device{}());
    return prefix + std::to_string(rng() % 1000000000);
}

struct Fixture {
    SystemClock clock;
    EventLoop loop{clock};

    StompConfig config(int port, std::string destination, std::string endpointId = "proto::agent-1") {
        StompConfig c;
        c.host = "127.0.0.1";
        c.port = port;
        c.destination = std::move(destination);
        c.endpointId = std::move(endpointId);
        c.serverRetryInitialInterval = 1s;
        c.serverRetryIntervalMultiplier = 2000;
        c.serverRetryMaxInterval = 4s;
        c.connectTimeout = 5s;
        return c;
    }

    struct Side {
        std::unique_ptr<StompClient> client;
        std::vector<InboundRecord> received;
        std::vector<std::pair<MtpStatus, std::string>> statuses;
    };

    std::unique_ptr<Side> make(StompConfig c) {
        auto s = std::make_unique<Side>();
        auto r = StompClient::create(loop, std::move(c));
        REQUIRE(r);
        s->client = std::move(*r);
        Side* raw = s.get();
        s->client->onRecord([raw](InboundRecord rec) { raw->received.push_back(std::move(rec)); });
        s->client->onStatus([raw](MtpStatus st, const std::string& d) { raw->statuses.emplace_back(st, d); });
        return s;
    }

    bool waitUp(Side& s, std::chrono::milliseconds t = 10s) {
        return testing::runUntil(loop, [&] { return s.client->status() == MtpStatus::kUp; }, t);
    }
};

const std::string kBinary = std::string("usp\0record\0with NULs\n:\\", 24);

}  // namespace

// ---------------------------------------------------------------- ActiveMQ

TEST_CASE_METHOD(Fixture, "TP-469 6.4 and 6.6: agent and controller exchange records through ActiveMQ with reply-to-dest",
                 "[stomp][integration]") {
    auto& b = shared();
    const std::string agentDest = unique("/queue/agent-");
    const std::string ctrlDest = unique("/queue/controller-");
    auto agent = make(config(b.broker.stompPort(), agentDest));
    auto ctrl = make(config(b.broker.stompPort(), ctrlDest, "proto::controller-1"));
    REQUIRE(agent->client->start());
    REQUIRE(ctrl->client->start());
    REQUIRE(waitUp(*agent));
    REQUIRE(waitUp(*ctrl));
    CHECK(agent->client->agentAddress() == agentDest);
    CHECK(agent->client->figures().destinationFromServer.empty());
    CHECK(agent->client->figures().serverName.find("ActiveMQ") != std::string::npos);

    REQUIRE(ctrl->client->send({kBinary, agentDest}));
    REQUIRE(testing::runUntil(loop, [&] { return !agent->received.empty(); }));
    CHECK(agent->received[0].payload == kBinary);
    CHECK(agent->received[0].replyTo == ctrlDest);

    std::string big(300 * 1024, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
    REQUIRE(agent->client->send({big, agent->received[0].replyTo, RecordKind::kResponse}));
    REQUIRE(testing::runUntil(loop, [&] { return !ctrl->received.empty(); }));
    CHECK(ctrl->received[0].payload == big);
    CHECK(ctrl->received[0].replyTo == agentDest);
    CHECK(agent->client->figures().recordsSent == 1);
    CHECK(agent->client->figures().recordsReceived == 1);

    agent->client->stop();
    CHECK(agent->client->status() == MtpStatus::kDown);
    CHECK_FALSE(agent->client->send({"x", ctrlDest}));
}

TEST_CASE_METHOD(Fixture, "Destinations with ':' and '\\' survive ActiveMQ's header escaping", "[stomp][integration]") {
    auto& b = shared();
    const std::string agentDest = unique("/queue/agent:with\\odd:chars-");
    const std::string ctrlDest = unique("/queue/ctrl:x-");
    auto agent = make(config(b.broker.stompPort(), agentDest, "os::0044FF-gw:1"));
    auto ctrl = make(config(b.broker.stompPort(), ctrlDest));
    REQUIRE(agent->client->start());
    REQUIRE(ctrl->client->start());
    REQUIRE(waitUp(*agent));
    REQUIRE(waitUp(*ctrl));
    REQUIRE(ctrl->client->send({"ping", agentDest}));
    REQUIRE(testing::runUntil(loop, [&] { return !agent->received.empty(); }));
    CHECK(agent->received[0].replyTo == ctrlDest);
}

TEST_CASE_METHOD(Fixture, "TP-469 6.10: a new Destination at run time is subscribed in place on ActiveMQ",
                 "[stomp][integration]") {
    auto& b = shared();
    const std::string first = unique("/queue/first-");
    const std::string second = unique("/queue/second-");
    auto agent = make(config(b.broker.stompPort(), first));
    auto ctrl = make(config(b.broker.stompPort(), unique("/queue/c-")));
    REQUIRE(agent->client->start());
    REQUIRE(ctrl->client->start());
    REQUIRE(waitUp(*agent));
    REQUIRE(waitUp(*ctrl));
    const auto attempts = agent->client->figures().connectAttempts;
    auto c = agent->client->config();
    c.destination = second;
    agent->statuses.clear();
    REQUIRE(agent->client->applyConfig(c));
    REQUIRE(testing::runUntil(loop, [&] { return !agent->statuses.empty(); }));
    CHECK(agent->statuses.back() == std::make_pair(MtpStatus::kUp, second));
    CHECK(agent->client->figures().connectAttempts == attempts);  // no reconnect
    REQUIRE(ctrl->client->send({"to-second", second}));
    REQUIRE(testing::runUntil(loop, [&] { return !agent->received.empty(); }));
    CHECK(agent->received[0].payload == "to-second");
}

TEST_CASE_METHOD(Fixture, "TP-469 6.3: after ActiveMQ is killed the binding retries per ServerRetry* and reconnects",
                 "[stomp][integration]") {
    testing::TempDir dir("berth-stomp-restart");
    testing::ActiveMq broker(dir / "amq");
    auto agent = make(config(broker.stompPort(), "/queue/restart"));
    std::vector<std::pair<Clock::MonoTime, MtpStatus>> log;
    agent->client->onStatus([&](MtpStatus s, const std::string&) { log.emplace_back(clock.now(), s); });
    REQUIRE(agent->client->start());
    REQUIRE(waitUp(*agent));

    broker.kill9();
    // Three failed attempts against the dead broker: each wait within [0, m*k^(n-1)] capped at 4 s.
    REQUIRE(testing::runUntil(loop, [&] { return agent->client->figures().retryCount >= 3; }, 15s));
    std::vector<Clock::MonoTime> errors, attempts;
    for (const auto& [t, s] : log) {
        if (s == MtpStatus::kError) errors.push_back(t);
        if (s == MtpStatus::kConnecting && !errors.empty()) attempts.push_back(t);
    }
    REQUIRE(attempts.size() >= 2);
    const std::chrono::milliseconds bounds[] = {1000ms, 2000ms};
    for (std::size_t i = 0; i < 2; ++i) {
        auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(attempts[i] - errors[i]);
        INFO("retry " << i + 1 << " waited " << waited.count() << " ms");
        CHECK(waited <= bounds[i] + 150ms);
    }
    CHECK(agent->client->figures().statusDetail.find("retry in") != std::string::npos);

    broker.start();
    REQUIRE(waitUp(*agent, 15s));
    CHECK(agent->client->figures().retryCount == 0);
}

TEST_CASE_METHOD(Fixture, "TP-469 6.11: TLS to ActiveMQ with the right CA exchanges records", "[stomp][integration]") {
    auto& b = shared();
    auto c = config(b.broker.sslPort(), unique("/queue/tls-"));
    c.enableEncryption = true;
    c.tls.caFile = b.certs("ca.pem");
    auto agent = make(c);
    auto ctrl = make(config(b.broker.stompPort(), unique("/queue/plain-")));
    REQUIRE(agent->client->start());
    REQUIRE(ctrl->client->start());
    REQUIRE(waitUp(*agent));
    REQUIRE(waitUp(*ctrl));
    REQUIRE(ctrl->client->send({kBinary, c.destination}));
    REQUIRE(testing::runUntil(loop, [&] { return !agent->received.empty(); }));
    CHECK(agent->received[0].payload == kBinary);
    REQUIRE(agent->client->send({"over tls", agent->received[0].replyTo}));
    REQUIRE(testing::runUntil(loop, [&] { return !ctrl->received.empty(); }));
    CHECK(ctrl->received[0].payload == "over tls");
}

TEST_CASE_METHOD(Fixture, "TLS to ActiveMQ refuses a server certificate from another CA or for another name",
                 "[stomp][integration]") {
    auto& b = shared();
    SECTION("wrong CA") {
        auto c = config(b.broker.sslPort(), "/queue/x");
        c.enableEncryption = true;
        c.tls.caFile = b.certs("other-ca.pem");
        auto agent = make(c);
        REQUIRE(agent->client->start());
        REQUIRE(testing::runUntil(loop, [&] { return agent->client->status() == MtpStatus::kError; }));
        CHECK_THAT(agent->client->figures().statusDetail, Catch::Contains("server certificate rejected"));
    }
    SECTION("wrong name") {
        auto c = config(b.broker.sslPort(), "/queue/x");
        c.enableEncryption = true;
        c.tls.caFile = b.certs("ca.pem");
        c.tls.serverName = "broker.example";
        auto agent = make(c);
        REQUIRE(agent->client->start());
        REQUIRE(testing::runUntil(loop, [&] { return agent->client->status() == MtpStatus::kError; }));
        CHECK_THAT(agent->client->figures().statusDetail, Catch::Contains("server certificate rejected"));
    }
}

TEST_CASE_METHOD(Fixture, "Mutual TLS to ActiveMQ connects with a client certificate and is refused without one",
                 "[stomp][integration]") {
    auto& b = shared();
    auto c = config(b.broker.mutualSslPort(), unique("/queue/mtls-"));
    c.enableEncryption = true;
    c.tls.caFile = b.certs("ca.pem");
    SECTION("with a certificate") {
        c.tls.certFile = b.certs("client.pem");
        c.tls.keyFile = b.certs("client.key");
        auto agent = make(c);
        REQUIRE(agent->client->start());
        REQUIRE(waitUp(*agent));
    }
    SECTION("without a certificate") {
        auto agent = make(c);
        REQUIRE(agent->client->start());
        REQUIRE(testing::runUntil(loop, [&] { return agent->client->status() == MtpStatus::kError; }));
        CHECK(agent->client->figures().retryCount >= 1);
    }
}

// ---------------------------------------------------------------- fake server

TEST_CASE_METHOD(Fixture, "TP-469 6.2: the binding connects with a STOMP frame and subscribes with ack:auto",
                 "[stomp][integration]") {
    testing::FakeStompServer server(loop);
    auto c = config(server.port(), "/queue/agent", "os::0044FF-gw");
    c.virtualHost = "usp-vhost";
    c.username = "agent";
    c.password = "secret";
    auto agent = make(c);
    REQUIRE(agent->client->start());
    REQUIRE(waitUp(*agent));
    REQUIRE(server.frames.size() >= 2);
    const auto& connect = server.frames[0];
    CHECK(connect.command == "STOMP");
    CHECK(connect.header("accept-version") == "1.2");
    CHECK(connect.header("host") == "usp-vhost");
    CHECK(connect.header("login") == "agent");
    CHECK(connect.header("passcode") == "secret");
    CHECK(connect.header("endpoint-id") == "os\\c\\c0044FF-gw");  // verbatim on the wire
    CHECK(connect.header("heart-beat") == "0,0");
    const auto& sub = server.frames[1];
    CHECK(sub.command == "SUBSCRIBE");
    CHECK(sub.header("destination") == "/queue/agent");
    CHECK(sub.header("ack") == "auto");
    CHECK(sub.header("id"));
}

TEST_CASE_METHOD(Fixture, "TP-469 6.4: SEND carries content-length, content-type and reply-to-dest",
                 "[stomp][integration]") {
    testing::FakeStompServer server(loop);
    auto agent = make(config(server.port(), "/queue/agent"));
    REQUIRE(agent->client->start());
    REQUIRE(waitUp(*agent));
    REQUIRE(agent->client->send({kBinary, "/queue/ctrl"}));
    REQUIRE(testing::runUntil(loop, [&] { return !server.framesNamed("SEND").empty(); }));
    auto send = server.framesNamed("SEND")[0];
    CHECK(send.header("destination") == "/queue/ctrl");
    CHECK(send.header("content-length") == std::to_string(kBinary.size()));
    CHECK(send.header("content-type") == "application/vnd.bbf.usp.msg");
    CHECK(send.header("reply-to-dest") == "/queue/agent");
    CHECK(send.body == kBinary);
}

TEST_CASE_METHOD(Fixture, "TP-469 6.5: the subscribe-dest named in CONNECTED is subscribed and used as reply-to-dest",
                 "[stomp][integration]") {
    testing::FakeStompServer server(loop);
    server.connectedHeaders.emplace_back("subscribe-dest", "/queue/from-server");
    auto agent = make(config(server.port(), "/queue/configured"));
    REQUIRE(agent->client->start());
    REQUIRE(waitUp(*agent));
    CHECK(agent->client->agentAddress() == "/queue/from-server");
    CHECK(agent->client->figures().destinationFromServer == "/queue/from-server");
    CHECK(server.framesNamed("SUBSCRIBE").at(0).header("destination") == "/queue/from-server");
    REQUIRE(agent->client->send({"x", "/queue/ctrl"}));
    REQUIRE(testing::runUntil(loop, [&] { return !server.framesNamed("SEND").empty(); }));
    CHECK(server.framesNamed("SEND")[0].header("reply-to-dest") == "/queue/from-server");
    // A MESSAGE arrives with its reply-to-dest.
    server.sendFrame(StompFrame{"MESSAGE",
                                {{"subscription", "x"}, {"message-id", "1"}, {"destination", "/queue/from-server"},
                                 {"reply-to-dest", "/queue/ctrl:1"}, {"content-length", "3"}},
                                std::string("a\0b", 3)});
    REQUIRE(testing::runUntil(loop, [&] { return !agent->received.empty(); }));
    CHECK(agent->received[0].payload == std::string("a\0b", 3));
    CHECK(agent->received[0].replyTo == "/queue/ctrl:1");
}

TEST_CASE_METHOD(Fixture, "TP-469 6.7: with no destination from anywhere the binding ends the session after CONNECTED",
                 "[stomp][integration]") {
    testing::FakeStompServer server(loop);
    auto agent = make(config(server.port(), ""));
    REQUIRE(agent->client->start());
    REQUIRE(testing::runUntil(loop, [&] { return agent->client->status() == MtpStatus::kError; }));
    CHECK_THAT(agent->client->figures().statusDetail, Catch::Contains("no destination"));
    REQUIRE(testing::runUntil(loop, [&] { return server.closedByClient >= 1; }));
    CHECK(server.framesNamed("SUBSCRIBE").empty());
    CHECK(server.framesNamed("DISCONNECT").size() == 1);
}

TEST_CASE_METHOD(Fixture, "TP-469 6.8: heart-beat header offered and heart-beats sent at the negotiated rate",
                 "[stomp][integration]") {
    testing::FakeStompServer server(loop);
    server.connectedHeaders.emplace_back("heart-beat", "0,100");
    auto c = config(server.port(), "/queue/agent");
    c.enableHeartbeats = true;
    c.outgoingHeartbeat = 150ms;
    c.incomingHeartbeat = 10000ms;
    auto agent = make(c);
    REQUIRE(agent->client->start());
    REQUIRE(waitUp(*agent));
    CHECK(server.frames[0].header("heart-beat") == "150,10000");
    CHECK(agent->client->figures().heartbeat.send == 150ms);
    CHECK(agent->client->figures().heartbeat.expect == 0ms);  // the server offers none
    const auto start = clock.now();
    REQUIRE(testing::runUntil(loop, [&] { return server.heartbeatsReceived >= 5; }, 3s));
    // Five beats at 150 ms take at least 600 ms after the first.
    CHECK(clock.now() - start >= 600ms);
}

TEST_CASE_METHOD(Fixture, "A server that stops sending heart-beats is noticed and the binding reconnects",
                 "[stomp][integration]") {
    testing::FakeStompServer server(loop);
    server.connectedHeaders.emplace_back("heart-beat", "200,0");
    server.beatEvery = 100ms;
    auto c = config(server.port(), "/queue/agent");
    c.enableHeartbeats = true;
    c.incomingHeartbeat = 200ms;
    c.heartbeatGrace = 200ms;
    auto agent = make(c);
    REQUIRE(agent->client->start());
    REQUIRE(waitUp(*agent));
    CHECK(agent->client->figures().heartbeat.expect == 200ms);
    // Beats keep it up well past the 400 ms limit.
    CHECK_FALSE(testing::runUntil(loop, [&] { return agent->client->status() != MtpStatus::kUp; }, 1s));
    server.silent = true;
    const auto silentSince = clock.now();
    REQUIRE(testing::runUntil(loop, [&] { return agent->client->status() == MtpStatus::kError; }, 3s));
    CHECK(clock.now() - silentSince < 1s);
    CHECK_THAT(agent->client->figures().statusDetail, Catch::Contains("no data from the server"));
    CHECK(agent->client->figures().heartbeatTimeouts == 1);
    server.silent = false;
    REQUIRE(waitUp(*agent, 5s));
    CHECK(server.connections == 2);
}

TEST_CASE_METHOD(Fixture, "Malformed, oversized and ERROR frames from a server drop the connection, are reported and retried",
                 "[stomp][integration]") {
    testing::FakeStompServer server(loop);
    auto c = config(server.port(), "/queue/agent");
    c.maxFrameSize = 4096;
    auto agent = make(c);
    REQUIRE(agent->client->start());
    REQUIRE(waitUp(*agent));
    std::string expect;
    SECTION("garbage") {
        server.sendRaw("garbage\nno colon here\n\n\0");
        expect = "malformed frame";
    }
    SECTION("bad escape") {
        server.sendRaw(std::string("MESSAGE\ndestination:/queue/\\t\n\n\0", 32));
        expect = "undefined escape";
    }
    SECTION("oversized") {
        server.sendRaw("MESSAGE\ncontent-length:100000\n\n");
        expect = "frame larger than 4096";
    }
    SECTION("ERROR frame") {
        server.sendFrame(StompFrame{"ERROR", {{"message", "go away"}}, "details"});
        expect = "ERROR frame from the server: go away";
    }
    REQUIRE(testing::runUntil(loop, [&] { return agent->client->status() == MtpStatus::kError; }));
    CHECK_THAT(agent->client->figures().statusDetail, Catch::Contains(expect));
    const auto f = agent->client->figures();
    CHECK(f.protocolErrors + f.errorFrames == 1);
    REQUIRE(waitUp(*agent, 5s));  // retried within ServerRetryInitialInterval
    CHECK(server.connections == 2);
}

TEST_CASE_METHOD(Fixture, "TP-469 6.10: a changed Destination is unsubscribed and the new one subscribed",
                 "[stomp][integration]") {
    testing::FakeStompServer server(loop);
    auto agent = make(config(server.port(), "/queue/old"));
    REQUIRE(agent->client->start());
    REQUIRE(waitUp(*agent));
    auto c = agent->client->config();
    c.destination = "/queue/new";
    REQUIRE(agent->client->applyConfig(c));
    REQUIRE(testing::runUntil(loop, [&] { return agent->client->agentAddress() == "/queue/new"; }));
    auto subs = server.framesNamed("SUBSCRIBE");
    auto unsubs = server.framesNamed("UNSUBSCRIBE");
    REQUIRE(subs.size() == 2);
    REQUIRE(unsubs.size() == 1);
    CHECK(unsubs[0].header("id") == subs[0].header("id"));
    CHECK(subs[1].header("destination") == "/queue/new");
    CHECK(server.connections == 1);
}

TEST_CASE_METHOD(Fixture, "stop() sends UNSUBSCRIBE and DISCONNECT and reports Down", "[stomp][integration]") {
    testing::FakeStompServer server(loop);
    auto agent = make(config(server.port(), "/queue/agent"));
    REQUIRE(agent->client->start());
    REQUIRE(waitUp(*agent));
    agent->client->stop();
    CHECK(agent->client->status() == MtpStatus::kDown);
    REQUIRE(testing::runUntil(loop, [&] { return !server.framesNamed("DISCONNECT").empty(); }));
    CHECK(server.framesNamed("UNSUBSCRIBE").size() == 1);
}
