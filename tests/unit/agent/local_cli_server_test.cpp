// LocalCliServer on a loop with an in-memory engine, driven by the real client function
// (runLocalCli) from a second thread, as `berthd -c` would.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>

#include <atomic>
#include <sstream>
#include <thread>

#include "../../../agent/src/cli/local_cli_server.h"
#include "berth/agent/local_cli.h"
#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/fd.h"
#include "berth/datamodel/engine.h"
#include "berth/testing/support.h"

using namespace berth;
using namespace std::chrono_literals;

namespace {

struct CliRun {
    int code = -1;
    std::string out, err;
};

struct Fixture {
    testing::TempDir dir{"berth-cli-unit"};
    SystemClock clock;
    EventLoop loop{clock};
    std::unique_ptr<dm::Engine> engine;
    std::unique_ptr<agent::LocalCliServer> server;
    std::vector<std::string> requestsCreated;
    std::vector<std::string> requestsCompleted;
    dm::CommandDone pendingDone;

    Fixture() {
        auto e = dm::Engine::open(dm::EngineOptions{});
        REQUIRE(e);
        engine = std::move(*e);
        // An asynchronous command the test finishes by hand.
        REQUIRE(engine->registerAsyncCommand("Device.SoftwareModules.InstallDU()",
                                             [this](const dm::CommandCall&, dm::CommandDone done) { pendingDone = std::move(done); }));
        agent::LocalCliServer::Hooks hooks{dm::AsyncHooks{
            [this](const dm::CommandCall&) -> Result<std::string> {
                auto path = engine->addInstance("Device.LocalAgent.Request.", {{"Status", "Active"}});
                if (path) requestsCreated.push_back(*path);
                return path;
            },
            [this](const dm::CommandCall&, const std::string& req, Result<dm::ArgMap>) {
                requestsCompleted.push_back(req);
                (void)engine->deleteInstance(req);
            }}};
        auto s = agent::LocalCliServer::create(loop, *engine, (dir / "cli.sock").string(), std::move(hooks));
        REQUIRE(s);
        server = std::move(*s);
    }

    // Runs one command from another thread while the loop serves it; `whileWaiting`
    // runs on the loop thread once per loop turn until the command returns.
    CliRun run(std::vector<std::string> words, const std::function<void()>& whileWaiting = {}) {
        CliRun r;
        std::atomic<bool> done{false};
        std::ostringstream out, err;
        std::thread t([&] {
            r.code = agent::runLocalCli(server->path(), words, out, err, 10s);
            done = true;
        });
        bool finished = testing::runUntil(loop, [&] {
            if (whileWaiting) whileWaiting();
            return done.load();
        });
        t.join();
        REQUIRE(finished);
        r.out = out.str();
        r.err = err.str();
        return r;
    }
};

}  // namespace

