#pragma once
// SQLite persistence of the data model (private to the module).
//
// Tables: instances(path) for created rows, params(path, value, enc) for persisted values,
// counters(path, next) for the next instance number of each table, factory(seq, path,
// value) for the factory configuration, meta(key, value).
//
// Durability: WAL journal with synchronous=FULL. In WAL mode NORMAL is safe against
// process crashes but may lose the last commits on power loss; a gateway loses power
// often and a Controller must never see an acknowledged change vanish, so every commit
// is fsync'ed (about one fsync per USP message).
//
// Secured values (passwords) are stored AES-256-GCM encrypted with a random per-device
// key kept in a separate 0600 key file; the database itself is created 0600. The
// parameter path is the AEAD associated data, so a ciphertext cannot be moved to another
// parameter.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "berth/core/result.h"
#include "berth/datamodel/sqlite.h"

namespace berth::dm::detail {

class Store {
public:
    static Result<std::unique_ptr<Store>> open(const std::filesystem::path& db, const std::filesystem::path& key);
    ~Store();

    bool fresh() const { return fresh_; }

    struct Contents {
        std::vector<std::string> instances;
        std::vector<std::pair<std::string, std::string>> params;
        std::vector<std::pair<std::string, std::uint32_t>> counters;
    };
    Result<Contents> load();

    // A write transaction on the database, rolled back unless committed.
    Result<sql::Transaction> transaction();

    Status putInstance(const std::string& path);
    Status deleteSubtree(const std::string& objPrefix);  // rows, params and counters under it
    Status putParam(const std::string& path, const std::string& value, bool secured);
    Status putCounter(const std::string& tablePath, std::uint32_t next);
    Status clearModel();
    Status setFactory(const std::vector<std::pair<std::string, std::string>>& values);
    Result<std::vector<std::pair<std::string, std::string>>> factory();
    Status markInitialized();

private:
    Store() = default;
    Result<std::string> encrypt(const std::string& path, const std::string& plain) const;
    Result<std::string> decrypt(const std::string& path, const std::string& blob) const;

    std::unique_ptr<sql::Database> db_;
    std::string key_;
    bool fresh_ = false;
};

}  // namespace berth::dm::detail
