#pragma once
// The operation journal: every Install/Update/Uninstall is written to SQLite before
// its work starts and at each step, and deleted when it has finished. After a crash
// the rows still present are the interrupted operations; decideRecovery() says how
// each one ends (see docs/software-modules.md, "Crash recovery").
//
// The journal also holds the inventory (inventory.h): every DU and EU record, written
// when it changes. The DU record written at an operation's commit point is what decides
// how an interrupted operation ends. A journal from before the inventory (no
// user_version 2: an earlier version's file, or a new one) opens with needsMigration()
// true: the binding then fills it once from the data-model rows (migrate()).
//
// The journal also keeps the download credentials of each DU, for Update() without
// arguments (TR-181: re-use the stored URL and credentials). The file is created 0600;
// passwords are stored sealed (AES-256-GCM) under a key in <dbFile>.key (0600), never
// in clear, and a journal from before sealing is sealed when opened.
//
// Threading: a Journal belongs to the loop thread. Every write is one durable SQLite
// transaction (synchronous=FULL), through dm::sql. Errors: kInternalError with SQLite's message.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "berth/core/result.h"
#include "berth/datamodel/sqlite.h"
#include "berth/smm/inventory.h"

namespace berth::smm {

enum class OpKind { kInstall, kUpdate, kUninstall };
std::string_view opKindName(OpKind kind);  // "Install", "Update", "Uninstall" (OperationPerformed)

// Steps, in order, written as `phase`.
inline constexpr std::string_view kPhaseStarted = "started";      // nothing changed yet
inline constexpr std::string_view kPhasePulled = "pulled";        // new image in the store (newDigest)
inline constexpr std::string_view kPhaseStopped = "stopped";      // the DU's containers are gone
inline constexpr std::string_view kPhaseCommitting = "committing";  // about to write the data model
inline constexpr std::string_view kPhaseCommitted = "committed";  // data model written; cleanup left

struct JournalEntry {
    std::int64_t id = 0;
    OpKind kind = OpKind::kInstall;
    std::string phase{kPhaseStarted};
    std::string eePath;            // "Device.SoftwareModules.ExecEnv.1."
    std::uint32_t duInstance = 0;  // Update/Uninstall: the DU row
    std::string uuid;              // known from the start for Update/Uninstall, after the pull for Install
    std::string version;           // Install/Update: the new version; Uninstall: the removed one
    std::string oldDigest;         // Update/Uninstall: the image the DU had
    std::string newDigest;         // Install/Update: the image pulled
    std::string url;
    std::string commandPath;       // "Device.SoftwareModules.InstallDU()"
    std::string commandKey;
    std::int64_t startedAt = 0;    // Unix seconds
};

class Journal {
public:
    static Result<std::unique_ptr<Journal>> open(const std::filesystem::path& dbFile);
    ~Journal();
    Journal(const Journal&) = delete;
    Journal& operator=(const Journal&) = delete;

    // Inserts the entry; returns its id (also stored into entry.id).
    Result<std::int64_t> begin(JournalEntry& entry);
    // Rewrites phase and fields of an existing entry.
    Status update(const JournalEntry& entry);
    Status finish(std::int64_t id);
    // Entries not finished, oldest first.
    Result<std::vector<JournalEntry>> pending() const;

    Status saveCredentials(const std::string& eePath, const std::string& uuid, const std::string& username,
                           const std::string& password);
    // (username, password); empty strings when none stored.
    Result<std::pair<std::string, std::string>> credentials(const std::string& eePath, const std::string& uuid) const;
    Status dropCredentials(const std::string& eePath, const std::string& uuid);

    // ---- the inventory ----
    // True when the file predates the inventory and migrate() has not run yet.
    bool needsMigration() const { return needsMigration_; }
    // Stores the inventory made from an earlier version's rows, in one transaction, and
    // marks the journal migrated.
    Status migrate(const Inventory& inventory);
    Result<Inventory> loadInventory() const;
    // Writes (inserts or replaces) a DU with the given EUs, in one transaction.
    Status saveDu(const DeploymentUnit& du, const std::vector<const ExecutionUnit*>& eus = {});
    // Removes a DU and the EUs it lists, in one transaction.
    Status removeDu(const DeploymentUnit& du);
    Status saveEu(const ExecutionUnit& eu);
    Status removeEu(std::uint32_t instance);

private:
    Journal(std::unique_ptr<dm::sql::Database> db, std::string key) : db_(std::move(db)), key_(std::move(key)) {}
    Status writeDu(const DeploymentUnit& du);
    Status writeEu(const ExecutionUnit& eu);
    bool needsMigration_ = false;
    Status sealClearPasswords();
    std::unique_ptr<dm::sql::Database> db_;
    std::string key_;  // AES-256 key sealing the stored passwords (<dbFile>.key, 0600)
};

// What the inventory says about the DU an interrupted operation touched.
struct DuSnapshot {
    bool exists = false;
    std::string duid;    // manifest digest hex
    std::string status;  // Installed, Updating, Uninstalling
};

struct RecoveryDecision {
    enum class DmAction {
        kNone,
        kDeleteDu,       // remove the DU and EU rows (an install that did not finish)
        kMarkInstalled,  // put the DU back to Status Installed (its EUs are Idle)
    };
    DmAction dmAction = DmAction::kNone;
    bool completed = false;      // the operation had passed its commit point: report success
    std::string currentState;    // DUStateChange! CurrentState: Installed, Uninstalled or Failed
    ErrorCode code = ErrorCode::kOk;
    std::string message;
};

// Decides how an interrupted operation ends. For Install, `du` is the DU with the
// entry's UUID and Version in its ExecEnv (only meaningful from kPhaseCommitting on);
// for Update/Uninstall it is the DU row the entry names. Pure.
RecoveryDecision decideRecovery(const JournalEntry& entry, const DuSnapshot& du);

}  // namespace berth::smm
