// The WebSocket binding in both roles over loopback: berth's client against berth's
// server (records both ways, eid, keep-alive, restart and retry, TLS, mutual TLS, one
// session per peer) and hand-made peers for what the bindings never send (no v1.usp,
// text frames, fragments, bare pings and pongs, close frames).
#include <catch2/catch.hpp>

#include "berth/testing/support.h"
#include "berth/testing/test_certs.h"
#include "berth/transports/websocket.h"
#include "raw_ws.h"

using namespace berth;
using namespace berth::transports;
using namespace std::chrono_literals;

namespace {

struct Fixture {
    SystemClock clock;
    EventLoop loop{clock};
    std::vector<InboundRecord> serverReceived;
    std::vector<InboundRecord> clientReceived;
    std::vector<std::tuple<std::string, bool, int>> sessionEvents;

    WebSocketServerConfig serverConfig() {
        WebSocketServerConfig c;
        c.bindAddress = "127.0.0.1";
        c.port = 0;
        c.path = "/usp";
        c.enableEncryption = false;
        c.keepAliveInterval = 0s;
        return c;
    }

    WebSocketClientConfig clientConfig(int port, std::string endpointId = "proto::agent%1") {
        WebSocketClientConfig c;
        c.host = "127.0.0.1";
        c.port = port;
        c.path = "/usp";
        c.enableEncryption = false;
        c.keepAliveInterval = 0s;
        c.sessionRetryMinimumWaitInterval = 1s;
        c.sessionRetryIntervalMultiplier = 2000;
        c.endpointId = std::move(endpointId);
        c.peerEndpointId = "proto::controller-1";
        c.connectTimeout = 5s;
        return c;
    }

    std::unique_ptr<WebSocketServer> server(WebSocketServerConfig c) {
        auto s = WebSocketServer::create(loop, std::move(c));
        REQUIRE(s);
        (*s)->onRecord([this](InboundRecord r) { serverReceived.push_back(std::move(r)); });
        (*s)->onSession([this](const WebSocketSessionInfo& i, bool open, int code) {
            sessionEvents.emplace_back(i.key, open, code);
        });
        REQUIRE((*s)->start());
        REQUIRE((*s)->boundPort() > 0);
        return std::move(*s);
    }

    std::unique_ptr<WebSocketClient> client(WebSocketClientConfig c, bool collect = true) {
        auto r = WebSocketClient::create(loop, std::move(c));
        REQUIRE(r);
        if (collect) (*r)->onRecord([this](InboundRecord rec) { clientReceived.push_back(std::move(rec)); });
        return std::move(*r);
    }

    bool waitUp(WebSocketClient& c, std::chrono::milliseconds t = 10s) {
        return testing::runUntil(loop, [&] { return c.status() == MtpStatus::kUp; }, t);
    }
    bool waitSessions(WebSocketServer& s, std::size_t n, std::chrono::milliseconds t = 10s) {
        return testing::runUntil(loop, [&] { return s.figures().sessions.size() == n; }, t);
    }
};

const std::string kRecord = std::string("usp\0record\xff\x01", 13);

}  // namespace

TEST_CASE_METHOD(Fixture, "TP-469 7.1: berth's WebSocket client and server exchange records both ways, eid passed",
                 "[websocket][integration]") {
    auto srv = server(serverConfig());
    auto cli = client(clientConfig(srv->boundPort()));
    REQUIRE(cli->start());
    REQUIRE(waitUp(*cli));
    REQUIRE(waitSessions(*srv, 1));
    const auto session = srv->figures().sessions.at(0);
    CHECK(session.peerId == "proto::agent%1");
    CHECK(srv->sessionForPeer("proto::agent%1") == session.key);
    CHECK(cli->agentAddress() == "ws://127.0.0.1:" + std::to_string(srv->boundPort()) + "/usp");

    REQUIRE(cli->send({kRecord, ""}));
    REQUIRE(testing::runUntil(loop, [&] { return !serverReceived.empty(); }));
    CHECK(serverReceived[0].payload == kRecord);
    CHECK(serverReceived[0].peerId == "proto::agent%1");
    CHECK(serverReceived[0].replyTo == session.key);

    std::string big(1024 * 1024, 'x');
    REQUIRE(srv->send({big, serverReceived[0].replyTo}));
    REQUIRE(testing::runUntil(loop, [&] { return !clientReceived.empty(); }));
    CHECK(clientReceived[0].payload == big);
    CHECK(clientReceived[0].peerId == "proto::controller-1");
    CHECK(clientReceived[0].replyTo == WebSocketClient::kSessionKey);

    CHECK_FALSE(srv->send({"x", "ws-unknown"}));
    cli->stop();
    CHECK(cli->status() == MtpStatus::kDown);
    REQUIRE(waitSessions(*srv, 0));
    CHECK(std::get<2>(sessionEvents.back()) == 1000);  // the client said goodbye normally
}

