// The container security policy as it lands in config.json, the shipped seccomp
// profiles, capability parsing, and layers stored for a user namespace.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "berth/oci/bundle.h"
#include "berth/oci/image_store.h"
#include "berth/oci/security.h"
#include "berth/testing/platform_limits.h"
#include "berth/testing/support.h"
#include "oci_test_util.h"

using namespace berth::oci;
using berth::oci::testing::buildImage;
using berth::oci::testing::TarBuilder;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

ImageConfig shImage() {
    ImageConfig c;
    c.cmd = {"/bin/sh"};
    return c;
}

BundleParams defaultParams() {
    BundleParams p;
    auto profile = defaultSeccompProfile();
    REQUIRE(profile);
    p.security.seccomp = *profile;
    return p;
}

bool contains(const json& array, const std::string& value) {
    return std::find(array.begin(), array.end(), value) != array.end();
}

// The names refused with EPERM by a profile, without argument conditions.
std::vector<std::string> refusedOutright(const json& profile) {
    std::vector<std::string> out;
    for (const auto& s : profile["syscalls"])
        if (s["action"] == "SCMP_ACT_ERRNO" && !s.contains("args"))
            for (const auto& n : s["names"]) out.push_back(n.get<std::string>());
    return out;
}

std::size_t countEntries(const fs::path& dir) {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

}  // namespace

