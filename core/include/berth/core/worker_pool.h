#pragma once
// WorkerPool: a few threads for blocking work (downloads, hashing, unpacking). A job's
// result is posted back to the owning EventLoop and delivered there, unless the job
// was cancelled first.
//
//   auto job = pool.submit<Result<Bytes>>(
//       [](const CancelToken& c) { return download(url, c); },
//       [this](Result<Bytes> r) { onDownloaded(std::move(r)); });
//   // destroying `job` (or job->cancel()) means the completion is never called
//
// Threads start on demand, up to the given maximum, and a thread idle for `idleExit`
// ends, so an idle agent carries no worker threads.
//
// submit() and Job methods are called on the loop thread. The work function runs on
// a worker thread and must not touch loop-owned state; it may poll the CancelToken to
// stop early.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "berth/core/event_loop.h"

namespace berth {

class CancelToken {
public:
    bool cancelled() const { return flag_->load(std::memory_order_acquire); }
    void cancel() const { flag_->store(true, std::memory_order_release); }

private:
    std::shared_ptr<std::atomic<bool>> flag_ = std::make_shared<std::atomic<bool>>(false);
};

class Job {
public:
    explicit Job(CancelToken token) : token_(std::move(token)) {}
    Job(const Job&) = delete;
    Job& operator=(const Job&) = delete;
    ~Job() { token_.cancel(); }
    void cancel() { token_.cancel(); }
    const CancelToken& token() const { return token_; }

private:
    CancelToken token_;
};

class WorkerPool {
public:
    // At most maxThreads (at least 1) run at once; none before the first submit().
    WorkerPool(EventLoop& loop, std::size_t maxThreads,
               std::chrono::milliseconds idleExit = std::chrono::seconds(5));
    ~WorkerPool();  // cancels queued jobs, joins the threads
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    template <typename R>
    std::unique_ptr<Job> submit(std::function<R(const CancelToken&)> work,
                                std::function<void(R)> done) {
        CancelToken token;
        auto job = std::make_unique<Job>(token);
        enqueue([this, token, work = std::move(work), done = std::move(done)]() mutable {
            if (token.cancelled()) return;
            auto result = std::make_shared<R>(work(token));
            loop_.post([token, result, done = std::move(done)]() mutable {
                if (!token.cancelled()) done(std::move(*result));
            });
        });
        return job;
    }

    // Worker threads running now (busy or waiting for work). Thread-safe.
    std::size_t threadCount() const;

private:
    void enqueue(std::function<void()> task);
    void workerMain();
    void joinFinished();

    EventLoop& loop_;
    std::size_t maxThreads_;
    std::chrono::milliseconds idleExit_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> queue_;
    bool stopping_ = false;
    std::size_t live_ = 0;  // threads not yet finished
    std::size_t idle_ = 0;  // of those, waiting for work
    std::vector<std::thread> threads_;
    std::vector<std::thread::id> finished_;  // ended after idleExit_, to be joined
};

}  // namespace berth
