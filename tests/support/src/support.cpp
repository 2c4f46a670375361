#include "berth/testing/support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace berth::testing {

TempDir::TempDir(const std::string& prefix) {
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base && *base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
    path_ = buf.data();
    // Searchable (not listable) by others: containers whose root is mapped to an
    // unprivileged host id must reach their rootfs below it.
    ::chmod(path_.c_str(), 0711);
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

int freeTcpPort() {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) throw std::runtime_error("socket failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        throw std::runtime_error("bind failed");
    socklen_t len = sizeof addr;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
        throw std::runtime_error("getsockname failed");
    return ntohs(addr.sin_port);
}

bool tcpPortOpen(int port) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

bool runUntil(EventLoop& loop, const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline) return pred();
        loop.runOnce(std::chrono::milliseconds(10));
    }
    return true;
}

bool waitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline) return pred();
        // Polling an external process's observable state; there is no event to wait on.
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

std::unique_ptr<ProcessGuard> ProcessGuard::start(std::vector<std::string> argv, const std::string& logFile,
                                                  std::optional<std::vector<std::string>> env) {
    SpawnOptions opts;
    opts.argv = std::move(argv);
    opts.env = std::move(env);
    UniqueFd log;
    if (!logFile.empty()) {
        log.reset(::open(logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
        opts.stdoutFd = log.get();
        opts.stderrFd = log.get();
    }
    auto child = ChildProcess::spawn(opts);
    if (!child) throw std::runtime_error("cannot start " + opts.argv[0] + ": " + child.error().describe());
    return std::unique_ptr<ProcessGuard>(new ProcessGuard(std::move(*child)));
}

ProcessGuard::~ProcessGuard() {
    if (child_ && child_->running()) stop(std::chrono::seconds(3));
}

bool ProcessGuard::running() {
    child_->poll();
    return child_->running();
}

ExitStatus ProcessGuard::stop(std::chrono::milliseconds grace) {
    if (!running()) return *child_->exitStatus();
    (void)child_->signal(SIGTERM);
    auto st = child_->waitFor(grace);
    if (st) return *st;
    (void)child_->signal(SIGKILL);
    auto st2 = child_->waitFor(std::chrono::seconds(10));
    return st2 ? *st2 : ExitStatus{};
}

ExitStatus ProcessGuard::kill9() {
    if (!running()) return *child_->exitStatus();
    (void)child_->signal(SIGKILL);
    auto st = child_->waitFor(std::chrono::seconds(10));
    return st ? *st : ExitStatus{};
}

std::string findProgram(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::stringstream ss(path ? path : "/usr/bin:/bin");
    std::string dir;
    while (std::getline(ss, dir, ':')) {
        auto p = std::filesystem::path(dir) / name;
        if (::access(p.c_str(), X_OK) == 0) return p.string();
    }
    return {};
}

std::string readFile(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    if (!f) return {};
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void writeFile(const std::filesystem::path& p, const std::string& content) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << content;
}

}  // namespace berth::testing
