#include <signal.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <thread>
#include <vector>

#include "berth/core/event_loop.h"
#include "berth/core/worker_pool.h"
#include "berth/testing/support.h"

using namespace std::chrono_literals;
using berth::EventLoop;
using berth::FakeClock;

TEST_CASE("A one-shot timer fires once when the fake clock reaches its deadline", "[core][loop]") {
    FakeClock clock;
    EventLoop loop(clock);
    int fired = 0;
    auto t = loop.createTimer([&] { ++fired; });
    t->start(100ms);
    loop.runOnce(0ms);
    CHECK(fired == 0);
    clock.advance(99ms);
    loop.runOnce(0ms);
    CHECK(fired == 0);
    clock.advance(1ms);
    loop.runOnce(0ms);
    CHECK(fired == 1);
    CHECK_FALSE(t->armed());
    clock.advance(1s);
    loop.runOnce(0ms);
    CHECK(fired == 1);
}

TEST_CASE("A periodic timer fires once per period, including after a large jump", "[core][loop]") {
    FakeClock clock;
    EventLoop loop(clock);
    int fired = 0;
    auto t = loop.createTimer([&] { ++fired; });
    t->start(10ms, true);
    for (int i = 0; i < 3; ++i) {
        clock.advance(10ms);
        loop.runOnce(0ms);
    }
    CHECK(fired == 3);
    clock.advance(50ms);
    loop.runOnce(0ms);
    CHECK(fired == 8);
    CHECK(t->armed());
}

TEST_CASE("Destroying or cancelling a timer means its callback never runs", "[core][loop]") {
    FakeClock clock;
    EventLoop loop(clock);
    int fired = 0;
    auto a = loop.createTimer([&] { ++fired; });
    auto b = loop.createTimer([&] { ++fired; });
    a->start(5ms);
    b->start(5ms);
    a.reset();
    b->cancel();
    clock.advance(10ms);
    loop.runOnce(0ms);
    CHECK(fired == 0);
}

TEST_CASE("A timer callback may destroy another due timer without harm", "[core][loop]") {
    FakeClock clock;
    EventLoop loop(clock);
    std::unique_ptr<berth::Timer> second;
    int secondFired = 0;
    auto first = loop.createTimer([&] { second.reset(); });
    second = loop.createTimer([&] { ++secondFired; });
    first->start(1ms);
    second->start(1ms);
    clock.advance(2ms);
    loop.runOnce(0ms);
    CHECK(secondFired == 0);
}

TEST_CASE("Timers due at the same time fire in the order they were armed", "[core][loop]") {
    FakeClock clock;
    EventLoop loop(clock);
    std::vector<int> order;
    auto a = loop.createTimer([&] { order.push_back(1); });
    auto b = loop.createTimer([&] { order.push_back(2); });
    auto c = loop.createTimer([&] { order.push_back(3); });
    b->start(5ms);
    a->start(5ms);
    c->start(4ms);
    clock.advance(5ms);
    loop.runOnce(0ms);
    CHECK(order == std::vector<int>{3, 2, 1});
}

TEST_CASE("Work posted from other threads runs on the loop thread, in order per thread", "[core][loop]") {
    berth::SystemClock clock;
    EventLoop loop(clock);
    loop.runOnce(0ms);  // make this the loop thread
    std::atomic<int> total{0};
    std::vector<int> fromA;
    bool allOnLoop = true;
    std::thread ta([&] {
        for (int i = 0; i < 1000; ++i)
            loop.post([&, i] {
                allOnLoop = allOnLoop && loop.isLoopThread();
                fromA.push_back(i);
                ++total;
            });
    });
    std::thread tb([&] {
        for (int i = 0; i < 1000; ++i) loop.post([&] { ++total; });
    });
    ta.join();
    tb.join();
    REQUIRE(berth::testing::runUntil(loop, [&] { return total == 2000; }));
    CHECK(allOnLoop);
    REQUIRE(fromA.size() == 1000);
    for (int i = 0; i < 1000; ++i) CHECK(fromA[static_cast<std::size_t>(i)] == i);
}

TEST_CASE("stop() from another thread makes run() return", "[core][loop]") {
    berth::SystemClock clock;
    EventLoop loop(clock);
    std::thread t([&] { loop.post([&] { loop.stop(); }); });
    loop.run();
    t.join();
    CHECK(loop.stopped());
}

TEST_CASE("An fd watch reports readability and stops after the watch is destroyed", "[core][loop]") {
    berth::SystemClock clock;
    EventLoop loop(clock);
    auto p = berth::makePipe();
    REQUIRE(p);
    int reads = 0;
    auto w = loop.watchFd(p->readEnd.get(), EPOLLIN, [&](std::uint32_t) {
        char c;
        if (::read(p->readEnd.get(), &c, 1) == 1) ++reads;
    });
    REQUIRE(w);
    REQUIRE(::write(p->writeEnd.get(), "x", 1) == 1);
    REQUIRE(berth::testing::runUntil(loop, [&] { return reads == 1; }));
    w->reset();
    REQUIRE(::write(p->writeEnd.get(), "y", 1) == 1);
    loop.runOnce(20ms);
    CHECK(reads == 1);
}

TEST_CASE("A signal watch delivers SIGUSR1 through the loop", "[core][loop]") {
    berth::SystemClock clock;
    EventLoop loop(clock);
    int got = 0;
    auto w = loop.watchSignals({SIGUSR1}, [&](int s) { got = s; });
    REQUIRE(w);
    ::kill(::getpid(), SIGUSR1);
    REQUIRE(berth::testing::runUntil(loop, [&] { return got != 0; }));
    CHECK(got == SIGUSR1);
}

