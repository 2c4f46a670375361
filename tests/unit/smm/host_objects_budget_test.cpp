// HostObject Options parsing and the disk budget held by pulls in flight.
#include <catch2/catch.hpp>

#include "berth/smm/disk_budget.h"
#include "berth/smm/host_objects.h"

using namespace berth::smm;
using berth::ErrorCode;

TEST_CASE("HostObject Options default to read-only, accept rw and bind,rw, and refuse unknown options naming them",
          "[smm][hostobject]") {
    auto d = parseHostObjectOptions("");
    REQUIRE(d);
    CHECK(d->readOnly);
    CHECK_FALSE(d->recursive);
    auto def = parseHostObjectOptions("ro,nosuid,nodev");
    REQUIRE(def);
    CHECK(def->readOnly);
    for (const char* rw : {"rw", "bind,rw", "rw,nosuid,nodev", " rw , bind ", "rbind,rw,rprivate"}) {
        INFO(rw);
        auto o = parseHostObjectOptions(rw);
        REQUIRE(o);
        CHECK_FALSE(o->readOnly);
    }
    CHECK(parseHostObjectOptions("rbind")->recursive);
    CHECK(parseHostObjectOptions("ro,private")->readOnly);

    auto unknown = parseHostObjectOptions("rw,exec");
    REQUIRE_FALSE(unknown);
    CHECK(unknown.error().code == ErrorCode::kInvalidArguments);
    CHECK(unknown.error().message.find("'exec'") != std::string::npos);
    CHECK(parseHostObjectOptions("rw,noexec")->noExec);
    CHECK_FALSE(parseHostObjectOptions("rw")->noExec);
    CHECK_FALSE(parseHostObjectOptions("rw,noexec")->readOnly);
    for (const char* refused : {"shared", "rshared", "slave", "unbindable"}) {
        INFO(refused);
        auto r = parseHostObjectOptions(std::string("ro,") + refused);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidArguments);
        CHECK(r.error().message.find(refused) != std::string::npos);
    }
    auto both = parseHostObjectOptions("ro,rw");
    REQUIRE_FALSE(both);
    CHECK(both.error().code == ErrorCode::kInvalidArguments);
}

TEST_CASE("The disk budget counts every pull's hold: a hold that would pass the budget is refused and the old one kept",
          "[smm][budget]") {
    DiskBudget b;
    constexpr std::uint64_t kBudget = 1000;
    CHECK(b.hold(1, 400, 100, kBudget));
    CHECK(b.hold(2, 400, 100, kBudget));
    CHECK(b.held() == 800);
    CHECK_FALSE(b.hold(3, 200, 100, kBudget));  // 100 stored + 800 held + 200 > 1000
    CHECK(b.hold(3, 100, 100, kBudget));
    CHECK_FALSE(b.hold(1, 500, 100, kBudget));  // growing 1 to 500 would pass it
    CHECK(b.held() == 900);
    b.release(2);
    CHECK(b.hold(1, 500, 100, kBudget));
    CHECK(b.held() == 600);
    CHECK_FALSE(b.hold(4, 1, 1001, kBudget));  // already over: nothing more
    b.release(1);
    b.release(3);
    CHECK(b.held() == 0);
}
