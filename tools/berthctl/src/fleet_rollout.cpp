#include "fleet_rollout.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace berthctl::fleet {

using berth::Error;
using berth::ErrorCode;

std::size_t Threshold::allowed(std::size_t total) const {
    if (!percent) return static_cast<std::size_t>(value);
    return static_cast<std::size_t>(std::floor(value * static_cast<double>(total) / 100.0 + 1e-9));
}

std::string Threshold::describe() const {
    std::ostringstream os;
    if (percent) {
        os << value << "%";
    } else {
        os << static_cast<std::size_t>(value);
    }
    return os.str();
}

berth::Result<Threshold> parseThreshold(const std::string& text) {
    Threshold t;
    std::string num = text;
    if (!num.empty() && num.back() == '%') {
        t.percent = true;
        num.pop_back();
    }
    if (num.empty() || num.find_first_not_of("0123456789.") != std::string::npos ||
        std::count(num.begin(), num.end(), '.') > 1 || (!t.percent && num.find('.') != std::string::npos))
        return Error(ErrorCode::kInvalidArguments,
                     "--max-failures: expected a count (3) or a percentage (10%), got '" + text + "'");
    t.value = std::stod(num);
    if (t.percent && t.value > 100)
        return Error(ErrorCode::kInvalidArguments, "--max-failures: a percentage above 100 ('" + text + "')");
    return t;
}

Rollout::Rollout(std::vector<std::string> targets, RolloutOptions options, const JournalContents* previous)
    : targets_(std::move(targets)), options_(options) {
    if (options_.concurrency == 0) options_.concurrency = 1;
    options_.canary = std::min(options_.canary, targets_.size());
    if (previous) {
        for (const auto& t : targets_) {
            auto it = previous->agents.find(t);
            if (it != previous->agents.end() && it->second.ended) {
                results_[t] = it->second;
                ++resumedDone_;
            }
        }
        // A canary that failed in the earlier run still vetoes the rest.
        if (canaryFinished()) {
            for (std::size_t i = 0; i < options_.canary; ++i)
                if (!results_[targets_[i]].ok) abortReason_ = "canary agent " + targets_[i] + " failed (earlier run)";
        }
        if (!abortReason_ && options_.maxFailures.exceeded(failed(), targets_.size()))
            abortReason_ = "failures (" + std::to_string(failed()) + ") already past the threshold (" +
                           options_.maxFailures.describe() + ") in the journal";
    }
}

bool Rollout::canaryFinished() const {
    for (std::size_t i = 0; i < options_.canary; ++i)
        if (!results_.count(targets_[i])) return false;
    return true;
}

std::optional<std::string> Rollout::next() {
    if (abortReason_ || inFlight_.size() >= options_.concurrency) return std::nullopt;
    while (cursor_ < targets_.size() && results_.count(targets_[cursor_]))
        ++cursor_;
    if (cursor_ >= targets_.size()) return std::nullopt;
    // Past the canary batch only once every canary agent has ended (well).
    if (!inCanary(cursor_) && !canaryFinished()) return std::nullopt;
    std::string agent = targets_[cursor_++];
    inFlight_.insert(agent);
    return agent;
}

void Rollout::finished(const std::string& agent, const AgentRecord& record) {
    inFlight_.erase(agent);
    AgentRecord r = record;
    r.ended = true;
    results_[agent] = r;
    if (abortReason_) return;
    auto index = static_cast<std::size_t>(std::find(targets_.begin(), targets_.end(), agent) - targets_.begin());
    if (inCanary(index) && !r.ok) {
        abortReason_ = "canary agent " + agent + " failed";
    } else if (options_.maxFailures.exceeded(failed(), targets_.size())) {
        abortReason_ = std::to_string(failed()) + " agents failed, more than --max-failures " +
                       options_.maxFailures.describe() + " of " + std::to_string(targets_.size());
    }
}

bool Rollout::done() const {
    if (!inFlight_.empty()) return false;
    if (abortReason_) return true;
    return results_.size() >= targets_.size() ||
           std::all_of(targets_.begin(), targets_.end(), [&](const std::string& t) { return results_.count(t) > 0; });
}

std::size_t Rollout::succeeded() const {
    return static_cast<std::size_t>(
        std::count_if(results_.begin(), results_.end(), [](const auto& kv) { return kv.second.ok; }));
}

std::size_t Rollout::failed() const {
    return results_.size() - succeeded();
}

std::size_t Rollout::notStarted() const {
    std::size_t n = 0;
    for (const auto& t : targets_)
        if (!results_.count(t) && !inFlight_.count(t)) ++n;
    return n;
}

long long percentile(std::vector<long long> values, double q) {
    if (values.empty()) return 0;
    std::sort(values.begin(), values.end());
    auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(values.size()) - 1e-9));
    rank = std::clamp<std::size_t>(rank, 1, values.size());
    return values[rank - 1];
}

Summary summarize(const Rollout& r) {
    Summary s;
    s.targets = r.targets().size();
    s.succeeded = r.succeeded();
    s.failed = r.failed();
    s.notStarted = r.notStarted();
    s.fromJournal = r.resumedDone();
    s.abortReason = r.abortReason();
    std::vector<long long> ms;
    for (const auto& t : r.targets()) {
        auto it = r.results().find(t);
        if (it == r.results().end()) continue;
        ms.push_back(it->second.ms);
        if (!it->second.ok) s.failures.push_back({t, it->second.code, it->second.message});
    }
    s.p50 = percentile(ms, 0.50);
    s.p95 = percentile(ms, 0.95);
    s.max = ms.empty() ? 0 : *std::max_element(ms.begin(), ms.end());
    return s;
}

std::string formatSummary(const Summary& s, double wallSeconds) {
    std::ostringstream os;
    char wall[32];
    std::snprintf(wall, sizeof wall, "%.2f", wallSeconds);
    os << (s.abortReason ? "ABORTED: " + *s.abortReason + "\n" : std::string());
    os << "targets " << s.targets << ": " << s.succeeded << " succeeded, " << s.failed << " failed, " << s.notStarted
       << " not started";
    if (s.fromJournal) os << " (" << s.fromJournal << " done by an earlier run, from the journal)";
    os << "\n";
    os << "duration per agent: p50 " << s.p50 << " ms, p95 " << s.p95 << " ms, max " << s.max << " ms; wall " << wall
       << " s\n";
    for (const auto& f : s.failures)
        os << "  " << f.agent << ": error " << f.code << ": " << f.message << "\n";
    return os.str();
}

}  // namespace berthctl::fleet
