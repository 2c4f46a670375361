#include "berth/agent/config_file.h"

#include <cerrno>
#include <fstream>
#include <optional>
#include <system_error>
#include <unordered_map>

namespace berth::agent {

namespace {

bool isBlank(char c) {
    return c == ' ' || c == '\t';
}
bool isNameStart(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}
bool isDigit(char c) {
    return c >= '0' && c <= '9';
}
bool isNameChar(char c) {
    return isNameStart(c) || isDigit(c);
}

std::string_view trimLeft(std::string_view s) {
    while (!s.empty() && isBlank(s.front()))
        s.remove_prefix(1);
    return s;
}

std::string quoteForMessage(std::string_view s) {
    constexpr std::size_t kMax = 60;
    std::string out = "'";
    out += s.size() > kMax ? std::string(s.substr(0, kMax)) + "..." : std::string(s);
    out += "'";
    return out;
}

// Checks a defaults-file path; returns what is wrong, or nullopt when it is fine.
std::optional<std::string> checkPath(std::string_view path) {
    if (path.empty()) return std::string("missing path: a line starts with a parameter path");
    if (path.find_first_of("*[]{}") != std::string_view::npos) {
        return "path " + quoteForMessage(path) +
               " holds a wildcard, search expression or {i}; a defaults file names each instance by number";
    }
    if (path.substr(0, 7) != "Device.") {
        if (path == "Device") return std::string("path 'Device' names no parameter");
        return "path " + quoteForMessage(path) + " does not start with 'Device.'";
    }
    if (path.back() == '.') return "path " + quoteForMessage(path) + " ends in '.' (an object); give a parameter path";
    std::size_t start = 0;
    std::size_t index = 0;
    while (start <= path.size()) {
        auto end = path.find('.', start);
        if (end == std::string_view::npos) end = path.size();
        const auto segment = path.substr(start, end - start);
        const bool last = end == path.size();
        if (segment.empty()) return "path " + quoteForMessage(path) + " has an empty segment ('..')";
        if (isDigit(segment.front())) {
            for (char c : segment) {
                if (!isDigit(c)) {
                    return "path " + quoteForMessage(path) + ": segment '" + std::string(segment) +
                           "' is neither a name nor an instance number";
                }
            }
            if (segment.front() == '0') {
                return "path " + quoteForMessage(path) + ": instance number '" + std::string(segment) +
                       "' must be positive, without leading zeros";
            }
            if (segment.size() > 9) {
                return "path " + quoteForMessage(path) + ": instance number '" + std::string(segment) +
                       "' is too large";
            }
            if (index == 0) return "path " + quoteForMessage(path) + " does not start with 'Device.'";
            if (last) return "path " + quoteForMessage(path) + " ends in an instance number; give a parameter path";
        } else {
            if (!isNameStart(segment.front())) {
                return "path " + quoteForMessage(path) + ": segment '" + std::string(segment) +
                       "' must start with a letter or '_'";
            }
            for (char c : segment) {
                if (!isNameChar(c)) {
                    return "path " + quoteForMessage(path) + ": segment '" + std::string(segment) +
                           "' may only hold letters, digits and '_'";
                }
            }
        }
        if (last) break;
        start = end + 1;
        ++index;
    }
    if (index < 1) return "path " + quoteForMessage(path) + " names no parameter below 'Device.'";
    return std::nullopt;
}

struct ParsedLine {
    std::string path;
    std::string value;
    bool internal = false;           // an obuspa "Internal.*" line
    std::optional<std::string> note;  // accepted, with a warning
};

constexpr std::string_view kInternalPrefix = "Internal.";

// obuspa keeps its own state under "Internal." (Internal.Reboot.Cause, ...). Only the
// shape is checked here: dot-separated names and numbers.
std::optional<std::string> checkInternalPath(std::string_view path) {
    if (path.size() <= kInternalPrefix.size() || path.back() == '.')
        return "path " + quoteForMessage(path) + " names no parameter below 'Internal.'";
    for (char c : path) {
        if (!isNameChar(c) && c != '.') return "path " + quoteForMessage(path) + " may only hold letters, digits, '_' and '.'";
    }
    if (path.find("..") != std::string_view::npos) return "path " + quoteForMessage(path) + " has an empty segment ('..')";
    return std::nullopt;
}

// obuspa's form of a value: without quotes, up to the end of the line (or a blank
// followed by '#', which starts a comment as after a quoted value). `rest` starts at
// the value. Fills out.value, or `problem` and returns false.
bool parseBareValue(std::string_view rest, ParsedLine& out, std::string& problem) {
    std::size_t end = rest.size();
    for (std::size_t i = 1; i < rest.size(); ++i) {
        if (rest[i] == '#' && isBlank(rest[i - 1])) {
            end = i;
            break;
        }
    }
    std::string_view value = rest.substr(0, end);
    while (!value.empty() && isBlank(value.back()))
        value.remove_suffix(1);
    if (value.back() == '"') {
        problem = "value for " + quoteForMessage(out.path) + " ends in a double quote but does not start with one";
        return false;
    }
    for (char c : value) {
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
            problem = "control character in the value";
            return false;
        }
    }
    out.value = std::string(value);
    return true;
}

// A value in double quotes (\" and \\ escapes), then nothing but a comment. `rest`
// starts at the opening quote. Fills out.value (and out.note), or `problem` and
// returns false.
bool parseQuotedValue(std::string_view rest, ParsedLine& out, std::string& problem) {
    rest.remove_prefix(1);
    bool closed = false;
    std::size_t i = 0;
    for (; i < rest.size(); ++i) {
        const char c = rest[i];
        if (c == '"') {
            closed = true;
            ++i;
            break;
        }
        if (c == '\\') {
            if (i + 1 >= rest.size()) break;
            const char next = rest[i + 1];
            if (next != '"' && next != '\\') {
                problem = std::string("unknown escape '\\") + next + "' in the value; only \\\" and \\\\ are allowed";
                return false;
            }
            out.value += next;
            ++i;
            continue;
        }
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
            problem = "control character in the value";
            return false;
        }
        out.value += c;
    }
    if (!closed) {
        problem = "missing closing double quote in the value for " + quoteForMessage(out.path);
        return false;
    }
    std::string_view tail = rest.substr(i);
    // One of obuspa's own example files ends a value in '""'; take it as a typo.
    if (!tail.empty() && tail.front() == '"') {
        std::string_view after = tail.substr(1);
        const bool blankBefore = !after.empty() && isBlank(after.front());
        after = trimLeft(after);
        if (after.empty() || (after.front() == '#' && blankBefore)) {
            out.note = "stray double quote after the value for " + quoteForMessage(out.path) + " ignored";
            return true;
        }
    }
    const bool blankAfterValue = !tail.empty() && isBlank(tail.front());
    tail = trimLeft(tail);
    if (!tail.empty() && !(tail.front() == '#' && blankAfterValue)) {
        problem = "unexpected text after the closing quote: " + quoteForMessage(tail) +
                  " (a comment needs a blank before '#')";
        return false;
    }
    return true;
}

