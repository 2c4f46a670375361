#include "berth/smm/eu_state.h"

#include <algorithm>
#include <cmath>

namespace berth::smm {

std::string_view euStatusName(EuStatus status) {
    switch (status) {
        case EuStatus::kIdle: return "Idle";
        case EuStatus::kStarting: return "Starting";
        case EuStatus::kActive: return "Active";
        case EuStatus::kStopping: return "Stopping";
        case EuStatus::kRestarting: return "Restarting";
    }
    return "Idle";
}

std::string_view euFaultName(EuFault fault) {
    switch (fault) {
        case EuFault::kNoFault: return "NoFault";
        case EuFault::kFailureOnStart: return "FailureOnStart";
        case EuFault::kFailureOnAutoStart: return "FailureOnAutoStart";
        case EuFault::kFailureOnStop: return "FailureOnStop";
        case EuFault::kFailureWhileActive: return "FailureWhileActive";
        case EuFault::kDependencyFailure: return "DependencyFailure";
        case EuFault::kUnstartable: return "UnStartable";  // TR-181 spelling
    }
    return "NoFault";
}

EuDecision decideRequest(EuStatus status, bool busy, EuRequest request) {
    if (request == EuRequest::kRestart && status == EuStatus::kStopping)
        return {EuAction::kRefuse, Error(ErrorCode::kInvalidExecEnvState,
                                         "the execution unit is Stopping; Restart() is possible once it is Idle")};
    if (busy) return {EuAction::kDefer, std::nullopt};
    switch (status) {
        case EuStatus::kIdle:
            return {request == EuRequest::kIdle ? EuAction::kNone : EuAction::kStart, std::nullopt};
        case EuStatus::kActive:
            if (request == EuRequest::kActive) return {EuAction::kNone, std::nullopt};
            return {request == EuRequest::kIdle ? EuAction::kStop : EuAction::kRestart, std::nullopt};
        case EuStatus::kRestarting:  // not busy: an AutoRestart backoff is pending
            return {request == EuRequest::kIdle ? EuAction::kCancelBackoff : EuAction::kStart, std::nullopt};
        case EuStatus::kStarting:
        case EuStatus::kStopping:
            return {EuAction::kDefer, std::nullopt};
    }
    return {EuAction::kNone, std::nullopt};
}

std::chrono::milliseconds autoRestartDelay(const AutoRestartPolicy& policy, std::uint32_t retryCount, double random01) {
    double m = policy.minWaitSeconds;
    double k = policy.multiplier / 1000.0;
    double lo = m * std::pow(k, retryCount);
    double hi = m * std::pow(k, retryCount + 1.0);
    if (hi < lo) std::swap(lo, hi);  // multiplier below 1000 shrinks the interval
    if (policy.maxWaitSeconds > 0) {
        lo = std::min(lo, static_cast<double>(policy.maxWaitSeconds));
        hi = std::min(hi, static_cast<double>(policy.maxWaitSeconds));
    }
    double r = std::clamp(random01, 0.0, 1.0);
    return std::chrono::milliseconds(static_cast<std::int64_t>((lo + r * (hi - lo)) * 1000.0));
}

ExitDecision decideExit(const ExitFacts& facts, const AutoRestartPolicy& policy) {
    ExitDecision d;
    if (facts.stopRequested) return d;
    bool clean = facts.status && facts.status->success() && !facts.oomKilled;
    if (clean) return d;
    // An OOM kill means the process ran and allocated: it started, whatever the grace.
    if (facts.withinStartGrace && !facts.oomKilled)
        d.fault = facts.autoStarted ? EuFault::kFailureOnAutoStart : EuFault::kFailureOnStart;
    else
        d.fault = EuFault::kFailureWhileActive;
    if (facts.oomKilled) {
        d.message = "killed by the OOM killer: the container exceeded its memory limit";
        if (facts.memoryLimitKiB >= 0) d.message += " of " + std::to_string(facts.memoryLimitKiB) + " KiB";
        d.message += "; raise Resources.AllocatedMemory or fix the application's memory use";
    } else if (facts.status) {
        d.message = "the container's process ended with " + facts.status->describe();
    } else {
        d.message = "the container's process ended (exit status unknown: it was adopted after an agent restart)";
    }
    if (policy.enable) {
        if (policy.maxRetries == 0 || facts.retryCount < policy.maxRetries) {
            d.next = EuStatus::kRestarting;
            d.restart = true;
        } else {
            d.message += "; AutoRestart gave up after " + std::to_string(facts.retryCount) + " restarts";
        }
    }
    return d;
}

}  // namespace berth::smm
