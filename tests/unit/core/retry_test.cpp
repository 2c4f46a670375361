#include <catch2/catch.hpp>
#include <set>

#include "berth/core/retry.h"

using namespace std::chrono_literals;
using berth::RetrySchedule;

TEST_CASE("The TR-369 retry range doubles per attempt from the minimum wait", "[core][retry]") {
    RetrySchedule s;  // m = 5 s, k = 2000
    CHECK(s.range(1) == std::pair{5000ms, 10000ms});
    CHECK(s.range(2) == std::pair{10000ms, 20000ms});
    CHECK(s.range(3) == std::pair{20000ms, 40000ms});
}

TEST_CASE("From the tenth retry on the range stays at the tenth", "[core][retry]") {
    RetrySchedule s;
    CHECK(s.range(10) == s.range(11));
    CHECK(s.range(10) == s.range(1000));
    CHECK(s.range(10).first == 5000ms * 512);
}

TEST_CASE("The maximum interval caps the wait", "[core][retry]") {
    RetrySchedule s;
    s.maxWait = 30s;
    CHECK(s.range(3) == std::pair{20000ms, 30000ms});
    CHECK(s.range(9) == std::pair{30000ms, 30000ms});
    std::mt19937_64 rng(1);
    for (unsigned n = 1; n < 20; ++n) CHECK(s.delay(n, rng) <= 30s);
}

TEST_CASE("Random delays fall within the range and vary", "[core][retry]") {
    RetrySchedule s;
    s.minWait = 1000ms;
    s.multiplier = 1500;
    std::mt19937_64 rng(42);
    std::set<long long> seen;
    for (int i = 0; i < 200; ++i) {
        auto d = s.delay(2, rng);
        CHECK(d >= 1500ms);
        CHECK(d <= 2250ms);
        seen.insert(d.count());
    }
    CHECK(seen.size() > 20);
}

TEST_CASE("The STOMP variant waits between zero and the previous bound", "[core][retry]") {
    RetrySchedule s;
    s.kind = RetrySchedule::Kind::kStomp;
    s.minWait = 60000ms;
    CHECK(s.range(1) == std::pair{0ms, 60000ms});
    CHECK(s.range(2) == std::pair{0ms, 120000ms});
}
