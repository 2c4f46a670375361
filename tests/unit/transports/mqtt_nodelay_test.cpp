#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include "../../../transports/src/mqtt/tcp_nodelay.h"
#include "berth/core/fd.h"

namespace {

struct Listener {
    berth::UniqueFd fd{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    int port = 0;
    Listener() {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd.get(), 4) == 0);
        socklen_t len = sizeof a;
        REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
        port = ntohs(a.sin_port);
    }
    berth::UniqueFd connectTo() const {
        berth::UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(static_cast<uint16_t>(port));
        REQUIRE(::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        return c;
    }
};

int noDelay(int fd) {
    int v = -1;
    socklen_t len = sizeof v;
    REQUIRE(::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0);
    return v;
}

}  // namespace

TEST_CASE("Nagle is switched off on the sockets connected to the broker and nowhere else", "[transports][mqtt]") {
    Listener broker;
    Listener other;
    auto toBroker = broker.connectTo();
    auto toOther = other.connectTo();
    REQUIRE(noDelay(toBroker.get()) == 0);
    CHECK(berth::transports::detail::enableNoDelayToBroker("127.0.0.1", broker.port) == 1);
    CHECK(noDelay(toBroker.get()) != 0);
    CHECK(noDelay(toOther.get()) == 0);
    // A numeric host that is not the peer's address changes nothing.
    auto second = broker.connectTo();
    CHECK(berth::transports::detail::enableNoDelayToBroker("127.0.0.2", broker.port) == 0);
    CHECK(noDelay(second.get()) == 0);
    // A host name matches by port alone.
    CHECK(berth::transports::detail::enableNoDelayToBroker("localhost", broker.port) >= 1);
    CHECK(noDelay(second.get()) != 0);
}
