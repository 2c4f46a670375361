// "No Set accepted by berth may leave the agent unreachable": each MTP-related reference
// is Set to every form a controller may write (with and without the trailing dot, key
// addressing), and berthd must answer again over the same MTP. Targets that cannot carry
// the connection are refused (7012) and the agent stays reachable. Configuration files
// in either form bring the agent up too.
#include <catch2/catch.hpp>

#include "common.h"

using namespace berth;
using namespace berth::agenttest;
using namespace std::chrono_literals;

namespace {

using Ctl = std::function<CtlResult(std::vector<std::string>, bool)>;
using Answering = std::function<bool()>;

// Sets `param` to each of `forms`; after each the agent must report `canonical` and
// answer over the MTP the Set came through.
void setEachForm(const Ctl& ctl, const Answering& answering, const std::string& param,
                 const std::vector<std::string>& forms, const std::string& canonical) {
    for (const auto& form : forms) {
        INFO(param << " = " << form);
        auto set = ctl({"set", param + "=" + form}, false);
        INFO(set.describe());
        REQUIRE(set.exitCode == 0);
        REQUIRE(answering());
        auto get = ctl({"get", param}, true);
        INFO(get.describe());
        REQUIRE(get.exitCode == 0);
        CHECK(paramValue(get.json, param) == canonical);
    }
}

// Sets `param` to `value`: refused with `code`, the stored value unchanged, still answering.
void refused(const Ctl& ctl, const Answering& answering, const std::string& param, const std::string& value,
             const std::string& before, const std::string& code = "7012") {
    INFO(param << " = " << value);
    auto set = ctl({"set", param + "=" + value}, false);
    INFO(set.describe());
    CHECK(set.exitCode == 1);
    CHECK((set.out + set.err).find(code) != std::string::npos);
    REQUIRE(answering());
    auto get = ctl({"get", param}, true);
    CHECK(paramValue(get.json, param) == before);
}

// The MQTT cases run once per MQTT library of berthd (--mqtt-library).
struct Paho {
    static std::vector<std::string> berthdArgs() { return {"--mqtt-library", "paho"}; }
    static constexpr const char* kLogged = "(paho)";
};
struct Mosquitto {
    static std::vector<std::string> berthdArgs() { return {"--mqtt-library", "mosquitto"}; }
    static constexpr const char* kLogged = "(mosquitto)";
};

// berthd says which library carries its MQTT MTP when it makes the binding.
template <typename Library>
void checkLibraryInUse(AgentFixture& f) {
    INFO(f.agent->log());
    CHECK(f.agent->log().find("MQTT via Device.MQTT.Client.1") != std::string::npos);
    CHECK(f.agent->log().find(Library::kLogged) != std::string::npos);
}

}  // namespace

#ifdef BERTH_WITH_MOSQUITTO
#define MQTT_LIBRARIES Paho, Mosquitto
#else
#define MQTT_LIBRARIES Paho
#endif

