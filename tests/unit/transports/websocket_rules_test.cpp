#ifdef BERTH_WITH_WEBSOCKET
// The WebSocket binding's pure rules: eid encoding in the request URI, query parsing,
// the v1.usp subprotocol check, configuration checks, and the session retry schedule
// the client follows.
#include <catch2/catch.hpp>

#include <random>

#include "berth/core/retry.h"
#include "berth/transports/websocket.h"

using namespace berth;
using namespace berth::transports;
using namespace std::chrono_literals;

TEST_CASE("The eid query value encodes '%' as %25 and keeps endpoint ID characters readable", "[websocket]") {
    CHECK(encodeEidQueryValue("proto::agent-1") == "proto::agent-1");
    CHECK(encodeEidQueryValue("proto::a%b") == "proto::a%25b");
    CHECK(encodeEidQueryValue("os::00D09E-Gw 1/2&x=y") == "os::00D09E-Gw%201%2F2%26x%3Dy");
    CHECK(decodeEidQueryValue("proto::a%25b") == std::optional<std::string>("proto::a%b"));
    CHECK(decodeEidQueryValue(encodeEidQueryValue("a%b c&d=é")) == std::optional<std::string>("a%b c&d=é"));
    CHECK_FALSE(decodeEidQueryValue("bad%2"));
    CHECK_FALSE(decodeEidQueryValue("bad%zz"));
}

TEST_CASE("The request URI carries eid after the configured path", "[websocket]") {
    CHECK(clientRequestUri("/usp", "proto::a%b") == "/usp?eid=proto::a%25b");
    CHECK(clientRequestUri("usp", "x") == "/usp?eid=x");
    CHECK(clientRequestUri("/usp?tenant=1", "x") == "/usp?tenant=1&eid=x");
    CHECK(clientRequestUri("", "x") == "/?eid=x");
}

TEST_CASE("Query parameters are found and decoded", "[websocket]") {
    CHECK(queryParameter("a=1&eid=proto::a%25b&c", "eid") == std::optional<std::string>("proto::a%b"));
    CHECK(queryParameter("eid", "eid") == std::optional<std::string>(""));
    CHECK_FALSE(queryParameter("a=1", "eid"));
    CHECK_FALSE(queryParameter("eid=%x1", "eid"));
}

TEST_CASE("The v1.usp subprotocol is recognised in a list", "[websocket]") {
    CHECK(offersUspSubprotocol("v1.usp"));
    CHECK(offersUspSubprotocol("chat, v1.usp"));
    CHECK(offersUspSubprotocol(" v1.usp ,x"));
    CHECK_FALSE(offersUspSubprotocol(""));
    CHECK_FALSE(offersUspSubprotocol("v1.usp2"));
    CHECK_FALSE(offersUspSubprotocol("V1.USP"));
}

TEST_CASE("WebSocket configurations are checked without touching the network", "[websocket]") {
    WebSocketClientConfig c;
    c.host = "controller.example";
    c.endpointId = "proto::agent";
    c.enableEncryption = false;
    CHECK(validateWebSocketClientConfig(c));
    auto bad = c;
    bad.sessionRetryIntervalMultiplier = 500;
    CHECK(validateWebSocketClientConfig(bad).error().path == "SessionRetryIntervalMultiplier");
    bad = c;
    bad.endpointId.clear();
    CHECK_FALSE(validateWebSocketClientConfig(bad));
    bad = c;
    bad.enableEncryption = true;
    bad.tls.caFile = "/nonexistent/ca.pem";
    CHECK(validateWebSocketClientConfig(bad).error().path == "/nonexistent/ca.pem");

    WebSocketServerConfig s;
    s.enableEncryption = false;
    CHECK(validateWebSocketServerConfig(s));
    auto sb = s;
    sb.path = "usp";
    CHECK(validateWebSocketServerConfig(sb).error().path == "Path");
    sb = s;
    sb.enableEncryption = true;
    CHECK(validateWebSocketServerConfig(sb).error().path == "certFile");
}

TEST_CASE("The session retry schedule: first wait in [m, m*k/1000], doubling, flat after the tenth", "[websocket]") {
    RetrySchedule s;
    s.minWait = 5s;
    s.multiplier = 2000;
    std::mt19937_64 rng(7);
    CHECK(s.range(1) == std::make_pair(std::chrono::milliseconds(5s), std::chrono::milliseconds(10s)));
    CHECK(s.range(2) == std::make_pair(std::chrono::milliseconds(10s), std::chrono::milliseconds(20s)));
    CHECK(s.range(12) == s.range(10));
    for (unsigned n = 1; n <= 12; ++n) {
        auto d = s.delay(n, rng);
        CHECK(d >= s.range(n).first);
        CHECK(d <= s.range(n).second);
    }
}
#endif
