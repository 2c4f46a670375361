#pragma once
// The MQTT MTP binding (TR-369 "MQTT Binding"): one MqttClient per
// Device.MQTT.Client.{i} with the agent-side values of LocalAgent.MTP.{i}.MQTT.
//
//   auto client = MqttClient::create(loop, config);      // validates, does not connect
//   (*client)->onRecord(...); (*client)->onStatus(...);
//   (*client)->start();                                  // connects in the background
//   (*client)->send({payload, controllerTopic, RecordKind::kResponse});
//   (*client)->applyConfig(newConfig);                   // reconnects (or resubscribes) in place
//
// Threading: everything here is called on the loop thread and every callback runs on
// the loop thread. Two MQTT libraries can carry the connection (MqttLibrary below):
// Eclipse Paho runs its own threads, which only post() into the loop; libmosquitto
// runs on the loop itself. Nothing blocks on the network: connects, subscribes and
// publishes are asynchronous, and reconnects are loop timers following the TR-369
// retry schedule (ConnectRetryTime, ConnectRetryIntervalMultiplier,
// ConnectRetryMaxInterval, random jitter). The retry count is reset once a connection
// is up, so after a broker restart the client is back within [m, m*k/1000].
//
// Sending: send() fails with kMessageFailed unless the client is Up (connected and at
// least one subscription acknowledged, R-MQTT.17). There is deliberately no outbound
// queue here: queueing and retrying notifications is the agent's job, which knows
// which records are worth keeping.
//
// TLS: files are loaded with OpenSSL before each attempt so a bad file is named with
// OpenSSL's reason; when a TLS connect fails, one handshake of our own (a job on the
// worker pool, dropped if the connection is given up first) says why, e.g. "server
// certificate rejected: ... (checked against CA file X)".
//
// Known limits of Paho C (shared by all clients in the process; the libmosquitto
// binding has neither): host names are resolved
// with a blocking getaddrinfo() on its shared thread, so use IP addresses or a local
// resolver cache where DNS may hang; and its receive thread polls in 1 s cycles, so a
// connect can take up to about 2 s longer while other connections are idle. Neither
// blocks the event loop, and a dead or silent broker never holds up another client.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/core/event_loop.h"
#include "berth/core/result.h"
#include "berth/core/worker_pool.h"
#include "berth/transports/mtp.h"

namespace berth::transports {

enum class MqttVersion { kV311, kV5 };
enum class MqttTransport { kTcp, kTls };

// Device.MQTT.Client.{i}.Subscription.{i}.
struct MqttSubscriptionConfig {
    std::string topic;  // topic filter, wildcards allowed
    int qos = 1;        // 0..2
    bool enable = true;
};

// TLS settings for TransportProtocol TLS. Files are PEM.
struct MqttTlsConfig {
    std::string caFile;       // trusted CA certificates; with caDir empty too, the system store
    std::string caDir;        // directory of hashed CA certificates (c_rehash)
    std::string certFile;     // client certificate (chain) for mutual TLS; may be empty
    std::string keyFile;      // client private key; empty: the key is in certFile
    std::string keyPassword;  // for an encrypted keyFile
    bool verifyServerName = true;  // the broker certificate must name BrokerAddress
};

struct MqttClientConfig {
    // Device.MQTT.Client.{i}.
    std::string brokerAddress;  // host name or IP address (IPv6 without brackets)
    int brokerPort = 1883;      // 1..65535
    MqttVersion protocolVersion = MqttVersion::kV5;
    MqttTransport transport = MqttTransport::kTcp;
    MqttTlsConfig tls;
    std::chrono::seconds keepAliveTime{60};  // 0: no keep-alive
    std::string clientId;                    // empty: broker-assigned (5.0) / EndpointID (3.1.1)
    std::string username;
    std::string password;
    bool cleanSession = true;  // CleanSession (3.1.1) / CleanStart (5.0)
    std::chrono::seconds connectRetryTime{5};               // m, >= 1 s
    std::uint32_t connectRetryIntervalMultiplier = 2000;    // k, 1000..65535
    std::chrono::seconds connectRetryMaxInterval{30720};    // cap, >= connectRetryTime
    std::vector<MqttSubscriptionConfig> subscriptions;
    // Not in TR-181: how long one connect attempt (TCP, TLS, CONNACK) may take.
    std::chrono::seconds connectTimeout{30};
    // Not in TR-181: records handed to Paho and not yet written (QoS 0) or acknowledged
    // (QoS 1/2). send() fails beyond either bound (the caller queues or drops under its
    // own policy) instead of letting Paho's command queue grow without end.
    std::size_t maxUnsentMessages = 1000;
    std::size_t maxUnsentBytes = 8 * 1024 * 1024;

