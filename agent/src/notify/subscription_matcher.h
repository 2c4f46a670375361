#pragma once
// Matching of Device.LocalAgent.Subscription.{i}.ReferenceList entries against the path a
// change, an event or a command completion names (TR-181 ReferenceList description):
//   ValueChange        parameter path, or object path = every parameter below it;
//   ObjectCreation     table path (rows of that table), or instance/wildcard/search path;
//   ObjectDeletion     instance path, wildcard or search over instances, or a table path;
//   OperationComplete  command path, or object path = every command below it;
//   Event              event path, or object path = every event below it.
// Wildcards and instance numbers are compared segment by segment. Search expressions and
// reference following are evaluated against the current model (Engine::resolveObjects)
// once the structure matches; for ObjectDeletion, where the row is gone when the deletion
// is announced, the instances a search matched are kept from the last refresh().
//
// Threading: loop thread only (patterns read the engine).

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "berth/core/result.h"
#include "berth/datamodel/engine.h"
#include "berth/datamodel/path.h"
#include "berth/datamodel/schema.h"

namespace berth::agent::notify {

enum class NotifType : std::uint8_t { kNone, kValueChange, kObjectCreation, kObjectDeletion, kOperationComplete, kEvent };

// "" gives kNone; a name that is not subscribable (OnBoardRequest, typos) gives nullopt.
std::optional<NotifType> parseNotifType(std::string_view name);
std::string_view notifTypeName(NotifType type);

// A concrete path split once, to be compared with many patterns.
class SplitPath {
public:
    // objPath ends with '.'; leaf is a parameter, command or event name (may be empty).
    SplitPath(std::string objPath, std::string leaf);
    // "Device.X.1.Enable" -> ("Device.X.1.", "Enable"); "Device.Boot!" -> ("Device.", "Boot!");
    // "Device.X.1." -> ("Device.X.1.", "").
    static SplitPath fromFullPath(std::string_view path);

    SplitPath(const SplitPath& other) : SplitPath(other.objPath_, other.leaf_) {}
    SplitPath& operator=(const SplitPath&) = delete;

    const std::string& objPath() const { return objPath_; }
    const std::string& leaf() const { return leaf_; }
    const std::vector<std::string_view>& segments() const { return segs_; }  // views into objPath()

private:
    std::string objPath_;
    std::string leaf_;
    std::vector<std::string_view> segs_;
};

class RefPattern {
public:
    // Parses one ReferenceList entry and checks it names something in `schema` that makes
    // sense for `type` (kNone: syntax and schema only). Errors: 7012 with the reason.
    static Result<RefPattern> parse(std::string_view text, const dm::Schema& schema, NotifType type);

    const std::string& text() const { return parsed_.text; }
    dm::PathKind kind() const { return parsed_.kind; }
    // True when the pattern holds search expressions or reference following.
    bool usesModel() const { return usesModel_; }
    // Where SubscriptionIndex files this pattern: its literal prefix ("Device.X." for
    // "Device.X.*.Y"), or "" when it follows references and may match anywhere.
    std::string indexKey() const { return hasRefs_ ? std::string() : fixedPrefix_; }

    bool coversParam(const SplitPath& param, dm::Engine& engine) const;        // ValueChange
    bool coversMember(const SplitPath& member, dm::Engine& engine) const;      // Event / OperationComplete
    bool coversCreated(const SplitPath& instance, dm::Engine& engine) const;   // ObjectCreation
    bool coversDeleted(const SplitPath& instance) const;                       // ObjectDeletion
    // True when a change at `path` (any object or parameter path) may alter which instances
    // this pattern matches, so the ObjectDeletion cache needs a refresh.
    bool mayDependOn(std::string_view path) const;
    // Re-evaluates the instances a model-dependent pattern matches (ObjectDeletion cache).
    void refresh(dm::Engine& engine);

private:
    RefPattern() = default;
    // Compares the first n pattern segments with the subject's; false when n exceeds either.
    bool structural(const std::vector<std::string_view>& subject, std::size_t n) const;
    bool resolvedContains(dm::Engine& engine, const std::string& text, const std::string& objPath, bool prefix) const;

    dm::ParsedPath parsed_;
    std::string objText_;   // the object part of the pattern ("Device.X.*." for "Device.X.*.Y")
    std::string fixedPrefix_;  // literal prefix before the first wildcard/search/reference
    bool usesModel_ = false;
    bool hasRefs_ = false;    // reference following: no structural pre-check possible
    bool endsAtTable_ = false;  // object pattern whose last segment names a multi-instance object
    std::set<std::string> deletionCache_;
};

}  // namespace berth::agent::notify
