#pragma once
// What the benchmark programs that start real processes share: a failure that unwinds
// instead of exiting, a work directory that owns the processes, runc containers and
// cgroups of one run and removes them all on the way out, and starters for the usual
// loopback servers (python3's http.server, mosquitto, berthd).
//
// Header-only on berth::core (users link berth::bench_support). Everything here runs on
// the caller's thread and blocks; waits poll real time, this is not test code.

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "berth/bench/support.h"
#include "berth/core/fd.h"
#include "berth/core/process.h"

namespace berth::bench {

// A failure that ends a benchmark run; main() prints what() and exits 1. Thrown rather
// than exiting so a WorkDir still cleans up on the way out.
struct RunFailure : std::runtime_error {
    using std::runtime_error::runtime_error;
};
[[noreturn]] inline void fail(const std::string& what) {
    throw RunFailure(what);
}

// The body of a benchmark's main(): runs `run`; an exception (a RunFailure or another)
// is printed as "<program>: <what>" and exits 1, after its stack unwound (WorkDirs
// cleaned up).
inline int runMain(const char* program, int argc, char** argv, int (*run)(int, char**)) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", program, e.what());
        return 1;
    }
}

// The value of a Result, or fail() with `what` and its error.
template <typename R>
auto must(R r, const std::string& what) {
    if (!r) fail(what + ": " + r.error().describe());
    return std::move(*r);
}

// fail() with `what` and the error unless the status is ok.
template <typename S>
void mustOk(const S& status, const std::string& what) {
    if (!status) fail(what + ": " + status.error().describe());
}

// Runs argv to its end (at most `timeout`); fail() unless it exits 0.
inline void runChecked(const std::vector<std::string>& argv,
                       std::chrono::milliseconds timeout = std::chrono::minutes(5)) {
    SpawnOptions so;
    so.argv = argv;
    auto r = runCommand(so, timeout);
    if (!r) fail(argv[0] + ": " + r.error().describe());
    if (!r->status.success()) fail(argv[0] + " failed: " + r->err);
}

// A free loopback port, or fail().
inline int freePortOrFail() {
    int port = freeLoopbackPort();
    if (port == 0) fail("cannot find a free port");
    return port;
}

// Waits until something accepts connections on 127.0.0.1:port; fail() naming `what`.
inline void waitForPort(int port, const std::string& what, std::chrono::seconds timeout = std::chrono::seconds(15)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!loopbackPortOpen(port) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!loopbackPortOpen(port)) fail(what + " did not start");
}

// A berthd configuration text with the value of `key` ("Device.X.Y") replaced, or the
// line appended when the key is not there.
inline std::string setConfigValue(std::string conf, const std::string& key, const std::string& value) {
    auto line = "\n" + key + " \"";
    auto at = conf.find(line);
    if (at == std::string::npos) return conf + "\n" + key + " \"" + value + "\"\n";
    auto start = at + line.size();
    auto end = conf.find('"', start);
    if (end == std::string::npos) fail("unterminated value of " + key);
    return conf.substr(0, start) + value + conf.substr(end);
}

// Starts argv with its stdout and stderr appended to `log`; fail() when it cannot.
inline std::unique_ptr<ChildProcess> spawnLogged(std::vector<std::string> argv, const std::filesystem::path& log) {
    SpawnOptions o;
    o.argv = std::move(argv);
    UniqueFd fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!fd) fail("cannot open " + log.string());
    o.stdoutFd = fd.get();
    o.stderrFd = fd.get();
    auto c = ChildProcess::spawn(o);
    if (!c) fail("cannot start " + o.argv[0] + ": " + c.error().describe());
    return std::move(*c);
}

// Removes a cgroup and every cgroup below it from each v1 hierarchy and the v2 root
// (cgroups hold no files that need removing; a busy one stays).
inline void removeCgroupTree(const std::string& cgroup) {
    namespace fs = std::filesystem;
    if (cgroup.size() < 2 || cgroup[0] != '/') return;
    std::error_code ec;
    auto removeBelow = [&](const fs::path& p, auto& self) -> void {
        for (const auto& e : fs::directory_iterator(p, ec))
            if (e.is_directory(ec) && !e.is_symlink(ec)) self(e.path(), self);
        ::rmdir(p.c_str());
    };
    for (const char* ctl :
         {"memory", "cpu", "cpuacct", "pids", "cpuset", "devices", "freezer", "blkio", "systemd", "unified", ""}) {
        fs::path base = fs::path("/sys/fs/cgroup") / ctl / cgroup.substr(1);
        if (fs::is_directory(base, ec)) removeBelow(base, removeBelow);
    }
}

// Deletes every runc container under `root` (berthd leaves its containers running by
// design; an aborted run must not leave them behind).
inline void deleteRuncContainers(const std::filesystem::path& root) {
    if (!std::filesystem::exists(root)) return;
    SpawnOptions o;
    o.argv = {"runc", "--root", root.string(), "list", "-q"};
    auto l = runCommand(o, std::chrono::seconds(30));
    if (!l) return;
    std::istringstream in(l->out);
    std::string id;
    while (std::getline(in, id)) {
        if (id.empty()) continue;
        SpawnOptions d;
        d.argv = {"runc", "--root", root.string(), "delete", "--force", id};
        (void)runCommand(d, std::chrono::seconds(30));
    }
}