TEMPLATE_TEST_CASE("MQTT references Set in every form leave berthd answering over MQTT", "[agent-mtps][reference][mqtt]",
                   MQTT_LIBRARIES) {
    AgentFixture f({}, {}, TestType::berthdArgs());
    checkLibraryInUse<TestType>(f);
    Ctl ctl = [&](std::vector<std::string> a, bool json) { return f.ctl(std::move(a), json); };
    Answering answering = [&] { return f.waitAnswering(20s); };
    // The attack of issue 13: the value TR-181 and obuspa write.
    setEachForm(ctl, answering, "Device.LocalAgent.MTP.1.MQTT.Reference",
                {"Device.MQTT.Client.1", "Device.MQTT.Client.1.", "Device.MQTT.Client.[Alias==\"cpe-broker\"]."},
                "Device.MQTT.Client.1");
    setEachForm(ctl, answering, "Device.LocalAgent.Controller.1.MTP.1.MQTT.AgentMTPReference",
                {"Device.LocalAgent.MTP.1", "Device.LocalAgent.MTP.1.", "Device.LocalAgent.MTP.[Alias==\"cpe-mqtt\"]"},
                "Device.LocalAgent.MTP.1");

    // Targets that do not exist, are of the wrong table, or cannot connect: refused.
    refused(ctl, answering, "Device.LocalAgent.MTP.1.MQTT.Reference", "Device.MQTT.Client.2", "Device.MQTT.Client.1");
    refused(ctl, answering, "Device.LocalAgent.MTP.1.MQTT.Reference", "Device.LocalAgent.MTP.1", "Device.MQTT.Client.1");
    refused(ctl, answering, "Device.LocalAgent.Controller.1.MTP.1.MQTT.AgentMTPReference", "Device.LocalAgent.MTP.4.",
            "Device.LocalAgent.MTP.1");
    auto disabled = f.ctlText({"add", "Device.MQTT.Client.", "Name=disabled", "BrokerAddress=127.0.0.1", "Enable=false"});
    INFO(disabled.describe());
    REQUIRE(disabled.exitCode == 0);
    refused(ctl, answering, "Device.LocalAgent.MTP.1.MQTT.Reference", "Device.MQTT.Client.2.", "Device.MQTT.Client.1");
    auto empty = f.ctlText({"add", "Device.MQTT.Client.", "Name=no-broker", "Enable=true"});
    REQUIRE(empty.exitCode == 0);
    refused(ctl, answering, "Device.LocalAgent.MTP.1.MQTT.Reference", "Device.MQTT.Client.3", "Device.MQTT.Client.1");
}

TEMPLATE_TEST_CASE("A configuration file with references without the trailing dot brings berthd up over MQTT",
                   "[agent-mtps][reference][mqtt]", MQTT_LIBRARIES) {
    AgentFixture f(
        [](std::string conf) {
            conf = setConfigValue(conf, "Device.LocalAgent.MTP.1.MQTT.Reference", "Device.MQTT.Client.1");
            conf = setConfigValue(conf, "Device.LocalAgent.Controller.1.MTP.1.MQTT.AgentMTPReference",
                                  "Device.LocalAgent.MTP.1");
            conf = setConfigValue(conf, "Device.LocalAgent.Controller.1.AssignedRole",
                                  "Device.LocalAgent.ControllerTrust.Role.1");
            return setConfigValue(conf, "Device.LocalAgent.ControllerTrust.UntrustedRole",
                                  "Device.LocalAgent.ControllerTrust.Role.2");
        },
        {}, TestType::berthdArgs());
    checkLibraryInUse<TestType>(f);
    auto get = f.ctl({"get", "Device.LocalAgent.MTP.1.MQTT.Reference", "Device.LocalAgent.Controller.1.AssignedRole"});
    INFO(get.describe());
    REQUIRE(get.exitCode == 0);
    CHECK(paramValue(get.json, "Device.LocalAgent.MTP.1.MQTT.Reference") == "Device.MQTT.Client.1");
    // The role took effect: a write needs the full-access role.
    auto set = f.ctlText({"set", "Device.DeviceInfo.FriendlyName=refs"});
    INFO(set.describe());
    CHECK(set.exitCode == 0);
}

TEMPLATE_TEST_CASE("A configuration file with the dot form is reported in the canonical form",
                   "[agent-mtps][reference][mqtt]", MQTT_LIBRARIES) {
    AgentFixture f({}, {}, TestType::berthdArgs());  // examples/berth.conf writes "Device.MQTT.Client.1."
    checkLibraryInUse<TestType>(f);
    auto get = f.ctl({"get", "Device.LocalAgent.MTP.1.MQTT.Reference",
                      "Device.LocalAgent.Controller.1.MTP.1.MQTT.AgentMTPReference"});
    INFO(get.describe());
    CHECK(paramValue(get.json, "Device.LocalAgent.MTP.1.MQTT.Reference") == "Device.MQTT.Client.1");
    CHECK(paramValue(get.json, "Device.LocalAgent.Controller.1.MTP.1.MQTT.AgentMTPReference") == "Device.LocalAgent.MTP.1");
}

