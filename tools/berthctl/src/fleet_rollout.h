#pragma once
// The policy of a fleet rollout, apart from any I/O: which agent starts next (a
// concurrency limit, a canary batch that must all succeed first), when to abort (failures
// past a threshold), and the summary figures at the end. The driver (fleet_cli.cpp) asks
// next() whenever a slot is free and reports finished(); nothing here touches the
// network or the clock.
//
// Threading: one thread.

#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "berth/core/result.h"
#include "fleet_journal.h"

namespace berthctl::fleet {

// --max-failures: "N" (abort when more than N agents failed) or "P%" (more than P percent
// of all targets, rounded down). Errors: kInvalidArguments for anything else.
struct Threshold {
    bool percent = false;
    double value = 0;
    // The number of failures allowed for `total` targets.
    std::size_t allowed(std::size_t total) const;
    bool exceeded(std::size_t failures, std::size_t total) const { return failures > allowed(total); }
    std::string describe() const;
};
berth::Result<Threshold> parseThreshold(const std::string& text);

struct RolloutOptions {
    std::size_t concurrency = 10;  // >= 1
    std::size_t canary = 0;        // the first `canary` targets go first and must all succeed
    Threshold maxFailures{true, 10};
};

class Rollout {
public:
    // `previous`: what a journal says was done (resume). Agents that ended there are not
    // run again; agents begun but not ended are run again.
    Rollout(std::vector<std::string> targets, RolloutOptions options, const JournalContents* previous = nullptr);

    // The next agent to start now, or nullopt (all slots busy, canary still running,
    // aborted, or nothing left).
    std::optional<std::string> next();
    void finished(const std::string& agent, const AgentRecord& record);

    bool aborted() const { return abortReason_.has_value(); }
    const std::optional<std::string>& abortReason() const { return abortReason_; }
    // Nothing in flight and nothing more will start.
    bool done() const;
    std::size_t inFlight() const { return inFlight_.size(); }

    const std::vector<std::string>& targets() const { return targets_; }
    // Final records, this run and earlier ones (resume), by agent.
    const std::map<std::string, AgentRecord>& results() const { return results_; }
    std::size_t resumedDone() const { return resumedDone_; }
    std::size_t succeeded() const;
    std::size_t failed() const;
    // Targets never started (abort).
    std::size_t notStarted() const;

private:
    bool inCanary(std::size_t index) const { return index < options_.canary; }
    bool canaryFinished() const;

    std::vector<std::string> targets_;
    RolloutOptions options_;
    std::map<std::string, AgentRecord> results_;
    std::set<std::string> inFlight_;
    std::size_t cursor_ = 0;  // next index into targets_ to consider
    std::size_t resumedDone_ = 0;
    std::optional<std::string> abortReason_;
};

// Nearest-rank percentile (q in (0, 1]) of `values`; 0 for an empty list.
long long percentile(std::vector<long long> values, double q);

struct Summary {
    std::size_t targets = 0;
    std::size_t succeeded = 0;
    std::size_t failed = 0;
    std::size_t notStarted = 0;
    std::size_t fromJournal = 0;          // counted in succeeded/failed, done by an earlier run
    long long p50 = 0, p95 = 0, max = 0;  // ms per agent
    struct Failure {
        std::string agent;
        unsigned code;
        std::string message;
    };
    std::vector<Failure> failures;  // in target order
    std::optional<std::string> abortReason;
};
Summary summarize(const Rollout& rollout);
// The text printed at the end of a rollout (several lines, ends with '\n').
std::string formatSummary(const Summary& s, double wallSeconds);

}  // namespace berthctl::fleet