TEST_CASE("Worker results are delivered on the loop thread", "[core][workers]") {
    berth::SystemClock clock;
    EventLoop loop(clock);
    loop.runOnce(0ms);
    berth::WorkerPool pool(loop, 2);
    std::vector<int> results;
    std::vector<std::unique_ptr<berth::Job>> jobs;
    bool onLoop = true;
    for (int i = 0; i < 10; ++i) {
        jobs.push_back(pool.submit<int>([i](const berth::CancelToken&) { return i * i; },
                                        [&](int r) {
                                            onLoop = onLoop && loop.isLoopThread();
                                            results.push_back(r);
                                        }));
    }
    REQUIRE(berth::testing::runUntil(loop, [&] { return results.size() == 10; }));
    CHECK(onLoop);
    std::sort(results.begin(), results.end());
    CHECK(results[9] == 81);
}

TEST_CASE("A cancelled job never delivers its result and its work sees the cancellation", "[core][workers]") {
    berth::SystemClock clock;
    EventLoop loop(clock);
    berth::WorkerPool pool(loop, 1);
    std::atomic<bool> started{false};
    std::atomic<bool> sawCancel{false};
    bool delivered = false;
    auto job = pool.submit<int>(
        [&](const berth::CancelToken& token) {
            started = true;
            while (!token.cancelled()) std::this_thread::yield();
            sawCancel = true;
            return 1;
        },
        [&](int) { delivered = true; });
    REQUIRE(berth::testing::waitUntil([&] { return started.load(); }));
    job.reset();  // destroying the handle cancels
    REQUIRE(berth::testing::waitUntil([&] { return sawCancel.load(); }));
    // Let the (cancelled) completion reach the loop if it were going to.
    bool done = false;
    auto marker = pool.submit<int>([](const berth::CancelToken&) { return 0; }, [&](int) { done = true; });
    REQUIRE(berth::testing::runUntil(loop, [&] { return done; }));
    CHECK_FALSE(delivered);
}

TEST_CASE("A timer may destroy itself from its own callback", "[core][loop]") {
    FakeClock clock;
    EventLoop loop(clock);
    int fired = 0;
    std::unique_ptr<berth::Timer> t;
    t = loop.createTimer([&] {
        ++fired;
        t.reset();
    });
    t->start(1ms, true);
    clock.advance(5ms);
    loop.runOnce(0ms);
    CHECK(fired == 1);
    CHECK(t == nullptr);
}

TEST_CASE("An fd watch may destroy itself from its own callback", "[core][loop]") {
    berth::SystemClock clock;
    EventLoop loop(clock);
    auto p = berth::makePipe();
    REQUIRE(p);
    int calls = 0;
    std::unique_ptr<berth::FdWatch> w;
    auto created = loop.watchFd(p->readEnd.get(), EPOLLIN, [&](std::uint32_t) {
        ++calls;
        w.reset();
    });
    REQUIRE(created);
    w = std::move(*created);
    REQUIRE(::write(p->writeEnd.get(), "x", 1) == 1);
    REQUIRE(berth::testing::runUntil(loop, [&] { return calls == 1; }));
    loop.runOnce(20ms);
    CHECK(calls == 1);
}

TEST_CASE("A periodic timer keeps firing on the real clock, also when re-armed from its callback", "[core][loop]") {
    berth::SystemClock clock;
    EventLoop loop(clock);
    int plain = 0;
    int rearmed = 0;
    auto a = loop.createTimer([&] { ++plain; });
    std::unique_ptr<berth::Timer> b;
    b = loop.createTimer([&] {
        ++rearmed;
        b->start(5ms, true);  // restarting the schedule from inside the callback
    });
    a->start(5ms, true);
    b->start(5ms, true);
    REQUIRE(berth::testing::runUntil(loop, [&] { return plain >= 5 && rearmed >= 5; }, 5s));
    CHECK(a->armed());
    CHECK(b->armed());
}

TEST_CASE("Posted work runs no further once stop() was asked for, and runs later in order if the loop turns again",
          "[core][loop]") {
    FakeClock clock;
    EventLoop loop(clock);
    std::vector<int> ran;
    loop.post([&] { ran.push_back(1); });
    loop.post([&] {
        ran.push_back(2);
        loop.stop();
    });
    loop.post([&] { ran.push_back(3); });
    loop.post([&] { ran.push_back(4); });
    CHECK_FALSE(loop.runOnce(0ms));
    CHECK(ran == std::vector<int>{1, 2});
}

TEST_CASE("A long run of posted work yields to fds after its time slice, keeping its order ahead of newer posts",
          "[core][loop]") {
    FakeClock clock;
    EventLoop loop(clock);
    std::vector<int> ran;
    // The first item uses up the slice (20 ms of real time is what the loop measures).
    loop.post([&] {
        ran.push_back(1);
        auto until = std::chrono::steady_clock::now() + 30ms;
        while (std::chrono::steady_clock::now() < until) {
        }
    });
    loop.post([&] { ran.push_back(2); });
    loop.post([&] { ran.push_back(3); });
    REQUIRE(loop.runOnce(0ms));
    CHECK(ran == std::vector<int>{1});
    loop.post([&] { ran.push_back(4); });
    REQUIRE(loop.runOnce(0ms));
    CHECK(ran == std::vector<int>{1, 2, 3, 4});
}
