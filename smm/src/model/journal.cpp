#include "berth/smm/journal.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "berth/core/fd.h"
#include "berth/core/log.h"

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

// Passwords are sealed with AES-256-GCM under a key kept in its own 0600 file beside
// the journal, bound to their (ExecEnv, UUID) row: a copy of the database alone
// (a backup, a support bundle) reveals no password.
constexpr std::size_t kKeyBytes = 32, kNonceBytes = 12, kTagBytes = 16;
constexpr std::string_view kSealedPrefix = "sealed1:";

struct CipherCtx {
    EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
    ~CipherCtx() { EVP_CIPHER_CTX_free(c); }
};

std::string toHex(const unsigned char* p, std::size_t n) {
    static const char* kDigits = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back(kDigits[p[i] >> 4]);
        out.push_back(kDigits[p[i] & 15]);
    }
    return out;
}

bool fromHex(std::string_view hex, std::string& out) {
    if (hex.size() % 2) return false;
    auto v = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
    for (std::size_t i = 0; i < hex.size(); i += 2) {
        int hi = v(hex[i]), lo = v(hex[i + 1]);
        if (hi < 0 || lo < 0) return false;
        out.push_back(static_cast<char>(hi * 16 + lo));
    }
    return true;
}

std::string sealPassword(const std::string& key, const std::string& aad, const std::string& password) {
    unsigned char nonce[kNonceBytes];
    if (key.size() != kKeyBytes || RAND_bytes(nonce, sizeof nonce) != 1) return {};
    CipherCtx ctx;
    std::string ct(password.size() + 16, '\0');
    unsigned char tag[kTagBytes];
    int len = 0, fin = 0;
    auto* out = reinterpret_cast<unsigned char*>(ct.data());
    if (!ctx.c || EVP_EncryptInit_ex(ctx.c, EVP_aes_256_gcm(), nullptr, reinterpret_cast<const unsigned char*>(key.data()), nonce) != 1 ||
        EVP_EncryptUpdate(ctx.c, nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()), static_cast<int>(aad.size())) != 1 ||
        EVP_EncryptUpdate(ctx.c, out, &len, reinterpret_cast<const unsigned char*>(password.data()), static_cast<int>(password.size())) != 1 ||
        EVP_EncryptFinal_ex(ctx.c, out + len, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.c, EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) != 1)
        return {};
    return std::string(kSealedPrefix) + toHex(nonce, kNonceBytes) +
           toHex(reinterpret_cast<const unsigned char*>(ct.data()), static_cast<std::size_t>(len + fin)) + toHex(tag, kTagBytes);
}

// nullopt when the value is not sealed (a journal from before sealing) or fails to open.
std::optional<std::string> unsealPassword(const std::string& key, const std::string& aad, const std::string& value) {
    if (value.rfind(kSealedPrefix, 0) != 0) return std::nullopt;
    std::string raw;
    if (key.size() != kKeyBytes || !fromHex(std::string_view(value).substr(kSealedPrefix.size()), raw) ||
        raw.size() < kNonceBytes + kTagBytes)
        return std::nullopt;
    auto* p = reinterpret_cast<const unsigned char*>(raw.data());
    std::size_t ctLen = raw.size() - kNonceBytes - kTagBytes;
    std::string plain(ctLen + 16, '\0');
    CipherCtx ctx;
    int len = 0, fin = 0;
    std::string tag = raw.substr(kNonceBytes + ctLen);
    auto* out = reinterpret_cast<unsigned char*>(plain.data());
    if (!ctx.c || EVP_DecryptInit_ex(ctx.c, EVP_aes_256_gcm(), nullptr, reinterpret_cast<const unsigned char*>(key.data()), p) != 1 ||
        EVP_DecryptUpdate(ctx.c, nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()), static_cast<int>(aad.size())) != 1 ||
        EVP_DecryptUpdate(ctx.c, out, &len, p + kNonceBytes, static_cast<int>(ctLen)) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.c, EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) != 1 ||
        EVP_DecryptFinal_ex(ctx.c, out + len, &fin) != 1)
        return std::nullopt;
    plain.resize(static_cast<std::size_t>(len + fin));
    return plain;
}

constexpr std::int64_t kSchemaVersion = 2;

std::string credentialAad(const std::string& eePath, const std::string& uuid) { return eePath + "\n" + uuid; }

