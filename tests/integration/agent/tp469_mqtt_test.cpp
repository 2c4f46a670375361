// TP-469 section 11 (MQTT) cases that can run against mosquitto, each named after its
// case. What mosquitto cannot do (send CONNACK user properties, Server Keep Alive, a
// DISCONNECT on request) is left out; see the report of the issue.
#include <catch2/catch.hpp>
#include <sys/stat.h>

#include "berth/agent/codec.h"
#include "berth/core/process.h"
#include "berth/testing/agent_harness.h"
#include "berth/testing/test_certs.h"

using namespace berth::agenttest;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const std::string kAgentTopic = "usp/agent/os::012345-0001";

// mosquitto_sub printing one "MSG|..." line per message in `format`; returns once its
// SUBACK arrived, so nothing published afterwards is missed.
class Sub {
public:
    Sub(const AgentFixture& f, const std::string& name, std::vector<std::string> args, const std::string& format)
        : out_(f.tmp / (name + ".out")) {
        std::vector<std::string> argv{"stdbuf", "-oL", "mosquitto_sub", "-d", "-h", "127.0.0.1", "-p",
                                      std::to_string(f.broker->port()), "-F", "MSG|" + format};
        argv.insert(argv.end(), args.begin(), args.end());
        proc_ = berth::testing::ProcessGuard::start(argv, out_.string());
        REQUIRE(berth::testing::waitUntil([&] { return output().find("received SUBACK") != std::string::npos; }));
    }
    std::string output() const { return berth::testing::readFile(out_); }
    std::vector<std::string> messages() const {
        std::vector<std::string> lines;
        std::string all = output();
        for (std::size_t at = all.find("MSG|"); at != std::string::npos; at = all.find("MSG|", at + 1)) {
            auto end = all.find('\n', at);
            lines.push_back(all.substr(at + 4, end == std::string::npos ? std::string::npos : end - at - 4));
        }
        return lines;
    }
    bool waitMessages(std::size_t n, std::chrono::milliseconds timeout = 10s) const {
        return berth::testing::waitUntil([&] { return messages().size() >= n; }, timeout);
    }

private:
    fs::path out_;
    std::unique_ptr<berth::testing::ProcessGuard> proc_;
};

std::string unhex(const std::string& hex) {
    std::string out;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return out;
}

berth::agent::RecordCodec controllerCodec() {
    berth::agent::CodecConfig c;
    c.endpointId = "self::berthctl";
    c.servedRequests = {usp::Request::kNotify};
    return berth::agent::RecordCodec(c);
}

std::size_t count(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

// The ClientID berthd used in its first CONNECT, from the broker's log.
std::string connectedClientId(const AgentFixture& f) {
    auto log = f.broker->log();
    const std::string marker = " as auto-";
    auto at = log.find(marker);
    REQUIRE(at != std::string::npos);
    auto start = at + 4;
    return log.substr(start, log.find(' ', start) - start);
}

std::string clientIdOf(AgentFixture& f) {
    auto r = f.ctl({"get", "Device.MQTT.Client.1.ClientID"});
    REQUIRE(r.exitCode == 0);
    auto id = paramValue(r.json, "Device.MQTT.Client.1.ClientID");
    REQUIRE(id);
    return *id;
}

}  // namespace

