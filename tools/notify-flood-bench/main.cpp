// berth-notify-flood-bench: what the subscription flood of issue 12 costs now.
//   1. time for N subscription Adds (ValueChange on `Device.`, in process, caps off);
//   2. notify cost per change with N subscriptions on other subtrees plus one that
//      covers the change (in process): with the index it does not grow with N;
//      and the cost of one more Subscription Add with N `Device.` subscriptions
//      (the bookkeeping counter no longer fans out to them);
//   3. berthd's time to stop on SIGTERM in the middle of a flood of Adds over MQTT
//      (a loopback mosquitto and berthd as a process, started here and stopped by PID).
// Usage: berth-notify-flood-bench [--quick] [--in-process]
//   --in-process: parts 1 and 2 only (no broker, no berthd; what runs under qemu-user)

#include <fcntl.h>
#include <mqtt/async_client.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "berth/agent/codec.h"
#include "berth/bench/support.h"
#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/fd.h"
#include "berth/core/log.h"
#include "berth/core/process.h"
#include "berth/datamodel/engine.h"
#include "berth/agent/notifier.h"

using namespace berth;
using namespace std::chrono_literals;
using BenchClock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

const std::string kCtrl = "Device.LocalAgent.Controller.1.";
const std::string kEndpoint = "proto::bench-controller";
constexpr const char* kAgentId = "os::012345-0001";
constexpr const char* kAgentTopic = "usp/agent/os::012345-0001";

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "berth-notify-flood-bench: %s\n", what.c_str());
    std::exit(1);
}

double msSince(BenchClock::time_point t0) {
    return std::chrono::duration<double, std::milli>(BenchClock::now() - t0).count();
}

// An engine in memory, one full-access controller, a notifier without caps whose
// SendFn counts.
struct Setup {
    SystemClock clock;
    EventLoop loop{clock};
    std::unique_ptr<dm::Engine> engine;
    std::unique_ptr<agent::Notifier> notifier;
    std::size_t notifies = 0;

    Setup() {
        dm::EngineOptions eo;
        eo.clock = &clock;
        auto e = dm::Engine::open(eo);
        if (!e) die("engine: " + e.error().describe());
        engine = std::move(*e);
        auto role =
            engine->addInstance("Device.LocalAgent.ControllerTrust.Role.", {{"Name", "Full"}, {"Enable", "true"}});
        if (!role) die(role.error().describe());
        if (!engine->addInstance(*role + "Permission.", {{"Enable", "true"},
                                                         {"Order", "1"},
                                                         {"Targets", "Device."},
                                                         {"Param", "rwxn"},
                                                         {"Obj", "rwxn"},
                                                         {"InstantiatedObj", "rwxn"},
                                                         {"CommandEvent", "rwxn"}}))
            die("permission");
        if (!engine->addInstance("Device.LocalAgent.Controller.",
                                 {{"EndpointID", kEndpoint},
                                  {"Enable", "true"},
                                  {"OnBoardingComplete", "true"},
                                  {"AssignedRole", role->substr(0, role->size() - 1)}}))
            die("controller");
        agent::NotifierOptions o;
        o.maxSubscriptions = 0;
        o.maxSubscriptionsPerController = 0;
        auto n =
            agent::Notifier::create(loop, clock, *engine, o, [this](const std::string&, const usp::Msg&) -> Status {
                ++notifies;
                return {};
            });
        if (!n) die("notifier: " + n.error().describe());
        notifier = std::move(*n);
        engine->addListener(notifier.get());
        if (!notifier->registerWithEngine()) die("register");
        notifier->start();
    }
    ~Setup() {
        engine->removeListener(notifier.get());
        notifier.reset();
    }

    void subscribe(const std::string& refs) {
        dm::AddRequest req;
        req.objects.push_back(dm::CreateObject{
            "Device.LocalAgent.Subscription.",
            {{"Enable", "true", true}, {"NotifType", "ValueChange", true}, {"ReferenceList", refs, true}}});
        notifier->setOriginator(kCtrl);
        auto r = engine->add(req, dm::Permissions::fullAccess());
        notifier->clearOriginator();
        if (r.error) die("subscribe " + refs + ": " + r.error->message);
    }
    void set(const std::string& value) {
        dm::SetRequest req;
        req.objects.push_back(dm::UpdateObject{kCtrl, {{"ProvisioningCode", value, true}}});
        auto r = engine->set(req, dm::Permissions::fullAccess());
        if (r.error) die("set: " + r.error->message);
    }
};

