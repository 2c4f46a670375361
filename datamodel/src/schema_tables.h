#pragma once
// Compact schema tables written by the build-time generator (datamodel/gen/schema_gen.cpp)
// from datamodel/schema/*.json. Plain constant data: no constructors run at start-up.

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

struct TableParam {
    const char* name;
    std::uint8_t type;    // ValueType
    std::uint8_t access;  // ParamAccess
    std::uint16_t flags;  // TableParamFlags
    const char* ranges;   // "min:max;min:max" or ""; empty bound = open
    std::uint32_t minLen;
    std::uint32_t maxLen;      // 0 = unbounded (string length or list item length)
    std::uint32_t listMaxLen;  // 0 = unbounded (whole list string)
    const char* defaultValue;  // valid when kTpHasDefault
    const char* enums;         // '\n'-separated or ""
    const char* pathRef;       // target as written in TR-181 or ""
};

struct TableCommand {
    const char* name;  // "Reboot()"
    bool async;
    std::uint16_t inBegin, inEnd, outBegin, outEnd;  // ranges in kTableArgs
};

struct TableEvent {
    const char* name;  // "Boot!"
    std::uint16_t argBegin, argEnd;  // range in kTableArgs
};

struct TableObject {
    const char* path;  // supported path, "Device.LocalAgent.MTP.{i}."
    std::uint8_t flags;
    std::uint16_t paramBegin, paramEnd;
    std::uint16_t cmdBegin, cmdEnd;
    std::uint16_t eventBegin, eventEnd;
    const char* uniqueKeys;  // "F:Vendor,Name,Version;N:Alias" (F functional, N non-functional)
    const char* numEntries;  // name of the counter parameter in the parent, or ""
    const char* enableParam; // or ""
};

extern const TableParam kTableParams[];
extern const TableParam kTableArgs[];
extern const TableCommand kTableCommands[];
extern const TableEvent kTableEvents[];
extern const TableObject kTableObjects[];
extern const std::size_t kTableObjectCount;
extern const char kTableSpecUri[];

}  // namespace berth::dm::detail
