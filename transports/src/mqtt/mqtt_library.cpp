// Which MQTT library carries the connections: the choice and its factory.
#include "berth/transports/mqtt.h"

namespace berth::transports {

std::string_view mqttLibraryName(MqttLibrary library) {
    return library == MqttLibrary::kMosquitto ? "mosquitto" : "paho";
}

Result<MqttLibrary> parseMqttLibrary(std::string_view name) {
    if (name == "paho") return MqttLibrary::kPaho;
    if (name == "mosquitto") return MqttLibrary::kMosquitto;
    return Error(ErrorCode::kInvalidArguments,
                 "unknown MQTT library '" + std::string(name) + "': expected paho or mosquitto");
}

bool mqttLibraryAvailable(MqttLibrary library) {
#ifdef BERTH_WITH_MOSQUITTO
    (void)library;
    return true;
#else
    return library == MqttLibrary::kPaho;
#endif
}

Result<MqttConnectionFactory> mqttConnectionFactory(MqttLibrary library, WorkerPool& pool) {
    if (library == MqttLibrary::kPaho) return pahoMqttConnectionFactory(pool);
#ifdef BERTH_WITH_MOSQUITTO
    return mosquittoMqttConnectionFactory(pool);
#else
    return Error(ErrorCode::kInvalidConfiguration,
                 "this build has no libmosquitto MQTT binding (BERTH_WITH_MOSQUITTO was off)");
#endif
}

}  // namespace berth::transports
