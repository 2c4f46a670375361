// The path-text helpers every module shares (berth/datamodel/path.h).

#include <catch2/catch.hpp>

#include "berth/datamodel/path.h"

using namespace berth::dm;

TEST_CASE("withDot makes an object path and leaves one that already is alone", "[datamodel][path]") {
    CHECK(withDot("Device.MQTT.Client.1") == "Device.MQTT.Client.1.");
    CHECK(withDot("Device.MQTT.Client.1.") == "Device.MQTT.Client.1.");
    CHECK(withDot("") == "");
}

TEST_CASE("noDot removes exactly one trailing dot", "[datamodel][path]") {
    CHECK(noDot("Device.MQTT.Client.1.") == "Device.MQTT.Client.1");
    CHECK(noDot("Device.MQTT.Client.1") == "Device.MQTT.Client.1");
    CHECK(noDot("Device..") == "Device.");
    CHECK(noDot("") == "");
    CHECK(noDot(".") == "");
}

TEST_CASE("startsWith and endsWith test the text's prefix and suffix", "[datamodel][path]") {
    CHECK(startsWith("Device.LocalAgent.Controller.1.", "Device.LocalAgent."));
    CHECK(startsWith("Device.", ""));
    CHECK_FALSE(startsWith("Device.", "Device.LocalAgent."));
    CHECK_FALSE(startsWith("Device.X", "Device.Y"));
    CHECK(endsWith("Device.MQTT.Client.1.Enable", ".Enable"));
    CHECK(endsWith("x", ""));
    CHECK_FALSE(endsWith("Enable", ".Enable"));
    CHECK_FALSE(endsWith("Device.X.Enabled", ".Enable"));
}

TEST_CASE("instanceNumber reads the number the path ends in, or 0", "[datamodel][path]") {
    CHECK(instanceNumber("Device.SoftwareModules.DeploymentUnit.12.") == 12);
    CHECK(instanceNumber("Device.SoftwareModules.DeploymentUnit.12") == 12);
    CHECK(instanceNumber("7") == 7);
    CHECK(instanceNumber("Device.SoftwareModules.DeploymentUnit.") == 0);
    CHECK(instanceNumber("Device.X.1.Name") == 0);
    CHECK(instanceNumber("Device.X.-1.") == 0);
    CHECK(instanceNumber("Device.X.4294967295.") == 4294967295u);
    CHECK(instanceNumber("Device.X.4294967296.") == 0);
    CHECK(instanceNumber("Device.X.99999999999999999999.") == 0);
    CHECK(instanceNumber("") == 0);
}