TEST_CASE("TP-469 11.1: Support of Required MQTT Profiles", "[agent][tp469]") {
    AgentFixture f;
    auto r = f.ctl({"gsdm", "Device.MQTT.", "Device.LocalAgent."});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    std::set<std::string> supported;
    for (const auto& ro : r.json["get_supported_dm_resp"]["req_obj_results"])
        for (const auto& so : ro["supported_objs"])
            for (const auto& p : so["supported_params"])
                supported.insert(so["supported_obj_path"].get<std::string>() + p["param_name"].get<std::string>());
    // MQTTClientCon:1, MQTTClientSubscribe:1, MQTTAgent:1, and MQTTController:2 (TR-181
    // 2.19 replaced Controller.{i}.MTP.{i}.MQTT.Reference by AgentMTPReference).
    for (const char* p : {"Device.MQTT.ClientNumberOfEntries", "Device.MQTT.Capabilities.ProtocolVersionsSupported",
                          "Device.MQTT.Capabilities.TransportProtocolSupported",
                          "Device.MQTT.Capabilities.MaxNumberOfClientSubscriptions", "Device.MQTT.Client.{i}.Enable",
                          "Device.MQTT.Client.{i}.Status", "Device.MQTT.Client.{i}.BrokerAddress",
                          "Device.MQTT.Client.{i}.BrokerPort", "Device.MQTT.Client.{i}.TransportProtocol",
                          "Device.MQTT.Client.{i}.ProtocolVersion", "Device.MQTT.Client.{i}.ClientID",
                          "Device.MQTT.Client.{i}.Username", "Device.MQTT.Client.{i}.Password",
                          "Device.MQTT.Client.{i}.KeepAliveTime", "Device.MQTT.Client.{i}.ConnectRetryTime",
                          "Device.MQTT.Client.{i}.ConnectRetryIntervalMultiplier",
                          "Device.MQTT.Client.{i}.ConnectRetryMaxInterval",
                          "Device.MQTT.Client.{i}.SubscriptionNumberOfEntries",
                          "Device.MQTT.Client.{i}.Subscription.{i}.Enable", "Device.MQTT.Client.{i}.Subscription.{i}.Topic",
                          "Device.MQTT.Client.{i}.Subscription.{i}.QoS", "Device.MQTT.Client.{i}.Subscription.{i}.Status",
                          "Device.LocalAgent.MTP.{i}.MQTT.Reference", "Device.LocalAgent.MTP.{i}.MQTT.ResponseTopicConfigured",
                          "Device.LocalAgent.MTP.{i}.MQTT.ResponseTopicDiscovered", "Device.LocalAgent.MTP.{i}.MQTT.PublishQoS",
                          "Device.LocalAgent.Controller.{i}.MTP.{i}.MQTT.AgentMTPReference",
                          "Device.LocalAgent.Controller.{i}.MTP.{i}.MQTT.Topic"}) {
        INFO(p);
        CHECK(supported.count(p) == 1);
    }
}

TEST_CASE("TP-469 11.4: MQTT 5.0 ClientID", "[agent][tp469]") {
    // The example configuration leaves ClientID empty: CONNECT carries an empty ClientID
    // and the broker-assigned one is what Get returns.
    AgentFixture f;
    // mosquitto names the clients it assigns an identifier to "auto-...".
    auto assigned = connectedClientId(f);
    INFO(f.broker->log());
    CHECK(f.broker->log().find(" as " + assigned + " (p5") != std::string::npos);
    // R-MQTT.9: the assigned identifier is kept in ClientID.
    CHECK(clientIdOf(f) == assigned);
}

TEST_CASE("TP-469 11.5: MQTT ClientID Persistence", "[agent][tp469]") {
    AgentFixture f;
    auto id = connectedClientId(f);
    REQUIRE(f.agent->stop().success());
    f.agent->start();
    REQUIRE(f.waitAnswering());
    // The next CONNECT reuses the same ClientID (R-MQTT.9/11).
    auto log = f.broker->log();
    INFO(log);
    CHECK(count(log, " as " + id + " (") >= 2);
}

TEST_CASE("TP-469 11.9: MQTT New Subscription", "[agent][tp469]") {
    AgentFixture f;
    auto add = f.ctl({"add", "Device.MQTT.Client.1.Subscription.", "Topic=newTopic-11-9", "QoS=1", "Enable=true"});
    INFO(add.describe());
    REQUIRE(add.exitCode == 0);
    std::string sub = add.json["add_resp"]["created_obj_results"][0]["oper_status"]["oper_success"]["instantiated_path"];
    // A GetResp comes back for a Get sent to the new topic.
    REQUIRE(f.waitAnswering(10s, {"--agent-topic", "newTopic-11-9"}));
    INFO(f.broker->log());
    CHECK(f.broker->log().find("\tnewTopic-11-9 (QoS 1)") != std::string::npos);
    auto disable = f.ctl({"set", sub + "Enable=false"});
    REQUIRE(disable.exitCode == 0);
    // UNSUBSCRIBE: the topic no longer reaches the agent.
    bool unsubscribed = berth::testing::waitUntil([&] {
        return f.ctl({"--agent-topic", "newTopic-11-9", "--timeout", "0.5", "get", "Device.LocalAgent.EndpointID"})
                   .exitCode == 3;
    });
    CHECK(unsubscribed);
    CHECK(f.broker->log().find("Received UNSUBSCRIBE") != std::string::npos);
}

