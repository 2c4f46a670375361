#ifdef BERTH_WITH_STOMP
// STOMP 1.2 frames: escaping both ways, serialising, the incremental parser (split
// input, content-length bodies with NULs, heart-beat EOLs, size bounds, malformed
// input) and heart-beat negotiation.
#include <catch2/catch.hpp>

#include "berth/transports/stomp.h"

using namespace berth::transports;
using namespace std::chrono_literals;
using namespace std::string_literals;

namespace {

std::vector<StompFrame> parseAll(const std::string& bytes, StompParserLimits limits = {}) {
    StompFrameParser p(limits);
    REQUIRE(p.feed(bytes));
    std::vector<StompFrame> out;
    while (auto f = p.next()) out.push_back(*f);
    return out;
}

std::string failure(const std::string& bytes, StompParserLimits limits = {}) {
    StompFrameParser p(limits);
    CHECK_FALSE(p.feed(bytes));
    CHECK(p.failed());
    CHECK_FALSE(p.next());
    return p.error();
}

}  // namespace

TEST_CASE("STOMP header escaping covers backslash, LF, CR and colon both ways", "[stomp]") {
    CHECK(escapeStompHeader("a:b\\c\nd\re") == "a\\cb\\\\c\\nd\\re");
    CHECK(unescapeStompHeader("a\\cb\\\\c\\nd\\re") == std::optional<std::string>("a:b\\c\nd\re"));
    CHECK(escapeStompHeader("plain/queue") == "plain/queue");
    CHECK_FALSE(unescapeStompHeader("bad\\t"));
    CHECK_FALSE(unescapeStompHeader("trailing\\"));
    CHECK(stompEndpointIdHeader("os::0044FF-gw") == "os\\c\\c0044FF-gw");
}

TEST_CASE("A serialised SEND parses back to the same frame, escaped headers and NULs in the body included",
          "[stomp]") {
    StompFrame f{"SEND", {{"destination", "/queue/a:b"}, {"reply-to-dest", "/queue/x\\y\nz"}}, "a\0b\0"s};
    const std::string wire = serializeStompFrame(f);
    CHECK(wire.find("destination:/queue/a\\cb\n") != std::string::npos);
    CHECK(wire.find("content-length:4\n") != std::string::npos);  // added because the body is not empty
    auto frames = parseAll(wire);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].command == "SEND");
    CHECK(frames[0].header("destination") == "/queue/a:b");
    CHECK(frames[0].header("reply-to-dest") == "/queue/x\\y\nz");
    CHECK(frames[0].body == "a\0b\0"s);
}

TEST_CASE("CONNECT, STOMP and CONNECTED frames are not escaped", "[stomp]") {
    StompFrame f{"STOMP", {{"endpoint-id", "os\\c\\cabc"}, {"host", "h"}}, {}};
    const std::string wire = serializeStompFrame(f);
    CHECK(wire == "STOMP\nendpoint-id:os\\c\\cabc\nhost:h\n\n\0"s);
    auto frames = parseAll("CONNECTED\nversion:1.2\nserver:a\\cb\n\n\0"s);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].header("server") == "a\\cb");
}

TEST_CASE("The parser takes frames split at every byte, heart-beats between them and CRLF lines", "[stomp]") {
    const std::string wire = "\n\r\nMESSAGE\r\ndestination:/q\r\ncontent-length:3\r\n\r\nx\0y\0\n\n"s +
                             "RECEIPT\nreceipt-id:7\n\n\0"s;
    StompFrameParser p;
    std::vector<StompFrame> frames;
    for (char c : wire) {
        REQUIRE(p.feed(std::string_view(&c, 1)));
        while (auto f = p.next()) frames.push_back(*f);
    }
    REQUIRE(frames.size() == 2);
    CHECK(frames[0].command == "MESSAGE");
    CHECK(frames[0].body == "x\0y"s);
    CHECK(frames[1].header("receipt-id") == "7");
    CHECK(p.heartbeatsSeen() == 4);
}

TEST_CASE("Without content-length the body ends at the first NUL, and repeated headers keep the first value", "[stomp]") {
    auto frames = parseAll("MESSAGE\nfoo:1\nfoo:2\n\nhello\0"s);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].body == "hello");
    CHECK(frames[0].header("foo") == "1");
    CHECK(frames[0].headers.size() == 2);
    CHECK_FALSE(frames[0].header("bar"));
}

