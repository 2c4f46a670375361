#pragma once
// A fake of the OCI seam (berth/oci/container_runtime.h): images and containers kept
// in memory, no root, no runc, no network. Deterministic: container pids are counted
// from kFirstPid (above any pid_max, so never a real process), image digests are the
// sha256 of what the test published.
//
// Scriptable:
//   publish(url, image)      what a pull of `url` finds (anything else: 404, kNotFound)
//   failNext(op, error, n)   the next n calls of `op` fail with `error`
//   hold(op) / release(op)   calls of `op` block (on their worker) until released;
//                            waiting(op) says how many are blocked. A held pull
//                            returns kCancelled when its cancel token fires.
//   exit(id, code, oom)      the container's init ends; watchers hear of it on the loop
//   snapshot() / restore()   the machine's state, for crash tests: a snapshot taken at
//                            a journal step is what the runtime held when the agent died
//
// One FakeOci is one machine: it outlives the SoftwareModules objects a test builds
// over it (an agent restart), as the real containers outlive berthd. Thread-safe;
// exit() and the watchers' callbacks run on the loop thread.

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "berth/core/event_loop.h"
#include "berth/oci/container_runtime.h"

namespace berth::testing {

enum class FakeOp { kOpen, kPull, kImageRemove, kRun, kStop, kRemove };

struct FakeImage {
    std::string title = "app";
    std::string vendor = "example.com";
    std::string version = "1.0";
    std::uint64_t unpackedBytes = 1 << 20;
    std::vector<std::string> env;  // "KEY=value" in the image config
};

struct FakeContainer {
    std::string id;
    std::string imageDigest;
    std::string cgroupPath;
    std::string status;  // "running" or "stopped"
    pid_t pid = 0;
    oci::ContainerSettings settings;  // as the last run() got them
    bool ignoresTerm = false;         // stop() needs SIGKILL
};

class FakeOci {
public:
    static constexpr pid_t kFirstPid = 5000000;

    struct Snapshot {
        std::map<std::string, oci::ImageRecord> images;  // by manifest digest
        std::map<std::string, FakeContainer> containers;
    };

    FakeOci();
    ~FakeOci();
    FakeOci(const FakeOci&) = delete;
    FakeOci& operator=(const FakeOci&) = delete;

    // The opener to put in SmmOptions::openEnvironment. Every environment opened over
    // this machine shares its images and containers (tests use one ExecEnv).
    oci::OciEnvironmentOpener opener();

    void publish(const std::string& url, FakeImage image);
    void failNext(FakeOp op, oci::RunnerError error, int times = 1);
    void hold(FakeOp op);
    void release(FakeOp op);
    std::size_t waiting(FakeOp op) const;
    std::size_t calls(FakeOp op) const;
    // Containers of the next run() ignore SIGTERM (stop() reports killed).
    void ignoreTermOnRun(bool on);

    // The container's init ends with `code` (or is OOM-killed: code 137). Loop thread.
    void exit(const std::string& id, int code, bool oomKilled = false);
    // Memory the cgroup figures report for a container.
    void setMemory(const std::string& id, std::uint64_t bytes);

    std::optional<FakeContainer> container(const std::string& id) const;
    std::vector<std::string> containerIds() const;
    std::vector<std::string> imageDigests() const;
    // The last limits given to limitParent(): {memory bytes, cpu quota us}.
    std::pair<std::optional<std::uint64_t>, std::optional<std::uint64_t>> parentLimits() const;

    Snapshot snapshot() const;
    void restore(const Snapshot& s);

    // Used by the fake's classes (not for tests).
    struct Impl;
    std::shared_ptr<Impl> impl() const { return impl_; }

private:
    std::shared_ptr<Impl> impl_;
};

// The sha256 digest the fake gives the image published at `url`.
std::string fakeDigestOf(const std::string& url);

}  // namespace berth::testing
