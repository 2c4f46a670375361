#pragma once
// What a container may do: user namespace mapping, capabilities, seccomp,
// rlimits, read-only rootfs. One SecurityPolicy per execution environment; the
// bundle generator (bundle.h) turns it into config.json.
//
// Defaults (SecurityPolicy{} plus defaultSeccompProfile()): container root is
// mapped to an unprivileged host id range when idMap is set, the capability set
// is runc's default (CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE),
// noNewPrivileges is always on, and the seccomp profile is the one shipped in
// oci-runner/seccomp/default-<arch>.json (compiled in and installed under
// share/berth/seccomp/ as a starting point for operators' own profiles).
// Pure functions; any thread.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "berth/oci/error.h"

namespace berth::oci {

// Container ids [0, size) map to host ids [hostBase, hostBase + size), for both
// uids and gids. size 0 means no user namespace (container root is host root).
struct IdMapping {
    std::uint32_t hostBase = 0;
    std::uint32_t size = 0;
    bool enabled() const { return size > 0; }
    // The host id of container id `id`, or nullopt when it is outside the range.
    std::optional<std::uint32_t> toHost(std::uint32_t id) const;
};

// Default host range of the n-th execution environment (n from 1): 65536 ids
// from 2^30 + (n - 1) * 65536, far above the ids of real host users and of
// /etc/subuid ranges handed out by useradd (100000 and up).
IdMapping defaultIdMapping(std::uint32_t instance);
inline constexpr std::uint32_t kDefaultIdMapFirst = 1u << 30;
inline constexpr std::uint32_t kDefaultIdMapSize = 65536;

struct SecurityPolicy {
    IdMapping idMap;
    // Capability names, "CAP_" prefixed, as in the OCI spec. Bounding, effective,
    // permitted and inheritable sets all get this list; no ambient set.
    std::vector<std::string> capabilities = defaultCapabilities();
    // linux.seccomp as an OCI object; null: no seccomp filter ("unconfined").
    nlohmann::json seccomp;
    bool readOnlyRootfs = false;  // root.readonly for every container

    static std::vector<std::string> defaultCapabilities();
};

// The compiled-in default profile for this host's architecture (x86-64, arm64).
// Errors: kInvalidArgument on an architecture without a shipped profile.
RunnerResult<nlohmann::json> defaultSeccompProfile();
// The shipped profile for a named architecture ("x86_64"/"amd64", "aarch64"/"arm64").
RunnerResult<nlohmann::json> shippedSeccompProfile(const std::string& arch);

// Reads a profile file (an OCI linux.seccomp object; keys outside the OCI ones,
// such as "comment", are dropped). Errors: kNotFound, kCorruptData (not JSON),
// kInvalidArgument (not a valid linux.seccomp object, with the reason).
RunnerResult<nlohmann::json> loadSeccompProfile(const std::string& path);
// Checks and trims a profile already parsed. Errors: kInvalidArgument.
RunnerResult<nlohmann::json> checkSeccompProfile(const nlohmann::json& profile);

// Parses a comma- or space-separated capability list ("CAP_NET_ADMIN, sys_time")
// into canonical "CAP_X" names, without duplicates, in the given order. Errors:
// kInvalidArgument naming the first unknown capability.
RunnerResult<std::vector<std::string>> parseCapabilities(const std::string& list);

}  // namespace berth::oci
