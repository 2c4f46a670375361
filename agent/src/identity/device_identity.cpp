#include "device_identity.h"

#include <net/if.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <vector>

namespace berth::agent {
namespace {

std::string readLine(const std::filesystem::path& file) {
    std::ifstream in(file);
    std::string line;
    std::getline(in, line);
    return line;
}

// "02:fc:00:00:00:01" -> "02FC00000001"; empty when it is not six bytes or all zero.
std::string macDigits(const std::string& address) {
    std::string out;
    for (char c : address) {
        if (c == ':') continue;
        if (!std::isxdigit(static_cast<unsigned char>(c))) return {};
        out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    if (out.size() != 12 || out == "000000000000") return {};
    return out;
}

const char* envOr(const char* name) {
    const char* v = std::getenv(name);
    return v && *v ? v : nullptr;
}

}  // namespace

Result<std::string> serialFromMac(const std::filesystem::path& sysClassNet, const std::string& interface) {
    namespace fs = std::filesystem;
    if (!interface.empty()) {
        if (interface.find('/') != std::string::npos || interface == "." || interface == ".." ||
            !fs::exists(sysClassNet / interface))
            return Error(ErrorCode::kInvalidConfiguration, "network interface '" + interface + "' does not exist");
        auto digits = macDigits(readLine(sysClassNet / interface / "address"));
        if (digits.empty())
            return Error(
                ErrorCode::kInvalidConfiguration,
                "network interface '" + interface + "' has no hardware address to derive a serial number from");
        return digits;
    }
    std::error_code ec;
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(sysClassNet, ec))
        names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
        const auto dir = sysClassNet / name;
        unsigned long flags = std::strtoul(readLine(dir / "flags").c_str(), nullptr, 16);
        if (!(flags & IFF_UP) || (flags & IFF_LOOPBACK)) continue;
        if (readLine(dir / "type") != "1") continue;  // ARPHRD_ETHER: a MAC address
        if (auto digits = macDigits(readLine(dir / "address")); !digits.empty()) return digits;
    }
    return Error(ErrorCode::kInvalidConfiguration,
                 "no network interface that is up and not a loopback has a hardware address");
}

Result<IdentityDefaults> identityDefaults(const std::filesystem::path& sysClassNet, const std::string& interface) {
    IdentityDefaults d;
    d.oui = envOr("USP_BOARD_OUI") ? envOr("USP_BOARD_OUI") : kDefaultOui;
    d.productClass = kDefaultProductClass;
    if (const char* serial = envOr("USP_BOARD_SERIAL")) {
        d.serialNumber = serial;
        d.serialSource = "USP_BOARD_SERIAL";
        return d;
    }
    std::string ifname = interface;
    if (ifname.empty() && envOr("USP_BOARD_IFNAME")) ifname = envOr("USP_BOARD_IFNAME");
    auto serial = serialFromMac(sysClassNet, ifname);
    if (serial) {
        d.serialNumber = *serial;
        d.serialSource = ifname.empty() ? "MAC of the first interface that is up" : "MAC of " + ifname;
        return d;
    }
    if (!ifname.empty()) return std::move(serial).error();
    d.serialNumber = "undefined";
    d.serialSource = serial.error().message;
    return d;
}

}  // namespace berth::agent
