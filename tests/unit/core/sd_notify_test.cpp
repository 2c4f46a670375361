#include "berth/core/sd_notify.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <string>

using berth::SdNotifier;
using berth::UniqueFd;

namespace {

// A receiving datagram socket in the abstract namespace, unique to this process.
struct AbstractSocket {
    AbstractSocket() {
        name = "@berth-sd-test-" + std::to_string(::getpid());
        fd = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::memcpy(sa.sun_path + 1, name.data() + 1, name.size() - 1);
        REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa),
                       static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size())) == 0);
    }
    std::string receive() {
        pollfd p{fd.get(), POLLIN, 0};
        if (::poll(&p, 1, 2000) <= 0) return {};
        char buf[512];
        ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
        return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
    }
    std::string name;
    UniqueFd fd;
};

}  // namespace

TEST_CASE("SdNotifier sends one datagram per notification to an abstract-namespace socket", "[core][sd_notify]") {
    AbstractSocket s;
    auto n = SdNotifier::toSocket(s.name);
    REQUIRE(n);
    CHECK(n->enabled());
    REQUIRE(n->notify("READY=1\nSTATUS=running"));
    REQUIRE(n->notify("WATCHDOG=1"));
    CHECK(s.receive() == "READY=1\nSTATUS=running");
    CHECK(s.receive() == "WATCHDOG=1");
}

TEST_CASE("SdNotifier refuses a socket address that is neither a path nor @name with 7004", "[core][sd_notify]") {
    auto n = SdNotifier::toSocket("relative/notify.sock");
    REQUIRE_FALSE(n);
    CHECK(n.error().numeric() == 7004);
}

TEST_CASE("SdNotifier reports a missing socket as an error naming it", "[core][sd_notify]") {
    auto n = SdNotifier::toSocket("/nonexistent-berth-dir/notify.sock");
    REQUIRE(n);
    auto st = n->notify("READY=1");
    REQUIRE_FALSE(st);
    CHECK(st.error().message.find("/nonexistent-berth-dir/notify.sock") != std::string::npos);
}

TEST_CASE("SdNotifier from an environment without NOTIFY_SOCKET does nothing and succeeds", "[core][sd_notify]") {
    ::unsetenv("NOTIFY_SOCKET");
    auto n = SdNotifier::fromEnvironment();
    CHECK_FALSE(n.enabled());
    CHECK(n.notify("READY=1"));
    CHECK_FALSE(n.watchdogInterval());
}

TEST_CASE("SdNotifier takes WATCHDOG_USEC only when WATCHDOG_PID is unset or names this process", "[core][sd_notify]") {
    AbstractSocket s;
    ::setenv("NOTIFY_SOCKET", s.name.c_str(), 1);
    ::setenv("WATCHDOG_USEC", "3000000", 1);
    ::unsetenv("WATCHDOG_PID");
    CHECK(SdNotifier::fromEnvironment().watchdogInterval() == std::chrono::microseconds(3000000));
    ::setenv("NOTIFY_SOCKET", s.name.c_str(), 1);
    ::setenv("WATCHDOG_USEC", "3000000", 1);
    ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
    CHECK(SdNotifier::fromEnvironment().watchdogInterval() == std::chrono::microseconds(3000000));
    ::setenv("NOTIFY_SOCKET", s.name.c_str(), 1);
    ::setenv("WATCHDOG_USEC", "3000000", 1);
    ::setenv("WATCHDOG_PID", "1", 1);
    CHECK_FALSE(SdNotifier::fromEnvironment().watchdogInterval());
    ::setenv("NOTIFY_SOCKET", s.name.c_str(), 1);
    ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
    ::setenv("WATCHDOG_USEC", "soon", 1);
    CHECK_FALSE(SdNotifier::fromEnvironment().watchdogInterval());
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
    ::unsetenv("WATCHDOG_PID");
}

TEST_CASE("SdNotifier takes the notification variables out of the environment and can put them back",
          "[core][sd_notify]") {
    AbstractSocket s;
    ::setenv("NOTIFY_SOCKET", s.name.c_str(), 1);
    ::setenv("WATCHDOG_USEC", "2000000", 1);
    ::unsetenv("WATCHDOG_PID");
    auto n = SdNotifier::fromEnvironment();
    REQUIRE(n.enabled());
    // Children (runc) must not see them.
    CHECK(std::getenv("NOTIFY_SOCKET") == nullptr);
    CHECK(std::getenv("WATCHDOG_USEC") == nullptr);
    n.restoreEnvironment();
    REQUIRE(std::getenv("NOTIFY_SOCKET") != nullptr);
    CHECK(std::string(std::getenv("NOTIFY_SOCKET")) == s.name);
    CHECK(std::string(std::getenv("WATCHDOG_USEC")) == "2000000");
    CHECK(std::string(std::getenv("WATCHDOG_PID")) == std::to_string(::getpid()));
    auto again = SdNotifier::fromEnvironment();
    CHECK(again.enabled());
    CHECK(again.watchdogInterval() == std::chrono::microseconds(2000000));
}
