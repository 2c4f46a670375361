#include "../../../agent/src/identity/device_identity.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

#include "berth/testing/support.h"

using namespace berth;
using namespace berth::agent;

namespace {

// A /sys/class/net look-alike: one directory per interface with address, type and flags.
void addInterface(const std::filesystem::path& root, const std::string& name, const std::string& mac, int type,
                  const std::string& flags) {
    std::filesystem::create_directories(root / name);
    testing::writeFile(root / name / "address", mac + "\n");
    testing::writeFile(root / name / "type", std::to_string(type) + "\n");
    testing::writeFile(root / name / "flags", flags + "\n");
}

// Sets an environment variable for one test and restores it afterwards.
class EnvVar {
public:
    EnvVar(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value) {
            ::setenv(name, value, 1);
        } else {
            ::unsetenv(name);
        }
    }
    ~EnvVar() {
        if (old_.empty()) {
            ::unsetenv(name_);
        } else {
            ::setenv(name_, old_.c_str(), 1);
        }
    }

private:
    const char* name_;
    std::string old_;
};

}  // namespace

TEST_CASE("The serial number is the MAC address of the named interface, in upper-case hex", "[agent][identity]") {
    testing::TempDir dir;
    addInterface(dir.path(), "lo", "00:00:00:00:00:00", 772, "0x9");
    addInterface(dir.path(), "wan0", "02:fc:0a:00:00:1b", 1, "0x1003");
    addInterface(dir.path(), "lan0", "02:fc:0a:00:00:2c", 1, "0x1003");
    auto serial = serialFromMac(dir.path(), "wan0");
    REQUIRE(serial);
    CHECK(*serial == "02FC0A00001B");
}

TEST_CASE("Without an interface the first one that is up and not a loopback gives the serial number",
          "[agent][identity]") {
    testing::TempDir dir;
    addInterface(dir.path(), "lo", "00:00:00:00:00:00", 772, "0x9");
    addInterface(dir.path(), "a-down", "02:00:00:00:00:01", 1, "0x1002");  // not up
    addInterface(dir.path(), "b-tun", "", 65534, "0x1091");                // no MAC address
    addInterface(dir.path(), "c-eth", "02:00:00:00:00:03", 1, "0x1003");
    addInterface(dir.path(), "d-eth", "02:00:00:00:00:04", 1, "0x1003");
    auto serial = serialFromMac(dir.path(), "");
    REQUIRE(serial);
    CHECK(*serial == "020000000003");
}

TEST_CASE("A named interface that does not exist is an error naming it", "[agent][identity]") {
    testing::TempDir dir;
    addInterface(dir.path(), "eth0", "02:00:00:00:00:03", 1, "0x1003");
    auto serial = serialFromMac(dir.path(), "wlan7");
    REQUIRE_FALSE(serial);
    CHECK(serial.error().code == ErrorCode::kInvalidConfiguration);
    CHECK_THAT(serial.error().message, Catch::Contains("'wlan7' does not exist"));
    CHECK_FALSE(serialFromMac(dir.path(), "../eth0"));
    EnvVar noSerial("USP_BOARD_SERIAL", nullptr);
    CHECK_FALSE(identityDefaults(dir.path(), "wlan7"));
}

TEST_CASE("Identity defaults: obuspa's environment variables win, else the MAC address, else 'undefined'",
          "[agent][identity]") {
    testing::TempDir dir;
    addInterface(dir.path(), "eth0", "02:00:00:00:00:03", 1, "0x1003");
    EnvVar noIf("USP_BOARD_IFNAME", nullptr);
    {
        EnvVar oui("USP_BOARD_OUI", "00D09E");
        EnvVar serial("USP_BOARD_SERIAL", "SN-42");
        auto d = identityDefaults(dir.path(), "");
        REQUIRE(d);
        CHECK(d->oui == "00D09E");
        CHECK(d->serialNumber == "SN-42");
        CHECK(d->productClass == kDefaultProductClass);
    }
    EnvVar noOui("USP_BOARD_OUI", nullptr);
    EnvVar noSerial("USP_BOARD_SERIAL", nullptr);
    auto d = identityDefaults(dir.path(), "");
    REQUIRE(d);
    CHECK(d->oui == kDefaultOui);
    CHECK(d->serialNumber == "020000000003");

    testing::TempDir empty;
    auto none = identityDefaults(empty.path(), "");
    REQUIRE(none);
    CHECK(none->serialNumber == "undefined");
}
