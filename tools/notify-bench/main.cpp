// Measures the notifier in-process:
//   * latency from a controller Set (Engine::set) to the ValueChange Notify reaching the
//     SendFn, with the model in memory and with SQLite write-through in a temp directory;
//   * the cost of matching one change against 10, 100 and 1000 enabled subscriptions
//     (a mix of parameter paths, wildcards, object paths and a few search expressions),
//     for a change no subscription covers and for one that two of them cover.
// Usage: berth-notify-bench [--quick]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/log.h"
#include "berth/datamodel/engine.h"
#include "berth/agent/notifier.h"

using namespace berth;
using BenchClock = std::chrono::steady_clock;

namespace {

const std::string kCtrl = "Device.LocalAgent.Controller.1.";
const std::string kEndpoint = "proto::bench-controller";

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "berth-notify-bench: %s\n", what.c_str());
    std::exit(1);
}

struct Setup {
    SystemClock clock;
    EventLoop loop{clock};
    std::unique_ptr<dm::Engine> engine;
    std::unique_ptr<agent::Notifier> notifier;
    BenchClock::time_point received{};
    std::size_t notifies = 0;

    explicit Setup(const std::filesystem::path& db) {
        dm::EngineOptions eo;
        eo.dbPath = db;
        eo.clock = &clock;
        auto e = dm::Engine::open(eo);
        if (!e) die("engine: " + e.error().describe());
        engine = std::move(*e);
        auto role = engine->addInstance("Device.LocalAgent.ControllerTrust.Role.", {{"Name", "Full"}, {"Enable", "true"}});
        if (!role) die(role.error().describe());
        if (!engine->addInstance(*role + "Permission.", {{"Enable", "true"}, {"Order", "1"}, {"Targets", "Device."},
                                                         {"Param", "rwxn"}, {"Obj", "rwxn"}, {"InstantiatedObj", "rwxn"},
                                                         {"CommandEvent", "rwxn"}}))
            die("permission");
        if (!engine->addInstance("Device.LocalAgent.Controller.", {{"EndpointID", kEndpoint},
                                                                   {"Enable", "true"},
                                                                   {"OnBoardingComplete", "true"},
                                                                   {"AssignedRole", role->substr(0, role->size() - 1)}}))
            die("controller");
        agent::NotifierOptions o;
        if (!db.empty()) o.queueDbPath = db.string() + ".notify";
        // The matching figures need up to 1000 rows for one controller: caps off.
        o.maxSubscriptions = 0;
        o.maxSubscriptionsPerController = 0;
        auto n = agent::Notifier::create(loop, clock, *engine, o, [this](const std::string&, const usp::Msg&) -> Status {
            received = BenchClock::now();
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
        req.objects.push_back(dm::CreateObject{"Device.LocalAgent.Subscription.",
                                               {{"Enable", "true", true}, {"NotifType", "ValueChange", true}, {"ReferenceList", refs, true}}});
        notifier->setOriginator(kCtrl);
        auto r = engine->add(req, dm::Permissions::fullAccess());
        notifier->clearOriginator();
        if (r.error) die("subscribe " + refs + ": " + r.error->message);
    }
};

struct Stats {
    double median, p99, mean;
};

Stats stats(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    double sum = 0;
    for (double x : v) sum += x;
    return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)], sum / static_cast<double>(v.size())};
}

void latency(const char* label, const std::filesystem::path& db, int rounds) {
    Setup s(db);
    s.subscribe(kCtrl + "ProvisioningCode");
    std::vector<double> us;
    for (int i = 0; i < rounds; ++i) {
        dm::SetRequest req;
        req.objects.push_back(dm::UpdateObject{kCtrl, {{"ProvisioningCode", "v" + std::to_string(i), true}}});
        std::size_t before = s.notifies;
        auto t0 = BenchClock::now();
        auto r = s.engine->set(req, dm::Permissions::fullAccess());
        if (r.error || s.notifies != before + 1) die("set did not notify");
        us.push_back(std::chrono::duration<double, std::micro>(s.received - t0).count());
    }
    Stats st = stats(us);
    std::printf("Set -> Notify at SendFn, %-28s median %8.1f us   p99 %8.1f us   mean %8.1f us  (%d Sets)\n", label,
                st.median, st.p99, st.mean, rounds);
}

void matching(std::size_t subscriptions, int rounds) {
    Setup s({});
    for (int i = 1; i <= 10; ++i)
        if (!s.engine->addInstance(kCtrl + "BootParameter.", {{"ParameterName", "Device.DeviceInfo.P" + std::to_string(i)}}))
            die("boot parameter");
    for (std::size_t i = 0; i < subscriptions; ++i) {
        std::string n = std::to_string(i + 1);
        switch (i % 10) {
            case 0: case 1: case 2: case 3:
                s.subscribe(kCtrl + "BootParameter." + n + ".Enable");
                break;
            case 4: case 5:
                s.subscribe("Device.LocalAgent.Controller.*.BootParameter." + n + ".ParameterName");
                break;
            case 6: case 7:
                s.subscribe("Device.LocalAgent.Subscription." + n + ".");
                break;
            case 8:
                s.subscribe("Device.LocalAgent.MTP.*.Enable," + kCtrl + "MTP." + n + ".Protocol");
                break;
            default:
                // Search expressions cost a model lookup once the structure matches.
                s.subscribe("Device.LocalAgent.Controller.[EndpointID==\"" + kEndpoint + "\"].BootParameter." + n + ".Enable");
                break;
        }
    }
    auto run = [&](const std::string& path, std::size_t expect) {
        std::size_t before = s.notifies;
        auto t0 = BenchClock::now();
        for (int i = 0; i < rounds; ++i) s.notifier->onValueChange(path, "x");
        double us = std::chrono::duration<double, std::micro>(BenchClock::now() - t0).count() / rounds;
        if (s.notifies - before != expect * static_cast<std::size_t>(rounds)) die("unexpected match count for " + path);
        return us;
    };
    double miss = run("Device.DeviceInfo.ProvisioningCode", 0);
    // BootParameter.10.Enable: covered by the search-expression entry (i=9) only;
    // BootParameter.1.Enable by the plain entry (i=0).
    double hit = run(kCtrl + "BootParameter.1.Enable", 1);
    double hitSearch = run(kCtrl + "BootParameter.10.Enable", subscriptions >= 10 ? 1 : 0);
    std::printf("match one change against %4zu subscriptions: no match %7.2f us   1 match %7.2f us   1 search match %7.2f us\n",
                subscriptions, miss, hit, hitSearch);
}

}  // namespace

int main(int argc, char** argv) {
    bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    log::Config lc;
    lc.level = log::Level::kWarn;
    log::configure(lc);
    int rounds = quick ? 200 : 2000;

    latency("model in memory:", {}, rounds);
    char tmpl[] = "/tmp/berth-notify-bench-XXXXXX";
    if (!::mkdtemp(tmpl)) die("mkdtemp failed");
    std::filesystem::path dir(tmpl);
    latency("SQLite write-through (FULL):", dir / "model.db", quick ? 50 : 300);
    std::filesystem::remove_all(dir);

    for (std::size_t n : {10, 100, 1000}) matching(n, quick ? 200 : 2000);
    return 0;
}
