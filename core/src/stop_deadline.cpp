#include "berth/core/stop_deadline.h"

#include <cstdlib>

#include "berth/core/log.h"

namespace berth {

void StopDeadline::arm(std::chrono::milliseconds timeout) {
    if (thread_.joinable()) return;
    thread_ = std::thread([this, timeout] {
        std::unique_lock<std::mutex> lock(mu_);
        if (cv_.wait_for(lock, timeout, [this] { return done_; })) return;
        BERTH_LOG_ERROR(tag_) << "shutdown did not finish within " << timeout.count() << " ms; exiting now";
        std::_Exit(exitCode_);
    });
}

void StopDeadline::disarm() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

}  // namespace berth
