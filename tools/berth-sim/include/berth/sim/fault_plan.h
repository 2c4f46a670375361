#pragma once
// Templates for per-agent identities and the fault plan of the simulator.
//
// Pure functions and plain data: no threads, no I/O. Errors are 7004 Invalid
// Arguments with a message naming what is wrong (the command line shows it as is).

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "berth/core/result.h"

namespace berth::sim {

// Checks that `tmpl` holds exactly one printf integer conversion (%d, %06d, %5d, ...)
// and no other % but "%%".
Status checkTemplate(const std::string& tmpl);
// `tmpl` with its conversion replaced by n (checkTemplate must have passed).
std::string expandTemplate(const std::string& tmpl, std::uint64_t n);

// What a fault does to an agent.
enum class FaultKind {
    kDrop,     // the broker drops the agent's connection (session takeover); it reconnects
    kReboot,   // the agent restarts in the process: Disconnect, new Agent, Boot! (LocalReboot)
    // SoftwareModules faults, carried out by the sim runtime (sim_runtime.h) on each
    // InstallDU()/Update() pull; they need --software-modules.
    kDownloadFail,  // the download fails (7033)
    kDownloadSlow,  // the download takes `delay` longer
    kInstallFail,   // downloaded and verified, then the install fails (7227)
};
const char* faultKindName(FaultKind k);
// True for the kinds that act on SoftwareModules operations (rate=, not at=/every=).
bool faultIsOperational(FaultKind k);

// One --fault option: KIND:WHO:WHEN
//   KIND  drop | reboot | download-fail | download-slow | install-fail
//   WHO   PERCENT%        a share of the agents, picked with the plan's seed
//         N | N-M | N,M,…  agent numbers (the n of the templates)
//   WHEN  at=DURATION     once, DURATION after the agent first started
//         every=DURATION  again and again, at random times DURATION apart on average
//         The SoftwareModules kinds take a rate instead: rate=PERCENT% of that agent's
//         pulls; download-slow also delay=DURATION (default 30s), e.g.
//         download-slow:20%:rate=100%,delay=45s
// DURATION is a number with ms, s, m or h.
struct FaultSpec {
    FaultKind kind = FaultKind::kDrop;
    double share = 0;                  // 0..1 when agents is empty
    std::vector<std::uint64_t> agents; // explicit agent numbers
    std::chrono::milliseconds at{0};   // once, after start (when every == 0)
    std::chrono::milliseconds every{0};// mean interval of repeated faults
    double rate = 0;                   // SoftwareModules kinds: share of operations
    std::chrono::milliseconds delay{0};// download-slow: added to each slowed download
    std::string text;                  // as written, for messages
};
Result<FaultSpec> parseFault(const std::string& text);
Result<std::chrono::milliseconds> parseDuration(const std::string& text);

// The faults that apply to each agent, decided once from the specs and a seed so a run
// can be repeated. Agents are numbered first..first+count-1.
class FaultPlan {
public:
    FaultPlan() = default;
    FaultPlan(std::vector<FaultSpec> specs, std::uint64_t first, std::uint64_t count, std::uint64_t seed);

    // The specs that select agent n.
    std::vector<const FaultSpec*> faultsFor(std::uint64_t n) const;
    // For the SoftwareModules sim runtime: whether the k-th operation (pull) of agent n
    // fails (download-fail, install-fail) or runs slowly (download-slow). Deterministic
    // in (seed, n, k). operationFault() gives the spec that fired (its delay), or null.
    bool operationFaulted(FaultKind kind, std::uint64_t n, std::uint64_t k) const {
        return operationFault(kind, n, k) != nullptr;
    }
    const FaultSpec* operationFault(FaultKind kind, std::uint64_t n, std::uint64_t k) const;
    // True when some spec of one of the SoftwareModules kinds is in the plan.
    bool hasOperationalFaults() const;
    const std::vector<FaultSpec>& specs() const { return specs_; }
    std::uint64_t seed() const { return seed_; }

private:
    std::vector<FaultSpec> specs_;
    // selected_[i]: agents spec i applies to, sorted.
    std::vector<std::vector<std::uint64_t>> selected_;
    std::uint64_t seed_ = 0;
};

}  // namespace berth::sim
