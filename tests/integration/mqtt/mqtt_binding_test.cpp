// The MQTT binding against a real mosquitto: records both ways (5.0 Response Topic,
// 3.1.1 reply-to suffix, clients that send no reply-to), broker restarts, a dead broker
// beside a live one, TLS with good and wrong CAs, and mutual TLS. Every wait is driven
// by the event loop (runUntil) or polls an external process's output (waitUntil).
#include <catch2/catch.hpp>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <fstream>
#include <mutex>

#include "berth/core/fd.h"
#include "berth/core/log.h"
#include "berth/testing/support.h"
#include "berth/transports/mqtt.h"

using namespace berth;
using namespace berth::transports;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

void runOk(std::vector<std::string> argv, const fs::path& cwd = {}) {
    SpawnOptions o;
    o.argv = std::move(argv);
    o.workingDir = cwd.string();
    auto r = runCommand(o, 30s);
    REQUIRE(r);
    INFO(o.argv[0] << " " << o.argv[1] << ": " << r->err);
    REQUIRE(r->status.success());
}

// A CA, a broker certificate for 127.0.0.1, a client certificate, another CA that
// signed nothing the broker uses, and a broker certificate for the wrong name.
struct Certs {
    explicit Certs(const fs::path& dir) : dir(dir) {
        auto newKey = [&](const std::string& key, const std::string& out, const std::string& subj) {
            runOk({"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                   key, "-out", out, "-subj", subj},
                  dir);
        };
        auto selfSigned = [&](const std::string& name, const std::string& subj) {
            runOk({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                   "-days", "2", "-keyout", name + ".key", "-out", name + ".pem", "-subj", subj},
                  dir);
        };
        auto sign = [&](const std::string& name, const std::string& ext) {
            testing::writeFile(dir / (name + ".ext"), ext + "\n");
            runOk({"openssl", "x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                   "-CAcreateserial", "-days", "2", "-out", name + ".pem", "-extfile", name + ".ext"},
                  dir);
        };
        selfSigned("ca", "/CN=berth test CA");
        selfSigned("other-ca", "/CN=some other CA");
        newKey("server.key", "server.csr", "/CN=127.0.0.1");
        sign("server", "subjectAltName=IP:127.0.0.1,DNS:localhost");
        newKey("wrongname.key", "wrongname.csr", "/CN=broker.example");
        sign("wrongname", "subjectAltName=DNS:broker.example");
        newKey("client.key", "client.csr", "/CN=proto::agent-1");
        sign("client", "extendedKeyUsage=clientAuth");
        for (const auto& e : fs::directory_iterator(dir)) ::chmod(e.path().c_str(), 0644);
    }
    std::string operator()(const std::string& name) const { return (dir / name).string(); }
    fs::path dir;
};

// mosquitto on loopback: a plain listener always, TLS / mutual TLS / wrong-name TLS
// listeners when certificates are given. Runs as user mosquitto, so its files must be
// readable (and its log writable) by that user.
class Broker {
public:
    explicit Broker(const fs::path& dir, const Certs* certs = nullptr)
        : dir_(dir), plain_(testing::freeTcpPort()) {
        ::chmod(dir.c_str(), 0755);
        std::string conf = "persistence false\nallow_anonymous true\nlog_dest file " + (dir / "mosquitto.log").string() +
                           "\nlog_type all\nlistener " + std::to_string(plain_) + " 127.0.0.1\n";
        if (certs) {
            tls_ = testing::freeTcpPort();
            mtls_ = testing::freeTcpPort();
            wrongName_ = testing::freeTcpPort();
            auto tlsListener = [&](int port, const std::string& cert, bool requireClient) {
                return "listener " + std::to_string(port) + " 127.0.0.1\ncafile " + (*certs)("ca.pem") +
                       "\ncertfile " + (*certs)(cert + ".pem") + "\nkeyfile " + (*certs)(cert + ".key") +
                       (requireClient ? "\nrequire_certificate true\n" : "\n");
            };
            conf += tlsListener(tls_, "server", false) + tlsListener(mtls_, "server", true) +
                    tlsListener(wrongName_, "wrongname", false);
        }
        conf_ = dir / "mosquitto.conf";
        testing::writeFile(conf_, conf);
        testing::writeFile(dir / "mosquitto.log", "");
        if (passwd* pw = ::getpwnam("mosquitto")) {
            (void)!::chown((dir / "mosquitto.log").c_str(), pw->pw_uid, pw->pw_gid);
        }
        start();
    }
    void start() {
        proc_ = testing::ProcessGuard::start({"mosquitto", "-c", conf_.string()}, (dir_ / "mosquitto.out").string());
        for (int port : {plain_, tls_, mtls_, wrongName_})
            if (port != 0) REQUIRE(testing::waitUntil([&] { return testing::tcpPortOpen(port); }, 10s));
    }
    void stop() {
        proc_->stop();
        proc_.reset();
    }
    void kill9() {
        proc_->kill9();
        proc_.reset();
    }
    // SIGSTOP / SIGCONT: the broker keeps its sockets but answers nothing meanwhile.
    void pause() { REQUIRE(::kill(proc_->pid(), SIGSTOP) == 0); }
    void resume() { REQUIRE(::kill(proc_->pid(), SIGCONT) == 0); }
    int plain() const { return plain_; }
    int tls() const { return tls_; }
    int mtls() const { return mtls_; }
    int wrongName() const { return wrongName_; }

private:
    fs::path dir_;
    fs::path conf_;
    int plain_;
    int tls_ = 0;
    int mtls_ = 0;
    int wrongName_ = 0;
    std::unique_ptr<testing::ProcessGuard> proc_;
};

// The library the running test case's clients use (set by its fixture).
MqttConnectionFactory currentFactory;

// One MqttClient with what it received and reported.
struct Peer {
    std::unique_ptr<MqttClient> client;
    std::vector<InboundRecord> inbound;
    std::vector<std::pair<MtpStatus, std::string>> statuses;

    Peer(EventLoop& loop, MqttClientConfig config) {
        REQUIRE(currentFactory);
        auto c = MqttClient::create(loop, std::move(config), currentFactory);
        REQUIRE(c);
        client = std::move(*c);
        client->onRecord([this](InboundRecord r) { inbound.push_back(std::move(r)); });
        client->onStatus([this](MtpStatus s, const std::string& d) { statuses.emplace_back(s, d); });
        REQUIRE(client->start());
    }
    bool up() const { return client->status() == MtpStatus::kUp; }
    std::string lastDetail() const { return statuses.empty() ? "" : statuses.back().second; }
};

MqttClientConfig config(int port, const std::string& myTopic, const std::string& endpointId,
                        MqttVersion version = MqttVersion::kV5) {
    MqttClientConfig c;
    c.brokerAddress = "127.0.0.1";
    c.brokerPort = port;
    c.protocolVersion = version;
    c.endpointId = endpointId;
    c.responseTopicConfigured = myTopic;
    c.connectRetryTime = 1s;
    c.connectRetryIntervalMultiplier = 2000;
    c.connectRetryMaxInterval = 30s;
    c.connectTimeout = 5s;
    return c;
}

// Controller -> agent and back: the agent answers on the reply-to it was given.
void exchange(EventLoop& loop, Peer& agent, Peer& controller, const std::string& agentTopic,
              const std::string& controllerTopic, const std::string& tag) {
    auto agentBefore = agent.inbound.size();
    auto ctrlBefore = controller.inbound.size();
    REQUIRE(controller.client->send({"request " + tag, agentTopic, RecordKind::kOther}));
    REQUIRE(testing::runUntil(loop, [&] { return agent.inbound.size() > agentBefore; }, 5s));
    const auto& req = agent.inbound.back();
    CHECK(req.payload == "request " + tag);
    CHECK(req.replyTo == controllerTopic);
    REQUIRE(agent.client->send({"response " + tag, req.replyTo, RecordKind::kResponse}));
    REQUIRE(testing::runUntil(loop, [&] { return controller.inbound.size() > ctrlBefore; }, 5s));
    CHECK(controller.inbound.back().payload == "response " + tag);
    CHECK(controller.inbound.back().replyTo == agentTopic);
}

// Waits for mosquitto_sub's debug output to show its SUBACK, so nothing is published
// before it listens.
std::unique_ptr<testing::ProcessGuard> startSub(const fs::path& out, std::vector<std::string> args) {
    // Line-buffered, or the SUBACK line sits in stdio's buffer.
    std::vector<std::string> argv{"stdbuf", "-oL", "mosquitto_sub", "-d"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto p = testing::ProcessGuard::start(argv, out.string());
    REQUIRE(testing::waitUntil([&] { return testing::readFile(out).find("received SUBACK") != std::string::npos; }));
    return p;
}

struct LogCapture {
    LogCapture() {
        log::setTestSink(
            [](log::Level, std::string_view tag, std::string_view msg, void* ctx) {
                auto* self = static_cast<LogCapture*>(ctx);
                std::lock_guard<std::mutex> lock(self->mu);
                self->lines.push_back(std::string(tag) + ": " + std::string(msg));
            },
            this);
    }
    ~LogCapture() { log::setTestSink(nullptr, nullptr); }
    bool contains(const std::string& a, const std::string& b = {}) {
        std::lock_guard<std::mutex> lock(mu);
        for (const auto& l : lines)
            if (l.find(a) != std::string::npos && l.find(b) != std::string::npos) return true;
        return false;
    }
    std::mutex mu;
    std::vector<std::string> lines;
};

// Every test runs once per MQTT library: "<name> - Paho" and "<name> - Mosquitto".
struct Paho {
    static constexpr MqttLibrary kLibrary = MqttLibrary::kPaho;
};
struct Mosquitto {
    static constexpr MqttLibrary kLibrary = MqttLibrary::kMosquitto;
};

template <typename Library>
struct Fixture {
    Fixture() {
        auto f = mqttConnectionFactory(Library::kLibrary, pool);
        REQUIRE(f);
        currentFactory = std::move(*f);
    }
    ~Fixture() { currentFactory = nullptr; }
    SystemClock clock;
    EventLoop loop{clock};
    WorkerPool pool{loop, 2};
    testing::TempDir dir{"berth-mqtt"};
};

}  // namespace

#ifdef BERTH_WITH_MOSQUITTO
#define MQTT_LIBRARIES Paho, Mosquitto
#else
#define MQTT_LIBRARIES Paho
#endif
// The fixture's members under their plain names inside a template test case.
#define FIXTURE_MEMBERS                      \
    [[maybe_unused]] auto& loop = this->loop; \
    [[maybe_unused]] auto& dir = this->dir

TEMPLATE_TEST_CASE_METHOD(Fixture, "MQTT 5 agent and controller exchange records using the Response Topic", "[mqtt][integration]", MQTT_LIBRARIES) {
    FIXTURE_MEMBERS;
    Broker broker(dir.path());
    Peer agent(loop, config(broker.plain(), "usp/agent", "proto::agent-1"));
    Peer controller(loop, config(broker.plain(), "usp/controller", "proto::controller"));
    REQUIRE(testing::runUntil(loop, [&] { return agent.up() && controller.up(); }));
    CHECK(agent.client->agentAddress() == "usp/agent");
    CHECK(agent.statuses.back() == std::make_pair(MtpStatus::kUp, std::string("usp/agent")));
    exchange(loop, agent, controller, "usp/agent", "usp/controller", "1");
    exchange(loop, agent, controller, "usp/agent", "usp/controller", "2");
    // No ClientID configured: mosquitto assigned one and the binding kept it.
    CHECK_THAT(agent.client->figures().assignedClientId, Catch::StartsWith("auto-"));
    CHECK(agent.client->figures().responseTopicDiscovered == "usp/agent");
}

TEMPLATE_TEST_CASE_METHOD(Fixture, "MQTT 3.1.1 agent and controller exchange records using the reply-to suffix", "[mqtt][integration]", MQTT_LIBRARIES) {
    FIXTURE_MEMBERS;
    Broker broker(dir.path());
    auto sub = startSub(dir / "sub.out", {"-h", "127.0.0.1", "-p", std::to_string(broker.plain()), "-V", "mqttv311",
                                          "-t", "usp/controller/#", "-v"});
    Peer agent(loop, config(broker.plain(), "usp/agent/1", "proto::agent-1", MqttVersion::kV311));
    Peer controller(loop, config(broker.plain(), "usp/controller", "proto::controller", MqttVersion::kV311));
    REQUIRE(testing::runUntil(loop, [&] { return agent.up() && controller.up(); }));
    CHECK(agent.client->figures().clientIdInUse == "proto::agent-1");  // R-MQTT.8
    exchange(loop, agent, controller, "usp/agent/1", "usp/controller", "1");
    // On the wire, the agent's response went to the controller's topic with our suffix.
    REQUIRE(testing::waitUntil([&] {
        return testing::readFile(dir / "sub.out").find("usp/controller/reply-to=usp%2Fagent%2F1 response 1") !=
               std::string::npos;
    }));
}

TEMPLATE_TEST_CASE_METHOD(Fixture, "Records from clients without a reply-to arrive with an empty replyTo, both content types "
                          "are accepted, ours is usp.msg", "[mqtt][integration]", MQTT_LIBRARIES) {
    FIXTURE_MEMBERS;
    Broker broker(dir.path());
    auto sub = startSub(dir / "sub.out", {"-h", "127.0.0.1", "-p", std::to_string(broker.plain()), "-V", "mqttv5",
                                          "-t", "usp/ctrl5", "-F", "WIRE %t|%C|%R|%p"});
    Peer agent(loop, config(broker.plain(), "usp/agent", "proto::agent-1"));
    REQUIRE(testing::runUntil(loop, [&] { return agent.up(); }));
    auto port = std::to_string(broker.plain());
    // usp-js style: MQTT 3.1.1, no reply-to anywhere.
    runOk({"mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-V", "mqttv311", "-t", "usp/agent", "-m", "from usp-js"});
    REQUIRE(testing::runUntil(loop, [&] { return agent.inbound.size() == 1; }, 5s));
    CHECK(agent.inbound[0].payload == "from usp-js");
    CHECK(agent.inbound[0].replyTo.empty());
    // MQTT 5 with the older content type.
    runOk({"mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-V", "mqttv5", "-t", "usp/agent", "-m", "old type", "-D",
           "publish", "content-type", "application/vnd.bbf.usp.msg", "-D", "publish", "response-topic", "usp/ctrl5"});
    REQUIRE(testing::runUntil(loop, [&] { return agent.inbound.size() == 2; }, 5s));
    CHECK(agent.inbound[1].replyTo == "usp/ctrl5");
    REQUIRE(agent.client->send({"answer", agent.inbound[1].replyTo, RecordKind::kResponse}));
    REQUIRE(testing::waitUntil(
        [&] { return testing::readFile(dir / "sub.out").find("WIRE usp/ctrl5|usp.msg|usp/agent|answer") != std::string::npos; }));
}

TEMPLATE_TEST_CASE_METHOD(Fixture, "The EndpointID is published retained on obuspa/EndpointID", "[mqtt][integration]", MQTT_LIBRARIES) {
    FIXTURE_MEMBERS;
    Broker broker(dir.path());
    auto cfg = config(broker.plain(), "usp/agent", "proto::agent-1");
    cfg.publishEndpointId = true;
    Peer agent(loop, cfg);
    REQUIRE(testing::runUntil(loop, [&] { return agent.up(); }));
    // A later subscriber still gets it: it was retained.
    SpawnOptions o;
    o.argv = {"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(broker.plain()), "-t", "obuspa/EndpointID",
              "-C", "1", "-W", "5"};
    auto r = runCommand(o, 10s);
    REQUIRE(r);
    CHECK(r->out == "proto::agent-1\n");
}

TEMPLATE_TEST_CASE_METHOD(Fixture, "After a broker restart the agent reconnects within ConnectRetryTime*k and exchanges again", "[mqtt][integration]", MQTT_LIBRARIES) {
    FIXTURE_MEMBERS;
    Broker broker(dir.path());
    Peer agent(loop, config(broker.plain(), "usp/agent", "proto::agent-1"));
    Peer controller(loop, config(broker.plain(), "usp/controller", "proto::controller"));
    REQUIRE(testing::runUntil(loop, [&] { return agent.up() && controller.up(); }));
    exchange(loop, agent, controller, "usp/agent", "usp/controller", "before");

    for (int round = 0; round < 2; ++round) {
        broker.stop();
        REQUIRE(testing::runUntil(loop, [&] { return !agent.up(); }, 5s));
        auto lost = std::chrono::steady_clock::now();
        CHECK(agent.client->figures().retryCount == 1);  // reset by the previous success
        auto attempts = agent.client->figures().connectAttempts;
        broker.start();
        // ConnectRetryTime 1 s, multiplier 2.0: the first retry starts within 2 s of the loss...
        REQUIRE(testing::runUntil(loop, [&] { return agent.client->figures().connectAttempts > attempts; }, 5s));
        auto retried = std::chrono::steady_clock::now() - lost;
        INFO("retried after " << std::chrono::duration_cast<std::chrono::milliseconds>(retried).count() << " ms");
        CHECK(retried >= 900ms);
        CHECK(retried < 2200ms);
        // ...and succeeds. Paho's shared receive thread polls in 1 s cycles, which can add
        // up to about 2 s to a connect while other connections are idle.
        REQUIRE(testing::runUntil(loop, [&] { return agent.up() && controller.up(); }, 10s));
        auto took = std::chrono::steady_clock::now() - lost;
        INFO("back up after " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
        CHECK(took < 4500ms);
        exchange(loop, agent, controller, "usp/agent", "usp/controller", "after " + std::to_string(round));
    }
}

TEMPLATE_TEST_CASE_METHOD(Fixture, "A broker killed with SIGKILL mid-session is noticed and reconnected to once it is back",
                          "[mqtt][integration]", MQTT_LIBRARIES) {
    FIXTURE_MEMBERS;
    Broker broker(dir.path());
    Peer agent(loop, config(broker.plain(), "usp/agent", "proto::agent-1"));
    Peer controller(loop, config(broker.plain(), "usp/controller", "proto::controller"));
    REQUIRE(testing::runUntil(loop, [&] { return agent.up() && controller.up(); }));
    exchange(loop, agent, controller, "usp/agent", "usp/controller", "before");
    broker.kill9();
    REQUIRE(testing::runUntil(loop, [&] { return !agent.up() && !controller.up(); }, 5s));
    CHECK_FALSE(agent.client->send({"lost", "usp/controller", RecordKind::kOther}));
    broker.start();
    REQUIRE(testing::runUntil(loop, [&] { return agent.up() && controller.up(); }, 10s));
    exchange(loop, agent, controller, "usp/agent", "usp/controller", "after");
}

TEMPLATE_TEST_CASE_METHOD(Fixture, "A broker that stops answering is given up after the keep-alive and reconnected to "
                          "when it answers again",
                          "[mqtt][integration]", MQTT_LIBRARIES) {
    FIXTURE_MEMBERS;
    Broker broker(dir.path());
    auto cfg = config(broker.plain(), "usp/agent", "proto::agent-1");
    cfg.keepAliveTime = 5s;
    cfg.connectTimeout = 3s;
    Peer agent(loop, cfg);
    REQUIRE(testing::runUntil(loop, [&] { return agent.up(); }));
    broker.pause();
    const auto paused = std::chrono::steady_clock::now();
    // No PINGRESP: the client gives the connection up within 1.25 + 1 keep-alive
    // periods, plus a second of the clock's rounding.
    REQUIRE(testing::runUntil(loop, [&] { return !agent.up(); }, 15s));
    const auto noticed = std::chrono::steady_clock::now() - paused;
    INFO("noticed after " << std::chrono::duration_cast<std::chrono::milliseconds>(noticed).count() << " ms");
    CHECK(noticed >= 4s);
    CHECK(noticed < 14s);
    broker.resume();
    REQUIRE(testing::runUntil(loop, [&] { return agent.up(); }, 15s));
    Peer controller(loop, config(broker.plain(), "usp/controller", "proto::controller"));
    REQUIRE(testing::runUntil(loop, [&] { return controller.up(); }));
    exchange(loop, agent, controller, "usp/agent", "usp/controller", "after");
}

TEMPLATE_TEST_CASE_METHOD(Fixture, "A broker given by host name is resolved and TLS checks its certificate against that name",
                          "[mqtt][integration]", MQTT_LIBRARIES) {
    FIXTURE_MEMBERS;
    Certs certs(dir.path());
    Broker broker(dir.path(), &certs);
    auto cfg = config(broker.tls(), "usp/agent", "proto::agent-1");
    cfg.brokerAddress = "localhost";  // the broker certificate names DNS:localhost and IP:127.0.0.1
    cfg.transport = MqttTransport::kTls;
    cfg.tls.caFile = certs("ca.pem");
    Peer agent(loop, cfg);
    Peer controller(loop, config(broker.plain(), "usp/controller", "proto::controller"));
    REQUIRE(testing::runUntil(loop, [&] { return agent.up() && controller.up(); }, 10s));
    exchange(loop, agent, controller, "usp/agent", "usp/controller", "by name");
}

#ifdef BERTH_WITH_MOSQUITTO
namespace {
long threadsOfThisProcess() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("Threads:", 0) == 0) return std::stol(line.substr(8));
    return -1;
}
long openFiles() {
    long n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
    return n;
}
}  // namespace

TEST_CASE_METHOD(Fixture<Mosquitto>, "The libmosquitto binding carries twenty connections on the loop thread without "
                                     "starting a thread, one descriptor each",
                 "[mqtt][integration]") {
    Broker broker(dir.path());
    const long before = threadsOfThisProcess();
    const long filesBefore = openFiles();
    std::vector<std::unique_ptr<Peer>> peers;
    for (int i = 0; i < 20; ++i)
        peers.push_back(std::make_unique<Peer>(
            loop, config(broker.plain(), "usp/agent/" + std::to_string(i), "proto::agent-" + std::to_string(i))));
    Peer controller(loop, config(broker.plain(), "usp/controller", "proto::controller"));
    REQUIRE(testing::runUntil(loop, [&] {
        return controller.up() && std::all_of(peers.begin(), peers.end(), [](const auto& p) { return p->up(); });
    }));
    for (int i = 0; i < 20; i += 7)
        exchange(loop, *peers[static_cast<std::size_t>(i)], controller, "usp/agent/" + std::to_string(i),
                 "usp/controller", std::to_string(i));
    CHECK(threadsOfThisProcess() == before);
    // The broker socket only: libmosquitto's own wake-up socket pair is closed.
    CHECK(openFiles() - filesBefore == 21);
}
#endif

TEMPLATE_TEST_CASE_METHOD(Fixture, "A dead or silent broker on one client does not delay another", "[mqtt][integration]", MQTT_LIBRARIES) {
    FIXTURE_MEMBERS;
    Broker broker(dir.path());
    // A port nobody listens on, and a listener that never accepts (TCP completes, no CONNACK ever).
    int deadPort = testing::freeTcpPort();
    UniqueFd silent(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(silent);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(silent.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(silent.get(), 16) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(silent.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    int silentPort = ntohs(addr.sin_port);

    auto t0 = std::chrono::steady_clock::now();
    Peer dead(loop, config(deadPort, "usp/agent-dead", "proto::dead"));
    auto stalledCfg = config(silentPort, "usp/agent-stalled", "proto::stalled");
    stalledCfg.connectTimeout = 30s;
    Peer stalled(loop, stalledCfg);
    Peer live(loop, config(broker.plain(), "usp/agent", "proto::agent-1"));
    Peer controller(loop, config(broker.plain(), "usp/controller", "proto::controller"));
    REQUIRE(testing::runUntil(loop, [&] { return live.up() && controller.up(); }, 5s));
    auto took = std::chrono::steady_clock::now() - t0;
    INFO("live client up after " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
    // Paho's shared receive thread notices a new socket within its 1 s poll cycle; the
    // stalled broker's 30 s connect timeout must not show up here.
    CHECK(took < 2500ms);
    exchange(loop, live, controller, "usp/agent", "usp/controller", "1");
    REQUIRE(testing::runUntil(loop, [&] { return dead.client->status() == MtpStatus::kError; }, 5s));
    CHECK(stalled.client->status() == MtpStatus::kConnecting);
    CHECK_FALSE(dead.client->send({"x", "usp/controller"}));
    // The dead one keeps retrying on its own schedule while the live one keeps working.
    REQUIRE(testing::runUntil(loop, [&] { return dead.client->figures().connectAttempts >= 2; }, 5s));
    exchange(loop, live, controller, "usp/agent", "usp/controller", "2");
}

TEMPLATE_TEST_CASE_METHOD(Fixture, "TLS with the right CA connects and exchanges records", "[mqtt][integration]", MQTT_LIBRARIES) {
    FIXTURE_MEMBERS;
    Certs certs(dir.path());
    Broker broker(dir.path(), &certs);
    auto cfg = config(broker.tls(), "usp/agent", "proto::agent-1");
    cfg.transport = MqttTransport::kTls;
    cfg.tls.caFile = certs("ca.pem");
    Peer agent(loop, cfg);
    Peer controller(loop, config(broker.plain(), "usp/controller", "proto::controller"));
    REQUIRE(testing::runUntil(loop, [&] { return agent.up() && controller.up(); }, 10s));
    exchange(loop, agent, controller, "usp/agent", "usp/controller", "tls");
}

TEMPLATE_TEST_CASE_METHOD(Fixture, "TLS with a wrong CA ends in Error with the verify failure and the CA file in the log", "[mqtt][integration]", MQTT_LIBRARIES) {
    FIXTURE_MEMBERS;
    Certs certs(dir.path());
    Broker broker(dir.path(), &certs);
    LogCapture logs;
    auto cfg = config(broker.tls(), "usp/agent", "proto::agent-1");
    cfg.transport = MqttTransport::kTls;
    cfg.tls.caFile = certs("other-ca.pem");
    Peer agent(loop, cfg);
    REQUIRE(testing::runUntil(loop, [&] { return agent.client->status() == MtpStatus::kError; }, 10s));
    INFO(agent.lastDetail());
    CHECK_THAT(agent.lastDetail(), Catch::Contains("server certificate rejected") &&
                                       Catch::Contains("CA file " + certs("other-ca.pem")));
    CHECK(logs.contains("server certificate rejected", "CA file " + certs("other-ca.pem")));
}

TEMPLATE_TEST_CASE_METHOD(Fixture, "TLS refuses a broker certificate that names another host", "[mqtt][integration]", MQTT_LIBRARIES) {
    FIXTURE_MEMBERS;
    Certs certs(dir.path());
    Broker broker(dir.path(), &certs);
    auto cfg = config(broker.wrongName(), "usp/agent", "proto::agent-1");
    cfg.transport = MqttTransport::kTls;
    cfg.tls.caFile = certs("ca.pem");
    Peer agent(loop, cfg);
    REQUIRE(testing::runUntil(loop, [&] { return agent.client->status() == MtpStatus::kError; }, 10s));
    INFO(agent.lastDetail());
    CHECK_THAT(agent.lastDetail(), Catch::Contains("server certificate rejected") &&
                                       Catch::Contains("must name 127.0.0.1"));

    // The same broker certificate is accepted when the name check is turned off.
    cfg.tls.verifyServerName = false;
    REQUIRE(agent.client->applyConfig(cfg));
    REQUIRE(testing::runUntil(loop, [&] { return agent.up(); }, 10s));
}

TEMPLATE_TEST_CASE_METHOD(Fixture, "Mutual TLS connects with a client certificate and is refused without one", "[mqtt][integration]", MQTT_LIBRARIES) {
    FIXTURE_MEMBERS;
    Certs certs(dir.path());
    Broker broker(dir.path(), &certs);
    auto cfg = config(broker.mtls(), "usp/agent", "proto::agent-1");
    cfg.transport = MqttTransport::kTls;
    cfg.tls.caFile = certs("ca.pem");
    {
        Peer without(loop, cfg);
        REQUIRE(testing::runUntil(loop, [&] { return without.client->status() == MtpStatus::kError; }, 10s));
        INFO(without.lastDetail());
        CHECK_THAT(without.lastDetail(), Catch::Contains("no client certificate was configured"));
    }
    cfg.tls.certFile = certs("client.pem");
    cfg.tls.keyFile = certs("client.key");
    Peer with(loop, cfg);
    Peer controller(loop, config(broker.plain(), "usp/controller", "proto::controller"));
    REQUIRE(testing::runUntil(loop, [&] { return with.up() && controller.up(); }, 10s));
    exchange(loop, with, controller, "usp/agent", "usp/controller", "mtls");
}

TEMPLATE_TEST_CASE_METHOD(Fixture, "A new configuration applied at run time moves the client without a restart", "[mqtt][integration]", MQTT_LIBRARIES) {
    FIXTURE_MEMBERS;
    Certs certs(dir.path());
    Broker broker(dir.path(), &certs);
    auto cfg = config(broker.plain(), "usp/agent", "proto::agent-1");
    Peer agent(loop, cfg);
    Peer controller(loop, config(broker.plain(), "usp/controller", "proto::controller"));
    REQUIRE(testing::runUntil(loop, [&] { return agent.up() && controller.up(); }));
    exchange(loop, agent, controller, "usp/agent", "usp/controller", "plain");

    cfg.brokerPort = broker.tls();
    cfg.transport = MqttTransport::kTls;
    cfg.tls.caFile = certs("ca.pem");
    cfg.responseTopicConfigured = "usp/agent-v2";
    auto upsBefore = std::count_if(agent.statuses.begin(), agent.statuses.end(),
                                   [](const auto& s) { return s.first == MtpStatus::kUp; });
    REQUIRE(agent.client->applyConfig(cfg));
    REQUIRE(testing::runUntil(loop, [&] {
        return agent.up() && std::count_if(agent.statuses.begin(), agent.statuses.end(), [](const auto& s) {
                                 return s.first == MtpStatus::kUp;
                             }) > upsBefore;
    }));
    CHECK(agent.client->agentAddress() == "usp/agent-v2");
    exchange(loop, agent, controller, "usp/agent-v2", "usp/controller", "tls");
}