TEST_CASE("TP-469 11.12: MQTT PUBLISH Packet", "[agent][tp469]") {
    SECTION("MQTT 5.0: Response Topic and Content Type usp.msg") {
        AgentFixture f;
        Sub sub(f, "resp", {"-V", "5", "-t", "usp/controller/berthctl"}, "%t|%R|%C|%x");
        REQUIRE(f.ctl({"get", "Device.DeviceInfo."}).exitCode == 0);
        REQUIRE(sub.waitMessages(1));
        auto msg = sub.messages().front();
        CHECK(msg.rfind("usp/controller/berthctl|" + kAgentTopic + "|usp.msg|", 0) == 0);
        auto d = controllerCodec().decode(unhex(msg.substr(msg.rfind('|') + 1)));
        CHECK(d.kind == berth::agent::DecodeKind::kResponse);
        CHECK(d.msg.body().response().has_get_resp());
    }
    SECTION("MQTT 3.1.1: reply-to appended to the topic with '/' as %2F") {
        AgentFixture f([](std::string c) { return setConfigValue(c, "Device.MQTT.Client.1.ProtocolVersion", "3.1.1"); },
                       {"--mqtt-version", "3.1.1"});
        Sub sub(f, "resp", {"-V", "311", "-t", "usp/controller/berthctl/#"}, "%t");
        auto r = f.ctl({"get", "Device.DeviceInfo.ModelName"});
        INFO(r.describe());
        REQUIRE(r.exitCode == 0);
        REQUIRE(sub.waitMessages(1));
        CHECK(sub.messages().front() == "usp/controller/berthctl/reply-to=usp%2Fagent%2Fos::012345-0001");
    }
}

TEST_CASE("TP-469 11.13: MQTT QoS", "[agent][tp469]") {
    AgentFixture f;
    for (const auto& [topic, qos] : {std::pair<std::string, std::string>{"qos0-topic", "0"}, {"qos1-topic", "1"}}) {
        auto add = f.ctl({"add", "Device.MQTT.Client.1.Subscription.", "Topic=" + topic, "QoS=" + qos, "Enable=true"});
        INFO(add.describe());
        REQUIRE(add.exitCode == 0);
    }
    CHECK(f.waitAnswering(10s, {"--agent-topic", "qos0-topic"}));
    CHECK(f.waitAnswering(10s, {"--agent-topic", "qos1-topic"}));
    auto log = f.broker->log();
    CHECK(log.find("\tqos0-topic (QoS 0)") != std::string::npos);
    CHECK(log.find("\tqos1-topic (QoS 1)") != std::string::npos);
}

TEST_CASE("TP-469 11.14: MQTT Reply to Topic", "[agent][tp469]") {
    // The answer goes to the reply-to the controller gave, not to its configured topic.
    SECTION("MQTT 5.0: Response Topic") {
        AgentFixture f;
        auto r = f.ctl({"--topic", "elsewhere/v5", "get", "Device.DeviceInfo.ModelName"});
        INFO(r.describe());
        CHECK(r.exitCode == 0);
        CHECK(paramValue(r.json, "Device.DeviceInfo.ModelName") == "berth demo gateway");
    }
    SECTION("MQTT 3.1.1: the /reply-to= suffix of the topic") {
        AgentFixture f([](std::string c) { return setConfigValue(c, "Device.MQTT.Client.1.ProtocolVersion", "3.1.1"); },
                       {"--mqtt-version", "3.1.1"});
        auto r = f.ctl({"--topic", "elsewhere/v311", "get", "Device.DeviceInfo.ModelName"});
        INFO(r.describe());
        CHECK(r.exitCode == 0);
        CHECK(paramValue(r.json, "Device.DeviceInfo.ModelName") == "berth demo gateway");
    }
}