// Subtrees that a change of Controller.1.ProvisioningCode is not in.
const std::vector<std::string> kOtherRefs = {
    "Device.DeviceInfo.",
    "Device.MQTT.Client.",
    "Device.LocalAgent.MTP.",
    "Device.LocalAgent.ControllerTrust.",
    "Device.DeviceInfo.SerialNumber",
    "Device.LocalAgent.MTP.*.Enable",
    "Device.LocalAgent.Controller.2.",
};

void inProcess(const std::vector<std::size_t>& sizes, int rounds) {
    std::printf("%-8s %16s %22s %26s %24s\n", "N subs", "N Adds (ms)", "per Add, last 10 (us)",
                "per change, 1 of N (us)", "Add with N Device. (us)");
    for (std::size_t n : sizes) {
        // 1 and the last column: N subscriptions on Device.
        double addsMs = 0, lastAddsUs = 0, oneMoreUs = 0;
        {
            Setup s;
            auto t0 = BenchClock::now();
            for (std::size_t i = 0; i < n; ++i) {
                if (i + 10 == n) {
                    addsMs = msSince(t0);
                    t0 = BenchClock::now();
                }
                s.subscribe("Device.");
            }
            lastAddsUs = msSince(t0) * 1000.0 / 10.0;
            addsMs += msSince(t0);
            s.notifies = 0;
            auto t1 = BenchClock::now();
            s.subscribe("Device.");
            oneMoreUs = msSince(t1) * 1000.0;
            if (s.notifies != 0) die("a Subscription Add notified Device. subscriptions");
        }
        // 2: N subscriptions elsewhere plus one on the changed parameter.
        double perChangeUs = 0;
        {
            Setup s;
            for (std::size_t i = 0; i < n; ++i)
                s.subscribe(kOtherRefs[i % kOtherRefs.size()]);
            s.subscribe(kCtrl + "ProvisioningCode");
            s.notifies = 0;
            auto t0 = BenchClock::now();
            for (int r = 0; r < rounds; ++r)
                s.set("v" + std::to_string(r));
            perChangeUs = msSince(t0) * 1000.0 / rounds;
            if (s.notifies != static_cast<std::size_t>(rounds)) die("expected one Notify per change");
        }
        std::printf("%-8zu %16.1f %22.1f %26.1f %24.1f\n", n, addsMs, lastAddsUs, perChangeUs, oneMoreUs);
    }
}

// ---- berthd over MQTT -------------------------------------------------------------

std::unique_ptr<ChildProcess> spawn(std::vector<std::string> argv, const fs::path& log) {
    SpawnOptions o;
    o.argv = std::move(argv);
    UniqueFd fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    o.stdoutFd = fd.get();
    o.stderrFd = fd.get();
    auto c = ChildProcess::spawn(o);
    if (!c) die("cannot start " + o.argv[0] + ": " + c.error().describe());
    return std::move(*c);
}

struct Owned {
    std::unique_ptr<ChildProcess> broker;
    std::unique_ptr<ChildProcess> agent;
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

std::string addMsg(const std::string& id) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(id);
    m.mutable_header()->set_msg_type(usp::Header::ADD);
    auto* obj = m.mutable_body()->mutable_request()->mutable_add()->add_create_objs();
    obj->set_obj_path("Device.LocalAgent.Subscription.");
    for (auto [k, v] : {std::pair{"Enable", "true"}, {"NotifType", "ValueChange"}, {"ReferenceList", "Device."}}) {
        auto* p = obj->add_param_settings();
        p->set_param(k);
        p->set_value(v);
        p->set_required(true);
    }
    agent::RecordCodec codec(agent::CodecConfig{"self::berthctl"});
    auto rec = codec.encodeMsg(m, kAgentId);
    if (!rec) die(rec.error().describe());
    return *rec;
}