TEST_CASE_METHOD(Fixture, "TP-469 7.2: a second session from the same endpoint replaces the first",
                 "[websocket][integration]") {
    auto srv = server(serverConfig());
    auto first = client(clientConfig(srv->boundPort(), "proto::ctrl"));
    REQUIRE(first->start());
    REQUIRE(waitUp(*first));
    auto second = client(clientConfig(srv->boundPort(), "proto::ctrl"));
    REQUIRE(second->start());
    REQUIRE(waitUp(*second));
    REQUIRE(testing::runUntil(loop, [&] { return first->figures().lastCloseCode != 0; }));
    CHECK(first->figures().lastCloseCode == 1008);
    REQUIRE(waitSessions(*srv, 1));
    CHECK(srv->figures().sessionsReplaced == 1);
    first->stop();
    // Another endpoint gets its own session.
    auto other = client(clientConfig(srv->boundPort(), "proto::other"));
    REQUIRE(other->start());
    REQUIRE(waitUp(*other));
    REQUIRE(waitSessions(*srv, 2));
}

TEST_CASE_METHOD(Fixture, "The server refuses upgrades without the v1.usp subprotocol or for another path and echoes v1.usp",
                 "[websocket][integration]") {
    auto srv = server(serverConfig());
    SECTION("no subprotocol") {
        auto [conn, head] = testing::rawWsDial(srv->boundPort(), "/usp?eid=x", "");
        CHECK(head.find(" 101 ") == std::string::npos);
        CHECK(testing::runUntil(loop, [&] { return srv->figures().upgradesRefused == 1; }));
    }
    SECTION("another subprotocol") {
        // libwebsockets itself refuses a protocol no vhost serves.
        auto [conn, head] = testing::rawWsDial(srv->boundPort(), "/usp?eid=x", "mqtt");
        CHECK(head.find(" 101 ") == std::string::npos);
    }
    SECTION("another path") {
        auto [conn, head] = testing::rawWsDial(srv->boundPort(), "/other?eid=x", "v1.usp");
        CHECK(head.find(" 101 ") == std::string::npos);
        CHECK(testing::runUntil(loop, [&] { return srv->figures().upgradesRefused == 1; }));
    }
    SECTION("v1.usp among others is accepted and echoed") {
        auto [conn, head] = testing::rawWsDial(srv->boundPort(), "/usp?eid=raw", "chat, v1.usp");
        CHECK(head.find(" 101 ") != std::string::npos);
        CHECK_THAT(head, Catch::Contains("v1.usp", Catch::CaseSensitive::No));
        REQUIRE(waitSessions(*srv, 1));
        CHECK(srv->figures().sessions[0].peerId == "raw");
        return;
    }
    CHECK(srv->figures().sessions.empty());
    CHECK(srv->figures().sessionsAccepted == 0);
}

TEST_CASE_METHOD(Fixture, "The client refuses a server that does not echo v1.usp", "[websocket][integration]") {
    testing::RawWsServer raw;
    auto cli = client(clientConfig(raw.port(), "proto::a%b c"));
    REQUIRE(cli->start());
    std::string request;
    auto conn = raw.acceptUpgrade("", request);
    REQUIRE(conn);
    CHECK_THAT(request, Catch::Contains("Sec-WebSocket-Protocol: v1.usp"));
    CHECK_THAT(request, Catch::Contains("GET /usp?eid=proto::a%25b%20c HTTP/1.1"));
    REQUIRE(testing::runUntil(loop, [&] { return cli->status() == MtpStatus::kError; }));
    CHECK(cli->figures().currentRetryCount == 1);
}

