#include "subscription_index.h"

#include <algorithm>

namespace berth::agent::notify {

void SubscriptionIndex::add(const std::string& row, const std::vector<std::string>& prefixes) {
    remove(row);
    std::vector<std::string> filed;
    for (const auto& p : prefixes) {
        if (std::find(filed.begin(), filed.end(), p) != filed.end()) continue;
        byPrefix_[p].insert(row);
        filed.push_back(p);
    }
    byRow_[row] = std::move(filed);
}

void SubscriptionIndex::remove(const std::string& row) {
    auto it = byRow_.find(row);
    if (it == byRow_.end()) return;
    for (const auto& p : it->second) {
        auto b = byPrefix_.find(p);
        if (b == byPrefix_.end()) continue;
        b->second.erase(row);
        if (b->second.empty()) byPrefix_.erase(b);
    }
    byRow_.erase(it);
}

std::set<std::string> SubscriptionIndex::candidates(std::string_view objPath) const {
    std::set<std::string> out;
    auto collect = [&](std::string_view prefix) {
        auto it = byPrefix_.find(std::string(prefix));
        if (it != byPrefix_.end()) out.insert(it->second.begin(), it->second.end());
    };
    collect({});
    // Every ancestor ends at a '.': "Device.", "Device.X.", "Device.X.1.".
    for (std::size_t dot = objPath.find('.'); dot != std::string_view::npos; dot = objPath.find('.', dot + 1))
        collect(objPath.substr(0, dot + 1));
    return out;
}

bool SubscriptionIndex::anyCandidate(std::string_view objPath,
                                     const std::function<bool(const std::string& row)>& pred) const {
    auto any = [&](std::string_view prefix) {
        auto it = byPrefix_.find(std::string(prefix));
        if (it == byPrefix_.end()) return false;
        for (const auto& row : it->second)
            if (pred(row)) return true;
        return false;
    };
    if (any({})) return true;
    for (std::size_t dot = objPath.find('.'); dot != std::string_view::npos; dot = objPath.find('.', dot + 1))
        if (any(objPath.substr(0, dot + 1))) return true;
    return false;
}

}  // namespace berth::agent::notify
