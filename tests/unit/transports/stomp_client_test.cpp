#ifdef BERTH_WITH_STOMP
// StompClient driven through a fake stream and a FakeClock: no server, no sleeping. The
// test plays the server by feeding bytes into the stream events and reads what the
// client wrote.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "berth/core/fd.h"
#include "berth/core/worker_pool.h"
#include "berth/transports/stomp.h"

using namespace berth;
using namespace berth::transports;
using namespace std::chrono_literals;
using namespace std::string_literals;

namespace {

struct FakeNet {
    struct Stream final : StompStream {
        explicit Stream(FakeNet& n) : net(n) {}
        ~Stream() override {
            if (net.live == this) net.live = nullptr;
        }
        Status write(std::string_view b) override {
            written.append(b.data(), b.size());
            return {};
        }
        std::size_t pendingBytes() const override { return 0; }
        FakeNet& net;
        std::string written;
    };

    StompStreamFactory factory() {
        return [this](EventLoop&, const StompConfig&, StompStreamEvents& ev) -> Result<std::unique_ptr<StompStream>> {
            ++created;
            events = &ev;
            auto s = std::make_unique<Stream>(*this);
            live = s.get();
            return std::unique_ptr<StompStream>(std::move(s));
        };
    }
    std::vector<StompFrame> frames() const {
        StompFrameParser p;
        p.feed(live ? live->written : std::string());
        std::vector<StompFrame> out;
        while (auto f = p.next()) out.push_back(*f);
        return out;
    }
    void serverSends(const StompFrame& f) { events->onStreamData(serializeStompFrame(f)); }

    StompStreamEvents* events = nullptr;
    Stream* live = nullptr;
    int created = 0;
};

struct Rig {
    FakeClock clock;
    EventLoop loop{clock};
    FakeNet net;
    std::unique_ptr<StompClient> client;
    std::vector<InboundRecord> received;

    explicit Rig(StompConfig c = config()) {
        auto r = StompClient::create(loop, std::move(c), net.factory());
        REQUIRE(r);
        client = std::move(*r);
        client->seedRetryJitter(42);
        client->onRecord([this](InboundRecord rec) { received.push_back(std::move(rec)); });
    }
    static StompConfig config() {
        StompConfig c;
        c.host = "broker.example";
        c.port = 61613;
        c.destination = "/queue/agent";
        c.endpointId = "os::0044FF-gw";
        c.serverRetryInitialInterval = 10s;
        c.serverRetryIntervalMultiplier = 2000;
        c.serverRetryMaxInterval = 60s;
        return c;
    }
    void advance(std::chrono::milliseconds d) {
        clock.advance(d);
        loop.runOnce(0ms);
    }
    // TCP up, CONNECTED (with extra headers), RECEIPT for the SUBSCRIBE.
    void bringUp(std::vector<std::pair<std::string, std::string>> connected = {}) {
        loop.runOnce(0ms);
        REQUIRE(net.live);
        net.events->onStreamConnected();
        connected.insert(connected.begin(), {"version", "1.2"});
        net.serverSends(StompFrame{"CONNECTED", connected, {}});
        auto frames = net.frames();
        REQUIRE(frames.size() >= 2);
        REQUIRE(frames.back().command == "SUBSCRIBE");
        net.serverSends(StompFrame{"RECEIPT", {{"receipt-id", *frames.back().header("receipt")}}, {}});
        REQUIRE(client->status() == MtpStatus::kUp);
    }
};

}  // namespace

TEST_CASE("The STOMP frame carries accept-version, host, login, endpoint-id and heart-beat", "[stomp]") {
    auto c = Rig::config();
    c.virtualHost = "vh";
    c.username = "u";
    c.password = "p";
    c.enableHeartbeats = true;
    c.outgoingHeartbeat = 15000ms;
    c.incomingHeartbeat = 10000ms;
    Rig rig(c);
    REQUIRE(rig.client->start());
    CHECK(rig.client->status() == MtpStatus::kConnecting);
    rig.net.events->onStreamConnected();
    auto f = rig.net.frames().at(0);
    CHECK(f.command == "STOMP");
    CHECK(f.header("accept-version") == "1.2");
    CHECK(f.header("host") == "vh");
    CHECK(f.header("login") == "u");
    CHECK(f.header("passcode") == "p");
    CHECK(f.header("endpoint-id") == "os\\c\\c0044FF-gw");
    CHECK(f.header("heart-beat") == "15000,10000");
}

