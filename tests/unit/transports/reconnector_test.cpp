// The reconnecting-MTP skeleton shared by the MQTT, STOMP and WebSocket clients, driven
// on a FakeClock: retry timing, stop during a connect, retired connections.
#include <catch2/catch.hpp>

#include "../../../transports/src/reconnector.h"

using namespace berth;
using namespace berth::transports;
using namespace std::chrono_literals;
using berth::transports::detail::Reconnector;

namespace {

struct Rig {
    FakeClock clock;
    EventLoop loop{clock};
    int attempts = 0;
    std::vector<std::pair<MtpStatus, std::string>> statuses;
    std::function<void()> onAttempt;
    Reconnector life{loop,
                     [this] {
                         ++attempts;
                         if (onAttempt) onAttempt();
                     },
                     [this](MtpStatus s, const std::string& d) { statuses.emplace_back(s, d); }};

    Rig() {
        RetrySchedule s;
        s.minWait = 5s;
        s.multiplier = 2000;
        s.maxWait = 60s;
        life.setSchedule(s);
        life.seed(7);
    }
    void advance(std::chrono::milliseconds d) {
        clock.advance(d);
        loop.runOnce(0ms);
    }
    void settle() { loop.runOnce(0ms); }
};

// Counts its own destruction.
struct Conn {
    explicit Conn(int& gone) : gone_(gone) {}
    ~Conn() { ++gone_; }
    int& gone_;
};

}  // namespace

TEST_CASE("start() makes one attempt at once and a second start() does nothing", "[reconnector]") {
    Rig rig;
    CHECK(rig.life.start());
    CHECK(rig.attempts == 1);
    CHECK(rig.life.running());
    CHECK_FALSE(rig.life.start());
    CHECK(rig.attempts == 1);
}

TEST_CASE("Retry waits follow the RetrySchedule on the loop's clock and restart once the connection is up",
          "[reconnector]") {
    Rig rig;
    REQUIRE(rig.life.start());
    const RetrySchedule& schedule = rig.life.schedule();
    for (unsigned n = 1; n <= 4; ++n) {
        auto wait = rig.life.scheduleRetry();
        auto [lo, hi] = schedule.range(n);
        CHECK(rig.life.retryCount() == n);
        CHECK(wait >= std::min(lo, schedule.maxWait));
        CHECK(wait <= std::min(hi, schedule.maxWait));
        CHECK(rig.life.pendingRetryDelay() == wait);
        const int before = rig.attempts;
        rig.advance(wait - 1ms);
        CHECK(rig.attempts == before);  // not a moment early
        rig.advance(1ms);
        CHECK(rig.attempts == before + 1);
        CHECK(rig.life.pendingRetryDelay() == 0ms);
    }
    // Waits are capped: the 4th range [40 s, 80 s] meets maxWait 60 s.
    rig.life.succeeded();
    CHECK(rig.life.retryCount() == 0);
    auto wait = rig.life.scheduleRetry();
    CHECK(wait >= 5s);
    CHECK(wait <= 10s);
}

TEST_CASE("The same seed gives the same retry waits", "[reconnector]") {
    Rig a, b;
    REQUIRE(a.life.start());
    REQUIRE(b.life.start());
    for (int i = 0; i < 5; ++i) CHECK(a.life.scheduleRetry() == b.life.scheduleRetry());
}

TEST_CASE("connectNow() drops the pending retry and attempts at once", "[reconnector]") {
    Rig rig;
    REQUIRE(rig.life.start());
    auto wait = rig.life.scheduleRetry();
    rig.life.connectNow();
    CHECK(rig.attempts == 2);
    CHECK(rig.life.pendingRetryDelay() == 0ms);
    rig.advance(wait + 1s);
    CHECK(rig.attempts == 2);
}

TEST_CASE("stop() during a connect attempt reports Down once, then no retry and no status ever",
          "[reconnector]") {
    Rig rig;
    REQUIRE(rig.life.start());
    rig.life.setStatus(MtpStatus::kConnecting, "connecting");
    rig.life.stop();
    REQUIRE_FALSE(rig.statuses.empty());
    CHECK(rig.statuses.back() == std::make_pair(MtpStatus::kDown, std::string("stopped")));
    const auto reported = rig.statuses.size();
    // A late answer from the attempt that was under way finds nothing to do.
    rig.life.setStatus(MtpStatus::kError, "connection refused");
    CHECK(rig.life.scheduleRetry() == 0ms);
    rig.advance(1h);
    CHECK(rig.attempts == 1);
    CHECK(rig.statuses.size() == reported);
    rig.life.stop();  // twice is harmless
    CHECK(rig.statuses.size() == reported);
}

