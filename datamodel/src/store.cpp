#include "store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>

#include <cerrno>
#include <cstring>

#include "berth/core/log.h"

namespace berth::dm::detail {
namespace {

constexpr std::size_t kKeyLen = 32;
constexpr std::size_t kNonceLen = 12;
constexpr std::size_t kTagLen = 16;
constexpr char kEncMagic[] = "G1";

Result<std::string> loadOrCreateKey(const std::filesystem::path& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        unsigned char key[kKeyLen];
        if (RAND_bytes(key, sizeof key) != 1) return Error(ErrorCode::kInternalError, "no randomness for the key");
        fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) return Error(ErrorCode::kInternalError, "cannot create key file: " + std::string(std::strerror(errno)), path);
        bool ok = ::write(fd, key, sizeof key) == static_cast<ssize_t>(sizeof key) && ::fsync(fd) == 0;
        ::close(fd);
        if (!ok) return Error(ErrorCode::kInternalError, "cannot write key file", path);
        return std::string(reinterpret_cast<char*>(key), sizeof key);
    }
    if (fd < 0) return Error(ErrorCode::kInternalError, "cannot open key file: " + std::string(std::strerror(errno)), path);
    ::fchmod(fd, 0600);
    char buf[kKeyLen];
    ssize_t n = ::read(fd, buf, sizeof buf);
    ::close(fd);
    if (n != static_cast<ssize_t>(kKeyLen)) return Error(ErrorCode::kInternalError, "key file is corrupt", path);
    return std::string(buf, kKeyLen);
}

struct CipherCtx {
    EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
    ~CipherCtx() { EVP_CIPHER_CTX_free(c); }
};

}  // namespace

Error Store::dbError(const std::string& what) const {
    return Error(ErrorCode::kInternalError, what + ": " + (db_ ? sqlite3_errmsg(db_) : "no database"));
}

Result<std::unique_ptr<Store>> Store::open(const std::filesystem::path& db, const std::filesystem::path& key) {
    std::unique_ptr<Store> s(new Store());
    auto k = loadOrCreateKey(key);
    if (!k) return k.error();
    s->key_ = std::move(*k);
    bool existed = std::filesystem::exists(db);
    if (!existed) {
        // Create the file ourselves so it is 0600 from the start; SQLite gives the -wal and
        // -shm files the same mode.
        int fd = ::open(db.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) return Error(ErrorCode::kInternalError, "cannot create database: " + std::string(std::strerror(errno)), db);
        ::close(fd);
    }
    ::chmod(db.c_str(), 0600);
    if (sqlite3_open_v2(db.c_str(), &s->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK)
        return s->dbError("cannot open database " + db.string());
    sqlite3_busy_timeout(s->db_, 5000);
    BERTH_TRY(s->exec("PRAGMA journal_mode=WAL"));
    BERTH_TRY(s->exec("PRAGMA synchronous=FULL"));
    BERTH_TRY(s->exec(
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS instances(path TEXT PRIMARY KEY);"
        "CREATE TABLE IF NOT EXISTS params(path TEXT PRIMARY KEY, value BLOB NOT NULL, enc INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE IF NOT EXISTS counters(path TEXT PRIMARY KEY, next INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS factory(seq INTEGER PRIMARY KEY, path TEXT NOT NULL, value TEXT NOT NULL);"));
    auto st = s->stmt(0, "SELECT value FROM meta WHERE key='initialized'");
    if (!st) return st.error();
    s->fresh_ = sqlite3_step(*st) != SQLITE_ROW;
    sqlite3_reset(*st);
    return s;
}

Store::~Store() {
    for (auto* st : stmts_)
        if (st) sqlite3_finalize(st);
    if (db_) sqlite3_close(db_);
}

Status Store::exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err ? err : "unknown";
        sqlite3_free(err);
        return Error(ErrorCode::kInternalError, std::string("database: ") + msg);
    }
    return okStatus();
}

Result<sqlite3_stmt*> Store::stmt(int id, const char* sql) {
    if (stmts_.size() <= static_cast<std::size_t>(id)) stmts_.resize(id + 1, nullptr);
    if (!stmts_[id] && sqlite3_prepare_v2(db_, sql, -1, &stmts_[id], nullptr) != SQLITE_OK)
        return dbError("prepare");
    sqlite3_reset(stmts_[id]);
    sqlite3_clear_bindings(stmts_[id]);
    return stmts_[id];
}

Status Store::begin() { return exec("BEGIN IMMEDIATE"); }
Status Store::commit() { return exec("COMMIT"); }
void Store::rollback() { (void)exec("ROLLBACK"); }

