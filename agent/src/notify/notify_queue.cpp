#include "notify_queue.h"

namespace berth::agent::notify {

Result<std::unique_ptr<NotifyStore>> NotifyStore::open(const std::string& path) {
    std::unique_ptr<NotifyStore> s(new NotifyStore());
    dm::sql::OpenOptions o;
    o.label = "notification queue";
    // Notifications may carry configuration values: owner only. (umask is process-wide and
    // would race with other threads, so the mode is given to the file itself; SQLite gives
    // the -wal/-shm files the database's mode.)
    o.fileMode = 0600;
    o.busyTimeoutMs = 0;
    o.pragmas = {"journal_mode=WAL", "synchronous=FULL"};
    auto db = dm::sql::Database::open(path, o);
    if (!db) return db.error();
    s->db_ = std::move(*db);
    BERTH_TRY(s->db_->exec(
        "CREATE TABLE IF NOT EXISTS pending(msg_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, endpoint_id TEXT NOT NULL,"
        " subscription TEXT NOT NULL, msg BLOB NOT NULL, expires_ms INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"));
    return s;
}

NotifyStore::~NotifyStore() = default;

Result<std::uint64_t> NotifyStore::nextStart() {
    BERTH_TRY(db_->exec("INSERT INTO meta(key, value) VALUES('starts', 1) ON CONFLICT(key) DO UPDATE SET value = value + 1"));
    auto q = db_->prepare("SELECT value FROM meta WHERE key = 'starts'");
    if (!q) return db_->error("reading the start counter");
    auto row = q->step("reading the start counter");
    if (!row) return row.error();
    if (!*row) return db_->error("reading the start counter");
    return static_cast<std::uint64_t>(q->columnInt(0));
}

Status NotifyStore::put(const StoredNotification& n) {
    auto q = db_->prepare("INSERT OR REPLACE INTO pending(msg_id, seq, endpoint_id, subscription, msg, expires_ms) VALUES(?,?,?,?,?,?)");
    if (!q) return db_->error("preparing insert");
    q->bindText(1, n.msgId)
        .bindInt(2, static_cast<std::int64_t>(n.seq))
        .bindText(3, n.endpointId)
        .bindText(4, n.subscription)
        .bindBlob(5, n.msg)
        .bindInt(6, n.expiresAtMs);
    return q->run("storing " + n.msgId);
}

Status NotifyStore::remove(const std::string& msgId) {
    auto q = db_->prepare("DELETE FROM pending WHERE msg_id = ?");
    if (!q) return db_->error("preparing delete");
    q->bindText(1, msgId);
    return q->run("deleting " + msgId);
}

Result<std::vector<StoredNotification>> NotifyStore::loadAll() {
    auto q = db_->prepare("SELECT msg_id, seq, endpoint_id, subscription, msg, expires_ms FROM pending ORDER BY seq");
    if (!q) return db_->error("preparing load");
    std::vector<StoredNotification> out;
    for (;;) {
        auto row = q->step("loading");
        if (!row) return row.error();
        if (!*row) break;
        StoredNotification n;
        n.msgId = q->columnBlob(0);
        n.seq = static_cast<std::uint64_t>(q->columnInt(1));
        n.endpointId = q->columnBlob(2);
        n.subscription = q->columnBlob(3);
        n.msg = q->columnBlob(4);
        n.expiresAtMs = q->columnInt(5);
        out.push_back(std::move(n));
    }
    return out;
}

}  // namespace berth::agent::notify
