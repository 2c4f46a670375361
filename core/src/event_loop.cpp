// A small epoll loop rather than libuv or Asio: both keep their own notion of "now"
// that cannot be replaced by an injected clock, and fake-clock tests of every timer in
// the agent (retry schedules, notification retries, deadlines) matter more to us than
// the features those libraries add. Timers live in an ordered map keyed by deadline;
// epoll_wait's timeout is the time to the next deadline.
#include "berth/core/event_loop.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <unordered_map>

#include "berth/core/log.h"

namespace berth {

class TimerImpl;
class FdWatchImpl;

struct EventLoop::Impl {
    explicit Impl(Clock& c) : clock(c) {}
    Clock& clock;
    UniqueFd epoll;
    UniqueFd wake;
    std::atomic<bool> stopRequested{false};
    std::atomic<std::thread::id> loopThread{};

    std::mutex postMu;
    std::deque<std::function<void()>> posted;

    // (deadline, sequence) keeps equal deadlines in arming order.
    std::map<std::pair<Clock::MonoTime, std::uint64_t>, TimerImpl*> timers;
    std::uint64_t timerSeq = 0;

    std::unordered_map<std::uint64_t, FdWatchImpl*> watches;
    std::uint64_t nextWatchId = 1;

    void dispatchTimers();
    void dispatchPosted();
};

class TimerImpl final : public Timer {
public:
    TimerImpl(EventLoop::Impl& loop, std::function<void()> cb) : loop_(loop), cb_(std::move(cb)) {}
    ~TimerImpl() override {
        cancel();
        if (destroyedFlag_) *destroyedFlag_ = true;
    }

    void start(std::chrono::milliseconds delay, bool periodic) override {
        cancel();
        if (delay.count() < 0) delay = std::chrono::milliseconds(0);
        period_ = periodic ? std::max(delay, std::chrono::milliseconds(1)) : std::chrono::milliseconds(0);
        arm(loop_.clock.now() + delay);
    }
    void cancel() override {
        if (armed_) {
            loop_.timers.erase(key_);
            armed_ = false;
        }
    }
    bool armed() const override { return armed_; }

