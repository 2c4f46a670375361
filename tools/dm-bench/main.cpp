// Measures the data-model engine in-process:
//   * Get cost per returned parameter for about 100, 1,000 and 10,000 parameters;
//   * Set and Add cost per message with SQLite write-through (WAL, synchronous=FULL) in
//     a temporary directory.
// Usage: berth-dm-bench [--quick]

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include <unistd.h>

#include "berth/datamodel/engine.h"

using namespace berth;
using namespace berth::dm;
using BenchClock = std::chrono::steady_clock;

namespace {

std::unique_ptr<Engine> openEngine(const std::filesystem::path& db) {
    EngineOptions o;
    o.dbPath = db;
    auto e = Engine::open(o);
    if (!e) {
        std::fprintf(stderr, "open failed: %s\n", e.error().describe().c_str());
        std::exit(1);
    }
    return std::move(*e);
}

// Adds Subscription rows until the table holds at least `params` parameters.
void populate(Engine& e, std::size_t params) {
    const std::size_t perRow = e.schema().findObject("Device.LocalAgent.Subscription.{i}.")->params().size();
    Engine::Batch b(e);
    for (std::size_t i = 0; i * perRow < params; ++i) {
        auto r = e.addInstance("Device.LocalAgent.Subscription.",
                               {{"ID", "sub-" + std::to_string(i)}, {"Recipient", "Device.LocalAgent.Controller.1"},
                                {"NotifType", "ValueChange"}, {"ReferenceList", "Device.LocalAgent.EndpointID"}});
        if (!r) {
            std::fprintf(stderr, "populate: %s\n", r.error().describe().c_str());
            std::exit(1);
        }
    }
}

void benchGet(std::size_t target, bool quick) {
    auto e = openEngine({});
    if (!e->addInstance("Device.LocalAgent.Controller.", {{"EndpointID", "c"}})) std::exit(1);
    populate(*e, target);
    GetRequest req;
    req.paths = {"Device.LocalAgent.Subscription."};
    const Permissions full = Permissions::fullAccess();
    std::size_t params = 0;
    for (const auto& o : e->get(req, full).results[0].resolved) params += o.params.size();
    const std::size_t budget = quick ? 2'000'000 : 20'000'000;  // parameters to read in total
    const std::size_t iters = std::max<std::size_t>(5, budget / params);
    std::size_t sink = 0;
    auto t0 = BenchClock::now();
    for (std::size_t i = 0; i < iters; ++i) sink += e->get(req, full).results[0].resolved.size();
    double ns = std::chrono::duration<double, std::nano>(BenchClock::now() - t0).count();
    std::printf("Get  %6zu params: %8.1f ns/param  (%zu messages, %.1f us/message)%s\n", params,
                ns / static_cast<double>(iters * params), iters, ns / 1000.0 / static_cast<double>(iters), sink ? "" : " ");
}

void benchWrites(bool quick) {
    auto dir = std::filesystem::temp_directory_path() / ("berth-dm-bench-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    {
        auto e = openEngine(dir / "dm.db");
        if (!e->addInstance("Device.LocalAgent.Controller.", {{"EndpointID", "c"}})) std::exit(1);
        populate(*e, 100);
        const Permissions full = Permissions::fullAccess();
        const int n = quick ? 100 : 500;
        auto t0 = BenchClock::now();
        for (int i = 0; i < n; ++i) {
            SetRequest s;
            s.objects.push_back({"Device.LocalAgent.Subscription.1.",
                                 {{"NotifExpiration", std::to_string(i + 1), true}, {"Enable", i % 2 ? "true" : "false", true}}});
            if (e->set(s, full).error) std::exit(1);
        }
        double setUs = std::chrono::duration<double, std::micro>(BenchClock::now() - t0).count() / n;
        t0 = BenchClock::now();
        for (int i = 0; i < n; ++i) {
            AddRequest a;
            a.objects.push_back({"Device.LocalAgent.Controller.1.BootParameter.",
                                 {{"ParameterName", "Device.X" + std::to_string(i), true}, {"Enable", "true", true}}});
            auto r = e->add(a, full);
            if (r.error || !r.results[0].success) std::exit(1);
        }
        double addUs = std::chrono::duration<double, std::micro>(BenchClock::now() - t0).count() / n;
        std::printf("Set  (2 params, SQLite WAL synchronous=FULL): %8.1f us/message\n", setUs);
        std::printf("Add  (1 row, 2 params + Alias, same DB):      %8.1f us/message\n", addUs);
    }
    std::filesystem::remove_all(dir);
}

}  // namespace

int main(int argc, char** argv) {
    bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    for (std::size_t n : {100u, 1000u, 10000u}) benchGet(n, quick);
    benchWrites(quick);
    return 0;
}
