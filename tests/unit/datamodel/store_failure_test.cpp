// A store that refuses a write in the middle of a commit: the engine's scoped
// transactions roll back the database and the tree, and the caller gets 7003.

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "berth/datamodel/sqlite.h"
#include "berth/testing/support.h"
#include "dm_test_util.h"

using namespace berth;
using namespace berth::dm;
using namespace berth::dm::test;

namespace {

std::vector<std::string> snapshot(Engine& e) {
    std::vector<std::string> out;
    for (const auto& o : getOne(e, "Device.").resolved)
        for (const auto& p : o.params) out.push_back(o.path + std::string(p.name) + "=" + p.value);
    std::sort(out.begin(), out.end());
    return out;
}

// Makes the database refuse every parameter write whose path contains `marker`, the way
// a full disk or an I/O error would refuse it, after the first rows of the commit went in.
void refuseParamWrites(const std::filesystem::path& db, const std::string& marker) {
    auto d = sql::Database::open(db);
    REQUIRE(d);
    REQUIRE((*d)->exec("CREATE TRIGGER refuse BEFORE INSERT ON params WHEN instr(NEW.path, '" + marker +
                       "') > 0 BEGIN SELECT RAISE(ABORT, 'disk refused the write'); END")
                .ok());
}

std::int64_t storedRows(const std::filesystem::path& db, const std::string& table) {
    auto d = sql::Database::open(db);
    REQUIRE(d);
    auto q = (*d)->prepare("SELECT count(*) FROM " + table);
    REQUIRE(q);
    REQUIRE(q->step().value());
    return q->columnInt(0);
}

}  // namespace

TEST_CASE("An Add the database refuses part way is rolled back on disk and in memory with 7003",
          "[datamodel][persistence]") {
    testing::TempDir dir;
    auto db = dir / "dm.db";
    { Fixture f(db); }  // creates the schema
    const auto instancesBefore = storedRows(db, "instances");
    refuseParamWrites(db, ".ID");
    Fixture f(db);
    const auto before = snapshot(*f);
    // The row itself and its other parameters are written before the ID: all must go.
    auto r = addOne(*f, "Device.LocalAgent.Subscription.", {{"ID", "x", true}, {"Enable", "true", true}});
    REQUIRE(r.error);
    CHECK(r.error->code == ErrorCode::kInternalError);
    CHECK(r.error->message.find("disk refused the write") != std::string::npos);
    CHECK(r.results.empty());
    CHECK(snapshot(*f) == before);
    CHECK(storedRows(db, "instances") == instancesBefore);
    // The engine takes the next change as if nothing happened.
    CHECK(f->setValue("Device.LocalAgent.EndpointID", "os::after").ok());
    CHECK(value(*f, "Device.LocalAgent.EndpointID") == "os::after");
}

TEST_CASE("A Set the database refuses leaves the old value in memory and on disk", "[datamodel][persistence]") {
    testing::TempDir dir;
    auto db = dir / "dm.db";
    {
        Fixture f(db);
        REQUIRE(f->setValue("Device.LocalAgent.EndpointID", "os::before").ok());
    }
    refuseParamWrites(db, "EndpointID");
    {
        Fixture f(db);
        auto st = f->setValue("Device.LocalAgent.EndpointID", "os::refused");
        REQUIRE_FALSE(st);
        CHECK(st.error().code == ErrorCode::kInternalError);
        CHECK(value(*f, "Device.LocalAgent.EndpointID") == "os::before");
    }
    Fixture g(db);
    CHECK(value(*g, "Device.LocalAgent.EndpointID") == "os::before");
}
