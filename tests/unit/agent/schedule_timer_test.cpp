#include "../../../agent/src/commands/schedule_timer.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/datamodel/engine.h"
#include "berth/datamodel/permissions.h"

using namespace berth;
using namespace std::chrono_literals;

namespace {

// An in-memory engine on a FakeClock loop with Device.ScheduleTimer() registered, and
// request hooks that record completions the way the agent's request table does.
struct TimerFixture {
    FakeClock clock;
    EventLoop loop{clock};
    std::unique_ptr<dm::Engine> engine;
    std::unique_ptr<agent::ScheduleTimerCommand> timer;
    std::vector<std::string> completed;  // "<commandKey>@<request>:ok" or ":<error code>"
    int requests = 0;
    dm::AsyncHooks hooks;

    TimerFixture() {
        dm::EngineOptions eo;
        eo.clock = &clock;
        auto e = dm::Engine::open(eo);
        REQUIRE(e);
        engine = std::move(*e);
        timer = std::make_unique<agent::ScheduleTimerCommand>(loop, *engine);
        REQUIRE(timer->registerWithEngine());
        hooks.createRequest = [this](const dm::CommandCall&) -> Result<std::string> {
            return "Device.LocalAgent.Request." + std::to_string(++requests) + ".";
        };
        hooks.completed = [this](const dm::CommandCall& c, const std::string& req, Result<dm::ArgMap> r) {
            completed.push_back(c.commandKey + "@" + req + ":" +
                                (r ? std::string("ok") : std::to_string(r.error().numeric())));
        };
    }

    dm::OperateResponse operate(const std::string& key, dm::ArgMap args) {
        return engine->operate({"Device.ScheduleTimer()", key, std::move(args)}, dm::Permissions::fullAccess(), hooks);
    }

    void advance(std::chrono::milliseconds total) {
        while (total.count() > 0) {
            auto step = std::min(total, std::chrono::milliseconds(250));
            clock.advance(step);
            total -= step;
            for (int i = 0; i < 3; ++i)
                loop.runOnce(0ms);
        }
    }
};

}  // namespace

TEST_CASE("Device.ScheduleTimer() completes after DelaySeconds on the injected clock, not before",
          "[agent][schedule-timer]") {
    TimerFixture f;
    auto r = f.operate("test79", {{"DelaySeconds", "30"}});
    REQUIRE_FALSE(r.error);
    REQUIRE(r.results.size() == 1);
    CHECK(r.results[0].kind == dm::OperationResult::Kind::kRequestPath);
    CHECK(r.results[0].requestPath == "Device.LocalAgent.Request.1.");
    CHECK(r.results[0].executedCommand == "Device.ScheduleTimer()");
    CHECK(f.timer->pending() == 1);

    f.advance(29750ms);
    CHECK(f.completed.empty());
    f.advance(250ms);
    CHECK(f.completed == std::vector<std::string>{"test79@Device.LocalAgent.Request.1.:ok"});
    CHECK(f.timer->pending() == 0);
}

TEST_CASE("Device.ScheduleTimer() timers run side by side and end in the order of their delays",
          "[agent][schedule-timer]") {
    TimerFixture f;
    REQUIRE(f.operate("long", {{"DelaySeconds", "5"}}).results.at(0).kind == dm::OperationResult::Kind::kRequestPath);
    REQUIRE(f.operate("short", {{"DelaySeconds", "2"}}).results.at(0).kind == dm::OperationResult::Kind::kRequestPath);
    f.advance(2s);
    CHECK(f.completed == std::vector<std::string>{"short@Device.LocalAgent.Request.2.:ok"});
    f.advance(3s);
    CHECK(f.completed ==
          std::vector<std::string>{"short@Device.LocalAgent.Request.2.:ok", "long@Device.LocalAgent.Request.1.:ok"});
}

TEST_CASE("Device.ScheduleTimer() without DelaySeconds fails with 7027 and starts nothing (TP-469 1.100)",
          "[agent][schedule-timer]") {
    TimerFixture f;
    auto r = f.operate("test100", {});
    REQUIRE(r.results.size() == 1);
    CHECK(r.results[0].kind == dm::OperationResult::Kind::kFailure);
    CHECK(r.results[0].err == ErrorCode::kInvalidCommandArguments);
    auto zero = f.operate("zero", {{"DelaySeconds", "0"}});
    CHECK(zero.results.at(0).kind == dm::OperationResult::Kind::kFailure);
    CHECK(zero.results.at(0).err == ErrorCode::kInvalidCommandArguments);
    auto word = f.operate("word", {{"DelaySeconds", "soon"}});
    CHECK(word.results.at(0).err == ErrorCode::kInvalidCommandArguments);
    CHECK(f.requests == 0);
    CHECK(f.timer->pending() == 0);
    f.advance(5s);
    CHECK(f.completed.empty());
}

TEST_CASE("Device.ScheduleTimer() ignores unknown input arguments (TP-469 1.91)", "[agent][schedule-timer]") {
    TimerFixture f;
    auto r = f.operate("test91", {{"DelaySeconds", "1"}, {"InvalidArgument", "x"}});
    REQUIRE(r.results.at(0).kind == dm::OperationResult::Kind::kRequestPath);
    f.advance(1s);
    CHECK(f.completed == std::vector<std::string>{"test91@Device.LocalAgent.Request.1.:ok"});
}

TEST_CASE("Canceling a pending Device.ScheduleTimer() completes it with 7023 and it never fires",
          "[agent][schedule-timer]") {
    TimerFixture f;
    REQUIRE(f.operate("cancel-me", {{"DelaySeconds", "10"}}).results.at(0).kind ==
            dm::OperationResult::Kind::kRequestPath);
    REQUIRE(f.operate("keep-me", {{"DelaySeconds", "10"}}).results.at(0).kind ==
            dm::OperationResult::Kind::kRequestPath);
    dm::CommandCall call{"Device.", "ScheduleTimer()", "Device.ScheduleTimer()", "cancel-me", {}};
    call.requestPath = "Device.LocalAgent.Request.1.";
    REQUIRE(f.engine->cancelCommand(call));
    // The completion follows the Cancel() on the loop, not inside it.
    CHECK(f.completed.empty());
    f.advance(250ms);
    CHECK(f.completed == std::vector<std::string>{"cancel-me@Device.LocalAgent.Request.1.:7023"});
    // A second cancel of the same call has nothing left to cancel.
    CHECK_FALSE(f.engine->cancelCommand(call));
    f.advance(10s);
    CHECK(f.completed == std::vector<std::string>{"cancel-me@Device.LocalAgent.Request.1.:7023",
                                                  "keep-me@Device.LocalAgent.Request.2.:ok"});
}
