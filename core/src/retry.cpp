#include "berth/core/retry.h"

#include <algorithm>
#include <cmath>

namespace berth {

std::pair<std::chrono::milliseconds, std::chrono::milliseconds> RetrySchedule::range(unsigned attempt) const {
    unsigned n = std::clamp(attempt, 1u, 10u);
    double k = static_cast<double>(multiplier) / 1000.0;
    double m = static_cast<double>(minWait.count());
    double lo = m * std::pow(k, static_cast<double>(n - 1));
    double hi = m * std::pow(k, static_cast<double>(n));
    if (kind == Kind::kStomp) {
        hi = lo;
        lo = 0;
    }
    auto cap = [this](double v) {
        // Clamp before converting so huge multipliers cannot overflow.
        double limit = maxWait.count() > 0 ? static_cast<double>(maxWait.count()) : 1e15;
        return std::chrono::milliseconds(static_cast<long long>(std::min(v, limit)));
    };
    return {cap(lo), cap(hi)};
}

std::chrono::milliseconds RetrySchedule::delay(unsigned attempt, std::mt19937_64& rng) const {
    auto [lo, hi] = range(attempt);
    if (hi <= lo) return lo;
    std::uniform_int_distribution<long long> dist(lo.count(), hi.count());
    return std::chrono::milliseconds(dist(rng));
}

}  // namespace berth
