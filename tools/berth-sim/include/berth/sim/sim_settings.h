#pragma once
// Plain settings and figures of the sim SoftwareModules runtime (sim_runtime.h), apart
// from it so that the simulator's options need no OCI headers.

#include <chrono>
#include <cstdint>

namespace berth::sim {

// How simulated execution units behave.
struct SimEuSettings {
    std::chrono::milliseconds startTime{40};  // runc create + start on a gateway
    std::chrono::milliseconds stopTime{20};   // SIGTERM until the init has exited
    std::uint64_t memoryBytes = 6ull << 20;   // typical resident memory of one EU
};

struct SharedStoreStats {
    std::uint64_t pulls = 0;       // pull() calls
    std::uint64_t downloads = 0;   // real fetch + verify runs (one per URL, unless one failed)
    std::uint64_t waited = 0;      // pulls that waited for another pull's download
    std::uint64_t fromStore = 0;   // pulls answered from the store at once
    std::uint64_t failures = 0;    // downloads that failed
    std::uint64_t downloadedBytes = 0;
};

}  // namespace berth::sim