TEST_CASE("Oversized frames are refused before they are buffered whole", "[stomp]") {
    StompParserLimits small{1024, 8, 100};
    CHECK_THAT(failure("MESSAGE\ncontent-length:5000\n\n", small), Catch::Contains("frame larger than 1024"));
    CHECK_THAT(failure("MESSAGE\n\n" + std::string(2000, 'a'), small), Catch::Contains("frame larger than 1024"));
    CHECK_THAT(failure("MESSAGE\nh:" + std::string(200, 'v'), small), Catch::Contains("header line longer"));
    std::string many = "MESSAGE\n";
    for (int i = 0; i < 9; ++i) many += "h" + std::to_string(i) + ":v\n";
    CHECK_THAT(failure(many, small), Catch::Contains("more than 8 header lines"));
    // Exactly at the limit is fine.
    std::string body(1024 - std::string("MESSAGE\ncontent-length:1000\n\n").size(), 'b');
    auto frames = parseAll("MESSAGE\ncontent-length:" + std::to_string(body.size()) + "\n\n" + body + std::string(1, '\0'),
                           {1024 + 10, 8, 100});
    CHECK(frames.size() == 1);
}

TEST_CASE("Malformed frames fail the parser for good", "[stomp]") {
    CHECK_THAT(failure("message\n\n\0"s), Catch::Contains("invalid command"));
    CHECK_THAT(failure("MESSAGE\nno colon\n\n\0"s), Catch::Contains("without ':'"));
    CHECK_THAT(failure("MESSAGE\nd:\\x\n\n\0"s), Catch::Contains("undefined escape"));
    CHECK_THAT(failure("MESSAGE\ncontent-length:2\n\nabc\0"s), Catch::Contains("not followed by NUL"));
    CHECK_THAT(failure("MESSAGE\ncontent-length:-1\n\n\0"s), Catch::Contains("invalid content-length"));
    CHECK_THAT(failure("\rX"), Catch::Contains("stray carriage return"));
    StompFrameParser p;
    CHECK_FALSE(p.feed("bad\n\n\0"s));
    CHECK_FALSE(p.feed("MESSAGE\n\n\0"s));  // stays failed
}

TEST_CASE("Heart-beat negotiation follows STOMP 1.2", "[stomp]") {
    CHECK(parseStompHeartbeat("15000,10000") == std::make_pair(15000u, 10000u));
    CHECK(parseStompHeartbeat(" 1 , 2 ") == std::make_pair(1u, 2u));
    CHECK_FALSE(parseStompHeartbeat("10"));
    CHECK_FALSE(parseStompHeartbeat("a,b"));
    CHECK_FALSE(parseStompHeartbeat("-1,0"));
    struct Row {
        int cx, cy;
        const char* server;
        int send, expect;
    };
    for (const Row& r : {Row{0, 0, "10,10", 0, 0}, Row{150, 10000, "0,100", 150, 0}, Row{100, 200, "300,50", 100, 300},
                         Row{100, 200, "0,0", 0, 0}, Row{100, 200, "", 0, 0}, Row{100, 200, "junk", 0, 0},
                         Row{15000, 10000, "5000,20000", 20000, 10000}}) {
        INFO(r.cx << "," << r.cy << " vs " << r.server);
        auto hb = negotiateStompHeartbeat(std::chrono::milliseconds(r.cx), std::chrono::milliseconds(r.cy), r.server);
        CHECK(hb.send == std::chrono::milliseconds(r.send));
        CHECK(hb.expect == std::chrono::milliseconds(r.expect));
    }
}

TEST_CASE("STOMP configuration is checked without touching the network", "[stomp]") {
    StompConfig c;
    c.host = "broker";
    c.destination = "/queue/a";
    CHECK(validateStompConfig(c));
    auto field = [](StompConfig bad) {
        auto st = validateStompConfig(bad);
        REQUIRE_FALSE(st);
        CHECK(st.error().code == berth::ErrorCode::kInvalidConfiguration);
        return st.error().path;
    };
    auto b = c;
    b.host = "";
    CHECK(field(b) == "Host");
    b = c;
    b.port = 70000;
    CHECK(field(b) == "Port");
    b = c;
    b.serverRetryIntervalMultiplier = 999;
    CHECK(field(b) == "ServerRetryIntervalMultiplier");
    b = c;
    b.serverRetryMaxInterval = 1s;
    CHECK(field(b) == "ServerRetryMaxInterval");
    b = c;
    b.enableEncryption = true;
    b.tls.caFile = "/nonexistent/ca.pem";
    CHECK(field(b) == "/nonexistent/ca.pem");
}
#endif
