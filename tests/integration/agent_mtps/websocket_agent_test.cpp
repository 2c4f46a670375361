// berthd's WebSocket server driven by berthctl --ws, berthd's WebSocket client dialling
// berthctl --ws-listen, and the TP-469 section 7 cases that need the agent.
#include <catch2/catch.hpp>

#include "berth/transports/websocket.h"
#include "common.h"

using namespace berth;
using namespace berth::agenttest;
using namespace std::chrono_literals;

namespace {

// An in-process controller dialling the agent's server, to send what berthctl would not
// and to see close codes and connect records.
struct WsPeer {
    SystemClock clock;
    EventLoop loop{clock};
    std::unique_ptr<transports::WebSocketClient> client;
    std::vector<transports::InboundRecord> received;
    std::string id;

    WsPeer(int port, std::string endpointId) : id(std::move(endpointId)) {
        transports::WebSocketClientConfig c;
        c.host = "127.0.0.1";
        c.port = port;
        c.path = "/usp";
        c.enableEncryption = false;
        c.endpointId = id;
        c.peerEndpointId = kAgentId;
        c.sessionRetryMinimumWaitInterval = 60s;  // one session per test: no redial
        auto created = transports::WebSocketClient::create(loop, c);
        REQUIRE(created);
        client = std::move(*created);
        client->onRecord([this](transports::InboundRecord r) { received.push_back(std::move(r)); });
        REQUIRE(client->start());
    }
    ~WsPeer() { client->stop(); }
    bool waitUp() {
        return testing::runUntil(loop, [&] { return client->status() == transports::MtpStatus::kUp; }, 10s);
    }
    std::optional<agent::DecodedRecord> waitFor(agent::DecodeKind kind) {
        auto codec = controllerCodec(id);
        std::optional<agent::DecodedRecord> found;
        testing::runUntil(
            loop,
            [&] {
                for (const auto& r : received)
                    if (auto d = codec.decode(r.payload); d.kind == kind) {
                        found = std::move(d);
                        return true;
                    }
                return false;
            },
            10s);
        return found;
    }
    int waitClosed() {
        testing::runUntil(loop, [&] { return client->figures().lastCloseCode != 0; }, 10s);
        return client->figures().lastCloseCode;
    }
};

// An in-process controller the agent dials (Controller.3 of examples/berth-ws.conf).
struct WsListener {
    SystemClock clock;
    EventLoop loop{clock};
    std::unique_ptr<transports::WebSocketServer> server;
    std::vector<transports::InboundRecord> received;
    std::vector<std::string> peers;

    explicit WsListener(int port) {
        transports::WebSocketServerConfig c;
        c.bindAddress = "127.0.0.1";
        c.port = port;
        c.path = "/usp";
        c.enableEncryption = false;
        auto created = transports::WebSocketServer::create(loop, c);
        REQUIRE(created);
        server = std::move(*created);
        server->onRecord([this](transports::InboundRecord r) { received.push_back(std::move(r)); });
        server->onSession([this](const transports::WebSocketSessionInfo& s, bool open, int) {
            if (open) peers.push_back(s.peerId);
        });
        REQUIRE(server->start());
    }
    ~WsListener() { server->stop(); }
    bool waitSession(std::chrono::milliseconds timeout = 15s) {
        return testing::runUntil(loop, [&] { return !server->sessionForPeer(kAgentId).empty(); }, timeout);
    }
};

}  // namespace

TEST_CASE("berthd's WebSocket server answers get, set, add, delete and operate from berthctl --ws",
          "[agent-mtps][websocket]") {
    WsAgent f;
    exerciseMessages([&](std::vector<std::string> a, bool json) { return f.ctl(std::move(a), json); });
    auto status = f.ctl({"get", "Device.LocalAgent.MTP.1.Status"});
    CHECK(paramValue(status.json, "Device.LocalAgent.MTP.1.Status") == "Up");
}

