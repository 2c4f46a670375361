// The local CLI against a running berthd: `berthd -c COMMAND ...` and `berthctl --local`
// over berthd's UNIX socket, with and without the broker, and its limits.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "berth/agent/local_cli.h"
#include "berth/core/fd.h"
#include "berth/testing/agent_harness.h"

using namespace berth;
using namespace berth::agenttest;
using namespace std::chrono_literals;

namespace {

// berthd -c WORDS... for the agent of `f` (its socket found from --db, as an operator would).
CtlResult cli(AgentFixture& f, std::vector<std::string> words) {
    std::vector<std::string> argv{BERTHD_BIN, "--db", f.agent->db().string(), "-c"};
    argv.insert(argv.end(), words.begin(), words.end());
    return runCtl(argv);
}

std::string socketPath(AgentFixture& f) { return (f.agent->dir() / "berthd.sock").string(); }

UniqueFd connectTo(const std::string& path) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
    return fd;
}

// Reads one response frame (status, text); nullopt when the server closed first. `in`
// keeps what arrived beyond it.
std::optional<std::pair<int, std::string>> readFrame(int fd, std::string& in) {
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[4096];
    for (;;) {
        if (in.size() >= 5) {
            auto* b = reinterpret_cast<const unsigned char*>(in.data());
            std::size_t len = (std::size_t{b[0]} << 24) | (std::size_t{b[1]} << 16) | (std::size_t{b[2]} << 8) | b[3];
            if (in.size() >= 4 + len) {
                auto out = std::make_pair(int{b[4]}, in.substr(5, len - 1));
                in.erase(0, 4 + len);
                return out;
            }
        }
        ssize_t r = ::recv(fd, buf, sizeof(buf), 0);
        if (r <= 0) return std::nullopt;
        in.append(buf, static_cast<std::size_t>(r));
    }
}

std::optional<std::pair<int, std::string>> readFrame(int fd) {
    std::string in;
    return readFrame(fd, in);
}

void sendAll(int fd, const std::string& bytes) {
    for (std::size_t off = 0; off < bytes.size();) {
        ssize_t w = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        REQUIRE(w > 0);
        off += static_cast<std::size_t>(w);
    }
}

std::string frame(const std::string& payload, std::uint32_t len) {
    std::string f{static_cast<char>(len >> 24), static_cast<char>(len >> 16), static_cast<char>(len >> 8),
                  static_cast<char>(len)};
    return f + payload;
}

}  // namespace

