// Downloads through berthd: ten InstallDUs stalled mid-download do not delay an EU start
// (they run on their own pool), and Request.{i}.Cancel() from the controller ends a
// stalled one at once with OperationComplete 7023, leaving nothing in staging.
#include <catch2/catch.hpp>
#include <chrono>

#include "e2e_fixture.h"

using namespace berth::smme2e;
using namespace std::chrono_literals;
using berth::testing::waitUntil;

namespace {

void operateAsync(Fixture& f, const std::string& command, std::vector<std::string> args, const std::string& key) {
    std::vector<std::string> argv{"operate", command};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--key", key});
    auto r = f.ctl(argv);
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
}

std::optional<usp::Notify> completionFor(const Listener& l, const std::string& key) {
    for (auto& n : l.operationCompletes())
        if (n.oper_complete().command_key() == key) return n;
    return std::nullopt;
}

// The Device.LocalAgent.Request.{i}. row of the call with this CommandKey.
std::string requestRow(Fixture& f, const std::string& key) {
    for (const auto& row : f.instances("Device.LocalAgent.Request."))
        if (f.get(row + "CommandKey") == key) return row;
    return {};
}

}  // namespace

TEST_CASE(
    "Ten InstallDUs stalled mid-download over MQTT do not delay an EU start, and Request Cancel() ends each at "
    "once with 7023 and an empty staging area",
    "[smm_e2e][hardening]") {
    // One controller may run 8 asynchronous commands by default (--max-async-operations);
    // ten stalled installs from one controller need a little more.
    Fixture f({}, {"--max-async-operations", "16"});
    std::string quick = buildApp(f.www, "quick", "1.0.0");
    std::string stuck = buildApp(f.www, "stuck", "1.0.0");
    StallingServer slow(f.www, f.tmp / "slow.log");
    Listener l(f.broker->port(), f.tmp / "listener.out");
    f.subscribeListener();

    auto inst = operateWait(f, kInstallDu, {"URL=" + f.http->url(quick)});
    REQUIRE(inst.errCode() == 0);
    auto eus = f.instances(kEuTable);
    REQUIRE(eus.size() == 1);
    const std::string eu = eus[0];

    for (int i = 0; i < 10; ++i)
        operateAsync(f, kInstallDu, {"URL=" + slow.url(stuck)}, "stuck-" + std::to_string(i));
    REQUIRE(waitUntil([&] { return slow.stalled(); }, 30s));

    auto t0 = std::chrono::steady_clock::now();
    f.requestState(eu, "Active");
    REQUIRE(f.waitValue(eu + "Status", "Active", 20s));
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
    for (int i = 0; i < 10; ++i)
        CHECK_FALSE(completionFor(l, "stuck-" + std::to_string(i)));

    for (int i = 0; i < 10; ++i) {
        std::string key = "stuck-" + std::to_string(i);
        std::string row = requestRow(f, key);
        INFO(key << "\nberthd log:\n" << f.agent->log());
        REQUIRE_FALSE(row.empty());
        auto c0 = std::chrono::steady_clock::now();
        auto r = f.ctl({"operate", row + "Cancel()"});
        INFO(r.describe());
        REQUIRE(r.exitCode == 0);
        REQUIRE(waitUntil([&] { return completionFor(l, key).has_value(); }, 10s));
        CHECK(std::chrono::steady_clock::now() - c0 < 3s);
        auto oc = completionFor(l, key);
        REQUIRE(oc->oper_complete().has_cmd_failure());
        CHECK(oc->oper_complete().cmd_failure().err_code() == 7023);
    }
    CHECK(waitUntil([&] { return f.filesIn(f.eeStore / "tmp") == 0; }, 10s));
    CHECK(f.instances(kDuTable).size() == 1);
    CHECK(f.get(eu + "Status") == "Active");
    REQUIRE(f.waitAnswering());
    // The download threads are free: another install goes through.
    auto again = operateWait(f, kInstallDu, {"URL=" + f.http->url(stuck)});
    CHECK(again.errCode() == 0);
    CHECK(f.instances(kDuTable).size() == 2);
}
