#include "berth/core/worker_pool.h"

#include <catch2/catch.hpp>
#include <atomic>
#include <chrono>

#include "berth/core/clock.h"
#include "berth/testing/support.h"

using namespace std::chrono_literals;

TEST_CASE("A worker pool starts no thread before work arrives and never more than its maximum",
          "[core][workers]") {
    berth::SystemClock clock;
    berth::EventLoop loop(clock);
    berth::WorkerPool pool(loop, 2, 60s);
    CHECK(pool.threadCount() == 0);

    std::atomic<bool> release{false};
    std::atomic<int> running{0};
    int delivered = 0;
    std::vector<std::unique_ptr<berth::Job>> jobs;
    for (int i = 0; i < 5; ++i) {
        jobs.push_back(pool.submit<int>(
            [&](const berth::CancelToken&) {
                ++running;
                while (!release) std::this_thread::yield();
                return 0;
            },
            [&](int) { ++delivered; }));
    }
    REQUIRE(berth::testing::waitUntil([&] { return running.load() == 2; }));
    CHECK(pool.threadCount() == 2);
    release = true;
    REQUIRE(berth::testing::runUntil(loop, [&] { return delivered == 5; }));
    CHECK(running.load() == 5);
    CHECK(pool.threadCount() <= 2);
}

TEST_CASE("Idle worker threads end after the idle time and new work starts them again", "[core][workers]") {
    berth::SystemClock clock;
    berth::EventLoop loop(clock);
    berth::WorkerPool pool(loop, 2, 50ms);
    bool done = false;
    auto job = pool.submit<int>([](const berth::CancelToken&) { return 7; }, [&](int r) { done = r == 7; });
    REQUIRE(berth::testing::runUntil(loop, [&] { return done; }));
    CHECK(pool.threadCount() >= 1);
    REQUIRE(berth::testing::waitUntil([&] { return pool.threadCount() == 0; }, 5s));

    done = false;
    job = pool.submit<int>([](const berth::CancelToken&) { return 7; }, [&](int r) { done = r == 7; });
    REQUIRE(berth::testing::runUntil(loop, [&] { return done; }));
}
