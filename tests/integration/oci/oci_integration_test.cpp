// Needs root, runc, crun, skopeo, umoci, python3 and busybox-static (all on the
// build machines). Every container gets a unique ID, its own runtime --root and
// cgroup parent, and is removed even when a check fails.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/process.h"
#include "berth/oci/container.h"
#include "berth/oci/digest.h"
#include "berth/oci/image_store.h"
#include "berth/testing/support.h"
#include "oci_test_util.h"

using namespace berth::oci;
namespace fs = std::filesystem;
using berth::testing::TempDir;

namespace {

std::string uniqueSuffix() {
    static int n = 0;
    return std::to_string(::getpid()) + "-" + std::to_string(++n);
}

// A busybox image written into dir; returns the archive.
berth::oci::testing::BuiltImage busyboxImage(const fs::path& dir, const std::string& name,
                                            std::vector<std::string> cmd = {"/bin/sh"}) {
    fs::path rootfs = dir / (name + "-rootfs");
    berth::oci::testing::makeBusyboxRootfs(rootfs);
    std::string tar = (dir / (name + "-layer.tar")).string();
    REQUIRE(tarDirectory(rootfs.string(), tar, false));
    ImageDefinition def;
    def.cmd = std::move(cmd);
    def.refName = "latest";
    def.annotations = {{"org.opencontainers.image.title", name}, {"org.opencontainers.image.vendor", "example.com"},
                       {"org.opencontainers.image.version", "1.0.0"}};
    return berth::oci::testing::buildImage(dir, name, {tar}, def);
}

// Starts `python3 -m http.server` on a free loopback port serving dir.
struct HttpServer {
    int port = berth::testing::freeTcpPort();
    std::unique_ptr<berth::testing::ProcessGuard> proc;
    explicit HttpServer(const fs::path& dir) {
        proc = berth::testing::ProcessGuard::start({"python3", "-m", "http.server", "--bind", "127.0.0.1",
                                                    std::to_string(port), "--directory", dir.string()},
                                                   (dir / "http.log").string());
        REQUIRE(berth::testing::waitUntil([&] { return berth::testing::tcpPortOpen(port); }));
    }
    std::string url(const std::string& file) const { return "http://127.0.0.1:" + std::to_string(port) + "/" + file; }
};

// Everything a container test needs, torn down in the right order.
struct Env {
    TempDir tmp{"oci-it"};
    berth::SystemClock clock;
    berth::EventLoop loop{clock};
    std::unique_ptr<berth::Subreaper> reaper;
    std::unique_ptr<ContainerWatcher> watcher;
    std::unique_ptr<ImageStore> images;
    std::unique_ptr<ContainerManager> containers;
    std::set<std::string> ids;

    explicit Env(RuntimeKind kind = RuntimeKind::kRunc, std::optional<IdMapping> idMap = std::nullopt,
                 bool allowOverlay = true) {
        UnpackLimits limits;
        limits.owners = idMap;
        auto s = ImageStore::open((tmp / "store").string(), limits);
        REQUIRE(s);
        images = std::move(*s);
        ContainerManagerOptions o;
        o.stateDir = (tmp / "state").string();
        o.runtime = kind;
        o.cgroupParent = "/berth-test-" + uniqueSuffix();
        o.runtimeTimeout = std::chrono::seconds(30);
        o.logCapBytes = 64 << 10;
        o.allowOverlay = allowOverlay;
        if (idMap) o.security.idMap = *idMap;
        auto m = ContainerManager::open(o, *images);
        REQUIRE(m);
        containers = std::move(*m);
        auto r = berth::Subreaper::create(loop, [this](pid_t pid, berth::ExitStatus st) {
            if (watcher) watcher->onReaped(pid, st);
        });
        REQUIRE(r);
        reaper = std::move(*r);
        watcher = std::make_unique<ContainerWatcher>(loop, containers->cgroups());
    }
    ~Env() {
        for (const auto& id : ids) (void)containers->remove(id, true);
        containers->removeCgroupParent();
        watcher.reset();
        loop.runOnce(std::chrono::milliseconds(0));  // deferred watch deletions
    }
    std::string newId(const std::string& base) {
        std::string id = base + "-" + uniqueSuffix();
        ids.insert(id);
        return id;
    }
    ImageRecord pull(const std::string& url) {
        PullRequest req;
        req.fetch.url = url;
        auto r = images->pull(req);
        if (!r) FAIL(r.error().describe());
        return *r;
    }
    // Runs a container and waits (on the loop) for its exit.
    ContainerExit runToExit(const std::string& id, const std::string& image, const ContainerSettings& s) {
        auto info = containers->create(id, image, s);
        if (!info) FAIL(info.error().describe());
        std::optional<ContainerExit> exit;
        auto w = watcher->watch(id, info->pid, info->record.cgroupPath, [&](const ContainerExit& e) { exit = e; });
        REQUIRE(w);
        auto st = containers->start(id);
        if (!st) FAIL(st.error().describe());
        REQUIRE(berth::testing::runUntil(loop, [&] { return exit.has_value(); }, std::chrono::seconds(30)));
        return *exit;
    }
};

struct Node {
    std::string type;
    unsigned mode = 0;
    unsigned uid = 0, gid = 0;
    std::string content;  // sha256 for files, target for links
    bool operator==(const Node& o) const {
        return type == o.type && mode == o.mode && uid == o.uid && gid == o.gid && content == o.content;
    }
};

std::map<std::string, Node> snapshot(const fs::path& root) {
    std::map<std::string, Node> out;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
        struct stat st {};
        REQUIRE(::lstat(it->path().c_str(), &st) == 0);
        Node n;
        n.mode = st.st_mode & 07777;
        n.uid = st.st_uid;
        n.gid = st.st_gid;
        if (S_ISREG(st.st_mode)) {
            n.type = "file";
            n.content = *sha256File(it->path().string());
        } else if (S_ISDIR(st.st_mode)) {
            n.type = "dir";
        } else if (S_ISLNK(st.st_mode)) {
            n.type = "link";
            n.content = fs::read_symlink(it->path()).string();
            n.mode = 0;  // link modes are meaningless
        } else {
            n.type = "other";
        }
        out[fs::relative(it->path(), root).string()] = n;
    }
    return out;
}

}  // namespace

