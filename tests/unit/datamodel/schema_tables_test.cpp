// The built-in schema as Schema::builtin() rebuilds it from the generated compact tables
// (datamodel/src/schema_tables.h): every kind of field read back from the string pool
// and the 16-bit fields, and the links the builder makes between objects.
#include <algorithm>
#include <catch2/catch.hpp>
#include <string>

#include "berth/datamodel/schema.h"

using berth::dm::ObjAccess;
using berth::dm::ParamAccess;
using berth::dm::Schema;
using berth::dm::ValueType;

TEST_CASE("The built-in schema reads names, types, sizes and ranges back from the tables", "[datamodel][schema]") {
    const Schema& s = Schema::builtin();
    CHECK(s.specUri() == "urn:broadband-forum-org:tr-181-2-19-1-usp");
    const auto* info = s.findObject("Device.DeviceInfo.");
    REQUIRE(info);
    CHECK(info->name() == "DeviceInfo");
    const auto* oui = info->findParam("ManufacturerOUI");
    REQUIRE(oui);
    CHECK(oui->type == ValueType::kString);
    CHECK(oui->minLen == 6);
    CHECK(oui->maxLen == 6);
    const auto* windows = info->findParam("MaxNumberOfActivateTimeWindows");
    REQUIRE(windows);
    CHECK(windows->type == ValueType::kUnsignedInt);
    REQUIRE(windows->ranges.size() == 1);
    CHECK(windows->ranges[0].min == 1);
    CHECK(windows->ranges[0].max == 5);

    const auto* client = s.findObject("Device.MQTT.Client.{i}.");
    REQUIRE(client);
    const auto* keepAlive = client->findParam("KeepAliveTime");
    REQUIRE(keepAlive);
    REQUIRE(keepAlive->ranges.size() == 1);
    CHECK_FALSE(keepAlive->ranges[0].hasMin);
    CHECK(keepAlive->ranges[0].max == 65535);
    CHECK(keepAlive->defaultValue == "60");
    const auto* multiplier =
        s.findObject("Device.LocalAgent.Controller.{i}.")->findParam("USPNotifRetryIntervalMultiplier");
    REQUIRE(multiplier);
    CHECK(multiplier->ranges[0].min == 1000);
    CHECK(multiplier->defaultValue == "2000");

    const auto* alpn = client->findParam("ALPN");
    REQUIRE(alpn);
    CHECK(alpn->isList);
    CHECK(alpn->maxLen == 256);
    CHECK(alpn->hasDefault);
    CHECK(alpn->defaultValue.empty());  // "[]" for a list is the empty list
}

TEST_CASE("The built-in schema keeps enumerations, defaults, access and unique keys", "[datamodel][schema]") {
    const Schema& s = Schema::builtin();
    const auto* sub = s.findObject("Device.LocalAgent.Subscription.{i}.");
    REQUIRE(sub);
    CHECK(sub->multiInstance());
    CHECK(sub->access() == ObjAccess::kAddDelete);
    const auto* action = sub->findParam("TriggerAction");
    REQUIRE(action);
    CHECK(action->enums == std::vector<std::string>{"Notify", "Config", "NotifyAndConfig"});
    CHECK(action->hasDefault);
    CHECK(action->defaultValue == "Notify");
    CHECK(action->access == ParamAccess::kReadWrite);

    const auto* mtp = s.findObject("Device.LocalAgent.MTP.{i}.");
    REQUIRE(mtp);
    REQUIRE(mtp->enableParam() >= 0);
    CHECK(mtp->params()[mtp->enableParam()].name == "Enable");
    REQUIRE(mtp->aliasParam() >= 0);
    CHECK(mtp->params()[mtp->aliasParam()].isAlias);
    REQUIRE_FALSE(mtp->uniqueKeys().empty());
    CHECK_FALSE(mtp->uniqueKeys()[0].functional);
    CHECK(mtp->params()[mtp->uniqueKeys()[0].params.at(0)].name == "Alias");
    // The parent's counter parameter counts this table.
    const auto* counter = s.findObject("Device.LocalAgent.")->findParam("MTPNumberOfEntries");
    REQUIRE(counter);
    CHECK(counter->counts == mtp);
    // Empty strings stay empty (offset 0 of the pool).
    CHECK(action->pathRef.empty());
    CHECK(action->refTarget == nullptr);
    const auto* service = s.findObject("Device.USPServices.USPService.{i}.");
    REQUIRE(service);
    const auto* protocol = service->findParam("Protocol");
    REQUIRE(protocol);
    CHECK(protocol->enums == std::vector<std::string>{"WebSocket", "STOMP", "MQTT", "UDS"});
    CHECK_FALSE(protocol->hasDefault);
}

TEST_CASE("The built-in schema links references, commands and events to their objects", "[datamodel][schema]") {
    const Schema& s = Schema::builtin();
    const auto* mqttRef = s.findObject("Device.LocalAgent.MTP.{i}.MQTT.")->findParam("Reference");
    REQUIRE(mqttRef);
    CHECK(mqttRef->strongRef);
    CHECK(mqttRef->pathRef == ".MQTT.Client.");
    CHECK(mqttRef->refTarget == s.findObject("Device.MQTT.Client.{i}."));
    const auto* agentMtp =
        s.findObject("Device.LocalAgent.Controller.{i}.MTP.{i}.MQTT.")->findParam("AgentMTPReference");
    REQUIRE(agentMtp);
    CHECK(agentMtp->refTarget == s.findObject("Device.LocalAgent.MTP.{i}."));

    const auto& root = s.root();
    CHECK(root.path() == "Device.");
    const auto* reboot = root.findCommand("Reboot()");
    REQUIRE(reboot);
    CHECK_FALSE(reboot->async);
    CHECK(reboot->owner == &root);
    const auto* timer = root.findCommand("ScheduleTimer()");
    REQUIRE(timer);
    REQUIRE_FALSE(timer->inputs.empty());
    CHECK(timer->inputs[0].name == "DelaySeconds");
    const auto* boot = root.findEvent("Boot!");
    REQUIRE(boot);
    CHECK(boot->owner == &root);
    std::vector<std::string> args;
    for (const auto& a : boot->args)
        args.push_back(a.name);
    CHECK(args == std::vector<std::string>{"CommandKey", "Cause", "Reason", "FirmwareUpdated", "ParameterMap"});
    auto cause = std::find_if(boot->args.begin(), boot->args.end(), [](const auto& a) { return a.name == "Cause"; });
    REQUIRE(cause != boot->args.end());
    CHECK(std::find(cause->enums.begin(), cause->enums.end(), "LocalFactoryReset") != cause->enums.end());

    // Ids are dense over the schema, in table order.
    CHECK(root.id() == 0);
    CHECK(s.objectCount() > 50);
}