Result<Store::Contents> Store::load() {
    Contents c;
    auto a = stmt(1, "SELECT path FROM instances");
    if (!a) return a.error();
    while (sqlite3_step(*a) == SQLITE_ROW) c.instances.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(*a, 0)));
    auto b = stmt(2, "SELECT path, value, enc FROM params");
    if (!b) return b.error();
    while (sqlite3_step(*b) == SQLITE_ROW) {
        std::string path = reinterpret_cast<const char*>(sqlite3_column_text(*b, 0));
        std::string value(static_cast<const char*>(sqlite3_column_blob(*b, 1)) ? static_cast<const char*>(sqlite3_column_blob(*b, 1)) : "",
                          static_cast<std::size_t>(sqlite3_column_bytes(*b, 1)));
        if (sqlite3_column_int(*b, 2)) {
            auto plain = decrypt(path, value);
            if (!plain) {
                BERTH_LOG_WARN("dm") << "cannot decrypt stored " << path << ": " << plain.error().message;
                continue;
            }
            value = std::move(*plain);
        }
        c.params.emplace_back(std::move(path), std::move(value));
    }
    auto d = stmt(3, "SELECT path, next FROM counters");
    if (!d) return d.error();
    while (sqlite3_step(*d) == SQLITE_ROW)
        c.counters.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(*d, 0)),
                                static_cast<std::uint32_t>(sqlite3_column_int64(*d, 1)));
    return c;
}

Status Store::putInstance(const std::string& path) {
    auto s = stmt(4, "INSERT OR REPLACE INTO instances(path) VALUES(?1)");
    if (!s) return s.error();
    sqlite3_bind_text(*s, 1, path.data(), static_cast<int>(path.size()), SQLITE_STATIC);
    if (sqlite3_step(*s) != SQLITE_DONE) return dbError("store instance");
    return okStatus();
}

Status Store::deleteSubtree(const std::string& prefix) {
    // prefix ends in '.', and '/' is the next character: [prefix, prefix-with-'/') is the subtree.
    std::string upper = prefix;
    upper.back() = '/';
    static const char* const kSql[] = {
        "DELETE FROM instances WHERE path >= ?1 AND path < ?2",
        "DELETE FROM params WHERE path >= ?1 AND path < ?2",
        "DELETE FROM counters WHERE path >= ?1 AND path < ?2",
    };
    for (int i = 0; i < 3; ++i) {
        auto s = stmt(5 + i, kSql[i]);
        if (!s) return s.error();
        sqlite3_bind_text(*s, 1, prefix.data(), static_cast<int>(prefix.size()), SQLITE_STATIC);
        sqlite3_bind_text(*s, 2, upper.data(), static_cast<int>(upper.size()), SQLITE_STATIC);
        if (sqlite3_step(*s) != SQLITE_DONE) return dbError("delete subtree");
    }
    return okStatus();
}

