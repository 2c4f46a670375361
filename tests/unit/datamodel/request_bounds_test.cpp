// Bounds on what one request can make the engine build, and searches on secured values.

#include <catch2/catch.hpp>

#include "dm_test_util.h"

using namespace berth;
using namespace berth::dm;
using namespace berth::dm::test;

namespace {

Permissions fullRole(Engine& e, bool secured) {
    REQUIRE(e.addInstance("Device.LocalAgent.ControllerTrust.Role.", {{"Name", "Full"}, {"Enable", "true"}}));
    REQUIRE(e.addInstance("Device.LocalAgent.ControllerTrust.Role.1.Permission.", {{"Enable", "true"},
                                                                                   {"Order", "1"},
                                                                                   {"Targets", "Device."},
                                                                                   {"Param", "rw-n"},
                                                                                   {"Obj", "rw-n"},
                                                                                   {"InstantiatedObj", "rw-n"},
                                                                                   {"CommandEvent", "r-xn"}}));
    return Permissions::fromRoles(e, {"Full"}, secured);
}

// Rows with long values, so the whole table is a known, large response.
void addBigRows(Engine& e, int rows) {
    for (int i = 0; i < rows; ++i)
        REQUIRE(
            e.addInstance("Device.LocalAgent.Subscription.",
                          {{"ID", "sub-" + std::to_string(i)}, {"ReferenceList", "Device." + std::string(200, 'x')}}));
}

}  // namespace

TEST_CASE("A Get whose response would pass the byte bound answers 7005 with no results", "[datamodel][bounds]") {
    Fixture f;
    addBigRows(*f, 200);
    GetRequest req;
    req.paths = {"Device.LocalAgent.Subscription."};
    req.maxResponseBytes = 8 * 1024;
    auto r = f->get(req, full());
    REQUIRE(r.error);
    CHECK(r.error->code == ErrorCode::kResourcesExceeded);
    CHECK(r.error->message.find("8192") != std::string::npos);
    CHECK(r.results.empty());
}

TEST_CASE("A Get under the byte bound is answered in full", "[datamodel][bounds]") {
    Fixture f;
    addBigRows(*f, 3);
    GetRequest req;
    req.paths = {"Device.LocalAgent.Subscription."};
    req.maxResponseBytes = 64 * 1024;
    auto r = f->get(req, full());
    REQUIRE_FALSE(r.error);
    REQUIRE(r.results.size() == 1);
    CHECK(r.results[0].resolved.size() == 3);
}

TEST_CASE("Many copies of a small path pass the byte bound together", "[datamodel][bounds]") {
    Fixture f;
    GetRequest req;
    req.paths.assign(400, "Device.LocalAgent.");
    req.maxResponseBytes = 16 * 1024;
    auto r = f->get(req, full());
    REQUIRE(r.error);
    CHECK(r.error->code == ErrorCode::kResourcesExceeded);
    req.paths.resize(1);
    CHECK_FALSE(f->get(req, full()).error);
}

TEST_CASE("GetInstances and GetSupportedDM stop at the byte bound with 7005", "[datamodel][bounds]") {
    Fixture f;
    addBigRows(*f, 100);
    GetInstancesRequest gi;
    gi.paths = {"Device.LocalAgent.Subscription."};
    gi.maxResponseBytes = 1024;
    auto gr = f->getInstances(gi, full());
    REQUIRE(gr.error);
    CHECK(gr.error->code == ErrorCode::kResourcesExceeded);
    CHECK(gr.results.empty());
    gi.maxResponseBytes = 0;
    CHECK(f->getInstances(gi, full()).results.at(0).instances.size() == 100);

    GsdmRequest gs;
    gs.paths = {"Device."};
    gs.maxResponseBytes = 4096;
    auto sr = f->getSupportedDm(gs, full());
    REQUIRE(sr.error);
    CHECK(sr.error->code == ErrorCode::kResourcesExceeded);
    CHECK(sr.results.empty());
    gs.maxResponseBytes = 0;
    CHECK_FALSE(f->getSupportedDm(gs, full()).error);
}

TEST_CASE("The estimate of a Get response is not below its encoded size", "[datamodel][bounds]") {
    // wireFieldSize is what the meter adds per string: at least the protobuf tag, the
    // length varint and the bytes.
    CHECK(wireFieldSize(0) >= 2);
    CHECK(wireFieldSize(127) >= 1 + 1 + 127);
    CHECK(wireFieldSize(128) >= 1 + 2 + 128);
    CHECK(wireFieldSize(20000) >= 1 + 3 + 20000);
}

TEST_CASE("A search on a secured parameter compares against empty without secured access",
          "[datamodel][permissions][bounds]") {
    Fixture f;
    auto plain = fullRole(*f, false);
    auto secured = Permissions::fromRoles(*f, {"Full"}, true);
    REQUIRE(f->addInstance("Device.MQTT.Client.", {{"Name", "c"}, {"Alias", "cpe-mqtt"}, {"Password", "hunter2"}}));
    const std::string right = "Device.MQTT.Client.[Password==\"hunter2\"].Alias";
    const std::string wrong = "Device.MQTT.Client.[Password==\"guess\"].Alias";
    const std::string empty = "Device.MQTT.Client.[Password==\"\"].Alias";
    // Without secured access the right guess and a wrong guess look the same.
    CHECK(getOne(*f, right, 0, plain).resolved.empty());
    CHECK(getOne(*f, wrong, 0, plain).resolved.empty());
    CHECK(getOne(*f, empty, 0, plain).resolved.size() == 1);
    // With it, the search sees the value.
    CHECK(getOne(*f, right, 0, secured).resolved.size() == 1);
    CHECK(getOne(*f, empty, 0, secured).resolved.empty());
    // Every operation resolves through the same rule: a Set by search finds nothing.
    (void)setOne(*f, "Device.MQTT.Client.[Password==\"hunter2\"].", {{"ClientID", "x", false}}, true, plain);
    CHECK(value(*f, "Device.MQTT.Client.1.ClientID") != "x");
    GetInstancesRequest gi;
    gi.paths = {"Device.MQTT.Client.[Password==\"hunter2\"]."};
    CHECK(f->getInstances(gi, plain).results.at(0).instances.empty());
    CHECK(f->getInstances(gi, secured).results.at(0).instances.size() == 1);
}
