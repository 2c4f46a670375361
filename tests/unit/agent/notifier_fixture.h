#pragma once
// Test harness for the Notifier: a FakeClock-driven loop, an engine (in memory, or on
// disk in a temp dir for restart tests), controllers with roles, and a SendFn that
// records every Notify and can play an unreachable controller.

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "berth/agent/notifier.h"
#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/datamodel/engine.h"
#include "berth/testing/support.h"

namespace berth::agent::test {

struct Sent {
    std::string to;
    usp::Msg msg;
    Clock::MonoTime at;
    const usp::Notify& notify() const { return msg.body().request().notify(); }
    const std::string& msgId() const { return msg.header().msg_id(); }
};

inline const std::string kCtrl1 = "Device.LocalAgent.Controller.1.";
inline const std::string kCtrl2 = "Device.LocalAgent.Controller.2.";
inline const std::string kEp1 = "proto::controller-one";
inline const std::string kEp2 = "proto::controller-two";

class Harness {
public:
    // dir: where the engine and queue databases live (empty: all in memory).
    explicit Harness(std::filesystem::path dir = {}, NotifierOptions options = {})
        : dir_(std::move(dir)), options_(std::move(options)) {
        if (!dir_.empty()) options_.queueDbPath = (dir_ / "notify.db").string();
        openEngine();
    }
    ~Harness() { closeNotifier(); }

    void openEngine() {
        dm::EngineOptions eo;
        if (!dir_.empty()) eo.dbPath = dir_ / "model.db";
        eo.clock = &clock;
        auto e = dm::Engine::open(eo);
        if (!e) FAIL("engine: " << e.error().describe());
        engine = std::move(*e);
    }

    // Creates, wires and (optionally) starts the notifier the way the agent does.
    void createNotifier(bool start = true) {
        auto n = Notifier::create(loop, clock, *engine, options_, [this](const std::string& to, const usp::Msg& msg) -> Status {
            ++attempts;
            if (unreachable.count(to)) return Error(ErrorCode::kMessageFailed, "no MTP up to " + to);
            sent.push_back(Sent{to, msg, clock.now()});
            return {};
        });
        if (!n) FAIL("notifier: " << n.error().describe());
        notifier = std::move(*n);
        engine->addListener(notifier.get());
        REQUIRE(notifier->registerWithEngine());
        if (start) notifier->start();
        pump();
    }

    void closeNotifier() {
        if (notifier) engine->removeListener(notifier.get());
        notifier.reset();
    }

    // An agent restart: notifier and engine go away and come back over the same files.
    void restart(bool start = true) {
        closeNotifier();
        engine.reset();
        sent.clear();
        openEngine();
        createNotifier(start);
    }

    // A role with one Permission on Device. (the four rwxn strings).
    std::string addRole(const std::string& name, const std::string& param, const std::string& obj,
                        const std::string& inst, const std::string& cmd) {
        auto role = engine->addInstance("Device.LocalAgent.ControllerTrust.Role.", {{"Name", name}, {"Enable", "true"}});
        REQUIRE(role);
        REQUIRE(engine->addInstance(*role + "Permission.", {{"Enable", "true"},
                                                            {"Order", "1"},
                                                            {"Targets", "Device."},
                                                            {"Param", param},
                                                            {"Obj", obj},
                                                            {"InstantiatedObj", inst},
                                                            {"CommandEvent", cmd}}));
        return *role;
    }

    std::string addController(const std::string& endpoint, const std::string& role, bool onBoarded = true,
                              std::vector<std::pair<std::string, std::string>> extra = {}) {
        std::vector<std::pair<std::string, std::string>> values{{"EndpointID", endpoint},
                                                                {"Enable", "true"},
                                                                {"AssignedRole", role.substr(0, role.size() - 1)},
                                                                {"OnBoardingComplete", onBoarded ? "true" : "false"}};
        for (auto& kv : extra) values.push_back(std::move(kv));
        auto c = engine->addInstance("Device.LocalAgent.Controller.", values);
        REQUIRE(c);
        return *c;
    }

    // The usual set-up: controller 1 (full access) and controller 2 (full access).
    void standardControllers() {
        std::string full = addRole("Full", "rwxn", "rwxn", "rwxn", "rwxn");
        REQUIRE(addController(kEp1, full) == kCtrl1);
        REQUIRE(addController(kEp2, full) == kCtrl2);
    }

    // An Add of one Subscription as `controller` would send it.
    dm::AddResponse addSubscription(const std::string& controller, std::vector<dm::ParamSetting> params) {
        dm::AddRequest req;
        req.objects.push_back(dm::CreateObject{"Device.LocalAgent.Subscription.", std::move(params)});
        if (notifier) notifier->setOriginator(controller);
        auto resp = engine->add(req, dm::Permissions::fullAccess());
        if (notifier) notifier->clearOriginator();
        pump();
        return resp;
    }

    // Adds an enabled subscription and returns its row path.
    std::string subscribe(const std::string& controller, const std::string& type, const std::string& refs,
                          std::vector<dm::ParamSetting> extra = {}) {
        std::vector<dm::ParamSetting> params{{"Enable", "true", true}, {"NotifType", type, true}, {"ReferenceList", refs, true}};
        for (auto& p : extra) params.push_back(std::move(p));
        auto resp = addSubscription(controller, std::move(params));
        if (resp.error) FAIL("subscription refused: " << resp.error->message);
        REQUIRE(resp.results.size() == 1);
        REQUIRE(resp.results[0].success);
        return resp.results[0].instantiatedPath;
    }

    dm::SetResponse set(const std::string& obj, const std::string& param, const std::string& value,
                        const std::string& controller = kCtrl1) {
        dm::SetRequest req;
        req.objects.push_back(dm::UpdateObject{obj, {dm::ParamSetting{param, value, true}}});
        if (notifier) notifier->setOriginator(controller);
        auto resp = engine->set(req, dm::Permissions::fullAccess());
        if (notifier) notifier->clearOriginator();
        pump();
        return resp;
    }

    std::string value(const std::string& path) { return engine->getValue(path).valueOr("<missing>"); }

    void pump() {
        for (int i = 0; i < 3; ++i) loop.runOnce(std::chrono::milliseconds(0));
    }

    // Moves time forward in steps, firing whatever becomes due on the way.
    void advance(std::chrono::milliseconds total, std::chrono::milliseconds step = std::chrono::milliseconds(100)) {
        while (total.count() > 0) {
            auto d = std::min(total, step);
            clock.advance(d);
            total -= d;
            pump();
        }
    }

    std::vector<Sent> sentTo(const std::string& ep) const {
        std::vector<Sent> out;
        for (const auto& s : sent)
            if (s.to == ep) out.push_back(s);
        return out;
    }

    double secondsSince(Clock::MonoTime t) const { return std::chrono::duration<double>(clock.now() - t).count(); }

    FakeClock clock;
    EventLoop loop{clock};
    std::unique_ptr<dm::Engine> engine;
    std::unique_ptr<Notifier> notifier;
    std::vector<Sent> sent;
    std::set<std::string> unreachable;
    int attempts = 0;

private:
    std::filesystem::path dir_;
    NotifierOptions options_;
};

}  // namespace berth::agent::test