Status Store::putParam(const std::string& path, const std::string& value, bool secured) {
    auto s = stmt(8, "INSERT OR REPLACE INTO params(path, value, enc) VALUES(?1, ?2, ?3)");
    if (!s) return s.error();
    std::string stored = value;
    if (secured) {
        auto enc = encrypt(path, value);
        if (!enc) return enc.error();
        stored = std::move(*enc);
    }
    sqlite3_bind_text(*s, 1, path.data(), static_cast<int>(path.size()), SQLITE_STATIC);
    sqlite3_bind_blob(*s, 2, stored.data(), static_cast<int>(stored.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int(*s, 3, secured ? 1 : 0);
    if (sqlite3_step(*s) != SQLITE_DONE) return dbError("store parameter");
    return okStatus();
}

Status Store::putCounter(const std::string& tablePath, std::uint32_t next) {
    auto s = stmt(9, "INSERT OR REPLACE INTO counters(path, next) VALUES(?1, ?2)");
    if (!s) return s.error();
    sqlite3_bind_text(*s, 1, tablePath.data(), static_cast<int>(tablePath.size()), SQLITE_STATIC);
    sqlite3_bind_int64(*s, 2, next);
    if (sqlite3_step(*s) != SQLITE_DONE) return dbError("store counter");
    return okStatus();
}

Status Store::clearModel() { return exec("DELETE FROM instances; DELETE FROM params; DELETE FROM counters;"); }

Status Store::setFactory(const std::vector<std::pair<std::string, std::string>>& values) {
    BERTH_TRY(exec("DELETE FROM factory"));
    for (const auto& [p, v] : values) {
        auto s = stmt(10, "INSERT INTO factory(path, value) VALUES(?1, ?2)");
        if (!s) return s.error();
        sqlite3_bind_text(*s, 1, p.data(), static_cast<int>(p.size()), SQLITE_STATIC);
        sqlite3_bind_text(*s, 2, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
        if (sqlite3_step(*s) != SQLITE_DONE) return dbError("store factory value");
    }
    return okStatus();
}

Result<std::vector<std::pair<std::string, std::string>>> Store::factory() {
    std::vector<std::pair<std::string, std::string>> out;
    auto s = stmt(11, "SELECT path, value FROM factory ORDER BY seq");
    if (!s) return s.error();
    while (sqlite3_step(*s) == SQLITE_ROW)
        out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(*s, 0)),
                         reinterpret_cast<const char*>(sqlite3_column_text(*s, 1)));
    return out;
}

Status Store::markInitialized() {
    fresh_ = false;
    return exec("INSERT OR REPLACE INTO meta(key, value) VALUES('initialized', '1')");
}

Result<std::string> Store::encrypt(const std::string& path, const std::string& plain) const {
    unsigned char nonce[kNonceLen];
    if (RAND_bytes(nonce, sizeof nonce) != 1) return Error(ErrorCode::kInternalError, "no randomness");
    CipherCtx ctx;
    std::string out(kEncMagic);
    out.append(reinterpret_cast<char*>(nonce), kNonceLen);
    std::string ct(plain.size() + 16, '\0');
    int len = 0, fin = 0;
    const auto* key = reinterpret_cast<const unsigned char*>(key_.data());
    if (!ctx.c || EVP_EncryptInit_ex(ctx.c, EVP_aes_256_gcm(), nullptr, key, nonce) != 1 ||
        EVP_EncryptUpdate(ctx.c, nullptr, &len, reinterpret_cast<const unsigned char*>(path.data()), static_cast<int>(path.size())) != 1 ||
        EVP_EncryptUpdate(ctx.c, reinterpret_cast<unsigned char*>(ct.data()), &len,
                          reinterpret_cast<const unsigned char*>(plain.data()), static_cast<int>(plain.size())) != 1 ||
        EVP_EncryptFinal_ex(ctx.c, reinterpret_cast<unsigned char*>(ct.data()) + len, &fin) != 1)
        return Error(ErrorCode::kInternalError, "encryption failed");
    ct.resize(static_cast<std::size_t>(len + fin));
    unsigned char tag[kTagLen];
    if (EVP_CIPHER_CTX_ctrl(ctx.c, EVP_CTRL_GCM_GET_TAG, kTagLen, tag) != 1) return Error(ErrorCode::kInternalError, "encryption failed");
    out += ct;
    out.append(reinterpret_cast<char*>(tag), kTagLen);
    return out;
}

Result<std::string> Store::decrypt(const std::string& path, const std::string& blob) const {
    if (blob.size() < 2 + kNonceLen + kTagLen || blob.compare(0, 2, kEncMagic) != 0)
        return Error(ErrorCode::kInternalError, "not an encrypted value");
    const auto* nonce = reinterpret_cast<const unsigned char*>(blob.data() + 2);
    std::size_t ctLen = blob.size() - 2 - kNonceLen - kTagLen;
    const auto* ct = reinterpret_cast<const unsigned char*>(blob.data() + 2 + kNonceLen);
    std::string tag = blob.substr(blob.size() - kTagLen);
    CipherCtx ctx;
    std::string plain(ctLen + 16, '\0');
    int len = 0, fin = 0;
    const auto* key = reinterpret_cast<const unsigned char*>(key_.data());
    if (!ctx.c || EVP_DecryptInit_ex(ctx.c, EVP_aes_256_gcm(), nullptr, key, nonce) != 1 ||
        EVP_DecryptUpdate(ctx.c, nullptr, &len, reinterpret_cast<const unsigned char*>(path.data()), static_cast<int>(path.size())) != 1 ||
        EVP_DecryptUpdate(ctx.c, reinterpret_cast<unsigned char*>(plain.data()), &len, ct, static_cast<int>(ctLen)) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.c, EVP_CTRL_GCM_SET_TAG, kTagLen, tag.data()) != 1 ||
        EVP_DecryptFinal_ex(ctx.c, reinterpret_cast<unsigned char*>(plain.data()) + len, &fin) != 1)
        return Error(ErrorCode::kInternalError, "authentication of the stored value failed");
    plain.resize(static_cast<std::size_t>(len + fin));
    return plain;
}

}  // namespace berth::dm::detail
