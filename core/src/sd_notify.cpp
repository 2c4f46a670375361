#include "berth/core/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

namespace berth {
namespace {

std::optional<std::chrono::microseconds> watchdogFromEnvironment() {
    const char* usec = std::getenv("WATCHDOG_USEC");
    if (!usec || !*usec) return std::nullopt;
    // WATCHDOG_PID, when set, says which process the watchdog is meant for: a child that
    // inherited the environment must not take the parent's watchdog.
    if (const char* pid = std::getenv("WATCHDOG_PID"); pid && *pid) {
        char* end = nullptr;
        long p = std::strtol(pid, &end, 10);
        if (*end != '\0' || p != static_cast<long>(::getpid())) return std::nullopt;
    }
    char* end = nullptr;
    unsigned long long v = std::strtoull(usec, &end, 10);
    if (*end != '\0' || v == 0) return std::nullopt;
    return std::chrono::microseconds(v);
}

}  // namespace

SdNotifier SdNotifier::fromEnvironment() {
    const char* socket = std::getenv("NOTIFY_SOCKET");
    SdNotifier result;
    if (socket && *socket) {
        if (auto n = toSocket(socket, watchdogFromEnvironment())) result = std::move(*n);
    }
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
    ::unsetenv("WATCHDOG_PID");
    return result;
}

void SdNotifier::restoreEnvironment() const {
    if (!enabled()) return;
    ::setenv("NOTIFY_SOCKET", address_.c_str(), 1);
    if (watchdog_) {
        ::setenv("WATCHDOG_USEC", std::to_string(watchdog_->count()).c_str(), 1);
        ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
    }
}

Result<SdNotifier> SdNotifier::toSocket(std::string_view address,
                                        std::optional<std::chrono::microseconds> watchdog) {
    sockaddr_un sa{};
    if (address.empty() || (address[0] != '/' && address[0] != '@') || address.size() >= sizeof sa.sun_path) {
        return Error(ErrorCode::kInvalidArguments, "NOTIFY_SOCKET must be an absolute path or @name: " +
                                                       std::string(address));
    }
    int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return sysError("socket(AF_UNIX)", errno);
    SdNotifier n;
    n.fd_ = UniqueFd(fd);
    n.address_ = std::string(address);
    n.watchdog_ = watchdog;
    return n;
}

Status SdNotifier::notify(std::string_view state) const {
    if (!enabled()) return {};
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, address_.data(), address_.size());
    // "@name" is the abstract namespace: a leading NUL and no terminator counted.
    if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';
    auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size() +
                                      (address_[0] == '@' ? 0 : 1));
    ssize_t n;
    do {
        n = ::sendto(fd_.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa), len);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return sysError("sd_notify to " + address_, errno);
    return {};
}

}  // namespace berth
