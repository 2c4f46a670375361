#pragma once
// A mosquitto and a berthd on free loopback ports, and USP controllers that speak to
// that berthd over MQTT: what the abuse benchmark and the abuse integration tests share.
//
// Header-only; users link berth::agent and berth::transports. Every process started is
// stopped by its PID when the Rig goes; the temporary directory is removed.
//
// Threading: a UspController belongs to the thread whose EventLoop it was made with.

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "berth/agent/codec.h"
#include "berth/bench/support.h"
#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/fd.h"
#include "berth/core/process.h"
#include "berth/transports/mqtt.h"

namespace berth::bench {

namespace rigfs = std::filesystem;
using RigClock = std::chrono::steady_clock;

// The agent of examples/berth.conf and its two full-access controllers.
inline const std::string kRigAgentId = "os::012345-0001";
inline const std::string kRigAgentTopic = "usp/agent/os::012345-0001";
inline const std::string kRigFlooderId = "self::berthctl";
inline const std::string kRigOtherId = "self::berthctl-watch";

// A field of /proc/<pid>/status in kB (VmRSS, VmHWM); -1 when unreadable.
inline long statusKb(pid_t pid, const std::string& name) {
    std::istringstream in(readText("/proc/" + std::to_string(pid) + "/status"));
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(name + ":", 0) == 0) return std::stol(line.substr(name.size() + 1));
    return -1;
}

struct RigOptions {
    std::string berthd;                   // binary
    std::string exampleConfig;            // examples/berth.conf
    std::vector<std::string> berthdArgs;  // added to berthd's command line
    std::string extraConfig;              // lines appended to the configuration
};

class Rig {
public:
    explicit Rig(const RigOptions& o) {
        char templ[] = "/tmp/berth-abuse-XXXXXX";
        if (!::mkdtemp(templ)) throw std::runtime_error("mkdtemp failed");
        dir = templ;
        rigfs::permissions(dir, rigfs::perms::owner_all | rigfs::perms::group_read | rigfs::perms::group_exec |
                                    rigfs::perms::others_read | rigfs::perms::others_exec);
        port = freeLoopbackPort();
        if (port == 0) throw std::runtime_error("no free port");
        std::ofstream(dir / "mosquitto.conf")
            << "persistence false\nallow_anonymous true\nlog_type " << (logLevel() == "debug" ? "all" : "error") << "\n"
            << "max_queued_messages 0\nlistener " << port << " 127.0.0.1\n";
        broker_ = spawn({"mosquitto", "-c", (dir / "mosquitto.conf").string()}, dir / "mosquitto.log");
        auto deadline = RigClock::now() + std::chrono::seconds(10);
        while (!loopbackPortOpen(port) && RigClock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        if (!loopbackPortOpen(port)) throw std::runtime_error("mosquitto did not start");

        std::string conf = readText(o.exampleConfig);
        const std::string key = "Device.MQTT.Client.1.BrokerPort \"";
        auto at = conf.find(key);
        if (at == std::string::npos) throw std::runtime_error(o.exampleConfig + " has no BrokerPort line");
        auto end = conf.find('"', at + key.size());
        conf = conf.substr(0, at + key.size()) + std::to_string(port) + conf.substr(end);
        conf += "\n" + o.extraConfig + "\n";
        std::ofstream(dir / "berth.conf") << conf;
        std::vector<std::string> argv{
            o.berthd,      "--config", (dir / "berth.conf").string(), "--db", (dir / "berth.db").string(),
            "--log-level", logLevel()};
        argv.insert(argv.end(), o.berthdArgs.begin(), o.berthdArgs.end());
        agent_ = spawn(argv, dir / "berthd.log");
        agentPid = agent_->pid();
    }
    ~Rig() {
        for (auto* p : {agent_.get(), broker_.get()})
            if (p && p->running()) {
                (void)p->signal(SIGTERM);
                if (!p->waitFor(std::chrono::seconds(10))) (void)p->signal(SIGKILL);
            }
        agent_.reset();
        broker_.reset();
        // BERTH_ABUSE_KEEP=1 keeps the directory (logs, database) for a look afterwards.
        if (const char* keep = std::getenv("BERTH_ABUSE_KEEP"); keep && *keep == '1') {
            std::fprintf(stderr, "kept %s\n", dir.c_str());
            return;
        }
        std::error_code ec;
        rigfs::remove_all(dir, ec);
    }
    Rig(const Rig&) = delete;
    Rig& operator=(const Rig&) = delete;

    bool agentRunning() { return agent_ && agent_->running(); }
    std::string agentLog() const { return readText(dir / "berthd.log"); }
    // SIGTERM to berthd; seconds until it exited, or -1 (then KILLed) past `timeout`.
    double stopAgent(std::chrono::seconds timeout) {
        auto start = RigClock::now();
        (void)agent_->signal(SIGTERM);
        if (!agent_->waitFor(timeout)) {
            (void)agent_->signal(SIGKILL);
            (void)agent_->waitFor(std::chrono::seconds(5));
            return -1;
        }
        return std::chrono::duration<double>(RigClock::now() - start).count();
    }

    rigfs::path dir;
    int port = 0;
    pid_t agentPid = 0;

private:
    // BERTH_ABUSE_LOG sets berthd's log level (default warn).
    static std::string logLevel() {
        const char* l = std::getenv("BERTH_ABUSE_LOG");
        return l && *l ? l : "warn";
    }
    static std::unique_ptr<ChildProcess> spawn(std::vector<std::string> argv, const rigfs::path& log) {
        SpawnOptions so;
        so.argv = std::move(argv);
        UniqueFd fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
        so.stdoutFd = fd.get();
        so.stderrFd = fd.get();
        auto c = ChildProcess::spawn(so);
        if (!c) throw std::runtime_error("cannot start " + so.argv[0] + ": " + c.error().describe());
        return std::move(*c);
    }
    std::unique_ptr<ChildProcess> broker_;
    std::unique_ptr<ChildProcess> agent_;
};

// A Get of the given paths.
inline usp::Msg rigGet(const std::string& msgId, const std::vector<std::string>& paths) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(msgId);
    m.mutable_header()->set_msg_type(usp::Header::GET);
    for (const auto& p : paths)
        m.mutable_body()->mutable_request()->mutable_get()->add_param_paths(p);
    return m;
}

