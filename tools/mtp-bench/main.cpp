// berth-mtp-bench: the same Get of Device.LocalAgent. over each MTP, side by side.
//
// Starts, on loopback and free ports, a mosquitto, an ActiveMQ (STOMP) and one berthd
// with three MTPs at once (MQTT client, STOMP client, WebSocket server), so the agent,
// its data model and the machine are the same for every column. For each transport
// it measures the round trip with one request in flight (median, p99) and the
// throughput with N in flight, then prints one table. Everything it started is
// stopped by PID; its directory is removed.
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
#include "berth/transports/stomp.h"
#include "berth/transports/websocket.h"
#include "berth/bench/support.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using berth::bench::percentile;
using berth::bench::readText;

namespace {

constexpr const char* kAgentId = "os::012345-0001";
constexpr const char* kControllerId = "self::berthctl";
constexpr const char* kActiveMqHome = "/usr/share/activemq";

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "berth-mtp-bench: %s\n", what.c_str());
    std::exit(1);
}

int freePort() {
    int port = berth::bench::freeLoopbackPort();
    if (port == 0) die("cannot find a free port");
    return port;
}

usp::Msg getLocalAgent(const std::string& id) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(id);
    m.mutable_header()->set_msg_type(usp::Header::GET);
    m.mutable_body()->mutable_request()->mutable_get()->add_param_paths("Device.LocalAgent.");
    return m;
}

berth::agent::CodecConfig codecConfig() {
    berth::agent::CodecConfig c;
    c.endpointId = kControllerId;
    c.servedRequests = {usp::Request::kNotify};
    return c;
}

struct Figures {
    std::vector<double> rttMs;
    double seconds = 0;
    std::size_t params = 0;
    std::size_t errors = 0;
};

// Sends Gets over one transport with up to `inflight` outstanding and times each answer.
class Driver {
public:
    Driver(berth::EventLoop& loop, std::unique_ptr<berth::transports::Mtp> mtp, std::string destination)
        : loop_(loop), mtp_(std::move(mtp)), destination_(std::move(destination)), codec_(codecConfig()) {
        mtp_->onRecord([this](berth::transports::InboundRecord r) { onRecord(std::move(r)); });
        if (auto st = mtp_->start(); !st) die(std::string(mtp_->protocol()) + ": " + st.error().describe());
    }
    ~Driver() { mtp_->stop(); }

    bool up(std::chrono::milliseconds timeout) {
        auto deadline = Clock::now() + timeout;
        while (mtp_->status() != berth::transports::MtpStatus::kUp && Clock::now() < deadline) loop_.runOnce(20ms);
        return mtp_->status() == berth::transports::MtpStatus::kUp;
    }

    Figures run(std::size_t total, std::size_t inflight) {
        Figures f;
        figures_ = &f;
        total_ = total;
        sent_ = 0;
        done_ = 0;
        pending_.clear();
        auto start = Clock::now();
        while (sent_ < std::min(inflight, total)) sendNext();
        auto lastProgress = Clock::now();
        std::size_t lastDone = 0;
        while (done_ < total) {
            loop_.runOnce(100ms);
            if (done_ != lastDone) {
                lastDone = done_;
                lastProgress = Clock::now();
            } else if (Clock::now() - lastProgress > 10s) {
                die(std::string(mtp_->protocol()) + ": no answer for 10 s (" + std::to_string(done_) + " of " +
                    std::to_string(total) + " answered)");
            }
        }
        f.seconds = std::chrono::duration<double>(Clock::now() - start).count();
        figures_ = nullptr;
        return f;
    }

    // True once a Get is answered (the agent may still be subscribing).
    bool answers(std::chrono::milliseconds timeout) {
        Figures f;
        figures_ = &f;
        total_ = 1;
        sent_ = 0;
        done_ = 0;
        pending_.clear();
        sendNext();
        auto deadline = Clock::now() + timeout;
        while (done_ == 0 && Clock::now() < deadline) loop_.runOnce(20ms);
        figures_ = nullptr;
        pending_.clear();
        return done_ == 1;
    }

    std::string_view protocol() const { return mtp_->protocol(); }

private:
    void sendNext() {
        std::string id = "bench-" + std::to_string(++counter_);
        auto rec = codec_.encodeMsg(getLocalAgent(id), kAgentId);
        if (!rec) die(rec.error().describe());
        pending_[id] = Clock::now();
        ++sent_;
        if (auto st = mtp_->send({std::move(*rec), destination_, berth::transports::RecordKind::kOther}); !st)
            die(std::string(mtp_->protocol()) + ": " + st.error().describe());
    }

