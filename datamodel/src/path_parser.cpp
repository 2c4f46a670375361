#include "berth/datamodel/path.h"

#include <cctype>

namespace berth::dm {
namespace {

bool isNameStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool isNameChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool isSpace(char c) { return c == ' ' || c == '\t'; }

class Parser {
public:
    Parser(std::string_view s, PathOptions o) : s_(s), opt_(o) {}

    Result<ParsedPath> run() {
        out_.text = std::string(s_);
        if (s_.empty()) return fail("empty path");
        bool expectInstanceOrName = false;  // after a name segment the next may be an instance
        while (true) {
            if (pos_ >= s_.size()) {
                // Ends right after '.', i.e. an object path.
                out_.kind = PathKind::kObject;
                break;
            }
            const char c = s_[pos_];
            if (isNameStart(c)) {
                auto next = parseNameSegment();
                if (!next) return std::move(next).error();
                if (*next == Next::kEnd) break;
                expectInstanceOrName = *next == Next::kInstanceOrName;
                continue;
            }
            if (!expectInstanceOrName) return fail(std::string("unexpected character '") + c + "'");
            BERTH_TRY(parseInstanceSegment(c));
            expectInstanceOrName = false;
        }
        return std::move(out_);
    }

private:
    // What may follow a name segment: the path ended (a parameter, command or event
    // leaf), an instance selector or a name, or only a name (after reference following).
    enum class Next { kEnd, kInstanceOrName, kName };

    // A name at pos_: the leaf of a parameter, command or event path, or an object
    // name followed by '.' or by reference following.
    Result<Next> parseNameSegment() {
        std::string name = parseName();
        if (pos_ >= s_.size()) {
            if (out_.segments.empty()) return fail("a path must start with an object name followed by '.'");
            out_.kind = PathKind::kParameter;
            out_.leaf = std::move(name);
            return Next::kEnd;
        }
        char n = s_[pos_];
        if (n == '(') {
            if (s_.substr(pos_) != "()") return fail("a command path must end in '()'");
            if (out_.segments.empty()) return fail("a command needs an object path");
            out_.kind = PathKind::kCommand;
            out_.leaf = name + "()";
            pos_ = s_.size();
            return Next::kEnd;
        }
        if (n == '!') {
            if (pos_ + 1 != s_.size()) return fail("an event path must end in '!'");
            if (out_.segments.empty()) return fail("an event needs an object path");
            out_.kind = PathKind::kEvent;
            out_.leaf = name + "!";
            pos_ = s_.size();
            return Next::kEnd;
        }
        Segment seg;
        seg.kind = Segment::kName;
        seg.name = std::move(name);
        if (n == '+' || n == '#') {
            auto r = parseRef();
            if (!r) return r.error();
            seg.ref = *r;
            out_.isSearch = true;
            if (pos_ >= s_.size() || s_[pos_] != '.')
                return fail("reference following must be followed by '.' and a name");
            ++pos_;
            if (pos_ >= s_.size() || !isNameStart(s_[pos_])) return fail("reference following must be followed by a name");
            out_.segments.push_back(std::move(seg));
            return Next::kName;
        }
        if (n != '.') return fail(std::string("unexpected character '") + n + "'");
        ++pos_;
        out_.segments.push_back(std::move(seg));
        return Next::kInstanceOrName;
    }

    // An instance selector at pos_ (number, '*', search expression, "{i}") and its '.'.
    Status parseInstanceSegment(char c) {
        Segment seg;
        if (std::isdigit(static_cast<unsigned char>(c))) {
            if (c == '0') return fail("instance numbers start at 1 and have no leading zeros");
            std::uint64_t v = 0;
            while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) {
                v = v * 10 + static_cast<unsigned>(s_[pos_] - '0');
                if (v > 0xFFFFFFFFu) return fail("instance number too large");
                ++pos_;
            }
            seg.kind = Segment::kInstance;
            seg.instance = static_cast<std::uint32_t>(v);
        } else if (c == '*') {
            ++pos_;
            seg.kind = Segment::kWildcard;
            out_.isSearch = true;
        } else if (c == '[') {
            auto e = parseExpression(seg);
            if (!e) return e.error();
            seg.kind = Segment::kSearch;
            out_.isSearch = true;
        } else if (c == '{') {
            if (!opt_.allowSupported || s_.substr(pos_, 3) != "{i}")
                return fail("'{i}' is only allowed in supported data model paths");
            pos_ += 3;
            seg.kind = Segment::kSupportedInstance;
        } else {
            return fail(std::string("unexpected character '") + c + "'");
        }
        if (pos_ >= s_.size() || s_[pos_] != '.') return fail("an instance selector must be followed by '.'");
        ++pos_;
        out_.segments.push_back(std::move(seg));
        return okStatus();
    }

