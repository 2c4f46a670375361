// openBeneath: paths resolved below a directory without following any symbolic link.
#include "berth/core/beneath.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <filesystem>
#include <fstream>

#include "berth/testing/platform_limits.h"
#include "berth/testing/support.h"

namespace fs = std::filesystem;
using berth::BeneathFailure;
using berth::openBeneath;
using berth::pathIsBelow;

TEST_CASE("pathIsBelow compares whole path components", "[core][beneath]") {
    CHECK(pathIsBelow("/srv/apps", "/srv/apps"));
    CHECK(pathIsBelow("/srv/apps/", "/srv/apps/one"));
    CHECK(pathIsBelow("/srv/apps", "/srv/apps/one/two"));
    CHECK_FALSE(pathIsBelow("/srv/apps", "/srv/appsX"));
    CHECK_FALSE(pathIsBelow("/srv/apps", "/srv"));
    CHECK_FALSE(pathIsBelow("", "/srv"));
    CHECK(pathIsBelow("/", "/etc"));
}

TEST_CASE("openBeneath opens what lies below the directory and refuses links, escapes and missing paths",
          "[core][beneath]") {
    BERTH_SKIP_IF_MISSING(berth::testing::openat2Missing());
    berth::testing::TempDir tmp("beneath");
    fs::path root = tmp / "root";
    fs::create_directories(root / "a" / "b");
    std::ofstream(root / "a" / "file") << "x";
    fs::create_directory_symlink("/", root / "hostroot");
    fs::create_directory_symlink(root / "a", root / "inner");
    fs::create_symlink(root / "a" / "file", root / "a" / "filelink");

    SECTION("plain paths open, the directory itself too") {
        auto r = openBeneath(root.string(), (root / "a" / "file").string(), O_RDONLY);
        REQUIRE(r);
        char c = 0;
        CHECK(::read(r.fd.get(), &c, 1) == 1);
        CHECK(c == 'x');
        CHECK(openBeneath(root.string(), (root / "a" / "b").string(), O_PATH));
        CHECK(openBeneath(root.string(), root.string(), O_PATH));
    }
    SECTION("a link anywhere in the path is refused as a link, even one that stays inside") {
        for (const fs::path& p : {root / "hostroot", root / "hostroot" / "etc", root / "inner", root / "inner" / "file",
                                  root / "a" / "filelink"}) {
            INFO(p);
            auto r = openBeneath(root.string(), p.string(), O_PATH);
            CHECK_FALSE(r);
            CHECK(r.error.kind == BeneathFailure::kSymlink);
            CHECK(r.error.message.find("symbolic link") != std::string::npos);
        }
    }
    SECTION("'..' cannot leave the directory, and other paths are not below it") {
        auto r = openBeneath(root.string(), (root / "a" / ".." / ".." / "root").string(), O_PATH);
        CHECK_FALSE(r);
        CHECK(r.error.kind == BeneathFailure::kNotBelow);
        auto other = openBeneath(root.string(), "/etc", O_PATH);
        CHECK_FALSE(other);
        CHECK(other.error.kind == BeneathFailure::kNotBelow);
    }
    SECTION("a missing path says so") {
        auto r = openBeneath(root.string(), (root / "nope").string(), O_PATH);
        CHECK_FALSE(r);
        CHECK(r.error.kind == BeneathFailure::kMissing);
    }
}

TEST_CASE("openBeneath on a kernel without openat2 opens nothing and says Linux 5.6 is needed", "[core][beneath]") {
    berth::testing::TempDir tmp("beneath-nosys");
    fs::create_directories(tmp / "root" / "a");
    std::string root = (tmp / "root").string();
    auto attempt = [&] {
        auto r = openBeneath(root, root + "/a", O_PATH);
        return std::to_string(r.fd.valid()) + "|" + std::to_string(r.error.err) + "|" + r.error.message;
    };
    std::string seen;
    if (!berth::testing::openat2Missing().empty()) {
        seen = attempt();  // already so here (qemu-user)
    } else {
        auto pipe = berth::makePipe();
        REQUIRE(pipe);
        pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            std::string out = berth::testing::hideOpenat2() ? attempt() : "seccomp filter refused";
            (void)!::write(pipe->writeEnd.get(), out.data(), out.size());
            ::_exit(0);
        }
        pipe->writeEnd.reset();
        char buf[512];
        ssize_t n;
        while ((n = ::read(pipe->readEnd.get(), buf, sizeof buf)) > 0)
            seen.append(buf, static_cast<std::size_t>(n));
        int st = 0;
        REQUIRE(::waitpid(pid, &st, 0) == pid);
    }
    CHECK(seen == "0|" + std::to_string(ENOSYS) + "|the kernel has no openat2 (Linux 5.6 or later is needed)");
}
