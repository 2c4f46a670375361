#pragma once
// MtpManager: turns the MTP rows of the data model into running bindings and keeps them
// in step when a controller edits those rows: reload() compares each row's
// configuration with the running one and applies the difference in place, without
// restarting the agent.
//
//   Device.LocalAgent.MTP.{i}. Protocol=MQTT       -> MqttClient (Device.MQTT.Client.{k}. by MQTT.Reference)
//   Device.LocalAgent.MTP.{i}. Protocol=STOMP      -> StompClient (Device.STOMP.Connection.{k}. by STOMP.Reference)
//   Device.LocalAgent.MTP.{i}. Protocol=WebSocket  -> WebSocketServer (LocalAgent.MTP.{i}.WebSocket.)
//   Device.LocalAgent.Controller.{i}.MTP.{j}. Protocol=WebSocket with a Host
//                                                  -> WebSocketClient dialling that controller
//
// Edits of those rows (Device.MQTT., Device.STOMP., Device.LocalAgent.MTP., the
// Controller MTP rows) are coalesced here, and only here: one reload on the next loop
// turn however many parameters a message changed.
//
// Bindings are named by their row: the LocalAgent.MTP.{i}. row, or for a WebSocket
// client the Controller.{i}.MTP.{j}. row. That name is the `mtpPath` of records and
// status changes.
//
// One WebSocket session per controller (R-WS.4): the session that exists first wins.
// A server session from a controller whose client binding is Up is closed at once with
// 1008; a server session that opens while the client binding is not Up suspends that
// client (stops dialling) until the server session ends, then the client dials again.
//
// Threading: loop thread only. The bindings' blocking work (STOMP host name lookups, the
// diagnosis of a failed MQTT TLS connect) runs on a worker pool of their own, so a slow
// resolver never waits behind the agent's downloads and runtime calls. It has no thread
// while idle; destroying the manager joins it.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "berth/core/event_loop.h"
#include "berth/core/worker_pool.h"
#include "berth/datamodel/engine.h"
#include "berth/transports/mtp.h"
#include "controllers.h"

#ifdef BERTH_WITH_MQTT
#include "berth/transports/mqtt.h"
#endif
#ifdef BERTH_WITH_STOMP
#include "berth/transports/stomp.h"
#endif
#ifdef BERTH_WITH_WEBSOCKET
#include "berth/transports/websocket.h"
#endif

namespace berth::agent {

class MtpManager : public dm::Provider, private dm::ChangeListener {
public:
    // Called for every record any binding receives; `mtpPath` names the binding (above).
    using RecordSink = std::function<void(const std::string& mtpPath, transports::InboundRecord)>;
    // Called when a binding comes up (send connect records) with its name and address.
    // For a WebSocket server it is also called each time a session opens, with the
    // session key as `agentAddress`: serverSessionPeer() tells the two apart.
    using UpSink = std::function<void(const std::string& mtpPath, const std::string& agentAddress)>;

    // Where a record goes: a binding and the destination to give its send().
    struct Route {
        std::string mtpPath;
        std::string destination;
    };

    MtpManager(EventLoop& loop, dm::Engine& engine, std::string endpointId, RecordSink onRecord, UpSink onUp);
    ~MtpManager() override;

    // Agent-wide TLS files (obuspa's -a and -t), used by every binding whose row names
    // none of its own (X_BERTH_CertFile, X_BERTH_CAFile). certFile holds the client
    // certificate and its key; trustStore is a PEM file, or for MQTT also a directory
    // of hashed certificates. Takes effect at the next reload().
    struct TlsDefaults {
        std::string certFile;
        std::string trustStore;
    };
    void setTlsDefaults(TlsDefaults defaults) { tlsDefaults_ = std::move(defaults); }
    // The library MQTT bindings made from now on use (AgentOptions::mqttLibrary).
    void setMqttLibrary(transports::MqttLibrary library) { mqttLibrary_ = library; }

    // Registers the provided values and Controller.{i}.MTP.{j}.WebSocket.Reset() with
    // the engine, and listens for edits of every MTP row (see above).
    Status registerWithEngine();
    // (Re)reads the MTP rows and starts, reconfigures or stops bindings to match.
    void reload();
    void stopAll();
    // How many reloads ran (coalesced edits count once; tests and figures).
    std::uint64_t reloadCount() const { return reloads_; }

    // The binding named `path`, or of the MQTT client / STOMP connection it references
    // (both accepted).
    transports::Mtp* find(const std::string& path);
    // The binding name serving a reference such as "Device.MQTT.Client.1." or
    // "Device.STOMP.Connection.1."; "" if none.
    std::string mtpPathFor(const std::string& reference) const;

