#include <catch2/catch.hpp>

#include <filesystem>

#include "berth/oci/bundle.h"
#include "berth/oci/cgroup.h"
#include "berth/oci/runtime.h"
#include "berth/testing/platform_limits.h"
#include "berth/testing/support.h"

using namespace berth::oci;
namespace fs = std::filesystem;

TEST_CASE("A hybrid host's mountinfo is detected as v1 controllers plus a unified mount", "[oci]") {
    berth::testing::TempDir tmp("oci-cg");
    berth::testing::writeFile(tmp / "mountinfo",
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "35 31 0:32 / " + (tmp / "memory").string() + " rw,relatime - cgroup cgroup rw,memory\n"
        "33 31 0:30 / " + (tmp / "cpuacct").string() + " rw,relatime - cgroup cgroup rw,cpuacct\n"
        "39 31 0:36 / " + (tmp / "pids").string() + " rw,relatime - cgroup cgroup rw,pids\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n");
    auto l = CgroupLayout::detect((tmp / "mountinfo").string());
    REQUIRE(l);
    CHECK(l->version == CgroupVersion::kHybrid);
    CHECK(l->unifiedMount == "/sys/fs/cgroup/unified");
    fs::create_directories(tmp / "memory/berth/c1");
    fs::create_directories(tmp / "cpuacct/berth/c1");
    fs::create_directories(tmp / "pids/berth/c1");
    berth::testing::writeFile(tmp / "memory/berth/c1/memory.usage_in_bytes", "4096\n");
    berth::testing::writeFile(tmp / "memory/berth/c1/memory.limit_in_bytes", "33554432\n");
    berth::testing::writeFile(tmp / "memory/berth/c1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
    berth::testing::writeFile(tmp / "memory/berth/c1/memory.failcnt", "17\n");
    berth::testing::writeFile(tmp / "cpuacct/berth/c1/cpuacct.usage", "123456789\n");
    berth::testing::writeFile(tmp / "pids/berth/c1/pids.current", "3\n");
    auto f = readCgroupFigures(*l, "/berth/c1");
    REQUIRE(f);
    CHECK(f->memoryBytes == 4096);
    CHECK(*f->memoryLimitBytes == 33554432);
    CHECK(f->oomKills == 2);
    CHECK(f->memoryFailCount == 17);
    CHECK(f->cpuNanos == 123456789);
    CHECK(f->pids == 3);
    CHECK(readCgroupFigures(*l, "/berth/gone").error().kind == ErrorKind::kNotFound);
}

TEST_CASE("A pure cgroup v2 host is read from memory.current, cpu.stat and memory.events", "[oci]") {
    berth::testing::TempDir tmp("oci-cg2");
    berth::testing::writeFile(tmp / "mountinfo",
        "30 23 0:26 / " + tmp.path().string() + " rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
    auto l = CgroupLayout::detect((tmp / "mountinfo").string());
    REQUIRE(l);
    CHECK(l->version == CgroupVersion::kV2);
    fs::create_directories(tmp / "berth/c2");
    berth::testing::writeFile(tmp / "berth/c2/cgroup.procs", "");
    berth::testing::writeFile(tmp / "berth/c2/memory.current", "8192\n");
    berth::testing::writeFile(tmp / "berth/c2/memory.max", "max\n");
    berth::testing::writeFile(tmp / "berth/c2/memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n");
    berth::testing::writeFile(tmp / "berth/c2/cpu.stat", "usage_usec 2500\nuser_usec 2000\n");
    berth::testing::writeFile(tmp / "berth/c2/pids.current", "1\n");
    auto f = readCgroupFigures(*l, "/berth/c2");
    REQUIRE(f);
    CHECK(f->memoryBytes == 8192);
    CHECK_FALSE(f->memoryLimitBytes);
    CHECK(f->oomKills == 1);
    CHECK(f->cpuNanos == 2500000);
    CHECK(f->pids == 1);
}

TEST_CASE("The runtime's JSON log is summarised into its error messages", "[oci]") {
    std::string log =
        "{\"level\":\"info\",\"msg\":\"starting\",\"time\":\"t\"}\n"
        "{\"level\":\"error\",\"msg\":\"runc create failed: unable to start container process: exec: \\\"/x\\\": "
        "stat /x: no such file or directory\",\"time\":\"t\"}\n"
        "garbage line\n";
    auto s = summariseRuntimeLog(log);
    CHECK_THAT(s, Catch::Contains("stat /x: no such file or directory"));
    CHECK_THAT(s, Catch::Contains("garbage line"));
    CHECK_THAT(s, !Catch::Contains("starting"));
    CHECK(summariseRuntimeLog("").empty());
}

TEST_CASE("Container IDs are limited to what runc accepts", "[oci]") {
    CHECK(isValidContainerId("oci-runc.1"));
    CHECK(isValidContainerId("a_b+c"));
    CHECK_FALSE(isValidContainerId(""));
    CHECK_FALSE(isValidContainerId("../x"));
    CHECK_FALSE(isValidContainerId(".hidden"));
    CHECK_FALSE(isValidContainerId(std::string(65, 'a')));
}

TEST_CASE("config.json merges the image config with the caller's settings", "[oci]") {
    BERTH_SKIP_IF_MISSING(berth::testing::openat2Missing());
    berth::testing::TempDir tmp("oci-bundle");
    fs::create_directories(tmp / "rootfs/etc");
    berth::testing::writeFile(tmp / "rootfs/etc/passwd", "root:x:0:0::/:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n");
    berth::testing::writeFile(tmp / "rootfs/etc/group", "root:x:0:\nstaff:x:50:\n");
    ImageConfig img;
    img.entrypoint = {"/bin/app"};
    img.cmd = {"--serve"};
    img.env = {"PATH=/bin", "MODE=image"};
    img.workingDir = "/srv";
    img.user = "app";
    ContainerSettings s;
    s.extraEnv = {"MODE=caller", "EXTRA=1"};
    s.memoryLimitBytes = 16 << 20;
    s.cpus = 0.5;
    s.pidsLimit = 20;
    s.mounts = {{"/host/data", "/data", false}};
    BundleParams p;
    p.rootfsDir = (tmp / "rootfs").string();
    p.cgroupsPath = "/berth/x";
    auto c = makeRuntimeConfig(img, s, "x", p);
    REQUIRE(c);
    auto& j = *c;
    CHECK(j["process"]["args"] == nlohmann::json({"/bin/app", "--serve"}));
    CHECK(j["process"]["env"] == nlohmann::json({"PATH=/bin", "MODE=caller", "EXTRA=1"}));
    CHECK(j["process"]["cwd"] == "/srv");
    CHECK(j["process"]["user"]["uid"] == 1000);
    CHECK(j["process"]["user"]["gid"] == 1001);
    CHECK(j["linux"]["resources"]["memory"]["limit"] == 16 << 20);
    CHECK(j["linux"]["resources"]["cpu"]["quota"] == 50000);
    CHECK(j["linux"]["resources"]["pids"]["limit"] == 20);
    CHECK(j["linux"]["cgroupsPath"] == "/berth/x");
    CHECK(j["hostname"] == "x");
    bool hasNet = false;
    for (const auto& ns : j["linux"]["namespaces"]) hasNet |= ns["type"] == "network";
    CHECK(hasNet);
    CHECK(j["mounts"].back()["destination"] == "/data");
    CHECK(j["mounts"].back()["options"].back() == "rw");

    s.user = "app:staff";
    CHECK(makeRuntimeConfig(img, s, "x", p)->at("process").at("user").at("gid") == 50);
    s.user = "ghost";
    CHECK(makeRuntimeConfig(img, s, "x", p).error().kind == ErrorKind::kNotFound);
    s.user.reset();
    s.mounts = {{"/host", "relative", true}};
    CHECK(makeRuntimeConfig(img, s, "x", p).error().kind == ErrorKind::kInvalidArgument);
    ImageConfig empty;
    CHECK(makeRuntimeConfig(empty, ContainerSettings{}, "x", BundleParams{}).error().kind == ErrorKind::kInvalidArgument);
}