    Error fail(const std::string& why) const {
        return Error(ErrorCode::kInvalidPathSyntax,
                     "invalid path syntax at position " + std::to_string(pos_) + ": " + why + " in '" +
                         std::string(s_) + "'",
                     std::string(s_));
    }

    std::string parseName() {
        std::size_t b = pos_;
        while (pos_ < s_.size() && isNameChar(s_[pos_])) ++pos_;
        return std::string(s_.substr(b, pos_ - b));
    }

    Result<RefFollow> parseRef() {
        RefFollow r;
        if (s_[pos_] == '+') {
            ++pos_;
            r.kind = RefFollow::kPlain;
            return r;
        }
        ++pos_;  // '#'
        if (pos_ < s_.size() && s_[pos_] == '*') {
            ++pos_;
            r.kind = RefFollow::kAll;
        } else {
            if (pos_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '0')
                return fail("'#' must be followed by a positive number or '*'");
            std::uint64_t v = 0;
            while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) {
                v = v * 10 + static_cast<unsigned>(s_[pos_] - '0');
                if (v > 0xFFFFFFFFu) return fail("list index too large");
                ++pos_;
            }
            r.kind = RefFollow::kIndex;
            r.index = static_cast<std::uint32_t>(v);
        }
        if (pos_ >= s_.size() || s_[pos_] != '+') return fail("'#n' must be followed by '+'");
        ++pos_;
        return r;
    }

    void skipSpace() {
        while (pos_ < s_.size() && isSpace(s_[pos_])) ++pos_;
    }

    // A search expression "[cond && cond ...]" at pos_ into seg.conds.
    Status parseExpression(Segment& seg) {
        ++pos_;  // '['
        while (true) {
            skipSpace();
            Condition cond;
            BERTH_TRY(parseRelPath(cond));
            skipSpace();
            BERTH_TRY(parseOperator(cond));
            skipSpace();
            BERTH_TRY(parseValue(cond));
            seg.conds.push_back(std::move(cond));
            skipSpace();
            if (pos_ >= s_.size()) return fail("unterminated search expression");
            if (s_[pos_] == ']') {
                ++pos_;
                return okStatus();
            }
            if (s_.substr(pos_, 2) == "&&") {
                pos_ += 2;
                continue;
            }
            return fail("expected '&&' or ']' in search expression");
        }
    }