// One benchmark run's directory (/tmp/<program>-XXXXXX, mode 0755 so mosquitto, which
// drops to its own user, can write its log below it) and what the run started in it.
// On destruction, in this order: processes are TERMed (KILLed after 5 s), latest first;
// containers under the registered runc roots are deleted; the registered cgroups are
// removed; the directory is removed unless KEEP is set in the environment.
class WorkDir {
public:
    explicit WorkDir(std::string program) : program_(std::move(program)) {
        std::string templ = "/tmp/" + program_ + "-XXXXXX";
        if (!::mkdtemp(templ.data())) fail("mkdtemp failed");
        path_ = templ;
        ::chmod(path_.c_str(), 0755);
    }
    ~WorkDir() {
        for (auto it = procs_.rbegin(); it != procs_.rend(); ++it) {
            auto& p = *it;
            if (p && p->running()) {
                (void)p->signal(SIGTERM);
                if (!p->waitFor(std::chrono::seconds(5))) (void)p->signal(SIGKILL);
            }
        }
        procs_.clear();
        for (const auto& root : runcRoots_)
            deleteRuncContainers(root);
        for (const auto& cg : cgroups_)
            removeCgroupTree(cg);
        if (std::getenv("KEEP")) {
            std::fprintf(stderr, "%s: kept %s\n", program_.c_str(), path_.c_str());
        } else {
            std::error_code ec;
            std::filesystem::remove_all(path_, ec);
        }
    }
    WorkDir(const WorkDir&) = delete;
    WorkDir& operator=(const WorkDir&) = delete;

    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
    const std::string& program() const { return program_; }

    // Starts argv (output appended to `log`); it is stopped when the WorkDir goes.
    ChildProcess& start(std::vector<std::string> argv, const std::filesystem::path& log) {
        procs_.push_back(spawnLogged(std::move(argv), log));
        return *procs_.back();
    }
    // Containers under this runc root are deleted on the way out.
    void cleanRuncRoot(std::filesystem::path root) { runcRoots_.push_back(std::move(root)); }
    // This cgroup and everything below it are removed on the way out.
    void cleanCgroup(std::string cgroup) { cgroups_.push_back(std::move(cgroup)); }

private:
    std::string program_;
    std::filesystem::path path_;
    std::vector<std::unique_ptr<ChildProcess>> procs_;
    std::vector<std::filesystem::path> runcRoots_;
    std::vector<std::string> cgroups_;
};

// python3's http.server on a free loopback port serving `dir` (log: <work>/http.log);
// returns the port once it accepts connections.
inline int startHttpServer(WorkDir& work, const std::filesystem::path& dir) {
    int port = freePortOrFail();
    work.start(
        {"python3", "-m", "http.server", "--bind", "127.0.0.1", std::to_string(port), "--directory", dir.string()},
        work / "http.log");
    waitForPort(port, "python3 http.server");
    return port;
}

// mosquitto on a free loopback port (no persistence, anonymous clients, errors logged
// to <work>/mosquitto.log); returns the port once it accepts connections.
inline int startMosquitto(WorkDir& work) {
    int port = freePortOrFail();
    std::ofstream(work / "mosquitto.conf") << "persistence false\nallow_anonymous true\nlog_type error\n"
                                           << "listener " << port << " 127.0.0.1\n";
    work.start({"mosquitto", "-c", (work / "mosquitto.conf").string()}, work / "mosquitto.log");
    waitForPort(port, "mosquitto");
    return port;
}

// Where one berthd of a rig keeps its files and its ExecEnv.
struct BerthdSetup {
    std::string binary;                // berthd
    std::string config;                // the configuration text to start from
    std::filesystem::path dir;         // berth.conf, berth.db, berthd.log, ee/{store,state}
    int brokerPort = 0;                // Device.MQTT.Client.1.BrokerPort
    std::string cgroupParent;          // ExecEnv.1.X_BERTH_CgroupParent
    std::filesystem::path hostPrefix;  // ExecEnv.1.X_BERTH_HostObjectPrefixes
    std::string logLevel = "warn";
};

// Starts berthd with `s.config` pointed at the broker and with ExecEnv.1's storage and
// state under s.dir (its runc root and cgroup are cleaned when `work` goes).
inline ChildProcess& startBerthd(WorkDir& work, const BerthdSetup& s) {
    const std::string ee = "Device.SoftwareModules.ExecEnv.1.";
    std::string conf = setConfigValue(s.config, "Device.MQTT.Client.1.BrokerPort", std::to_string(s.brokerPort));
    conf = setConfigValue(conf, ee + "X_BERTH_CgroupParent", s.cgroupParent);
    conf = setConfigValue(conf, ee + "X_BERTH_HostObjectPrefixes", s.hostPrefix.string());
    conf = setConfigValue(conf, ee + "X_BERTH_StorageDir", (s.dir / "ee" / "store").string());
    conf = setConfigValue(conf, ee + "X_BERTH_StateDir", (s.dir / "ee" / "state").string());
    std::filesystem::create_directories(s.dir);
    std::ofstream(s.dir / "berth.conf") << conf;
    work.cleanRuncRoot(s.dir / "ee" / "state" / "runtime");
    work.cleanCgroup(s.cgroupParent);
    return work.start({s.binary, "--config", (s.dir / "berth.conf").string(), "--db", (s.dir / "berth.db").string(),
                       "--log-level", s.logLevel},
                      s.dir / "berthd.log");
}

}  // namespace berth::bench
