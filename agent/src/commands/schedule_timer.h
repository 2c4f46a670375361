#pragma once
// Device.ScheduleTimer(): TR-181's asynchronous "wait DelaySeconds, then complete"
// command. The Controller learns of the end through an OperationComplete
// notification; Device.LocalAgent.Request.{i}.Cancel() stops a pending timer and
// completes the call with 7023 instead.
//
// Time comes from the loop's clock (a FakeClock in tests). Timers live only in memory:
// a restart drops them, as it drops their volatile Request rows.
//
// Threading: everything on the loop thread. The engine and loop are borrowed and must
// outlive this object; destroying it drops pending timers without completing them.

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "berth/core/event_loop.h"
#include "berth/core/result.h"
#include "berth/datamodel/engine.h"

namespace berth::agent {

class ScheduleTimerCommand {
public:
    ScheduleTimerCommand(EventLoop& loop, dm::Engine& engine) : loop_(loop), engine_(engine) {}
    ScheduleTimerCommand(const ScheduleTimerCommand&) = delete;
    ScheduleTimerCommand& operator=(const ScheduleTimerCommand&) = delete;

    // Registers Device.ScheduleTimer() and its cancel handler with the engine. Errors:
    // those of Engine::registerAsyncCommand (the schema lacks the command).
    Status registerWithEngine();

    // Timers still running.
    std::size_t pending() const { return pending_.size(); }

private:
    struct Pending {
        std::unique_ptr<Timer> timer;
        dm::CommandDone done;
    };
    void start(const dm::CommandCall& call, dm::CommandDone done);
    Status cancel(const dm::CommandCall& call);

    EventLoop& loop_;
    dm::Engine& engine_;
    std::map<std::string, Pending> pending_;  // by Device.LocalAgent.Request.{i}. path
    std::uint64_t nextKey_ = 0;               // for calls made without a Request row
    // Work posted to the loop checks this is still alive.
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace berth::agent
