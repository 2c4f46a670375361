#pragma once
// MtpManager: turns the MTP rows of the data model (Device.LocalAgent.MTP.{i}. and the
// Device.MQTT.Client.{i}. they reference) into running bindings, and keeps them in step
// when a controller edits those rows: reload() compares each row's configuration with
// the running one and applies the difference in place, without restarting the agent.
//
// Threading: loop thread only.

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "berth/core/event_loop.h"
#include "berth/datamodel/engine.h"
#include "berth/transports/mtp.h"

#ifdef BERTH_WITH_MQTT
#include "berth/transports/mqtt.h"
#endif

namespace berth::agent {

class MtpManager : public dm::Provider {
public:
    // Called for every record any binding receives; `mtpPath` is the LocalAgent.MTP.{i}. row.
    using RecordSink = std::function<void(const std::string& mtpPath, transports::InboundRecord)>;
    // Called when a binding comes up (send connect records) with its row and address.
    using UpSink = std::function<void(const std::string& mtpPath, const std::string& agentAddress)>;

    MtpManager(EventLoop& loop, dm::Engine& engine, std::string endpointId, RecordSink onRecord, UpSink onUp);
    ~MtpManager() override;

    // Registers the provided Status parameters with the engine.
    Status registerWithEngine();
    // (Re)reads the MTP rows and starts, reconfigures or stops bindings to match.
    void reload();
    void stopAll();

    // The binding of an agent MTP row, or of the MQTT client it references (both accepted).
    transports::Mtp* find(const std::string& path);
    // The LocalAgent.MTP.{i}. row serving a reference such as "Device.MQTT.Client.1."; "" if none.
    std::string mtpPathFor(const std::string& reference) const;

    // dm::Provider: Status / ResponseTopicDiscovered values.
    Result<std::string> get(const dm::ObjectView& obj, std::string_view param) override;

private:
    struct Binding {
        std::string mtpPath;        // Device.LocalAgent.MTP.{i}.
        std::string reference;      // Device.MQTT.Client.{k}.
        std::unique_ptr<transports::Mtp> mtp;
        transports::MtpStatus lastStatus = transports::MtpStatus::kDown;
#ifdef BERTH_WITH_MQTT
        transports::MqttClientConfig mqttConfig;
#endif
    };
    std::string value(const std::string& path) const;
#ifdef BERTH_WITH_MQTT
    Result<transports::MqttClientConfig> mqttConfigFor(const std::string& mtpPath, const std::string& clientPath) const;
#endif
    void onStatus(const std::string& mtpPath, transports::MtpStatus s, const std::string& detail);

    EventLoop& loop_;
    dm::Engine& engine_;
    std::string endpointId_;
    RecordSink onRecord_;
    UpSink onUp_;
    std::map<std::string, Binding> bindings_;  // by MTP row path
};

}  // namespace berth::agent