TEST_CASE("An image served over HTTP is pulled, verified, run, and the file its container writes is read back",
          "[oci][integration]") {
    Env env;
    auto img = busyboxImage(env.tmp.path(), "hello");
    HttpServer http(env.tmp.path());

    // The test's own image is a valid OCI archive by skopeo's judgement.
    berth::SpawnOptions so;
    so.argv = {"skopeo", "inspect", "oci-archive:" + img.archive};
    auto insp = berth::runCommand(so, std::chrono::seconds(60));
    REQUIRE(insp);
    INFO(insp->err);
    REQUIRE(insp->status.success());
    auto inspected = nlohmann::json::parse(insp->out);
    CHECK(inspected["Digest"] == img.manifest.digest);

    auto rec = env.pull(http.url("hello.tar"));
    CHECK(rec.manifestDigest == img.manifest.digest);
    CHECK(rec.metadata.name == "hello");
    CHECK(rec.metadata.vendor == "example.com");
    CHECK(rec.metadata.version == "1.0.0");

    fs::path data = env.tmp / "data";
    fs::create_directories(data);
    ContainerSettings s;
    s.args = {"/bin/sh", "-c", "echo \"hello from $GREETING\" > /data/out; echo to-console"};
    s.extraEnv = {"GREETING=berth"};
    s.mounts = {{data.string(), "/data", false}};
    s.memoryLimitBytes = 64 << 20;
    s.pidsLimit = 32;
    std::string id = env.newId("hello");
    auto exit = env.runToExit(id, rec.manifestDigest, s);
    REQUIRE(exit.status);
    CHECK(exit.status->exited);
    CHECK(exit.status->code == 0);
    CHECK_FALSE(exit.oomKilled);
    CHECK(berth::testing::readFile(data / "out") == "hello from berth\n");
    CHECK(berth::testing::readFile(env.containers->logPath(id)).find("to-console") != std::string::npos);

    auto info = env.containers->info(id);
    REQUIRE(info);
    CHECK(info->status == "stopped");
    REQUIRE(env.containers->remove(id));
    CHECK_FALSE(fs::exists(env.containers->containerDir(id)));
    CHECK_FALSE(env.containers->info(id));
}

TEST_CASE("Stop escalates from TERM to KILL when a shell as PID 1 ignores TERM", "[oci][integration]") {
    Env env;
    auto img = busyboxImage(env.tmp.path(), "sleeper");
    auto rec = env.pull(img.archive);
    std::string id = env.newId("sleeper");
    ContainerSettings s;
    s.args = {"/bin/sh", "-c", "while true; do sleep 1; done"};
    auto info = env.containers->run(id, rec.manifestDigest, s);
    REQUIRE(info);
    std::optional<ContainerExit> exit;
    REQUIRE(env.watcher->watch(id, info->pid, info->record.cgroupPath, [&](const ContainerExit& e) { exit = e; }));

    auto fig = env.containers->figures(id);
    REQUIRE(fig);
    CHECK(fig->cgroup.pids >= 1);
    CHECK(fig->cgroup.memoryBytes > 0);

    auto stopped = env.containers->stop(id, std::chrono::milliseconds(300));
    REQUIRE(stopped);
    CHECK(stopped->killed);
    REQUIRE(berth::testing::runUntil(env.loop, [&] { return exit.has_value(); }));
    REQUIRE(exit->status);
    CHECK_FALSE(exit->status->exited);
    CHECK(exit->status->signal == SIGKILL);
    CHECK_FALSE(exit->oomKilled);
}