TEST_CASE("By default a container gets runc's three capabilities, noNewPrivileges and the shipped seccomp profile",
          "[oci][security]") {
    auto cfg = makeRuntimeConfig(shImage(), {}, "c1", defaultParams());
    REQUIRE(cfg);
    const json& caps = (*cfg)["process"]["capabilities"];
    for (const char* set : {"bounding", "effective", "permitted"})
        CHECK(caps[set] == json({"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}));
    CHECK_FALSE(caps.contains("ambient"));
    CHECK((*cfg)["process"]["noNewPrivileges"] == true);
    REQUIRE((*cfg)["linux"].contains("seccomp"));
    CHECK((*cfg)["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ALLOW");
    CHECK_FALSE((*cfg)["linux"]["seccomp"].contains("comment"));
    CHECK((*cfg)["root"]["readonly"] == false);
    // No id map: no user namespace.
    for (const auto& ns : (*cfg)["linux"]["namespaces"]) CHECK(ns["type"] != "user");
    CHECK_FALSE((*cfg)["linux"].contains("uidMappings"));
}

TEST_CASE("With an id map the container gets a user namespace mapping its root to the ExecEnv's first host id",
          "[oci][security]") {
    BundleParams p = defaultParams();
    p.security.idMap = defaultIdMapping(3);
    CHECK(p.security.idMap.hostBase == (1u << 30) + 2 * 65536);
    CHECK(p.security.idMap.size == 65536);
    auto cfg = makeRuntimeConfig(shImage(), {}, "c1", p);
    REQUIRE(cfg);
    bool user = false;
    for (const auto& ns : (*cfg)["linux"]["namespaces"]) user |= ns["type"] == "user";
    CHECK(user);
    json map = json::array({{{"containerID", 0}, {"hostID", p.security.idMap.hostBase}, {"size", 65536}}});
    CHECK((*cfg)["linux"]["uidMappings"] == map);
    CHECK((*cfg)["linux"]["gidMappings"] == map);
    CHECK((*cfg)["process"]["user"]["uid"] == 0);
    // sysfs is still mounted (the container has its own network namespace).
    bool sysfs = false;
    for (const auto& m : (*cfg)["mounts"]) sysfs |= m["destination"] == "/sys" && m["type"] == "sysfs";
    CHECK(sysfs);

    ContainerSettings hostNet;
    hostNet.hostNetwork = true;
    auto cfg2 = makeRuntimeConfig(shImage(), hostNet, "c2", p);
    REQUIRE(cfg2);
    for (const auto& m : (*cfg2)["mounts"])
        if (m["destination"] == "/sys") {
            CHECK(m["source"] == "/sys");
            CHECK(contains(m["options"], "rbind"));
            CHECK(contains(m["options"], "ro"));
        }
}

TEST_CASE("A container user outside the id map is refused", "[oci][security]") {
    BundleParams p = defaultParams();
    p.security.idMap = IdMapping{200000, 1000};
    ContainerSettings s;
    s.user = "1000:0";
    auto cfg = makeRuntimeConfig(shImage(), s, "c1", p);
    REQUIRE_FALSE(cfg);
    CHECK(cfg.error().kind == ErrorKind::kInvalidArgument);
    CHECK(cfg.error().message.find("outside") != std::string::npos);
    s.user = "999:999";
    CHECK(makeRuntimeConfig(shImage(), s, "c1", p));
}

TEST_CASE("A widened capability set and a read-only rootfs from the policy reach config.json", "[oci][security]") {
    BundleParams p = defaultParams();
    auto caps = parseCapabilities("CAP_AUDIT_WRITE, kill,NET_BIND_SERVICE net_admin CAP_KILL");
    REQUIRE(caps);
    CHECK(*caps == std::vector<std::string>{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN"});
    p.security.capabilities = *caps;
    p.security.readOnlyRootfs = true;
    auto cfg = makeRuntimeConfig(shImage(), {}, "c1", p);
    REQUIRE(cfg);
    CHECK(contains((*cfg)["process"]["capabilities"]["effective"], "CAP_NET_ADMIN"));
    CHECK((*cfg)["root"]["readonly"] == true);
}

TEST_CASE("An unknown capability name is refused and named", "[oci][security]") {
    auto caps = parseCapabilities("CAP_KILL,CAP_GOD_MODE");
    REQUIRE_FALSE(caps);
    CHECK(caps.error().kind == ErrorKind::kInvalidArgument);
    CHECK(caps.error().message.find("CAP_GOD_MODE") != std::string::npos);
    auto empty = parseCapabilities("");
    REQUIRE(empty);
    CHECK(empty->empty());
}

TEST_CASE("Masked and read-only paths are runc's plus /proc/interrupts and powercap, and rlimits are set",
          "[oci][security]") {
    auto cfg = makeRuntimeConfig(shImage(), {}, "c1", defaultParams());
    REQUIRE(cfg);
    const json& masked = (*cfg)["linux"]["maskedPaths"];
    for (const char* p : {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
                          "/proc/interrupts", "/sys/devices/virtual/powercap"})
        CHECK(contains(masked, p));
    const json& ro = (*cfg)["linux"]["readonlyPaths"];
    for (const char* p : {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}) CHECK(contains(ro, p));
    bool nofile = false, core = false;
    for (const auto& r : (*cfg)["process"]["rlimits"]) {
        nofile |= r["type"] == "RLIMIT_NOFILE" && r["hard"] == 1024;
        core |= r["type"] == "RLIMIT_CORE" && r["hard"] == 0;
    }
    CHECK(nofile);
    CHECK(core);
}

TEST_CASE("The shipped seccomp profiles refuse namespaces, keyrings, bpf, mounts, ptrace and module loading on x86-64 and arm64",
          "[oci][security]") {
    for (const char* arch : {"x86_64", "aarch64"}) {
        INFO(arch);
        auto p = shippedSeccompProfile(arch);
        REQUIRE(p);
        CHECK((*p)["architectures"] ==
              json::array({std::string(arch) == "x86_64" ? "SCMP_ARCH_X86_64" : "SCMP_ARCH_AARCH64"}));
        auto refused = refusedOutright(*p);
        for (const char* sc : {"unshare", "setns", "keyctl", "add_key", "request_key", "bpf", "userfaultfd", "ptrace",
                               "mount", "umount2", "pivot_root", "kexec_load", "kexec_file_load", "init_module",
                               "finit_module", "delete_module", "perf_event_open", "open_by_handle_at", "fsopen",
                               "move_mount", "process_vm_writev", "reboot", "swapon", "io_uring_setup"})
            CHECK(std::find(refused.begin(), refused.end(), sc) != refused.end());
        // clone with CLONE_NEWUSER (0x10000000) is refused by an argument rule; clone3 gets ENOSYS.
        bool cloneUser = false, clone3 = false;
        for (const auto& s : (*p)["syscalls"]) {
            if (s["names"] == json::array({"clone"}) && s.contains("args"))
                cloneUser |= s["args"][0]["value"] == 0x10000000 && s["args"][0]["op"] == "SCMP_CMP_MASKED_EQ";
            if (s["names"] == json::array({"clone3"})) clone3 = s["errnoRet"] == 38;
        }
        CHECK(cloneUser);
        CHECK(clone3);
    }
    auto bad = shippedSeccompProfile("mips");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().message.find("X_BERTH_SeccompProfile") != std::string::npos);
}

TEST_CASE("A seccomp profile file that is not a linux.seccomp object is refused with the reason", "[oci][security]") {
    berth::testing::TempDir tmp("seccomp");
    std::string path = (tmp / "p.json").string();
    berth::testing::writeFile(path, "{\"syscalls\": []}");
    auto p = loadSeccompProfile(path);
    REQUIRE_FALSE(p);
    CHECK(p.error().kind == ErrorKind::kInvalidArgument);
    CHECK(p.error().message.find("defaultAction") != std::string::npos);
    berth::testing::writeFile(path, "not json");
    CHECK(loadSeccompProfile(path).error().kind == ErrorKind::kCorruptData);
    CHECK(loadSeccompProfile((tmp / "missing.json").string()).error().kind == ErrorKind::kNotFound);
    berth::testing::writeFile(path, R"({"defaultAction":"SCMP_ACT_ERRNO","comment":"x",
        "syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"}]})");
    auto ok = loadSeccompProfile(path);
    REQUIRE(ok);
    CHECK_FALSE(ok->contains("comment"));
    CHECK((*ok)["syscalls"][0]["names"] == json({"read", "write"}));
}

TEST_CASE("A store opened with an id map keeps layer owners shifted by its base and refuses owners outside it",
          "[oci][security]") {
    BERTH_SKIP_IF_MISSING(berth::testing::openat2Missing());
    berth::testing::TempDir tmp("oci-idmap");
    {
        TarBuilder l((tmp / "l.tar").string());
        l.dir("etc").file("etc/root-owned", "r").owner(1000, 100).file("home-file", "h").owner(0, 0).file("implicit/f", "i");
    }
    ImageDefinition def;
    auto img = buildImage(tmp.path(), "img", {(tmp / "l.tar").string()}, def);
    UnpackLimits limits;
    limits.owners = IdMapping{300000, 65536};
    auto store = ImageStore::open((tmp / "store").string(), limits);
    REQUIRE(store);
    PullRequest req;
    req.fetch.url = "file://" + img.archive;
    auto rec = (*store)->pull(req);
    REQUIRE(rec);
    std::string layer = (*store)->layerDirs(*rec).at(0);
    struct stat st {};
    REQUIRE(::stat((layer + "/etc/root-owned").c_str(), &st) == 0);
    CHECK(st.st_uid == 300000);
    CHECK(st.st_gid == 300000);
    REQUIRE(::stat((layer + "/home-file").c_str(), &st) == 0);
    CHECK(st.st_uid == 301000);
    CHECK(st.st_gid == 300100);
    REQUIRE(::stat(layer.c_str(), &st) == 0);
    CHECK(st.st_uid == 300000);
    REQUIRE(::stat((layer + "/implicit").c_str(), &st) == 0);  // a directory the archive left out
    CHECK(st.st_uid == 300000);

    // The ExecEnv's map changes: reopening re-owns what is stored.
    store->reset();
    limits.owners = IdMapping{500000, 65536};
    store = ImageStore::open((tmp / "store").string(), limits);
    REQUIRE(store);
    REQUIRE(::stat((layer + "/home-file").c_str(), &st) == 0);
    CHECK(st.st_uid == 501000);
    CHECK(st.st_gid == 500100);
    // Opened without an opinion (tools, cleanup), the store keeps its owners.
    store->reset();
    store = ImageStore::open((tmp / "store").string());
    REQUIRE(store);
    CHECK((*store)->limits().ownerMap().hostBase == 500000);
    REQUIRE(::stat((layer + "/home-file").c_str(), &st) == 0);
    CHECK(st.st_uid == 501000);

    // An owner beyond the map is refused and leaves nothing behind.
    {
        TarBuilder l((tmp / "big.tar").string());
        l.owner(70000, 0).file("f", "x");
    }
    auto big = buildImage(tmp.path(), "big", {(tmp / "big.tar").string()}, def);
    req.fetch.url = "file://" + big.archive;
    auto r = (*store)->pull(req);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::kUnsafeArchive);
    CHECK(r.error().message.find("70000") != std::string::npos);
    CHECK(countEntries(tmp / "store" / "tmp") == 0);
}