    void onRecord(berth::transports::InboundRecord r) {
        auto d = codec_.decode(r.payload);
        if (d.kind != berth::agent::DecodeKind::kResponse && d.kind != berth::agent::DecodeKind::kError) return;
        auto it = pending_.find(d.msgId);
        if (it == pending_.end() || !figures_) return;
        figures_->rttMs.push_back(std::chrono::duration<double, std::milli>(Clock::now() - it->second).count());
        pending_.erase(it);
        if (d.kind == berth::agent::DecodeKind::kError) ++figures_->errors;
        const auto& body = d.msg.body();
        if (body.has_response() && body.response().has_get_resp()) {
            std::size_t n = 0;
            for (const auto& rp : body.response().get_resp().req_path_results())
                for (const auto& res : rp.resolved_path_results()) n += static_cast<std::size_t>(res.result_params_size());
            figures_->params = n;
        }
        ++done_;
        if (sent_ < total_) sendNext();
    }

    berth::EventLoop& loop_;
    std::unique_ptr<berth::transports::Mtp> mtp_;
    std::string destination_;
    berth::agent::RecordCodec codec_;
    std::map<std::string, Clock::time_point> pending_;
    Figures* figures_ = nullptr;
    std::size_t total_ = 0;
    std::size_t sent_ = 0;
    std::size_t done_ = 0;
    unsigned long counter_ = 0;
};

struct Owned {
    std::vector<std::unique_ptr<berth::ChildProcess>> procs;  // stopped in reverse order
    fs::path dir;
    ~Owned() {
        for (auto it = procs.rbegin(); it != procs.rend(); ++it) {
            auto& p = *it;
            if (p && p->running()) {
                (void)p->signal(SIGTERM);
                if (!p->waitFor(10s)) (void)p->signal(SIGKILL);
            }
            p.reset();
        }
        std::error_code ec;
        if (!dir.empty()) fs::remove_all(dir, ec);
    }
};

berth::ChildProcess& spawn(Owned& owned, std::vector<std::string> argv, const fs::path& log) {
    berth::SpawnOptions o;
    o.argv = std::move(argv);
    berth::UniqueFd fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    o.stdoutFd = fd.get();
    o.stderrFd = fd.get();
    auto c = berth::ChildProcess::spawn(o);
    if (!c) die("cannot start " + o.argv[0] + ": " + c.error().describe());
    owned.procs.push_back(std::move(*c));
    return *owned.procs.back();
}

void waitPort(int port, const char* what, std::chrono::seconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (!berth::bench::loopbackPortOpen(port) && Clock::now() < deadline) std::this_thread::sleep_for(50ms);
    if (!berth::bench::loopbackPortOpen(port)) die(std::string(what) + " did not start on port " + std::to_string(port));
}