    void arm(Clock::MonoTime deadline) {
        key_ = {deadline, ++loop_.timerSeq};
        loop_.timers.emplace(key_, this);
        armed_ = true;
    }
    // Called by the loop after removing this timer from the map.
    void fire() {
        armed_ = false;
        if (period_.count() > 0) arm(key_.first + period_);
        // The callback may destroy this timer: run it from a local and put it back only
        // if the timer survived.
        bool destroyed = false;
        destroyedFlag_ = &destroyed;
        auto cb = std::move(cb_);
        cb();
        if (destroyed) return;
        destroyedFlag_ = nullptr;
        cb_ = std::move(cb);
    }

private:
    EventLoop::Impl& loop_;
    std::function<void()> cb_;
    std::chrono::milliseconds period_{0};
    std::pair<Clock::MonoTime, std::uint64_t> key_;
    bool armed_ = false;
    bool* destroyedFlag_ = nullptr;
};

class FdWatchImpl final : public FdWatch {
public:
    FdWatchImpl(EventLoop::Impl& loop, int fd, std::function<void(std::uint32_t)> cb)
        : loop_(loop), fd_(fd), cb_(std::move(cb)), id_(loop.nextWatchId++) {}
    ~FdWatchImpl() override {
        if (registered_) ::epoll_ctl(loop_.epoll.get(), EPOLL_CTL_DEL, fd_, nullptr);
        loop_.watches.erase(id_);
        if (destroyedFlag_) *destroyedFlag_ = true;
    }
    Status add(std::uint32_t events) {
        epoll_event ev{};
        ev.events = events;
        ev.data.u64 = id_;
        if (::epoll_ctl(loop_.epoll.get(), EPOLL_CTL_ADD, fd_, &ev) != 0) return sysError("epoll_ctl add", errno);
        registered_ = true;
        loop_.watches[id_] = this;
        return {};
    }
    Status setEvents(std::uint32_t events) override {
        epoll_event ev{};
        ev.events = events;
        ev.data.u64 = id_;
        if (::epoll_ctl(loop_.epoll.get(), EPOLL_CTL_MOD, fd_, &ev) != 0) return sysError("epoll_ctl mod", errno);
        return {};
    }
    // The callback may destroy this watch (a child exited, a peer hung up): run it from
    // a local and put it back only if the watch survived.
    void fire(std::uint32_t events) {
        bool destroyed = false;
        destroyedFlag_ = &destroyed;
        auto cb = std::move(cb_);
        cb(events);
        if (destroyed) return;
        destroyedFlag_ = nullptr;
        cb_ = std::move(cb);
    }

private:
    EventLoop::Impl& loop_;
    int fd_;
    std::function<void(std::uint32_t)> cb_;
    std::uint64_t id_;
    bool registered_ = false;
    bool* destroyedFlag_ = nullptr;
};

class SignalWatchImpl final : public SignalWatch {
public:
    UniqueFd fd;
    std::unique_ptr<FdWatch> watch;
};

EventLoop::EventLoop(Clock& clock) : clock_(clock), impl_(std::make_unique<Impl>(clock)) {
    impl_->epoll.reset(::epoll_create1(EPOLL_CLOEXEC));
    impl_->wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!impl_->epoll || !impl_->wake) {
        // Out of fds at construction: nothing sensible can run.
        BERTH_LOG_ERROR("loop") << "cannot create epoll/eventfd: " << std::strerror(errno);
        std::abort();
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0;  // id 0 = wake-up eventfd
    ::epoll_ctl(impl_->epoll.get(), EPOLL_CTL_ADD, impl_->wake.get(), &ev);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

EventLoop::~EventLoop() = default;

void EventLoop::run() {
    while (runOnce(std::chrono::hours(1))) {
    }
}

bool EventLoop::runOnce(std::chrono::milliseconds maxWait) {
    Impl& d = *impl_;
    d.loopThread.store(std::this_thread::get_id());
    if (d.stopRequested.load()) return false;

    auto timeout = maxWait;
    {
        std::lock_guard<std::mutex> lock(d.postMu);
        if (!d.posted.empty()) timeout = std::chrono::milliseconds(0);
    }
    if (!d.timers.empty()) {
        auto until = std::chrono::ceil<std::chrono::milliseconds>(d.timers.begin()->first.first - clock_.now());
        if (until < timeout) timeout = std::max(until, std::chrono::milliseconds(0));
    }

    epoll_event events[64];
    int n = ::epoll_wait(d.epoll.get(), events, 64, static_cast<int>(std::min<long long>(timeout.count(), 1 << 30)));
    if (n < 0 && errno != EINTR) {
        BERTH_LOG_ERROR("loop") << "epoll_wait: " << std::strerror(errno);
    }
    for (int i = 0; i < n; ++i) {
        std::uint64_t id = events[i].data.u64;
        if (id == 0) {
            std::uint64_t v;
            while (::read(d.wake.get(), &v, sizeof v) > 0) {
            }
            continue;
        }
        auto it = d.watches.find(id);
        if (it != d.watches.end()) it->second->fire(events[i].events);  // destroyed watches are skipped
    }
    d.dispatchTimers();
    d.dispatchPosted();
    return !d.stopRequested.load();
}

void EventLoop::Impl::dispatchTimers() {
    auto now = clock.now();
    // Bounded so that a periodic timer behind a large fake-clock jump cannot spin forever.
    for (int fired = 0; fired < 100000 && !timers.empty(); ++fired) {
        auto it = timers.begin();
        if (it->first.first > now) break;
        TimerImpl* t = it->second;
        timers.erase(it);
        t->fire();
    }
}

void EventLoop::Impl::dispatchPosted() {
    std::deque<std::function<void()>> batch;
    {
        std::lock_guard<std::mutex> lock(postMu);
        batch.swap(posted);
    }
    // A flood of posted work (records from a busy MTP thread) must not keep the loop
    // from its fds: signals (SIGTERM) and other peers' sockets are looked at again after
    // kPostedSlice of posted work, and nothing more runs once stop() was asked for. The
    // slice is CPU time spent here, so it is measured on the real steady clock.
    constexpr auto kPostedSlice = std::chrono::milliseconds(20);
    const auto until = std::chrono::steady_clock::now() + kPostedSlice;
    while (!batch.empty()) {
        auto fn = std::move(batch.front());
        batch.pop_front();
        fn();
        if (batch.empty()) break;
        if (stopRequested.load() || std::chrono::steady_clock::now() >= until) {
            // The rest runs first at the next turn, in order, ahead of newer posts.
            std::lock_guard<std::mutex> lock(postMu);
            while (!batch.empty()) {
                posted.push_front(std::move(batch.back()));
                batch.pop_back();
            }
            break;
        }
    }
}

void EventLoop::stop() {
    impl_->stopRequested.store(true);
    std::uint64_t one = 1;
    (void)!::write(impl_->wake.get(), &one, sizeof one);
}

bool EventLoop::stopped() const { return impl_->stopRequested.load(); }

void EventLoop::post(std::function<void()> fn) {
    {
        std::lock_guard<std::mutex> lock(impl_->postMu);
        impl_->posted.push_back(std::move(fn));
    }
    std::uint64_t one = 1;
    (void)!::write(impl_->wake.get(), &one, sizeof one);
}

std::unique_ptr<Timer> EventLoop::createTimer(std::function<void()> callback) {
    return std::make_unique<TimerImpl>(*impl_, std::move(callback));
}

Result<std::unique_ptr<FdWatch>> EventLoop::watchFd(int fd, std::uint32_t events,
                                                    std::function<void(std::uint32_t)> callback) {
    auto w = std::make_unique<FdWatchImpl>(*impl_, fd, std::move(callback));
    BERTH_TRY(w->add(events));
    return std::unique_ptr<FdWatch>(std::move(w));
}

Result<std::unique_ptr<SignalWatch>> EventLoop::watchSignals(std::initializer_list<int> signals,
                                                             std::function<void(int)> callback) {
    sigset_t set;
    sigemptyset(&set);
    for (int s : signals) sigaddset(&set, s);
    if (pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) return sysError("pthread_sigmask", errno);
    auto w = std::make_unique<SignalWatchImpl>();
    w->fd.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!w->fd) return sysError("signalfd", errno);
    int fd = w->fd.get();
    auto watch = watchFd(fd, EPOLLIN, [fd, callback = std::move(callback)](std::uint32_t) {
        signalfd_siginfo info;
        while (::read(fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
            callback(static_cast<int>(info.ssi_signo));
        }
    });
    if (!watch) return std::move(watch).error();
    w->watch = std::move(*watch);
    return std::unique_ptr<SignalWatch>(std::move(w));
}

bool EventLoop::isLoopThread() const { return impl_->loopThread.load() == std::this_thread::get_id(); }

}  // namespace berth
