// InstallDU and Update from an OCI registry (docker://) through berthd over MQTT: Debian's
// docker-registry on loopback with htpasswd Basic auth, images pushed with skopeo.
#include <catch2/catch.hpp>

#include "berth/testing/oci_registry.h"
#include "e2e_fixture.h"

using namespace berth::smme2e;
using namespace std::chrono_literals;
using berth::oci::testing::RegistryServer;
using berth::oci::testing::runOrFail;

namespace {

const std::string kPassword = "Reg1stry-pw-4e2e";

// Every file berthd and its ExecEnv keep (database, journal, keys, store, log) that
// holds `needle`.
std::vector<std::string> filesHolding(const fs::path& root, const std::string& needle) {
    std::vector<std::string> hits;
    for (const auto& e : fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied)) {
        if (!e.is_regular_file() || e.file_size() > (8u << 20)) continue;
        if (berth::testing::readFile(e.path()).find(needle) != std::string::npos) hits.push_back(e.path().string());
    }
    return hits;
}

}  // namespace

TEST_CASE("InstallDU from a docker:// reference with Username and Password installs the DU, no password is kept in "
          "clear, and Update without arguments re-pulls the moved tag with the sealed credentials",
          "[smm_e2e][registry]") {
    Fixture f;
    std::string v1 = buildApp(f.www, "hello", "1.0.0");
    std::string v2 = buildApp(f.www, "hello", "1.1.0");
    runOrFail({"htpasswd", "-Bbc", (f.tmp / "htpasswd").string(), "gateway", kPassword});
    RegistryServer reg(f.tmp / "registry", f.tmp / "registry-data");
    reg.auth = RegistryServer::Auth::kHtpasswd;
    reg.htpasswdFile = (f.tmp / "htpasswd").string();
    reg.start();
    auto push = [&](const std::string& archive, const std::string& tag) {
        runOrFail({"skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", "gateway:" + kPassword,
                   "oci-archive:" + (f.www / archive).string(), "docker://" + reg.host() + "/apps/hello:" + tag});
    };
    push(v1, "stable");
    const std::string url = reg.ref("apps/hello:stable");

    SECTION("a wrong password is refused with 7002 naming the registry, an unknown tag with 7033") {
        auto bad = operateWait(f, kInstallDu,
                               {"URL=" + url, "Username=gateway", "Password=wrong-pw", "ExecutionEnvRef=" + kEe});
        INFO(bad.run.describe());
        CHECK(bad.errCode() == 7002);
        CHECK_THAT(bad.errMsg(), Catch::Contains("registry " + reg.host()) && Catch::Contains("apps/hello:stable"));
        auto missing = operateWait(f, kInstallDu,
                                   {"URL=" + reg.ref("apps/hello:9.9"), "Username=gateway", "Password=" + kPassword,
                                    "ExecutionEnvRef=" + kEe});
        CHECK(missing.errCode() == 7033);
        CHECK_THAT(missing.errMsg(), Catch::Contains("apps/hello:9.9"));
        auto malformed = operateWait(f, kInstallDu, {"URL=docker://" + reg.host() + "/Apps/Hello", "ExecutionEnvRef=" + kEe});
        CHECK(malformed.errCode() == 7004);
        CHECK(f.instances(kDuTable).empty());
    }

    SECTION("install, then Update of the moved tag") {
        auto r = operateWait(f, kInstallDu,
                             {"URL=" + url, "Username=gateway", "Password=" + kPassword, "ExecutionEnvRef=" + kEe});
        INFO(r.run.describe());
        REQUIRE(r.errCode() == 0);
        REQUIRE(r.complete);
        CHECK(r.output("Version") == "1.0.0");
        auto dus = f.instances(kDuTable);
        REQUIRE(dus.size() == 1);
        std::string du = dus[0];
        CHECK(f.get(du + "URL") == url);
        CHECK(f.get(du + "Name") == "hello");
        CHECK(f.get(du + "Status") == "Installed");

        push(v2, "stable");  // the tag moves to 1.1.0
        auto u = operateWait(f, du + "Update()", {});
        INFO(u.run.describe());
        REQUIRE(u.errCode() == 0);
        CHECK(f.get(du + "Version") == "1.1.0");
        CHECK(f.get(du + "URL") == url);
        // Both versions share their busybox layer: the Update downloaded no layer.
        CHECK_THAT(f.agent->log(), Catch::Contains("pulled " + reg.host() + "/apps/hello:stable: 0 layer(s) downloaded, 1 already stored"));

        // The password is in no file of berthd or its ExecEnv, nor in its log.
        CHECK(filesHolding(f.tmp / "agent", kPassword).empty());
        CHECK(filesHolding(f.tmp / "ee", kPassword).empty());
        CHECK(f.agent->log().find(kPassword) == std::string::npos);
    }
}

