#ifdef BERTH_WITH_STOMP
// MtpManager is the one place where edits of MTP rows turn into binding changes: one
// coalesced reload per message, never one for its own figures. Driven on a FakeClock
// with an in-memory engine; the STOMP binding dials a loopback port nobody serves.
#include <catch2/catch.hpp>

#include "../../../agent/src/mtp_manager.h"
#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/datamodel/engine.h"

using namespace berth;
using namespace std::chrono_literals;

namespace {

struct Rig {
    FakeClock clock;
    EventLoop loop{clock};
    std::unique_ptr<dm::Engine> engine;
    std::unique_ptr<agent::MtpManager> mtps;

    Rig() {
        dm::EngineOptions eo;
        eo.clock = &clock;
        auto e = dm::Engine::open(eo);
        REQUIRE(e);
        engine = std::move(*e);
        mtps = std::make_unique<agent::MtpManager>(
            loop, *engine, "proto::agent", [](const std::string&, transports::InboundRecord) {},
            [](const std::string&, const std::string&) {});
        REQUIRE(mtps->registerWithEngine());
        auto conn = engine->addInstance("Device.STOMP.Connection.",
                                        {{"Enable", "true"}, {"Host", "127.0.0.1"}, {"Port", "9"}});
        REQUIRE(conn);
        auto row = engine->addInstance("Device.LocalAgent.MTP.", {{"Enable", "true"}, {"Protocol", "STOMP"}});
        REQUIRE(row);
        REQUIRE(engine->setValue(*row + "STOMP.Reference", *conn));
        REQUIRE(engine->setValue(*row + "STOMP.Destination", "/queue/agent"));
        mtpRow = *row;
        settle();
        mtps->reload();
        REQUIRE(client());
    }
    ~Rig() { mtps.reset(); }

    transports::StompClient* client() { return static_cast<transports::StompClient*>(mtps->find(mtpRow)); }
    void settle() {
        for (int i = 0; i < 3; ++i) loop.runOnce(0ms);
    }
    dm::SetResponse set(std::vector<dm::UpdateObject> objects) {
        dm::SetRequest req;
        req.objects = std::move(objects);
        return engine->set(req, dm::Permissions::fullAccess());
    }

    std::string mtpRow;
};

}  // namespace

TEST_CASE("A Set of several STOMP parameters is applied by one reload after the message, with one reconnect",
          "[agent][mtp]") {
    Rig rig;
    const auto reloads = rig.mtps->reloadCount();
    const auto attempts = rig.client()->figures().connectAttempts;
    auto resp = rig.set({dm::UpdateObject{"Device.STOMP.Connection.1.",
                                          {{"Port", "10", true}, {"Username", "agent", true}, {"Password", "pw", true}}},
                         dm::UpdateObject{rig.mtpRow, {{"STOMP.Destination", "/queue/other", true}}}});
    REQUIRE_FALSE(resp.error);
    CHECK(rig.mtps->reloadCount() == reloads);  // nothing inside the message
    rig.settle();
    CHECK(rig.mtps->reloadCount() == reloads + 1);
    REQUIRE(rig.client());
    CHECK(rig.client()->config().port == 10);
    CHECK(rig.client()->config().username == "agent");
    CHECK(rig.client()->config().destination == "/queue/other");
    CHECK(rig.client()->figures().connectAttempts == attempts + 1);
}

TEST_CASE("Edits of a controller's MTP row and of a STOMP row in one message reload once", "[agent][mtp]") {
    Rig rig;
    auto ctrl = rig.engine->addInstance("Device.LocalAgent.Controller.",
                                        {{"EndpointID", "proto::ctrl"}, {"Enable", "true"}});
    REQUIRE(ctrl);
    auto mtp = rig.engine->addInstance(*ctrl + "MTP.", {{"Enable", "true"}, {"Protocol", "STOMP"}});
    REQUIRE(mtp);
    rig.settle();
    const auto reloads = rig.mtps->reloadCount();
    auto resp = rig.set({dm::UpdateObject{*mtp, {{"STOMP.Destination", "/queue/ctrl", true}}},
                         dm::UpdateObject{"Device.STOMP.Connection.1.", {{"Port", "11", true}}}});
    REQUIRE_FALSE(resp.error);
    rig.settle();
    CHECK(rig.mtps->reloadCount() == reloads + 1);
    CHECK(rig.client()->config().port == 11);
}

TEST_CASE("The manager's own figures and rows outside the MTP tables never cause a reload", "[agent][mtp]") {
    Rig rig;
    const auto reloads = rig.mtps->reloadCount();
    REQUIRE(rig.engine->notifyValueChanged(rig.mtpRow + "Status"));
    REQUIRE(rig.engine->notifyValueChanged("Device.STOMP.Connection.1.Status"));
    REQUIRE(rig.engine->setValue("Device.DeviceInfo.ProvisioningCode", "abc"));
    rig.settle();
    CHECK(rig.mtps->reloadCount() == reloads);
}

TEST_CASE("After stopAll() edits of MTP rows reload nothing until reload() is called again", "[agent][mtp]") {
    Rig rig;
    rig.mtps->stopAll();
    const auto reloads = rig.mtps->reloadCount();
    REQUIRE(rig.engine->setValue("Device.STOMP.Connection.1.Port", "12"));
    rig.settle();
    CHECK(rig.mtps->reloadCount() == reloads);
    CHECK(rig.client() == nullptr);
}
#endif
