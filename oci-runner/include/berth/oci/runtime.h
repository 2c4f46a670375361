#pragma once
// Driving an OCI runtime (runc by default, or crun) through its command line.
//
// Every call runs the runtime binary with a deadline (RuntimeOptions::timeout);
// a call that overruns is killed and reported as kTimeout. The runtime writes
// JSON logs (--log-format=json --log FILE); on failure the error lines are
// turned into one readable message (kRuntimeFailed).
//
// crun refuses hybrid cgroup hosts; with hybridWorkaround it is started in a
// private mount namespace with /sys/fs/cgroup/unified unmounted.
//
// Blocking: call from a worker thread (or a tool). Thread-safe: a Runtime holds
// only its options.

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "berth/oci/error.h"

namespace berth::oci {

enum class RuntimeKind { kRunc, kCrun };

struct RuntimeOptions {
    RuntimeKind kind = RuntimeKind::kRunc;
    std::string binary;        // default: "runc" or "crun" from PATH
    std::string root;          // the runtime's --root state directory (required)
    std::chrono::milliseconds timeout{30000};
    bool hybridWorkaround = false;  // see above; ContainerManager sets it for crun on hybrid hosts
};

struct RuntimeState {
    std::string id;
    std::string status;  // creating, created, running, paused, stopped
    pid_t pid = 0;       // container init in the host pid namespace; 0 when stopped
    std::string bundle;
    std::string created;
};

class Runtime {
public:
    explicit Runtime(RuntimeOptions options);

    // `runtime create --bundle B --pid-file P ID`. The container's stdout/stderr
    // are `consoleFd` (inherited by its init); -1 means /dev/null.
    RunnerStatus create(const std::string& id, const std::string& bundleDir, int consoleFd,
                        const std::string& logFile);
    RunnerStatus start(const std::string& id, const std::string& logFile);
    // kNotFound when the runtime does not know the container.
    RunnerResult<RuntimeState> state(const std::string& id) const;
    RunnerResult<std::vector<RuntimeState>> list() const;
    RunnerStatus kill(const std::string& id, int signal, bool all = false);
    // `delete [--force]`; a container the runtime does not know is not an error.
    RunnerStatus remove(const std::string& id, bool force);
    // First line of `--version` ("runc version 1.1.5+ds1").
    RunnerResult<std::string> version() const;

    const RuntimeOptions& options() const { return options_; }
    std::string name() const;

private:
    struct Output {
        int code = 0;
        std::string out;
        std::string err;
    };
    RunnerResult<Output> run(std::vector<std::string> args, const std::string& logFile, int consoleFd = -1) const;
    RunnerError failure(const std::string& what, const Output& o, const std::string& logFile,
                        std::size_t logOffset) const;

    RuntimeOptions options_;
};

// Turns runtime JSON log lines ({"level":"error","msg":...}) into one message:
// the error-level messages joined by "; " (others ignored). Non-JSON lines are
// kept as they are. Empty when nothing of level error or worse was logged.
std::string summariseRuntimeLog(std::string_view logText);

// True when `id` is a valid container ID: 1-64 of [A-Za-z0-9_+.-], not starting with '.' or '-'.
bool isValidContainerId(std::string_view id);

}  // namespace berth::oci
