// Containers unprivileged by default, checked from inside running EUs under real
// runc and crun: seccomp, no_new_privs, capabilities, the user namespace, the owner
// of files written through a rw HostObject, and what the configuration (and only
// the configuration) may widen.
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "smm_harness.h"

using namespace smmtest;
using berth::ErrorCode;

namespace {

// Records what the EU sees into /out, then idles until TERM.
const char* kProbe =
    "cat /proc/self/status > /out/status; cat /proc/self/uid_map > /out/uid_map; "
    "if unshare -U true 2>/out/unshare.err; then echo allowed; else echo refused; fi > /out/unshare; "
    "if touch /rootfs-probe 2>/dev/null; then echo writable; else echo readonly; fi > /out/rootfs; "
    "touch /out/written; echo done > /out/done; "
    "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done";

// "CapEff:\t0000000020000420" -> 0x20000420
std::uint64_t statusMask(const std::string& status, const std::string& key) {
    std::istringstream in(status);
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(key + ":", 0) == 0) return std::stoull(line.substr(key.size() + 1), nullptr, 16);
    FAIL("no " << key << " in /proc/self/status");
    return 0;
}

std::string statusField(const std::string& status, const std::string& key) {
    std::istringstream in(status);
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(key + ":", 0) == 0) {
            auto v = line.substr(key.size() + 1);
            return v.substr(v.find_first_not_of(" \t"));
        }
    return "<none>";
}

constexpr std::uint64_t bit(int cap) { return 1ull << cap; }
// CAP_KILL 5, CAP_NET_BIND_SERVICE 10, CAP_NET_ADMIN 12, CAP_AUDIT_WRITE 29
constexpr std::uint64_t kRuncDefault = bit(5) | bit(10) | bit(29);

struct Probe {
    std::string du, eu;
    fs::path out;
};