TEST_CASE("TP-469 11.15: MQTT 5.0 Content Type", "[agent][tp469]") {
    AgentFixture f;
    berth::agent::CodecConfig c;
    c.endpointId = "self::berthctl";
    berth::agent::RecordCodec codec(c);
    for (const std::string type : {"usp.msg", "application/vnd.bbf.usp.msg"}) {
        INFO(type);
        std::string replyTo = "ct-reply/" + std::to_string(type.size());
        Sub sub(f, "ct" + std::to_string(type.size()), {"-V", "5", "-t", replyTo}, "%x");
        usp::Msg msg;
        msg.mutable_header()->set_msg_id("ct-" + type);
        msg.mutable_header()->set_msg_type(usp::Header::GET);
        msg.mutable_body()->mutable_request()->mutable_get()->add_param_paths("Device.DeviceInfo.ModelName");
        auto rec = codec.encodeMsg(msg, "os::012345-0001");
        REQUIRE(rec);
        auto file = f.tmp / ("get-" + std::to_string(type.size()) + ".bin");
        berth::testing::writeFile(file, *rec);
        berth::SpawnOptions o;
        o.argv = {"mosquitto_pub", "-V", "5", "-h", "127.0.0.1", "-p", std::to_string(f.broker->port()), "-t", kAgentTopic,
                  "-D", "publish", "content-type", type, "-D", "publish", "response-topic", replyTo, "-f", file.string()};
        auto pub = berth::runCommand(o, 30s);
        REQUIRE(pub);
        REQUIRE(pub->status.success());
        REQUIRE(sub.waitMessages(1));
        auto d = controllerCodec().decode(unhex(sub.messages().front()));
        CHECK(d.kind == berth::agent::DecodeKind::kResponse);
        CHECK(d.msgId == "ct-" + type);
    }
}

TEST_CASE("TP-469 11.17: MQTT - Use of Connect Record", "[agent][tp469]") {
    AgentFixture f;
    Sub sub(f, "connect", {"-V", "5", "-t", "usp/controller/berthctl"}, "%x");
    REQUIRE(f.agent->stop().success());
    f.agent->start();
    // The DisconnectRecord of the stop comes first (R-MTP.7), then the connect record.
    auto connectSeen = [&] {
        for (const auto& hex : sub.messages())
            if (controllerCodec().decode(unhex(hex)).kind == berth::agent::DecodeKind::kConnect) return true;
        return false;
    };
    CHECK(berth::testing::waitUntil(connectSeen, 30s));
    bool found = false;
    for (const auto& hex : sub.messages()) {
        auto d = controllerCodec().decode(unhex(hex));
        UNSCOPED_INFO("received " << berth::agent::decodeKindName(d.kind) << " "
                                  << berth::agent::recordTypeName(d.recordType) << " from " << d.fromId
                                  << (d.problem ? " problem: " + d.problem->describe() : ""));
        if (d.kind != berth::agent::DecodeKind::kConnect) continue;
        found = true;
        CHECK(d.fromId == "os::012345-0001");
        REQUIRE(d.connect);
        CHECK(d.connect->type == berth::agent::RecordType::kMqttConnect);
        CHECK(d.connect->mqttVersion == usp_record::MQTTConnectRecord::V5);
        CHECK(d.connect->subscribedAddress == kAgentTopic);
    }
    CHECK(found);
}

// ---- 11.2 and 11.3: credentials and TLS towards the broker ---------------------------

namespace {

// A broker with a second listener on `port2` configured by `listenerConfig`, berthd's
// MQTT client pointed at that listener, and berthctl on the plain listener.
struct SecondListener {
    berth::testing::TempDir tmp{"berth-tp469-11"};
    int port2 = berth::testing::freeTcpPort();
    std::unique_ptr<berth::testing::Mosquitto> broker;
    std::unique_ptr<Berthd> agent;

    void start(const std::string& brokerExtra, const std::function<std::string(std::string)>& adjust) {
        ::chmod(tmp.path().c_str(), 0755);
        broker = std::make_unique<berth::testing::Mosquitto>(tmp / "broker", 0, brokerExtra);
        REQUIRE(berth::testing::waitUntil([&] { return berth::testing::tcpPortOpen(port2); }));
        std::string conf = setConfigValue(exampleConfig(broker->port()), "Device.MQTT.Client.1.BrokerPort",
                                          std::to_string(port2));
        agent = std::make_unique<Berthd>(tmp / "agent", adjust(conf));
    }
    CtlResult ctl(std::vector<std::string> args, std::vector<std::string> global = {}) {
        std::vector<std::string> argv{BERTHCTL_BIN, "--mqtt", broker->address(), "--timeout", "2", "--json"};
        argv.insert(argv.end(), global.begin(), global.end());
        argv.insert(argv.end(), args.begin(), args.end());
        return runCtl(argv);
    }
    bool answers(std::vector<std::string> global = {}, std::chrono::milliseconds timeout = 20s) {
        return berth::testing::waitUntil(
            [&] { return ctl({"get", "Device.DeviceInfo.SerialNumber"}, global).exitCode == 0; }, timeout);
    }
};

}  // namespace

