#pragma once
// OCI runtime bundles: config.json generated from an image config and the
// caller's settings.
//
// Process: args = settings.args if given, else image Entrypoint + Cmd. Env = image
// Env, then settings.extraEnv (same key: the caller's value wins). Cwd =
// WorkingDir or "/". User = settings.user or image User, as "uid[:gid]" or names
// looked up in the image's /etc/passwd and /etc/group (resolved beneath the
// rootfs). Security from BundleParams::security (security.h): a user namespace
// with uid/gid maps when idMap is set (the user must fall inside it), the policy's
// capabilities (runc's default set unless widened), noNewPrivileges always,
// the policy's seccomp object as linux.seccomp, runc's masked and read-only paths
// plus /proc/interrupts and /sys/devices/virtual/powercap, rlimits (NOFILE 1024,
// CORE 0), root.readonly when the settings or the policy ask for it; namespaces
// pid, ipc, uts, mount, cgroup and network (unless hostNetwork: then /sys is a
// read-only bind of the host's, as sysfs cannot be mounted from a user namespace
// that does not own the network namespace).
// Pure function apart from reading passwd/group; any thread.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "berth/oci/error.h"
#include "berth/oci/image_spec.h"
#include "berth/oci/security.h"

namespace berth::oci {

struct BindMount {
    std::string source;       // host path
    std::string destination;  // absolute path in the container
    bool readOnly = true;
    bool noExec = false;  // the runtime's bind remount keeps noexec only when it is listed
};

struct ContainerSettings {
    std::vector<std::string> args;       // replaces Entrypoint + Cmd when non-empty
    std::vector<std::string> extraEnv;   // "KEY=value", overrides the image's value of KEY
    std::vector<BindMount> mounts;
    std::optional<std::int64_t> memoryLimitBytes;  // also the swap limit (no swap)
    std::optional<double> cpus;                    // 0.5 = half of one CPU (CFS quota)
    std::optional<std::int64_t> pidsLimit;
    std::string hostname;                          // default: the container ID
    bool hostNetwork = false;                      // default: own network namespace, loopback only
    bool readOnlyRootfs = false;                   // the writable layer is still there, but mounted read-only
    std::optional<std::string> user;               // "uid[:gid]" or "name[:group]"
    std::map<std::string, std::string> annotations;
    bool terminal = false;
};

struct BundleParams {
    std::string rootfsPath = "rootfs";  // root.path in config.json
    std::string rootfsDir;              // where the rootfs is on the host (for user lookup); may be empty
    std::string cgroupsPath;            // linux.cgroupsPath
    bool swapLimit = true;              // set memory.swap (needs swap accounting on cgroup v1)
    SecurityPolicy security;            // the execution environment's policy (default: no seccomp)
};

// Errors: kInvalidArgument (no command, bad user, a user outside the id map,
// relative mount destination),
// kNotFound (a user or group name not in the image).
RunnerResult<nlohmann::json> makeRuntimeConfig(const ImageConfig& image, const ContainerSettings& settings,
                                               const std::string& containerId, const BundleParams& params);

}  // namespace berth::oci
