#include "berth/core/process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "berth/core/log.h"

extern char** environ;

namespace berth {
namespace {

// Pids owned by a live ChildProcess. The Subreaper never reaps these. Spawning and
// sweeping both hold the mutex, so a freshly spawned child is registered before any
// sweep can see it.
std::mutex& ownedMutex() {
    static std::mutex mu;
    return mu;
}
std::set<pid_t>& ownedPids() {
    static std::set<pid_t> pids;
    return pids;
}

ExitStatus fromWaitStatus(int st) {
    ExitStatus s;
    if (WIFEXITED(st)) {
        s.exited = true;
        s.code = WEXITSTATUS(st);
    } else if (WIFSIGNALED(st)) {
        s.signal = WTERMSIG(st);
    }
    return s;
}

int pidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

std::string readAvailable(int fd, std::string& into, std::size_t cap) {
    char buf[16384];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
            std::size_t room = cap > into.size() ? cap - into.size() : 0;
            into.append(buf, std::min<std::size_t>(room, static_cast<std::size_t>(n)));
            continue;
        }
        if (n == 0) return "eof";
        if (errno == EINTR) continue;
        return "again";
    }
}

}  // namespace

std::string ExitStatus::describe() const {
    if (exited) return "exit " + std::to_string(code);
    const char* name = sigabbrev_np(signal);
    return std::string("killed by SIG") + (name ? name : std::to_string(signal).c_str());
}

Result<std::unique_ptr<ChildProcess>> ChildProcess::spawn(const SpawnOptions& options) {
    if (options.argv.empty()) return Error(ErrorCode::kInvalidArguments, "spawn: empty argv");
    std::vector<char*> argv;
    for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    if (options.env) {
        for (const auto& e : *options.env) envp.push_back(const_cast<char*>(e.c_str()));
        envp.push_back(nullptr);
    }

    UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    int fds[3] = {options.stdinFd, options.stdoutFd, options.stderrFd};
    for (int i = 0; i < 3; ++i) posix_spawn_file_actions_adddup2(&fa, fds[i] >= 0 ? fds[i] : devnull.get(), i);
    if (!options.workingDir.empty()) posix_spawn_file_actions_addchdir_np(&fa, options.workingDir.c_str());
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &empty);  // the loop blocks signals; the child must not inherit that
    posix_spawnattr_setsigdefault(&attr, &all);
    if (options.newProcessGroup) {
        flags |= POSIX_SPAWN_SETPGROUP;
        posix_spawnattr_setpgroup(&attr, 0);
    }
    posix_spawnattr_setflags(&attr, flags);

    std::lock_guard<std::mutex> lock(ownedMutex());
    pid_t pid = -1;
    int rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), options.env ? envp.data() : environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) return sysError("cannot run " + options.argv[0], rc);
    UniqueFd pidfd(pidfdOpen(pid));
    if (!pidfd) {
        int err = errno;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        return sysError("pidfd_open", err);
    }
    ownedPids().insert(pid);
    return std::unique_ptr<ChildProcess>(new ChildProcess(pid, std::move(pidfd)));
}

ChildProcess::~ChildProcess() {
    if (!status_) {
        ::kill(pid_, SIGKILL);
        int st = 0;
        while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
        }
    }
    std::lock_guard<std::mutex> lock(ownedMutex());
    ownedPids().erase(pid_);
}

Status ChildProcess::signal(int sig) {
    if (status_) return Error(ErrorCode::kInternalError, "process " + std::to_string(pid_) + " already exited");
    if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0) != 0) return sysError("kill", errno);
    return {};
}

std::optional<ExitStatus> ChildProcess::poll() {
    if (status_) return status_;
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) status_ = fromWaitStatus(st);
    return status_;
}

Result<ExitStatus> ChildProcess::waitFor(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!poll()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return Error(ErrorCode::kInternalError,
                         "process " + std::to_string(pid_) + " did not exit within " + std::to_string(timeout.count()) + " ms");
        pollfd p{pidfd_.get(), POLLIN, 0};
        ::poll(&p, 1, static_cast<int>(left.count()));
    }
    return *status_;
}

Result<std::unique_ptr<FdWatch>> ChildProcess::onExit(EventLoop& loop, std::function<void(ExitStatus)> cb) {
    return loop.watchFd(pidfd_.get(), EPOLLIN, [this, cb = std::move(cb)](std::uint32_t) {
        if (status_) return;  // already delivered
        if (auto st = poll()) cb(*st);
    });
}