TEST_CASE("A container that allocates past its memory limit is killed by the cgroup and reported as OOM",
          "[oci][integration]") {
    Env env;
    auto img = busyboxImage(env.tmp.path(), "hog");
    auto rec = env.pull(img.archive);
    ContainerSettings s;
    s.args = {"/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"};
    s.memoryLimitBytes = 32 << 20;
    auto exit = env.runToExit(env.newId("hog"), rec.manifestDigest, s);
    REQUIRE(exit.status);
    CHECK_FALSE(exit.status->exited);
    CHECK(exit.status->signal == SIGKILL);
    CHECK(exit.oomKilled);
    CHECK(exit.oomKills >= 1);
}

TEST_CASE("A restarted manager finds the containers of its state directory and their state", "[oci][integration]") {
    Env env;
    auto img = busyboxImage(env.tmp.path(), "adopt");
    auto rec = env.pull(img.archive);
    std::string created = env.newId("created");
    std::string running = env.newId("running");
    ContainerSettings s;
    s.args = {"/bin/sh", "-c", "while true; do sleep 1; done"};
    REQUIRE(env.containers->create(created, rec.manifestDigest, s));
    REQUIRE(env.containers->run(running, rec.manifestDigest, s));

    auto again = ContainerManager::open(env.containers->options(), *env.images);
    REQUIRE(again);
    auto all = (*again)->list();
    REQUIRE(all);
    std::map<std::string, ContainerInfo> byId;
    for (const auto& c : *all) byId[c.record.id] = c;
    REQUIRE(byId.count(created));
    REQUIRE(byId.count(running));
    CHECK(byId[created].status == "created");
    CHECK(byId[running].status == "running");
    CHECK(byId[running].pid > 0);
    CHECK(byId[running].record.imageDigest == rec.manifestDigest);
    CHECK(byId[running].hasRecord);
    REQUIRE((*again)->stop(running, std::chrono::milliseconds(200)));
    REQUIRE((*again)->remove(running));
    REQUIRE((*again)->remove(created, true));
    auto left = (*again)->list();
    REQUIRE(left);
    CHECK(left->empty());
}

TEST_CASE("The unpacked rootfs equals umoci's unpacking of the same image", "[oci][integration]") {
    TempDir tmp("oci-umoci");
    auto img = busyboxImage(tmp.path(), "cmp");
    auto rec = unpackArchive(img.archive, (tmp / "ours").string(), UnpackLimits{});
    REQUIRE(rec);
    berth::SpawnOptions so;
    so.argv = {"umoci", "unpack", "--image", img.layoutDir + ":latest", (tmp / "bundle").string()};
    auto r = berth::runCommand(so, std::chrono::seconds(60));
    REQUIRE(r);
    INFO(r->err);
    REQUIRE(r->status.success());
    auto ours = snapshot(tmp / "ours");
    auto theirs = snapshot(tmp / "bundle/rootfs");
    CHECK(ours.size() == theirs.size());
    CHECK(ours.size() > 10);
    for (const auto& [path, node] : theirs) {
        INFO(path);
        REQUIRE(ours.count(path));
        CHECK(ours[path] == node);
    }
}

TEST_CASE("HTTP failures and a corrupted blob over HTTP are told apart", "[oci][integration]") {
    TempDir tmp("oci-http");
    auto img = busyboxImage(tmp.path(), "good");
    auto bad = berth::oci::testing::buildImage(tmp.path(), "bad", {(tmp / "good-layer.tar").string()}, {},
                                               [](berth::oci::testing::BuiltImage& b) {
                                                   std::string p = b.layoutDir + "/blobs/sha256/" + digestHex(b.layers[0].digest);
                                                   std::string bytes = berth::testing::readFile(p);
                                                   bytes[100] ^= 1;
                                                   berth::testing::writeFile(p, bytes);
                                               });
    HttpServer http(tmp.path());
    auto store = ImageStore::open((tmp / "store").string());
    REQUIRE(store);
    PullRequest req;
    req.fetch.url = http.url("missing.tar");
    auto r = (*store)->pull(req);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::kNotFound);

    req.fetch.url = "http://127.0.0.1:" + std::to_string(berth::testing::freeTcpPort()) + "/x.tar";
    r = (*store)->pull(req);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::kServerUnreachable);

    req.fetch.url = http.url("bad.tar");
    r = (*store)->pull(req);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::kDigestMismatch);
    CHECK(fs::is_empty(tmp / "store/layers"));
    CHECK(fs::is_empty(tmp / "store/tmp"));

    req.fetch.url = http.url("good.tar");
    req.fetch.maxBytes = 1000;
    r = (*store)->pull(req);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::kQuotaExceeded);
}