    // Where an agent-initiated record for controller `endpointId` goes over its MTP row
    // `m`, when a binding for it is Up: MQTT/STOMP through the referenced binding (any
    // of that protocol when the reference is empty) to m.destination; WebSocket over the
    // row's client session, else the controller's session with one of our servers.
    std::optional<Route> routeFor(const std::string& endpointId, const ControllerMtp& m);
    // The open session of `endpointId` with any of our WebSocket servers.
    std::optional<Route> webSocketSessionWith(const std::string& endpointId) const;
    // The peer endpoint ID of session `key` of WebSocket server `mtpPath` (nullopt when
    // mtpPath is no server or the session is unknown; "" when the peer sent no eid).
    std::optional<std::string> serverSessionPeer(const std::string& mtpPath, const std::string& key) const;
    // True for a WebSocket binding (client or server).
    bool isWebSocket(const std::string& mtpPath) const;
    // Closes a WebSocket session with 1003 (R-WS.16: a record that could not be decoded).
    void closeUndecodable(const std::string& mtpPath, const std::string& sessionKey, const std::string& why);

    // dm::Provider: Status, ResponseTopicDiscovered, DestinationFromServer, CurrentRetryCount.
    Result<std::string> get(const dm::ObjectView& obj, std::string_view param) override;
    // Refuses (7012) a Set of LocalAgent.MTP.{i}.MQTT.Reference / STOMP.Reference on an
    // enabled MTP row when the new target could not carry a connection (disabled, or no
    // BrokerAddress / Host): such a Set would cut the agent off (docs/transports.md).
    Status validateSet(const dm::ObjectView& obj, const std::vector<std::string_view>& changed) override;

private:
    enum class Kind { kMqtt, kStomp, kWsServer, kWsClient };
    struct Binding {
        Kind kind = Kind::kMqtt;
        std::string mtpPath;    // the binding's name (see above)
        std::string reference;  // Device.MQTT.Client.{k}. / Device.STOMP.Connection.{k}. ("" for WebSocket)
        std::string peerId;     // WebSocket client: the controller's EndpointID
        std::string fingerprint;  // the configuration in force, to skip no-op reloads
        std::unique_ptr<transports::Mtp> mtp;
        transports::MtpStatus lastStatus = transports::MtpStatus::kDown;
        bool suspended = false;  // WebSocket client stopped while the controller has a server session (R-WS.4)
    };

    // dm::ChangeListener: edits of MTP rows schedule one coalesced reload.
    void onValueChange(std::string_view paramPath, std::string_view value) override;
    void onObjectCreated(std::string_view path, const std::vector<std::pair<std::string_view, std::string>>&) override;
    void onObjectDeleted(std::string_view path) override;
    void onEvent(std::string_view, const dm::ArgMap&) override {}
    // Does an edit of `path` (a value when valueChange, else a row) feed a binding?
    static bool affectsBindings(std::string_view path, bool valueChange);
    void scheduleReload(std::string_view path, bool valueChange);
    // Controller.{i}.MTP.{j}.WebSocket.Reset(): drop the session and dial again now.
    Result<dm::ArgMap> resetWebSocket(const dm::CommandCall& call);

    std::string value(const std::string& path) const;
    long long number(const std::string& path, long long dflt) const;
    // Replaces, reconfigures or keeps the binding `name`; `make` builds a new one.
    void ensure(const std::string& name, Kind kind, const std::string& reference, const std::string& fingerprint,
                const std::function<Result<std::unique_ptr<transports::Mtp>>()>& make,
                const std::function<Status(transports::Mtp&)>& apply, const std::string& describe);
    void install(Binding b, const std::string& describe);
    Binding* binding(const std::string& name);
    const Binding* binding(const std::string& name) const;
    void reloadMtpRow(const std::string& row, std::map<std::string, bool>& wanted);
    void reloadControllerRows(std::map<std::string, bool>& wanted);

#ifdef BERTH_WITH_MQTT
    Result<transports::MqttClientConfig> mqttConfigFor(const std::string& mtpPath, const std::string& clientPath) const;
#endif
#ifdef BERTH_WITH_STOMP
    transports::StompConfig stompConfigFor(const std::string& mtpPath, const std::string& connection) const;
#endif
#ifdef BERTH_WITH_WEBSOCKET
    transports::WebSocketServerConfig wsServerConfigFor(const std::string& mtpPath) const;
    transports::WebSocketClientConfig wsClientConfigFor(const std::string& mtpRow, const std::string& peerId) const;
    void onServerSession(const std::string& mtpPath, const transports::WebSocketSessionInfo& info, bool open);
    Binding* wsClientFor(const std::string& peerId);
#endif
    void onStatus(const std::string& mtpPath, transports::MtpStatus s, const std::string& detail);

    EventLoop& loop_;
    // Outlives every binding (declared before bindings_).
    WorkerPool pool_;
    dm::Engine& engine_;
    TlsDefaults tlsDefaults_;
    transports::MqttLibrary mqttLibrary_ = transports::MqttLibrary::kPaho;
    std::string endpointId_;
    RecordSink onRecord_;
    UpSink onUp_;
    std::map<std::string, Binding> bindings_;  // by binding name
    std::unique_ptr<Timer> reloadTimer_;       // coalesces MTP row edits into one reload
    std::uint64_t reloads_ = 0;
    bool listening_ = false;  // registered as a ChangeListener
    bool stopped_ = false;    // after stopAll(): no reloads from edits until reload() is called
};

}  // namespace berth::agent
