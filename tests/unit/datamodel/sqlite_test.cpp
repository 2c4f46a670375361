// The shared SQLite wrapper: handle, statements, scoped transactions.

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <string>

#include "berth/datamodel/sqlite.h"
#include "berth/testing/support.h"

using namespace berth;
using namespace berth::dm::sql;

namespace {

std::unique_ptr<Database> openDb(const std::filesystem::path& file, OpenOptions o = {}) {
    auto db = Database::open(file, o);
    REQUIRE(db);
    REQUIRE(db->get()->exec("CREATE TABLE IF NOT EXISTS t(k TEXT PRIMARY KEY, v BLOB, n INTEGER)").ok());
    return std::move(*db);
}

std::int64_t countRows(Database& db) {
    auto st = db.prepare("SELECT count(*) FROM t");
    REQUIRE(st);
    auto row = st->step();
    REQUIRE(row);
    REQUIRE(*row);
    return st->columnInt(0);
}

Status insert(Database& db, const std::string& k) {
    auto st = db.cached("INSERT INTO t(k, n) VALUES(?1, 1)");
    if (!st) return st.error();
    (*st)->bindText(1, k);
    return (*st)->run("insert " + k);
}

// Inserts two rows in one transaction and leaves early, before commit, when told to.
Status insertPair(Database& db, bool leaveEarly) {
    auto tx = Transaction::begin(db);
    if (!tx) return tx.error();
    BERTH_TRY(insert(db, "first"));
    if (leaveEarly) return Error(ErrorCode::kInvalidValue, "second row refused");
    BERTH_TRY(insert(db, "second"));
    return tx->commit();
}

}  // namespace

TEST_CASE("A statement binds text, blobs, integers and NULL by index and reads them back", "[datamodel][sqlite]") {
    testing::TempDir dir;
    auto db = openDb(dir / "a.db");
    std::string blob("a\0b\xff", 4);
    {
        auto st = db->prepare("INSERT INTO t(k, v, n) VALUES(?1, ?2, ?3)");
        REQUIRE(st);
        st->bindText(1, "key").bindBlob(2, blob).bindInt(3, -(std::int64_t(1) << 40));
        REQUIRE(st->run().ok());
        CHECK(db->changes() == 1);
        st->reset();
        st->bindText(1, "empty").bindBlob(2, "").bindNull(3);
        REQUIRE(st->run().ok());
    }
    auto q = db->prepare("SELECT k, v, n FROM t ORDER BY k");
    REQUIRE(q);
    auto row = q->step();
    REQUIRE((row && *row));
    CHECK(q->columnText(0) == "empty");
    CHECK(q->columnBlob(1).empty());
    CHECK_FALSE(q->columnIsNull(1));  // an empty blob stays a blob, not NULL
    CHECK(q->columnIsNull(2));
    CHECK(q->columnInt(2) == 0);
    row = q->step();
    REQUIRE((row && *row));
    CHECK(q->columnText(0) == "key");
    CHECK(q->columnBlob(1) == blob);
    CHECK(q->columnInt(2) == -(std::int64_t(1) << 40));
    row = q->step();
    REQUIRE(row);
    CHECK_FALSE(*row);
}

TEST_CASE("A failing statement reports 7003 with the store's label and SQLite's reason", "[datamodel][sqlite]") {
    testing::TempDir dir;
    OpenOptions o;
    o.label = "test store";
    auto db = openDb(dir / "a.db", o);
    REQUIRE(insert(*db, "k").ok());
    auto dup = insert(*db, "k");
    REQUIRE_FALSE(dup);
    CHECK(dup.error().code == ErrorCode::kInternalError);
    CHECK(dup.error().message.rfind("test store: insert k: ", 0) == 0);
    CHECK(dup.error().message.find("UNIQUE constraint failed") != std::string::npos);

    auto bad = db->prepare("SELEKT 1");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code == ErrorCode::kInternalError);
    CHECK(bad.error().message.find("syntax error") != std::string::npos);
    CHECK_FALSE(db->exec("NOT SQL").ok());
    CHECK(countRows(*db) == 1);
}

TEST_CASE("A cached statement is prepared once and comes back reset with no bindings", "[datamodel][sqlite]") {
    testing::TempDir dir;
    auto db = openDb(dir / "a.db");
    auto a = db->cached("SELECT ?1");
    REQUIRE(a);
    (*a)->bindInt(1, 42);
    REQUIRE((*a)->step().value());
    CHECK((*a)->columnInt(0) == 42);
    auto b = db->cached("SELECT ?1");
    REQUIRE(b);
    CHECK(*b == *a);
    REQUIRE((*b)->step().value());
    CHECK((*b)->columnIsNull(0));  // the earlier binding was cleared
}