    // Device.LocalAgent.MTP.{i}.MQTT.
    std::string responseTopicConfigured;  // our reply-to topic when CONNACK gives none
    int publishQos = 1;                   // 0..2, capped by the broker's Maximum QoS
    bool publishRetainResponse = false;
    bool publishRetainNotify = false;

    // Device.LocalAgent.EndpointID, sent as user property usp-endpoint-id (5.0) and the
    // default ClientID for 3.1.1.
    std::string endpointId;
    // Publish endpointId retained on endpointIdTopic once Up (usp-js discovers agents so).
    bool publishEndpointId = false;
    std::string endpointIdTopic = "obuspa/EndpointID";
};

// Checks a configuration without touching the network: address, port, ranges, version
// rules, and that every TLS file exists and loads (the error names the file and carries
// the OpenSSL reason). Errors: kInvalidConfiguration (path = the offending file or field).
Status validateMqttConfig(const MqttClientConfig& config);

// ---- The binding's rules, as pure functions (public for tests and tools) ----

// 3.1.1 reply-to (R-MQTT.24): "<topic>/reply-to=<replyTo with '/' as %2F>".
std::string appendReplyTo(std::string_view topic, std::string_view replyTo);
// Splits a received 3.1.1 topic at its last "/reply-to=" suffix: {base topic, decoded
// reply-to}. nullopt when the topic carries no (non-empty) suffix.
std::optional<std::pair<std::string, std::string>> splitReplyTo(std::string_view topic);
// MQTT topic filter matching ('+', '#', '$'-topics not matched by leading wildcards).
bool mqttTopicMatches(std::string_view filter, std::string_view topic);
// A topic name usable as a PUBLISH destination (non-empty, no wildcards, no NUL).
bool isValidMqttTopicName(std::string_view topic);

// What the broker said in CONNACK (5.0 properties; defaults for 3.1.1).
struct MqttConnack {
    MqttVersion version = MqttVersion::kV5;
    std::string assignedClientId;             // Assigned Client Identifier
    std::string responseInformation;          // Response Information
    std::vector<std::string> subscribeTopics;  // user properties named "subscribe-topic"
    int maximumQos = 2;
    bool retainAvailable = true;
};

// Which filters to subscribe to and which topic to use as our reply-to (R-MQTT.15/16/21):
// enabled configured subscriptions, CONNACK subscribe-topic properties, the Response
// Information topic and ResponseTopicConfigured (3.1.1: "<topic>/#" so suffixed
// topics arrive), each only when not already covered. The reply-to topic is the
// Response Information, else ResponseTopicConfigured, else the first subscribe-topic,
// else the first enabled configured subscription without wildcards.
struct MqttTopicPlan {
    struct Filter {
        std::string filter;
        int qos = 1;
    };
    std::vector<Filter> filters;
    std::string responseTopic;
};
// Errors: kInvalidConfiguration when there is nothing to subscribe to or no topic
// could serve as reply-to.
Result<MqttTopicPlan> planMqttTopics(const MqttClientConfig& config, const MqttConnack& connack);

// ClientID for the next CONNECT (R-MQTT.8/9/11): the configured one, else the one the
// broker assigned earlier, else "" (5.0, broker assigns) or the EndpointID (3.1.1).
std::string chooseMqttClientId(const MqttClientConfig& config, const std::string& assignedEarlier);

// ---- The seam to the MQTT library (Paho in production, a fake in unit tests) ----

struct MqttMessage {
    std::string topic;
    std::string payload;
    int qos = 0;
    bool retain = false;
    std::string responseTopic;  // 5.0 Response Topic property
    std::string contentType;    // 5.0 Content Type property
    std::vector<std::pair<std::string, std::string>> userProperties;
};

// Events from one connection, delivered on the loop thread.
class MqttConnectionEvents {
public:
    virtual void onConnected(const MqttConnack& connack) = 0;
    virtual void onConnectFailed(const std::string& reason) = 0;
    virtual void onConnectionLost(const std::string& reason) = 0;
    virtual void onSubscribeResult(const std::string& filter, bool ok, const std::string& detail) = 0;
    virtual void onMessage(MqttMessage message) = 0;
    virtual void onPublishFailed(const std::string& topic, const std::string& detail) = 0;

protected:
    ~MqttConnectionEvents() = default;
};

// One broker connection. Loop thread only. Results arrive as events; no event arrives
// after disconnect() or destruction. Destruction does not wait on the network, except
// for at most 100 ms while a DISCONNECT asked for just before is still going out.
class MqttConnection {
public:
    virtual ~MqttConnection() = default;
    virtual Status connect() = 0;
    virtual Status subscribe(const std::string& filter, int qos) = 0;
    virtual Status unsubscribe(const std::string& filter) = 0;
    virtual Status publish(const MqttMessage& message) = 0;
    // Sends DISCONNECT; `done` runs on the loop thread once it went out or failed.
    virtual void disconnect(std::function<void()> done) = 0;
    // True when the connection switches Nagle off on its own socket; otherwise the
    // client does it with a scan of the process's sockets (tcp_nodelay.h).
    virtual bool setsTcpNoDelay() const { return false; }
};

// Makes a connection for the given config and ClientID; events go to `events`, which
// outlives the connection. Errors: kInvalidConfiguration (e.g. an unusable URI).
using MqttConnectionFactory = std::function<Result<std::unique_ptr<MqttConnection>>(
    EventLoop& loop, const MqttClientConfig& config, const std::string& clientId,
    MqttConnectionEvents& events)>;

// The production factory (Eclipse Paho MQTT C++). The TLS failure diagnosis runs on
// `pool` (borrowed; it must outlive every connection the factory makes).
MqttConnectionFactory pahoMqttConnectionFactory(WorkerPool& pool);

// The MQTT library that carries a process's connections.
//   kPaho:      Eclipse Paho C/C++ (async client). Its own threads (shared by all
//               clients in the process) do the network work and post() into the loop.
//   kMosquitto: libmosquitto, driven from the EventLoop: the socket is watched with
//               the loop's epoll and read/written with mosquitto_loop_read/_write,
//               keep-alive from a loop timer. No threads of its own; the connect is
//               non-blocking. What scales to thousands of clients in one process
//               (tools/berth-sim). Built when BERTH_WITH_MOSQUITTO is on.
enum class MqttLibrary { kPaho, kMosquitto };
// "paho" / "mosquitto".
std::string_view mqttLibraryName(MqttLibrary library);
// Parses "paho" or "mosquitto". Errors: kInvalidArguments naming the accepted values.
Result<MqttLibrary> parseMqttLibrary(std::string_view name);
// Whether this build carries that library.
bool mqttLibraryAvailable(MqttLibrary library);
// The factory of `library` (pool as for pahoMqttConnectionFactory). Errors:
// kInvalidConfiguration when this build does not carry that library.
Result<MqttConnectionFactory> mqttConnectionFactory(MqttLibrary library, WorkerPool& pool);
#ifdef BERTH_WITH_MOSQUITTO
// The libmosquitto factory. Loop thread only, like everything here: every call into
// libmosquitto for a connection happens on the thread that runs `loop`. Host names are
// resolved on `pool` before the connect (the connect itself is non-blocking), and a
// failed TLS connect is diagnosed there, as with Paho.
MqttConnectionFactory mosquittoMqttConnectionFactory(WorkerPool& pool);
#endif

// ---- The client ----

enum class MqttSubscriptionStatus { kSubscribing, kSubscribed, kUnsubscribing, kError };

struct MqttClientFigures {
    MtpStatus status = MtpStatus::kDown;
    std::string statusDetail;             // why, for people (last error, "retry in 5.2 s")
    std::string responseTopicDiscovered;  // our reply-to topic while connected
    std::string assignedClientId;         // from CONNACK; the agent persists it into ClientID
    std::string clientIdInUse;
    struct Subscription {
        std::string filter;
        int qos = 1;
        MqttSubscriptionStatus status = MqttSubscriptionStatus::kSubscribing;
    };
    std::vector<Subscription> subscriptions;  // of the current connection
    unsigned retryCount = 0;                  // consecutive failed connects since last Up
    std::chrono::milliseconds nextRetryDelay{0};  // armed retry wait; 0 when none pending
    std::uint64_t connectAttempts = 0;
    std::uint64_t recordsSent = 0;
    std::uint64_t recordsReceived = 0;
    std::uint64_t recordsDropped = 0;  // inbound with an unaccepted content type
    std::uint64_t publishFailures = 0;
};

class MqttClient final : public Mtp {
public:
    // Validates the config (see validateMqttConfig) and makes an idle client. The loop is
    // borrowed and must outlive the client. factory defaults to Paho on a worker pool of
    // the client's own (one thread at most, none while idle); pass
    // pahoMqttConnectionFactory(pool) to share a pool between clients.
    static Result<std::unique_ptr<MqttClient>> create(EventLoop& loop, MqttClientConfig config,
                                                      MqttConnectionFactory factory = {});
    ~MqttClient() override;
    MqttClient(const MqttClient&) = delete;
    MqttClient& operator=(const MqttClient&) = delete;

