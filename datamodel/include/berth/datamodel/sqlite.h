#pragma once
// The one SQLite wrapper of berth: a database handle, prepared statements and a scoped
// transaction. Used by every store that keeps state on disk (the data-model store, the
// notification queue, the SoftwareModules operation journal).
//
// It lives in datamodel rather than core: core uses nothing beyond std and libc, and
// every module with a store (datamodel, smm, agent) already depends on datamodel.
// sqlite3.h stays out of this header.
//
//   sql::OpenOptions o;
//   o.pragmas = {"journal_mode=WAL", "synchronous=FULL"};
//   auto db = sql::Database::open(file, o);             // Result<unique_ptr<Database>>
//   auto tx = sql::Transaction::begin(**db);            // BEGIN IMMEDIATE
//   auto st = (*db)->prepare("INSERT INTO t(a) VALUES(?1)");
//   st->bindText(1, "x");
//   BERTH_TRY(st->run());
//   BERTH_TRY(tx->commit());                            // otherwise rolled back
//
// Ownership: a Database owns its connection and the statements it caches; a Statement
// owns its prepared statement and borrows the Database, which must outlive it; a
// Transaction borrows the Database. Threading: a Database and everything made from it
// belong to one thread at a time (opened NOMUTEX unless OpenOptions::serialized).
// Errors: 7003 (kInternalError) with "<label>: <what>: <SQLite message>".

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/core/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace berth::dm::sql {

class Database;

// A prepared statement. Parameters are bound by 1-based index, columns read by 0-based
// index; text and blobs are copied on bind and on read.
class Statement {
public:
    Statement() = default;
    ~Statement();
    Statement(Statement&& other) noexcept;
    Statement& operator=(Statement&& other) noexcept;
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    Statement& bindText(int index, std::string_view value);
    Statement& bindBlob(int index, std::string_view value);
    Statement& bindInt(int index, std::int64_t value);
    Statement& bindNull(int index);

    // Runs one step: true when a row is ready for the column getters, false when the
    // statement is done. A failed step is an error naming `what` (or the SQL).
    Result<bool> step(std::string_view what = {});
    // Steps to the end, for statements that return no rows.
    Status run(std::string_view what = {});
    // Makes the statement ready to run again and clears its bindings.
    void reset();

    std::string columnText(int index) const;  // "" for NULL
    std::string columnBlob(int index) const;  // bytes as stored; "" for NULL
    std::int64_t columnInt(int index) const;  // 0 for NULL
    bool columnIsNull(int index) const;

    const std::string& sql() const { return sql_; }

private:
    friend class Database;
    Statement(Database& db, sqlite3_stmt* stmt, std::string sql) : db_(&db), stmt_(stmt), sql_(std::move(sql)) {}

    Database* db_ = nullptr;
    sqlite3_stmt* stmt_ = nullptr;
    std::string sql_;
};

struct OpenOptions {
    bool create = true;          // create the file when it does not exist
    bool readOnly = false;
    bool serialized = false;     // SQLITE_OPEN_FULLMUTEX instead of NOMUTEX
    int busyTimeoutMs = 5000;    // how long a locked database is waited for
    // Run in order after opening, each as "PRAGMA <text>" ("journal_mode=WAL").
    std::vector<std::string> pragmas;
    // When set, a missing file is created with this mode before SQLite opens it (so it
    // never exists with a wider one) and an existing one is chmod'ed to it; SQLite gives
    // the -wal and -shm files the database's mode.
    std::optional<mode_t> fileMode;
    // Prefix of every error message ("notification queue"); empty for none.
    std::string label;
};

class Database {
public:
    // Opens (and by default creates) the database file and applies the options.
    // Errors: 7003 when the file cannot be created or opened, or a pragma fails.
    static Result<std::unique_ptr<Database>> open(const std::filesystem::path& file, const OpenOptions& options = {});
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    // Runs one or more statements separated by ';' (schema, pragmas). No results.
    Status exec(std::string_view sql);
    // A new prepared statement, finalized when the Statement goes.
    Result<Statement> prepare(std::string_view sql);
    // A prepared statement kept for the life of the Database, prepared on first use and
    // returned reset with its bindings cleared. The pointer stays valid while the
    // Database lives; use one at a time per SQL text.
    Result<Statement*> cached(std::string_view sql);

    std::int64_t lastInsertRowId() const;
    int changes() const;  // rows changed by the last statement
    bool inTransaction() const;

    // kInternalError "<label>: <what>: <SQLite's last message>".
    Error error(std::string_view what) const;
    const std::filesystem::path& file() const { return file_; }
    sqlite3* raw() { return db_; }

private:
    Database() = default;
    std::string prefix() const;

    sqlite3* db_ = nullptr;
    std::filesystem::path file_;
    std::string label_;
    std::map<std::string, Statement, std::less<>> cache_;
};

// A transaction for the scope it lives in: BEGIN IMMEDIATE when made, ROLLBACK when it
// goes unless commit() succeeded. A failed commit leaves the transaction open, so the
// destructor rolls it back and the database holds nothing of it.
class Transaction {
public:
    // Errors: 7003 when the write lock cannot be had within the busy timeout, or a
    // transaction is already open on this connection.
    static Result<Transaction> begin(Database& db);
    ~Transaction();
    Transaction(Transaction&& other) noexcept;
    Transaction& operator=(Transaction&&) = delete;
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;

    Status commit();
    void rollback();
    bool active() const { return db_ != nullptr; }

private:
    explicit Transaction(Database& db) : db_(&db) {}
    Database* db_ = nullptr;  // null once committed or rolled back
};

}  // namespace berth::dm::sql
