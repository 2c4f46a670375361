// berth-mqtt-bench: measures berthd over MQTT the way the obuspa figures in
// docs were taken: Get round trip (median, p99), throughput with N requests in
// flight, the agent's CPU per request (utime+stime from /proc/<pid>/stat), idle VmRSS
// 10 s after start, and the stripped binary size.
//
// By default it starts its own mosquitto (loopback, free port) and berthd (the example
// configuration, a fresh database in a temporary directory), optionally pinning
// berthd to one core with taskset. With --mqtt and --agent-pid it measures an agent
// that is already running instead.
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>
#include <csignal>

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

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "berth-mqtt-bench: %s\n", what.c_str());
    std::exit(1);
}

int freePort() {
    int port = berth::bench::freeLoopbackPort();
    if (port == 0) die("cannot find a free port");
    return port;
}

// utime+stime of a process, in seconds.
double cpuSeconds(pid_t pid) {
    auto stat = readText("/proc/" + std::to_string(pid) + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) die("cannot read /proc/" + std::to_string(pid) + "/stat");
    std::istringstream in(stat.substr(close + 2));
    std::string field;
    unsigned long long utime = 0;
    unsigned long long stime = 0;
    // Fields after the command: state is field 3; utime 14, stime 15.
    for (int i = 3; i <= 15; ++i) {
        in >> field;
        if (i == 14) utime = std::stoull(field);
        if (i == 15) stime = std::stoull(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::string statusField(pid_t pid, const std::string& name) {
    std::istringstream in(readText("/proc/" + std::to_string(pid) + "/status"));
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(name + ":", 0) == 0) {
            auto v = line.substr(name.size() + 1);
            v.erase(0, v.find_first_not_of(" \t"));
            return v;
        }
    return "?";
}

usp::Msg getMsg(const std::string& id, const std::string& path) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(id);
    m.mutable_header()->set_msg_type(usp::Header::GET);
    m.mutable_body()->mutable_request()->mutable_get()->add_param_paths(path);
    return m;
}

// Sends requests with up to `inflight` outstanding and times each answer.
class Driver {
public:
    Driver(berth::EventLoop& loop, const std::string& host, int port, const std::string& agentId,
           const std::string& agentTopic)
        : loop_(loop), agentId_(agentId), agentTopic_(agentTopic), codec_(codecConfig()) {
        berth::transports::MqttClientConfig c;
        c.brokerAddress = host;
        c.brokerPort = port;
        c.endpointId = "self::berthctl";
        c.clientId = "berth-mqtt-bench-" + std::to_string(::getpid());
        c.responseTopicConfigured = "usp/controller/bench-" + std::to_string(::getpid());
        c.publishQos = 0;
        c.connectRetryTime = 1s;
        c.connectTimeout = 10s;
        auto client = berth::transports::MqttClient::create(loop, c);
        if (!client) die(client.error().describe());
        client_ = std::move(*client);
        client_->onRecord([this](berth::transports::InboundRecord r) { onRecord(std::move(r)); });
        if (auto st = client_->start(); !st) die(st.error().describe());
        auto deadline = Clock::now() + 15s;
        while (client_->status() != berth::transports::MtpStatus::kUp && Clock::now() < deadline)
            loop_.runOnce(50ms);
        if (client_->status() != berth::transports::MtpStatus::kUp) die("cannot connect to the broker");
    }
    ~Driver() { client_->stop(); }

    struct Figures {
        std::vector<double> rttMs;
        double seconds = 0;
        std::size_t params = 0;  // parameters in the last GetResp
        std::size_t errors = 0;
    };

    // Runs `total` requests made by `make(i)`, `inflight` at a time.
    Figures run(const std::function<usp::Msg(const std::string& msgId)>& make, std::size_t total,
                std::size_t inflight) {
        Figures f;
        figures_ = &f;
        make_ = &make;
        total_ = total;
        sent_ = 0;
        done_ = 0;
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
                die("no answer from agent " + agentId_ + " on " + agentTopic_ + " for 10 s (" +
                    std::to_string(done_) + " of " + std::to_string(total) + " answered)");
            }
        }
        f.seconds = std::chrono::duration<double>(Clock::now() - start).count();
        figures_ = nullptr;
        return f;
    }

    // One Get; true when it was answered within `timeout`.
    bool answers(std::chrono::milliseconds timeout) {
        Figures f;
        figures_ = &f;
        auto make = std::function<usp::Msg(const std::string&)>(
            [](const std::string& id) { return getMsg(id, "Device.LocalAgent.EndpointID"); });
        make_ = &make;
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

private:
    static berth::agent::CodecConfig codecConfig() {
        berth::agent::CodecConfig c;
        c.endpointId = "self::berthctl";
        c.servedRequests = {usp::Request::kNotify};
        return c;
    }

    void sendNext() {
        std::string id = "bench-" + std::to_string(++counter_);
        auto rec = codec_.encodeMsg((*make_)(id), agentId_);
        if (!rec) die(rec.error().describe());
        pending_[id] = Clock::now();
        ++sent_;
        if (auto st = client_->send({std::move(*rec), agentTopic_, berth::transports::RecordKind::kOther}); !st)
            die(st.error().describe());
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
            for (const auto& rp : body.response().get_resp().req_path_results()) {
                if (rp.err_code() != 0) ++figures_->errors;
                for (const auto& res : rp.resolved_path_results()) n += static_cast<std::size_t>(res.result_params_size());
            }
            figures_->params = n;
        }
        if (body.has_response() && body.response().has_add_resp())
            for (const auto& c : body.response().add_resp().created_obj_results())
                if (c.oper_status().has_oper_failure()) ++figures_->errors;
        ++done_;
        if (sent_ < total_) sendNext();
    }

    berth::EventLoop& loop_;
    std::string agentId_;
    std::string agentTopic_;
    berth::agent::RecordCodec codec_;
    std::unique_ptr<berth::transports::MqttClient> client_;
    std::map<std::string, Clock::time_point> pending_;
    Figures* figures_ = nullptr;
    const std::function<usp::Msg(const std::string&)>* make_ = nullptr;
    std::size_t total_ = 0;
    std::size_t sent_ = 0;
    std::size_t done_ = 0;
    unsigned long counter_ = 0;
};