// Parses one line that is neither blank nor a comment. Returns the problem text on
// failure through `problem`.
std::optional<ParsedLine> parseLine(std::string_view line, std::string& problem) {
    line = trimLeft(line);
    std::size_t pathEnd = 0;
    while (pathEnd < line.size() && !isBlank(line[pathEnd]) && line[pathEnd] != '"')
        ++pathEnd;
    ParsedLine out;
    out.path = std::string(line.substr(0, pathEnd));
    std::string_view rest = line.substr(pathEnd);
    const bool hadBlank = !rest.empty() && isBlank(rest.front());
    rest = trimLeft(rest);

    out.internal = std::string_view(out.path).substr(0, kInternalPrefix.size()) == kInternalPrefix;
    if (auto bad = out.internal ? checkInternalPath(out.path) : checkPath(out.path)) {
        problem = *bad;
        return std::nullopt;
    }
    if (rest.empty() || rest.front() == '#') {
        problem = "missing value: expected " + quoteForMessage(out.path) + " followed by a value";
        return std::nullopt;
    }
    if (!hadBlank) {
        problem = "expected blanks between the path and the value";
        return std::nullopt;
    }
    const bool ok = rest.front() == '"' ? parseQuotedValue(rest, out, problem) : parseBareValue(rest, out, problem);
    if (!ok) return std::nullopt;
    return out;
}

