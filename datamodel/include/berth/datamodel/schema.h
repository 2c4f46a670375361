#pragma once
// The supported data model: objects, parameters, commands and events with their TR-181
// types, access, defaults and unique keys.
//
// The built-in schema is generated at build time from datamodel/schema/*.json (a copy of
// the TR-181 subset plus a project overlay); Schema::builtin() turns those constant tables
// into this tree once. A Schema is immutable after construction and may be read from any
// thread; the engine borrows it for its whole life.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "berth/core/result.h"

namespace berth::dm {

namespace detail {
struct TableObject;
}

// Numeric values are the GetSupportedDM ParamValueType values of the USP protobuf.
enum class ValueType : std::uint8_t {
    kUnknown = 0,
    kBase64 = 1,
    kBoolean = 2,
    kDateTime = 3,
    kDecimal = 4,
    kHexBinary = 5,
    kInt = 6,
    kLong = 7,
    kString = 8,
    kUnsignedInt = 9,
    kUnsignedLong = 10,
};

// TR-181 access. GetSupportedDM reports kWriteOnceReadOnly as PARAM_READ_WRITE (1).
enum class ParamAccess : std::uint8_t { kReadOnly = 0, kReadWrite = 1, kWriteOnceReadOnly = 2 };

// Numeric values are the GetSupportedDM ObjAccessType values.
enum class ObjAccess : std::uint8_t { kReadOnly = 0, kAddDelete = 1, kAddOnly = 2, kDeleteOnly = 3 };

struct Range {
    bool hasMin = false;
    bool hasMax = false;
    std::int64_t min = 0;
    std::int64_t max = 0;
};

class ObjectSchema;

struct ParamSchema {
    std::string name;  // "Enable"; for command/event arguments a relative name ("TimeWindow.{i}.Start")
    ValueType type = ValueType::kString;
    ParamAccess access = ParamAccess::kReadOnly;
    bool isList = false;
    bool secured = false;      // passwords etc.: encrypted at rest, hidden from non-secured roles
    bool mandatory = false;    // command/event argument that must be given
    bool isAlias = false;      // TR-181 Alias: must start with a letter, agent assigns "cpe-N"
    bool strongRef = false;    // path reference that must point to an existing object
    bool weakRef = false;
    bool canDenyValueChange = false;  // reported as VALUE_CHANGE_WILL_IGNORE
    bool hasDefault = false;
    std::uint32_t minLen = 0;
    std::uint32_t maxLen = 0;      // 0 = unbounded; for lists: per item
    std::uint32_t listMaxLen = 0;  // 0 = unbounded; whole list string
    std::vector<Range> ranges;     // numeric types; empty = whole type range
    std::vector<std::string> enums;
    std::string defaultValue;
    std::string pathRef;  // reference target as written in TR-181 ("#.ExecEnv.", ".MQTT.Client.")
    // The table pathRef names, resolved against the schema (nullptr when pathRef is
    // empty, the parameter is a command/event argument, or the table is not served).
    // A strong reference must name a row of this table.
    const ObjectSchema* refTarget = nullptr;
    // Set for "XNumberOfEntries": the table it counts (value computed, never stored).
    const ObjectSchema* counts = nullptr;
    std::uint16_t index = 0;  // position in the owner's params()

    bool writable() const { return access != ParamAccess::kReadOnly; }
    // Checks a value against type, size, range, enumeration and Alias rules and returns
    // it in canonical TR-106 form (booleans as "true"/"false"). Errors: 7011 (not
    // parseable as the type), 7012 (out of range, too long, not an allowed value).
    Result<std::string> validate(std::string_view value) const;
};

struct CommandSchema {
    std::string name;  // "InstallDU()"
    bool async = false;
    std::vector<ParamSchema> inputs;
    std::vector<ParamSchema> outputs;
    const ObjectSchema* owner = nullptr;
};

struct EventSchema {
    std::string name;  // "Boot!"
    std::vector<ParamSchema> args;
    const ObjectSchema* owner = nullptr;
};

struct UniqueKeySet {
    std::vector<std::uint16_t> params;  // indexes into ObjectSchema::params()
    bool functional = true;
};

class ObjectSchema {
public:
    const std::string& name() const { return name_; }  // last segment: "MTP"
    const std::string& path() const { return path_; }  // supported path: "Device.LocalAgent.MTP.{i}."
    bool multiInstance() const { return multi_; }
    ObjAccess access() const { return access_; }
    bool isVolatile() const { return volatile_; }
    const ObjectSchema* parent() const { return parent_; }
    const std::vector<std::unique_ptr<ObjectSchema>>& children() const { return children_; }
    const std::vector<ParamSchema>& params() const { return params_; }
    const std::vector<CommandSchema>& commands() const { return commands_; }
    const std::vector<EventSchema>& events() const { return events_; }
    const std::vector<UniqueKeySet>& uniqueKeys() const { return uniqueKeys_; }
    int aliasParam() const { return aliasParam_; }    // -1 if none
    int enableParam() const { return enableParam_; }  // -1 if none
    std::uint16_t index() const { return index_; }      // position in the parent's children()
    std::uint32_t id() const { return id_; }            // dense id over the whole schema

    const ParamSchema* findParam(std::string_view name) const;
    int paramIndex(std::string_view name) const;  // -1 if none
    const ObjectSchema* findChild(std::string_view name) const;
    const CommandSchema* findCommand(std::string_view name) const;  // name with "()"
    const EventSchema* findEvent(std::string_view name) const;      // name with "!"

private:
    friend class Schema;
    std::string name_, path_;
    bool multi_ = false;
    bool volatile_ = false;
    ObjAccess access_ = ObjAccess::kReadOnly;
    const ObjectSchema* parent_ = nullptr;
    std::vector<std::unique_ptr<ObjectSchema>> children_;
    std::vector<ParamSchema> params_;
    std::vector<CommandSchema> commands_;
    std::vector<EventSchema> events_;
    std::vector<UniqueKeySet> uniqueKeys_;
    int aliasParam_ = -1;
    int enableParam_ = -1;
    std::uint16_t index_ = 0;
    std::uint32_t id_ = 0;
    std::unordered_map<std::string_view, std::uint16_t> paramIdx_, childIdx_, cmdIdx_, eventIdx_;
};

class Schema {
public:
    // The generated TR-181 schema (Device.* subset served by berth). Built on first use.
    static const Schema& builtin();

    const ObjectSchema& root() const { return *root_; }  // "Device."
    const std::string& specUri() const { return specUri_; }  // data_model_inst_uri for GSDM
    std::size_t objectCount() const { return count_; }
    // Looks up a supported object path ("Device.LocalAgent.MTP.{i}." or without "{i}.").
    const ObjectSchema* findObject(std::string_view supportedPath) const;

private:
    Schema() = default;
    // Steps of builtin(), each on the generated tables (datamodel/src/schema_tables.h).
    static std::unique_ptr<ObjectSchema> objectFromTable(const detail::TableObject& t, std::uint32_t id);
    static void addUniqueKeys(ObjectSchema& obj, std::string_view keys);
    static void indexMembers(ObjectSchema& obj);
    void attach(std::unique_ptr<ObjectSchema> obj, const detail::TableObject& t,
                std::unordered_map<std::string, ObjectSchema*>& byPath);
    void resolvePathRefs();

    std::unique_ptr<ObjectSchema> root_;
    std::string specUri_;
    std::size_t count_ = 0;
};

}  // namespace berth::dm