TEST_CASE("stop() while a retry is pending cancels it", "[reconnector]") {
    Rig rig;
    REQUIRE(rig.life.start());
    auto wait = rig.life.scheduleRetry();
    rig.life.stop();
    CHECK(rig.life.pendingRetryDelay() == 0ms);
    rig.advance(wait * 2);
    CHECK(rig.attempts == 1);
    // start() again counts from the first retry.
    REQUIRE(rig.life.start());
    CHECK(rig.attempts == 2);
    CHECK(rig.life.retryCount() == 0);
}

TEST_CASE("Status is reported when the state or the detail changes, and for every Up", "[reconnector]") {
    Rig rig;
    rig.life.setStatus(MtpStatus::kConnecting, "before start");  // not running: kept, not reported
    CHECK(rig.statuses.empty());
    REQUIRE(rig.life.start());
    rig.life.setStatus(MtpStatus::kConnecting, "connecting");
    rig.life.setStatus(MtpStatus::kConnecting, "connecting");
    rig.life.setStatus(MtpStatus::kError, "refused");
    rig.life.setStatus(MtpStatus::kError, "timed out");
    rig.life.setStatus(MtpStatus::kUp, "topic");
    rig.life.setStatus(MtpStatus::kUp, "topic");
    REQUIRE(rig.statuses.size() == 5);
    CHECK(rig.statuses[0].second == "connecting");
    CHECK(rig.statuses[2].second == "timed out");
    CHECK(rig.statuses[3].first == MtpStatus::kUp);
    CHECK(rig.statuses[4].first == MtpStatus::kUp);
    CHECK(rig.life.status() == MtpStatus::kUp);
    CHECK(rig.life.detail() == "topic");
}

TEST_CASE("A retired connection is destroyed on the next loop turn, never inside the call that retired it",
          "[reconnector]") {
    Rig rig;
    int gone = 0;
    rig.life.retire(std::make_unique<Conn>(gone));
    CHECK(gone == 0);
    CHECK(rig.life.retiredCount() == 1);
    rig.settle();
    CHECK(gone == 1);
    CHECK(rig.life.retiredCount() == 0);
}

TEST_CASE("A retired connection with a grace period goes after markDone and the grace, or at the maximum",
          "[reconnector]") {
    Rig rig;
    const Reconnector::Grace grace{200ms, 2s};
    int doneGone = 0, silentGone = 0;
    auto markDone = rig.life.retire(std::make_unique<Conn>(doneGone), grace);
    rig.life.retire(std::make_unique<Conn>(silentGone), grace);
    rig.advance(300ms);
    CHECK(doneGone == 0);  // not done yet: its library may still be calling back
    markDone();
    rig.advance(200ms);
    CHECK(doneGone == 1);
    CHECK(silentGone == 0);
    rig.advance(1600ms);
    CHECK(silentGone == 1);  // never said done: gone at the maximum
    CHECK(rig.life.retiredCount() == 0);
}

TEST_CASE("markDone() after the skeleton is gone does nothing, and destruction frees retired connections",
          "[reconnector]") {
    int gone = 0;
    std::function<void()> markDone;
    {
        Rig rig;
        markDone = rig.life.retire(std::make_unique<Conn>(gone), Reconnector::Grace{200ms, 2s});
    }
    CHECK(gone == 1);
    markDone();
}

TEST_CASE("A retire() from inside a retired connection's destructor is kept for a later timer", "[reconnector]") {
    Rig rig;
    int outerGone = 0, innerGone = 0, innerGoneWhenRetired = -1;
    struct Chained {
        Chained(Reconnector& l, int& o, int& i, int& seen) : life(l), outer(o), inner(i), innerSeen(seen) {}
        ~Chained() {
            ++outer;
            life.retire(std::make_unique<Conn>(inner));
            innerSeen = inner;
        }
        Reconnector& life;
        int& outer;
        int& inner;
        int& innerSeen;
    };
    rig.life.retire(std::make_unique<Chained>(rig.life, outerGone, innerGone, innerGoneWhenRetired));
    rig.settle();
    rig.settle();
    CHECK(outerGone == 1);
    CHECK(innerGoneWhenRetired == 0);  // not destroyed inside the retire() call
    CHECK(innerGone == 1);
    CHECK(rig.life.retiredCount() == 0);
}