Result<RunOutput> runCommand(const SpawnOptions& base, std::chrono::milliseconds deadline, std::size_t maxOutput) {
    auto outPipe = makePipe();
    if (!outPipe) return std::move(outPipe).error();
    auto errPipe = makePipe();
    if (!errPipe) return std::move(errPipe).error();
    SpawnOptions opts = base;
    opts.stdoutFd = outPipe->writeEnd.get();
    opts.stderrFd = errPipe->writeEnd.get();
    auto child = ChildProcess::spawn(opts);
    if (!child) return std::move(child).error();
    outPipe->writeEnd.reset();
    errPipe->writeEnd.reset();
    ::fcntl(outPipe->readEnd.get(), F_SETFL, O_NONBLOCK);
    ::fcntl(errPipe->readEnd.get(), F_SETFL, O_NONBLOCK);

    RunOutput result;
    auto end = std::chrono::steady_clock::now() + deadline;
    bool outOpen = true, errOpen = true;
    // Returns as soon as the child has exited: a daemonised grandchild (a container
    // started by `runc create`) may keep the pipes open forever.
    while ((*child)->running()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            (void)(*child)->signal(SIGKILL);
            auto st = (*child)->waitFor(std::chrono::seconds(5));
            if (st) result.status = *st;
            result.timedOut = true;
            return result;
        }
        pollfd pfds[3];
        int n = 0;
        pfds[n++] = {(*child)->pidfd(), POLLIN, 0};
        if (outOpen) pfds[n++] = {outPipe->readEnd.get(), POLLIN, 0};
        if (errOpen) pfds[n++] = {errPipe->readEnd.get(), POLLIN, 0};
        ::poll(pfds, static_cast<nfds_t>(n), static_cast<int>(left.count()));
        if (outOpen && readAvailable(outPipe->readEnd.get(), result.out, maxOutput) == "eof") outOpen = false;
        if (errOpen && readAvailable(errPipe->readEnd.get(), result.err, maxOutput) == "eof") errOpen = false;
        (*child)->poll();
    }
    if (outOpen) readAvailable(outPipe->readEnd.get(), result.out, maxOutput);
    if (errOpen) readAvailable(errPipe->readEnd.get(), result.err, maxOutput);
    result.status = *(*child)->exitStatus();
    return result;
}

Result<std::unique_ptr<Subreaper>> Subreaper::create(EventLoop& loop, OrphanCallback onOrphanExit) {
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return sysError("prctl(PR_SET_CHILD_SUBREAPER)", errno);
    std::unique_ptr<Subreaper> r(new Subreaper(std::move(onOrphanExit)));
    Subreaper* self = r.get();
    auto watch = loop.watchSignals({SIGCHLD}, [self](int) { self->sweep(); });
    if (!watch) return std::move(watch).error();
    r->sigchld_ = std::move(*watch);
    return r;
}

Subreaper::~Subreaper() = default;

void Subreaper::claim(pid_t pid) {
    std::lock_guard<std::mutex> lock(ownedMutex());
    ownedPids().insert(pid);
}

void Subreaper::release(pid_t pid) {
    std::lock_guard<std::mutex> lock(ownedMutex());
    ownedPids().erase(pid);
}

void Subreaper::sweep() {
    std::vector<std::pair<pid_t, ExitStatus>> reaped;
    {
        std::lock_guard<std::mutex> lock(ownedMutex());
        // Children of every thread of this process, including reparented orphans.
        DIR* tasks = ::opendir("/proc/self/task");
        if (!tasks) return;
        std::set<pid_t> children;
        while (dirent* e = ::readdir(tasks)) {
            if (e->d_name[0] == '.') continue;
            std::ifstream f(std::string("/proc/self/task/") + e->d_name + "/children");
            pid_t p;
            while (f >> p) children.insert(p);
        }
        ::closedir(tasks);
        for (pid_t p : children) {
            if (ownedPids().count(p)) continue;
            int st = 0;
            if (::waitpid(p, &st, WNOHANG) == p) reaped.emplace_back(p, fromWaitStatus(st));
        }
    }
    for (auto& [pid, st] : reaped) {
        if (onOrphan_) onOrphan_(pid, st);
    }
}

}  // namespace berth
