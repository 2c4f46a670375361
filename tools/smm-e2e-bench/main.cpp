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
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
#include "berth/core/fd.h"
#include "berth/core/log.h"
#include "berth/core/process.h"
#include "berth/oci/layout_writer.h"
#include "berth/transports/mqtt.h"
#include "berth/bench/support.h"
#include "oci_test_util.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using berth::bench::readText;

namespace {

const std::string kAgentId = "os::012345-0001";
const std::string kAgentTopic = "usp/agent/os::012345-0001";
const std::string kControllerId = "self::berthctl";
const std::string kControllerTopic = "usp/controller/berthctl";

// Thrown instead of exiting, so the processes, containers and directories the run owns
// are cleaned up on the way out.
struct Failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

[[noreturn]] void die(const std::string& what) { throw Failure(what); }

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }
double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

int freePort() {
    int port = berth::bench::freeLoopbackPort();
    if (port == 0) die("cannot find a free port");
    return port;
}

std::string setValue(std::string conf, const std::string& key, const std::string& value) {
    auto line = "\n" + key + " \"";
    auto at = conf.find(line);
    if (at == std::string::npos) return conf + "\n" + key + " \"" + value + "\"\n";
    auto start = at + line.size();
    auto end = conf.find('"', start);
    return conf.substr(0, start) + value + conf.substr(end);
}

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

