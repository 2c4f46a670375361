#include "fleet_rollout.h"

#include <catch2/catch.hpp>

using namespace berthctl::fleet;

namespace {

AgentRecord ok(long long ms = 10) {
    AgentRecord r;
    r.ok = true;
    r.ms = ms;
    return r;
}

AgentRecord fail(unsigned code = 7022, long long ms = 10) {
    AgentRecord r;
    r.code = code;
    r.message = "failed";
    r.ms = ms;
    return r;
}

std::vector<std::string> agents(int n) {
    std::vector<std::string> out;
    for (int i = 1; i <= n; ++i)
        out.push_back("a" + std::to_string(i));
    return out;
}

RolloutOptions options(std::size_t concurrency, std::size_t canary, const std::string& threshold) {
    RolloutOptions o;
    o.concurrency = concurrency;
    o.canary = canary;
    o.maxFailures = *parseThreshold(threshold);
    return o;
}

}  // namespace

TEST_CASE("A threshold is a count or a percentage of the targets, rounded down", "[berthctl]") {
    auto count = parseThreshold("3");
    REQUIRE(count);
    CHECK(count->allowed(1000) == 3);
    CHECK(!count->exceeded(3, 10));
    CHECK(count->exceeded(4, 10));
    auto pct = parseThreshold("10%");
    REQUIRE(pct);
    CHECK(pct->allowed(25) == 2);
    CHECK(pct->allowed(5) == 0);
    CHECK(pct->exceeded(1, 5));
    CHECK(!pct->exceeded(10, 100));
    CHECK(pct->exceeded(11, 100));
    auto zero = parseThreshold("0");
    REQUIRE(zero);
    CHECK(zero->exceeded(1, 100));
    for (const char* bad : {"", "%", "ten", "-1", "1.5", "150%", "3 %"}) {
        INFO(bad);
        auto t = parseThreshold(bad);
        REQUIRE(!t);
        CHECK(t.error().numeric() == 7004);
    }
}

TEST_CASE("A rollout keeps at most the concurrency limit in flight", "[berthctl]") {
    Rollout r(agents(5), options(2, 0, "100%"));
    auto x = r.next();
    auto y = r.next();
    REQUIRE(x);
    REQUIRE(y);
    CHECK(*x == "a1");
    CHECK(*y == "a2");
    CHECK(!r.next());
    r.finished("a1", ok());
    CHECK(r.next() == std::optional<std::string>("a3"));
    CHECK(!r.next());
}

TEST_CASE("The canary batch runs alone and the rest follow only when all of it succeeded", "[berthctl]") {
    Rollout r(agents(5), options(3, 2, "100%"));
    CHECK(r.next() == std::optional<std::string>("a1"));
    CHECK(r.next() == std::optional<std::string>("a2"));
    CHECK(!r.next());  // a3 waits for the canary
    r.finished("a1", ok());
    CHECK(!r.next());
    r.finished("a2", ok());
    CHECK(r.next() == std::optional<std::string>("a3"));
    CHECK(!r.aborted());
}

TEST_CASE("A failed canary aborts the rollout before any other agent starts", "[berthctl]") {
    Rollout r(agents(5), options(3, 2, "100%"));
    r.next();
    r.next();
    r.finished("a1", fail());
    CHECK(r.aborted());
    CHECK(!r.done());  // a2 is still in flight
    CHECK(!r.next());
    r.finished("a2", ok());
    CHECK(r.done());
    CHECK(r.notStarted() == 3);
    CHECK(r.abortReason()->find("canary agent a1") != std::string::npos);
}

TEST_CASE("Failures past the threshold abort the rollout, and below it the rollout finishes", "[berthctl]") {
    Rollout r(agents(10), options(1, 0, "2"));
    auto run = [&](bool good) {
        auto a = r.next();
        REQUIRE(a);
        r.finished(*a, good ? ok() : fail());
    };
    run(false);
    run(true);
    run(false);
    CHECK(!r.aborted());
    run(false);
    CHECK(r.aborted());
    CHECK(r.done());
    CHECK(r.failed() == 3);
    CHECK(r.succeeded() == 1);
    CHECK(r.notStarted() == 6);

    Rollout fine(agents(3), options(3, 0, "1"));
    while (auto a = fine.next())
        fine.finished(*a, *a == "a2" ? fail() : ok());
    CHECK(fine.done());
    CHECK(!fine.aborted());
    CHECK(fine.failed() == 1);
}

TEST_CASE("A resumed rollout skips agents that ended and runs again those that were in flight", "[berthctl]") {
    JournalContents j;
    j.agents["a1"] = ok(100);
    j.agents["a1"].ended = true;
    j.agents["a2"] = AgentRecord{};  // begun, never ended
    j.agents["a3"] = fail(7223, 50);
    j.agents["a3"].ended = true;
    Rollout r(agents(4), options(10, 1, "100%"), &j);
    CHECK(r.resumedDone() == 2);
    std::vector<std::string> started;
    while (auto a = r.next())
        started.push_back(*a);
    CHECK(started == std::vector<std::string>{"a2", "a4"});
    r.finished("a2", ok());
    r.finished("a4", ok());
    CHECK(r.done());
    auto s = summarize(r);
    CHECK(s.succeeded == 3);
    CHECK(s.failed == 1);
    CHECK(s.fromJournal == 2);
    REQUIRE(s.failures.size() == 1);
    CHECK(s.failures[0].agent == "a3");
    CHECK(s.failures[0].code == 7223);
}

TEST_CASE("The summary reports counts, failures with their codes and p50, p95 and max durations", "[berthctl]") {
    auto targets = agents(20);
    Rollout r(targets, options(20, 0, "100%"));
    for (int i = 1; i <= 20; ++i) {
        auto a = r.next();
        REQUIRE(a);
        // 10, 20, ... 200 ms; a7 and a13 fail.
        r.finished(*a, (i == 7 || i == 13) ? fail(7227, i * 10) : ok(i * 10));
    }
    auto s = summarize(r);
    CHECK(s.targets == 20);
    CHECK(s.succeeded == 18);
    CHECK(s.failed == 2);
    CHECK(s.notStarted == 0);
    CHECK(s.p50 == 100);
    CHECK(s.p95 == 190);
    CHECK(s.max == 200);
    REQUIRE(s.failures.size() == 2);
    CHECK(s.failures[0].agent == "a7");
    CHECK(s.failures[1].agent == "a13");
    CHECK(s.failures[1].code == 7227);
    auto text = formatSummary(s, 1.5);
    CHECK(text.find("18 succeeded, 2 failed, 0 not started") != std::string::npos);
    CHECK(text.find("p50 100 ms, p95 190 ms, max 200 ms") != std::string::npos);
    CHECK(text.find("a13: error 7227") != std::string::npos);
    CHECK(text.find("ABORTED") == std::string::npos);
}

TEST_CASE("Percentiles use the nearest rank and an empty list gives 0", "[berthctl]") {
    CHECK(percentile({}, 0.5) == 0);
    CHECK(percentile({7}, 0.95) == 7);
    CHECK(percentile({5, 1, 4, 2, 3}, 0.5) == 3);
    CHECK(percentile({5, 1, 4, 2, 3}, 0.95) == 5);
    CHECK(percentile({1, 2, 3, 4}, 0.5) == 2);
}