TEST_CASE("Without heart-beats enabled the client offers 0,0 and host defaults to Host", "[stomp]") {
    Rig rig;
    REQUIRE(rig.client->start());
    rig.net.events->onStreamConnected();
    auto f = rig.net.frames().at(0);
    CHECK(f.header("heart-beat") == "0,0");
    CHECK(f.header("host") == "broker.example");
    CHECK_FALSE(f.header("login"));
}

TEST_CASE("Up only once the server acknowledged SUBSCRIBE, and records flow with the USP headers", "[stomp]") {
    Rig rig;
    std::vector<std::pair<MtpStatus, std::string>> statuses;
    rig.client->onStatus([&](MtpStatus s, const std::string& d) { statuses.emplace_back(s, d); });
    REQUIRE(rig.client->start());
    CHECK_FALSE(rig.client->send({"x", "/queue/c"}));
    rig.bringUp();
    CHECK(statuses.back() == std::make_pair(MtpStatus::kUp, "/queue/agent"s));
    auto sub = rig.net.frames().at(1);
    CHECK(sub.header("destination") == "/queue/agent");
    CHECK(sub.header("ack") == "auto");

    REQUIRE(rig.client->send({"rec\0ord"s, "/queue/c"}));
    auto send = rig.net.frames().back();
    CHECK(send.command == "SEND");
    CHECK(send.header("content-length") == "7");
    CHECK(send.header("content-type") == "application/vnd.bbf.usp.msg");
    CHECK(send.header("reply-to-dest") == "/queue/agent");
    CHECK(send.body == "rec\0ord"s);
    CHECK_FALSE(rig.client->send({"x", ""}));

    rig.net.serverSends(StompFrame{"MESSAGE", {{"reply-to-dest", "/queue/c"}, {"content-length", "2"}}, "hi"});
    REQUIRE(rig.received.size() == 1);
    CHECK(rig.received[0].payload == "hi");
    CHECK(rig.received[0].replyTo == "/queue/c");
}

TEST_CASE("subscribe-dest from CONNECTED wins over the configured Destination", "[stomp]") {
    Rig rig;
    REQUIRE(rig.client->start());
    rig.bringUp({{"subscribe-dest", "/queue/assigned"}});
    CHECK(rig.client->agentAddress() == "/queue/assigned");
    CHECK(rig.client->figures().destinationFromServer == "/queue/assigned");
    // A configured Destination change does not move a server-assigned subscription.
    auto c = rig.client->config();
    c.destination = "/queue/other";
    REQUIRE(rig.client->applyConfig(c));
    CHECK(rig.net.frames().size() == 2);
}

TEST_CASE("Retry waits follow the STOMP variant [0, m*k^(n-1)] capped at ServerRetryMaxInterval", "[stomp]") {
    Rig rig;
    REQUIRE(rig.client->start());
    rig.loop.runOnce(0ms);
    const std::chrono::milliseconds upper[] = {10s, 20s, 40s, 60s, 60s, 60s};
    for (unsigned n = 1; n <= 6; ++n) {
        REQUIRE(rig.net.live);
        rig.net.events->onStreamClosed("connection refused");
        auto f = rig.client->figures();
        CHECK(f.status == MtpStatus::kError);
        CHECK(f.retryCount == n);
        INFO("retry " << n << " waits " << f.nextRetryDelay.count() << " ms");
        CHECK(f.nextRetryDelay >= 0ms);
        CHECK(f.nextRetryDelay <= upper[n - 1]);
        const int before = rig.net.created;
        if (f.nextRetryDelay > 0ms) {
            rig.advance(f.nextRetryDelay - 1ms);
            CHECK(rig.net.created == before);  // not a moment early
        }
        rig.advance(1ms);
        CHECK(rig.net.created == before + 1);
        rig.loop.runOnce(0ms);
    }
    // Up resets the count.
    rig.net.events->onStreamConnected();
    rig.net.serverSends(StompFrame{"CONNECTED", {{"version", "1.2"}}, {}});
    rig.net.serverSends(StompFrame{"RECEIPT", {{"receipt-id", *rig.net.frames().back().header("receipt")}}, {}});
    CHECK(rig.client->figures().retryCount == 0);
}

