#pragma once
// The data-model engine: the instance tree of the supported TR-181 model, the USP
// operations on it, providers for code-backed subtrees, command handlers, change events
// and write-through persistence to SQLite.
//
// Threading: an Engine belongs to the loop thread that created it; every method must be
// called on that thread (there are no mutexes inside). Providers, command handlers and
// listeners are called on that thread too.
//
// Ownership: the Engine owns the tree and the database handle. Providers, listeners and
// the Clock are borrowed and must outlive the engine (or be unregistered first).
//
// Transactions: every controller message (add/set/del) and every internal write is one
// transaction: applied to the tree, written to SQLite in ONE database transaction, and
// only then announced to listeners. If anything fails the tree is rolled back. Nest
// internal writes in a Batch to make them one transaction.
//
// Errors: operations return USP-shaped responses (see messages.h); internal calls return
// Result/Status with USP error codes (7016 missing object, 7026 unsupported path, ...).

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/core/clock.h"
#include "berth/core/result.h"
#include "berth/datamodel/messages.h"
#include "berth/datamodel/permissions.h"
#include "berth/datamodel/schema.h"

namespace berth::dm {

namespace detail {
struct ObjNode;
}

class Engine;

// Read access to one object (instance) during a provider call. Valid only during the call.
class ObjectView {
public:
    const std::string& path() const;  // "Device.MQTT.Client.2."
    std::uint32_t instance() const;   // 0 for single-instance objects
    const ObjectSchema& schema() const;
    // Stored value of a parameter ("" if the name is unknown).
    std::string_view get(std::string_view param) const;

    // Made by the engine only (the node type is private to the module).
    ObjectView(Engine* e, detail::ObjNode* n) : engine_(e), node_(n) {}

protected:
    Engine* engine_;
    detail::ObjNode* node_;
};

// An object being created (Provider::onAdd): the provider may fill in values such as
// generated identifiers before unique keys are checked. Values are validated.
class ObjectEditor : public ObjectView {
public:
    Status set(std::string_view param, std::string_view value);
    bool wasGiven(std::string_view param) const;  // set by the Controller in this Add

    // Made by the engine only.
    ObjectEditor(Engine* e, detail::ObjNode* n, const std::vector<std::string>* given)
        : ObjectView(e, n), given_(given) {}

private:
    const std::vector<std::string>* given_;
};

// Code behind a subtree. Register with Engine::registerProvider for a supported object
// path; every hook has a default that accepts.
class Provider {
public:
    virtual ~Provider() = default;
    // Value of a parameter registered as provided (computed on every read, never stored).
    virtual Result<std::string> get(const ObjectView& obj, std::string_view param) {
        (void)obj;
        return Error(ErrorCode::kInternalError, "no value for " + std::string(param));
    }
    // A controller (or internal) Set/Add is about to commit these new values on obj:
    // return an error to veto (the error code is reported for the object/parameter).
    virtual Status validateSet(const ObjectView& obj, const std::vector<std::string_view>& changed) {
        (void)obj;
        (void)changed;
        return okStatus();
    }
    // A provided, writable parameter was set and the transaction committed.
    virtual void setProvided(const ObjectView& obj, std::string_view param, std::string_view value) {
        (void)obj;
        (void)param;
        (void)value;
    }
    // A row is being added (values from the request already applied): fill in generated
    // values or veto (e.g. 7017/7019).
    virtual Status onAdd(ObjectEditor& obj) {
        (void)obj;
        return okStatus();
    }
    // A row is about to be deleted: veto with an error (reported as 7024 if unspecified).
    virtual Status onDelete(const ObjectView& obj) {
        (void)obj;
        return okStatus();
    }
};

// Receives every committed change, whoever made it. Called after the database commit.
class ChangeListener {
public:
    virtual ~ChangeListener() = default;
    virtual void onValueChange(std::string_view paramPath, std::string_view value) = 0;
    virtual void onObjectCreated(std::string_view instancePath,
                                 const std::vector<std::pair<std::string_view, std::string>>& uniqueKeys) = 0;
    virtual void onObjectDeleted(std::string_view instancePath) = 0;
    virtual void onEvent(std::string_view eventPath, const ArgMap& args) = 0;
};

using SyncCommandHandler = std::function<Result<ArgMap>(const CommandCall&)>;
using CommandDone = std::function<void(Result<ArgMap>)>;
// An async handler must call done exactly once, on the loop thread (post() from workers).
using AsyncCommandHandler = std::function<void(const CommandCall&, CommandDone done)>;
// Cancels a running asynchronous call (Device.LocalAgent.Request.{i}.Cancel()). On
// success the handler's `done` must still be called, with a 7023 error, so the
// OperationComplete goes out the usual way; return an error (e.g. 7002) when the call
// is past the point where it can be undone.
using CancelHandler = std::function<Status(const CommandCall&)>;

struct EngineOptions {
    // SQLite database; empty = no persistence (tests, benchmarks). The directory must exist.
    std::filesystem::path dbPath;
    // Per-device AES-256-GCM key for secured values; default dbPath + ".key". Created 0600.
    std::filesystem::path keyPath;
    const Clock* clock = nullptr;  // borrowed; default: a process-wide SystemClock
    const Schema* schema = nullptr;  // default: Schema::builtin()
};

class Engine {
public:
    // Builds the tree from the schema (single-instance objects with defaults), opens or
    // creates the database and restores what it holds. Errors: 7003 when the database or
    // key file cannot be opened/created.
    static Result<std::unique_ptr<Engine>> open(EngineOptions options);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    const Schema& schema() const;
    // True when open() created a new database (apply factory defaults then).
    bool freshDatabase() const;