TEST_CASE("berthd's WebSocket server sends ValueChange notifications to berthctl --ws watch", "[agent-mtps][websocket]") {
    WsAgent f;
    Watch watch(f, "watch", f.watchArgs(), {"--type", "ValueChange", "Device.DeviceInfo.FriendlyName"});
    auto set = f.ctl({"set", "Device.DeviceInfo.FriendlyName=seen over the WebSocket server"});
    INFO(set.describe());
    REQUIRE(set.exitCode == 0);
    CHECK(watch.waitFor("seen over the WebSocket server"));
    INFO(watch.output());
}

TEST_CASE("berthd dials berthctl --ws-listen and answers get, set, add, delete and operate",
          "[agent-mtps][websocket]") {
    WsAgent f;
    exerciseMessages([&](std::vector<std::string> a, bool json) { return f.ctlListen(std::move(a), json); });
    auto count = f.ctl({"get", "Device.LocalAgent.Controller.3.MTP.1.WebSocket.CurrentRetryCount"});
    INFO(count.describe());
    CHECK(paramValue(count.json, "Device.LocalAgent.Controller.3.MTP.1.WebSocket.CurrentRetryCount"));
}

TEST_CASE("berthd's WebSocket client sends ValueChange notifications to berthctl --ws-listen watch",
          "[agent-mtps][websocket]") {
    WsAgent f;
    Watch watch(f, "watch", f.listenArgs, {"--type", "ValueChange", "Device.DeviceInfo.FriendlyName"});
    auto set = f.ctl({"set", "Device.DeviceInfo.FriendlyName=seen over the WebSocket client"});
    INFO(set.describe());
    REQUIRE(set.exitCode == 0);
    CHECK(watch.waitFor("seen over the WebSocket client"));
    INFO(watch.output());
}

TEST_CASE("TP-469 7.6: an undecodable record over WebSocket closes the session with 1003", "[agent-mtps][websocket][tp469]") {
    WsAgent f;
    WsPeer peer(f.serverPort, "self::berthctl");
    REQUIRE(peer.waitUp());
    REQUIRE(peer.client->send({std::string("\xff\xff\xff not a record"), ""}));
    CHECK(peer.waitClosed() == 1003);
    INFO(f.describe());
    // The agent goes on serving.
    CHECK(f.ctl({"get", "Device.LocalAgent.EndpointID"}).exitCode == 0);
}

TEST_CASE("TP-469 7.10: WebSocket - Use of Connect Record", "[agent-mtps][websocket][tp469]") {
    SECTION("a controller's session with the agent's server") {
        WsAgent f;
        WsPeer peer(f.serverPort, "self::berthctl");
        REQUIRE(peer.waitUp());
        auto d = peer.waitFor(agent::DecodeKind::kConnect);
        INFO(f.describe());
        REQUIRE(d);
        CHECK(d->recordType == agent::RecordType::kWebSocketConnect);
        CHECK(d->fromId == kAgentId);
    }
    SECTION("the agent's session with a controller's server, again after berthd restarts") {
        WsAgent f;
        WsListener listener(f.listenPort);
        REQUIRE(listener.waitSession());
        auto codec = controllerCodec("self::berthctl-listen");
        auto connects = [&] {
            int n = 0;
            for (const auto& r : listener.received)
                if (codec.decode(r.payload).recordType == agent::RecordType::kWebSocketConnect) ++n;
            return n;
        };
        REQUIRE(testing::runUntil(listener.loop, [&] { return connects() >= 1; }));
        REQUIRE(f.agent->stop().success());
        f.agent->start();
        INFO(f.describe());
        CHECK(testing::runUntil(listener.loop, [&] { return connects() >= 2; }, 20s));
    }
}

TEST_CASE("TP-469 7.11: sessions without the bbf-usp-protocol extension are served", "[agent-mtps][websocket][tp469]") {
    // berth's WebSocket peers never send the deprecated extension (R-WS.10a/11b).
    WsAgent f;
    auto r = f.ctl({"get", "Device.DeviceInfo.ModelName"});
    INFO(r.describe());
    CHECK(r.exitCode == 0);
    auto l = f.ctlListen({"get", "Device.DeviceInfo.ModelName"});
    INFO(l.describe());
    CHECK(l.exitCode == 0);
}

