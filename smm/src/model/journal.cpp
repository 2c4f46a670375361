#include "berth/smm/journal.h"

#include <sqlite3.h>
#include <sys/stat.h>

namespace berth::smm {

std::string_view opKindName(OpKind kind) {
    switch (kind) {
        case OpKind::kInstall: return "Install";
        case OpKind::kUpdate: return "Update";
        case OpKind::kUninstall: return "Uninstall";
    }
    return "Install";
}

namespace {

Error sqlError(sqlite3* db, const std::string& what) {
    return Error(ErrorCode::kInternalError, "journal: " + what + ": " + sqlite3_errmsg(db));
}

OpKind kindFrom(const std::string& s) {
    if (s == "Update") return OpKind::kUpdate;
    if (s == "Uninstall") return OpKind::kUninstall;
    return OpKind::kInstall;
}

class Stmt {
public:
    Stmt(sqlite3* db, const std::string& sql) { ok_ = sqlite3_prepare_v2(db, sql.c_str(), -1, &s_, nullptr) == SQLITE_OK; }
    ~Stmt() { sqlite3_finalize(s_); }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;
    bool ok() const { return ok_; }
    void bind(const std::vector<std::string>& args) {
        for (std::size_t i = 0; i < args.size(); ++i)
            sqlite3_bind_text(s_, static_cast<int>(i + 1), args[i].c_str(), static_cast<int>(args[i].size()),
                              SQLITE_TRANSIENT);
    }
    int step() { return sqlite3_step(s_); }
    std::string text(int col) const {
        const auto* t = sqlite3_column_text(s_, col);
        return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
    }
    std::int64_t integer(int col) const { return sqlite3_column_int64(s_, col); }

private:
    sqlite3_stmt* s_ = nullptr;
    bool ok_ = false;
};

}  // namespace

Result<std::unique_ptr<Journal>> Journal::open(const std::filesystem::path& dbFile) {
    sqlite3* db = nullptr;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
    if (sqlite3_open_v2(dbFile.c_str(), &db, flags, nullptr) != SQLITE_OK) {
        Error e(ErrorCode::kInternalError, "cannot open the operation journal " + dbFile.string() + ": " +
                                               (db ? sqlite3_errmsg(db) : "out of memory"));
        sqlite3_close(db);
        return e;
    }
    ::chmod(dbFile.c_str(), 0600);  // it holds download credentials
    std::unique_ptr<Journal> j(new Journal(db));
    const char* schema =
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
        "CREATE TABLE IF NOT EXISTS ops(id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT, phase TEXT, ee TEXT,"
        " du INTEGER, uuid TEXT, version TEXT, old_digest TEXT, new_digest TEXT, url TEXT, command TEXT,"
        " command_key TEXT, started INTEGER);"
        "CREATE TABLE IF NOT EXISTS credentials(ee TEXT, uuid TEXT, username TEXT, password TEXT,"
        " PRIMARY KEY(ee, uuid));";
    char* err = nullptr;
    if (sqlite3_exec(db, schema, nullptr, nullptr, &err) != SQLITE_OK) {
        Error e(ErrorCode::kInternalError, std::string("journal schema: ") + (err ? err : "?"));
        sqlite3_free(err);
        return e;
    }
    return j;
}

Journal::~Journal() { sqlite3_close(db_); }

Status Journal::exec(const std::string& sql, const std::vector<std::string>& args) const {
    Stmt s(db_, sql);
    if (!s.ok()) return sqlError(db_, "prepare");
    s.bind(args);
    if (s.step() != SQLITE_DONE) return sqlError(db_, "write");
    return okStatus();
}

Result<std::int64_t> Journal::begin(JournalEntry& e) {
    BERTH_TRY(exec("INSERT INTO ops(kind, phase, ee, du, uuid, version, old_digest, new_digest, url, command,"
                   " command_key, started) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                   {std::string(opKindName(e.kind)), e.phase, e.eePath, std::to_string(e.duInstance), e.uuid, e.version,
                    e.oldDigest, e.newDigest, e.url, e.commandPath, e.commandKey, std::to_string(e.startedAt)}));
    e.id = sqlite3_last_insert_rowid(db_);
    return e.id;
}