TEST_CASE_METHOD(Fixture, "TP-469 7.6: a text frame closes the session with 1003 (server and client role)",
                 "[websocket][integration]") {
    SECTION("server") {
        auto srv = server(serverConfig());
        auto [conn, head] = testing::rawWsDial(srv->boundPort(), "/usp?eid=raw", "v1.usp");
        REQUIRE(head.find(" 101 ") != std::string::npos);
        conn.sendFrame(1, "not a record");
        auto close = conn.readUntil(8);
        REQUIRE(close);
        CHECK(close->closeCode() == 1003);
    }
    SECTION("client") {
        testing::RawWsServer raw;
        auto cli = client(clientConfig(raw.port()));
        REQUIRE(cli->start());
        std::string request;
        auto conn = raw.acceptUpgrade("v1.usp", request);
        REQUIRE(conn);
        REQUIRE(waitUp(*cli));
        conn->sendFrame(1, "text");
        auto close = conn->readUntil(8);
        REQUIRE(close);
        CHECK(close->closeCode() == 1003);
        REQUIRE(testing::runUntil(loop, [&] { return cli->status() == MtpStatus::kError; }));
        CHECK(cli->figures().lastCloseCode == 1003);
    }
}

TEST_CASE_METHOD(Fixture, "The agent can close a session with 1003 for an undecodable record", "[websocket][integration]") {
    auto srv = server(serverConfig());
    auto [conn, head] = testing::rawWsDial(srv->boundPort(), "/usp?eid=raw", "v1.usp");
    REQUIRE(head.find(" 101 ") != std::string::npos);
    conn.sendFrame(2, "garbage that is no record");
    REQUIRE(testing::runUntil(loop, [&] { return !serverReceived.empty(); }));
    REQUIRE(srv->closeSession(serverReceived[0].replyTo, WsCloseCode::kUnsupportedData, "cannot decode record"));
    auto close = conn.readUntil(8);
    REQUIRE(close);
    CHECK(close->closeCode() == 1003);
}

TEST_CASE_METHOD(Fixture, "TP-469 7.7: a ping is answered with a pong and an unsolicited pong keeps the session",
                 "[websocket][integration]") {
    auto srv = server(serverConfig());
    auto [conn, head] = testing::rawWsDial(srv->boundPort(), "/usp?eid=raw", "v1.usp");
    REQUIRE(head.find(" 101 ") != std::string::npos);
    conn.sendFrame(9, "hello");
    auto pong = conn.readUntil(10);
    REQUIRE(pong);
    CHECK(pong->payload == "hello");
    conn.sendFrame(10, "unsolicited");
    conn.sendFrame(2, kRecord);
    REQUIRE(testing::runUntil(loop, [&] { return !serverReceived.empty(); }));
    CHECK(serverReceived[0].payload == kRecord);
}

TEST_CASE_METHOD(Fixture, "TP-469 7.12: a record in fragmented frames is reassembled", "[websocket][integration]") {
    auto srv = server(serverConfig());
    auto [conn, head] = testing::rawWsDial(srv->boundPort(), "/usp?eid=raw", "v1.usp");
    REQUIRE(head.find(" 101 ") != std::string::npos);
    conn.sendFrame(2, "part one|", false);
    conn.sendFrame(0, "part two|", false);
    conn.sendFrame(0, "end", true);
    REQUIRE(testing::runUntil(loop, [&] { return !serverReceived.empty(); }));
    CHECK(serverReceived.size() == 1);
    CHECK(serverReceived[0].payload == "part one|part two|end");
}