TEST_CASE("Open applies pragmas, the busy timeout and the file mode", "[datamodel][sqlite]") {
    testing::TempDir dir;
    OpenOptions o;
    o.pragmas = {"journal_mode=WAL", "synchronous=FULL"};
    o.fileMode = 0600;
    auto db = openDb(dir / "a.db", o);
    struct stat sb {};
    REQUIRE(::stat((dir / "a.db").c_str(), &sb) == 0);
    CHECK((sb.st_mode & 0777) == 0600);
    auto q = db->prepare("PRAGMA journal_mode");
    REQUIRE(q);
    REQUIRE(q->step().value());
    CHECK(q->columnText(0) == "wal");
    auto s = db->prepare("PRAGMA synchronous");
    REQUIRE(s);
    REQUIRE(s->step().value());
    CHECK(s->columnInt(0) == 2);  // FULL
}

TEST_CASE("Open of a database that cannot exist reports 7003 and creates nothing", "[datamodel][sqlite]") {
    testing::TempDir dir;
    auto db = Database::open(dir / "missing" / "a.db");
    REQUIRE_FALSE(db);
    CHECK(db.error().code == ErrorCode::kInternalError);
    OpenOptions o;
    o.create = false;
    auto noCreate = Database::open(dir / "b.db", o);
    REQUIRE_FALSE(noCreate);
    CHECK_FALSE(std::filesystem::exists(dir / "b.db"));
    auto bad = Database::open(dir / "c.db", [] {
        OpenOptions p;
        p.pragmas = {"journal_mode=WAL", "no such pragma syntax !"};
        return p;
    }());
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code == ErrorCode::kInternalError);
}

TEST_CASE("A committed transaction keeps its rows", "[datamodel][sqlite]") {
    testing::TempDir dir;
    auto db = openDb(dir / "a.db");
    REQUIRE(insertPair(*db, false).ok());
    CHECK_FALSE(db->inTransaction());
    CHECK(countRows(*db) == 2);
    db.reset();
    auto again = openDb(dir / "a.db");
    CHECK(countRows(*again) == 2);
}

TEST_CASE("A transaction left by an early return is rolled back", "[datamodel][sqlite]") {
    testing::TempDir dir;
    auto db = openDb(dir / "a.db");
    auto st = insertPair(*db, true);
    REQUIRE_FALSE(st);
    CHECK(st.error().code == ErrorCode::kInvalidValue);
    CHECK_FALSE(db->inTransaction());
    CHECK(countRows(*db) == 0);
    // The connection is usable for the next transaction.
    REQUIRE(insertPair(*db, false).ok());
    CHECK(countRows(*db) == 2);
}

TEST_CASE("A transaction whose commit fails is rolled back and leaves nothing", "[datamodel][sqlite]") {
    testing::TempDir dir;
    auto db = openDb(dir / "a.db");
    // A deferred foreign key is checked at COMMIT: the commit fails and the transaction
    // stays open, for the destructor to roll back.
    REQUIRE(db->exec("PRAGMA foreign_keys=ON;"
                     "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
                     "CREATE TABLE child(pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
                .ok());
    {
        auto tx = Transaction::begin(*db);
        REQUIRE(tx);
        REQUIRE(insert(*db, "in the failed transaction").ok());
        REQUIRE(db->exec("INSERT INTO child(pid) VALUES(7)").ok());
        auto c = tx->commit();
        REQUIRE_FALSE(c);
        CHECK(c.error().code == ErrorCode::kInternalError);
        CHECK(c.error().message.find("FOREIGN KEY") != std::string::npos);
        CHECK(db->inTransaction());
        CHECK(tx->active());
    }
    CHECK_FALSE(db->inTransaction());
    CHECK(countRows(*db) == 0);
    auto q = db->prepare("SELECT count(*) FROM child");
    REQUIRE(q);
    REQUIRE(q->step().value());
    CHECK(q->columnInt(0) == 0);
}

TEST_CASE("A second transaction on one connection is refused while the first is open", "[datamodel][sqlite]") {
    testing::TempDir dir;
    auto db = openDb(dir / "a.db");
    auto first = Transaction::begin(*db);
    REQUIRE(first);
    auto second = Transaction::begin(*db);
    REQUIRE_FALSE(second);
    CHECK(second.error().code == ErrorCode::kInternalError);
    REQUIRE(insert(*db, "k").ok());
    REQUIRE(first->commit().ok());
    CHECK_FALSE(first->active());
    CHECK_FALSE(first->commit().ok());  // twice is an error, not a crash
    CHECK(countRows(*db) == 1);
}

TEST_CASE("Another connection holding the write lock makes begin fail after the busy timeout", "[datamodel][sqlite]") {
    testing::TempDir dir;
    OpenOptions o;
    o.pragmas = {"journal_mode=WAL"};
    o.busyTimeoutMs = 50;
    auto a = openDb(dir / "a.db", o);
    auto b = openDb(dir / "a.db", o);
    auto holder = Transaction::begin(*a);
    REQUIRE(holder);
    auto waiting = Transaction::begin(*b);
    REQUIRE_FALSE(waiting);
    CHECK(waiting.error().message.find("locked") != std::string::npos);
    holder->rollback();
    CHECK(Transaction::begin(*b).ok());
}
