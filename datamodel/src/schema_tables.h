#pragma once
// Compact schema tables written by the build-time generator (datamodel/gen/schema_gen.cpp)
// from datamodel/schema/*.json. Plain constant data without pointers: every string is an
// offset into one pool of '\0'-terminated strings (each distinct string stored once), so
// the tables need no relocations, stay in read-only pages shared with the file, and no
// constructors run at start-up. The generator refuses data that does not fit the field
// widths below.

#include <cstddef>
#include <cstdint>

namespace berth::dm::detail {

enum TableParamFlags : std::uint16_t {
    kTpList = 1 << 0,
    kTpSecured = 1 << 1,
    kTpHasDefault = 1 << 2,
    kTpStrongRef = 1 << 3,
    kTpWeakRef = 1 << 4,
    kTpMandatory = 1 << 5,
    kTpAlias = 1 << 6,
    kTpCanDeny = 1 << 7,
    kTpDeprecated = 1 << 8,
};

enum TableObjectFlags : std::uint8_t {
    kToMulti = 1 << 0,
    kToVolatile = 1 << 1,
    kToWritable = 1 << 2,  // table rows may be added/deleted by a Controller
};

// Offset of a string in kTableStrings; offset 0 is the empty string.
using TableStr = std::uint16_t;

struct TableParam {
    TableStr name;
    TableStr ranges;        // "min:max;min:max" or ""; empty bound = open
    TableStr defaultValue;  // valid when kTpHasDefault
    TableStr enums;         // '\n'-separated or ""
    TableStr pathRef;       // target as written in TR-181 or ""
    std::uint16_t flags;    // TableParamFlags
    std::uint16_t minLen;
    std::uint16_t maxLen;      // 0 = unbounded (string length or list item length)
    std::uint16_t listMaxLen;  // 0 = unbounded (whole list string)
    std::uint8_t type;         // ValueType
    std::uint8_t access;       // ParamAccess
};

struct TableCommand {
    TableStr name;                                   // "Reboot()"
    std::uint16_t inBegin, inEnd, outBegin, outEnd;  // ranges in kTableArgs
    bool async;
};

struct TableEvent {
    TableStr name;                   // "Boot!"
    std::uint16_t argBegin, argEnd;  // range in kTableArgs
};

struct TableObject {
    TableStr path;         // supported path, "Device.LocalAgent.MTP.{i}."
    TableStr uniqueKeys;   // "F:Vendor,Name,Version;N:Alias" (F functional, N non-functional)
    TableStr numEntries;   // name of the counter parameter in the parent, or ""
    TableStr enableParam;  // or ""
    std::uint16_t paramBegin, paramEnd;
    std::uint16_t cmdBegin, cmdEnd;
    std::uint16_t eventBegin, eventEnd;
    std::uint8_t flags;
};

extern const char kTableStrings[];
extern const TableParam kTableParams[];
extern const TableParam kTableArgs[];
extern const TableCommand kTableCommands[];
extern const TableEvent kTableEvents[];
extern const TableObject kTableObjects[];
extern const std::size_t kTableObjectCount;
extern const char kTableSpecUri[];

inline const char* tableStr(TableStr offset) {
    return kTableStrings + offset;
}

}  // namespace berth::dm::detail
