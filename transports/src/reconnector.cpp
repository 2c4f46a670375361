#include "reconnector.h"

#include <algorithm>
#include <sstream>

namespace berth::transports::detail {

std::string formatSeconds(std::chrono::milliseconds d) {
    std::ostringstream os;
    os.precision(1);
    os << std::fixed << static_cast<double>(d.count()) / 1000.0 << " s";
    return os.str();
}

Reconnector::Reconnector(EventLoop& loop, AttemptFn attempt, StatusFn report)
    : loop_(loop), attempt_(std::move(attempt)), report_(std::move(report)), rng_(std::random_device{}()),
      self_(std::make_shared<Reconnector*>(this)) {
    retryTimer_ = loop_.createTimer([this] { connectNow(); });
    reaper_ = loop_.createTimer([this] { reap(); });
}

Reconnector::~Reconnector() {
    running_ = false;
    retryTimer_.reset();
    reaper_.reset();
    retired_.clear();
}

bool Reconnector::start() {
    if (running_) return false;
    running_ = true;
    retryCount_ = 0;
    connectNow();
    return true;
}

void Reconnector::stop(const std::string& detail) {
    if (!running_) return;
    cancelRetry();
    setStatus(MtpStatus::kDown, detail);
    running_ = false;
}

void Reconnector::connectNow() {
    cancelRetry();
    if (!running_) return;
    attempt_();
}

std::chrono::milliseconds Reconnector::scheduleRetry() {
    if (!running_) return std::chrono::milliseconds(0);
    ++retryCount_;
    nextRetryDelay_ = schedule_.delay(retryCount_, rng_);
    retryTimer_->start(nextRetryDelay_);
    return nextRetryDelay_;
}

void Reconnector::cancelRetry() {
    retryTimer_->cancel();
    nextRetryDelay_ = {};
}

void Reconnector::succeeded() {
    retryCount_ = 0;
    nextRetryDelay_ = {};
}

std::chrono::milliseconds Reconnector::pendingRetryDelay() const {
    return retryTimer_->armed() ? nextRetryDelay_ : std::chrono::milliseconds(0);
}

void Reconnector::setStatus(MtpStatus s, const std::string& detail) {
    const bool changed = s != status_ || detail != detail_ || s == MtpStatus::kUp;
    status_ = s;
    detail_ = detail;
    if (changed && running_ && report_) report_(s, detail);
}

std::function<void()> Reconnector::park(std::unique_ptr<Owned> conn, Grace grace) {
    const std::uint64_t id = nextRetiredId_++;
    retired_.push_back({std::move(conn), loop_.clock().now(), grace, id, false});
    if (grace.grace.count() == 0)
        reaper_->start(std::chrono::milliseconds(0));
    else if (!reaper_->armed())
        reaper_->start(grace.grace);
    std::weak_ptr<Reconnector*> weak = self_;
    return [weak, id] {
        auto self = weak.lock();
        if (!self) return;
        for (auto& r : (*self)->retired_)
            if (r.id == id) r.done = true;
    };
}

void Reconnector::reap() {
    const auto now = loop_.clock().now();
    // Destroyed outside the list walk: a destructor may retire or post again.
    std::list<Retired> gone;
    for (auto it = retired_.begin(); it != retired_.end();) {
        const auto age = now - it->since;
        if ((it->done && age >= it->grace.grace) || age >= it->grace.max) {
            auto next = std::next(it);
            gone.splice(gone.end(), retired_, it);
            it = next;
        } else {
            ++it;
        }
    }
    gone.clear();
    if (retired_.empty() || reaper_->armed()) return;
    auto again = std::chrono::milliseconds::max();
    for (const auto& r : retired_) {
        const auto wait = r.grace.grace.count() > 0 ? r.grace.grace : r.grace.max;
        again = std::min(again, wait);
    }
    reaper_->start(again);
}

}  // namespace berth::transports::detail
