#pragma once
// Helpers for the data-model tests: an engine with or without a database, short-hands
// for the USP operations, and a recording change listener.

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "berth/datamodel/engine.h"

namespace berth::dm::test {

inline std::unique_ptr<Engine> makeEngine(const std::filesystem::path& db = {}) {
    EngineOptions o;
    o.dbPath = db;
    auto e = Engine::open(o);
    if (!e) FAIL("engine open failed: " << e.error().describe());
    return std::move(*e);
}

inline const Permissions& full() {
    static const Permissions kFull = Permissions::fullAccess();
    return kFull;
}

// Fills what the agent fills for a new Subscription: Recipient (the requesting
// Controller) and a generated ID.
class SubscriptionDefaults : public Provider {
public:
    Status onAdd(ObjectEditor& obj) override {
        if (obj.get("Recipient").empty()) BERTH_TRY(obj.set("Recipient", "Device.LocalAgent.Controller.1"));
        if (obj.get("ID").empty()) BERTH_TRY(obj.set("ID", "gen-" + std::to_string(obj.instance())));
        return okStatus();
    }
};

struct RecordingListener : ChangeListener {
    std::vector<std::string> log;
    void onValueChange(std::string_view p, std::string_view v) override { log.push_back("value " + std::string(p) + "=" + std::string(v)); }
    void onObjectCreated(std::string_view p, const std::vector<std::pair<std::string_view, std::string>>&) override {
        log.push_back("created " + std::string(p));
    }
    void onObjectDeleted(std::string_view p) override { log.push_back("deleted " + std::string(p)); }
    void onEvent(std::string_view p, const ArgMap&) override { log.push_back("event " + std::string(p)); }
    bool has(const std::string& s) const { return std::find(log.begin(), log.end(), s) != log.end(); }
};

inline AddResponse addOne(Engine& e, const std::string& table, std::vector<ParamSetting> params, bool allowPartial = false,
                          const Permissions& perms = full()) {
    AddRequest r;
    r.allowPartial = allowPartial;
    r.objects.push_back(CreateObject{table, std::move(params)});
    return e.add(r, perms);
}

inline SetResponse setOne(Engine& e, const std::string& obj, std::vector<ParamSetting> params, bool allowPartial = false,
                          const Permissions& perms = full()) {
    SetRequest r;
    r.allowPartial = allowPartial;
    r.objects.push_back(UpdateObject{obj, std::move(params)});
    return e.set(r, perms);
}

inline DeleteResponse delPaths(Engine& e, std::vector<std::string> paths, bool allowPartial = false,
                               const Permissions& perms = full()) {
    DeleteRequest r;
    r.allowPartial = allowPartial;
    r.paths = std::move(paths);
    return e.del(r, perms);
}

inline GetPathResult getOne(Engine& e, const std::string& path, std::uint32_t depth = 0, const Permissions& perms = full()) {
    GetRequest r;
    r.paths.push_back(path);
    r.maxDepth = depth;
    return e.get(r, perms).results.at(0);
}

// Value of a plain parameter through Get ("" with a failed CHECK when absent).
inline std::string value(Engine& e, const std::string& path) {
    auto v = e.getValue(path);
    if (!v) {
        FAIL_CHECK("no value for " << path << ": " << v.error().describe());
        return {};
    }
    return *v;
}

inline std::string findParam(const ResolvedObject& o, std::string_view name) {
    for (const auto& p : o.params)
        if (p.name == name) return p.value;
    return "<absent>";
}

// A Controller with EndpointID and two BootParameters, plus the Subscription provider.
struct Fixture {
    std::unique_ptr<Engine> engine;
    SubscriptionDefaults subs;
    explicit Fixture(const std::filesystem::path& db = {}) : engine(makeEngine(db)) {
        REQUIRE(engine->registerProvider("Device.LocalAgent.Subscription.{i}.", &subs));
        if (engine->getValue("Device.LocalAgent.ControllerNumberOfEntries").valueOr(std::string()) == "0") {
            auto c = engine->addInstance("Device.LocalAgent.Controller.", {{"EndpointID", "proto::controller-1"}, {"Alias", "ctrl1"}, {"Enable", "true"}});
            REQUIRE(c);
            REQUIRE(engine->addInstance("Device.LocalAgent.Controller.1.BootParameter.", {{"ParameterName", "Device.LocalAgent.EndpointID"}, {"Enable", "true"}}));
            REQUIRE(engine->addInstance("Device.LocalAgent.Controller.1.BootParameter.", {{"ParameterName", "Device.DeviceInfo.SoftwareVersion"}, {"Enable", "false"}}));
        }
    }
    Engine& operator*() { return *engine; }
    Engine* operator->() { return engine.get(); }
};

}  // namespace berth::dm::test
