#include "berth/core/clock.h"

#include <ctime>
#include <string>

namespace berth {

FakeClock::FakeClock()
    : mono_(std::chrono::steady_clock::time_point(std::chrono::hours(1000))),
      wall_(std::chrono::system_clock::time_point(std::chrono::seconds(1704067200))) {}  // 2024-01-01

Clock::MonoTime FakeClock::now() const {
    std::lock_guard<std::mutex> lock(mu_);
    return mono_;
}

Clock::WallTime FakeClock::wallNow() const {
    std::lock_guard<std::mutex> lock(mu_);
    return wall_;
}

void FakeClock::advance(std::chrono::nanoseconds d) {
    std::lock_guard<std::mutex> lock(mu_);
    mono_ += d;
    wall_ += std::chrono::duration_cast<std::chrono::system_clock::duration>(d);
}

void FakeClock::setWall(WallTime t) {
    std::lock_guard<std::mutex> lock(mu_);
    wall_ = t;
}

std::string formatDateTime(Clock::WallTime t) {
    std::time_t secs = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace berth