Probe startProbe(Harness& h, Site& site, HttpServer& http, const std::string& archive, const std::string& name,
                 const std::string& ee = "Device.SoftwareModules.ExecEnv.1", std::uint32_t eeInstance = 1) {
    Probe p;
    p.out = site.host / name;
    fs::create_directories(p.out);
    giveToMappedRoot(p.out, eeInstance);
    std::tie(p.du, p.eu) = h.install({{"URL", http.url(archive)},
                                      {"ExecutionEnvRef", ee},
                                      {"EnvVariable.1.Key", "APP_CMD"},
                                      {"EnvVariable.1.Value", kProbe},
                                      {"HostObject.1.Source", p.out.string()},
                                      {"HostObject.1.Destination", "/out"},
                                      {"HostObject.1.Options", "rw"},
                                      {"ShutdownDelay", "2"}});
    REQUIRE(h.operate(p.eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(h.waitStatus(p.eu, "Active"));
    REQUIRE(h.waitFor([&] { return berth::testing::readFile(p.out / "done") == "done\n"; }));
    return p;
}

void checkUnprivileged(const Probe& p, std::uint32_t eeInstance, std::uint64_t caps) {
    std::string status = berth::testing::readFile(p.out / "status");
    INFO(status);
    CHECK(statusField(status, "Seccomp") == "2");
    CHECK(statusField(status, "NoNewPrivs") == "1");
    CHECK(statusMask(status, "CapEff") == caps);
    CHECK(statusMask(status, "CapBnd") == caps);
    std::uint32_t base = berth::oci::defaultIdMapping(eeInstance).hostBase;
    std::istringstream map(berth::testing::readFile(p.out / "uid_map"));
    std::uint64_t inside = 99, outside = 0, size = 0;
    map >> inside >> outside >> size;
    CHECK(inside == 0);
    CHECK(outside == base);
    CHECK(size == 65536);
    CHECK(berth::testing::readFile(p.out / "unshare") == "refused\n");
    CHECK(berth::testing::readFile(p.out / "unshare.err").find("not permitted") != std::string::npos);
    struct stat st {};
    REQUIRE(::stat((p.out / "written").c_str(), &st) == 0);
    CHECK(st.st_uid == base);
    CHECK(st.st_gid == base);
}

}  // namespace

TEST_CASE("An EU under runc runs with seccomp, no_new_privs, runc's three capabilities and a non-root uid map, "
          "cannot unshare a user namespace, and its rw HostObject files belong to the mapped root",
          "[smm][integration][security]") {
    Site site;
    std::string a = buildApp(site.images, "probe", "1.0.0");
    HttpServer http(site.images);
    Harness h(site);
    REQUIRE(h.get("Device.SoftwareModules.ExecEnv.1.Status") == "Up");
    Probe p = startProbe(h, site, http, a, "probe");
    checkUnprivileged(p, 1, kRuncDefault);
    CHECK(berth::testing::readFile(p.out / "rootfs") == "writable\n");
    // The image's files are owned by the mapped ids in the ExecEnv's store.
    struct stat st {};
    bool sawLayer = false;
    for (const auto& layer : fs::directory_iterator(site.eeStore() / "layers")) {
        REQUIRE(::lstat((layer.path() / "bin/busybox").c_str(), &st) == 0);
        CHECK(st.st_uid == berth::oci::defaultIdMapping(1).hostBase);
        sawLayer = true;
    }
    CHECK(sawLayer);
    // Only root and this ExecEnv's mapped group may walk into its containers.
    REQUIRE(::stat(site.eeState().c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0710);
    CHECK(st.st_uid == 0);
    CHECK(st.st_gid == berth::oci::defaultIdMapping(1).hostBase);
    REQUIRE(h.operate(p.eu + "SetRequestedState()", {{"RequestedState", "Idle"}})->result);
    REQUIRE(h.waitStatus(p.eu, "Idle"));
    CHECK(h.get(p.eu + "ExecutionFaultCode") == "NoFault");
}

TEST_CASE("An EU under crun gets the same protections as under runc", "[smm][integration][security]") {
    if (berth::testing::findProgram("crun").empty()) {
        SUCCEED("crun not installed");
        return;
    }
    Site site;
    site.config = {{"Device.SoftwareModules.ExecEnv.1.Name", "crunapps"},
                   {"Device.SoftwareModules.ExecEnv.1.Enable", "true"},
                   {"Device.SoftwareModules.ExecEnv.1.X_BERTH_Runtime", "crun"},
                   {"Device.SoftwareModules.ExecEnv.1.X_BERTH_CgroupParent", site.cgroupParent + "/crunapps"},
                   {"Device.SoftwareModules.ExecEnv.1.X_BERTH_HostObjectPrefixes", site.host.string()}};
    std::string a = buildApp(site.images, "cprobe", "1.0.0");
    HttpServer http(site.images);
    Harness h(site);
    REQUIRE(h.get("Device.SoftwareModules.ExecEnv.1.Status") == "Up");
    Probe p = startProbe(h, site, http, a, "cprobe");
    checkUnprivileged(p, 1, kRuncDefault);
    REQUIRE(h.operate(p.eu + "SetRequestedState()", {{"RequestedState", "Idle"}})->result);
    REQUIRE(h.waitStatus(p.eu, "Idle"));
}

TEST_CASE("Capabilities widened and a read-only rootfs set by the configuration reach the EU, and a controller "
          "cannot change them",
          "[smm][integration][security]") {
    Site site;
    site.config.push_back({"Device.SoftwareModules.ExecEnv.1.X_BERTH_Capabilities",
                           "CAP_AUDIT_WRITE,CAP_KILL,CAP_NET_BIND_SERVICE,CAP_NET_ADMIN"});
    site.config.push_back({"Device.SoftwareModules.ExecEnv.1.X_BERTH_ReadOnlyRootfs", "true"});
    std::string a = buildApp(site.images, "wide", "1.0.0");
    HttpServer http(site.images);
    Harness h(site);
    REQUIRE(h.get("Device.SoftwareModules.ExecEnv.1.Status") == "Up");
    Probe p = startProbe(h, site, http, a, "wide");
    checkUnprivileged(p, 1, kRuncDefault | bit(12));
    CHECK(berth::testing::readFile(p.out / "rootfs") == "readonly\n");

    // A controller's Set of the security parameters is refused and changes nothing.
    for (const auto& [param, value] : std::vector<std::pair<std::string, std::string>>{
             {"X_BERTH_Capabilities", "CAP_SYS_ADMIN"},
             {"X_BERTH_SeccompProfile", "unconfined"},
             {"X_BERTH_IdMapSize", "0"},
             {"X_BERTH_ReadOnlyRootfs", "false"}}) {
        INFO(param);
        std::string before = h.get("Device.SoftwareModules.ExecEnv.1." + param);
        berth::dm::SetRequest req;
        req.objects.push_back({"Device.SoftwareModules.ExecEnv.1.", {{param, value, true}}});
        auto resp = h.engine->set(req, berth::dm::Permissions::fullAccess());
        bool refused = resp.error.has_value();
        for (const auto& r : resp.results) refused |= !r.success;
        CHECK(refused);
        if (resp.error) {
            bool named = resp.error->code == ErrorCode::kParameterNotWritable;
            for (const auto& pe : resp.error->paramErrors) named |= pe.code == ErrorCode::kParameterNotWritable;
            CHECK(named);
        }
        CHECK(h.get("Device.SoftwareModules.ExecEnv.1." + param) == before);
    }
    // Restarted with the same configuration, the EU still has exactly the configured set.
    REQUIRE(h.operate(p.eu + "SetRequestedState()", {{"RequestedState", "Idle"}})->result);
    REQUIRE(h.waitStatus(p.eu, "Idle"));
    fs::remove(p.out / "done");
    REQUIRE(h.operate(p.eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(h.waitFor([&] { return berth::testing::readFile(p.out / "done") == "done\n"; }));
    CHECK(statusMask(berth::testing::readFile(p.out / "status"), "CapEff") == (kRuncDefault | bit(12)));
}

TEST_CASE("An ExecEnv configured with an unknown capability or a broken seccomp profile is in Error and says why",
          "[smm][integration][security]") {
    Site site;
    fs::path profile = site.tmp / "broken-seccomp.json";
    std::ofstream(profile) << "{\"syscalls\": 3}";
    site.config.push_back({"Device.SoftwareModules.ExecEnv.1.X_BERTH_Capabilities", "CAP_KILL,CAP_ALL_POWERFUL"});
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.Name", "other"});
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.Enable", "true"});
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.X_BERTH_CgroupParent", site.cgroupParent + "/other"});
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.X_BERTH_SeccompProfile", profile.string()});
    Harness h(site);
    CHECK(h.get("Device.SoftwareModules.ExecEnv.1.Status") == "Error");
    CHECK(h.get("Device.SoftwareModules.ExecEnv.1.X_BERTH_StatusMessage").find("CAP_ALL_POWERFUL") != std::string::npos);
    CHECK(h.get("Device.SoftwareModules.ExecEnv.2.Status") == "Error");
    CHECK(h.get("Device.SoftwareModules.ExecEnv.2.X_BERTH_StatusMessage").find("seccomp") != std::string::npos);
}
