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
};

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

    if (auto bad = checkPath(out.path)) {
        problem = *bad;
        return std::nullopt;
    }
    if (rest.empty() || rest.front() == '#') {
        problem = "missing value: expected " + quoteForMessage(out.path) + " followed by a value in double quotes";
        return std::nullopt;
    }
    if (rest.front() != '"') {
        problem =
            "value for " + quoteForMessage(out.path) + " must be in double quotes, found " + quoteForMessage(rest);
        return std::nullopt;
    }
    if (!hadBlank) {
        problem = "expected blanks between the path and the value";
        return std::nullopt;
    }
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
                return std::nullopt;
            }
            out.value += next;
            ++i;
            continue;
        }
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
            problem = "control character in the value";
            return std::nullopt;
        }
        out.value += c;
    }
    if (!closed) {
        problem = "missing closing double quote in the value for " + quoteForMessage(out.path);
        return std::nullopt;
    }
    std::string_view tail = rest.substr(i);
    const bool blankAfterValue = !tail.empty() && isBlank(tail.front());
    tail = trimLeft(tail);
    if (!tail.empty() && !(tail.front() == '#' && blankAfterValue)) {
        problem = "unexpected text after the closing quote: " + quoteForMessage(tail) +
                  " (a comment needs a blank before '#')";
        return std::nullopt;
    }
    return out;
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
        result.entries.push_back({std::move(parsed->path), std::move(parsed->value), lineNo});
    }
    return result;
}

Result<std::vector<ConfigEntry>> parseConfig(std::string_view text, const std::string& sourceName) {
    auto parsed = parseConfigText(text);
    if (parsed.problems.empty()) return std::move(parsed.entries);
    std::string message;
    for (const auto& p : parsed.problems) {
        if (!message.empty()) message += '\n';
        message += sourceName + ":" + std::to_string(p.line) + ": " + p.message;
    }
    return Error(ErrorCode::kInvalidConfiguration, std::move(message), sourceName);
}

Result<std::vector<ConfigEntry>> loadConfigFile(const std::filesystem::path& file) {
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
