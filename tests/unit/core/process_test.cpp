#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>

#include "berth/core/process.h"
#include "berth/testing/platform_limits.h"
#include "berth/testing/support.h"

using namespace std::chrono_literals;
using berth::ChildProcess;
using berth::SpawnOptions;

TEST_CASE("runCommand captures output and the exit code", "[core][process]") {
    SpawnOptions o;
    o.argv = {"sh", "-c", "echo out; echo err >&2; exit 3"};
    auto r = berth::runCommand(o, 5s);
    REQUIRE(r);
    CHECK(r->out == "out\n");
    CHECK(r->err == "err\n");
    CHECK(r->status.exited);
    CHECK(r->status.code == 3);
    CHECK(r->status.describe() == "exit 3");
}

TEST_CASE("runCommand kills a program that passes its deadline", "[core][process]") {
    SpawnOptions o;
    o.argv = {"sleep", "30"};
    auto start = std::chrono::steady_clock::now();
    auto r = berth::runCommand(o, 200ms);
    REQUIRE(r);
    CHECK(r->timedOut);
    CHECK(r->status.signal == SIGKILL);
    CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("runCommand returns when the child exits even if a grandchild keeps the pipes open", "[core][process]") {
    SpawnOptions o;
    o.argv = {"sh", "-c", "sleep 30 & echo started"};
    auto start = std::chrono::steady_clock::now();
    auto r = berth::runCommand(o, 10s);
    REQUIRE(r);
    CHECK(r->status.success());
    CHECK(r->out == "started\n");
    CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("Spawning a missing program is a clear error", "[core][process]") {
    BERTH_SKIP_IF_MISSING(berth::testing::spawnExecErrorsMissing());
    SpawnOptions o;
    o.argv = {"/nonexistent/program"};
    auto r = ChildProcess::spawn(o);
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find("/nonexistent/program") != std::string::npos);
}

TEST_CASE("A child's exit is seen by the loop through its pidfd", "[core][process]") {
    berth::SystemClock clock;
    berth::EventLoop loop(clock);
    SpawnOptions o;
    o.argv = {"sh", "-c", "kill -TERM $$"};
    auto c = ChildProcess::spawn(o);
    REQUIRE(c);
    std::optional<berth::ExitStatus> seen;
    auto w = (*c)->onExit(loop, [&](berth::ExitStatus s) { seen = s; });
    REQUIRE(w);
    REQUIRE(berth::testing::runUntil(loop, [&] { return seen.has_value(); }));
    CHECK_FALSE(seen->exited);
    CHECK(seen->signal == SIGTERM);
    CHECK(seen->shellCode() == 143);
    CHECK(seen->describe() == "killed by SIGTERM");
}

TEST_CASE("Destroying a ChildProcess kills and reaps a running child", "[core][process]") {
    SpawnOptions o;
    o.argv = {"sleep", "30"};
    pid_t pid;
    {
        auto c = ChildProcess::spawn(o);
        REQUIRE(c);
        pid = (*c)->pid();
    }
    // Reaped: the pid is no longer our child.
    CHECK(::waitpid(pid, nullptr, WNOHANG) == -1);
}

TEST_CASE("The subreaper reaps orphans reparented to it but never a ChildProcess it does not own", "[core][process]") {
    BERTH_SKIP_IF_MISSING(berth::testing::subreaperMissing());
    berth::SystemClock clock;
    berth::EventLoop loop(clock);
    std::vector<pid_t> orphans;
    auto reaper = berth::Subreaper::create(loop, [&](pid_t p, berth::ExitStatus) { orphans.push_back(p); });
    REQUIRE(reaper);

    // Our own child, owned by a ChildProcess, must stay ours to reap.
    SpawnOptions own;
    own.argv = {"sh", "-c", "exit 7"};
    auto mine = ChildProcess::spawn(own);
    REQUIRE(mine);

    // A double fork: the intermediate shell exits, its child becomes an orphan and is
    // reparented to us (the subreaper).
    SpawnOptions dbl;
    dbl.argv = {"sh", "-c", "sh -c 'exit 0' & exit 0"};
    auto parent = ChildProcess::spawn(dbl);
    REQUIRE(parent);
    REQUIRE((*parent)->waitFor(5s));

    REQUIRE(berth::testing::runUntil(loop, [&] {
        (*reaper)->sweep();  // also driven by SIGCHLD; sweep again in case it arrived early
        return !orphans.empty();
    }));
    auto st = (*mine)->waitFor(5s);
    REQUIRE(st);
    CHECK(st->code == 7);
    for (pid_t p : orphans) CHECK(p != (*mine)->pid());
}

TEST_CASE("A claimed pid is left alone by the subreaper sweep until released", "[core][process]") {
    BERTH_SKIP_IF_MISSING(berth::testing::subreaperMissing());
    berth::SystemClock clock;
    berth::EventLoop loop(clock);
    std::vector<pid_t> orphans;
    auto reaper = berth::Subreaper::create(loop, [&](pid_t p, berth::ExitStatus) { orphans.push_back(p); });
    REQUIRE(reaper);
    // An intermediate process forks a grandchild, reports its pid and exits; the
    // grandchild exits at once and, as an orphan, becomes our (the subreaper's) child.
    auto pipe = berth::makePipe();
    REQUIRE(pipe);
    pid_t intermediate = ::fork();
    REQUIRE(intermediate >= 0);
    if (intermediate == 0) {
        pid_t g = ::fork();
        if (g == 0) ::_exit(0);
        (void)!::write(pipe->writeEnd.get(), &g, sizeof g);
        ::_exit(0);
    }
    pipe->writeEnd.reset();
    pid_t grandchild = 0;
    REQUIRE(::read(pipe->readEnd.get(), &grandchild, sizeof grandchild) == static_cast<ssize_t>(sizeof grandchild));
    berth::Subreaper::claim(grandchild);
    REQUIRE(::waitpid(intermediate, nullptr, 0) == intermediate);
    // The grandchild is now our exited child, waiting to be reaped.
    REQUIRE(berth::testing::waitUntil([&] {
        siginfo_t si{};
        return ::waitid(P_PID, static_cast<id_t>(grandchild), &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
               si.si_pid == grandchild;
    }));
    (*reaper)->sweep();
    CHECK(std::find(orphans.begin(), orphans.end(), grandchild) == orphans.end());
    berth::Subreaper::release(grandchild);
    (*reaper)->sweep();
    CHECK(std::find(orphans.begin(), orphans.end(), grandchild) != orphans.end());
}
