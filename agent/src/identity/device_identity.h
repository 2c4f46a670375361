#pragma once
// Defaults for Device.DeviceInfo.ManufacturerOUI, ProductClass and SerialNumber when the
// configuration file leaves them out, so that a fresh agent has an endpoint ID
// (os::OUI-Serial) and a complete OnBoardRequest. As obuspa does: the OUI and serial
// number may come from the environment (USP_BOARD_OUI, USP_BOARD_SERIAL), the serial
// number otherwise from the MAC address of the network interface named by `-i` (or
// USP_BOARD_IFNAME), else of the first interface that is up and not a loopback.
//
// Threading: plain functions, callable from any thread (they read the environment and
// sysfs only).

#include <filesystem>
#include <string>

#include "berth/core/result.h"

namespace berth::agent {

inline constexpr const char* kDefaultOui = "000000";
inline constexpr const char* kDefaultProductClass = "berth";

// The MAC address of `interface` under `sysClassNet` (normally /sys/class/net) as 12
// upper-case hex digits ("02FC00000001"). With an empty `interface`: the first interface
// by name that is up, has an Ethernet-style address and is not a loopback.
// Errors: kInvalidConfiguration when the named interface does not exist or has no
// hardware address, or when no interface qualifies.
Result<std::string> serialFromMac(const std::filesystem::path& sysClassNet, const std::string& interface);

struct IdentityDefaults {
    std::string oui;
    std::string productClass;
    std::string serialNumber;
    std::string serialSource;  // for the log: "USP_BOARD_SERIAL", "MAC of eth0", ...
};

// The defaults for this machine. `interface` is the `-i` option (may be empty). A
// named interface that does not exist is an error; when no interface qualifies the
// serial number is "undefined" (as obuspa's), with serialSource saying why.
Result<IdentityDefaults> identityDefaults(const std::filesystem::path& sysClassNet, const std::string& interface);

}  // namespace berth::agent