Status Journal::update(const JournalEntry& e) {
    return exec("UPDATE ops SET phase=?, du=?, uuid=?, version=?, old_digest=?, new_digest=? WHERE id=?",
                {e.phase, std::to_string(e.duInstance), e.uuid, e.version, e.oldDigest, e.newDigest,
                 std::to_string(e.id)});
}

Status Journal::finish(std::int64_t id) { return exec("DELETE FROM ops WHERE id=?", {std::to_string(id)}); }

Result<std::vector<JournalEntry>> Journal::pending() const {
    Stmt s(db_,
           "SELECT id, kind, phase, ee, du, uuid, version, old_digest, new_digest, url, command, command_key, started"
           " FROM ops ORDER BY id");
    if (!s.ok()) return sqlError(db_, "prepare");
    std::vector<JournalEntry> out;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) {
        JournalEntry e;
        e.id = s.integer(0);
        e.kind = kindFrom(s.text(1));
        e.phase = s.text(2);
        e.eePath = s.text(3);
        e.duInstance = static_cast<std::uint32_t>(s.integer(4));
        e.uuid = s.text(5);
        e.version = s.text(6);
        e.oldDigest = s.text(7);
        e.newDigest = s.text(8);
        e.url = s.text(9);
        e.commandPath = s.text(10);
        e.commandKey = s.text(11);
        e.startedAt = s.integer(12);
        out.push_back(std::move(e));
    }
    if (rc != SQLITE_DONE) return sqlError(db_, "read");
    return out;
}

Status Journal::saveCredentials(const std::string& eePath, const std::string& uuid, const std::string& username,
                                const std::string& password) {
    return exec("INSERT OR REPLACE INTO credentials(ee, uuid, username, password) VALUES(?,?,?,?)",
                {eePath, uuid, username, password});
}

Result<std::pair<std::string, std::string>> Journal::credentials(const std::string& eePath, const std::string& uuid) const {
    Stmt s(db_, "SELECT username, password FROM credentials WHERE ee=? AND uuid=?");
    if (!s.ok()) return sqlError(db_, "prepare");
    s.bind({eePath, uuid});
    if (s.step() == SQLITE_ROW) return std::make_pair(s.text(0), s.text(1));
    return std::make_pair(std::string(), std::string());
}

Status Journal::dropCredentials(const std::string& eePath, const std::string& uuid) {
    return exec("DELETE FROM credentials WHERE ee=? AND uuid=?", {eePath, uuid});
}

RecoveryDecision decideRecovery(const JournalEntry& e, const DuSnapshot& du) {
    RecoveryDecision d;
    d.currentState = "Failed";
    d.code = ErrorCode::kInternalError;
    using A = RecoveryDecision::DmAction;
    switch (e.kind) {
        case OpKind::kInstall:
            // Rows exist only from kPhaseCommitting on; the duplicate check had passed by
            // then, so a row with this UUID and Version can only be this install's. An
            // install is complete only once its journal row is gone, so it is undone.
            if ((e.phase == kPhaseCommitting || e.phase == kPhaseCommitted) && du.exists) d.dmAction = A::kDeleteDu;
            d.message = "the install was interrupted by an agent restart and has been rolled back; nothing of it remains";
            break;
        case OpKind::kUpdate:
            if (!du.exists) {
                d.message = "the update was interrupted by an agent restart and the deployment unit no longer exists";
                break;
            }
            d.dmAction = A::kMarkInstalled;
            if ((e.phase == kPhaseCommitted || e.phase == kPhaseCommitting) && !e.newDigest.empty() &&
                e.newDigest != e.oldDigest && e.newDigest.find(du.duid) != std::string::npos && !du.duid.empty()) {
                d.completed = true;
                d.currentState = "Installed";
                d.code = ErrorCode::kOk;
                d.message.clear();
            } else {
                d.message = "the update was interrupted by an agent restart; the deployment unit stays at its "
                            "previous version (its execution units are Idle unless AutoStart)";
            }
            break;
        case OpKind::kUninstall:
            if (du.exists) {
                d.dmAction = A::kMarkInstalled;
                d.message = "the uninstall was interrupted by an agent restart before it removed the deployment "
                            "unit; it stays installed (its execution units are Idle unless AutoStart)";
            } else {
                d.completed = true;
                d.currentState = "Uninstalled";
                d.code = ErrorCode::kOk;
            }
            break;
    }
    return d;
}

}  // namespace berth::smm
