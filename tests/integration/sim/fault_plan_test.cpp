#include <catch2/catch.hpp>

#include <set>

#include "berth/sim/fault_plan.h"

using namespace berth;
using namespace berth::sim;

TEST_CASE("An endpoint template expands its one conversion with the agent number", "[sim]") {
    REQUIRE(checkTemplate("os::012345-%06d"));
    CHECK(expandTemplate("os::012345-%06d", 42) == "os::012345-000042");
    CHECK(expandTemplate("SIM%d", 1234567) == "SIM1234567");
    CHECK(expandTemplate("100%%-%u", 7) == "100%-7");
}

TEST_CASE("A template without exactly one integer conversion is refused with 7004", "[sim]") {
    for (const char* bad : {"os::012345-0001", "os::%d-%d", "os::%s", "os::%-5d", "%123d"}) {
        auto st = checkTemplate(bad);
        INFO(bad);
        REQUIRE_FALSE(st);
        CHECK(st.error().code == ErrorCode::kInvalidArguments);
    }
}

TEST_CASE("Fault specs name a kind, the agents and when", "[sim]") {
    auto drop = parseFault("drop:10%:every=90s");
    REQUIRE(drop);
    CHECK(drop->kind == FaultKind::kDrop);
    CHECK(drop->share == Approx(0.10));
    CHECK(drop->every == std::chrono::seconds(90));
    auto reboot = parseFault("reboot:3,7-9:at=1500ms");
    REQUIRE(reboot);
    CHECK(reboot->kind == FaultKind::kReboot);
    CHECK(reboot->agents == std::vector<std::uint64_t>{3, 7, 8, 9});
    CHECK(reboot->at == std::chrono::milliseconds(1500));
    auto install = parseFault("install-fail:100%:rate=10%");
    REQUIRE(install);
    CHECK(install->rate == Approx(0.10));
    CHECK(faultIsOperational(install->kind));
    CHECK_FALSE(faultIsOperational(reboot->kind));
    auto slow = parseFault("download-slow:20%:rate=50%,delay=45s");
    REQUIRE(slow);
    CHECK(slow->kind == FaultKind::kDownloadSlow);
    CHECK(slow->rate == Approx(0.50));
    CHECK(slow->delay == std::chrono::seconds(45));
    auto slowDefault = parseFault("download-slow:1-3:rate=100%");
    REQUIRE(slowDefault);
    CHECK(slowDefault->delay == std::chrono::seconds(30));
    auto fail = parseFault("download-fail:5:rate=100%");
    REQUIRE(fail);
    CHECK(fail->kind == FaultKind::kDownloadFail);
    CHECK(fail->agents == std::vector<std::uint64_t>{5});
}

TEST_CASE("Malformed fault specs are refused with 7004 and the spec in the message", "[sim]") {
    for (const char* bad : {"drop", "explode:1:at=1s", "drop:110%:at=1s", "drop:5-2:at=1s", "drop:x:at=1s",
                            "reboot:1:at=10", "reboot:1:when=1s", "drop:1:every=10ms", "install-fail:1:at=1s",
                            "install-fail:1:rate=10%,delay=5s", "download-slow:1:delay=5s", "download-slow:1:rate=5%,delay=0s",
                            "download-fail:1:rate=150%", "download-slow:1:rate=5%,delay=5"}) {
        auto f = parseFault(bad);
        INFO(bad);
        REQUIRE_FALSE(f);
        CHECK(f.error().code == ErrorCode::kInvalidArguments);
        CHECK(f.error().message.find(bad) != std::string::npos);
    }
}

TEST_CASE("A share of agents selects that many agents, the same ones for the same seed", "[sim]") {
    auto spec = parseFault("drop:10%:at=1s");
    REQUIRE(spec);
    FaultPlan a({*spec}, 1, 1000, 7), b({*spec}, 1, 1000, 7), c({*spec}, 1, 1000, 8);
    std::set<std::uint64_t> selA, selC;
    for (std::uint64_t n = 1; n <= 1000; ++n) {
        CHECK(a.faultsFor(n).size() == b.faultsFor(n).size());
        if (!a.faultsFor(n).empty()) selA.insert(n);
        if (!c.faultsFor(n).empty()) selC.insert(n);
    }
    CHECK(selA.size() == 100);
    CHECK(selC.size() == 100);
    CHECK(selA != selC);
    CHECK(a.faultsFor(0).empty());
    CHECK(a.faultsFor(1001).empty());
}

TEST_CASE("The operation-fault hook fails about the given rate of operations, repeatably", "[sim]") {
    auto spec = parseFault("install-fail:100%:rate=10%");
    REQUIRE(spec);
    FaultPlan plan({*spec}, 1, 100, 3);
    int failed = 0;
    for (std::uint64_t n = 1; n <= 100; ++n)
        for (std::uint64_t k = 0; k < 100; ++k) {
            bool f = plan.operationFaulted(FaultKind::kInstallFail, n, k);
            CHECK(f == plan.operationFaulted(FaultKind::kInstallFail, n, k));
            failed += f;
        }
    CHECK(failed > 850);
    CHECK(failed < 1150);
    CHECK_FALSE(plan.operationFaulted(FaultKind::kDownloadFail, 1, 0));
}

TEST_CASE("Operation faults select their agents and return the spec with its delay", "[sim]") {
    auto slow = parseFault("download-slow:2,4:rate=100%,delay=2s");
    auto fail = parseFault("install-fail:4:rate=100%");
    REQUIRE(slow);
    REQUIRE(fail);
    FaultPlan plan({*slow, *fail}, 1, 5, 1);
    CHECK(plan.hasOperationalFaults());
    for (std::uint64_t k = 1; k <= 10; ++k) {
        const FaultSpec* s2 = plan.operationFault(FaultKind::kDownloadSlow, 2, k);
        REQUIRE(s2);
        CHECK(s2->delay == std::chrono::seconds(2));
        CHECK(plan.operationFaulted(FaultKind::kInstallFail, 4, k));
        CHECK_FALSE(plan.operationFaulted(FaultKind::kInstallFail, 2, k));
        CHECK_FALSE(plan.operationFaulted(FaultKind::kDownloadSlow, 3, k));
        CHECK_FALSE(plan.operationFaulted(FaultKind::kDownloadFail, 4, k));
    }
    auto drop = parseFault("drop:10%:at=1s");
    REQUIRE(drop);
    CHECK_FALSE(FaultPlan({*drop}, 1, 5, 1).hasOperationalFaults());
}
