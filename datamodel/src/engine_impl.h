#pragma once
// Private state of the engine: the instance tree, the transaction undo log, registries.

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "berth/datamodel/engine.h"
#include "store.h"

namespace berth::dm::detail {

struct Table;

struct ObjNode {
    const ObjectSchema* schema = nullptr;
    ObjNode* parent = nullptr;
    std::uint32_t instance = 0;  // 0 for single-instance objects
    bool detached = false;       // root of a subtree removed in the open transaction
    std::string path;            // "Device.LocalAgent.Subscription.3."
    std::vector<std::string> values;                 // one per schema param
    std::vector<std::unique_ptr<ObjNode>> singles;   // per child schema: single-instance child
    std::vector<std::unique_ptr<Table>> tables;      // per child schema: table of a multi-instance child

    bool alive() const {
        for (const ObjNode* n = this; n; n = n->parent)
            if (n->detached) return false;
        return true;
    }
};

struct Table {
    std::map<std::uint32_t, std::unique_ptr<ObjNode>> rows;
    std::uint32_t next = 1;
};

struct UndoEntry {
    enum Kind : std::uint8_t { kValue, kAdd, kDelete, kCounter } kind = kValue;
    ObjNode* node = nullptr;   // kValue: object; kAdd/kDelete: the row; kCounter: table owner
    std::uint16_t index = 0;   // kValue: param index; others: child schema index
    std::string old;           // kValue
    std::uint32_t oldNext = 0; // kCounter
    std::unique_ptr<ObjNode> detached;  // kDelete: keeps the removed row alive until commit
};

struct ProviderEntry {
    Provider* provider = nullptr;
    std::vector<bool> provided;  // per param
};

// A position during path resolution: an object, or (pendingChild >= 0) one of its tables.
struct Pos {
    ObjNode* node = nullptr;
    int pendingChild = -1;
};

struct Resolved {
    std::vector<Pos> positions;
    bool tableEnd = false;        // the object part ends at a table (no instance selector)
    bool missingInstance = false; // a plain path named an instance that does not exist
    const ObjectSchema* schema = nullptr;  // schema of the final object part (static)
    int member = -1;  // param / command / event index in schema when the path has a leaf
};

struct PendingEvent {
    std::string path;
    ArgMap args;
};

// 7016 for an instance the tree lacks; 7026 for a path the supported model lacks.
inline Error notFound(std::string_view path, const std::string& what) {
    return Error(ErrorCode::kObjectDoesNotExist, what + " does not exist: " + std::string(path), std::string(path));
}
inline Error unsupported(std::string_view path, const std::string& what) {
    return Error(ErrorCode::kInvalidPath, what + " is not in the supported data model: " + std::string(path),
                 std::string(path));
}

}  // namespace berth::dm::detail

namespace berth::dm {

struct Engine::Impl {
    using ObjNode = detail::ObjNode;
    using Table = detail::Table;

    const Schema* schema = nullptr;
    const Clock* clock = nullptr;
    std::unique_ptr<ObjNode> root;
    std::unique_ptr<detail::Store> store;
    bool fresh = true;
    Engine* self = nullptr;

    // Transaction state.
    int depth = 0;
    std::vector<detail::UndoEntry> undo;
    std::vector<detail::PendingEvent> pendingEvents;
    struct ProvidedWrite {
        std::string objPath;
        std::uint16_t param;
        const ObjectSchema* schema;
        std::string value;
    };
    std::vector<ProvidedWrite> providedWrites;

    std::vector<detail::ProviderEntry> providers;  // by schema id
    std::vector<bool> hasStrongRefs;                 // by schema id
    std::map<std::string, SyncCommandHandler, std::less<>> syncCommands;
    std::map<std::string, AsyncCommandHandler, std::less<>> asyncCommands;
    std::map<std::string, CancelHandler, std::less<>> cancelHandlers;
    std::vector<ChangeListener*> listeners;

    // ---- tree ----
    std::unique_ptr<ObjNode> makeNode(const ObjectSchema& s, ObjNode* parent, std::uint32_t instance);
    ObjNode* findNode(std::string_view instancePath) const;  // plain instance path ending in '.'
    std::string tablePath(const ObjNode& owner, std::uint16_t child) const;
    std::string countValue(const ObjNode& n, const ParamSchema& p) const;
    // Current value of a parameter (stored, counted or provided).
    Result<std::string> readValue(ObjNode& n, std::uint16_t param);
    bool isProvided(const ObjNode& n, std::uint16_t param) const {
        const auto& e = providers[n.schema->id()];
        return e.provider && param < e.provided.size() && e.provided[param];
    }
    Provider* providerFor(const ObjectSchema& s) const { return providers[s.id()].provider; }

