#include "berth/datamodel/sqlite.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include <cerrno>
#include <cstring>

namespace berth::dm::sql {

// ---- Statement ----

Statement::~Statement() {
    if (stmt_) sqlite3_finalize(stmt_);
}

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_), stmt_(other.stmt_), sql_(std::move(other.sql_)) {
    other.db_ = nullptr;
    other.stmt_ = nullptr;
}

Statement& Statement::operator=(Statement&& other) noexcept {
    if (this != &other) {
        if (stmt_) sqlite3_finalize(stmt_);
        db_ = other.db_;
        stmt_ = other.stmt_;
        sql_ = std::move(other.sql_);
        other.db_ = nullptr;
        other.stmt_ = nullptr;
    }
    return *this;
}

Statement& Statement::bindText(int index, std::string_view value) {
    sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
    return *this;
}

Statement& Statement::bindBlob(int index, std::string_view value) {
    // A zero-length blob bound from a null pointer would read back as NULL.
    sqlite3_bind_blob(stmt_, index, value.empty() ? "" : value.data(), static_cast<int>(value.size()),
                      SQLITE_TRANSIENT);
    return *this;
}

Statement& Statement::bindInt(int index, std::int64_t value) {
    sqlite3_bind_int64(stmt_, index, value);
    return *this;
}

Statement& Statement::bindNull(int index) {
    sqlite3_bind_null(stmt_, index);
    return *this;
}

Result<bool> Statement::step(std::string_view what) {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return db_->error(what.empty() ? std::string_view(sql_) : what);
}

Status Statement::run(std::string_view what) {
    for (;;) {
        auto row = step(what);
        if (!row) return std::move(row).error();
        if (!*row) return okStatus();
    }
}

void Statement::reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
}

std::string Statement::columnText(int index) const {
    const auto* t = sqlite3_column_text(stmt_, index);
    return t ? std::string(reinterpret_cast<const char*>(t), static_cast<std::size_t>(sqlite3_column_bytes(stmt_, index)))
             : std::string();
}

std::string Statement::columnBlob(int index) const {
    const void* p = sqlite3_column_blob(stmt_, index);
    int n = sqlite3_column_bytes(stmt_, index);
    return p ? std::string(static_cast<const char*>(p), static_cast<std::size_t>(n)) : std::string();
}

std::int64_t Statement::columnInt(int index) const { return sqlite3_column_int64(stmt_, index); }

bool Statement::columnIsNull(int index) const { return sqlite3_column_type(stmt_, index) == SQLITE_NULL; }

// ---- Database ----

Result<std::unique_ptr<Database>> Database::open(const std::filesystem::path& file, const OpenOptions& options) {
    std::unique_ptr<Database> db(new Database());
    db->file_ = file;
    db->label_ = options.label;
    if (options.fileMode && !options.readOnly) {
        int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC | (options.create ? O_CREAT : 0), *options.fileMode);
        if (fd < 0 && !(errno == ENOENT && !options.create))
            return Error(ErrorCode::kInternalError,
                         db->prefix() + "cannot create database: " + std::string(std::strerror(errno)), file.string());
        if (fd >= 0) {
            ::fchmod(fd, *options.fileMode);
            ::close(fd);
        }
    }
    int flags = options.readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (options.create && !options.readOnly) flags |= SQLITE_OPEN_CREATE;
    flags |= options.serialized ? SQLITE_OPEN_FULLMUTEX : SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(file.c_str(), &db->db_, flags, nullptr) != SQLITE_OK)
        return db->error("cannot open database " + file.string());
    sqlite3_busy_timeout(db->db_, options.busyTimeoutMs);
    for (const auto& pragma : options.pragmas) BERTH_TRY(db->exec("PRAGMA " + pragma));
    return db;
}

Database::~Database() {
    cache_.clear();  // statements are finalized before the connection closes
    if (db_) sqlite3_close_v2(db_);
}

std::string Database::prefix() const { return label_.empty() ? std::string() : label_ + ": "; }

Error Database::error(std::string_view what) const {
    return Error(ErrorCode::kInternalError,
                 prefix() + std::string(what) + ": " + (db_ ? sqlite3_errmsg(db_) : "out of memory"));
}

Status Database::exec(std::string_view sql) {
    std::string text(sql);
    char* err = nullptr;
    if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err ? err : sqlite3_errmsg(db_);
        sqlite3_free(err);
        return Error(ErrorCode::kInternalError, prefix() + "database: " + msg);
    }
    return okStatus();
}

Result<Statement> Database::prepare(std::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) != SQLITE_OK) {
        sqlite3_finalize(stmt);
        return error("prepare " + std::string(sql));
    }
    return Statement(*this, stmt, std::string(sql));
}

Result<Statement*> Database::cached(std::string_view sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
        auto st = prepare(sql);
        if (!st) return std::move(st).error();
        it = cache_.emplace(std::string(sql), std::move(*st)).first;
    } else {
        it->second.reset();
    }
    return &it->second;
}

std::int64_t Database::lastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }
int Database::changes() const { return sqlite3_changes(db_); }
bool Database::inTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

// ---- Transaction ----

Result<Transaction> Transaction::begin(Database& db) {
    BERTH_TRY(db.exec("BEGIN IMMEDIATE"));
    return Transaction(db);
}

Transaction::Transaction(Transaction&& other) noexcept : db_(other.db_) { other.db_ = nullptr; }

Transaction::~Transaction() { rollback(); }

Status Transaction::commit() {
    if (!db_) return Error(ErrorCode::kInternalError, "commit of a transaction that is no longer open");
    BERTH_TRY(db_->exec("COMMIT"));
    db_ = nullptr;
    return okStatus();
}

void Transaction::rollback() {
    if (!db_) return;
    // SQLite may already have rolled back on its own (an I/O error, a full disk).
    if (db_->inTransaction()) (void)db_->exec("ROLLBACK");
    db_ = nullptr;
}

}  // namespace berth::dm::sql