TEST_CASE("berthd killed mid-blob of an InstallDU from a registry resumes that blob with Range when the InstallDU "
          "is sent again",
          "[smm_e2e][registry]") {
    Fixture f;
    std::string v1 = buildApp(f.www, "hello", "1.0.0");
    RegistryServer reg(f.tmp / "registry", f.tmp / "registry-data");
    reg.start();
    runOrFail({"skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci-archive:" + (f.www / v1).string(),
               "docker://" + reg.host() + "/apps/hello:1.0.0"});
    // The busybox layer (about 1 MB) takes about 4 s through the proxy.
    berth::oci::testing::ThrottleProxy proxy(f.tmp / "proxy", reg.port, 256 << 10);
    const std::string url = "docker://127.0.0.1:" + std::to_string(proxy.port) + "/apps/hello:1.0.0";
    fs::path partialDir = f.eeStore / "tmp" / "partial";
    auto partialBytes = [&]() -> std::uintmax_t {
        std::error_code ec;
        if (!fs::exists(partialDir, ec)) return 0;
        std::uintmax_t biggest = 0;
        for (const auto& e : fs::directory_iterator(partialDir, ec))
            if (e.path().extension() != ".lock") biggest = std::max(biggest, e.file_size(ec));
        return biggest;
    };

    f.publishOperate(kInstallDu, {{"URL", url}, {"ExecutionEnvRef", kEe}}, "reg-crash");
    REQUIRE(berth::testing::waitUntil([&] { return partialBytes() > (200u << 10); }, 60s));
    f.crashAndRestart();
    std::uintmax_t kept = partialBytes();
    CHECK(kept > (200u << 10));
    CHECK(f.instances(kDuTable).empty());

    auto r = operateWait(f, kInstallDu, {"URL=" + url, "ExecutionEnvRef=" + kEe});
    INFO(r.run.describe());
    REQUIRE(r.errCode() == 0);
    CHECK(r.output("Version") == "1.0.0");
    // The resumed request asked for the rest only, from at least what was kept at the crash.
    std::string requests = proxy.requests();
    auto at = requests.find("Range: bytes=");
    REQUIRE(at != std::string::npos);
    std::uintmax_t from = std::stoull(requests.substr(at + 13));
    CHECK(from >= kept);
    CHECK(partialBytes() == 0);
}

TEST_CASE("An ExecEnv's X_BERTH_CAFile lets its InstallDU trust a TLS registry, and another CA there is refused "
          "with 7034",
          "[smm_e2e][registry]") {
    berth::testing::TempDir certDir("berth-registry-ca");
    berth::testing::TestCerts certs(certDir / "certs");
    auto withCa = [&](const std::string& caFile) {
        return [caFile](std::string conf) {
            return conf + "Device.SoftwareModules.ExecEnv.1.X_BERTH_CAFile \"" + caFile + "\"\n";
        };
    };

    SECTION("the ExecEnv names the registry's CA: the install succeeds") {
        Fixture f(withCa(certs("ca.pem")));
        std::string v1 = buildApp(f.www, "hello", "1.0.0");
        RegistryServer reg(f.tmp / "registry", f.tmp / "registry-data");
        reg.tls = true;
        reg.certs = &certs;
        reg.start();
        runOrFail({"skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci-archive:" + (f.www / v1).string(),
                   "docker://" + reg.host() + "/apps/hello:1.0"});
        CHECK(f.get(kEe + ".X_BERTH_CAFile") == certs("ca.pem"));
        auto r = operateWait(f, kInstallDu, {"URL=" + reg.ref("apps/hello:1.0"), "ExecutionEnvRef=" + kEe});
        INFO(r.run.describe());
        REQUIRE(r.errCode() == 0);
        CHECK(r.output("Version") == "1.0.0");
        CHECK(f.instances(kDuTable).size() == 1);
    }

    SECTION("the ExecEnv names another CA: the certificate does not verify, 7034, and nothing is installed") {
        Fixture f(withCa(certs("other-ca.pem")));
        std::string v1 = buildApp(f.www, "hello", "1.0.0");
        RegistryServer reg(f.tmp / "registry", f.tmp / "registry-data");
        reg.tls = true;
        reg.certs = &certs;
        reg.start();
        runOrFail({"skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci-archive:" + (f.www / v1).string(),
                   "docker://" + reg.host() + "/apps/hello:1.0"});
        auto r = operateWait(f, kInstallDu, {"URL=" + reg.ref("apps/hello:1.0"), "ExecutionEnvRef=" + kEe});
        INFO(r.run.describe());
        CHECK(r.errCode() == 7034);
        CHECK_THAT(r.errMsg(), Catch::Contains("registry " + reg.host()));
        CHECK(f.instances(kDuTable).empty());
    }
}