// True when `path` matches `pattern`, where '#' stands for an instance number
// ("Device.LocalAgent.MTP.#.MQTT.Reference").
bool matchPattern(std::string_view path, std::string_view pattern) {
    std::size_t p = 0;
    std::size_t q = 0;
    while (p < path.size() && q < pattern.size()) {
        if (pattern[q] == '#') {
            if (!isDigit(path[p])) return false;
            while (p < path.size() && isDigit(path[p]))
                ++p;
            ++q;
            continue;
        }
        if (path[p] != pattern[q]) return false;
        ++p;
        ++q;
    }
    return p == path.size() && q == pattern.size();
}

std::string withoutTrailingDot(std::string_view s) {
    if (!s.empty() && s.back() == '.') s.remove_suffix(1);
    return std::string(s);
}

// Parameters TR-181 deleted that obuspa's files (and their users) still write, each
// rewritten to its successor. Runs over the whole file: the MQTT Reference of a
// controller's MTP names an MQTT client, its successor names the agent's MTP that
// uses that client, which another line of the same file defines.
void mapDeletedParameters(ConfigParse& parse, std::unordered_map<std::string, int>& firstLine) {
    // Which agent MTP row uses which MQTT client, read before entries move below.
    std::vector<std::pair<std::string, std::string>> clientOfMtp;
    for (const auto& e : parse.entries) {
        if (matchPattern(e.path, "Device.LocalAgent.MTP.#.MQTT.Reference"))
            clientOfMtp.emplace_back(e.path.substr(0, e.path.size() - 15), withoutTrailingDot(e.value));
    }
    std::vector<ConfigEntry> out;
    out.reserve(parse.entries.size());
    auto successorTaken = [&](const std::string& successor, const ConfigEntry& e) {
        auto it = firstLine.find(successor);
        if (it == firstLine.end()) return false;
        parse.warnings.push_back({e.line, quoteForMessage(e.path) + " is deleted from TR-181; ignored, line " +
                                              std::to_string(it->second) + " sets its successor " +
                                              quoteForMessage(successor)});
        return true;
    };
    for (auto& e : parse.entries) {
        const std::string& path = e.path;
        if (matchPattern(path, "Device.LocalAgent.Controller.#.MTP.#.MQTT.Reference")) {
            const std::string successor = path.substr(0, path.size() - 9) + "AgentMTPReference";
            if (successorTaken(successor, e)) continue;
            const std::string client = withoutTrailingDot(e.value);
            const bool dotted = !e.value.empty() && e.value.back() == '.';
            std::string mtpRow;
            if (client.rfind("Device.LocalAgent.MTP.", 0) == 0) {
                mtpRow = client;
            } else if (!client.empty()) {
                for (const auto& [row, used] : clientOfMtp) {
                    if (used == client) {
                        mtpRow = row;
                        break;
                    }
                }
            }
            if (mtpRow.empty()) {
                parse.warnings.push_back(
                    {e.line, quoteForMessage(path) + " is deleted from TR-181 and no Device.LocalAgent.MTP.{i} in this file uses " +
                                 quoteForMessage(e.value) + "; ignored (the controller is reached over any MQTT MTP)"});
                continue;
            }
            std::string value = mtpRow + (dotted ? "." : "");
            parse.warnings.push_back({e.line, quoteForMessage(path) + " is deleted from TR-181; read as " +
                                                  quoteForMessage(successor) + " " + quoteForMessage(value)});
            firstLine.emplace(successor, e.line);
            out.push_back({successor, std::move(value), e.line});
            continue;
        }
        std::string successor;
        if (matchPattern(path, "Device.LocalAgent.Controller.#.MTP.#.WebSocket.IsEncrypted") ||
            matchPattern(path, "Device.STOMP.Connection.#.IsEncrypted")) {
            successor = path.substr(0, path.size() - 11) + "EnableEncryption";
        } else if (matchPattern(path, "Device.MQTT.Client.#.EnableEncryption")) {
            successor = path.substr(0, path.size() - 16) + "TransportProtocol";
            if (successorTaken(successor, e)) continue;
            if (e.value != "true" && e.value != "1") {
                parse.warnings.push_back({e.line, quoteForMessage(path) +
                                                      " is deleted from TR-181; ignored (TransportProtocol keeps its default)"});
                continue;
            }
            parse.warnings.push_back({e.line, quoteForMessage(path) + " is deleted from TR-181; read as " +
                                                  quoteForMessage(successor) + " 'TLS'"});
            firstLine.emplace(successor, e.line);
            out.push_back({successor, "TLS", e.line});
            continue;
        }
        if (!successor.empty()) {
            if (successorTaken(successor, e)) continue;
            parse.warnings.push_back({e.line, quoteForMessage(path) + " is deleted from TR-181; read as " +
                                                  quoteForMessage(successor)});
            firstLine.emplace(successor, e.line);
            out.push_back({successor, std::move(e.value), e.line});
            continue;
        }
        out.push_back(std::move(e));
    }
    parse.entries = std::move(out);
}

}  // namespace

