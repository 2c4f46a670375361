// Download passwords kept for Update() are sealed in the journal, never stored in clear.
#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <filesystem>
#include <string>

#include "berth/smm/journal.h"
#include "berth/testing/support.h"

using namespace berth::smm;

namespace {

const std::string kEe = "Device.SoftwareModules.ExecEnv.1.";

// Every byte the journal keeps on disk: the database, its WAL and shared memory.
std::string journalBytes(const std::filesystem::path& db) {
    std::string all;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) all += berth::testing::readFile(db.string() + suffix);
    return all;
}

void sql(const std::filesystem::path& db, const std::string& statement) {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
    char* err = nullptr;
    int rc = sqlite3_exec(h, statement.c_str(), nullptr, nullptr, &err);
    INFO((err ? err : ""));
    sqlite3_free(err);
    sqlite3_close(h);
    REQUIRE(rc == SQLITE_OK);
}

}  // namespace

TEST_CASE("A stored download password is sealed in the journal and opens again after reopening", "[smm]") {
    berth::testing::TempDir tmp("smm-seal");
    auto file = tmp / "smm.db";
    {
        auto j = Journal::open(file);
        REQUIRE(j);
        REQUIRE((*j)->saveCredentials(kEe, "u-1", "operator", "registry-S3cret-pw"));
        auto c = (*j)->credentials(kEe, "u-1");
        REQUIRE(c);
        CHECK(c->second == "registry-S3cret-pw");
        CHECK(journalBytes(file).find("registry-S3cret-pw") == std::string::npos);
    }
    CHECK(journalBytes(file).find("registry-S3cret-pw") == std::string::npos);
    CHECK(std::filesystem::file_size(file.string() + ".key") == 32);
    CHECK((std::filesystem::status(file.string() + ".key").permissions() & std::filesystem::perms::group_all) ==
          std::filesystem::perms::none);
    auto j = Journal::open(file);
    REQUIRE(j);
    auto c = (*j)->credentials(kEe, "u-1");
    REQUIRE(c);
    CHECK(c->first == "operator");
    CHECK(c->second == "registry-S3cret-pw");
}

TEST_CASE("A sealed password moved to another DU's row does not open there", "[smm]") {
    berth::testing::TempDir tmp("smm-seal");
    auto file = tmp / "smm.db";
    {
        auto j = Journal::open(file);
        REQUIRE(j);
        REQUIRE((*j)->saveCredentials(kEe, "u-1", "a", "first-password"));
        REQUIRE((*j)->saveCredentials(kEe, "u-2", "b", "second-password"));
    }
    sql(file, "UPDATE credentials SET password=(SELECT password FROM credentials WHERE uuid='u-1') WHERE uuid='u-2'");
    auto j = Journal::open(file);
    REQUIRE(j);
    auto moved = (*j)->credentials(kEe, "u-2");
    REQUIRE(moved);
    CHECK(moved->second.empty());
    auto own = (*j)->credentials(kEe, "u-1");
    REQUIRE(own);
    CHECK(own->second == "first-password");
}

TEST_CASE("A journal holding a clear password from an older version is sealed when opened", "[smm]") {
    berth::testing::TempDir tmp("smm-seal");
    auto file = tmp / "smm.db";
    sql(file, "CREATE TABLE credentials(ee TEXT, uuid TEXT, username TEXT, password TEXT, PRIMARY KEY(ee, uuid));"
              "INSERT INTO credentials VALUES('" + kEe + "', 'u-9', 'old', 'legacy-clear-pw');");
    REQUIRE(journalBytes(file).find("legacy-clear-pw") != std::string::npos);
    {
        auto j = Journal::open(file);
        REQUIRE(j);
        auto c = (*j)->credentials(kEe, "u-9");
        REQUIRE(c);
        CHECK(c->second == "legacy-clear-pw");
    }
    CHECK(journalBytes(file).find("legacy-clear-pw") == std::string::npos);
}
