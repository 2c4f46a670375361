// berth-smm-e2e-bench: what berthd adds on top of SoftwareModules, over MQTT.
//
//   berth-smm-e2e-bench [iterations]     (root, runc, mosquitto, python3, /bin/busybox)
//   KEEP=1 berth-smm-e2e-bench           keeps the work directory (logs) afterwards
//
// Starts mosquitto (loopback, free port), python3's http.server with a busybox image built
// offline, and berthd (the example configuration with its ExecEnv moved into a temporary
// directory), then acts as the controller self::berthctl over MQTT and measures, as
// medians over the iterations:
//   mqtt    Operate(InstallDU) sent -> Notify DUStateChange! (Installed) received
//   mqtt    Operate(SetRequestedState Active) sent -> Notify ValueChange Status=Active received
// and prints them beside berth-smm-bench's figures (run as a child with the same number
// of iterations): bare ImageStore::pull / ContainerManager::create+start and the same two
// operations in-process, so the cost of the USP layer, MQTT and the broker is visible.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <regex>
#include <stdexcept>
#include <sstream>
#include <thread>

#include "berth/agent/codec.h"
#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/bench/support.h"
#include "berth/bench/work_dir.h"
#include "berth/core/log.h"
#include "berth/core/process.h"
#include "berth/transports/mqtt.h"
#include "bench_images.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using berth::bench::fail;
using berth::bench::median;
using berth::bench::millis;
using berth::bench::readText;

namespace {

const std::string kAgentId = "os::012345-0001";
const std::string kAgentTopic = "usp/agent/os::012345-0001";
const std::string kControllerId = "self::berthctl";
const std::string kControllerTopic = "usp/controller/berthctl";

usp::Msg operateMsg(const std::string& id, const std::string& command, const std::map<std::string, std::string>& args) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(id);
    m.mutable_header()->set_msg_type(usp::Header::OPERATE);
    auto* op = m.mutable_body()->mutable_request()->mutable_operate();
    op->set_command(command);
    op->set_command_key(id);
    op->set_send_resp(true);
    for (const auto& [k, v] : args) (*op->mutable_input_args())[k] = v;
    return m;
}

usp::Msg addSubscriptionMsg(const std::string& id, const std::string& type, const std::string& ref) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(id);
    m.mutable_header()->set_msg_type(usp::Header::ADD);
    auto* c = m.mutable_body()->mutable_request()->mutable_add()->add_create_objs();
    c->set_obj_path("Device.LocalAgent.Subscription.");
    for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
             {"ID", id}, {"Enable", "true"}, {"NotifType", type}, {"ReferenceList", ref}}) {
        auto* s = c->add_param_settings();
        s->set_param(k);
        s->set_value(v);
        s->set_required(true);
    }
    return m;
}

// The controller: sends requests, records responses and notifications as they arrive.
class Controller {
public:
    Controller(berth::EventLoop& loop, int port) : loop_(loop), codec_(codecConfig()) {
        berth::transports::MqttClientConfig c;
        c.brokerAddress = "127.0.0.1";
        c.brokerPort = port;
        c.endpointId = kControllerId;
        c.clientId = "berth-smm-e2e-bench-" + std::to_string(::getpid());
        // Notifications go to the controller's configured topic: listen there.
        c.responseTopicConfigured = kControllerTopic;
        c.connectRetryTime = 1s;
        c.connectTimeout = 10s;
        auto client = berth::transports::MqttClient::create(loop, c);
        if (!client) fail(client.error().describe());
        client_ = std::move(*client);
        client_->onRecord([this](berth::transports::InboundRecord r) { onRecord(std::move(r)); });
        if (auto st = client_->start(); !st) fail(st.error().describe());
        if (!runUntil([&] { return client_->status() == berth::transports::MtpStatus::kUp; }, 15s))
            fail("cannot connect to the broker");
    }
    ~Controller() { client_->stop(); }

    void send(const usp::Msg& m) {
        auto rec = codec_.encodeMsg(m, kAgentId);
        if (!rec) fail(rec.error().describe());
        if (auto st = client_->send({std::move(*rec), kAgentTopic, berth::transports::RecordKind::kOther}); !st)
            fail(st.error().describe());
    }
    // Sends and waits for the answer to msg_id.
    usp::Msg request(const usp::Msg& m, std::chrono::milliseconds timeout = 10s) {
        std::string id = m.header().msg_id();
        send(m);
        if (!runUntil([&] { return answers_.count(id) > 0; }, timeout)) fail("no answer to " + id);
        return answers_[id];
    }
    bool runUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
        auto end = Clock::now() + timeout;
        while (!pred() && Clock::now() < end) loop_.runOnce(5ms);
        return pred();
    }

    std::vector<usp::Notify> notifies;
    std::map<std::string, usp::Msg> answers_;