TEST_CASE("Silence beyond the negotiated incoming interval plus grace drops the connection", "[stomp]") {
    auto c = Rig::config();
    c.enableHeartbeats = true;
    c.incomingHeartbeat = 1000ms;
    c.outgoingHeartbeat = 2000ms;
    c.heartbeatGrace = 500ms;
    Rig rig(c);
    REQUIRE(rig.client->start());
    rig.bringUp({{"heart-beat", "800,3000"}});
    CHECK(rig.client->figures().heartbeat.expect == 1000ms);
    CHECK(rig.client->figures().heartbeat.send == 3000ms);
    rig.advance(1400ms);
    rig.net.events->onStreamData("\n");  // a heart-beat restarts the watch
    rig.advance(1400ms);
    CHECK(rig.client->status() == MtpStatus::kUp);
    rig.advance(1600ms);  // 3000 ms since the last byte: also when our own beat goes out
    CHECK(rig.client->status() == MtpStatus::kError);
    CHECK(rig.client->figures().heartbeatTimeouts == 1);
    CHECK_THAT(rig.client->figures().statusDetail, Catch::Contains("no data from the server"));
}

TEST_CASE("Outgoing heart-beats are EOLs at the negotiated interval", "[stomp]") {
    auto c = Rig::config();
    c.enableHeartbeats = true;
    c.outgoingHeartbeat = 1000ms;
    Rig rig(c);
    REQUIRE(rig.client->start());
    rig.bringUp({{"heart-beat", "0,1500"}});
    const auto before = rig.net.live->written.size();
    rig.advance(1499ms);
    CHECK(rig.net.live->written.size() == before);
    rig.advance(1ms);
    CHECK(rig.net.live->written.substr(before) == "\n");
    CHECK(rig.client->figures().heartbeatsSent == 1);
    rig.advance(1500ms);
    CHECK(rig.client->figures().heartbeatsSent == 2);
}

TEST_CASE("No destination anywhere: DISCONNECT and retry (R-STOMP.16)", "[stomp]") {
    auto c = Rig::config();
    c.destination = "";
    Rig rig(c);
    REQUIRE(rig.client->start());
    rig.loop.runOnce(0ms);
    rig.net.events->onStreamConnected();
    auto* stream = rig.net.live;
    rig.net.serverSends(StompFrame{"CONNECTED", {{"version", "1.2"}}, {}});
    CHECK(stream->written.find("DISCONNECT\n") != std::string::npos);
    CHECK(rig.client->status() == MtpStatus::kError);
    CHECK(rig.client->figures().retryCount == 1);
}

TEST_CASE("ERROR frames and malformed input are counted, reported and retried", "[stomp]") {
    Rig rig;
    REQUIRE(rig.client->start());
    rig.bringUp();
    rig.net.serverSends(StompFrame{"ERROR", {{"message", "bad login"}}, {}});
    CHECK(rig.client->status() == MtpStatus::kError);
    CHECK(rig.client->figures().errorFrames == 1);
    CHECK_THAT(rig.client->figures().statusDetail, Catch::Contains("bad login"));
    rig.advance(rig.client->figures().nextRetryDelay);
    rig.loop.runOnce(0ms);
    rig.net.events->onStreamConnected();
    rig.net.events->onStreamData("\x01garbage\n\n"s);
    CHECK(rig.client->figures().protocolErrors == 1);
    CHECK(rig.client->status() == MtpStatus::kError);
}

TEST_CASE("A changed Destination is moved in place: UNSUBSCRIBE, SUBSCRIBE, Up again", "[stomp]") {
    Rig rig;
    REQUIRE(rig.client->start());
    rig.bringUp();
    auto c = rig.client->config();
    c.destination = "/queue/new";
    REQUIRE(rig.client->applyConfig(c));
    auto frames = rig.net.frames();
    REQUIRE(frames.size() == 4);
    CHECK(frames[2].command == "UNSUBSCRIBE");
    CHECK(frames[2].header("id") == frames[1].header("id"));
    CHECK(frames[3].header("destination") == "/queue/new");
    CHECK(rig.client->agentAddress() == "/queue/agent");  // until the server acknowledges
    rig.net.serverSends(StompFrame{"RECEIPT", {{"receipt-id", *frames[3].header("receipt")}}, {}});
    CHECK(rig.client->agentAddress() == "/queue/new");
    CHECK(rig.net.created == 1);
    // Connection settings changed: a new connection.
    c.port = 61614;
    REQUIRE(rig.client->applyConfig(c));
    rig.loop.runOnce(0ms);
    CHECK(rig.net.created == 2);
}