// One controller: an MQTT client of its own, requests by msg_id, answers timed.
class UspController {
public:
    struct Answer {
        agent::DecodedRecord record;
        double rttMs = 0;
    };

    UspController(EventLoop& loop, int brokerPort, const std::string& endpointId, const std::string& tag)
        : loop_(loop), endpointId_(endpointId), codec_(codecConfig(endpointId)) {
        transports::MqttClientConfig c;
        c.brokerAddress = "127.0.0.1";
        c.brokerPort = brokerPort;
        c.endpointId = endpointId;
        c.clientId = "abuse-" + tag + "-" + std::to_string(::getpid());
        c.responseTopicConfigured = "usp/controller/abuse-" + tag + "-" + std::to_string(::getpid());
        c.publishQos = 0;
        c.connectRetryTime = std::chrono::seconds(1);
        c.connectTimeout = std::chrono::seconds(10);
        auto client = transports::MqttClient::create(loop, c);
        if (!client) throw std::runtime_error(client.error().describe());
        client_ = std::move(*client);
        client_->onRecord([this](transports::InboundRecord r) { onRecord(std::move(r)); });
        if (auto st = client_->start(); !st) throw std::runtime_error(st.error().describe());
        auto deadline = RigClock::now() + std::chrono::seconds(15);
        while (client_->status() != transports::MtpStatus::kUp && RigClock::now() < deadline)
            loop_.runOnce(std::chrono::milliseconds(50));
        if (client_->status() != transports::MtpStatus::kUp) throw std::runtime_error("cannot connect to the broker");
    }
    ~UspController() { client_->stop(); }

    // Sends `m` (its msg_id is the key of the answer).
    void send(const usp::Msg& m) {
        auto rec = codec_.encodeMsg(m, kRigAgentId);
        if (!rec) throw std::runtime_error(rec.error().describe());
        sendRecord(m.header().msg_id(), std::move(*rec));
    }
    // Sends serialized Record bytes made elsewhere (e.g. with invalid UTF-8 in them).
    void sendRecord(const std::string& msgId, std::string record) {
        pending_[msgId] = RigClock::now();
        ++sent;
        // Paho keeps a bounded number of messages in hand: a flood waits for room.
        auto deadline = RigClock::now() + std::chrono::seconds(30);
        while (true) {
            auto st = client_->send({record, kRigAgentTopic, transports::RecordKind::kOther});
            if (st) return;
            if (RigClock::now() > deadline) throw std::runtime_error(st.error().describe());
            loop_.runOnce(std::chrono::milliseconds(1));
        }
    }
    // Runs the loop until `done()` or the timeout; true when done() held.
    bool runUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
        auto deadline = RigClock::now() + timeout;
        while (!done()) {
            if (RigClock::now() > deadline) return false;
            loop_.runOnce(std::chrono::milliseconds(20));
        }
        return true;
    }
    // Runs the loop until nothing is outstanding (true) or no answer came for `quiet`
    // or the timeout passed (false): answers the agent could not send never come.
    bool runUntilAnsweredOrQuiet(std::chrono::milliseconds quiet, std::chrono::milliseconds timeout) {
        auto deadline = RigClock::now() + timeout;
        std::size_t last = answered;
        auto lastChange = RigClock::now();
        while (!pending_.empty()) {
            auto now = RigClock::now();
            if (answered != last) {
                last = answered;
                lastChange = now;
            }
            if (now - lastChange > quiet || now > deadline) return false;
            loop_.runOnce(std::chrono::milliseconds(20));
        }
        return true;
    }
    // Sends `m` and waits for its answer.
    std::optional<Answer> request(const usp::Msg& m, std::chrono::milliseconds timeout) {
        const std::string id = m.header().msg_id();
        awaited_ = id;
        send(m);
        if (!runUntil([&] { return answers_.count(id) != 0; }, timeout)) {
            pending_.erase(id);  // a late answer is not waited for again
            return std::nullopt;
        }
        auto a = std::move(answers_[id]);
        answers_.erase(id);
        return a;
    }
    std::size_t outstanding() const { return pending_.size(); }
    // Forgets what was sent and counted so far (e.g. the Gets that waited for berthd).
    void resetCounts() {
        pending_.clear();
        answers_.clear();
        sent = answered = cmdFailures7005 = 0;
        errorCodes.clear();
        rttMs.clear();
    }
    // Answers kept for request(); others are only counted (flood answers).
    void keepAnswers(bool keep) { keep_ = keep; }

    std::size_t sent = 0;
    std::size_t answered = 0;
    std::map<std::uint32_t, std::size_t> errorCodes;  // Error messages by err_code
    std::size_t cmdFailures7005 = 0;                  // OperateResp cmd_failure 7005
    std::vector<double> rttMs;