    std::string_view protocol() const override { return "MQTT"; }
    // Connects in the background and keeps reconnecting until stop(). Status callbacks:
    // Connecting (attempt under way or waiting), Up (detail = our reply-to topic, also
    // agentAddress(); send the MQTTConnectRecord now), Error (attempt failed; detail says
    // why; a retry is scheduled unless there is no topic to subscribe to), Down (stopped).
    Status start() override;
    // Sends DISCONNECT (without waiting) and stops retrying. No callbacks afterwards.
    void stop() override;
    // Publishes to record.destination with our reply-to (5.0 Response Topic + Content
    // Type usp.msg; 3.1.1 "/reply-to=" suffix). QoS PublishQoS, retain per record.kind.
    // Errors: kMessageFailed when not Up, the destination is not a topic name, or the
    // library refuses (e.g. too many messages in flight).
    Status send(OutboundRecord record) override;
    MtpStatus status() const override;
    std::string agentAddress() const override;

    // Replaces the configuration at run time. Connection settings changed: the current
    // connection is closed and a new one opened at once (retry count reset). Only
    // subscriptions or agent-side values changed: SUBSCRIBE/UNSUBSCRIBE in place.
    // Errors: as validateMqttConfig; the old configuration then stays in force.
    Status applyConfig(MqttClientConfig config);
    const MqttClientConfig& config() const;
    MqttClientFigures figures() const;

    // Tests: a fixed seed makes the retry jitter reproducible.
    void seedRetryJitter(std::uint64_t seed);

private:
    class Impl;
    friend class Impl;
    MqttClient() = default;
    std::unique_ptr<Impl> impl_;
};

}  // namespace berth::transports