TEST_CASE_METHOD(Fixture, "TP-469 7.4: a Close frame from the peer is answered with a Close frame",
                 "[websocket][integration]") {
    SECTION("client role") {
        testing::RawWsServer raw;
        auto cli = client(clientConfig(raw.port()));
        REQUIRE(cli->start());
        std::string request;
        auto conn = raw.acceptUpgrade("v1.usp", request);
        REQUIRE(conn);
        REQUIRE(waitUp(*cli));
        conn->sendClose(1000, "bye");
        auto answer = conn->readUntil(8);
        REQUIRE(answer);
        CHECK(answer->closeCode() == 1000);
        REQUIRE(testing::runUntil(loop, [&] { return cli->status() == MtpStatus::kError; }));
        CHECK(cli->figures().lastCloseCode == 1000);
    }
    SECTION("server role") {
        auto srv = server(serverConfig());
        auto [conn, head] = testing::rawWsDial(srv->boundPort(), "/usp?eid=raw", "v1.usp");
        REQUIRE(head.find(" 101 ") != std::string::npos);
        conn.sendClose(1001);
        auto answer = conn.readUntil(8);
        REQUIRE(answer);
        CHECK(answer->closeCode() == 1001);
    }
}

TEST_CASE_METHOD(Fixture, "Keep-alive pings go out every KeepAliveInterval in both roles", "[websocket][integration]") {
    auto sc = serverConfig();
    sc.keepAliveInterval = 1s;
    auto srv = server(sc);
    SECTION("server pings a raw client") {
        auto [conn, head] = testing::rawWsDial(srv->boundPort(), "/usp?eid=raw", "v1.usp");
        REQUIRE(head.find(" 101 ") != std::string::npos);
        // The ping timer runs on the loop: drive it until a ping went out, then read it.
        REQUIRE(testing::runUntil(loop, [&] { return srv->figures().pingsSent >= 1; }, 3s));
        auto ping = conn.readUntil(9);
        REQUIRE(ping);
        conn.sendFrame(10, ping->payload);
        REQUIRE(testing::runUntil(loop, [&] { return srv->figures().pongsReceived >= 1; }, 3s));
    }
    SECTION("client pings the server") {
        auto cc = clientConfig(srv->boundPort());
        cc.keepAliveInterval = 1s;
        auto cli = client(cc);
        REQUIRE(cli->start());
        REQUIRE(waitUp(*cli));
        REQUIRE(testing::runUntil(loop, [&] { return cli->figures().pongsReceived >= 2; }, 5s));
        CHECK(cli->figures().pingsSent >= 2);
        CHECK(cli->status() == MtpStatus::kUp);
    }
}

TEST_CASE_METHOD(Fixture, "A peer that stops answering pings is dropped", "[websocket][integration]") {
    auto sc = serverConfig();
    sc.keepAliveInterval = 1s;
    auto srv = server(sc);
    auto [conn, head] = testing::rawWsDial(srv->boundPort(), "/usp?eid=mute", "v1.usp");
    REQUIRE(head.find(" 101 ") != std::string::npos);
    REQUIRE(waitSessions(*srv, 1));
    // The raw client never reads or answers: after one unanswered ping the next tick drops it.
    REQUIRE(waitSessions(*srv, 0, 5s));
}

TEST_CASE_METHOD(Fixture, "TP-469 7.8: after a server restart the client retries per SessionRetry* and reconnects",
                 "[websocket][integration]") {
    auto sc = serverConfig();
    sc.port = testing::freeTcpPort();
    auto srv = server(sc);
    auto cli = client(clientConfig(sc.port));
    std::vector<std::pair<Clock::MonoTime, MtpStatus>> log;
    cli->onStatus([&](MtpStatus s, const std::string&) { log.emplace_back(clock.now(), s); });
    REQUIRE(cli->start());
    REQUIRE(waitUp(*cli));

    srv->stop();
    REQUIRE(testing::runUntil(loop, [&] { return cli->figures().currentRetryCount >= 2; }, 10s));
    std::vector<Clock::MonoTime> errors, attempts;
    for (const auto& [t, s] : log) {
        if (s == MtpStatus::kError) errors.push_back(t);
        if (s == MtpStatus::kConnecting && !errors.empty()) attempts.push_back(t);
    }
    REQUIRE(attempts.size() >= 1);
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(attempts[0] - errors[0]);
    INFO("first retry waited " << waited.count() << " ms");
    CHECK(waited >= 1000ms - 20ms);  // [m, m*k/1000] = [1 s, 2 s]
    CHECK(waited <= 2000ms + 200ms);
    const auto pending = cli->figures().nextRetryDelay;
    CHECK(pending >= 2000ms - 20ms);  // second retry waits within [2 s, 4 s]
    CHECK(pending <= 4000ms);

    REQUIRE(srv->start());
    REQUIRE(waitUp(*cli, 10s));
    CHECK(cli->figures().currentRetryCount == 0);
    REQUIRE(cli->send({"again", ""}));
    REQUIRE(testing::runUntil(loop, [&] { return !serverReceived.empty(); }));
}