TEST_CASE("berthd -c gets, sets, adds, lists, deletes and shows the database of the running berthd",
          "[agent][local-cli]") {
    AgentFixture f;
    struct stat st {};
    REQUIRE(::stat(socketPath(f).c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600);

    auto get = cli(f, {"get", "Device.LocalAgent.EndpointID"});
    INFO(get.describe());
    REQUIRE(get.exitCode == 0);
    CHECK(get.out == "Device.LocalAgent.EndpointID => os::012345-0001\n");

    auto set = cli(f, {"set", "Device.DeviceInfo.FriendlyName", "set locally"});
    INFO(set.describe());
    REQUIRE(set.exitCode == 0);
    CHECK(set.out == "Device.DeviceInfo.FriendlyName => set locally\n");
    // A controller sees it.
    auto seen = f.ctl({"get", "Device.DeviceInfo.FriendlyName"});
    CHECK(paramValue(seen.json, "Device.DeviceInfo.FriendlyName") == "set locally");

    // References in either form, stored in one.
    auto ref = cli(f, {"set", "Device.LocalAgent.MTP.1.MQTT.Reference=Device.MQTT.Client.1"});
    INFO(ref.describe());
    CHECK(ref.out == "Device.LocalAgent.MTP.1.MQTT.Reference => Device.MQTT.Client.1\n");
    REQUIRE(f.waitAnswering());

    auto add = cli(f, {"add", "Device.LocalAgent.ControllerTrust.Role.", "Name=from the CLI"});
    INFO(add.describe());
    REQUIRE(add.exitCode == 0);
    CHECK(add.out == "Added Device.LocalAgent.ControllerTrust.Role.3.\n");
    auto inst = cli(f, {"instances", "Device.LocalAgent.ControllerTrust.Role."});
    CHECK(inst.out.find("Device.LocalAgent.ControllerTrust.Role.3.\n") != std::string::npos);

    auto db = cli(f, {"show", "database"});
    INFO(db.describe());
    REQUIRE(db.exitCode == 0);
    CHECK(db.out.find("Device.LocalAgent.ControllerTrust.Role.3.Name => from the CLI\n") != std::string::npos);
    CHECK(db.out.find("Device.DeviceInfo.FriendlyName => set locally\n") != std::string::npos);
    CHECK(db.out.find("Device.LocalAgent.MTP.1.MQTT.Reference => Device.MQTT.Client.1\n") != std::string::npos);

    auto del = cli(f, {"del", "Device.LocalAgent.ControllerTrust.Role.3."});
    INFO(del.describe());
    REQUIRE(del.exitCode == 0);
    CHECK(del.out == "Deleted Device.LocalAgent.ControllerTrust.Role.3.\n");
    auto gone = cli(f, {"instances", "Device.LocalAgent.ControllerTrust.Role."});
    CHECK(gone.out.find("Role.3.") == std::string::npos);
}

TEST_CASE("berthd -c operate runs synchronous commands and waits for asynchronous ones", "[agent][local-cli]") {
    AgentFixture f;
    auto sync = cli(f, {"operate", "Device.LocalAgent.Controller.1.SendOnBoardRequest()"});
    INFO(sync.describe());
    REQUIRE(sync.exitCode == 0);
    CHECK(sync.out.find("Device.LocalAgent.Controller.1.SendOnBoardRequest() => done") != std::string::npos);

    // An InstallDU that cannot fetch: started as a Request row, then its failure.
    auto async = cli(f, {"operate", "Device.SoftwareModules.InstallDU(URL=file:///nonexistent/image.tar)"});
    INFO(async.describe());
    CHECK(async.exitCode == 1);
    CHECK(async.err.find("Device.SoftwareModules.InstallDU() => started as Device.LocalAgent.Request.") != std::string::npos);
    CHECK(async.err.find("error 7") != std::string::npos);
    // The Request row is gone once the command ended.
    auto rows = cli(f, {"instances", "Device.LocalAgent.Request."});
    CHECK(rows.out.empty());
}

TEST_CASE("The local CLI refuses bad input with the USP error and changes nothing", "[agent][local-cli]") {
    AgentFixture f;
    auto missing = cli(f, {"set", "Device.LocalAgent.MTP.1.MQTT.Reference", "Device.MQTT.Client.9"});
    INFO(missing.describe());
    CHECK(missing.exitCode == 1);
    CHECK(missing.err.find("error 7012") != std::string::npos);
    auto still = cli(f, {"get", "Device.LocalAgent.MTP.1.MQTT.Reference"});
    CHECK(still.out == "Device.LocalAgent.MTP.1.MQTT.Reference => Device.MQTT.Client.1\n");

    auto badPath = cli(f, {"get", "Device.NoSuchThing."});
    CHECK(badPath.exitCode == 1);
    CHECK(badPath.err.find("error 7026") != std::string::npos);

    auto usage = runCtl({BERTHCTL_BIN, "--local", socketPath(f), "frobnicate"});
    CHECK(usage.exitCode == 2);
    CHECK(usage.err.find("unknown command 'frobnicate'") != std::string::npos);
}

TEST_CASE("A local CLI command works while the broker is down", "[agent][local-cli]") {
    AgentFixture f;
    f.broker->stop();
    auto set = cli(f, {"set", "Device.DeviceInfo.FriendlyName", "set while the broker was down"});
    INFO(set.describe());
    REQUIRE(set.exitCode == 0);
    auto status = cli(f, {"get", "Device.MQTT.Client.1.Status"});
    INFO(status.describe());
    REQUIRE(status.exitCode == 0);
    CHECK(status.out.find("Device.MQTT.Client.1.Status => Connected") == std::string::npos);
    // Back over MQTT once the broker returns: the value is there.
    f.broker->start();
    REQUIRE(f.waitAnswering(30s));
    auto get = f.ctl({"get", "Device.DeviceInfo.FriendlyName"});
    CHECK(paramValue(get.json, "Device.DeviceInfo.FriendlyName") == "set while the broker was down");
}

TEST_CASE("berthctl --local talks to berthd over the same socket", "[agent][local-cli]") {
    AgentFixture f;
    auto get = runCtl({BERTHCTL_BIN, "--local", socketPath(f), "get", "Device.LocalAgent.EndpointID"});
    INFO(get.describe());
    REQUIRE(get.exitCode == 0);
    CHECK(get.out == "Device.LocalAgent.EndpointID => os::012345-0001\n");
    auto help = runCtl({BERTHCTL_BIN, "--local", socketPath(f), "help"});
    CHECK(help.exitCode == 0);
    CHECK(help.out.find("show database") != std::string::npos);
    // No daemon behind a socket path: exit code 4 and a message saying so.
    auto none = runCtl({BERTHCTL_BIN, "--local", (f.tmp / "nothing.sock").string(), "get", "Device."});
    CHECK(none.exitCode == 4);
    CHECK(none.err.find("cannot reach berthd") != std::string::npos);
}

TEST_CASE("The local CLI bounds request size and connections", "[agent][local-cli]") {
    AgentFixture f;
    const std::string path = socketPath(f);
    SECTION("an oversized request is answered with 7005 and the connection closed") {
        UniqueFd fd = connectTo(path);
        sendAll(fd.get(), frame("", static_cast<std::uint32_t>(agent::kLocalCliMaxRequest + 1)));
        auto answer = readFrame(fd.get());
        REQUIRE(answer);
        CHECK(answer->first == 2);
        CHECK(answer->second.find("7005") != std::string::npos);
        char c;
        CHECK(::recv(fd.get(), &c, 1, 0) == 0);
    }
    SECTION("one connection more than the cap is told so and closed; the others keep working") {
        std::vector<UniqueFd> held;
        for (std::size_t i = 0; i < agent::kLocalCliMaxConnections; ++i) held.push_back(connectTo(path));
        UniqueFd extra = connectTo(path);
        auto refused = readFrame(extra.get());
        REQUIRE(refused);
        CHECK(refused->first == 1);
        CHECK(refused->second.find("at most") != std::string::npos);
        // A held connection still serves requests, one after the other.
        std::string get = std::string("get") + '\0' + "Device.LocalAgent.EndpointID" + '\0';
        sendAll(held[0].get(), frame(get, static_cast<std::uint32_t>(get.size())) + frame(get, static_cast<std::uint32_t>(get.size())));
        std::string in;
        for (int i = 0; i < 2; ++i) {
            auto answer = readFrame(held[0].get(), in);
            REQUIRE(answer);
            CHECK(answer->first == 0);
            CHECK(answer->second == "Device.LocalAgent.EndpointID => os::012345-0001\n");
        }
        held.clear();
        // Slots come back when connections close.
        REQUIRE(testing::waitUntil([&] { return cli(f, {"get", "Device.LocalAgent.EndpointID"}).exitCode == 0; }, 10s));
    }
}