private:
    static berth::agent::CodecConfig codecConfig() {
        berth::agent::CodecConfig c;
        c.endpointId = kControllerId;
        c.servedRequests = {usp::Request::kNotify};
        return c;
    }
    void onRecord(berth::transports::InboundRecord r) {
        auto d = codec_.decode(r.payload);
        if (d.kind == berth::agent::DecodeKind::kResponse || d.kind == berth::agent::DecodeKind::kError) {
            answers_[d.msgId] = d.msg;
            return;
        }
        if (d.kind != berth::agent::DecodeKind::kRequest || !d.msg.body().request().has_notify()) return;
        const auto& n = d.msg.body().request().notify();
        notifies.push_back(n);
        if (n.send_resp()) {
            usp::Msg resp;
            resp.mutable_header()->set_msg_id(d.msgId);
            resp.mutable_header()->set_msg_type(usp::Header::NOTIFY_RESP);
            resp.mutable_body()->mutable_response()->mutable_notify_resp()->set_subscription_id(n.subscription_id());
            send(resp);
        }
    }

    berth::EventLoop& loop_;
    berth::agent::RecordCodec codec_;
    std::unique_ptr<berth::transports::MqttClient> client_;
};

std::optional<std::string> eventArg(const usp::Notify& n, const std::string& key) {
    auto it = n.event().params().find(key);
    if (it == n.event().params().end()) return std::nullopt;
    return it->second;
}

// The ms figure on the line of `out` that contains `label`.
double figure(const std::string& out, const std::string& label) {
    std::istringstream in(out);
    std::string line;
    static const std::regex number(R"(([0-9]+\.[0-9]+) ms)");
    while (std::getline(in, line)) {
        if (line.find(label) == std::string::npos) continue;
        std::smatch m;
        if (std::regex_search(line, m, number)) return std::stod(m[1]);
    }
    return -1;
}

}  // namespace

