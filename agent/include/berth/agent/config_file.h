#pragma once
// Reader for the factory-defaults file, in the format obuspa users know:
//
//   # Controller the agent talks to after a factory reset
//   Device.LocalAgent.Controller.1.EndpointID "proto::controller"
//   Device.LocalAgent.Controller.1.Enable     true
//
// One assignment per line: a parameter path, blanks, and the value. A value in double
// quotes may hold anything but a line end; inside the quotes `\"` stands for a double
// quote and `\\` for a backslash, and any other backslash sequence is an error. A value
// without quotes (as obuspa allows) runs to the end of the line and may not end in a
// double quote. Blank lines and lines whose first non-blank character is `#` are
// ignored; after a value only blanks and an optional `# comment` (with a blank before
// the `#`) may follow. Paths start with `Device.`, consist of names
// ([A-Za-z_][A-Za-z0-9_]*) and positive instance numbers (which create rows), end in a
// parameter name, and may not hold wildcards, searches or `{i}`. Each path may be
// assigned once. Windows (CRLF) line ends and a UTF-8 byte-order mark are accepted.
//
// What obuspa's own files hold is accepted with a warning rather than refused:
//  - `Internal.*` lines (obuspa's private state, e.g. `Internal.Reboot.Cause`) are
//    returned apart, in `internal`, for the agent to use or ignore;
//  - a stray second double quote after a quoted value is dropped;
//  - parameters TR-181 deleted are rewritten to their successors:
//    Controller.{i}.MTP.{i}.MQTT.Reference (an MQTT client) becomes AgentMTPReference
//    (the Device.LocalAgent.MTP.{i} row of this file that uses that client, written
//    with a trailing dot when the value had one), Controller.{i}.MTP.{i}.WebSocket.IsEncrypted
//    and STOMP.Connection.{i}.IsEncrypted become EnableEncryption, and
//    MQTT.Client.{i}.EnableEncryption true becomes TransportProtocol "TLS".
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
    std::vector<ConfigEntry> entries;     // the good Device.* lines, in file order (after mapping)
    std::vector<ConfigEntry> internal;    // the Internal.* lines, in file order
    std::vector<ConfigProblem> warnings;  // accepted lines worth a word, in file order of discovery
    std::vector<ConfigProblem> problems;  // every bad line, in file order
};

// Largest defaults file read: a gateway's defaults are a few kilobytes.
inline constexpr std::size_t kMaxConfigFileSize = std::size_t{4} * 1024 * 1024;

// Parses `text` line by line and reports every bad line, not just the first.
ConfigParse parseConfigText(std::string_view text);

// The parse of `text` (problems empty), or kInvalidConfiguration whose message lists every problem
// as "<sourceName>:<line>: <what>", one per line, and whose path is sourceName.
Result<ConfigParse> parseConfig(std::string_view text, const std::string& sourceName);

// Reads and parses a file. Errors as parseConfig(), plus kInvalidConfiguration when
// the file cannot be read, is larger than kMaxConfigFileSize or holds a NUL byte.
Result<ConfigParse> loadConfigFile(const std::filesystem::path& file);

}  // namespace berth::agent