TEST_CASE("STOMP references Set in every form leave berthd answering over STOMP", "[agent-mtps][reference][stomp]") {
    StompAgent f;
    Ctl ctl = [&](std::vector<std::string> a, bool json) { return f.ctl(std::move(a), json); };
    Answering answering = [&] { return f.waitAnswering(20s); };
    setEachForm(ctl, answering, "Device.LocalAgent.MTP.1.STOMP.Reference",
                {"Device.STOMP.Connection.1", "Device.STOMP.Connection.1.", "Device.STOMP.Connection.[Alias==\"cpe-stomp\"]."},
                "Device.STOMP.Connection.1");
    setEachForm(ctl, answering, "Device.LocalAgent.Controller.1.MTP.1.STOMP.Reference",
                {"Device.STOMP.Connection.1", "Device.STOMP.Connection.1."}, "Device.STOMP.Connection.1");
    refused(ctl, answering, "Device.LocalAgent.MTP.1.STOMP.Reference", "Device.STOMP.Connection.2",
            "Device.STOMP.Connection.1");
    auto disabled = f.ctl({"add", "Device.STOMP.Connection.", "Host=127.0.0.1", "Enable=false"}, false);
    INFO(disabled.describe());
    REQUIRE(disabled.exitCode == 0);
    refused(ctl, answering, "Device.LocalAgent.MTP.1.STOMP.Reference", "Device.STOMP.Connection.2",
            "Device.STOMP.Connection.1");
}

TEST_CASE("A STOMP configuration file without trailing dots brings berthd up", "[agent-mtps][reference][stomp]") {
    StompAgentOptions o;
    o.adjust = [](std::string conf) {
        conf = setConfigValue(conf, "Device.LocalAgent.MTP.1.STOMP.Reference", "Device.STOMP.Connection.1");
        return setConfigValue(conf, "Device.LocalAgent.Controller.1.MTP.1.STOMP.Reference", "Device.STOMP.Connection.1");
    };
    StompAgent f(o);  // waits until berthd answers over STOMP
    auto get = f.ctl({"get", "Device.LocalAgent.MTP.1.STOMP.Reference"});
    CHECK(paramValue(get.json, "Device.LocalAgent.MTP.1.STOMP.Reference") == "Device.STOMP.Connection.1");
}

TEST_CASE("Role references Set in every form leave berthd answering over WebSocket", "[agent-mtps][reference][websocket]") {
    WsAgent f;
    Ctl ctl = [&](std::vector<std::string> a, bool json) { return f.ctl(std::move(a), json); };
    Answering answering = [&] { return f.waitAnswering(20s); };
    // The controller's own role: a wrong form would take its rights away.
    setEachForm(ctl, answering, "Device.LocalAgent.Controller.1.AssignedRole",
                {"Device.LocalAgent.ControllerTrust.Role.1", "Device.LocalAgent.ControllerTrust.Role.1."},
                "Device.LocalAgent.ControllerTrust.Role.1");
    auto set = f.ctl({"set", "Device.DeviceInfo.FriendlyName=still trusted"}, false);
    INFO(set.describe());
    CHECK(set.exitCode == 0);
    refused(ctl, answering, "Device.LocalAgent.Controller.1.AssignedRole", "Device.LocalAgent.ControllerTrust.Role.9",
            "Device.LocalAgent.ControllerTrust.Role.1");
    // The WebSocket client binding (berthctl --ws-listen) still answers too.
    auto listen = f.ctlListen({"get", "Device.LocalAgent.EndpointID"});
    INFO(listen.describe());
    CHECK(listen.exitCode == 0);
}
