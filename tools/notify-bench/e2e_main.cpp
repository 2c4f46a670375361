// berth-notify-e2e-bench: latency from a Set sent by one controller over MQTT to the
// ValueChange Notify it causes arriving at another controller over MQTT, through a
// loopback mosquitto and berthd as a process (both started here, in a temporary
// directory, on a free port; stopped by PID at the end).
//
// Controller 1 (self::berthctl) sends `Set Device.DeviceInfo.FriendlyName=<run>`;
// controller 2 (self::berthctl-watch) holds a ValueChange subscription on that parameter
// and listens on its configured topic. One Set at a time: the next goes once both the
// SetResp and the Notify of the previous one are in. The clock starts when the Set is
// handed to the MQTT client and stops when the Notify is decoded.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "berth/agent/codec.h"
#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/fd.h"
#include "berth/core/log.h"
#include "berth/core/process.h"
#include "berth/transports/mqtt.h"
#include "berth/bench/support.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using berth::bench::percentile;
using berth::bench::readText;

namespace {

constexpr const char* kAgentId = "os::012345-0001";
constexpr const char* kSetter = "self::berthctl";
constexpr const char* kWatcher = "self::berthctl-watch";
constexpr const char* kWatcherTopic = "usp/controller/berthctl-watch";
constexpr const char* kParam = "Device.DeviceInfo.FriendlyName";

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "berth-notify-e2e-bench: %s\n", what.c_str());
    std::exit(1);
}

int freePort() {
    int port = berth::bench::freeLoopbackPort();
    if (port == 0) die("cannot find a free port");
    return port;
}

// berthd and mosquitto, stopped (TERM, then KILL) by PID, and their directory removed.
struct Owned {
    std::unique_ptr<berth::ChildProcess> broker;
    std::unique_ptr<berth::ChildProcess> agent;
    fs::path dir;
    bool keep = false;
    ~Owned() {
        for (auto* p : {agent.get(), broker.get()})
            if (p && p->running()) {
                (void)p->signal(SIGTERM);
                if (!p->waitFor(5s)) (void)p->signal(SIGKILL);
            }
        agent.reset();
        broker.reset();
        std::error_code ec;
        if (!dir.empty() && !keep) fs::remove_all(dir, ec);
    }
};

std::unique_ptr<berth::ChildProcess> spawn(std::vector<std::string> argv, const fs::path& log) {
    berth::SpawnOptions o;
    o.argv = std::move(argv);
    berth::UniqueFd fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    o.stdoutFd = fd.get();
    o.stderrFd = fd.get();
    auto c = berth::ChildProcess::spawn(o);
    if (!c) die("cannot start " + o.argv[0] + ": " + c.error().describe());
    return std::move(*c);
}

// One controller: an MQTT client and a codec for its endpoint ID.
class Controller {
public:
    Controller(berth::EventLoop& loop, int port, const std::string& endpointId, const std::string& topic, int qos)
        : loop_(loop), codec_(codecConfig(endpointId)) {
        berth::transports::MqttClientConfig c;
        c.brokerAddress = "127.0.0.1";
        c.brokerPort = port;
        c.endpointId = endpointId;
        c.clientId = "notify-e2e-" + std::to_string(::getpid()) + "-" + topic;
        std::replace(c.clientId.begin(), c.clientId.end(), '/', '-');
        c.responseTopicConfigured = topic;
        c.subscriptions.push_back({topic, qos, true});
        c.publishQos = qos;
        c.connectRetryTime = 1s;
        c.connectTimeout = 10s;
        auto client = berth::transports::MqttClient::create(loop, c);
        if (!client) die(client.error().describe());
        client_ = std::move(*client);
        client_->onRecord([this](berth::transports::InboundRecord r) {
            auto d = codec_.decode(r.payload);
            if (d.kind == berth::agent::DecodeKind::kRequest || d.kind == berth::agent::DecodeKind::kResponse ||
                d.kind == berth::agent::DecodeKind::kError)
                if (onMsg_) onMsg_(d);
        });
        if (auto st = client_->start(); !st) die(st.error().describe());
        auto deadline = Clock::now() + 15s;
        while (client_->status() != berth::transports::MtpStatus::kUp && Clock::now() < deadline) loop_.runOnce(50ms);
        if (client_->status() != berth::transports::MtpStatus::kUp) die("cannot connect to the broker");
    }
    ~Controller() { client_->stop(); }