ConfigParse parseConfigText(std::string_view text) {
    ConfigParse result;
    if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
    std::unordered_map<std::string, int> firstLine;
    int lineNo = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        ++lineNo;
        auto nl = text.find('\n', pos);
        if (nl == std::string_view::npos) nl = text.size();
        std::string_view line = text.substr(pos, nl - pos);
        pos = nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

        const auto trimmed = trimLeft(line);
        if (trimmed.empty() || trimmed.front() == '#') continue;
        if (line.find('\0') != std::string_view::npos) {
            result.problems.push_back({lineNo, "NUL byte in the line"});
            continue;
        }
        std::string problem;
        auto parsed = parseLine(line, problem);
        if (!parsed) {
            result.problems.push_back({lineNo, problem});
            continue;
        }
        auto [it, inserted] = firstLine.emplace(parsed->path, lineNo);
        if (!inserted) {
            result.problems.push_back({lineNo, quoteForMessage(parsed->path) +
                                                   " is assigned again; first assigned on line " +
                                                   std::to_string(it->second)});
            continue;
        }
        if (parsed->note) result.warnings.push_back({lineNo, std::move(*parsed->note)});
        auto& into = parsed->internal ? result.internal : result.entries;
        into.push_back({std::move(parsed->path), std::move(parsed->value), lineNo});
    }
    mapDeletedParameters(result, firstLine);
    return result;
}

Result<ConfigParse> parseConfig(std::string_view text, const std::string& sourceName) {
    auto parsed = parseConfigText(text);
    if (parsed.problems.empty()) return parsed;
    std::string message;
    for (const auto& p : parsed.problems) {
        if (!message.empty()) message += '\n';
        message += sourceName + ":" + std::to_string(p.line) + ": " + p.message;
    }
    return Error(ErrorCode::kInvalidConfiguration, std::move(message), sourceName);
}

Result<ConfigParse> loadConfigFile(const std::filesystem::path& file) {
    const std::string name = file.string();
    std::ifstream in(file, std::ios::binary);
    if (!in)
        return Error(ErrorCode::kInvalidConfiguration,
                     name + ": cannot open: " + std::generic_category().message(errno), name);
    std::string text;
    char buf[16384];
    while (in.read(buf, sizeof buf) || in.gcount() > 0) {
        text.append(buf, static_cast<std::size_t>(in.gcount()));
        if (text.size() > kMaxConfigFileSize) {
            return Error(ErrorCode::kInvalidConfiguration,
                         name + ": larger than " + std::to_string(kMaxConfigFileSize) + " bytes; not a defaults file?",
                         name);
        }
    }
    if (in.bad()) return Error(ErrorCode::kInvalidConfiguration, name + ": read error", name);
    if (text.find('\0') != std::string::npos)
        return Error(ErrorCode::kInvalidConfiguration, name + ": holds NUL bytes; not a text file", name);
    return parseConfig(text, name);
}

}  // namespace berth::agent