TEST_CASE("The local CLI socket is a 0600 socket that goes away with the server", "[agent][local-cli]") {
    Fixture f;
    struct stat st {};
    REQUIRE(::stat(f.server->path().c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600);
    std::string path = f.server->path();
    f.server.reset();
    CHECK(::stat(path.c_str(), &st) != 0);
}

TEST_CASE("A second server on a live CLI socket is refused, and a stale socket file is replaced", "[agent][local-cli]") {
    Fixture f;
    auto second = agent::LocalCliServer::create(f.loop, *f.engine, f.server->path(), {});
    REQUIRE_FALSE(second);
    CHECK(second.error().message.find("another process") != std::string::npos);
    // A regular file at the path is not ours to delete.
    testing::writeFile(f.dir / "file", "x");
    CHECK_FALSE(agent::LocalCliServer::create(f.loop, *f.engine, (f.dir / "file").string(), {}));
    CHECK(testing::readFile(f.dir / "file") == "x");
    // A socket file nobody listens on (a crashed berthd's) is replaced.
    std::string stale = (f.dir / "stale.sock").string();
    {
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::memcpy(sa.sun_path, stale.c_str(), stale.size() + 1);
        UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
        REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
    }
    auto replaced = agent::LocalCliServer::create(f.loop, *f.engine, stale, {});
    INFO((replaced ? std::string() : replaced.error().describe()));
    CHECK(replaced);
}

TEST_CASE("get, set and references through the local CLI use the engine with full rights", "[agent][local-cli]") {
    Fixture f;
    REQUIRE(f.engine->addInstance("Device.MQTT.Client.", {{"Name", "one"}}));
    REQUIRE(f.engine->addInstance("Device.LocalAgent.MTP.", {{"Protocol", "MQTT"}}));
    auto set = f.run({"set", "Device.LocalAgent.MTP.1.MQTT.Reference=Device.MQTT.Client.1."});
    INFO(set.err);
    CHECK(set.code == 0);
    CHECK(set.out == "Device.LocalAgent.MTP.1.MQTT.Reference => Device.MQTT.Client.1\n");
    auto get = f.run({"get", "Device.LocalAgent.MTP.1.MQTT.Reference", "Device.MQTT.Client.1.Name"});
    CHECK(get.out == "Device.LocalAgent.MTP.1.MQTT.Reference => Device.MQTT.Client.1\nDevice.MQTT.Client.1.Name => one\n");
    auto bad = f.run({"set", "Device.LocalAgent.MTP.1.MQTT.Reference", "Device.MQTT.Client.2"});
    CHECK(bad.code == 1);
    CHECK(bad.err.find("error 7012 ") != std::string::npos);
    CHECK(*f.engine->getValue("Device.LocalAgent.MTP.1.MQTT.Reference") == "Device.MQTT.Client.1");
    auto usage = f.run({"set", "Device.LocalAgent.MTP.1.Enable"});
    CHECK(usage.code == 2);
}

TEST_CASE("operate of an asynchronous command answers when the command ends", "[agent][local-cli]") {
    Fixture f;
    bool finishedByTest = false;
    auto r = f.run({"operate", "Device.SoftwareModules.InstallDU(URL=https://example.net/a.tar)"}, [&] {
        // Once the call is running, end it with output arguments.
        if (f.pendingDone && !finishedByTest) {
            finishedByTest = true;
            auto done = std::move(f.pendingDone);
            done(dm::ArgMap{});
        }
    });
    INFO(r.err);
    CHECK(r.code == 0);
    REQUIRE(f.requestsCreated.size() == 1);
    CHECK(f.requestsCompleted == f.requestsCreated);
    CHECK(r.out.find("started as " + f.requestsCreated[0]) != std::string::npos);
    CHECK(r.out.find("(" + f.requestsCreated[0] + ") => completed") != std::string::npos);
}

TEST_CASE("operate and event parse obuspa's Name(Arg=value, ...) form", "[agent][local-cli]") {
    Fixture f;
    std::vector<std::string> events;
    struct L : dm::ChangeListener {
        std::vector<std::string>* out;
        dm::ArgMap last;
        void onValueChange(std::string_view, std::string_view) override {}
        void onObjectCreated(std::string_view, const std::vector<std::pair<std::string_view, std::string>>&) override {}
        void onObjectDeleted(std::string_view) override {}
        void onEvent(std::string_view p, const dm::ArgMap& a) override {
            out->push_back(std::string(p));
            last = a;
        }
    } l;
    l.out = &events;
    f.engine->addListener(&l);
    auto r = f.run({"event", "Device.Boot!(Cause=LocalReboot, CommandKey=\"k 1\")", "FirmwareUpdated=false"});
    INFO(r.err);
    CHECK(r.code == 0);
    CHECK(events == std::vector<std::string>{"Device.Boot!"});
    CHECK(l.last["Cause"] == "LocalReboot");
    CHECK(l.last["CommandKey"] == "k 1");
    CHECK(l.last["FirmwareUpdated"] == "false");
    f.engine->removeListener(&l);
    auto bad = f.run({"operate", "Device.SoftwareModules.InstallDU(URL)"});
    CHECK(bad.code == 2);
    CHECK(bad.err.find("not Name=value") != std::string::npos);
}

TEST_CASE("obuspa CLI commands berth does not have get a usage error that says so", "[agent][local-cli]") {
    CHECK(agent::isLocalCliCommand("dump"));
    CHECK(agent::isLocalCliCommand("get"));
    CHECK_FALSE(agent::isLocalCliCommand("berth.conf"));
    Fixture f;
    auto r = f.run({"dbset", "Device.LocalAgent.EndpointID", "x"});
    CHECK(r.code == 2);
    CHECK(r.err.find("'dbset' is an obuspa CLI command berth does not have") != std::string::npos);
    CHECK(f.engine->getValue("Device.LocalAgent.EndpointID").valueOr(std::string("?")) != "x");
}

TEST_CASE("An asynchronous command that ends after the CLI server is gone still completes its Request",
          "[agent][local-cli]") {
    Fixture f;
    auto r = f.run({"operate", "Device.SoftwareModules.InstallDU(URL=https://example.net/a.tar)"}, [&] {
        if (f.pendingDone && f.server) f.server.reset();  // the agent stopped its CLI
    });
    CHECK(r.code == 4);  // the connection closed without an answer
    REQUIRE(f.pendingDone);
    REQUIRE(f.requestsCreated.size() == 1);
    auto done = std::move(f.pendingDone);
    done(dm::ArgMap{});
    CHECK(f.requestsCompleted == f.requestsCreated);
}