usp::Msg addSubscriptionMsg(const std::string& id) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(id);
    m.mutable_header()->set_msg_type(usp::Header::ADD);
    auto* c = m.mutable_body()->mutable_request()->mutable_add()->add_create_objs();
    c->set_obj_path("Device.LocalAgent.Subscription.");
    for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
             {"ID", id}, {"NotifType", "ValueChange"}, {"ReferenceList", "Device.DeviceInfo.FriendlyName"}}) {
        auto* s = c->add_param_settings();
        s->set_param(k);
        s->set_value(v);
        s->set_required(true);
    }
    return m;
}

usp::Msg setMsg(const std::string& id) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(id);
    m.mutable_header()->set_msg_type(usp::Header::SET);
    auto* u = m.mutable_body()->mutable_request()->mutable_set()->add_update_objs();
    u->set_obj_path("Device.DeviceInfo.");
    auto* s = u->add_param_settings();
    s->set_param("FriendlyName");
    s->set_value(id);
    s->set_required(true);
    return m;
}

struct Owned {
    std::unique_ptr<berth::ChildProcess> broker;
    std::unique_ptr<berth::ChildProcess> agent;
    fs::path dir;
    ~Owned() {
        for (auto* p : {agent.get(), broker.get()})
            if (p && p->running()) {
                (void)p->signal(SIGTERM);
                if (!p->waitFor(5s)) (void)p->signal(SIGKILL);
            }
        agent.reset();
        broker.reset();
        std::error_code ec;
        if (!dir.empty()) fs::remove_all(dir, ec);
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

void report(const char* what, const Driver::Figures& f, double cpu, std::size_t n) {
    std::printf("%-52s %6zu req  median %7.3f ms  p99 %7.3f ms  %8.0f req/s  agent CPU %6.3f ms/req  (%zu params, %zu errors)\n",
                what, n, percentile(f.rttMs, 0.5), percentile(f.rttMs, 0.99), static_cast<double>(n) / f.seconds,
                cpu * 1000.0 / static_cast<double>(n), f.params, f.errors);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"berth-mqtt-bench - berthd figures over MQTT (round trip, throughput, CPU per request, memory, size)"};
    std::string berthd = BERTHD_BIN;
    std::string config = BERTH_EXAMPLE_CONF;
    std::string mqtt;
    std::string agentId = "os::012345-0001";
    std::string agentTopic;
    pid_t agentPid = 0;
    int pin = -1;
    std::size_t requests = 2000;
    std::size_t inflight = 16;
    std::size_t rows = 200;
    double idleWait = 10;
    app.add_option("--berthd", berthd, "berthd binary to start")->capture_default_str();
    app.add_option("--config", config, "Configuration for the berthd it starts (broker port substituted)")
        ->capture_default_str();
    app.add_option("--mqtt", mqtt, "Use this broker (host:port) and an agent already running instead");
    app.add_option("--agent-pid", agentPid, "With --mqtt: the running agent's PID, for CPU figures");
    app.add_option("--agent", agentId, "Agent endpoint ID")->capture_default_str();
    app.add_option("--agent-topic", agentTopic, "Agent topic (default usp/agent/<agent id>)");
    app.add_option("--pin", pin, "Pin the berthd it starts to this CPU (taskset); mosquitto and the driver go elsewhere");
    app.add_option("-n,--requests", requests, "Requests per throughput run")->capture_default_str();
    app.add_option("--inflight", inflight, "Requests in flight in throughput runs")->capture_default_str();
    app.add_option("--rows", rows, "Subscription rows added for the large-table runs")->capture_default_str();
    app.add_option("--idle-wait", idleWait, "Seconds after start before reading idle VmRSS")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    if (agentTopic.empty()) agentTopic = "usp/agent/" + agentId;
    berth::log::Config lc;
    lc.level = berth::log::Level::kError;
    berth::log::configure(lc);

    Owned owned;
    std::string host = "127.0.0.1";
    int port = 0;
    if (mqtt.empty()) {
        char templ[] = "/tmp/berth-mqtt-bench-XXXXXX";
        if (!::mkdtemp(templ)) die("mkdtemp failed");
        owned.dir = templ;
        ::chmod(templ, 0755);
        port = freePort();
        std::ofstream(owned.dir / "mosquitto.conf") << "persistence false\nallow_anonymous true\nlog_type error\n"
                                                    << "listener " << port << " 127.0.0.1\n";
        long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
        std::vector<std::string> others;
        if (pin >= 0 && cpus > 1) {
            // Everything but berthd on the other cores.
            std::string list;
            for (long c = 0; c < cpus; ++c)
                if (c != pin) list += (list.empty() ? "" : ",") + std::to_string(c);
            others = {"taskset", "-c", list};
            cpu_set_t set;
            CPU_ZERO(&set);
            for (long c = 0; c < cpus; ++c)
                if (c != pin) CPU_SET(static_cast<int>(c), &set);
            ::sched_setaffinity(0, sizeof set, &set);
        }
        auto brokerArgv = others;
        brokerArgv.insert(brokerArgv.end(), {"mosquitto", "-c", (owned.dir / "mosquitto.conf").string()});
        owned.broker = spawn(brokerArgv, owned.dir / "mosquitto.log");
        auto deadline = Clock::now() + 10s;
        while (!berth::bench::loopbackPortOpen(port) && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
        if (!berth::bench::loopbackPortOpen(port)) die("mosquitto did not start");

        auto conf = readText(config);
        auto key = std::string("Device.MQTT.Client.1.BrokerPort \"");
        auto at = conf.find(key);
        if (at == std::string::npos) die(config + " has no Device.MQTT.Client.1.BrokerPort line");
        auto end = conf.find('"', at + key.size());
        conf = conf.substr(0, at + key.size()) + std::to_string(port) + conf.substr(end);
        std::ofstream(owned.dir / "berth.conf") << conf;
        std::vector<std::string> agentArgv;
        if (pin >= 0) agentArgv = {"taskset", "-c", std::to_string(pin)};
        agentArgv.insert(agentArgv.end(), {berthd, "--config", (owned.dir / "berth.conf").string(), "--db",
                                           (owned.dir / "berth.db").string(), "--log-level", "warn"});
        owned.agent = spawn(agentArgv, owned.dir / "berthd.log");
        agentPid = owned.agent->pid();  // taskset execs berthd in place
    } else {
        auto colon = mqtt.rfind(':');
        host = colon == std::string::npos ? mqtt : mqtt.substr(0, colon);
        port = colon == std::string::npos ? 1883 : std::stoi(mqtt.substr(colon + 1));
    }

    berth::SystemClock clock;
    berth::EventLoop loop(clock);
    auto started = Clock::now();
    Driver driver(loop, host, port, agentId, agentTopic);
    // The agent answers once it is subscribed.
    {
        auto deadline = Clock::now() + 15s;
        while (!driver.answers(500ms))
            if (Clock::now() > deadline) die("agent " + agentId + " does not answer on " + agentTopic);
    }
    std::printf("berth-mqtt-bench: agent %s on %s:%d (topic %s)%s\n", agentId.c_str(), host.c_str(), port,
                agentTopic.c_str(), pin >= 0 ? (", berthd pinned to CPU " + std::to_string(pin)).c_str() : "");

    if (agentPid > 0 && owned.agent) {
        auto until = started + std::chrono::milliseconds(static_cast<long long>(idleWait * 1000));
        while (Clock::now() < until) loop.runOnce(100ms);
        std::printf("idle %.0f s after start: VmRSS %s, VmHWM %s, threads %s\n", idleWait,
                    statusField(agentPid, "VmRSS").c_str(), statusField(agentPid, "VmHWM").c_str(),
                    statusField(agentPid, "Threads").c_str());
    }

    auto measure = [&](const char* what, const std::function<usp::Msg(const std::string&)>& make, std::size_t n,
                       std::size_t window) {
        double before = agentPid > 0 ? cpuSeconds(agentPid) : 0;
        auto f = driver.run(make, n, window);
        double cpu = agentPid > 0 ? cpuSeconds(agentPid) - before : 0;
        report(what, f, cpu, n);
    };
    auto getLocalAgent = [](const std::string& id) { return getMsg(id, "Device.LocalAgent."); };
    // Warm-up, then sequential round trips, then throughput.
    driver.run(getLocalAgent, 50, 1);
    measure("Get Device.LocalAgent. (1 in flight)", getLocalAgent, std::min<std::size_t>(requests, 1000), 1);
    measure(("Get Device.LocalAgent. (" + std::to_string(inflight) + " in flight)").c_str(), getLocalAgent, requests,
            inflight);
    measure("Set Device.DeviceInfo.FriendlyName (1 in flight)", setMsg, 200, 1);
    measure(("Add Subscription x" + std::to_string(rows) + " (1 in flight)").c_str(), addSubscriptionMsg, rows, 1);
    auto getTable = [](const std::string& id) { return getMsg(id, "Device.LocalAgent.Subscription."); };
    measure(("Get Subscription. (" + std::to_string(rows) + " rows, 1 in flight)").c_str(), getTable,
            std::min<std::size_t>(requests / 4, 300), 1);
    measure(("Get Subscription. (" + std::to_string(rows) + " rows, " + std::to_string(inflight) + " in flight)").c_str(),
            getTable, std::max<std::size_t>(requests / 4, 100), inflight);
    measure(("Get Device.LocalAgent. (+" + std::to_string(rows) + " rows, " + std::to_string(inflight) + " in flight)")
                .c_str(),
            getLocalAgent, std::max<std::size_t>(requests / 4, 100), inflight);

    if (agentPid > 0) std::printf("after the runs: VmRSS %s, VmHWM %s\n", statusField(agentPid, "VmRSS").c_str(),
                                  statusField(agentPid, "VmHWM").c_str());

    // Stripped size of the binary measured.
    if (owned.agent) {
        auto copy = owned.dir / "berthd.stripped";
        fs::copy_file(berthd, copy);
        berth::SpawnOptions o;
        o.argv = {"strip", copy.string()};
        auto r = berth::runCommand(o, 60s);
        if (r && r->status.success())
            std::printf("stripped berthd: %.0f KB (unstripped %.0f KB)\n", static_cast<double>(fs::file_size(copy)) / 1024.0,
                        static_cast<double>(fs::file_size(berthd)) / 1024.0);
    }
    return 0;
}
