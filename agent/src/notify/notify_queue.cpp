#include "notify_queue.h"

#include <sqlite3.h>
#include <sys/stat.h>

namespace berth::agent::notify {
namespace {

// Owns one prepared statement for the duration of a call.
class Stmt {
public:
    Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
    ~Stmt() { sqlite3_finalize(s_); }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;
    bool ok() const { return rc_ == SQLITE_OK; }
    sqlite3_stmt* get() const { return s_; }
    void text(int i, const std::string& v) { sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT); }
    void blob(int i, const std::string& v) { sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT); }
    void integer(int i, std::int64_t v) { sqlite3_bind_int64(s_, i, v); }
    std::string column(int i) const {
        const void* p = sqlite3_column_blob(s_, i);
        int n = sqlite3_column_bytes(s_, i);
        return p ? std::string(static_cast<const char*>(p), static_cast<std::size_t>(n)) : std::string();
    }

private:
    sqlite3_stmt* s_ = nullptr;
    int rc_ = SQLITE_ERROR;
};

}  // namespace

Error NotifyStore::dbError(const std::string& what) const {
    return Error(ErrorCode::kInternalError, "notification queue: " + what + ": " + (db_ ? sqlite3_errmsg(db_) : "no database"));
}

Status NotifyStore::exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err ? err : "?";
        sqlite3_free(err);
        return Error(ErrorCode::kInternalError, std::string("notification queue: ") + msg);
    }
    return okStatus();
}

Result<std::unique_ptr<NotifyStore>> NotifyStore::open(const std::string& path) {
    std::unique_ptr<NotifyStore> s(new NotifyStore());
    int rc = sqlite3_open_v2(path.c_str(), &s->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) return s->dbError("cannot open " + path);
    // Notifications may carry configuration values: owner only. (umask is process-wide and
    // would race with other threads, so the mode is set after creation; SQLite gives the
    // -wal/-shm files the database's mode.)
    ::chmod(path.c_str(), 0600);
    BERTH_TRY(s->exec("PRAGMA journal_mode=WAL"));
    BERTH_TRY(s->exec("PRAGMA synchronous=FULL"));
    BERTH_TRY(s->exec(
        "CREATE TABLE IF NOT EXISTS pending(msg_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, endpoint_id TEXT NOT NULL,"
        " subscription TEXT NOT NULL, msg BLOB NOT NULL, expires_ms INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"));
    return s;
}

NotifyStore::~NotifyStore() {
    if (db_) sqlite3_close_v2(db_);
}

Result<std::uint64_t> NotifyStore::nextStart() {
    BERTH_TRY(exec("INSERT INTO meta(key, value) VALUES('starts', 1) ON CONFLICT(key) DO UPDATE SET value = value + 1"));
    Stmt q(db_, "SELECT value FROM meta WHERE key = 'starts'");
    if (!q.ok() || sqlite3_step(q.get()) != SQLITE_ROW) return dbError("reading the start counter");
    return static_cast<std::uint64_t>(sqlite3_column_int64(q.get(), 0));
}

Status NotifyStore::put(const StoredNotification& n) {
    Stmt q(db_, "INSERT OR REPLACE INTO pending(msg_id, seq, endpoint_id, subscription, msg, expires_ms) VALUES(?,?,?,?,?,?)");
    if (!q.ok()) return dbError("preparing insert");
    q.text(1, n.msgId);
    q.integer(2, static_cast<std::int64_t>(n.seq));
    q.text(3, n.endpointId);
    q.text(4, n.subscription);
    q.blob(5, n.msg);
    q.integer(6, n.expiresAtMs);
    if (sqlite3_step(q.get()) != SQLITE_DONE) return dbError("storing " + n.msgId);
    return okStatus();
}

Status NotifyStore::remove(const std::string& msgId) {
    Stmt q(db_, "DELETE FROM pending WHERE msg_id = ?");
    if (!q.ok()) return dbError("preparing delete");
    q.text(1, msgId);
    if (sqlite3_step(q.get()) != SQLITE_DONE) return dbError("deleting " + msgId);
    return okStatus();
}

Result<std::vector<StoredNotification>> NotifyStore::loadAll() {
    Stmt q(db_, "SELECT msg_id, seq, endpoint_id, subscription, msg, expires_ms FROM pending ORDER BY seq");
    if (!q.ok()) return dbError("preparing load");
    std::vector<StoredNotification> out;
    int rc;
    while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
        StoredNotification n;
        n.msgId = q.column(0);
        n.seq = static_cast<std::uint64_t>(sqlite3_column_int64(q.get(), 1));
        n.endpointId = q.column(2);
        n.subscription = q.column(3);
        n.msg = q.column(4);
        n.expiresAtMs = sqlite3_column_int64(q.get(), 5);
        out.push_back(std::move(n));
    }
    if (rc != SQLITE_DONE) return dbError("loading");
    return out;
}

}  // namespace berth::agent::notify
