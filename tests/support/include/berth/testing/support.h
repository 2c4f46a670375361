#pragma once
// Shared test helpers: temporary directories, free loopback ports, loop-driven
// waiting (never sleeps for synchronisation), and processes stopped by PID.

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "berth/core/event_loop.h"
#include "berth/core/process.h"

namespace berth::testing {

// A fresh directory under $TMPDIR, removed with everything in it on destruction.
class TempDir {
public:
    explicit TempDir(const std::string& prefix = "berth-test");
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read, close).
int freeTcpPort();

// Runs the loop until pred() is true or the timeout (real time) passes.
// Returns pred()'s final value.
bool runUntil(EventLoop& loop, const std::function<bool()>& pred,
              std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Polls pred() (no loop) until true or timeout; for waiting on external processes.
bool waitUntil(const std::function<bool()>& pred,
               std::chrono::milliseconds timeout = std::chrono::seconds(10));

// True when something accepts TCP connections on 127.0.0.1:port.
bool tcpPortOpen(int port);

// A background process started by a test; stopped (TERM, then KILL) by PID on destruction.
class ProcessGuard {
public:
    // stdout/stderr go to logFile when given.
    static std::unique_ptr<ProcessGuard> start(std::vector<std::string> argv,
                                               const std::string& logFile = {},
                                               std::optional<std::vector<std::string>> env = {});
    ~ProcessGuard();
    pid_t pid() const { return child_->pid(); }
    bool running();
    // TERM, wait up to grace, then KILL. Returns the exit status.
    ExitStatus stop(std::chrono::milliseconds grace = std::chrono::seconds(5));
    // SIGKILL now (for crash tests).
    ExitStatus kill9();

private:
    explicit ProcessGuard(std::unique_ptr<ChildProcess> c) : child_(std::move(c)) {}
    std::unique_ptr<ChildProcess> child_;
};

// Which program is on PATH ("" if none).
std::string findProgram(const std::string& name);

// Reads a whole file ("" when missing).
std::string readFile(const std::filesystem::path& p);
void writeFile(const std::filesystem::path& p, const std::string& content);

}  // namespace berth::testing