// The sealing key: read from keyFile, or made (32 random bytes, 0600) when missing.
Result<std::string> loadOrCreateKey(const std::string& keyFile) {
    UniqueFd fd(::open(keyFile.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (fd) {
        std::string key(kKeyBytes, '\0');
        ssize_t n = ::read(fd.get(), key.data(), key.size());
        if (n == static_cast<ssize_t>(kKeyBytes)) return key;
        return Error(ErrorCode::kInternalError, "credential key " + keyFile + " is not " + std::to_string(kKeyBytes) + " bytes");
    }
    if (errno != ENOENT) return Error(ErrorCode::kInternalError, "cannot read the credential key " + keyFile + ": " + std::strerror(errno));
    std::string key(kKeyBytes, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1)
        return Error(ErrorCode::kInternalError, "no randomness for the credential key");
    std::string tmp = keyFile + ".new";
    UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out || ::write(out.get(), key.data(), key.size()) != static_cast<ssize_t>(key.size()) || ::fsync(out.get()) != 0 ||
        ::rename(tmp.c_str(), keyFile.c_str()) != 0)
        return Error(ErrorCode::kInternalError, "cannot write the credential key " + keyFile + ": " + std::strerror(errno));
    return key;
}

}  // namespace

Result<std::unique_ptr<Journal>> Journal::open(const std::filesystem::path& dbFile) {
    dm::sql::OpenOptions o;
    o.serialized = true;
    o.fileMode = 0600;  // it holds download credentials
    // secure_delete: a password replaced by its sealed form leaves no copy in free pages.
    o.pragmas = {"journal_mode=WAL", "synchronous=FULL", "secure_delete=ON"};
    o.label = "journal";
    auto db = dm::sql::Database::open(dbFile, o);
    if (!db)
        return Error(ErrorCode::kInternalError,
                     "cannot open the operation journal " + dbFile.string() + ": " + db.error().message);
    // Schema 2 adds the inventory. A file below it (an earlier version's, or a new one)
    // is filled from the data-model rows once by the binding (Journal::migrate), so a
    // journal lost on its own does not lose the DUs either.
    std::int64_t version = 0;
    {
        auto v = (*db)->prepare("PRAGMA user_version");
        if (!v) return v.error();
        if (auto row = v->step("read"); row && *row) version = v->columnInt(0);
    }
    BERTH_TRY((*db)->exec(
        "CREATE TABLE IF NOT EXISTS dus(instance INTEGER PRIMARY KEY, record TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS eus(instance INTEGER PRIMARY KEY, record TEXT NOT NULL);"));
    bool needsMigration = version < kSchemaVersion;
    BERTH_TRY((*db)->exec(
        "CREATE TABLE IF NOT EXISTS ops(id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT, phase TEXT, ee TEXT,"
        " du INTEGER, uuid TEXT, version TEXT, old_digest TEXT, new_digest TEXT, url TEXT, command TEXT,"
        " command_key TEXT, started INTEGER);"
        "CREATE TABLE IF NOT EXISTS credentials(ee TEXT, uuid TEXT, username TEXT, password TEXT,"
        " PRIMARY KEY(ee, uuid));"));
    auto key = loadOrCreateKey(dbFile.string() + ".key");
    if (!key) return key.error();
    std::unique_ptr<Journal> j(new Journal(std::move(*db), std::move(*key)));
    j->needsMigration_ = needsMigration;
    BERTH_TRY(j->sealClearPasswords());
    return j;
}

