#include "berth/core/worker_pool.h"

#include <algorithm>

namespace berth {

WorkerPool::WorkerPool(EventLoop& loop, std::size_t maxThreads, std::chrono::milliseconds idleExit)
    : loop_(loop), maxThreads_(std::max<std::size_t>(maxThreads, 1)), idleExit_(idleExit) {}

WorkerPool::~WorkerPool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stopping_ = true;
        queue_.clear();
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
}

std::size_t WorkerPool::threadCount() const {
    std::lock_guard<std::mutex> lock(mu_);
    return live_;
}

void WorkerPool::joinFinished() {
    std::vector<std::thread::id> done;
    {
        std::lock_guard<std::mutex> lock(mu_);
        done.swap(finished_);
    }
    for (auto id : done) {
        auto it = std::find_if(threads_.begin(), threads_.end(), [id](const std::thread& t) { return t.get_id() == id; });
        if (it == threads_.end()) continue;
        it->join();  // it has left workerMain's loop; this returns at once
        threads_.erase(it);
    }
}

void WorkerPool::enqueue(std::function<void()> task) {
    // threads_ is only touched here and in the destructor, both on the owning thread.
    joinFinished();
    bool spawn = false;
    {
        std::lock_guard<std::mutex> lock(mu_);
        queue_.push_back(std::move(task));
        // A waiting worker takes the task; otherwise start one while under the limit.
        if (idle_ < queue_.size() && live_ < maxThreads_) {
            ++live_;
            spawn = true;
        }
    }
    if (spawn) threads_.emplace_back([this] { workerMain(); });
    cv_.notify_one();
}

void WorkerPool::workerMain() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
        ++idle_;
        bool ready = cv_.wait_for(lock, idleExit_, [this] { return stopping_ || !queue_.empty(); });
        --idle_;
        if (stopping_) return;
        if (!ready) {
            // Idle long enough: end, and let the owning thread join us on its next submit.
            --live_;
            finished_.push_back(std::this_thread::get_id());
            return;
        }
        auto task = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        task();
        task = nullptr;  // captured state is released outside the lock
        lock.lock();
    }
}

}  // namespace berth
