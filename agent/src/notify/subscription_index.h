#pragma once
// SubscriptionIndex: the subscriptions of one NotifType keyed by the literal prefix of
// their ReferenceList entries ("Device.LocalAgent." for "Device.LocalAgent.Controller.*.Enable",
// "Device." for "Device."), so that a change looks up only the subscriptions whose
// prefix lies on its own path instead of testing every subscription. A lookup costs one
// hash probe per segment of the changed path plus the candidates it returns; the
// candidates still go through RefPattern's full test (wildcards, searches, leaf).
//
// Rows are identified by their Subscription row path; candidates come back sorted by
// that path, the order the notifier has always sent in.
//
// Threading: loop thread only. Owns copies of the strings it is given.

#include <cstddef>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace berth::agent::notify {

class SubscriptionIndex {
public:
    // Files `row` under each of `prefixes` (object paths ending in '.', or "" for an
    // entry without a literal prefix). Replaces what was filed for `row` before.
    void add(const std::string& row, const std::vector<std::string>& prefixes);
    void remove(const std::string& row);

    // Rows filed under `objPath` or under any of its ancestor object paths.
    std::set<std::string> candidates(std::string_view objPath) const;
    // True when pred holds for one of those rows; stops at the first (no copies made).
    bool anyCandidate(std::string_view objPath, const std::function<bool(const std::string& row)>& pred) const;

    std::size_t rows() const { return byRow_.size(); }

private:
    std::unordered_map<std::string, std::set<std::string>> byPrefix_;
    std::unordered_map<std::string, std::vector<std::string>> byRow_;
};

}  // namespace berth::agent::notify