// Floods berthd with `adds` Adds (no waiting for answers), sends SIGTERM after
// `signalAfter` of them and returns the milliseconds until berthd has exited.
double stopDuringFlood(std::size_t adds, std::size_t signalAfter, bool& exitedCleanly) {
    Owned owned;
    char templ[] = "/tmp/berth-flood-bench-XXXXXX";
    if (!::mkdtemp(templ)) die("mkdtemp failed");
    owned.dir = templ;
    ::chmod(templ, 0755);
    int port = bench::freeLoopbackPort();
    if (!port) die("no free port");
    std::ofstream(owned.dir / "mosquitto.conf") << "persistence false\nallow_anonymous true\nlog_type error\n"
                                                << "max_queued_messages 100000\nlistener " << port << " 127.0.0.1\n";
    owned.broker = spawn({"mosquitto", "-c", (owned.dir / "mosquitto.conf").string()}, owned.dir / "mosquitto.log");
    auto deadline = BenchClock::now() + 10s;
    while (!bench::loopbackPortOpen(port) && BenchClock::now() < deadline)
        std::this_thread::sleep_for(20ms);
    if (!bench::loopbackPortOpen(port)) die("mosquitto did not start");
    auto conf = bench::readText(BERTH_EXAMPLE_CONF);
    const std::string key = "Device.MQTT.Client.1.BrokerPort \"";
    auto at = conf.find(key);
    if (at == std::string::npos) die("example configuration has no BrokerPort");
    conf = conf.substr(0, at + key.size()) + std::to_string(port) + conf.substr(conf.find('"', at + key.size()));
    std::ofstream(owned.dir / "berth.conf") << conf;
    owned.agent = spawn({BERTHD_BIN, "--config", (owned.dir / "berth.conf").string(), "--db",
                         (owned.dir / "berth.db").string(), "--log-level", "warn"},
                        owned.dir / "berthd.log");

    const std::string topic = "usp/controller/berthctl";
    mqtt::async_client client("tcp://127.0.0.1:" + std::to_string(port), "flood-bench-" + std::to_string(::getpid()),
                              mqtt::create_options(MQTTVERSION_5, 100000));
    std::atomic<std::size_t> answers{0};
    client.set_message_callback([&](mqtt::const_message_ptr) { ++answers; });
    mqtt::connect_options opts;
    opts.set_mqtt_version(MQTTVERSION_5);
    client.connect(opts)->wait();
    client.subscribe(topic, 1)->wait();
    mqtt::properties props;
    props.add(mqtt::property(mqtt::property::RESPONSE_TOPIC, topic));
    // berthd answers once it has subscribed to its topic.
    deadline = BenchClock::now() + 15s;
    while (answers == 0 && BenchClock::now() < deadline) {
        auto rec = addMsg("probe");
        client.publish(std::make_shared<mqtt::message>(kAgentTopic, rec.data(), rec.size(), 1, false, props))->wait();
        std::this_thread::sleep_for(200ms);
    }
    if (answers == 0) die("berthd does not answer (log in " + owned.dir.string() + ")");
    std::vector<mqtt::delivery_token_ptr> tokens;
    for (std::size_t i = 0; i < adds; ++i) {
        auto rec = addMsg("flood-" + std::to_string(i));
        tokens.push_back(
            client.publish(std::make_shared<mqtt::message>(kAgentTopic, rec.data(), rec.size(), 1, false, props)));
        if (i + 1 == signalAfter) break;
    }
    // The signal goes while the Adds are still streaming in.
    std::printf("  %zu Adds handed to the client, %zu answered when SIGTERM was sent\n", tokens.size(), answers.load());
    auto t0 = BenchClock::now();
    (void)owned.agent->signal(SIGTERM);
    auto st = owned.agent->waitFor(30s);
    double took = msSince(t0);
    exitedCleanly = st && st->exited;
    for (auto& t : tokens)
        t->wait_for(1s);
    try {
        client.disconnect()->wait_for(1s);
    } catch (const std::exception&) {
    }
    return took;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    bool quick = false, inProcessOnly = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (std::strcmp(argv[i], "--in-process") == 0) {
            inProcessOnly = true;
        } else {
            std::fprintf(stderr, "usage: berth-notify-flood-bench [--quick] [--in-process]\n");
            return 2;
        }
    }
    log::Config lc;
    lc.level = log::Level::kError;
    log::configure(lc);

    std::printf("berth-notify-flood-bench: in process (engine in memory, subscription caps off)\n");
    inProcess(quick ? std::vector<std::size_t>{10, 100} : std::vector<std::size_t>{10, 100, 1000, 3000},
              quick ? 200 : 1000);
    if (inProcessOnly) return 0;

    std::printf("\nberthd over MQTT (mosquitto on loopback), SIGTERM during a flood of Adds on Device.:\n");
    for (std::size_t n : quick ? std::vector<std::size_t>{1000} : std::vector<std::size_t>{1000, 3000}) {
        bool clean = false;
        double took = stopDuringFlood(n, n, clean);
        std::printf("  %zu Adds: stopped %.0f ms after SIGTERM (%s)\n", n, took, clean ? "exit" : "killed");
    }
    return 0;
}
