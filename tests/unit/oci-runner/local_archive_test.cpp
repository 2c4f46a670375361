// ImageStore::pull of local archives (file: URLs and plain paths) and the admit hook.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>

#include "berth/core/fd.h"
#include "berth/oci/image_store.h"
#include "berth/testing/platform_limits.h"
#include "berth/testing/support.h"
#include "oci_test_util.h"

using namespace berth::oci;
using berth::oci::testing::buildImage;
using berth::oci::testing::TarBuilder;
namespace fs = std::filesystem;

namespace {

std::size_t countEntries(const fs::path& dir) {
    std::size_t n = 0;
    for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it)
        ++n;
    return n;
}

struct Local {
    berth::testing::TempDir tmp{"oci-local"};
    fs::path store = tmp / "store";
    fs::path allowed = tmp / "allowed";
    std::string archive;
    std::unique_ptr<ImageStore> images;
    Local() {
        fs::create_directories(allowed);
        {
            TarBuilder l((tmp / "l.tar").string());
            l.file("hello", "world");
        }
        ImageDefinition def;
        def.cmd = {"/hello"};
        auto img = buildImage(tmp.path(), "img", {(tmp / "l.tar").string()}, def);
        archive = (allowed / "img.tar").string();
        fs::copy_file(img.archive, archive);
        auto s = ImageStore::open(store.string());
        REQUIRE(s);
        images = std::move(*s);
    }
    RunnerResult<ImageRecord> pull(const std::string& path, std::optional<std::vector<std::string>> dirs) {
        PullRequest req;
        req.fetch.url = "file://" + path;
        req.fetch.fileDirectories = std::move(dirs);
        return images->pull(req);
    }
};

}  // namespace

TEST_CASE("A local archive must be a regular file: a FIFO is refused at once instead of blocking the pull", "[oci]") {
    Local f;
    fs::path fifo = f.allowed / "fifo.tar";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    auto t0 = std::chrono::steady_clock::now();
    auto r = f.pull(fifo.string(), std::nullopt);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::kNotFound);
    CHECK(countEntries(f.store / "tmp") == 0);
}

TEST_CASE("With file directories set, only regular files beneath them are read, with one error for everything else",
          "[oci]") {
    BERTH_SKIP_IF_MISSING(berth::testing::openat2Missing());
    Local f;
    std::vector<std::string> dirs{f.allowed.string()};
    fs::create_symlink(f.archive, f.allowed / "link.tar");
    fs::create_directories(f.allowed / "dir.tar");
    fs::path outside = f.tmp / "outside.tar";
    fs::copy_file(f.archive, outside);
    std::string text;
    for (const fs::path& p : {f.allowed / "link.tar", f.allowed / "dir.tar", f.allowed / "missing.tar", outside}) {
        INFO(p);
        auto r = f.pull(p.string(), dirs);
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == ErrorKind::kNotFound);
        if (text.empty()) text = r.error().message;
        CHECK(r.error().message == text);
    }
    auto off = f.pull(f.archive, std::vector<std::string>{});
    REQUIRE_FALSE(off);
    CHECK(off.error().kind == ErrorKind::kInvalidArgument);
    auto ok = f.pull(f.archive, dirs);
    REQUIRE(ok);
    CHECK(countEntries(f.store / "images") == 1);
}

TEST_CASE("An image the admit hook refuses is not committed and nothing of it stays in the store", "[oci]") {
    BERTH_SKIP_IF_MISSING(berth::testing::openat2Missing());
    Local f;
    PullRequest req;
    req.fetch.url = "file://" + f.archive;
    std::uint64_t seen = 0;
    req.admit = [&](const ImageRecord& rec) -> RunnerStatus {
        seen = rec.unpackedBytes;
        return RunnerError(ErrorKind::kQuotaExceeded, "no room");
    };
    auto r = f.images->pull(req);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::kQuotaExceeded);
    CHECK(seen >= 5);  // "world"
    CHECK(countEntries(f.store / "images") == 0);
    CHECK(countEntries(f.store / "layers") == 0);
    CHECK(countEntries(f.store / "tmp") == 0);
}

TEST_CASE("A pull on a kernel without openat2 fails with a message naming Linux 5.6 and stores nothing", "[oci]") {
    Local f;
    auto attempt = [&] {
        auto r = f.pull(f.archive, std::nullopt);
        if (r) return std::string("pulled");
        return r.error().message + "|" + std::to_string(countEntries(f.store / "tmp"));
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
    INFO(seen);
    CHECK(seen.find("Linux 5.6 or later is needed") != std::string::npos);
    CHECK(seen.find("Function not implemented") == std::string::npos);
    CHECK(seen.substr(seen.rfind('|') + 1) == "0");
    auto stored = f.images->list();
    REQUIRE(stored);
    CHECK(stored->empty());
}