    // ---- paths ----
    // perms: the requesting Controller's rights, or nullptr for internal callers. A
    // search expression compares a secured parameter against "" unless perms may read
    // secured values, so a search cannot test a secret it could not read.
    Result<detail::Resolved> resolve(const ParsedPath& p, const Permissions* perms = nullptr);
    Status checkStatic(const ParsedPath& p, const ObjectSchema*& finalSchema, int& member, bool& dynamic) const;
    Result<bool> matches(ObjNode& row, const std::vector<Condition>& conds, const Permissions* perms);
    void deref(ObjNode& n, const ParamSchema& p, const RefFollow& ref, std::vector<ObjNode*>& out);
    // Resolves a relative parameter name ("Enable", "Stats.BytesSent") through single-instance children.
    bool relParam(ObjNode& n, std::string_view rel, ObjNode*& owner, int& index) const;

    // ---- transactions ----
    void begin() { ++depth; }
    std::size_t mark() const { return undo.size(); }
    void rollbackTo(std::size_t mark);
    Status commit();  // at depth 1 persists and announces; returns 7003 on storage failure (rolled back)
    void abort();     // rolls back everything at depth 1

    // The engine transaction of a scope: begin() when made; abort() when it goes unless
    // commit() was called. Nested ones join the outermost (depth), as begin() does.
    class Txn {
    public:
        explicit Txn(Impl& im) : im_(&im) { im.begin(); }
        ~Txn() {
            if (im_) im_->abort();
        }
        Txn(const Txn&) = delete;
        Txn& operator=(const Txn&) = delete;
        Status commit() {
            Impl* im = im_;
            im_ = nullptr;
            return im->commit();
        }

    private:
        Impl* im_;
    };

    // Phases of commit() (engine_txn.cpp): the net effect of the undo log, its storage
    // in one store transaction, and what listeners and providers are then told.
    struct NetChange;
    struct Announcement;
    NetChange netChange() const;
    Status persist(const NetChange& c);
    std::vector<Announcement> announcements(const NetChange& c);
    void deliver(const std::vector<ProvidedWrite>& writes, const std::vector<Announcement>& out,
                 const std::vector<detail::PendingEvent>& events);
    void discard();  // drops the whole transaction: undo, pending events, provided writes

    void writeValue(ObjNode& n, std::uint16_t param, std::string value);
    Result<ObjNode*> addRow(ObjNode& owner, std::uint16_t child, std::uint32_t instance);
    void removeRow(ObjNode& row);
    Status checkUniqueKeys(ObjNode& row) const;
    void assignAlias(ObjNode& row);
    // Checks a reference value (strong: names one existing row of its target table) and
    // returns it in canonical form; canonicalRefForm only rewrites the form, checks nothing.
    Result<std::string> canonicalRef(const ParamSchema& p, const std::string& value);
    static std::string canonicalRefForm(const ParamSchema& p, std::string_view value);
    void clearReferencesTo(const std::string& deletedPath);
    std::vector<std::pair<std::string_view, std::string>> uniqueKeysOf(ObjNode& row, const Permissions* perms);

    // ---- persistence ----
    bool persisted(const ObjNode& n, std::uint16_t param) const;
    Status persistNode(ObjNode& n, bool withRow);
    Status restore();
    Status applyPairs(const std::vector<std::pair<std::string, std::string>>& values);
    Status storeWholeTree();  // factory reset: the store gets exactly the current tree

    void emitEvent(std::string path, ArgMap args);

    // ---- USP Set / Add / Delete by phase (operations_write.cpp) ----
    struct Target {
        bool isSearch = false;
        detail::Resolved resolved;
    };
    // Resolve: the objects the path of a Set / Add / Delete names, or the error it gets.
    Result<Target> resolveObjectPath(const std::string& path, const Permissions& perms, std::string_view needs);
    Result<Target> resolveForSet(const std::string& path, const Permissions& perms);
    Result<Target> resolveForAdd(const std::string& path, const Permissions& perms);
    Result<Target> resolveForDelete(const std::string& path, const Permissions& perms);
    // Validate and apply: one setting, one instance, one UpdateObject. A returned
    // MessageError fails the whole message; otherwise the object's result is in resp.
    std::optional<ParamError> setParam(ObjNode& n, const ParamSetting& ps, const Permissions& perms, UpdatedInstance& ui,
                                       std::vector<std::string_view>& changed);
    std::vector<ParamError> setInstance(ObjNode& n, const UpdateObject& uo, const Permissions& perms, UpdatedInstance& ui);
    std::optional<MessageError> setObject(const UpdateObject& uo, bool allowPartial, const Permissions& perms, SetResponse& resp);
    void dropProvidedWritesUnder(const std::vector<std::string>& objPaths);
    std::optional<ParamError> addParam(ObjNode& row, const ParamSetting& ps, const Permissions& perms, const std::string& tpath,
                                       bool& isKey);
    std::optional<ParamError> fillNewRow(ObjNode& row, const CreateObject& co, const Permissions& perms, const std::string& tpath,
                                         std::vector<ParamError>& optionalErrs);
    std::optional<MessageError> addObject(const CreateObject& co, bool allowPartial, const Permissions& perms, AddResponse& resp);
    std::optional<Error> checkDeletable(const std::vector<ObjNode*>& rows, const Permissions& perms);
    void deleteRows(const std::vector<ObjNode*>& rows, const Permissions& perms, DeletedObjectResult& res);
};

}  // namespace berth::dm
