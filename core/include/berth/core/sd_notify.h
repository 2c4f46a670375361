#pragma once
// Service-manager notifications (systemd's sd_notify datagram protocol, no libsystemd):
// READY=1, STOPPING=1, STATUS=..., WATCHDOG=1 sent as one datagram to the AF_UNIX socket
// named by $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace).
//
//   auto sd = SdNotifier::fromEnvironment();   // does nothing when not under systemd
//   sd.notify("READY=1\nSTATUS=running");
//
// The watchdog interval comes from $WATCHDOG_USEC (only when $WATCHDOG_PID is unset or
// names this process). The caller pings from its event loop, so a wedged loop stops the
// pings and the service manager restarts the service.
//
// Thread: any; notify() is one sendto() on a socket the notifier owns.
// Errors: notify() returns kInternalError with errno's text when the datagram cannot be
// sent; fromEnvironment() never fails (a bad $NOTIFY_SOCKET leaves notifications off).

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "berth/core/fd.h"
#include "berth/core/result.h"

namespace berth {

class SdNotifier {
public:
    SdNotifier() = default;
    // Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID and removes them from the
    // environment, so programs berthd starts (runc would forward a container's
    // notifications and wait for its READY) do not inherit them. Call before threads start.
    static SdNotifier fromEnvironment();
    // Puts the variables back, for a process that re-executes itself. Not thread-safe
    // (setenv).
    void restoreEnvironment() const;
    // Notifies the given socket address ("/path" or "@abstract"); for tests.
    static Result<SdNotifier> toSocket(std::string_view address,
                                       std::optional<std::chrono::microseconds> watchdog = {});

    // True when a notification socket is configured.
    bool enabled() const { return fd_.valid(); }
    // Sends newline-separated assignments; a no-op returning success when not enabled.
    Status notify(std::string_view state) const;
    // The interval systemd expects pings within (WatchdogSec=), if any. Ping at half of it.
    std::optional<std::chrono::microseconds> watchdogInterval() const { return watchdog_; }

private:
    UniqueFd fd_;
    std::string address_;
    std::optional<std::chrono::microseconds> watchdog_;
};

}  // namespace berth