int run(int argc, char** argv) {
    int iterations = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
    berth::log::configure({berth::log::Level::kError, true, false, "berth"});
    std::signal(SIGPIPE, SIG_IGN);

    berth::bench::WorkDir work("berth-smm-e2e-bench");
    const std::string cgroup = "/berth-smm-e2e-bench-" + std::to_string(::getpid());
    work.cleanCgroup(cgroup);

    // The image, its web server, the broker, berthd.
    auto img = berth::oci::testing::buildIdleImage(work.path(), work / "www");
    int web = berth::bench::startHttpServer(work, work / "www");
    std::string url = "http://127.0.0.1:" + std::to_string(web) + "/bench.tar";
    int port = berth::bench::startMosquitto(work);
    berth::bench::BerthdSetup agent;
    agent.binary = BERTHD_BIN;
    agent.config = readText(BERTH_EXAMPLE_CONF);
    if (agent.config.empty()) fail("cannot read " BERTH_EXAMPLE_CONF);
    agent.dir = work.path();
    agent.brokerPort = port;
    agent.cgroupParent = cgroup + "/apps";
    agent.hostPrefix = work / "host";
    berth::bench::startBerthd(work, agent);

    berth::SystemClock clock;
    berth::EventLoop loop(clock);
    Controller ctl(loop, port);
    int seq = 0;
    auto id = [&](const std::string& what) { return "bench-" + what + "-" + std::to_string(++seq); };
    // berthd answers once it is subscribed to its topic.
    {
        auto deadline = Clock::now() + 30s;
        bool up = false;
        while (!up && Clock::now() < deadline) {
            usp::Msg get;
            std::string gid = id("get");
            get.mutable_header()->set_msg_id(gid);
            get.mutable_header()->set_msg_type(usp::Header::GET);
            get.mutable_body()->mutable_request()->mutable_get()->add_param_paths("Device.SoftwareModules.ExecEnv.1.Status");
            ctl.send(get);
            if (!ctl.runUntil([&] { return ctl.answers_.count(gid) > 0; }, 500ms)) continue;
            for (const auto& rp : ctl.answers_[gid].body().response().get_resp().req_path_results())
                for (const auto& res : rp.resolved_path_results())
                    for (const auto& [k, v] : res.result_params())
                        if (k == "Status" && v == "Up") up = true;
        }
        if (!up) fail("berthd does not answer or its ExecEnv is not Up; see " + (work / "berthd.log").string());
    }
    for (auto [type, ref] : std::vector<std::pair<std::string, std::string>>{
             {"Event", "Device.SoftwareModules.DUStateChange!"},
             {"ValueChange", "Device.SoftwareModules.ExecutionUnit.*.Status"}}) {
        auto answer = ctl.request(addSubscriptionMsg(id("sub"), type, ref));
        if (!answer.body().has_response()) fail("cannot add the " + type + " subscription");
    }

    std::vector<double> install, activate;
    for (int i = 0; i < iterations; ++i) {
        auto countEvents = [&](const std::string& state) {
            std::size_t n = 0;
            for (const auto& x : ctl.notifies)
                if (x.has_event() && eventArg(x, "CurrentState") == state) ++n;
            return n;
        };
        std::size_t installedBefore = countEvents("Installed");
        auto t0 = Clock::now();
        ctl.send(operateMsg(id("install"), "Device.SoftwareModules.InstallDU()", {{"URL", url}}));
        if (!ctl.runUntil([&] { return countEvents("Installed") > installedBefore || countEvents("Failed") > 0; }, 60s))
            fail("no DUStateChange! for InstallDU");
        auto t1 = Clock::now();
        if (countEvents("Failed") > 0) fail("InstallDU failed; see " + (work / "berthd.log").string());
        std::string du, eu;
        for (const auto& x : ctl.notifies)
            if (x.has_event() && eventArg(x, "CurrentState") == "Installed") {
                du = eventArg(x, "DeploymentUnitRef").value_or("") + ".";
                eu = eventArg(x, "ExecutionUnitRefList").value_or("") + ".";
            }
        auto activeSeen = [&] {
            for (const auto& x : ctl.notifies)
                if (x.has_value_change() && x.value_change().param_path() == eu + "Status" &&
                    x.value_change().param_value() == "Active")
                    return true;
            return false;
        };
        auto t2 = Clock::now();
        ctl.send(operateMsg(id("active"), eu + "SetRequestedState()", {{"RequestedState", "Active"}}));
        if (!ctl.runUntil(activeSeen, 60s)) {
            for (const auto& x : ctl.notifies)
                if (x.has_value_change())
                    std::fprintf(stderr, "  got %s = %s\n", x.value_change().param_path().c_str(),
                                 x.value_change().param_value().c_str());
            fail("no ValueChange Status=Active for " + eu);
        }
        auto t3 = Clock::now();
        install.push_back(millis(t1 - t0));
        activate.push_back(millis(t3 - t2));
        std::size_t uninstalledBefore = countEvents("Uninstalled");
        ctl.send(operateMsg(id("uninstall"), du + "Uninstall()", {}));
        if (!ctl.runUntil([&] { return countEvents("Uninstalled") > uninstalledBefore; }, 60s))
            fail("no DUStateChange! for Uninstall");
        ctl.notifies.clear();
    }

    // The bare and in-process figures, from berth-smm-bench.
    berth::SpawnOptions so;
    so.argv = {BERTH_SMM_BENCH_BIN, std::to_string(iterations)};
    auto bench = berth::runCommand(so, 600s);
    if (!bench || !bench->status.success()) fail("berth-smm-bench failed: " + (bench ? bench->err : bench.error().describe()));
    double barePull = figure(bench->out, "bare   ImageStore::pull");
    double bareStart = figure(bench->out, "bare   ContainerManager::create+start");
    double inInstall = figure(bench->out, "berth  InstallDU()");
    double inActivate = figure(bench->out, "berth  SetRequestedState(Active)");

    std::printf("berth-smm-e2e-bench: busybox image %.0f KiB, %d iterations, medians\n", img.archiveKiB, iterations);
    std::printf("%-64s %10s %10s %10s\n", "", "bare", "in-proc", "MQTT");
    std::printf("%-64s %7.1f ms %7.1f ms %7.1f ms\n", "InstallDU() -> DUStateChange! (bare: ImageStore::pull)", barePull,
                inInstall, median(install));
    std::printf("%-64s %7.1f ms %7.1f ms %7.1f ms\n",
                "SetRequestedState(Active) -> Status Active (bare: create+start)", bareStart, inActivate,
                median(activate));
    std::printf("berthd's own overhead (MQTT - in-process): InstallDU %+.1f ms, SetRequestedState %+.1f ms\n",
                median(install) - inInstall, median(activate) - inActivate);
    std::printf("SoftwareModules + berthd over bare oci-runner:  InstallDU %+.1f ms, SetRequestedState %+.1f ms\n",
                median(install) - barePull, median(activate) - bareStart);
    return 0;
}

int main(int argc, char** argv) { return berth::bench::runMain("berth-smm-e2e-bench", argc, argv, run); }
