// The typed model of DUs and EUs (berth/smm/inventory.h): its round trip through the
// journal, the migration of an earlier version's state, and an agent that comes back
// from the journal alone.
#include "berth/smm/inventory.h"

#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "berth/smm/journal.h"
#include "smm_fake_agent.h"

using namespace smmfake;
using berth::smm::DeploymentUnit;
using berth::smm::DuStatus;
using berth::smm::EuFault;
using berth::smm::EuStatus;
using berth::smm::ExecutionUnit;
using berth::smm::Inventory;
using berth::smm::Journal;

namespace {

DeploymentUnit sampleDu() {
    DeploymentUnit du;
    du.instance = 3;
    du.execEnv = 2;
    du.uuid = "0b8b5c3e-2f7e-5b8e-9a0e-6c1c3a1e9d10";
    du.duid = "ab12";
    du.name = "app";
    du.url = "http://images.invalid/app.tar";
    du.description = "an app, with \"quotes\" and\nnewlines";
    du.vendor = "example.com";
    du.version = "1.2.3";
    du.moduleVersion = "7";
    du.installed = "2026-01-02T03:04:05Z";
    du.lastUpdate = "2026-02-03T04:05:06Z";
    du.status = DuStatus::kUpdating;
    du.executionUnits = {7};
    return du;
}

ExecutionUnit sampleEu() {
    ExecutionUnit eu;
    eu.instance = 7;
    eu.deploymentUnit = 3;
    eu.execEnv = 2;
    eu.euid = "apps.7";
    eu.name = "app";
    eu.status = EuStatus::kActive;
    eu.fault = EuFault::kFailureWhileActive;
    eu.faultMessage = "exited with 3";
    eu.exitStatus = "exit code 3";
    eu.autoStart = true;
    eu.runLevel = 4;
    eu.shutdownDelay = 2;
    eu.autoRestart.enable = true;
    eu.autoRestart.minWaitSeconds = 1;
    eu.autoRestart.maxRetries = 3;
    eu.autoRestart.resetPeriodSeconds = 60;
    eu.retryCount = 2;
    eu.allocatedMemoryKiB = 8192;
    eu.allocatedCpuPercent = 50;
    eu.env = {{"GREETING", "hello=world"}, {"EMPTY", ""}};
    eu.hostObjects = {{"/srv/data", "/data", "rw,noexec"}};
    return eu;
}

// Makes a journal look as an earlier version left it: no inventory tables, schema 0.
void downgradeJournal(const fs::path& db) {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
    char* err = nullptr;
    int rc = sqlite3_exec(h, "DROP TABLE dus; DROP TABLE eus; PRAGMA user_version=0;", nullptr, nullptr, &err);
    if (rc != SQLITE_OK) FAIL(std::string(err ? err : "sqlite error"));
    sqlite3_close(h);
}

std::int64_t userVersion(const fs::path& db) {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    std::int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

// Every value of the DU and EU rows (and their sub-tables), by path.
std::map<std::string, std::string> rowValues(Agent& a) {
    berth::dm::GetRequest req;
    req.paths = {kDuTable, kEuTable};
    auto resp = a.engine->get(req, berth::dm::Permissions::fullAccess());
    std::map<std::string, std::string> out;
    for (const auto& r : resp.results)
        for (const auto& obj : r.resolved)
            for (const auto& pv : obj.params)
                out[obj.path + std::string(pv.name)] = pv.value;
    // Computed figures change with time, not with the model.
    for (auto it = out.begin(); it != out.end();) {
        bool figure = false;
        for (const char* p : {"Uptime", "MemoryInUse", "DiskSpaceInUse", "CPUPercentInUse"})
            figure = figure || it->first.size() > std::strlen(p) &&
                                   it->first.compare(it->first.size() - std::strlen(p), std::string::npos, p) == 0;
        it = figure ? out.erase(it) : std::next(it);
    }
    return out;
}

}  // namespace

TEST_CASE("A DU and its EU come back from the journal with every field they were saved with", "[smm][model]") {
    berth::testing::TempDir tmp("smm-inv");
    DeploymentUnit du = sampleDu();
    ExecutionUnit eu = sampleEu();
    {
        auto j = Journal::open(tmp / "smm.db");
        REQUIRE(j);
        CHECK((*j)->needsMigration());  // new: filled from the rows once
        REQUIRE((*j)->migrate(Inventory{}));
        REQUIRE((*j)->saveDu(du, {&eu}));
    }
    auto j = Journal::open(tmp / "smm.db");
    REQUIRE(j);
    CHECK_FALSE((*j)->needsMigration());
    auto inv = (*j)->loadInventory();
    REQUIRE(inv);
    REQUIRE(inv->du(3));
    REQUIRE(inv->eu(7));
    CHECK(*inv->du(3) == du);
    CHECK(*inv->eu(7) == eu);
    CHECK(inv->eu(7)->env == eu.env);
    CHECK(inv->eu(7)->hostObjects == eu.hostObjects);
    CHECK(inv->du(3)->status == DuStatus::kUpdating);
}

TEST_CASE("Removing a DU from the journal removes the EUs it lists and nothing else", "[smm][model]") {
    berth::testing::TempDir tmp("smm-inv");
    auto j = Journal::open(tmp / "smm.db");
    REQUIRE(j);
    DeploymentUnit du = sampleDu();
    ExecutionUnit eu = sampleEu();
    DeploymentUnit other = sampleDu();
    other.instance = 4;
    other.executionUnits = {8};
    ExecutionUnit otherEu = sampleEu();
    otherEu.instance = 8;
    otherEu.deploymentUnit = 4;
    REQUIRE((*j)->saveDu(du, {&eu}));
    REQUIRE((*j)->saveDu(other, {&otherEu}));
    REQUIRE((*j)->removeDu(du));
    auto inv = (*j)->loadInventory();
    REQUIRE(inv);
    CHECK(inv->dus().size() == 1);
    CHECK(inv->du(4));
    CHECK(inv->eus().size() == 1);
    CHECK(inv->eu(8));
}

TEST_CASE("A journal record that cannot be read is an error with 7003, not an empty inventory", "[smm][model]") {
    CHECK(berth::smm::parseDeploymentUnit("{not json").error().code == berth::ErrorCode::kInternalError);
    CHECK(berth::smm::parseExecutionUnit("{}").error().code == berth::ErrorCode::kInternalError);
}

TEST_CASE("Inventory queries find a DU by ExecEnv, UUID and version, its image, and EUs no DU lists", "[smm][model]") {
    Inventory inv;
    DeploymentUnit du = sampleDu();
    inv.put(du);
    inv.put(sampleEu());
    ExecutionUnit stray = sampleEu();
    stray.instance = 9;
    inv.put(stray);
    CHECK(inv.findDu(2, du.uuid, "1.2.3"));
    CHECK_FALSE(inv.findDu(2, du.uuid, "1.2.3", 3));
    CHECK_FALSE(inv.findDu(1, du.uuid, "1.2.3"));
    CHECK(inv.digestInUse(2, "ab12"));
    CHECK_FALSE(inv.digestInUse(1, "ab12"));
    CHECK(inv.uuidInUse(2, du.uuid, 0));
    CHECK_FALSE(inv.uuidInUse(2, du.uuid, 3));
    CHECK(inv.orphanEus() == std::vector<std::uint32_t>{9});
    inv.removeDu(3);
    CHECK(inv.dus().empty());
    CHECK(inv.eus().size() == 1);
}

TEST_CASE("An earlier version's journal and data model open with the same DUs and EUs, which then work",
          "[smm][model]") {
    Machine m;
    std::string du, eu;
    std::map<std::string, std::string> before;
    {
        Agent a(m);
        std::tie(du, eu) = a.install({{"URL", kUrlV1},
                                      {"EnvVariable.1.Key", "GREETING"},
                                      {"EnvVariable.1.Value", "hello"},
                                      {"Resources.AllocatedMemory", "8192"}});
        REQUIRE(a.engine->setValue(eu + "RunLevel", "3"));
        REQUIRE(a.engine->setValue(eu + "AutoRestart.Enable", "true"));
        before = rowValues(a);
    }
    // The state as the earlier version wrote it: rows in the data model, a journal of
    // operations and credentials only.
    downgradeJournal(m.state / "smm.db");
    REQUIRE(userVersion(m.state / "smm.db") == 0);

    Agent a(m);
    CHECK(userVersion(m.state / "smm.db") == 2);
    CHECK(rowValues(a) == before);
    CHECK(a.get(eu + "RunLevel") == "3");
    CHECK(a.get(eu + "EnvVariable.1.Value") == "hello");
    // The migrated model drives the EU and the DU.
    a.activate(eu);
    CHECK(m.oci.container(euid(a, eu))->settings.memoryLimitBytes == 8192 * 1024);
    auto r = a.run(du + "Update()", {{"URL", kUrlV2}});
    if (!r) FAIL(r.error().describe());
    REQUIRE(a.waitStatus(eu, "Active"));
    CHECK(a.get(du + "Version") == "2.0");
    checkConsistent(a, m);
}

TEST_CASE(
    "An agent whose data model lost the DU and EU rows makes them again from the journal, at the same "
    "instance numbers, and starts its AutoStart EU",
    "[smm][model]") {
    Machine m;
    std::string du, eu;
    std::map<std::string, std::string> before;
    {
        Agent a(m);
        a.install({{"URL", kUrlV1}});  // DU.1/EU.1, uninstalled below: numbers are not reused
        auto first = a.rows(kDuTable).front();
        REQUIRE(a.run(first + "Uninstall()", {}));
        std::tie(du, eu) =
            a.install({{"URL", kUrlV2}, {"EnvVariable.1.Key", "GREETING"}, {"EnvVariable.1.Value", "hi"}});
        REQUIRE(a.engine->setValue(eu + "AutoStart", "true"));
        REQUIRE(a.engine->setValue(eu + "AutoRestart.MaximumRetryCount", "7"));
        before = rowValues(a);
    }
    CHECK(du == kDuTable + "2.");
    for (const char* suffix : {"", "-wal", "-shm", "-journal"})
        fs::remove((m.tmp / "dm.db").string() + suffix);

    Agent a(m);
    REQUIRE(a.rows(kDuTable) == std::vector<std::string>{du});
    REQUIRE(a.rows(kEuTable) == std::vector<std::string>{eu});
    REQUIRE(a.waitStatus(eu, "Active"));
    auto after = rowValues(a);
    for (const char* volatileParam : {"Status", "ExecutionFaultCode", "ExecutionFaultMessage"}) {
        after.erase(eu + volatileParam);
        before.erase(eu + volatileParam);
    }
    CHECK(after == before);
    CHECK(a.get(eu + "AutoRestart.MaximumRetryCount") == "7");
    CHECK(m.oci.container(euid(a, eu)));
}

TEST_CASE("Rows of DUs the journal does not hold are removed at start", "[smm][model]") {
    Machine m;
    {
        Agent a(m);
        a.install({{"URL", kUrlV1}});
    }
    {
        // A DU row the model never had (a data model restored from elsewhere).
        berth::dm::EngineOptions eo;
        eo.dbPath = m.tmp / "dm.db";
        auto e = berth::dm::Engine::open(eo);
        REQUIRE(e);
        REQUIRE((*e)->addInstance(kDuTable, {{"UUID", "0b8b5c3e-2f7e-5b8e-9a0e-6c1c3a1e9d10"}}, 9));
    }
    Agent a(m);
    CHECK(a.rows(kDuTable) == std::vector<std::string>{kDuTable + "1."});
    checkConsistent(a, m);
}
