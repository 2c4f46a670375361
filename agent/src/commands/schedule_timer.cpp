#include "schedule_timer.h"

#include <chrono>

#include "berth/core/log.h"

namespace berth::agent {

namespace {
constexpr const char* kTag = "agent";
}

Status ScheduleTimerCommand::registerWithEngine() {
    return engine_.registerAsyncCommand(
        "Device.ScheduleTimer()",
        [this](const dm::CommandCall& call, dm::CommandDone done) { start(call, std::move(done)); },
        [this](const dm::CommandCall& call) { return cancel(call); });
}

void ScheduleTimerCommand::start(const dm::CommandCall& call, dm::CommandDone done) {
    // The engine has checked DelaySeconds against the schema (mandatory, 1 and up).
    auto it = call.input.find("DelaySeconds");
    unsigned long long seconds = 0;
    if (it != call.input.end()) {
        try {
            seconds = std::stoull(it->second);
        } catch (const std::exception&) {
            seconds = 0;
        }
    }
    if (seconds == 0) {
        done(Error(ErrorCode::kInvalidCommandArguments, "DelaySeconds must be a positive number of seconds"));
        return;
    }
    const std::string key = call.requestPath.empty() ? "#" + std::to_string(++nextKey_) : call.requestPath;
    auto timer = loop_.createTimer([this, key] {
        auto node = pending_.extract(key);
        if (node.empty()) return;
        BERTH_LOG_INFO(kTag) << "Device.ScheduleTimer() " << key << " expired";
        // The timer is destroyed with `node` when this callback returns (the loop allows it).
        node.mapped().done(dm::ArgMap{});
    });
    timer->start(std::chrono::seconds(seconds));
    pending_[key] = Pending{std::move(timer), std::move(done)};
}

Status ScheduleTimerCommand::cancel(const dm::CommandCall& call) {
    auto it = pending_.find(call.requestPath);
    if (it == pending_.end())
        return Error(ErrorCode::kCommandFailure, call.requestPath + " has no running Device.ScheduleTimer()");
    it->second.timer->cancel();
    // Complete after the Cancel() that asked for it has been answered, so its Request row
    // still exists while Cancel() runs.
    auto done = std::make_shared<dm::CommandDone>(std::move(it->second.done));
    pending_.erase(it);
    loop_.post([done, alive = std::weak_ptr<int>(alive_)] {
        if (alive.lock()) (*done)(Error(ErrorCode::kCommandCanceled, "Device.ScheduleTimer() canceled"));
    });
    return {};
}

}  // namespace berth::agent