TEST_CASE("crun runs a container on this hybrid-cgroup host through the workaround", "[oci][integration]") {
    Env env(RuntimeKind::kCrun);
    auto img = busyboxImage(env.tmp.path(), "crun");
    auto rec = env.pull(img.archive);
    ContainerSettings s;
    s.args = {"/bin/sh", "-c", "exit 7"};
    auto exit = env.runToExit(env.newId("crun"), rec.manifestDigest, s);
    REQUIRE(exit.status);
    CHECK(exit.status->exited);
    CHECK(exit.status->code == 7);
}

TEST_CASE("A runtime failure is reported with the runtime's own reason", "[oci][integration]") {
    Env env;
    auto img = busyboxImage(env.tmp.path(), "broken");
    auto rec = env.pull(img.archive);
    ContainerSettings s;
    s.args = {"/no/such/program"};
    std::string id = env.newId("broken");
    auto info = env.containers->create(id, rec.manifestDigest, s);
    RunnerStatus started = info ? env.containers->start(id) : RunnerStatus(info.error());
    REQUIRE_FALSE(started);
    CHECK(started.error().kind == ErrorKind::kRuntimeFailed);
    CHECK_THAT(started.error().message, Catch::Contains("no such file") || Catch::Contains("No such file") ||
                                            Catch::Contains("not found"));
}

TEST_CASE("A chatty container's console log is capped by rotation", "[oci][integration]") {
    Env env;
    auto img = busyboxImage(env.tmp.path(), "chatty");
    auto rec = env.pull(img.archive);
    ContainerSettings s;
    s.args = {"/bin/sh", "-c", "i=0; while [ $i -lt 4000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done"};
    std::string id = env.newId("chatty");
    auto exit = env.runToExit(id, rec.manifestDigest, s);
    REQUIRE(exit.status);
    CHECK(exit.status->code == 0);
    auto before = fs::file_size(env.containers->logPath(id));
    CHECK(before > 64u << 10);
    REQUIRE(env.containers->enforceLogCap(id));
    CHECK(fs::file_size(env.containers->logPath(id)) == 0);
    CHECK(fs::file_size(env.containers->logPath(id) + ".1") <= 64u << 10);
    CHECK(berth::testing::readFile(env.containers->logPath(id) + ".1").find("line-3999") != std::string::npos);
}

TEST_CASE("With a user namespace a container runs as the mapped root over overlay and over a copied rootfs, "
          "and what it writes in its writable layer belongs to the mapped root on the host",
          "[oci][integration]") {
    bool overlay = GENERATE(true, false);
    INFO((overlay ? "overlay" : "copy"));
    IdMapping map = defaultIdMapping(9);
    Env env(RuntimeKind::kRunc, map, overlay);
    auto img = busyboxImage(env.tmp.path(), "mapped",
                                 {"/bin/sh", "-c",
                                  "cat /proc/self/uid_map; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; "
                                  "touch /made-here && echo wrote; ls -ln /bin/busybox"});
    HttpServer http(env.tmp.path());
    auto rec = env.pull(http.url(fs::path(img.archive).filename().string()));
    std::string id = env.newId("mapped");
    auto exit = env.runToExit(id, rec.manifestDigest, {});
    REQUIRE(exit.status);
    std::string log = berth::testing::readFile(env.containers->logPath(id));
    INFO(log);
    CHECK(exit.status->success());
    std::istringstream uidMap(log);  // first line: "         0 1074266112      65536"
    std::uint64_t inside = 99, outside = 0, size = 0;
    uidMap >> inside >> outside >> size;
    CHECK(inside == 0);
    CHECK(outside == map.hostBase);
    CHECK(size == 65536);
    CHECK(log.find("Seccomp:\t2") != std::string::npos);
    CHECK(log.find("NoNewPrivs:\t1") != std::string::npos);
    CHECK(log.find("wrote") != std::string::npos);
    // Inside, the image's files belong to root (0 0), not to the overflow id.
    CHECK(log.find(" 0        0 ") != std::string::npos);
    auto info = env.containers->info(id);
    REQUIRE(info);
    fs::path written = fs::path(env.containers->containerDir(id)) / (overlay ? "upper" : "rootfs") / "made-here";
    struct stat st {};
    REQUIRE(::lstat(written.c_str(), &st) == 0);
    CHECK(st.st_uid == map.hostBase);
    CHECK(info->record.rootfsMode == (overlay ? "overlay" : "copy"));
}
