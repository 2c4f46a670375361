#pragma once
// The TR-369 retry schedule, shared by MQTT reconnects, WebSocket session retries and
// notification retries: the n-th retry (n >= 1) waits a random time in
//   [m * (k/1000)^(n-1), m * (k/1000)^n]
// where m is the minimum wait and k the interval multiplier (2000 = x2.0). From the
// 10th retry on, the n=10 range is used. The result is capped at maxWait when set.
//
// STOMP's variant (TR-181 STOMP.Connection.ServerRetry*) waits a random time in
// [0, m * (k/1000)^(n-1)] instead; use Kind::kStomp for it.

#include <chrono>
#include <cstdint>
#include <random>

namespace berth {

struct RetrySchedule {
    enum class Kind { kUsp, kStomp };
    std::chrono::milliseconds minWait{std::chrono::seconds(5)};
    std::uint32_t multiplier = 2000;          // k, thousandths
    std::chrono::milliseconds maxWait{0};     // 0: no cap
    Kind kind = Kind::kUsp;

    // Lower and upper bound of the wait before retry number `attempt` (1-based).
    std::pair<std::chrono::milliseconds, std::chrono::milliseconds> range(unsigned attempt) const;
    // A uniformly random wait within range(attempt), capped at maxWait.
    std::chrono::milliseconds delay(unsigned attempt, std::mt19937_64& rng) const;
};

}  // namespace berth