std::string setValue(std::string conf, const std::string& key, const std::string& value) {
    auto line = "\n" + key + " \"";
    auto at = conf.find(line);
    if (at == std::string::npos) return conf + key + " \"" + value + "\"\n";
    auto start = at + line.size();
    auto end = conf.find('"', start);
    return conf.substr(0, start) + value + conf.substr(end);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"berth-mtp-bench - Get Device.LocalAgent. over MQTT, STOMP and WebSocket against one berthd"};
    std::string berthd = BERTHD_BIN;
    std::string config = BERTH_EXAMPLE_CONF;
    std::size_t requests = 2000;
    std::size_t inflight = 16;
    std::size_t sequential = 500;
    std::vector<std::string> only;
    int agentStartSeconds = 15;
    app.add_option("--berthd", berthd, "berthd binary to start")->capture_default_str();
    app.add_option("--config", config, "Base configuration (MQTT as in examples/berth.conf); STOMP and WebSocket "
                                       "rows are added")
        ->capture_default_str();
    app.add_option("-n,--requests", requests, "Requests per throughput run")->capture_default_str();
    app.add_option("--sequential", sequential, "Requests for the round-trip run (1 in flight)")->capture_default_str();
    app.add_option("--inflight", inflight, "Requests in flight in throughput runs")->capture_default_str();
    std::string mqttLibrary = "paho";
    app.add_option("--mqtt-library", mqttLibrary, "berthd's MQTT library (berthd --mqtt-library): paho or mosquitto")
        ->capture_default_str()
        ->check(CLI::IsMember({"paho", "mosquitto"}));
    app.add_option("--only", only,
                   "Measure only these transports (MQTT, STOMP, WebSocket); the agent still serves all "
                   "three. With berthd under callgrind, one transport's instructions per request");
    app.add_option("--agent-start-timeout", agentStartSeconds,
                   "Seconds to wait for berthd's WebSocket port (longer for berthd under valgrind)")
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    berth::log::Config lc;
    lc.level = berth::log::Level::kError;
    berth::log::configure(lc);

    Owned owned;
    char templ[] = "/tmp/berth-mtp-bench-XXXXXX";
    if (!::mkdtemp(templ)) die("mkdtemp failed");
    owned.dir = templ;
    ::chmod(templ, 0755);
    const int mqttPort = freePort();
    const int stompPort = freePort();
    int wsPort = freePort();
    while (wsPort == stompPort || wsPort == mqttPort) wsPort = freePort();

    std::ofstream(owned.dir / "mosquitto.conf") << "persistence false\nallow_anonymous true\nlog_type error\n"
                                                << "listener " << mqttPort << " 127.0.0.1\n";
    spawn(owned, {"mosquitto", "-c", (owned.dir / "mosquitto.conf").string()}, owned.dir / "mosquitto.log");

    const fs::path amq = owned.dir / "activemq";
    for (const char* sub : {"conf", "data", "tmp"}) fs::create_directories(amq / sub);
    std::ofstream(amq / "conf" / "activemq.xml")
        << "<beans xmlns=\"http://www.springframework.org/schema/beans\"\n"
           "       xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"\n"
           "       xsi:schemaLocation=\"http://www.springframework.org/schema/beans "
           "http://www.springframework.org/schema/beans/spring-beans.xsd "
           "http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd\">\n"
           "  <broker xmlns=\"http://activemq.apache.org/schema/core\" brokerName=\"berth-bench\" useJmx=\"false\" "
           "persistent=\"false\">\n    <transportConnectors>\n      <transportConnector name=\"stomp\" "
           "uri=\"stomp://127.0.0.1:"
        << stompPort << "\"/>\n    </transportConnectors>\n  </broker>\n</beans>\n";
    const std::string d = amq.string();
    spawn(owned,
          {"java", "-Xms32m", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
           std::string("-Dactivemq.home=") + kActiveMqHome, "-Dactivemq.base=" + d, "-Dactivemq.conf=" + d + "/conf",
           "-Dactivemq.data=" + d + "/data", "-Djava.io.tmpdir=" + d + "/tmp", "-jar",
           std::string(kActiveMqHome) + "/bin/activemq.jar", "start", "xbean:file:" + d + "/conf/activemq.xml"},
          amq / "activemq.log");
    waitPort(mqttPort, "mosquitto", 10s);
    waitPort(stompPort, "ActiveMQ", 60s);

    auto conf = readText(config);
    if (conf.empty()) die("cannot read " + config);
    conf = setValue(conf, "Device.MQTT.Client.1.BrokerPort", std::to_string(mqttPort));
    const std::string agentDest = std::string("/queue/usp/agent/") + kAgentId;
    const std::string ctrlDest = "/queue/usp/controller/bench";
    conf += "\n# added by berth-mtp-bench\n";
    for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
             {"Device.STOMP.Connection.1.Enable", "true"},
             {"Device.STOMP.Connection.1.Host", "127.0.0.1"},
             {"Device.STOMP.Connection.1.Port", std::to_string(stompPort)},
             {"Device.STOMP.Connection.1.EnableEncryption", "false"},
             {"Device.STOMP.Connection.1.ServerRetryInitialInterval", "1"},
             {"Device.LocalAgent.MTP.2.Enable", "true"},
             {"Device.LocalAgent.MTP.2.Protocol", "STOMP"},
             {"Device.LocalAgent.MTP.2.STOMP.Reference", "Device.STOMP.Connection.1."},
             {"Device.LocalAgent.MTP.2.STOMP.Destination", agentDest},
             {"Device.LocalAgent.MTP.3.Enable", "true"},
             {"Device.LocalAgent.MTP.3.Protocol", "WebSocket"},
             {"Device.LocalAgent.MTP.3.WebSocket.Port", std::to_string(wsPort)},
             {"Device.LocalAgent.MTP.3.WebSocket.Path", "/usp"},
             {"Device.LocalAgent.MTP.3.WebSocket.EnableEncryption", "false"},
         })
        conf = setValue(conf, k, v);
    std::ofstream(owned.dir / "berth.conf") << conf;
    spawn(owned,
          {berthd, "--config", (owned.dir / "berth.conf").string(), "--db", (owned.dir / "berth.db").string(),
           "--log-level", "warn", "--mqtt-library", mqttLibrary},
          owned.dir / "berthd.log");
    waitPort(wsPort, "berthd's WebSocket server", std::chrono::seconds(agentStartSeconds));

    berth::SystemClock clock;
    berth::EventLoop loop(clock);
    std::vector<std::unique_ptr<Driver>> drivers;
    {
        berth::transports::MqttClientConfig c;
        c.brokerAddress = "127.0.0.1";
        c.brokerPort = mqttPort;
        c.endpointId = kControllerId;
        c.clientId = "berth-mtp-bench-" + std::to_string(::getpid());
        c.responseTopicConfigured = "usp/controller/bench";
        c.connectRetryTime = 1s;
        // QoS 0 like berth-mqtt-bench and the obuspa figures it is compared with. At QoS 1
        // one request in flight measured about 44 ms here (see docs/transports.md).
        c.publishQos = 0;
        auto m = berth::transports::MqttClient::create(loop, c);
        if (!m) die(m.error().describe());
        drivers.push_back(std::make_unique<Driver>(loop, std::move(*m), std::string("usp/agent/") + kAgentId));
    }
    {
        berth::transports::StompConfig c;
        c.host = "127.0.0.1";
        c.port = stompPort;
        c.enableEncryption = false;
        c.destination = ctrlDest;
        c.endpointId = kControllerId;
        c.serverRetryInitialInterval = 1s;
        auto s = berth::transports::StompClient::create(loop, c);
        if (!s) die(s.error().describe());
        drivers.push_back(std::make_unique<Driver>(loop, std::move(*s), agentDest));
    }
    {
        berth::transports::WebSocketClientConfig c;
        c.host = "127.0.0.1";
        c.port = wsPort;
        c.path = "/usp";
        c.enableEncryption = false;
        c.endpointId = kControllerId;
        c.peerEndpointId = kAgentId;
        c.sessionRetryMinimumWaitInterval = 1s;
        auto w = berth::transports::WebSocketClient::create(loop, c);
        if (!w) die(w.error().describe());
        drivers.push_back(std::make_unique<Driver>(loop, std::move(*w), ""));
    }
    if (!only.empty()) {
        drivers.erase(std::remove_if(drivers.begin(), drivers.end(),
                                     [&](const std::unique_ptr<Driver>& drv) {
                                         return std::find(only.begin(), only.end(), drv->protocol()) == only.end();
                                     }),
                      drivers.end());
        if (drivers.empty()) die("--only names no transport (MQTT, STOMP, WebSocket)");
    }
    for (auto& drv : drivers) {
        if (!drv->up(30s)) die(std::string(drv->protocol()) + ": transport did not come up");
        auto deadline = Clock::now() + 30s;
        while (!drv->answers(1s))
            if (Clock::now() > deadline) die(std::string(drv->protocol()) + ": berthd does not answer");
        drv->run(50, 1);  // warm-up
    }

    struct Row {
        std::string protocol;
        Figures seq;
        Figures thr;
    };
    std::vector<Row> rows;
    for (auto& drv : drivers) {
        Row r;
        r.protocol = std::string(drv->protocol());
        r.seq = drv->run(sequential, 1);
        r.thr = drv->run(requests, inflight);
        rows.push_back(std::move(r));
    }

    std::printf("berth-mtp-bench: Get Device.LocalAgent. against one berthd (MQTT on %s), loopback, %zu sequential + "
                "%zu with %zu in flight per transport\n\n",
                mqttLibrary.c_str(), sequential, requests, inflight);
    std::printf("| transport | params | median RTT (ms) | p99 RTT (ms) | req/s (1 in flight) | req/s (%zu in flight) | "
                "errors |\n",
                inflight);
    std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
    for (const auto& r : rows) {
        std::printf("| %s | %zu | %.3f | %.3f | %.0f | %.0f | %zu |\n", r.protocol.c_str(), r.seq.params,
                    percentile(r.seq.rttMs, 0.5), percentile(r.seq.rttMs, 0.99),
                    static_cast<double>(sequential) / r.seq.seconds, static_cast<double>(requests) / r.thr.seconds,
                    r.seq.errors + r.thr.errors);
    }
    drivers.clear();
    return 0;
}
