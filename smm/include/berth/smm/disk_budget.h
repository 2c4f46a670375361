#pragma once
// DiskBudget: the part of an ExecEnv's disk budget (AllocatedDiskSpace) held by pulls in
// flight, so parallel installs cannot each find the same free space. A pull holds what
// its download will put in staging (the announced size, or as it grows), then, when the
// image is about to be committed, what its new layers take unpacked; it releases the
// hold once the image is committed or the pull has failed.
// Thread-safe: pulls run on the download workers.

#include <cstdint>
#include <map>
#include <mutex>

namespace berth::smm {

class DiskBudget {
public:
    // Sets pull `id`'s hold to `bytes` if `usedBytes` (images stored) plus every other
    // hold plus `bytes` stays within `budgetBytes`; otherwise returns false and leaves
    // the previous hold in place.
    bool hold(std::uint64_t id, std::uint64_t bytes, std::uint64_t usedBytes, std::uint64_t budgetBytes);
    void release(std::uint64_t id);
    // Bytes held by every pull.
    std::uint64_t held() const;

private:
    mutable std::mutex mu_;
    std::map<std::uint64_t, std::uint64_t> holds_;
};

}  // namespace berth::smm
