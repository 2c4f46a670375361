#pragma once
// Child processes: spawn, watch, stop, reap.
//
// ChildProcess owns one child through a pidfd. Its exit is seen either by a loop
// watch (onExit) or by waitFor() from a worker thread; nothing else reaps it, because
// the Subreaper sweep skips every pid a live ChildProcess owns. Destroying a
// ChildProcess whose child still runs kills it (SIGKILL) and reaps it.
//
// Subreaper makes this process the subreaper of its descendants (so container
// processes whose parent died are reparented here) and, on SIGCHLD, reaps every
// exited child that no ChildProcess owns, reporting each to a callback.

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "berth/core/event_loop.h"
#include "berth/core/fd.h"
#include "berth/core/result.h"

namespace berth {

struct ExitStatus {
    bool exited = false;   // normal exit: code is valid
    int code = 0;          // exit code when exited
    int signal = 0;        // terminating signal when !exited
    bool success() const { return exited && code == 0; }
    // Shell-style number: code, or 128+signal.
    int shellCode() const { return exited ? code : 128 + signal; }
    std::string describe() const;  // "exit 3" / "killed by SIGKILL"
};

struct SpawnOptions {
    std::vector<std::string> argv;                 // argv[0] is looked up in PATH when it has no '/'
    std::optional<std::vector<std::string>> env;   // nullopt: inherit
    std::string workingDir;                        // empty: inherit
    int stdinFd = -1;                              // -1: /dev/null
    int stdoutFd = -1;                             // -1: /dev/null
    int stderrFd = -1;                             // -1: /dev/null
    bool newProcessGroup = false;
};

class ChildProcess {
public:
    // Starts a child. Errors: kInternalError with errno text (e.g. program not found).
    static Result<std::unique_ptr<ChildProcess>> spawn(const SpawnOptions& options);

    ~ChildProcess();
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    pid_t pid() const { return pid_; }
    // Readable (POLLIN) once the child has exited; borrowed.
    int pidfd() const { return pidfd_.get(); }
    bool running() const { return !status_.has_value(); }
    const std::optional<ExitStatus>& exitStatus() const { return status_; }

    Status signal(int sig);
    // Blocks the calling thread until the child exits or the timeout passes; returns
    // the status, or a kInternalError when the timeout passes first.
    // For worker threads; never call on a loop thread.
    Result<ExitStatus> waitFor(std::chrono::milliseconds timeout);
    // Non-blocking: reaps if exited.
    std::optional<ExitStatus> poll();
    // Loop integration: callback runs on the loop thread once the child exited and has
    // been reaped. Only one watch at a time; the watch dies with the returned handle.
    Result<std::unique_ptr<FdWatch>> onExit(EventLoop& loop, std::function<void(ExitStatus)> cb);

private:
    ChildProcess(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
    pid_t pid_;
    UniqueFd pidfd_;
    std::optional<ExitStatus> status_;
};

// Runs a program to completion with a deadline, capturing stdout and stderr (each
// truncated at maxOutput bytes). On deadline the program is killed (SIGKILL) and the
// output says timedOut. Errors: the program could not be started. Blocking: for
// worker threads and tools.
struct RunOutput {
    ExitStatus status;
    std::string out;
    std::string err;
    bool timedOut = false;  // the deadline passed and the program was killed
};
Result<RunOutput> runCommand(const SpawnOptions& options, std::chrono::milliseconds deadline,
                             std::size_t maxOutput = 1 << 20);

class Subreaper {
public:
    using OrphanCallback = std::function<void(pid_t, ExitStatus)>;
    // Sets PR_SET_CHILD_SUBREAPER and watches SIGCHLD on the loop.
    static Result<std::unique_ptr<Subreaper>> create(EventLoop& loop, OrphanCallback onOrphanExit);
    ~Subreaper();
    // Reaps every exited child not owned by a ChildProcess. Called on SIGCHLD; public
    // for tests and for a periodic safety sweep.
    void sweep();

    // Marks a process that is not a ChildProcess (a container init watched through a
    // pidfd of its own) as owned, so the sweep leaves it to its owner to reap; release
    // it once reaped. Thread-safe.
    static void claim(pid_t pid);
    static void release(pid_t pid);

private:
    explicit Subreaper(OrphanCallback cb) : onOrphan_(std::move(cb)) {}
    OrphanCallback onOrphan_;
    std::unique_ptr<SignalWatch> sigchld_;
};

}  // namespace berth