    void onMsg(std::function<void(const berth::agent::DecodedRecord&)> f) { onMsg_ = std::move(f); }
    void send(const usp::Msg& m) {
        auto rec = codec_.encodeMsg(m, kAgentId);
        if (!rec) die(rec.error().describe());
        if (auto st = client_->send({std::move(*rec), std::string("usp/agent/") + kAgentId,
                                     berth::transports::RecordKind::kOther});
            !st)
            die(st.error().describe());
    }

private:
    static berth::agent::CodecConfig codecConfig(const std::string& id) {
        berth::agent::CodecConfig c;
        c.endpointId = id;
        c.servedRequests = {usp::Request::kNotify};
        return c;
    }
    berth::EventLoop& loop_;
    berth::agent::RecordCodec codec_;
    std::unique_ptr<berth::transports::MqttClient> client_;
    std::function<void(const berth::agent::DecodedRecord&)> onMsg_;
};

usp::Msg setMsg(const std::string& id, const std::string& value) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(id);
    m.mutable_header()->set_msg_type(usp::Header::SET);
    auto* u = m.mutable_body()->mutable_request()->mutable_set()->add_update_objs();
    u->set_obj_path("Device.DeviceInfo.");
    auto* s = u->add_param_settings();
    s->set_param("FriendlyName");
    s->set_value(value);
    s->set_required(true);
    return m;
}

usp::Msg addSubscriptionMsg(const std::string& id, bool retry) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(id);
    m.mutable_header()->set_msg_type(usp::Header::ADD);
    auto* c = m.mutable_body()->mutable_request()->mutable_add()->add_create_objs();
    c->set_obj_path("Device.LocalAgent.Subscription.");
    for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{{"ID", "e2e-bench"},
                                                                               {"Enable", "true"},
                                                                               {"NotifType", "ValueChange"},
                                                                               {"NotifRetry", retry ? "true" : "false"},
                                                                               {"ReferenceList", kParam}}) {
        auto* s = c->add_param_settings();
        s->set_param(k);
        s->set_value(v);
        s->set_required(true);
    }
    return m;
}

