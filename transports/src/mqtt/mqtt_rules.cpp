// The MQTT binding's rules as pure functions, kept apart from the client so they can be
// tested without a broker.
#include <algorithm>

#include "berth/transports/mqtt.h"
#include "tls_files.h"

namespace berth::transports {
namespace {

constexpr std::string_view kReplyToMarker = "/reply-to=";

std::vector<std::string_view> splitLevels(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    while (true) {
        auto slash = s.find('/', start);
        if (slash == std::string_view::npos) {
            out.push_back(s.substr(start));
            return out;
        }
        out.push_back(s.substr(start, slash - start));
        start = slash + 1;
    }
}

bool hasWildcard(std::string_view s) { return s.find_first_of("+#") != std::string_view::npos; }

Error badConfig(const std::string& field, const std::string& message) {
    return Error(ErrorCode::kInvalidConfiguration, message, field);
}

}  // namespace

std::string appendReplyTo(std::string_view topic, std::string_view replyTo) {
    std::string out(topic);
    out += kReplyToMarker;
    for (char c : replyTo) {
        if (c == '/')
            out += "%2F";
        else
            out += c;
    }
    return out;
}

std::optional<std::pair<std::string, std::string>> splitReplyTo(std::string_view topic) {
    auto pos = topic.rfind(kReplyToMarker);
    if (pos == std::string_view::npos) return std::nullopt;
    std::string_view encoded = topic.substr(pos + kReplyToMarker.size());
    if (encoded.empty()) return std::nullopt;
    std::string decoded;
    for (std::size_t i = 0; i < encoded.size(); ++i) {
        // Only "/" is encoded by R-MQTT.24; any other '%' is an ordinary character.
        if (encoded[i] == '%' && i + 2 < encoded.size() && encoded[i + 1] == '2' &&
            (encoded[i + 2] == 'F' || encoded[i + 2] == 'f')) {
            decoded += '/';
            i += 2;
        } else {
            decoded += encoded[i];
        }
    }
    return std::make_pair(std::string(topic.substr(0, pos)), std::move(decoded));
}

bool mqttTopicMatches(std::string_view filter, std::string_view topic) {
    if (filter.empty() || topic.empty()) return false;
    // MQTT 4.7.2: '$' topics are not matched by filters starting with a wildcard.
    if (topic.front() == '$' && (filter.front() == '+' || filter.front() == '#')) return false;
    auto f = splitLevels(filter);
    auto t = splitLevels(topic);
    std::size_t i = 0;
    for (; i < f.size(); ++i) {
        if (f[i] == "#") return i == f.size() - 1;  // matches the parent level too
        if (i >= t.size()) return false;
        if (f[i] != "+" && f[i] != t[i]) return false;
    }
    return i == t.size();
}

bool isValidMqttTopicName(std::string_view topic) {
    return !topic.empty() && topic.size() <= 65535 && !hasWildcard(topic) &&
           topic.find('\0') == std::string_view::npos;
}

Result<MqttTopicPlan> planMqttTopics(const MqttClientConfig& config, const MqttConnack& connack) {
    MqttTopicPlan plan;
    const bool v5 = connack.version == MqttVersion::kV5;
    auto covered = [&plan](const std::string& topic) {
        return std::any_of(plan.filters.begin(), plan.filters.end(), [&](const MqttTopicPlan::Filter& f) {
            return f.filter == topic || (!hasWildcard(topic) && mqttTopicMatches(f.filter, topic));
        });
    };
    auto add = [&](const std::string& filter, int qos) {
        if (!filter.empty() && !covered(filter)) plan.filters.push_back({filter, qos});
    };
    for (const auto& s : config.subscriptions) {
        // Configured filters are added even when a wider one covers them: each has its
        // own row (and Status) in the data model.
        if (s.enable && !s.topic.empty() &&
            std::none_of(plan.filters.begin(), plan.filters.end(),
                         [&](const MqttTopicPlan::Filter& f) { return f.filter == s.topic; }))
            plan.filters.push_back({s.topic, s.qos});
    }
    if (v5) {
        for (const auto& t : connack.subscribeTopics) add(t, 1);
        add(connack.responseInformation, 1);
    }

    if (v5) plan.responseTopic = connack.responseInformation;
    if (plan.responseTopic.empty()) plan.responseTopic = config.responseTopicConfigured;
    if (plan.responseTopic.empty() && v5) {
        for (const auto& t : connack.subscribeTopics)
            if (isValidMqttTopicName(t)) {
                plan.responseTopic = t;
                break;
            }
    }
    if (plan.responseTopic.empty()) {
        for (const auto& s : config.subscriptions)
            if (s.enable && isValidMqttTopicName(s.topic)) {
                plan.responseTopic = s.topic;
                break;
            }
    }
    if (!plan.responseTopic.empty()) {
        if (!isValidMqttTopicName(plan.responseTopic))
            return badConfig("ResponseTopicConfigured",
                             "reply-to topic '" + plan.responseTopic + "' is not a valid topic name");
        if (v5) {
            add(plan.responseTopic, 1);
        } else {
            // 3.1.1 peers publish to "<our topic>/reply-to=<theirs>": subscribe to the subtree.
            if (!covered(appendReplyTo(plan.responseTopic, "x"))) plan.filters.push_back({plan.responseTopic + "/#", 1});
        }
    }
    if (plan.filters.empty())
        return badConfig("Subscription", "no topic to subscribe to: no enabled subscription, none from the broker "
                                         "and no ResponseTopicConfigured (R-MQTT.16)");
    if (plan.responseTopic.empty())
        return badConfig("ResponseTopicConfigured",
                         "no topic to use as reply-to: set ResponseTopicConfigured or a subscription "
                         "without wildcards");
    return plan;
}

std::string chooseMqttClientId(const MqttClientConfig& config, const std::string& assignedEarlier) {
    if (!config.clientId.empty()) return config.clientId;
    if (!assignedEarlier.empty()) return assignedEarlier;
    if (config.protocolVersion == MqttVersion::kV5) return {};
    return config.endpointId;
}

Status validateMqttConfig(const MqttClientConfig& c) {
    if (c.brokerAddress.empty()) return badConfig("BrokerAddress", "BrokerAddress is empty");
    if (c.brokerAddress.find_first_of(" /\t") != std::string::npos)
        return badConfig("BrokerAddress", "BrokerAddress '" + c.brokerAddress + "' is not a host name or IP address");
    if (c.brokerPort < 1 || c.brokerPort > 65535)
        return badConfig("BrokerPort", "BrokerPort " + std::to_string(c.brokerPort) + " is outside 1..65535");
    if (c.keepAliveTime.count() < 0 || c.keepAliveTime.count() > 65535)
        return badConfig("KeepAliveTime", "KeepAliveTime must be 0..65535 s");
    if (c.connectRetryTime.count() < 1 || c.connectRetryTime.count() > 65535)
        return badConfig("ConnectRetryTime", "ConnectRetryTime must be 1..65535 s");
    if (c.connectRetryIntervalMultiplier < 1000 || c.connectRetryIntervalMultiplier > 65535)
        return badConfig("ConnectRetryIntervalMultiplier", "ConnectRetryIntervalMultiplier must be 1000..65535");
    if (c.connectRetryMaxInterval < c.connectRetryTime)
        return badConfig("ConnectRetryMaxInterval", "ConnectRetryMaxInterval is shorter than ConnectRetryTime");
    if (c.connectTimeout.count() < 1) return badConfig("ConnectTimeout", "connect timeout must be at least 1 s");
    if (c.publishQos < 0 || c.publishQos > 2) return badConfig("PublishQoS", "PublishQoS must be 0..2");
    for (const auto& s : c.subscriptions) {
        if (s.qos < 0 || s.qos > 2) return badConfig("Subscription.QoS", "QoS of '" + s.topic + "' must be 0..2");
        if (s.enable && s.topic.empty()) return badConfig("Subscription.Topic", "an enabled subscription has no topic");
    }
    if (c.protocolVersion == MqttVersion::kV311 && c.clientId.empty() && c.endpointId.empty())
        return badConfig("ClientID", "MQTT 3.1.1 needs a ClientID or an EndpointID to use as one (R-MQTT.8)");
    if (!c.responseTopicConfigured.empty() && !isValidMqttTopicName(c.responseTopicConfigured))
        return badConfig("ResponseTopicConfigured",
                         "ResponseTopicConfigured '" + c.responseTopicConfigured + "' is not a topic name");
    if (c.publishEndpointId) {
        if (c.endpointId.empty()) return badConfig("EndpointID", "publishing the EndpointID needs an EndpointID");
        if (!isValidMqttTopicName(c.endpointIdTopic))
            return badConfig("EndpointIDTopic", "'" + c.endpointIdTopic + "' is not a topic name");
    }
    if (c.transport == MqttTransport::kTls) BERTH_TRY(mqtt_detail::checkTlsFiles(c.tls));
    return {};
}

}  // namespace berth::transports
