#include "berth/smm/journal.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

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
    sqlite3* db = nullptr;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
    if (sqlite3_open_v2(dbFile.c_str(), &db, flags, nullptr) != SQLITE_OK) {
        Error e(ErrorCode::kInternalError, "cannot open the operation journal " + dbFile.string() + ": " +
                                               (db ? sqlite3_errmsg(db) : "out of memory"));
        sqlite3_close(db);
        return e;
    }
    ::chmod(dbFile.c_str(), 0600);  // it holds download credentials
    auto key = loadOrCreateKey(dbFile.string() + ".key");
    if (!key) {
        sqlite3_close(db);
        return key.error();
    }
    std::unique_ptr<Journal> j(new Journal(db, std::move(*key)));
    // secure_delete: a password replaced by its sealed form leaves no copy in free pages.
    const char* schema =
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA secure_delete=ON;"
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
    // Journals from before sealing hold clear passwords: seal them now.
    std::vector<std::vector<std::string>> clear;
    {
        Stmt s(db, "SELECT ee, uuid, password FROM credentials WHERE password <> '' AND substr(password, 1, 8) <> 'sealed1:'");
        while (s.ok() && s.step() == SQLITE_ROW) clear.push_back({s.text(0), s.text(1), s.text(2)});
    }
    for (const auto& row : clear) {
        std::string sealed = sealPassword(j->key_, credentialAad(row[0], row[1]), row[2]);
        if (sealed.empty() || !j->exec("UPDATE credentials SET password=? WHERE ee=? AND uuid=?", {sealed, row[0], row[1]}))
            return Error(ErrorCode::kInternalError, "journal: cannot seal a stored password");
    }
    if (!clear.empty()) (void)sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
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
    std::string sealed;
    if (!password.empty()) {
        sealed = sealPassword(key_, credentialAad(eePath, uuid), password);
        if (sealed.empty()) return Error(ErrorCode::kInternalError, "journal: cannot seal the password");
    }
    return exec("INSERT OR REPLACE INTO credentials(ee, uuid, username, password) VALUES(?,?,?,?)",
                {eePath, uuid, username, sealed});
}

Result<std::pair<std::string, std::string>> Journal::credentials(const std::string& eePath, const std::string& uuid) const {
    Stmt s(db_, "SELECT username, password FROM credentials WHERE ee=? AND uuid=?");
    if (!s.ok()) return sqlError(db_, "prepare");
    s.bind({eePath, uuid});
    if (s.step() == SQLITE_ROW) {
        std::string stored = s.text(1);
        if (stored.empty()) return std::make_pair(s.text(0), std::string());
        auto plain = unsealPassword(key_, credentialAad(eePath, uuid), stored);
        if (!plain) {
            BERTH_LOG_WARN("smm") << "the stored password of " << uuid << " cannot be unsealed (credential key changed?)";
            return std::make_pair(s.text(0), std::string());
        }
        return std::make_pair(s.text(0), std::move(*plain));
    }
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