TEST_CASE("TP-469 11.2: MQTT session establishment using a CONNECT packet", "[agent][tp469]") {
    SecondListener s;
    berth::testing::writeFile(s.tmp / "passwd", "");
    fs::create_directories(s.tmp / "broker");
    berth::SpawnOptions pwOpts;
    pwOpts.argv = {"mosquitto_passwd", "-b", (s.tmp / "passwd").string(), "operator", "s3cret"};
    auto pw = berth::runCommand(pwOpts, 10s);
    REQUIRE(pw);
    REQUIRE(pw->status.success());
    ::chmod((s.tmp / "passwd").c_str(), 0644);
    // The whole broker requires a user name and password (the later allow_anonymous wins).
    s.start("listener " + std::to_string(s.port2) + " 127.0.0.1\nallow_anonymous false\npassword_file " +
                (s.tmp / "passwd").string() + "\n",
            [](std::string conf) {
                conf = setConfigValue(conf, "Device.MQTT.Client.1.Username", "operator");
                return setConfigValue(conf, "Device.MQTT.Client.1.Password", "s3cret");
            });
    INFO("berthd log:\n" << s.agent->log());
    const std::vector<std::string> creds = {"--username", "operator", "--password", "s3cret"};
    // Anonymous clients are refused: the broker really checks.
    CHECK(s.ctl({"get", "Device.DeviceInfo.SerialNumber"}).exitCode == 4);
    REQUIRE(s.answers(creds));
    // The broker saw the agent authenticate as 'operator' on its listener.
    std::string brokerLog = berth::testing::readFile(s.broker->logFile());
    INFO("broker log:\n" << brokerLog);
    CHECK(brokerLog.find("on port " + std::to_string(s.port2)) != std::string::npos);
    CHECK(brokerLog.find("u'operator'") != std::string::npos);
    // The password is readable by nobody through Get.
    auto pass = s.ctl({"get", "Device.MQTT.Client.1.Password"}, creds);
    CHECK(paramValue(pass.json, "Device.MQTT.Client.1.Password").value_or("?") == "");
}

TEST_CASE("TP-469 11.3: MQTT Use of TLS", "[agent][tp469]") {
    SecondListener s;
    berth::testing::TestCerts certs(s.tmp / "certs");
    // mosquitto drops to its own user: let it read the server key of this throw-away CA.
    ::chmod(certs("server.key").c_str(), 0644);
    ::chmod(certs.dir().c_str(), 0755);
    s.start("listener " + std::to_string(s.port2) + " 127.0.0.1\ncafile " + certs("ca.pem") + "\ncertfile " +
                certs("server.pem") + "\nkeyfile " + certs("server.key") + "\ntls_version tlsv1.2\n",
            [&](std::string conf) {
                conf = setConfigValue(conf, "Device.MQTT.Client.1.TransportProtocol", "TLS");
                return setConfigValue(conf, "Device.MQTT.Client.1.X_BERTH_CAFile", certs("ca.pem"));
            });
    INFO("berthd log:\n" << s.agent->log());
    REQUIRE(s.answers());
    auto got = s.ctl({"get", "Device.MQTT.Client.1.TransportProtocol", "Device.MQTT.Client.1.Status"});
    CHECK(paramValue(got.json, "Device.MQTT.Client.1.TransportProtocol") == "TLS");
    CHECK(paramValue(got.json, "Device.MQTT.Client.1.Status") == "Connected");
    std::string brokerLog = berth::testing::readFile(s.broker->logFile());
    INFO("broker log:\n" << brokerLog);
    // The agent's connection is the one on the TLS-only listener.
    CHECK(brokerLog.find("on port " + std::to_string(s.port2)) != std::string::npos);
}
