// Write-through persistence: restart, crash safety, secured values, factory defaults.

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>

#include "berth/testing/support.h"
#include "dm_test_util.h"

using namespace berth;
using namespace berth::dm;
using namespace berth::dm::test;

namespace {

// Everything a Get of Device. returns, as "path=value" lines.
std::vector<std::string> snapshot(Engine& e) {
    std::vector<std::string> out;
    for (const auto& o : getOne(e, "Device.").resolved)
        for (const auto& p : o.params) out.push_back(o.path + std::string(p.name) + "=" + p.value);
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

TEST_CASE("A restarted engine restores exactly what was written", "[datamodel][persistence]") {
    berth::testing::TempDir dir;
    auto db = dir / "dm.db";
    std::vector<std::string> before;
    {
        Fixture f(db);
        REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "a", true}, {"Enable", "true", true}}).results.at(0).success);
        REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "b", true}}).results.at(0).success);
        REQUIRE(addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "c", true}}).results.at(0).success);
        REQUIRE(delPaths(*f, {"Device.LocalAgent.Subscription.3."}).results.at(0).success);
        REQUIRE(setOne(*f, "Device.LocalAgent.Controller.1.", {{"ProvisioningCode", "abc", true}}).results.at(0).success);
        REQUIRE(f->setValue("Device.LocalAgent.EndpointID", "os::x"));
        before = snapshot(*f);
    }
    Fixture g(db);
    CHECK(snapshot(*g) == before);
    CHECK(value(*g, "Device.LocalAgent.Controller.1.ProvisioningCode") == "abc");
    // Instance 3 was deleted: the next row still gets 4.
    auto r = addOne(*g, "Device.LocalAgent.Subscription.", {{"ID", "d", true}});
    CHECK(r.results.at(0).instantiatedPath == "Device.LocalAgent.Subscription.4.");
}

TEST_CASE("A failed message leaves the database untouched", "[datamodel][persistence]") {
    berth::testing::TempDir dir;
    auto db = dir / "dm.db";
    std::vector<std::string> before;
    {
        Fixture f(db);
        before = snapshot(*f);
        AddRequest req;
        req.objects.push_back({"Device.LocalAgent.Subscription.", {{"ID", "x", true}}});
        req.objects.push_back({"Device.LocalAgent.Subscription.", {{"Enable", "bad", true}}});
        REQUIRE(f->add(req, full()).error);
    }
    Fixture g(db);
    CHECK(snapshot(*g) == before);
    CHECK(addOne(*g, "Device.LocalAgent.Subscription.", {{"ID", "y", true}}).results.at(0).instantiatedPath ==
          "Device.LocalAgent.Subscription.1.");
}

