#pragma once
// Reader for the factory-defaults file, in the format obuspa users know:
//
//   # Controller the agent talks to after a factory reset
//   Device.LocalAgent.Controller.1.EndpointID "proto::controller"
//   Device.LocalAgent.Controller.1.Enable     "true"
//
// One assignment per line: a parameter path, blanks, and the value in double quotes.
// Inside the quotes `\"` stands for a double quote and `\\` for a backslash; any other
// backslash sequence is an error, and a value cannot span lines. Blank lines and lines
// whose first non-blank character is `#` are ignored; after the closing quote only
// blanks and an optional `# comment` may follow. Paths start with `Device.`, consist of
// names ([A-Za-z_][A-Za-z0-9_]*) and positive instance numbers (which create rows),
// end in a parameter name, and may not hold wildcards, searches or `{i}`. Each path
// may be assigned once. Windows (CRLF) line ends and a UTF-8 byte-order mark are
// accepted.
//
// Whether the paths exist in the schema and the values fit their types is checked
// later by the agent, not here.
//
// Threading: free functions without shared state, callable from any thread.

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "berth/core/result.h"

namespace berth::agent {

struct ConfigEntry {
    std::string path;   // "Device.LocalAgent.Controller.1.Enable"
    std::string value;  // unescaped
    int line = 0;       // 1-based line number in the source
};

struct ConfigProblem {
    int line = 0;         // 1-based; 0 for problems with the file as a whole
    std::string message;  // what is wrong with the line, for people
};

struct ConfigParse {
    std::vector<ConfigEntry> entries;     // the good lines, in file order
    std::vector<ConfigProblem> problems;  // every bad line, in file order
};

// Largest defaults file read: a gateway's defaults are a few kilobytes.
inline constexpr std::size_t kMaxConfigFileSize = std::size_t{4} * 1024 * 1024;

// Parses `text` line by line and reports every bad line, not just the first.
ConfigParse parseConfigText(std::string_view text);

// The entries of `text`, or kInvalidConfiguration whose message lists every problem
// as "<sourceName>:<line>: <what>", one per line, and whose path is sourceName.
Result<std::vector<ConfigEntry>> parseConfig(std::string_view text, const std::string& sourceName);

// Reads and parses a file. Errors as parseConfig(), plus kInvalidConfiguration when
// the file cannot be read, is larger than kMaxConfigFileSize or holds a NUL byte.
Result<std::vector<ConfigEntry>> loadConfigFile(const std::filesystem::path& file);

}  // namespace berth::agent