void waitPort(int port, const std::string& what) {
    auto deadline = Clock::now() + 15s;
    while (!berth::bench::loopbackPortOpen(port) && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
    if (!berth::bench::loopbackPortOpen(port)) die(what + " did not start");
}

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
        if (!client) die(client.error().describe());
        client_ = std::move(*client);
        client_->onRecord([this](berth::transports::InboundRecord r) { onRecord(std::move(r)); });
        if (auto st = client_->start(); !st) die(st.error().describe());
        if (!runUntil([&] { return client_->status() == berth::transports::MtpStatus::kUp; }, 15s))
            die("cannot connect to the broker");
    }
    ~Controller() { client_->stop(); }

    void send(const usp::Msg& m) {
        auto rec = codec_.encodeMsg(m, kAgentId);
        if (!rec) die(rec.error().describe());
        if (auto st = client_->send({std::move(*rec), kAgentTopic, berth::transports::RecordKind::kOther}); !st)
            die(st.error().describe());
    }
    // Sends and waits for the answer to msg_id.
    usp::Msg request(const usp::Msg& m, std::chrono::milliseconds timeout = 10s) {
        std::string id = m.header().msg_id();
        send(m);
        if (!runUntil([&] { return answers_.count(id) > 0; }, timeout)) die("no answer to " + id);
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

struct Owned {
    std::vector<std::unique_ptr<berth::ChildProcess>> procs;  // stopped in reverse order
    fs::path dir;
    std::string cgroup;
    ~Owned() {
        for (auto it = procs.rbegin(); it != procs.rend(); ++it) {
            auto& p = *it;
            if (p && p->running()) {
                (void)p->signal(SIGTERM);
                if (!p->waitFor(5s)) (void)p->signal(SIGKILL);
            }
        }
        procs.clear();
        // Containers outlive berthd by design: remove what an aborted run left.
        std::string root = (dir / "ee" / "state" / "runtime").string();
        if (fs::exists(root)) {
            berth::SpawnOptions o;
            o.argv = {"runc", "--root", root, "list", "-q"};
            if (auto l = berth::runCommand(o, 30s)) {
                std::istringstream in(l->out);
                std::string id;
                while (std::getline(in, id)) {
                    if (id.empty()) continue;
                    berth::SpawnOptions d;
                    d.argv = {"runc", "--root", root, "delete", "--force", id};
                    (void)berth::runCommand(d, 30s);
                }
            }
        }
        for (const char* ctl : {"memory", "cpu", "cpuacct", "pids", "cpuset", "devices", "freezer", "blkio", "systemd", ""}) {
            fs::path base = fs::path("/sys/fs/cgroup") / ctl / cgroup.substr(1);
            ::rmdir((base / "apps").c_str());
            ::rmdir(base.c_str());
        }
        std::error_code ec;
        if (std::getenv("KEEP")) std::fprintf(stderr, "berth-smm-e2e-bench: kept %s\n", dir.c_str());
        else if (!dir.empty()) fs::remove_all(dir, ec);
    }
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

    Owned owned;
    char templ[] = "/tmp/berth-smm-e2e-bench-XXXXXX";
    if (!::mkdtemp(templ)) die("mkdtemp failed");
    owned.dir = templ;
    ::chmod(templ, 0755);
    owned.cgroup = "/berth-smm-e2e-bench-" + std::to_string(::getpid());
    fs::create_directories(owned.dir / "www");

    // The image.
    berth::oci::testing::makeBusyboxRootfs(owned.dir / "rootfs");
    std::string tar = (owned.dir / "layer.tar").string();
    if (!berth::oci::tarDirectory((owned.dir / "rootfs").string(), tar, false)) die("tar");
    berth::oci::ImageDefinition def;
    def.cmd = {"/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"};
    def.annotations = {{"org.opencontainers.image.title", "bench"},
                       {"org.opencontainers.image.vendor", "example.com"},
                       {"org.opencontainers.image.version", "1.0.0"}};
    auto img = berth::oci::testing::buildImage(owned.dir / "www", "bench", {tar}, def);
    double archiveKiB = static_cast<double>(fs::file_size(img.archive)) / 1024.0;

    // Web server, broker, berthd.
    int web = freePort();
    owned.procs.push_back(spawn({"python3", "-m", "http.server", "--bind", "127.0.0.1", std::to_string(web),
                                 "--directory", (owned.dir / "www").string()},
                                owned.dir / "http.log"));
    waitPort(web, "python3 http.server");
    std::string url = "http://127.0.0.1:" + std::to_string(web) + "/bench.tar";
    int port = freePort();
    std::ofstream(owned.dir / "mosquitto.conf") << "persistence false\nallow_anonymous true\nlog_type error\n"
                                                << "listener " << port << " 127.0.0.1\n";
    owned.procs.push_back(spawn({"mosquitto", "-c", (owned.dir / "mosquitto.conf").string()}, owned.dir / "mosquitto.log"));
    waitPort(port, "mosquitto");
    std::string conf = readText(BERTH_EXAMPLE_CONF);
    const std::string ee = "Device.SoftwareModules.ExecEnv.1.";
    conf = setValue(conf, "Device.MQTT.Client.1.BrokerPort", std::to_string(port));
    conf = setValue(conf, ee + "X_BERTH_CgroupParent", owned.cgroup + "/apps");
    conf = setValue(conf, ee + "X_BERTH_HostObjectPrefixes", (owned.dir / "host").string());
    conf = setValue(conf, ee + "X_BERTH_StorageDir", (owned.dir / "ee" / "store").string());
    conf = setValue(conf, ee + "X_BERTH_StateDir", (owned.dir / "ee" / "state").string());
    std::ofstream(owned.dir / "berth.conf") << conf;
    owned.procs.push_back(spawn({BERTHD_BIN, "--config", (owned.dir / "berth.conf").string(), "--db",
                                 (owned.dir / "db" / "berth.db").string(), "--log-level", "warn"},
                                owned.dir / "berthd.log"));

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
        if (!up) die("berthd does not answer or its ExecEnv is not Up; see " + (owned.dir / "berthd.log").string());
    }
    for (auto [type, ref] : std::vector<std::pair<std::string, std::string>>{
             {"Event", "Device.SoftwareModules.DUStateChange!"},
             {"ValueChange", "Device.SoftwareModules.ExecutionUnit.*.Status"}}) {
        auto answer = ctl.request(addSubscriptionMsg(id("sub"), type, ref));
        if (!answer.body().has_response()) die("cannot add the " + type + " subscription");
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
            die("no DUStateChange! for InstallDU");
        auto t1 = Clock::now();
        if (countEvents("Failed") > 0) die("InstallDU failed; see " + (owned.dir / "berthd.log").string());
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
            die("no ValueChange Status=Active for " + eu);
        }
        auto t3 = Clock::now();
        install.push_back(ms(t1 - t0));
        activate.push_back(ms(t3 - t2));
        std::size_t uninstalledBefore = countEvents("Uninstalled");
        ctl.send(operateMsg(id("uninstall"), du + "Uninstall()", {}));
        if (!ctl.runUntil([&] { return countEvents("Uninstalled") > uninstalledBefore; }, 60s))
            die("no DUStateChange! for Uninstall");
        ctl.notifies.clear();
    }

    // The bare and in-process figures, from berth-smm-bench.
    berth::SpawnOptions so;
    so.argv = {BERTH_SMM_BENCH_BIN, std::to_string(iterations)};
    auto bench = berth::runCommand(so, 600s);
    if (!bench || !bench->status.success()) die("berth-smm-bench failed: " + (bench ? bench->err : bench.error().describe()));
    double barePull = figure(bench->out, "bare   ImageStore::pull");
    double bareStart = figure(bench->out, "bare   ContainerManager::create+start");
    double inInstall = figure(bench->out, "berth  InstallDU()");
    double inActivate = figure(bench->out, "berth  SetRequestedState(Active)");

    std::printf("berth-smm-e2e-bench: busybox image %.0f KiB, %d iterations, medians\n", archiveKiB, iterations);
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

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const Failure& f) {
        std::fprintf(stderr, "berth-smm-e2e-bench: %s\n", f.what());
        return 1;
    }
}
