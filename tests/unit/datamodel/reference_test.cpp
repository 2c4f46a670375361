// Reference parameters: one stored form ("Device.MQTT.Client.1"), both written forms
// accepted, strong references checked against existing rows of the right table.
#include <sqlite3.h>

#include "berth/datamodel/path.h"
#include "berth/testing/support.h"
#include "dm_test_util.h"

namespace berth::dm::test {
namespace {

// Two MQTT clients, one STOMP connection and an MQTT MTP using client 1.
struct RefFixture : Fixture {
    explicit RefFixture(const std::filesystem::path& db = {}) : Fixture(db) {
        if (engine->getValue("Device.MQTT.ClientNumberOfEntries").valueOr(std::string()) != "0") return;
        REQUIRE(engine->addInstance("Device.MQTT.Client.", {{"Name", "one"}, {"BrokerAddress", "127.0.0.1"}, {"Enable", "true"}}));
        REQUIRE(engine->addInstance("Device.MQTT.Client.", {{"Name", "two"}, {"BrokerAddress", "127.0.0.2"}, {"Enable", "true"}}));
        REQUIRE(engine->addInstance("Device.STOMP.Connection.", {{"Alias", "stomp"}, {"Host", "127.0.0.1"}, {"Enable", "true"}}));
        REQUIRE(engine->addInstance("Device.LocalAgent.MTP.", {{"Protocol", "MQTT"}, {"Enable", "true"}}));
        REQUIRE(engine->setValue("Device.LocalAgent.MTP.1.MQTT.Reference", "Device.MQTT.Client.1"));
    }
};

const char* const kRef = "Device.LocalAgent.MTP.1.MQTT.Reference";

}  // namespace

TEST_CASE("referenceValue drops one trailing dot and referencedObject adds it back", "[datamodel][reference]") {
    CHECK(referenceValue("Device.MQTT.Client.1.") == "Device.MQTT.Client.1");
    CHECK(referenceValue("Device.MQTT.Client.1") == "Device.MQTT.Client.1");
    CHECK(referenceValue(" Device.MQTT.Client.1. ") == "Device.MQTT.Client.1");
    CHECK(referenceValue("") == "");
    CHECK(referenceValue(".") == ".");
    CHECK(referencedObject("Device.MQTT.Client.1") == "Device.MQTT.Client.1.");
    CHECK(referencedObject("Device.MQTT.Client.1.") == "Device.MQTT.Client.1.");
    CHECK(referencedObject("") == "");
}

TEST_CASE("The schema knows which table each reference parameter points into", "[datamodel][reference]") {
    const Schema& s = Schema::builtin();
    auto target = [&](const char* obj, const char* param) -> std::string {
        const ObjectSchema* o = s.findObject(obj);
        REQUIRE(o);
        const ParamSchema* p = o->findParam(param);
        REQUIRE(p);
        return p->refTarget ? p->refTarget->path() : std::string("<none>");
    };
    CHECK(target("Device.LocalAgent.MTP.{i}.MQTT.", "Reference") == "Device.MQTT.Client.{i}.");
    CHECK(target("Device.LocalAgent.MTP.{i}.STOMP.", "Reference") == "Device.STOMP.Connection.{i}.");
    CHECK(target("Device.LocalAgent.Controller.{i}.MTP.{i}.MQTT.", "AgentMTPReference") == "Device.LocalAgent.MTP.{i}.");
    CHECK(target("Device.LocalAgent.Controller.{i}.MTP.{i}.STOMP.", "Reference") == "Device.STOMP.Connection.{i}.");
    CHECK(target("Device.LocalAgent.Subscription.{i}.", "Recipient") == "Device.LocalAgent.Controller.{i}.");
    CHECK(target("Device.LocalAgent.Controller.{i}.", "AssignedRole") == "Device.LocalAgent.ControllerTrust.Role.{i}.");
    CHECK(target("Device.SoftwareModules.DeploymentUnit.{i}.", "ExecutionEnvRef") == "Device.SoftwareModules.ExecEnv.{i}.");
}

TEST_CASE("A reference Set with or without the trailing dot is stored and reported without it", "[datamodel][reference]") {
    RefFixture f;
    for (const char* given : {"Device.MQTT.Client.2.", "Device.MQTT.Client.2", "Device.MQTT.Client.[BrokerAddress==\"127.0.0.2\"]."}) {
        INFO(given);
        REQUIRE(f->setValue(kRef, "Device.MQTT.Client.1"));
        auto r = setOne(*f, "Device.LocalAgent.MTP.1.MQTT.", {{"Reference", given, true}});
        REQUIRE_FALSE(r.error);
        CHECK(r.results.at(0).updated.at(0).updatedParams.at(0).second == "Device.MQTT.Client.2");
        CHECK(findParam(getOne(*f, "Device.LocalAgent.MTP.1.MQTT.").resolved.at(0), "Reference") == "Device.MQTT.Client.2");
    }
}

TEST_CASE("A list of references is stored item by item without trailing dots", "[datamodel][reference]") {
    RefFixture f;
    REQUIRE(f->addInstance("Device.LocalAgent.ControllerTrust.Role.", {{"Name", "A"}}));
    REQUIRE(f->addInstance("Device.LocalAgent.ControllerTrust.Role.", {{"Name", "B"}}));
    auto r = setOne(*f, "Device.LocalAgent.Controller.1.",
                    {{"AssignedRole", "Device.LocalAgent.ControllerTrust.Role.1.,Device.LocalAgent.ControllerTrust.Role.2", true}});
    REQUIRE_FALSE(r.error);
    CHECK(value(*f, "Device.LocalAgent.Controller.1.AssignedRole") ==
          "Device.LocalAgent.ControllerTrust.Role.1,Device.LocalAgent.ControllerTrust.Role.2");
    // Deleting one target removes just that item.
    REQUIRE(f->deleteInstance("Device.LocalAgent.ControllerTrust.Role.1."));
    CHECK(value(*f, "Device.LocalAgent.Controller.1.AssignedRole") == "Device.LocalAgent.ControllerTrust.Role.2");
}

TEST_CASE("A reference to a row that does not exist is refused with 7012 and changes nothing", "[datamodel][reference]") {
    RefFixture f;
    RecordingListener l;
    f->addListener(&l);
    for (const char* given : {"Device.MQTT.Client.9", "Device.MQTT.Client.9.", "Device.MQTT.Client.", "Device.MQTT.",
                              "Device.STOMP.Connection.1", "not a path", "Device.MQTT.Client.1.Enable"}) {
        INFO(given);
        auto r = setOne(*f, "Device.LocalAgent.MTP.1.", {{"MQTT.Reference", given, true}});
        REQUIRE(r.error);
        REQUIRE_FALSE(r.error->paramErrors.empty());
        CHECK(r.error->paramErrors.at(0).code == ErrorCode::kInvalidValue);
        CHECK(value(*f, kRef) == "Device.MQTT.Client.1");
    }
    CHECK(l.log.empty());
    f->removeListener(&l);
    // The internal setter applies the same rule.
    auto st = f->setValue(kRef, "Device.MQTT.Client.7");
    REQUIRE_FALSE(st);
    CHECK(st.error().code == ErrorCode::kInvalidValue);
}

TEST_CASE("Add stores a reference given with the trailing dot without it", "[datamodel][reference]") {
    RefFixture f;
    auto r = addOne(*f, "Device.LocalAgent.Controller.1.MTP.",
                    {{"Protocol", "MQTT", true}, {"MQTT.AgentMTPReference", "Device.LocalAgent.MTP.1.", true}});
    REQUIRE_FALSE(r.error);
    REQUIRE(r.results.at(0).success);
    CHECK(value(*f, r.results.at(0).instantiatedPath + "MQTT.AgentMTPReference") == "Device.LocalAgent.MTP.1");
    auto bad = addOne(*f, "Device.LocalAgent.Controller.1.MTP.",
                      {{"Protocol", "MQTT", true}, {"MQTT.AgentMTPReference", "Device.LocalAgent.MTP.5", true}});
    REQUIRE(bad.error);
    CHECK(value(*f, "Device.LocalAgent.Controller.1.MTPNumberOfEntries") == "1");
}

TEST_CASE("Factory defaults take references in both forms, also to rows made by later lines", "[datamodel][reference]") {
    auto e = makeEngine();
    REQUIRE(e->applyFactoryDefaults({{"Device.LocalAgent.MTP.1.Protocol", "MQTT"},
                                     {"Device.LocalAgent.MTP.1.MQTT.Reference", "Device.MQTT.Client.1."},
                                     {"Device.LocalAgent.MTP.2.Protocol", "STOMP"},
                                     {"Device.LocalAgent.MTP.2.STOMP.Reference", "Device.STOMP.Connection.1"},
                                     {"Device.MQTT.Client.1.BrokerAddress", "127.0.0.1"},
                                     {"Device.STOMP.Connection.1.Host", "127.0.0.1"}}));
    CHECK(value(*e, "Device.LocalAgent.MTP.1.MQTT.Reference") == "Device.MQTT.Client.1");
    CHECK(value(*e, "Device.LocalAgent.MTP.2.STOMP.Reference") == "Device.STOMP.Connection.1");
}

TEST_CASE("A factory default referencing a missing row fails naming the parameter", "[datamodel][reference]") {
    auto e = makeEngine();
    auto st = e->applyFactoryDefaults({{"Device.LocalAgent.MTP.1.Protocol", "MQTT"},
                                       {"Device.LocalAgent.MTP.1.MQTT.Reference", "Device.MQTT.Client.3"}});
    REQUIRE_FALSE(st);
    CHECK(st.error().code == ErrorCode::kInvalidValue);
    CHECK(st.error().path == "Device.LocalAgent.MTP.1.MQTT.Reference");
    CHECK(value(*e, "Device.LocalAgent.MTPNumberOfEntries") == "0");
}

TEST_CASE("A database written with trailing-dot references is read in the canonical form", "[datamodel][reference]") {
    testing::TempDir dir;
    auto db = dir.path() / "berth.db";
    {
        RefFixture f(db);
        REQUIRE(f->addInstance("Device.LocalAgent.Subscription.", {{"ID", "s"}, {"Recipient", "Device.LocalAgent.Controller.1"}}));
    }
    // What earlier versions stored.
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
    const char* sql =
        "UPDATE params SET value='Device.MQTT.Client.1.' WHERE path='Device.LocalAgent.MTP.1.MQTT.Reference';"
        "UPDATE params SET value='Device.LocalAgent.Controller.1.' WHERE path='Device.LocalAgent.Subscription.1.Recipient';";
    CHECK(sqlite3_exec(h, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
    CHECK(sqlite3_changes(h) == 1);
    sqlite3_close(h);

    RefFixture f(db);
    CHECK(value(*f, kRef) == "Device.MQTT.Client.1");
    CHECK(value(*f, "Device.LocalAgent.Subscription.1.Recipient") == "Device.LocalAgent.Controller.1");
    // Deleting the Controller still finds and clears the reference.
    REQUIRE(f->deleteInstance("Device.LocalAgent.Controller.1."));
    CHECK(value(*f, "Device.LocalAgent.Subscription.1.Recipient") == "");
}

}  // namespace berth::dm::test