TEST_CASE("No answer within the connect timeout is a failed attempt", "[stomp]") {
    auto c = Rig::config();
    c.connectTimeout = 5s;
    Rig rig(c);
    REQUIRE(rig.client->start());
    rig.net.events->onStreamConnected();
    rig.advance(4999ms);
    CHECK(rig.client->status() == MtpStatus::kConnecting);
    rig.advance(1ms);
    CHECK(rig.client->status() == MtpStatus::kError);
    CHECK_THAT(rig.client->figures().statusDetail, Catch::Contains("no answer"));
}
TEST_CASE("A STOMP stream that was given up cannot call back: its late close counts no second failure", "[stomp]") {
    Rig rig;
    std::vector<MtpStatus> statuses;
    rig.client->onStatus([&](MtpStatus s, const std::string&) { statuses.push_back(s); });
    REQUIRE(rig.client->start());
    rig.bringUp();
    StompStreamEvents* old = rig.net.events;
    rig.net.serverSends(StompFrame{"ERROR", {{"message", "go away"}}, {}});
    REQUIRE(rig.client->figures().retryCount == 1);
    const auto detail = rig.client->figures().statusDetail;
    const auto reported = statuses.size();
    // What the old socket still has to say (the server closing after its ERROR frame)
    // arrives after the client gave the stream up: nothing may come of it.
    old->onStreamData(serializeStompFrame(StompFrame{"MESSAGE", {{"reply-to-dest", "/queue/c"}}, "late"}));
    old->onStreamClosed("connection closed by the server");
    CHECK(rig.client->figures().retryCount == 1);
    CHECK(rig.client->figures().statusDetail == detail);
    CHECK(statuses.size() == reported);
    CHECK(rig.received.empty());
    // The stream goes on the next loop turn, not inside its own callback.
    CHECK(rig.net.live != nullptr);
    rig.loop.runOnce(0ms);
    CHECK(rig.net.live == nullptr);
}

TEST_CASE("stop() during a STOMP connect reports Down and nothing arrives afterwards", "[stomp]") {
    Rig rig;
    std::vector<MtpStatus> statuses;
    rig.client->onStatus([&](MtpStatus s, const std::string&) { statuses.push_back(s); });
    REQUIRE(rig.client->start());
    StompStreamEvents* connecting = rig.net.events;
    rig.client->stop();
    REQUIRE_FALSE(statuses.empty());
    CHECK(statuses.back() == MtpStatus::kDown);
    const auto reported = statuses.size();
    connecting->onStreamClosed("connection refused");
    rig.advance(1h);
    CHECK(statuses.size() == reported);
    CHECK(rig.net.created == 1);
    CHECK(rig.client->status() == MtpStatus::kDown);
}

TEST_CASE("A STOMP host name is resolved on the given worker pool and the stream connects", "[stomp]") {
    SystemClock clock;
    EventLoop loop(clock);
    WorkerPool pool(loop, 1);
    // A listening socket on loopback, port chosen by the kernel.
    UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(listener);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listener.get(), 4) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);

    struct Events final : StompStreamEvents {
        void onStreamConnected() override { connected = true; }
        void onStreamData(std::string_view) override {}
        void onStreamClosed(const std::string& r) override { closed = r; }
        bool connected = false;
        std::string closed;
    } events;
    StompConfig c = Rig::config();
    c.host = "localhost";  // a name, not an address: resolution goes to the pool
    c.port = ntohs(addr.sin_port);
    auto stream = tcpStompStreamFactory(pool)(loop, c, events);
    REQUIRE(stream);
    CHECK(pool.threadCount() == 1);
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!events.connected && events.closed.empty() && std::chrono::steady_clock::now() < deadline)
        loop.runOnce(100ms);
    CHECK(events.closed.empty());
    CHECK(events.connected);

    // A stream destroyed while its lookup runs is never told the answer.
    Events quiet;
    auto quietPool = std::make_unique<WorkerPool>(loop, 1);
    auto gone = tcpStompStreamFactory(*quietPool)(loop, c, quiet);
    REQUIRE(gone);
    gone->reset();
    quietPool.reset();  // joins: the lookup has finished and posted its answer, or never ran
    for (int i = 0; i < 5; ++i) loop.runOnce(0ms);
    CHECK_FALSE(quiet.connected);
    CHECK(quiet.closed.empty());
}

#endif
