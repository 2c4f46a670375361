// BERTH_LAZY_LIBS through berthd: libcurl and libarchive (and what they pull in) are not
// in an idle berthd's memory, and the first image pull loads them and still works.
#include <catch2/catch.hpp>

#include <fstream>
#include <string>

#include "e2e_fixture.h"

using namespace berth::smme2e;

namespace {

// The shared objects named in /proc/<pid>/maps that contain `part`.
bool maps(pid_t pid, const std::string& part) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
    std::string line;
    while (std::getline(in, line)) {
        if (line.find(part) != std::string::npos) return true;
    }
    return false;
}

}  // namespace

TEST_CASE("An idle berthd maps neither libcurl nor libarchive, and the first InstallDU loads both and installs",
          "[smm_e2e][lazy-libs]") {
    Fixture f;
    const pid_t pid = f.agent->pid();
    REQUIRE(pid > 0);
    // Up and answering (the fixture waited), with an ExecEnv: still neither library.
    CHECK_FALSE(maps(pid, "/libcurl.so"));
    CHECK_FALSE(maps(pid, "/libarchive.so"));
    // Nor the libraries only they bring (libcurl's LDAP and SSH, libarchive's XML).
    CHECK_FALSE(maps(pid, "/libldap"));
    CHECK_FALSE(maps(pid, "/libssh2"));
    CHECK_FALSE(maps(pid, "/libxml2"));

    std::string archive = buildApp(f.www, "hello", "1.0.0");
    auto r = operateWait(f, kInstallDu, {"URL=" + f.http->url(archive), "ExecutionEnvRef=" + kEe});
    INFO(r.run.describe());
    REQUIRE(r.errCode() == 0);
    REQUIRE(r.complete);
    CHECK(r.output("Version") == "1.0.0");
    CHECK(f.instances(kDuTable).size() == 1);
    CHECK(maps(pid, "/libcurl.so.4"));
    CHECK(maps(pid, "/libarchive.so.13"));
    CHECK(f.agent->running());
}
