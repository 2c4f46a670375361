#pragma once
// TR-369 path grammar (ARC "Data Model Path Grammar"): object, object-instance, parameter,
// command and event paths, instance numbers, wildcards, search expressions with
// == != ~= < > <= >= joined by &&, unique-key addressing, reference following
// (+, #n+, #*+), and supported-DM paths with {i}.
//
// parsePath() checks syntax only; whether the names exist is decided when the engine
// resolves the path against the schema and the instance tree. Pure functions, any thread.
// Errors: 7008 (invalid syntax) with the offending path in Error::path and the reason and
// character position in the message.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "berth/core/result.h"

namespace berth::dm {

enum class PathKind : std::uint8_t { kObject, kParameter, kCommand, kEvent };

// Reference following written after a name: "Ref+", "Ref#2+", "Ref#*+".
struct RefFollow {
    enum Kind : std::uint8_t { kNone, kPlain, kIndex, kAll } kind = kNone;
    std::uint32_t index = 0;  // 1-based, for kIndex
};

enum class CompareOp : std::uint8_t { kEq, kNe, kContains, kLt, kGt, kLe, kGe };

struct RelStep {
    std::string name;
    RefFollow ref;
};

// One "relpath oper value" term of a search expression.
struct Condition {
    std::vector<RelStep> rel;  // "Stats.BytesSent" -> {Stats},{BytesSent}
    CompareOp op = CompareOp::kEq;
    std::string value;  // literal with %22/%25 decoded, or the unquoted token
    bool quoted = false;
};

struct Segment {
    enum Kind : std::uint8_t { kName, kInstance, kWildcard, kSearch, kSupportedInstance } kind = kName;
    std::string name;             // kName
    RefFollow ref;                // kName followed by reference following
    std::uint32_t instance = 0;   // kInstance
    std::vector<Condition> conds; // kSearch
};

struct ParsedPath {
    std::string text;  // the path as given, trimmed
    PathKind kind = PathKind::kObject;
    std::vector<Segment> segments;  // object part, including a trailing instance/selector
    std::string leaf;               // parameter / command ("X()") / event ("X!") name
    bool isSearch = false;          // contains *, [..] or reference following
};

struct PathOptions {
    bool allowSupported = false;  // accept "{i}" instance placeholders (GetSupportedDM, Register)
};

// Parses a path. Leading/trailing whitespace is ignored, whitespace around search
// operators and && is tolerated, anything else is 7008.
Result<ParsedPath> parsePath(std::string_view path, PathOptions options = {});

// "Device.X.1.Y" -> "Device.X.{i}.Y" style rendering of a parsed path's supported form.
std::string supportedForm(const ParsedPath& path);

// Reference parameters (TR-181 pathRef) hold a row path in one canonical form, the one
// TR-181 and obuspa use: "Device.MQTT.Client.1", no trailing dot. Writers accept the
// form with the dot too, and databases written by berth before 0.9 hold it.
//
// referenceValue: the canonical form of one reference item ("Device.MQTT.Client.1." ->
// "Device.MQTT.Client.1"); anything else is returned trimmed but unchanged.
// referencedObject: the object path of a reference in either form, ending in '.', for
// building parameter paths ("Device.MQTT.Client.1" -> "Device.MQTT.Client.1."); "" stays "".
std::string referenceValue(std::string_view reference);
std::string referencedObject(std::string_view reference);

// Small helpers on path text, the one copy every module uses. Pure, any thread.
//
// withDot: the path as an object path, ending in '.' ("Device.X.1" -> "Device.X.1.");
// "" stays "". noDot: the path without one trailing '.' ("Device.X.1." -> "Device.X.1").
// startsWith / endsWith: plain prefix and suffix tests on the text.
// instanceNumber: the instance number the path ends in, with or without the trailing
// dot ("Device.X.7." -> 7); 0 when the last segment is not a number (instance numbers
// start at 1).
std::string withDot(std::string_view path);
std::string noDot(std::string_view path);
inline bool startsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }
inline bool endsWith(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
std::uint32_t instanceNumber(std::string_view path);

}  // namespace berth::dm