    // ---- USP operations (perms: the requesting Controller's rights) ----
    GetResponse get(const GetRequest& req, const Permissions& perms);
    GetInstancesResponse getInstances(const GetInstancesRequest& req, const Permissions& perms);
    GsdmResponse getSupportedDm(const GsdmRequest& req, const Permissions& perms);
    AddResponse add(const AddRequest& req, const Permissions& perms);
    SetResponse set(const SetRequest& req, const Permissions& perms);
    DeleteResponse del(const DeleteRequest& req, const Permissions& perms);
    OperateResponse operate(const OperateRequest& req, const Permissions& perms, const AsyncHooks& hooks);

    // ---- Internal access (no permission checks; may write readOnly params) ----
    Result<std::string> getValue(std::string_view paramPath);
    Status setValue(std::string_view paramPath, std::string_view value);
    // Adds a row to a table ("Device.SoftwareModules.DeploymentUnit."), optionally with a
    // given instance number; returns the instance path.
    Result<std::string> addInstance(std::string_view tablePath, const std::vector<std::pair<std::string, std::string>>& values = {},
                                    std::uint32_t instance = 0);
    Status deleteInstance(std::string_view instancePath);
    // Instance paths matching a path (search paths allowed). With perms, search
    // expressions see values as that role does (secured values as "" without secured access).
    Result<std::vector<std::string>> resolveObjects(std::string_view path, const Permissions* perms = nullptr);

    // Groups internal writes into one transaction (one SQLite commit, events after it).
    class Batch {
    public:
        explicit Batch(Engine& e);
        ~Batch();  // commits
        Batch(const Batch&) = delete;
        Batch& operator=(const Batch&) = delete;
        Status commit();  // commits early and reports the result
    private:
        Engine* e_;
        bool done_ = false;
    };

    // ---- Extension points ----
    // Registers a provider for every instance of a supported object path
    // ("Device.MQTT.Client.{i}."). providedParams are computed by Provider::get.
    Status registerProvider(std::string_view supportedObjPath, Provider* provider,
                            std::vector<std::string> providedParams = {});
    Status registerCommand(std::string_view supportedCommandPath, SyncCommandHandler handler);
    Status registerAsyncCommand(std::string_view supportedCommandPath, AsyncCommandHandler handler,
                                CancelHandler cancel = {});
    // Asks the owner of a running asynchronous call to cancel it (see CancelHandler).
    // Errors: 7002 when the command has no cancel handler.
    Status cancelCommand(const CommandCall& call);
    void addListener(ChangeListener* listener);
    void removeListener(ChangeListener* listener);
    // Announces an event ("Device.Boot!", "Device.SoftwareModules.DUStateChange!").
    Status raiseEvent(std::string_view eventPath, const ArgMap& args);
    // A provided value changed outside the engine: announce a ValueChange.
    Status notifyValueChanged(std::string_view paramPath);

    // ---- Factory defaults ----
    // Stores the (path, value) pairs as the factory configuration and, when the database is
    // new, applies them now (creating instances with the instance numbers in the paths).
    Status applyFactoryDefaults(const std::vector<std::pair<std::string, std::string>>& values);
    // Drops everything persisted and restores the factory configuration (one transaction).
    Status factoryReset();

    // What the database holds for the data model: every persisted parameter (path,
    // value), secured values in clear, in tree order. For the local CLI's `show database`.
    std::vector<std::pair<std::string, std::string>> persistedValues() const;

    struct Impl;

private:
    explicit Engine(std::unique_ptr<Impl> impl);
    friend class ObjectView;
    friend class ObjectEditor;
    friend class Permissions;
    std::unique_ptr<Impl> impl_;
};

}  // namespace berth::dm
