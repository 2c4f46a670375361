#pragma once
// StopDeadline: the last resort behind an orderly shutdown of a program (berthd,
// berth-sim). Once armed, the process exits with `exitCode` after the timeout unless
// disarm() came first, whatever the loop or a destructor is stuck in (a worker blocked in
// a download, a broker that never answers DISCONNECT). The exit is logged under `tag`.
//
// Threading: arm() and disarm() from one thread (the main one); the deadline waits on a
// thread of its own.

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace berth {

class StopDeadline {
public:
    StopDeadline(std::string tag, int exitCode) : tag_(std::move(tag)), exitCode_(exitCode) {}
    ~StopDeadline() { disarm(); }
    StopDeadline(const StopDeadline&) = delete;
    StopDeadline& operator=(const StopDeadline&) = delete;

    // Starts the countdown; a second arm() while armed does nothing.
    void arm(std::chrono::milliseconds timeout);
    // The orderly stop finished: no exit.
    void disarm();

private:
    std::string tag_;
    int exitCode_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false;
    std::thread thread_;
};

}  // namespace berth
