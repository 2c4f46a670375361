#include "store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

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

Result<std::unique_ptr<Store>> Store::open(const std::filesystem::path& db, const std::filesystem::path& key) {
    std::unique_ptr<Store> s(new Store());
    auto k = loadOrCreateKey(key);
    if (!k) return k.error();
    s->key_ = std::move(*k);
    sql::OpenOptions o;
    o.fileMode = 0600;  // created 0600 from the start; SQLite gives -wal and -shm the same mode
    o.busyTimeoutMs = 5000;
    o.pragmas = {"journal_mode=WAL", "synchronous=FULL"};
    auto d = sql::Database::open(db, o);
    if (!d) return d.error();
    s->db_ = std::move(*d);
    BERTH_TRY(s->db_->exec(
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS instances(path TEXT PRIMARY KEY);"
        "CREATE TABLE IF NOT EXISTS params(path TEXT PRIMARY KEY, value BLOB NOT NULL, enc INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE IF NOT EXISTS counters(path TEXT PRIMARY KEY, next INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS factory(seq INTEGER PRIMARY KEY, path TEXT NOT NULL, value TEXT NOT NULL);"));
    auto st = s->db_->cached("SELECT value FROM meta WHERE key='initialized'");
    if (!st) return st.error();
    auto row = (*st)->step();
    if (!row) return row.error();
    s->fresh_ = !*row;
    (*st)->reset();
    return s;
}

Store::~Store() = default;

Result<sql::Transaction> Store::transaction() { return sql::Transaction::begin(*db_); }

Result<Store::Contents> Store::load() {
    Contents c;
    auto a = db_->cached("SELECT path FROM instances");
    if (!a) return a.error();
    for (auto row = (*a)->step(); row && *row; row = (*a)->step()) c.instances.push_back((*a)->columnText(0));
    auto b = db_->cached("SELECT path, value, enc FROM params");
    if (!b) return b.error();
    for (auto row = (*b)->step(); row && *row; row = (*b)->step()) {
        std::string path = (*b)->columnText(0);
        std::string value = (*b)->columnBlob(1);
        if ((*b)->columnInt(2)) {
            auto plain = decrypt(path, value);
            if (!plain) {
                BERTH_LOG_WARN("dm") << "cannot decrypt stored " << path << ": " << plain.error().message;
                continue;
            }
            value = std::move(*plain);
        }
        c.params.emplace_back(std::move(path), std::move(value));
    }
    auto d = db_->cached("SELECT path, next FROM counters");
    if (!d) return d.error();
    for (auto row = (*d)->step(); row && *row; row = (*d)->step())
        c.counters.emplace_back((*d)->columnText(0), static_cast<std::uint32_t>((*d)->columnInt(1)));
    return c;
}

Status Store::putInstance(const std::string& path) {
    auto s = db_->cached("INSERT OR REPLACE INTO instances(path) VALUES(?1)");
    if (!s) return s.error();
    (*s)->bindText(1, path);
    return (*s)->run("store instance");
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
    for (const char* sql : kSql) {
        auto s = db_->cached(sql);
        if (!s) return s.error();
        (*s)->bindText(1, prefix).bindText(2, upper);
        BERTH_TRY((*s)->run("delete subtree"));
    }
    return okStatus();
}

Status Store::putParam(const std::string& path, const std::string& value, bool secured) {
    auto s = db_->cached("INSERT OR REPLACE INTO params(path, value, enc) VALUES(?1, ?2, ?3)");
    if (!s) return s.error();
    std::string stored = value;
    if (secured) {
        auto enc = encrypt(path, value);
        if (!enc) return enc.error();
        stored = std::move(*enc);
    }
    (*s)->bindText(1, path).bindBlob(2, stored).bindInt(3, secured ? 1 : 0);
    return (*s)->run("store parameter");
}

Status Store::putCounter(const std::string& tablePath, std::uint32_t next) {
    auto s = db_->cached("INSERT OR REPLACE INTO counters(path, next) VALUES(?1, ?2)");
    if (!s) return s.error();
    (*s)->bindText(1, tablePath).bindInt(2, next);
    return (*s)->run("store counter");
}

Status Store::clearModel() { return db_->exec("DELETE FROM instances; DELETE FROM params; DELETE FROM counters;"); }

Status Store::setFactory(const std::vector<std::pair<std::string, std::string>>& values) {
    BERTH_TRY(db_->exec("DELETE FROM factory"));
    for (const auto& [p, v] : values) {
        auto s = db_->cached("INSERT INTO factory(path, value) VALUES(?1, ?2)");
        if (!s) return s.error();
        (*s)->bindText(1, p).bindText(2, v);
        BERTH_TRY((*s)->run("store factory value"));
    }
    return okStatus();
}

Result<std::vector<std::pair<std::string, std::string>>> Store::factory() {
    std::vector<std::pair<std::string, std::string>> out;
    auto s = db_->cached("SELECT path, value FROM factory ORDER BY seq");
    if (!s) return s.error();
    for (auto row = (*s)->step(); row && *row; row = (*s)->step()) out.emplace_back((*s)->columnText(0), (*s)->columnText(1));
    return out;
}

Status Store::markInitialized() {
    fresh_ = false;
    return db_->exec("INSERT OR REPLACE INTO meta(key, value) VALUES('initialized', '1')");
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