// Journals from before sealing hold clear passwords: seal them now.
Status Journal::sealClearPasswords() {
    std::vector<std::array<std::string, 3>> clear;
    {
        auto s = db_->prepare(
            "SELECT ee, uuid, password FROM credentials WHERE password <> '' AND substr(password, 1, 8) <> 'sealed1:'");
        if (!s) return s.error();
        for (;;) {
            auto row = s->step("read");
            if (!row) return row.error();
            if (!*row) break;
            clear.push_back({s->columnText(0), s->columnText(1), s->columnText(2)});
        }
    }
    for (const auto& row : clear) {
        std::string sealed = sealPassword(key_, credentialAad(row[0], row[1]), row[2]);
        if (sealed.empty()) return Error(ErrorCode::kInternalError, "journal: cannot seal a stored password");
        auto st = db_->prepare("UPDATE credentials SET password=?1 WHERE ee=?2 AND uuid=?3");
        if (!st) return st.error();
        st->bindText(1, sealed).bindText(2, row[0]).bindText(3, row[1]);
        BERTH_TRY(st->run("write"));
    }
    if (!clear.empty())
        (void)sqlite3_wal_checkpoint_v2(db_->raw(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
    return {};
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
    std::string sealed;
    if (!password.empty()) {
        sealed = sealPassword(key_, credentialAad(eePath, uuid), password);
        if (sealed.empty()) return Error(ErrorCode::kInternalError, "journal: cannot seal the password");
    }
    auto st = db_->cached("INSERT OR REPLACE INTO credentials(ee, uuid, username, password) VALUES(?1,?2,?3,?4)");
    if (!st) return st.error();
    (*st)->bindText(1, eePath).bindText(2, uuid).bindText(3, username).bindText(4, sealed);
    return (*st)->run("write");
}

Result<std::pair<std::string, std::string>> Journal::credentials(const std::string& eePath, const std::string& uuid) const {
    auto s = db_->prepare("SELECT username, password FROM credentials WHERE ee=?1 AND uuid=?2");
    if (!s) return s.error();
    s->bindText(1, eePath).bindText(2, uuid);
    auto row = s->step("read");
    if (!row) return row.error();
    if (!*row) return std::make_pair(std::string(), std::string());
    std::string stored = s->columnText(1);
    if (stored.empty()) return std::make_pair(s->columnText(0), std::string());
    auto plain = unsealPassword(key_, credentialAad(eePath, uuid), stored);
    if (!plain) {
        BERTH_LOG_WARN("smm") << "the stored password of " << uuid << " cannot be unsealed (credential key changed?)";
        return std::make_pair(s->columnText(0), std::string());
    }
    return std::make_pair(s->columnText(0), std::move(*plain));
}

Status Journal::dropCredentials(const std::string& eePath, const std::string& uuid) {
    auto st = db_->cached("DELETE FROM credentials WHERE ee=?1 AND uuid=?2");
    if (!st) return st.error();
    (*st)->bindText(1, eePath).bindText(2, uuid);
    return (*st)->run("write");
}

// ---- the inventory ----

Status Journal::writeDu(const DeploymentUnit& du) {
    auto st = db_->cached("INSERT OR REPLACE INTO dus(instance, record) VALUES(?1, ?2)");
    if (!st) return st.error();
    (*st)->bindInt(1, du.instance).bindText(2, serialize(du));
    return (*st)->run("write");
}

Status Journal::writeEu(const ExecutionUnit& eu) {
    auto st = db_->cached("INSERT OR REPLACE INTO eus(instance, record) VALUES(?1, ?2)");
    if (!st) return st.error();
    (*st)->bindInt(1, eu.instance).bindText(2, serialize(eu));
    return (*st)->run("write");
}

Status Journal::migrate(const Inventory& inventory) {
    auto txn = dm::sql::Transaction::begin(*db_);
    if (!txn) return txn.error();
    BERTH_TRY(db_->exec("DELETE FROM dus; DELETE FROM eus;"));
    for (const auto& [n, du] : inventory.dus()) BERTH_TRY(writeDu(du));
    for (const auto& [n, eu] : inventory.eus()) BERTH_TRY(writeEu(eu));
    BERTH_TRY(db_->exec("PRAGMA user_version=" + std::to_string(kSchemaVersion)));
    BERTH_TRY(txn->commit());
    needsMigration_ = false;
    return {};
}

Result<Inventory> Journal::loadInventory() const {
    Inventory inv;
    for (const char* table : {"dus", "eus"}) {
        auto s = db_->prepare(std::string("SELECT record FROM ") + table + " ORDER BY instance");
        if (!s) return s.error();
        for (;;) {
            auto row = s->step("read");
            if (!row) return row.error();
            if (!*row) break;
            if (table[0] == 'd') {
                auto du = parseDeploymentUnit(s->columnText(0));
                if (!du) return du.error();
                inv.put(std::move(*du));
            } else {
                auto eu = parseExecutionUnit(s->columnText(0));
                if (!eu) return eu.error();
                inv.put(std::move(*eu));
            }
        }
    }
    return inv;
}

Status Journal::saveDu(const DeploymentUnit& du, const std::vector<const ExecutionUnit*>& eus) {
    auto txn = dm::sql::Transaction::begin(*db_);
    if (!txn) return txn.error();
    BERTH_TRY(writeDu(du));
    for (const auto* eu : eus) BERTH_TRY(writeEu(*eu));
    return txn->commit();
}

Status Journal::removeDu(const DeploymentUnit& du) {
    auto txn = dm::sql::Transaction::begin(*db_);
    if (!txn) return txn.error();
    for (auto n : du.executionUnits) BERTH_TRY(removeEu(n));
    auto st = db_->cached("DELETE FROM dus WHERE instance=?1");
    if (!st) return st.error();
    (*st)->bindInt(1, du.instance);
    BERTH_TRY((*st)->run("write"));
    return txn->commit();
}

Status Journal::saveEu(const ExecutionUnit& eu) { return writeEu(eu); }

Status Journal::removeEu(std::uint32_t instance) {
    auto st = db_->cached("DELETE FROM eus WHERE instance=?1");
    if (!st) return st.error();
    (*st)->bindInt(1, instance);
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
