#include "berth/smm/disk_budget.h"

namespace berth::smm {

bool DiskBudget::hold(std::uint64_t id, std::uint64_t bytes, std::uint64_t usedBytes, std::uint64_t budgetBytes) {
    std::lock_guard<std::mutex> g(mu_);
    std::uint64_t others = 0;
    for (const auto& [k, v] : holds_)
        if (k != id) others += v;
    if (usedBytes > budgetBytes || others > budgetBytes - usedBytes || bytes > budgetBytes - usedBytes - others)
        return false;
    holds_[id] = bytes;
    return true;
}

void DiskBudget::release(std::uint64_t id) {
    std::lock_guard<std::mutex> g(mu_);
    holds_.erase(id);
}

std::uint64_t DiskBudget::held() const {
    std::lock_guard<std::mutex> g(mu_);
    std::uint64_t sum = 0;
    for (const auto& [k, v] : holds_)
        sum += v;
    return sum;
}

}  // namespace berth::smm
