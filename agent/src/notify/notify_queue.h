#pragma once
// NotifyStore: the SQLite file that keeps the notifications of persistent subscriptions
// with NotifRetry=true until their NotifyResp arrives or NotifExpiration passes, so they
// survive an agent restart. A row is written before the first send attempt and deleted
// on NotifyResp, expiry, drop, or when its subscription goes away. The file also holds
// a start counter that makes msg_ids unique across restarts.
//
// Tables: pending(msg_id, seq, endpoint_id, subscription, msg, expires_ms),
// meta(key, value). WAL journal, synchronous=FULL (as the data-model store: a
// notification the agent accepted must not vanish on power loss).
//
// Ownership: owns the database handle. Threading: loop thread only.
// Errors: 7003 (kInternalError) with the SQLite message.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "berth/core/result.h"
#include "berth/datamodel/sqlite.h"

namespace berth::agent::notify {

struct StoredNotification {
    std::string msgId;
    std::uint64_t seq = 0;         // creation order, kept across restarts
    std::string endpointId;        // recipient Controller
    std::string subscription;      // instance path of the Subscription row
    std::string msg;               // serialized usp::Msg
    std::int64_t expiresAtMs = 0;  // wall clock, ms since the epoch; 0 = never
};

class NotifyStore {
public:
    static Result<std::unique_ptr<NotifyStore>> open(const std::string& path);
    ~NotifyStore();
    NotifyStore(const NotifyStore&) = delete;
    NotifyStore& operator=(const NotifyStore&) = delete;

    // Increments and returns the persisted start counter.
    Result<std::uint64_t> nextStart();
    Status put(const StoredNotification& n);
    Status remove(const std::string& msgId);
    // Every stored notification, oldest first.
    Result<std::vector<StoredNotification>> loadAll();

private:
    NotifyStore() = default;

    std::unique_ptr<dm::sql::Database> db_;
};

}  // namespace berth::agent::notify
