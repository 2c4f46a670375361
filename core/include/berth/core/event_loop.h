#pragma once
// EventLoop: one thread's dispatcher (epoll). It owns fd watches, timers and signal
// watches; post() is the only method that may be called from another thread.
//
// Ownership: createTimer()/watchFd()/watchSignals() return owning handles; destroying
// a handle cancels it, so a callback never reaches a destroyed object. Handles must be
// destroyed before the loop, on the loop thread.
//
// Time comes from the injected Clock. With a FakeClock, tests call clock.advance()
// and then runOnce(0ms) to fire whatever became due.

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "berth/core/clock.h"
#include "berth/core/fd.h"
#include "berth/core/result.h"

namespace berth {

class EventLoop;

class Timer {
public:
    virtual ~Timer() = default;
    // (Re)arms the timer to fire once after `delay` (periodic=false) or every
    // `delay` (periodic=true). Re-arming an armed timer replaces its schedule.
    virtual void start(std::chrono::milliseconds delay, bool periodic = false) = 0;
    virtual void cancel() = 0;
    virtual bool armed() const = 0;
};

class FdWatch {
public:
    virtual ~FdWatch() = default;
    // Changes the watched events (EPOLLIN, EPOLLOUT, ...).
    virtual Status setEvents(std::uint32_t events) = 0;
};

class SignalWatch {
public:
    virtual ~SignalWatch() = default;
};

class EventLoop {
public:
    // Blocks SIGPIPE for the calling thread (writes to closed sockets return EPIPE).
    explicit EventLoop(Clock& clock);
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // Runs until stop(). Must be called on the thread that will own the loop; that
    // thread becomes the loop thread.
    void run();
    // Waits at most maxWait for events, dispatches what is ready (fds, due timers,
    // posted work) and returns. Returns false once stop() has been called.
    bool runOnce(std::chrono::milliseconds maxWait);
    // Asks run() to return. Thread-safe.
    void stop();
    bool stopped() const;

    // Queues fn to run on the loop thread. Thread-safe; the only cross-thread entry.
    void post(std::function<void()> fn);

    std::unique_ptr<Timer> createTimer(std::function<void()> callback);
    // Calls callback(events) when fd is ready. The fd is borrowed and must outlive the watch.
    Result<std::unique_ptr<FdWatch>> watchFd(int fd, std::uint32_t events,
                                             std::function<void(std::uint32_t)> callback);
    // Delivers the given signals through a signalfd. The signals are blocked in the
    // calling thread; call this before starting other threads so they inherit the mask.
    Result<std::unique_ptr<SignalWatch>> watchSignals(std::initializer_list<int> signals,
                                                      std::function<void(int)> callback);

    Clock& clock() const { return clock_; }
    bool isLoopThread() const;

    // Internal: used by handle implementations.
    struct Impl;
    Impl& impl() { return *impl_; }

private:
    Clock& clock_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace berth
