#include "berth/smm/journal.h"

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

OpKind kindFrom(const std::string& s) {
    if (s == "Update") return OpKind::kUpdate;
    if (s == "Uninstall") return OpKind::kUninstall;
    return OpKind::kInstall;
}

}  // namespace

Result<std::unique_ptr<Journal>> Journal::open(const std::filesystem::path& dbFile) {
    dm::sql::OpenOptions o;
    o.serialized = true;
    o.fileMode = 0600;  // it holds download credentials
    o.pragmas = {"journal_mode=WAL", "synchronous=FULL"};
    o.label = "journal";
    auto db = dm::sql::Database::open(dbFile, o);
    if (!db)
        return Error(ErrorCode::kInternalError,
                     "cannot open the operation journal " + dbFile.string() + ": " + db.error().message);
    BERTH_TRY((*db)->exec(
        "CREATE TABLE IF NOT EXISTS ops(id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT, phase TEXT, ee TEXT,"
        " du INTEGER, uuid TEXT, version TEXT, old_digest TEXT, new_digest TEXT, url TEXT, command TEXT,"
        " command_key TEXT, started INTEGER);"
        "CREATE TABLE IF NOT EXISTS credentials(ee TEXT, uuid TEXT, username TEXT, password TEXT,"
        " PRIMARY KEY(ee, uuid));"));
    return std::unique_ptr<Journal>(new Journal(std::move(*db)));
}

Journal::~Journal() = default;

Result<std::int64_t> Journal::begin(JournalEntry& e) {
    auto st = db_->cached(
        "INSERT INTO ops(kind, phase, ee, du, uuid, version, old_digest, new_digest, url, command,"
        " command_key, started) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)");
    if (!st) return st.error();
    (*st)->bindText(1, opKindName(e.kind))
        .bindText(2, e.phase)
        .bindText(3, e.eePath)
        .bindInt(4, e.duInstance)
        .bindText(5, e.uuid)
        .bindText(6, e.version)
        .bindText(7, e.oldDigest)
        .bindText(8, e.newDigest)
        .bindText(9, e.url)
        .bindText(10, e.commandPath)
        .bindText(11, e.commandKey)
        .bindInt(12, e.startedAt);
    BERTH_TRY((*st)->run("write"));
    e.id = db_->lastInsertRowId();
    return e.id;
}

Status Journal::update(const JournalEntry& e) {
    auto st = db_->cached("UPDATE ops SET phase=?1, du=?2, uuid=?3, version=?4, old_digest=?5, new_digest=?6 WHERE id=?7");
    if (!st) return st.error();
    (*st)->bindText(1, e.phase)
        .bindInt(2, e.duInstance)
        .bindText(3, e.uuid)
        .bindText(4, e.version)
        .bindText(5, e.oldDigest)
        .bindText(6, e.newDigest)
        .bindInt(7, e.id);
    return (*st)->run("write");
}

Status Journal::finish(std::int64_t id) {
    auto st = db_->cached("DELETE FROM ops WHERE id=?1");
    if (!st) return st.error();
    (*st)->bindInt(1, id);
    return (*st)->run("write");
}

Result<std::vector<JournalEntry>> Journal::pending() const {
    auto s = db_->prepare(
        "SELECT id, kind, phase, ee, du, uuid, version, old_digest, new_digest, url, command, command_key, started"
        " FROM ops ORDER BY id");
    if (!s) return s.error();
    std::vector<JournalEntry> out;
    for (;;) {
        auto row = s->step("read");
        if (!row) return row.error();
        if (!*row) break;
        JournalEntry e;
        e.id = s->columnInt(0);
        e.kind = kindFrom(s->columnText(1));
        e.phase = s->columnText(2);
        e.eePath = s->columnText(3);
        e.duInstance = static_cast<std::uint32_t>(s->columnInt(4));
        e.uuid = s->columnText(5);
        e.version = s->columnText(6);
        e.oldDigest = s->columnText(7);
        e.newDigest = s->columnText(8);
        e.url = s->columnText(9);
        e.commandPath = s->columnText(10);
        e.commandKey = s->columnText(11);
        e.startedAt = s->columnInt(12);
        out.push_back(std::move(e));
    }
    return out;
}

Status Journal::saveCredentials(const std::string& eePath, const std::string& uuid, const std::string& username,
                                const std::string& password) {
    auto st = db_->cached("INSERT OR REPLACE INTO credentials(ee, uuid, username, password) VALUES(?1,?2,?3,?4)");
    if (!st) return st.error();
    (*st)->bindText(1, eePath).bindText(2, uuid).bindText(3, username).bindText(4, password);
    return (*st)->run("write");
}

Result<std::pair<std::string, std::string>> Journal::credentials(const std::string& eePath, const std::string& uuid) const {
    auto s = db_->prepare("SELECT username, password FROM credentials WHERE ee=?1 AND uuid=?2");
    if (!s) return s.error();
    s->bindText(1, eePath).bindText(2, uuid);
    auto row = s->step("read");
    if (!row) return row.error();
    if (*row) return std::make_pair(s->columnText(0), s->columnText(1));
    return std::make_pair(std::string(), std::string());
}

Status Journal::dropCredentials(const std::string& eePath, const std::string& uuid) {
    auto st = db_->cached("DELETE FROM credentials WHERE ee=?1 AND uuid=?2");
    if (!st) return st.error();
    (*st)->bindText(1, eePath).bindText(2, uuid);
    return (*st)->run("write");
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
