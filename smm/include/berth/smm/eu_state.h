#pragma once
// The Execution Unit state machine of TR-369's SMM appendix, as pure decisions
// (no I/O) so it can be tested on its own; SoftwareModules carries out the actions.
//
// States: Idle and Active are stable; Starting, Stopping and Restarting are transitory.
// "busy" means a runtime call for the EU is in flight: requests arriving meanwhile are
// remembered (the last one wins) and applied when the call returns, except Restart()
// while Stopping, which TR-369 answers with 7230.
// Pure functions; any thread.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "berth/core/error.h"
#include "berth/core/process.h"

namespace berth::smm {

enum class EuStatus { kIdle, kStarting, kActive, kStopping, kRestarting };
std::string_view euStatusName(EuStatus status);  // the TR-181 enumeration value

enum class EuFault {
    kNoFault,
    kFailureOnStart,
    kFailureOnAutoStart,
    kFailureOnStop,
    kFailureWhileActive,
    kDependencyFailure,
    kUnstartable,
};
std::string_view euFaultName(EuFault fault);  // the TR-181 ExecutionFaultCode value

enum class EuRequest { kActive, kIdle, kRestart };

enum class EuAction {
    kNone,          // already there
    kStart,         // create + start the container
    kStop,          // stop + remove the container
    kRestart,       // stop, then start
    kCancelBackoff, // an AutoRestart backoff is pending: cancel it, go Idle
    kDefer,         // a runtime call is in flight: apply when it returns
    kRefuse,        // see error
};

struct EuDecision {
    EuAction action = EuAction::kNone;
    std::optional<Error> error;  // with kRefuse
};

EuDecision decideRequest(EuStatus status, bool busy, EuRequest request);

// TR-181 ExecutionUnit.{i}.AutoRestart.
struct AutoRestartPolicy {
    bool enable = false;
    std::uint32_t minWaitSeconds = 5;
    std::uint32_t maxWaitSeconds = 3600;
    std::uint32_t multiplier = 2000;  // in 0.001 units
    std::uint32_t maxRetries = 10;    // 0 = unlimited
    std::uint32_t resetPeriodSeconds = 0;
};

// Delay before restart number retryCount+1: a random point (random01 in [0,1)) in
// [m*(k/1000)^n, m*(k/1000)^(n+1)] seconds, both ends capped at the maximum wait.
std::chrono::milliseconds autoRestartDelay(const AutoRestartPolicy& policy, std::uint32_t retryCount,
                                           double random01);

struct ExitFacts {
    bool stopRequested = false;     // we asked it to stop (SetRequestedState(Idle), uninstall, ...)
    bool withinStartGrace = false;  // exited soon after start: a start failure
    bool autoStarted = false;       // started by AutoStart/AutoRestart rather than a Controller
    std::optional<ExitStatus> status;  // nullopt: adopted after a restart, code unknown
    bool oomKilled = false;
    std::uint32_t retryCount = 0;   // AutoRestart.RetryCount before this exit
    std::int64_t memoryLimitKiB = -1;
};

struct ExitDecision {
    EuStatus next = EuStatus::kIdle;  // kIdle, or kRestarting when a restart is due
    EuFault fault = EuFault::kNoFault;
    std::string message;              // ExecutionFaultMessage (empty with kNoFault)
    bool restart = false;
};

// What an exit means: a clean exit (code 0) is a normal completion (Idle, NoFault);
// anything else is a fault, restarted while AutoRestart allows it.
ExitDecision decideExit(const ExitFacts& facts, const AutoRestartPolicy& policy);

}  // namespace berth::smm
