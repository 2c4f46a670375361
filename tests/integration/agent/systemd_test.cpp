// berthd under a service manager: the sd_notify datagrams (READY, STATUS, WATCHDOG,
// STOPPING) arrive on the socket named by NOTIFY_SOCKET, watchdog pings come from the
// event loop (they stop when the loop is wedged), and logs carry journald's "<N>"
// priority prefixes when stderr is the stream named by JOURNAL_STREAM.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "berth/core/fd.h"
#include "berth/testing/agent_harness.h"

extern char** environ;

namespace {

using namespace std::chrono_literals;
using berth::UniqueFd;
using berth::agenttest::exampleConfig;
namespace bt = berth::testing;
namespace fs = std::filesystem;

// The service manager's end: a datagram socket bound at a path.
class NotifySocket {
public:
    explicit NotifySocket(fs::path path) : path_(std::move(path)) {
        fd_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        REQUIRE(fd_.valid());
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        REQUIRE(path_.string().size() < sizeof sa.sun_path);
        std::strcpy(sa.sun_path, path_.c_str());
        REQUIRE(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    }
    // The next datagram, or "" when none comes within `timeout`.
    std::string receive(std::chrono::milliseconds timeout) {
        pollfd p{fd_.get(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return {};
        char buf[4096];
        ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
        return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
    }
    // Waits for a datagram containing `what` (others are kept in seen()).
    bool waitFor(const std::string& what, std::chrono::milliseconds timeout) {
        auto end = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < end) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
            std::string d = receive(std::max(left, 1ms));
            if (d.empty()) continue;
            seen_.push_back(d);
            if (d.find(what) != std::string::npos) return true;
        }
        return false;
    }
    // Counts datagrams containing `what` arriving within `window`.
    int count(const std::string& what, std::chrono::milliseconds window) {
        int n = 0;
        auto end = std::chrono::steady_clock::now() + window;
        while (std::chrono::steady_clock::now() < end) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
            std::string d = receive(std::max(left, 1ms));
            if (d.empty()) continue;
            seen_.push_back(d);
            if (d.find(what) != std::string::npos) ++n;
        }
        return n;
    }
    const std::vector<std::string>& seen() const { return seen_; }

private:
    fs::path path_;
    UniqueFd fd_;
    std::vector<std::string> seen_;
};

std::vector<std::string> environmentWith(const std::vector<std::string>& extra) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
        std::string kv = *e;
        bool replaced = false;
        for (const auto& x : extra) replaced |= kv.compare(0, x.find('=') + 1, x, 0, x.find('=') + 1) == 0;
        if (!replaced) env.push_back(kv);
    }
    env.insert(env.end(), extra.begin(), extra.end());
    return env;
}

struct SupervisedBerthd {
    explicit SupervisedBerthd(std::vector<std::string> extraEnv = {}) {
        fs::permissions(tmp.path(), fs::perms(0755));
        broker = std::make_unique<bt::Mosquitto>(tmp / "broker");
        notify = std::make_unique<NotifySocket>(tmp / "notify.sock");
        bt::writeFile(tmp / "berth.conf", exampleConfig(broker->port()));
        // journald's stream is the log file: its device and inode go into JOURNAL_STREAM.
        bt::writeFile(tmp / "berthd.log", "");
        struct stat st {};
        REQUIRE(::stat((tmp / "berthd.log").c_str(), &st) == 0);
        extraEnv.push_back("NOTIFY_SOCKET=" + (tmp / "notify.sock").string());
        extraEnv.push_back("JOURNAL_STREAM=" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
        proc = bt::ProcessGuard::start({BERTHD_BIN, "--config", (tmp / "berth.conf").string(), "--db",
                                        (tmp / "berth.db").string(), "--log-level", "info"},
                                       (tmp / "berthd.log").string(), environmentWith(extraEnv));
    }
    std::string log() const { return bt::readFile(tmp / "berthd.log"); }

    bt::TempDir tmp{"berth-systemd"};
    std::unique_ptr<bt::Mosquitto> broker;
    std::unique_ptr<NotifySocket> notify;
    std::unique_ptr<bt::ProcessGuard> proc;
};

}  // namespace

TEST_CASE("berthd under a notify socket sends READY with its endpoint in STATUS, and STOPPING on SIGTERM",
          "[systemd][integration]") {
    SupervisedBerthd d;
    REQUIRE(d.notify->waitFor("READY=1", 15s));
    CHECK(d.notify->seen().back().find("STATUS=running as os::012345-0001") != std::string::npos);
    auto st = d.proc->stop(10s);
    CHECK(st.success());
    CHECK(d.notify->waitFor("STOPPING=1", 2s));
    // stderr is the journal stream: lines carry priorities, not timestamps.
    std::string log = d.log();
    CHECK(log.find("<6>[berthd] berthd ") != std::string::npos);
    CHECK(log.find("Z INFO") == std::string::npos);
}

TEST_CASE("berthd pings the watchdog from its event loop and the pings stop when the loop is wedged",
          "[systemd][integration]") {
    // WatchdogSec=0.4: pings every 200 ms.
    SupervisedBerthd d({"WATCHDOG_USEC=400000", "BERTH_TEST_WEDGE_SIGNAL=1"});
    REQUIRE(d.notify->waitFor("READY=1", 15s));
    int pings = d.notify->count("WATCHDOG=1", 1500ms);
    CHECK(pings >= 4);
    CHECK(pings <= 10);

    REQUIRE(::kill(d.proc->pid(), SIGUSR2) == 0);
    REQUIRE(bt::waitUntil([&] { return d.log().find("wedging the event loop") != std::string::npos; }, 10s));
    // A ping already in flight may still arrive; after that, none for many intervals.
    (void)d.notify->count("WATCHDOG=1", 300ms);
    CHECK(d.notify->count("WATCHDOG=1", 2000ms) == 0);
    CHECK(d.proc->running());
    d.proc->kill9();
}

TEST_CASE("berthd ignores a watchdog meant for another process (WATCHDOG_PID)", "[systemd][integration]") {
    SupervisedBerthd d({"WATCHDOG_USEC=200000", "WATCHDOG_PID=1"});
    REQUIRE(d.notify->waitFor("READY=1", 15s));
    CHECK(d.notify->count("WATCHDOG=1", 1000ms) == 0);
}
