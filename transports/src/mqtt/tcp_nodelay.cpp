#include "tcp_nodelay.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace berth::transports::detail {
namespace {

bool peerMatches(const sockaddr_storage& ss, const std::string& host, int port) {
    char buf[INET6_ADDRSTRLEN] = {};
    int peerPort = 0;
    if (ss.ss_family == AF_INET) {
        const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
        peerPort = ntohs(a->sin_port);
        inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    } else if (ss.ss_family == AF_INET6) {
        const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
        peerPort = ntohs(a->sin6_port);
        inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    } else {
        return false;
    }
    if (peerPort != port) return false;
    // Compare addresses only when the configured host is one; a name may resolve to any.
    in6_addr probe6{};
    in_addr probe4{};
    bool numeric = inet_pton(AF_INET, host.c_str(), &probe4) == 1 || inet_pton(AF_INET6, host.c_str(), &probe6) == 1;
    return !numeric || host == buf;
}

std::atomic<std::chrono::steady_clock::rep> lastScanTicks{0};

}  // namespace

std::chrono::steady_clock::time_point lastNoDelayScan() {
    return std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(lastScanTicks.load()));
}

int enableNoDelayToBroker(const std::string& host, int port) {
    lastScanTicks.store(std::chrono::steady_clock::now().time_since_epoch().count());
    DIR* dir = ::opendir("/proc/self/fd");
    if (!dir) return 0;
    int changed = 0;
    while (dirent* e = ::readdir(dir)) {
        char* end = nullptr;
        long fd = std::strtol(e->d_name, &end, 10);
        if (*e->d_name == '\0' || *end != '\0' || fd == ::dirfd(dir)) continue;
        int type = 0;
        socklen_t len = sizeof type;
        if (::getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) continue;
        sockaddr_storage ss{};
        socklen_t sl = sizeof ss;
        if (::getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&ss), &sl) != 0) continue;
        if (!peerMatches(ss, host, port)) continue;
        int one = 1;
        if (::setsockopt(static_cast<int>(fd), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0) ++changed;
    }
    ::closedir(dir);
    return changed;
}

}  // namespace berth::transports::detail