usp::Msg notifyResp(const std::string& msgId, const std::string& subId) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(msgId);
    m.mutable_header()->set_msg_type(usp::Header::NOTIFY_RESP);
    m.mutable_body()->mutable_response()->mutable_notify_resp()->set_subscription_id(subId);
    return m;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"berth-notify-e2e-bench - Set over MQTT to ValueChange Notify over MQTT, through mosquitto and berthd"};
    std::string berthd = BERTHD_BIN;
    std::string config = BERTH_EXAMPLE_CONF;
    std::size_t runs = 500;
    std::size_t warmup = 20;
    bool retry = false;
    bool keep = false;
    int qos = 1;
    bool nodelay = false;
    app.add_option("--berthd", berthd, "berthd binary to start")->capture_default_str();
    app.add_option("--config", config, "Configuration for berthd (broker port substituted)")->capture_default_str();
    app.add_option("-n,--runs", runs, "Measured Sets")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--warmup", warmup, "Sets before measuring")->capture_default_str();
    app.add_flag("--notif-retry", retry, "NotifRetry=true (send_resp=true, answered with NotifyResp)");
    app.add_option("--qos", qos, "QoS of the controllers' publishes and subscriptions")
        ->check(CLI::Range(0, 2))
        ->capture_default_str();
    app.add_flag("--broker-nodelay", nodelay, "set_tcp_nodelay true in mosquitto's configuration");
    app.add_flag("--keep", keep, "Keep the temporary directory (logs, database)");
    CLI11_PARSE(app, argc, argv);
    berth::log::Config lc;
    lc.level = berth::log::Level::kError;
    berth::log::configure(lc);

    Owned owned;
    owned.keep = keep;
    char templ[] = "/tmp/berth-notify-e2e-XXXXXX";
    if (!::mkdtemp(templ)) die("mkdtemp failed");
    owned.dir = templ;
    ::chmod(templ, 0755);
    int port = freePort();
    std::ofstream(owned.dir / "mosquitto.conf") << "persistence false\nallow_anonymous true\nlog_type error\n" << (nodelay ? "set_tcp_nodelay true\n" : "")
                                                << "listener " << port << " 127.0.0.1\n";
    owned.broker = spawn({"mosquitto", "-c", (owned.dir / "mosquitto.conf").string()}, owned.dir / "mosquitto.log");
    auto deadline = Clock::now() + 10s;
    while (!berth::bench::loopbackPortOpen(port) && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
    if (!berth::bench::loopbackPortOpen(port)) die("mosquitto did not start");

    auto conf = readText(config);
    const std::string key = "Device.MQTT.Client.1.BrokerPort \"";
    auto at = conf.find(key);
    if (at == std::string::npos) die(config + " has no Device.MQTT.Client.1.BrokerPort line");
    auto end = conf.find('"', at + key.size());
    conf = conf.substr(0, at + key.size()) + std::to_string(port) + conf.substr(end);
    std::ofstream(owned.dir / "berth.conf") << conf;
    owned.agent = spawn({berthd, "--config", (owned.dir / "berth.conf").string(), "--db",
                         (owned.dir / "berth.db").string(), "--log-level", "warn"},
                        owned.dir / "berthd.log");

    berth::SystemClock clock;
    berth::EventLoop loop(clock);
    Controller setter(loop, port, kSetter, "usp/controller/notify-e2e-" + std::to_string(::getpid()), qos);
    Controller watcher(loop, port, kWatcher, kWatcherTopic, qos);

    // Responses to the setter, by msg_id; notifications to the watcher, by value.
    std::map<std::string, bool> answered;
    std::map<std::string, Clock::time_point> answeredAt;
    std::map<std::string, bool> answerOk;
    std::map<std::string, Clock::time_point> notified;
    std::size_t wrongSubscription = 0;
    auto onAnswer = [&](const berth::agent::DecodedRecord& d) {
        answered[d.msgId] = true;
        answeredAt[d.msgId] = Clock::now();
        bool ok = d.kind == berth::agent::DecodeKind::kResponse;
        if (ok && d.msg.body().response().has_add_resp())
            for (const auto& c : d.msg.body().response().add_resp().created_obj_results())
                ok = ok && c.oper_status().has_oper_success();
        answerOk[d.msgId] = ok;
    };
    setter.onMsg(onAnswer);
    watcher.onMsg([&](const berth::agent::DecodedRecord& d) {
        if (d.kind != berth::agent::DecodeKind::kRequest || !d.msg.body().request().has_notify()) {
            onAnswer(d);
            return;
        }
        auto now = Clock::now();
        const auto& n = d.msg.body().request().notify();
        if (n.subscription_id() != "e2e-bench" || !n.has_value_change()) {
            ++wrongSubscription;
            return;
        }
        notified.emplace(n.value_change().param_value(), now);
        if (n.send_resp()) watcher.send(notifyResp(d.msgId, n.subscription_id()));
    });
    auto waitFor = [&](const std::function<bool()>& done, std::chrono::seconds timeout) {
        auto until = Clock::now() + timeout;
        while (!done() && Clock::now() < until) loop.runOnce(100ms);
        return done();
    };

    // berthd answers once it is subscribed: retry the Add until it does.
    bool added = false;
    for (int attempt = 0; attempt < 30 && !added; ++attempt) {
        std::string id = "add-" + std::to_string(attempt);
        watcher.send(addSubscriptionMsg(id, retry));
        added = waitFor([&] { return answered.count(id) > 0; }, 1s) && answerOk[id];
        if (answered.count(id) && !answerOk[id]) die("berthd refused the subscription (see " + owned.dir.string() + ")");
    }
    if (!added) die("berthd does not answer (log in " + owned.dir.string() + "/berthd.log)");
    std::printf("berth-notify-e2e-bench: mosquitto 127.0.0.1:%d, berthd pid %d, NotifRetry=%s, controller QoS %d, %zu runs\n",
                port, owned.agent->pid(), retry ? "true" : "false", qos, runs);

    std::vector<double> notifyMs;
    std::vector<double> setMs;
    for (std::size_t i = 0; i < warmup + runs; ++i) {
        std::string id = "set-" + std::to_string(i);
        std::string value = "e2e-" + std::to_string(i);
        auto t0 = Clock::now();
        setter.send(setMsg(id, value));
        if (!waitFor([&] { return answered.count(id) && notified.count(value); }, 10s))
            die("run " + std::to_string(i) + ": " + (answered.count(id) ? "no Notify" : "no SetResp") +
                " within 10 s");
        if (!answerOk[id]) die("run " + std::to_string(i) + ": the Set failed");
        if (i < warmup) continue;
        notifyMs.push_back(std::chrono::duration<double, std::milli>(notified[value] - t0).count());
        setMs.push_back(std::chrono::duration<double, std::milli>(answeredAt[id] - t0).count());
    }
    std::printf("%-44s median %7.3f ms  p99 %7.3f ms  max %7.3f ms\n", "Set -> ValueChange Notify at controller 2",
                percentile(notifyMs, 0.5), percentile(notifyMs, 0.99), percentile(notifyMs, 1.0));
    std::printf("%-44s median %7.3f ms  p99 %7.3f ms  max %7.3f ms\n", "Set -> SetResp at controller 1",
                percentile(setMs, 0.5), percentile(setMs, 0.99), percentile(setMs, 1.0));
    if (wrongSubscription > 0) std::printf("unexpected notifications: %zu\n", wrongSubscription);
    return wrongSubscription > 0 ? 1 : 0;
}