TEST_CASE("Secured values are stored encrypted and files are private", "[datamodel][persistence]") {
    berth::testing::TempDir dir;
    auto db = dir / "dm.db";
    {
        Fixture f(db);
        REQUIRE(addOne(*f, "Device.MQTT.Client.", {{"Name", "c1", true}, {"Password", "s3cr3t-passw0rd", true}}).results.at(0).success);
        auto g = getOne(*f, "Device.MQTT.Client.1.Password", 0, Permissions::fromRoles(*f, {}));
        CHECK(g.resolved.empty());  // no role: nothing readable
    }
    std::string raw = berth::testing::readFile(db) + berth::testing::readFile(db.string() + "-wal");
    CHECK(raw.find("s3cr3t-passw0rd") == std::string::npos);
    struct stat st {};
    REQUIRE(::stat(db.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    REQUIRE(::stat((db.string() + ".key").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    Fixture g(db);
    CHECK(value(*g, "Device.MQTT.Client.1.Password") == "s3cr3t-passw0rd");
}

TEST_CASE("A stored secured value cannot be decrypted with another key", "[datamodel][persistence]") {
    berth::testing::TempDir dir;
    auto db = dir / "dm.db";
    {
        Fixture f(db);
        REQUIRE(addOne(*f, "Device.MQTT.Client.", {{"Name", "c1", true}, {"Password", "pw", true}}).results.at(0).success);
    }
    std::filesystem::remove(db.string() + ".key");
    Fixture g(db);  // a new key is generated; the old ciphertext no longer authenticates
    CHECK(value(*g, "Device.MQTT.Client.1.Password") == "");
    CHECK(value(*g, "Device.MQTT.Client.1.Name") == "c1");
}

TEST_CASE("Factory defaults apply to a new database only and FactoryReset restores them", "[datamodel][persistence]") {
    berth::testing::TempDir dir;
    auto db = dir / "dm.db";
    const std::vector<std::pair<std::string, std::string>> defaults = {
        {"Device.LocalAgent.Controller.3.EndpointID", "proto::factory"},
        {"Device.LocalAgent.Controller.3.Enable", "true"},
        {"Device.LocalAgent.Controller.3.MTP.1.Protocol", "MQTT"},
        {"Device.LocalAgent.MTP.1.Enable", "true"},
        {"Device.LocalAgent.MTP.1.Protocol", "MQTT"},
    };
    {
        auto e = makeEngine(db);
        CHECK(e->freshDatabase());
        REQUIRE(e->applyFactoryDefaults(defaults));
        CHECK(value(*e, "Device.LocalAgent.Controller.3.EndpointID") == "proto::factory");
        CHECK(value(*e, "Device.LocalAgent.Controller.3.Alias") == "cpe-3");
        REQUIRE(e->setValue("Device.LocalAgent.Controller.3.EndpointID", "proto::changed"));
        REQUIRE(e->addInstance("Device.LocalAgent.Controller.", {{"EndpointID", "extra"}}));
    }
    {
        auto e = makeEngine(db);
        CHECK_FALSE(e->freshDatabase());
        REQUIRE(e->applyFactoryDefaults(defaults));  // not re-applied over the user's changes
        CHECK(value(*e, "Device.LocalAgent.Controller.3.EndpointID") == "proto::changed");
        CHECK(value(*e, "Device.LocalAgent.ControllerNumberOfEntries") == "2");
        REQUIRE(e->factoryReset());
        CHECK(value(*e, "Device.LocalAgent.Controller.3.EndpointID") == "proto::factory");
        CHECK(value(*e, "Device.LocalAgent.ControllerNumberOfEntries") == "1");
    }
    auto e = makeEngine(db);
    CHECK(value(*e, "Device.LocalAgent.Controller.3.EndpointID") == "proto::factory");
    CHECK(value(*e, "Device.LocalAgent.ControllerNumberOfEntries") == "1");
    CHECK(value(*e, "Device.LocalAgent.MTP.1.Protocol") == "MQTT");
    CHECK(e->addInstance("Device.LocalAgent.Controller.").valueOr(std::string()) == "Device.LocalAgent.Controller.4.");
}

TEST_CASE("Volatile objects are not persisted", "[datamodel][persistence]") {
    berth::testing::TempDir dir;
    auto db = dir / "dm.db";
    {
        auto e = makeEngine(db);
        REQUIRE(e->addInstance("Device.LocalAgent.Request.", {{"Command", "Device.Reboot()"}, {"Status", "Active"}}));
    }
    auto e = makeEngine(db);
    CHECK(value(*e, "Device.LocalAgent.RequestNumberOfEntries") == "0");
}

TEST_CASE("Killing a writer at random points leaves only whole transactions in the database", "[datamodel][persistence]") {
    berth::testing::TempDir dir;
    auto db = dir / "dm.db";
    // Each message adds one Subscription with ID=n and sets Controller ProvisioningCode=n in
    // the same transaction: after a crash, the count of rows must equal the code.
    {
        Fixture f(db);
    }
    std::mt19937 rng(12345);
    for (int round = 0; round < 6; ++round) {
        int pipefd[2];
        REQUIRE(::pipe(pipefd) == 0);
        pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            ::close(pipefd[0]);
            auto opened = Engine::open(EngineOptions{db, {}, nullptr, nullptr});
            if (!opened) ::_exit(2);
            Engine& e = **opened;
            SubscriptionDefaults subs;
            (void)e.registerProvider("Device.LocalAgent.Subscription.{i}.", &subs);
            int n = std::stoi(e.getValue("Device.LocalAgent.Controller.1.ProvisioningCode").valueOr(std::string("0")).empty()
                                  ? std::string("0")
                                  : *e.getValue("Device.LocalAgent.Controller.1.ProvisioningCode"));
            bool told = false;
            for (;;) {
                ++n;
                {
                    Engine::Batch b(e);
                    (void)e.addInstance("Device.LocalAgent.Subscription.", {{"ID", "id" + std::to_string(n)}});
                    (void)e.setValue("Device.LocalAgent.Controller.1.ProvisioningCode", std::to_string(n));
                    if (!b.commit()) ::_exit(3);
                }
                if (!told) {
                    char c = 'x';
                    (void)!::write(pipefd[1], &c, 1);
                    told = true;
                }
            }
        }
        ::close(pipefd[1]);
        char c;
        REQUIRE(::read(pipefd[0], &c, 1) == 1);  // the child has committed at least once
        ::close(pipefd[0]);
        // Not a synchronisation: a random kill point while the child keeps committing.
        ::usleep(static_cast<useconds_t>(std::uniform_int_distribution<int>(1000, 40000)(rng)));
        ::kill(pid, SIGKILL);
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        REQUIRE(WIFSIGNALED(status));
        Fixture f(db);
        std::string code = value(*f, "Device.LocalAgent.Controller.1.ProvisioningCode");
        std::string count = value(*f, "Device.LocalAgent.SubscriptionNumberOfEntries");
        CAPTURE(round, code, count);
        REQUIRE_FALSE(code.empty());
        CHECK(code == count);
        // Every stored row is whole: its ID matches its position.
        auto rows = f->resolveObjects("Device.LocalAgent.Subscription.*.");
        REQUIRE(rows);
        CHECK(std::to_string(rows->size()) == count);
    }
}