private:
    static agent::CodecConfig codecConfig(const std::string& id) {
        agent::CodecConfig c;
        c.endpointId = id;
        c.servedRequests = {usp::Request::kNotify};
        return c;
    }
    void onRecord(transports::InboundRecord r) {
        auto d = codec_.decode(r.payload);
        if (std::getenv("BERTH_ABUSE_TRACE"))
            std::fprintf(stderr, "rig: %s got kind %d msg %s (%s)\n", endpointId_.c_str(), static_cast<int>(d.kind),
                         d.msgId.c_str(), d.problem ? d.problem->describe().c_str() : "");
        if (d.kind != agent::DecodeKind::kResponse && d.kind != agent::DecodeKind::kError) return;
        auto it = pending_.find(d.msgId);
        if (it == pending_.end()) return;
        double ms = std::chrono::duration<double, std::milli>(RigClock::now() - it->second).count();
        pending_.erase(it);
        ++answered;
        rttMs.push_back(ms);
        if (d.kind == agent::DecodeKind::kError) ++errorCodes[d.msg.body().error().err_code()];
        if (d.msg.body().has_response() && d.msg.body().response().has_operate_resp())
            for (const auto& res : d.msg.body().response().operate_resp().operation_results())
                if (res.has_cmd_failure() && res.cmd_failure().err_code() == 7005) ++cmdFailures7005;
        if (keep_ || d.msgId == awaited_) {
            std::string id = d.msgId;  // the right side of = is evaluated first
            answers_[id] = Answer{std::move(d), ms};
        }
    }

    EventLoop& loop_;
    std::string endpointId_;
    agent::RecordCodec codec_;
    std::unique_ptr<transports::MqttClient> client_;
    std::map<std::string, RigClock::time_point> pending_;
    std::map<std::string, Answer> answers_;
    bool keep_ = true;
    std::string awaited_;  // the msg_id request() waits for
};

// The second controller: on a thread and loop of its own, one Get at a time every
// `interval`, each timed, until stop(). What it measures is berthd's delay, not the
// flooding side's.
class Prober {
public:
    Prober(int brokerPort, std::chrono::milliseconds interval) {
        thread_ = std::thread([this, brokerPort, interval] {
            try {
                SystemClock clock;
                EventLoop loop(clock);
                UspController c(loop, brokerPort, kRigOtherId, "probe");
                ready_ = true;
                unsigned n = 0;
                while (!stop_) {
                    auto a = c.request(rigGet("probe-" + std::to_string(++n), {"Device.LocalAgent.EndpointID"}),
                                       std::chrono::seconds(3));
                    {
                        std::lock_guard<std::mutex> lock(mu_);
                        if (a)
                            rtt_.push_back(a->rttMs);
                        else
                            ++unanswered_;
                    }
                    auto next = RigClock::now() + interval;
                    while (!stop_ && RigClock::now() < next)
                        loop.runOnce(std::chrono::milliseconds(5));
                }
            } catch (const std::exception& e) {
                std::lock_guard<std::mutex> lock(mu_);
                failure_ = e.what();
                ready_ = true;
            }
        });
        while (!ready_)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ~Prober() { stop(); }
    void stop() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    // Clears what was measured so far (e.g. after the warm-up).
    void reset() {
        std::lock_guard<std::mutex> lock(mu_);
        rtt_.clear();
        unanswered_ = 0;
    }
    std::vector<double> rtts() {
        std::lock_guard<std::mutex> lock(mu_);
        return rtt_;
    }
    std::size_t unanswered() {
        std::lock_guard<std::mutex> lock(mu_);
        return unanswered_;
    }
    std::string failure() {
        std::lock_guard<std::mutex> lock(mu_);
        return failure_;
    }

private:
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::atomic<bool> ready_{false};
    std::mutex mu_;
    std::vector<double> rtt_;
    std::size_t unanswered_ = 0;
    std::string failure_;
};

}  // namespace berth::bench