TEST_CASE_METHOD(Fixture, "Reset() drops the session and dials again at once", "[websocket][integration]") {
    auto srv = server(serverConfig());
    auto cli = client(clientConfig(srv->boundPort()));
    REQUIRE(cli->start());
    REQUIRE(waitUp(*cli));
    const auto attempts = cli->figures().connectAttempts;
    cli->reset();
    REQUIRE(waitUp(*cli));
    CHECK(cli->figures().connectAttempts == attempts + 1);
    // The client can see its session up before the server's service thread has reported
    // the new session to the loop: wait for the server's count rather than read it once.
    CHECK(testing::runUntil(loop, [&] { return srv->figures().sessionsAccepted == 2; }, 5s));
}

TEST_CASE_METHOD(Fixture, "TP-469 7.9: TLS sessions verify the server certificate and its name",
                 "[websocket][integration]") {
    testing::TempDir dir("berth-ws-tls");
    testing::TestCerts certs(dir / "certs");
    auto sc = serverConfig();
    sc.enableEncryption = true;
    sc.tls.certFile = certs("server.pem");
    sc.tls.keyFile = certs("server.key");
    auto srv = server(sc);
    auto cc = clientConfig(srv->boundPort());
    cc.host = "localhost";
    cc.enableEncryption = true;
    cc.tls.caFile = certs("ca.pem");
    SECTION("right CA") {
        auto cli = client(cc);
        REQUIRE(cli->start());
        REQUIRE(waitUp(*cli));
        CHECK(cli->agentAddress().rfind("wss://", 0) == 0);
        REQUIRE(cli->send({kRecord, ""}));
        REQUIRE(testing::runUntil(loop, [&] { return !serverReceived.empty(); }));
        CHECK(serverReceived[0].payload == kRecord);
    }
    SECTION("wrong CA") {
        cc.tls.caFile = certs("other-ca.pem");
        auto cli = client(cc);
        REQUIRE(cli->start());
        REQUIRE(testing::runUntil(loop, [&] { return cli->status() == MtpStatus::kError; }));
        CHECK(srv->figures().sessionsAccepted == 0);
    }
}

TEST_CASE_METHOD(Fixture, "Mutual TLS: the server accepts a client certificate from its CA and refuses none",
                 "[websocket][integration]") {
    testing::TempDir dir("berth-ws-mtls");
    testing::TestCerts certs(dir / "certs");
    auto sc = serverConfig();
    sc.enableEncryption = true;
    sc.tls.certFile = certs("server.pem");
    sc.tls.keyFile = certs("server.key");
    sc.tls.caFile = certs("ca.pem");
    sc.tls.requireClientCertificate = true;
    auto srv = server(sc);
    auto cc = clientConfig(srv->boundPort());
    cc.host = "localhost";
    cc.enableEncryption = true;
    cc.tls.caFile = certs("ca.pem");
    SECTION("with a certificate") {
        cc.tls.certFile = certs("client.pem");
        cc.tls.keyFile = certs("client.key");
        auto cli = client(cc);
        REQUIRE(cli->start());
        REQUIRE(waitUp(*cli));
    }
    SECTION("without a certificate") {
        auto cli = client(cc);
        REQUIRE(cli->start());
        REQUIRE(testing::runUntil(loop, [&] { return cli->status() == MtpStatus::kError; }));
        CHECK(srv->figures().sessionsAccepted == 0);
    }
}