TEST_CASE("TP-469 4.1: wss with certificates on both sides, in both directions", "[agent-mtps][websocket][tp469]") {
    WsAgent f(WsAgentOptions{true, {}, true});
    auto r = f.ctl({"proto", "1.0,1.1,1.2,1.3,1.4"});
    INFO(r.describe());
    CHECK(r.exitCode == 0);
    auto l = f.ctlListen({"proto", "1.0,1.1,1.2,1.3,1.4"});
    INFO(l.describe() << f.describe());
    CHECK(l.exitCode == 0);
    // R-MTP.1: the agent's server demands a client certificate.
    auto noCert = f.ctlWith({"--ws", "127.0.0.1:" + std::to_string(f.serverPort), "--ca-file", (*f.certs)("ca.pem")},
                            {"get", "Device.LocalAgent.EndpointID"}, false);
    CHECK(noCert.exitCode != 0);
    // The agent verifies the server: one signed by another CA gets no session.
    auto wrongCa = f.ctlWith({"--ws-listen", std::to_string(f.listenPort), "--id", "self::berthctl-listen", "--cert-file",
                              (*f.certs)("wrongname.pem"), "--key-file", (*f.certs)("wrongname.key"), "--timeout", "4"},
                             {"get", "Device.LocalAgent.EndpointID"}, false);
    CHECK(wrongCa.exitCode == 4);
}

TEST_CASE("R-WS.4: one session between the agent and a controller", "[agent-mtps][websocket]") {
    WsAgent f;
    SECTION("the agent's client session came first: the controller's session with the server is closed") {
        WsListener listener(f.listenPort);
        REQUIRE(listener.waitSession());
        WsPeer second(f.serverPort, "self::berthctl-listen");
        CHECK(second.waitClosed() == 1008);
        // The first session still carries requests.
        auto r = f.ctlWith({"--ws", "127.0.0.1:" + std::to_string(f.serverPort)}, {"get", "Device.LocalAgent.EndpointID"});
        CHECK(r.exitCode == 0);
    }
    SECTION("the controller's session came first: the agent stops dialling until it ends") {
        WsPeer first(f.serverPort, "self::berthctl-listen");
        REQUIRE(first.waitUp());
        REQUIRE(testing::waitUntil(
            [&] { return f.agent->log().find("not dialling while self::berthctl-listen") != std::string::npos; }));
        WsListener listener(f.listenPort);
        first.client->stop();
        // Only now does the agent dial the controller again.
        INFO(f.describe());
        CHECK(listener.waitSession(20s));
    }
}

TEST_CASE("Controller.{i}.MTP.{j}.WebSocket.Reset() and a controller restart bring the session back",
          "[agent-mtps][websocket][tp469]") {
    WsAgent f;
    {
        WsListener listener(f.listenPort);
        REQUIRE(listener.waitSession());
    }
    // The controller went away; the agent retries and counts.
    REQUIRE(testing::waitUntil([&] {
        auto r = f.ctl({"get", "Device.LocalAgent.Controller.3.MTP.1.WebSocket.CurrentRetryCount"});
        auto v = paramValue(r.json, "Device.LocalAgent.Controller.3.MTP.1.WebSocket.CurrentRetryCount");
        return v && *v != "0";
    }, 20s));
    WsListener again(f.listenPort);
    auto reset = f.ctl({"operate", "Device.LocalAgent.Controller.3.MTP.1.WebSocket.Reset()"});
    INFO(reset.describe());
    CHECK(reset.exitCode == 0);
    CHECK(again.waitSession(10s));
    auto bad = f.ctl({"operate", "Device.LocalAgent.Controller.1.MTP.1.WebSocket.Reset()"});
    CHECK(bad.exitCode == 1);
}
