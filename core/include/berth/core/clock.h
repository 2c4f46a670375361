#pragma once
// An injected clock. Production code reads time only through a Clock so tests can
// advance a FakeClock instead of sleeping.
//
// Thread-safety: every method may be called from any thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace berth {

class Clock {
public:
    using MonoTime = std::chrono::steady_clock::time_point;
    using WallTime = std::chrono::system_clock::time_point;

    virtual ~Clock() = default;
    // Monotonic time: timers, deadlines, durations.
    virtual MonoTime now() const = 0;
    // Calendar time: dateTime parameters, timestamps in logs and events.
    virtual WallTime wallNow() const = 0;
};

class SystemClock final : public Clock {
public:
    MonoTime now() const override { return std::chrono::steady_clock::now(); }
    WallTime wallNow() const override { return std::chrono::system_clock::now(); }
};

// A clock that moves only when told. Starts at an arbitrary fixed point.
class FakeClock final : public Clock {
public:
    FakeClock();
    MonoTime now() const override;
    WallTime wallNow() const override;
    void advance(std::chrono::nanoseconds d);
    void setWall(WallTime t);

private:
    mutable std::mutex mu_;
    MonoTime mono_;
    WallTime wall_;
};

// Formats a wall time as TR-106 dateTime ("2024-01-01T00:00:00Z"), UTC, seconds precision.
std::string formatDateTime(Clock::WallTime t);

}  // namespace berth