    // relpath ::= name (reffollow? '.' name)*
    Status parseRelPath(Condition& cond) {
        while (true) {
            if (pos_ >= s_.size() || !isNameStart(s_[pos_])) return fail("expected a parameter name in search expression");
            RelStep step;
            step.name = parseName();
            if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '#')) {
                auto r = parseRef();
                if (!r) return r.error();
                step.ref = *r;
                cond.rel.push_back(std::move(step));
                if (pos_ >= s_.size() || s_[pos_] != '.') return fail("reference following in a search must be followed by '.'");
                ++pos_;
                continue;
            }
            cond.rel.push_back(std::move(step));
            if (pos_ < s_.size() && s_[pos_] == '.') {
                ++pos_;
                continue;
            }
            return okStatus();
        }
    }

    Status parseOperator(Condition& cond) {
        if (pos_ + 1 >= s_.size()) return fail("unterminated search expression");
        std::string_view two = s_.substr(pos_, 2);
        if (two == "==") cond.op = CompareOp::kEq, pos_ += 2;
        else if (two == "!=") cond.op = CompareOp::kNe, pos_ += 2;
        else if (two == "~=") cond.op = CompareOp::kContains, pos_ += 2;
        else if (two == "<=") cond.op = CompareOp::kLe, pos_ += 2;
        else if (two == ">=") cond.op = CompareOp::kGe, pos_ += 2;
        else if (s_[pos_] == '<') cond.op = CompareOp::kLt, pos_ += 1;
        else if (s_[pos_] == '>') cond.op = CompareOp::kGt, pos_ += 1;
        else return fail("expected one of == != ~= < > <= >=");
        return okStatus();
    }

    // A quoted value ("%22" and "%25" decoded) or a bare one.
    Status parseValue(Condition& cond) {
        if (pos_ >= s_.size()) return fail("missing value in search expression");
        if (s_[pos_] == '"') {
            ++pos_;
            cond.quoted = true;
            while (true) {
                if (pos_ >= s_.size()) return fail("unterminated string literal");
                char c = s_[pos_];
                if (c == '"') {
                    ++pos_;
                    return okStatus();
                }
                if (c == '%' && pos_ + 2 < s_.size() + 0 && s_.substr(pos_, 3) == "%22") {
                    cond.value += '"';
                    pos_ += 3;
                } else if (c == '%' && s_.substr(pos_, 3) == "%25") {
                    cond.value += '%';
                    pos_ += 3;
                } else {
                    cond.value += c;
                    ++pos_;
                }
            }
        }
        std::size_t b = pos_;
        while (pos_ < s_.size() && s_[pos_] != ']' && s_[pos_] != '&' && !isSpace(s_[pos_])) {
            char c = s_[pos_];
            if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '+' || c == '.' || c == ':' || c == '_'))
                return fail(std::string("unexpected character '") + c + "' in unquoted value");
            ++pos_;
        }
        if (pos_ == b) return fail("missing value in search expression");
        cond.value = std::string(s_.substr(b, pos_ - b));
        return okStatus();
    }

    std::string_view s_;
    PathOptions opt_;
    std::size_t pos_ = 0;
    ParsedPath out_;
};

}  // namespace

Result<ParsedPath> parsePath(std::string_view path, PathOptions options) {
    while (!path.empty() && (path.front() == ' ' || path.front() == '\t' || path.front() == '\n' || path.front() == '\r'))
        path.remove_prefix(1);
    while (!path.empty() && (path.back() == ' ' || path.back() == '\t' || path.back() == '\n' || path.back() == '\r'))
        path.remove_suffix(1);
    return Parser(path, options).run();
}

std::string supportedForm(const ParsedPath& path) {
    std::string out;
    for (const auto& s : path.segments) {
        if (s.kind == Segment::kName) {
            out += s.name;
        } else {
            out += "{i}";
        }
        out += '.';
    }
    out += path.leaf;
    return out;
}

namespace {
std::string_view trimBlanks(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}
}  // namespace

std::string referenceValue(std::string_view reference) {
    std::string_view r = trimBlanks(reference);
    // Only a dot after a name or an instance number; ".." or a lone "." is not a path.
    if (r.size() >= 2 && r.back() == '.' && r[r.size() - 2] != '.') r.remove_suffix(1);
    return std::string(r);
}

std::string referencedObject(std::string_view reference) {
    std::string r = referenceValue(reference);
    if (!r.empty()) r += '.';
    return r;
}

std::string withDot(std::string_view path) {
    std::string out(path);
    if (!out.empty() && out.back() != '.') out += '.';
    return out;
}

std::string noDot(std::string_view path) {
    if (!path.empty() && path.back() == '.') path.remove_suffix(1);
    return std::string(path);
}

std::uint32_t instanceNumber(std::string_view path) {
    if (!path.empty() && path.back() == '.') path.remove_suffix(1);
    auto dot = path.rfind('.');
    std::string_view last = dot == std::string_view::npos ? path : path.substr(dot + 1);
    if (last.empty() || last.size() > 10) return 0;
    std::uint64_t n = 0;
    for (char c : last) {
        if (c < '0' || c > '9') return 0;
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return n > 0xFFFFFFFFu ? 0 : static_cast<std::uint32_t>(n);
}

}  // namespace berth::dm
