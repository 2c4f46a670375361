#include "value.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <limits>

namespace berth::dm {
namespace {

Error invalidType(const ParamSchema& p, std::string_view v, const char* what) {
    return Error(ErrorCode::kInvalidType, "value '" + std::string(v) + "' of " + p.name + " is not " + what);
}
Error invalidValue(const ParamSchema& p, std::string_view v, const std::string& why) {
    return Error(ErrorCode::kInvalidValue, "value '" + std::string(v) + "' of " + p.name + " " + why);
}

bool parseSigned(std::string_view s, std::int64_t& out) {
    if (s.empty() || s.size() > 20) return false;
    std::size_t i = 0;
    bool neg = false;
    if (s[0] == '-') neg = true, i = 1;
    if (i >= s.size()) return false;
    unsigned long long v = 0;
    for (; i < s.size(); ++i) {
        if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
        unsigned d = static_cast<unsigned>(s[i] - '0');
        if (v > (std::numeric_limits<unsigned long long>::max() - d) / 10) return false;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > static_cast<unsigned long long>(std::numeric_limits<std::int64_t>::max()) + 1ULL) return false;
        out = v == static_cast<unsigned long long>(std::numeric_limits<std::int64_t>::max()) + 1ULL
                  ? std::numeric_limits<std::int64_t>::min()
                  : -static_cast<std::int64_t>(v);
    } else {
        if (v > static_cast<unsigned long long>(std::numeric_limits<std::int64_t>::max())) return false;
        out = static_cast<std::int64_t>(v);
    }
    return true;
}

bool parseUnsigned(std::string_view s, std::uint64_t& out) {
    if (s.empty() || s.size() > 20) return false;
    unsigned long long v = 0;
    for (char c : s) {
        if (!std::isdigit(static_cast<unsigned char>(c))) return false;
        unsigned d = static_cast<unsigned>(c - '0');
        if (v > (std::numeric_limits<unsigned long long>::max() - d) / 10) return false;
        v = v * 10 + d;
    }
    out = v;
    return true;
}

bool digits(std::string_view s, std::size_t pos, std::size_t n) {
    if (pos + n > s.size()) return false;
    for (std::size_t i = pos; i < pos + n; ++i)
        if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    return true;
}

// TR-106 dateTime: YYYY-MM-DDThh:mm:ss[.f+](Z|(+|-)hh:mm)?
bool validDateTime(std::string_view s) {
    if (!digits(s, 0, 4) || s.size() < 19 || s[4] != '-' || !digits(s, 5, 2) || s[7] != '-' || !digits(s, 8, 2) ||
        s[10] != 'T' || !digits(s, 11, 2) || s[13] != ':' || !digits(s, 14, 2) || s[16] != ':' || !digits(s, 17, 2))
        return false;
    int mon = (s[5] - '0') * 10 + (s[6] - '0');
    int day = (s[8] - '0') * 10 + (s[9] - '0');
    int hh = (s[11] - '0') * 10 + (s[12] - '0');
    int mm = (s[14] - '0') * 10 + (s[15] - '0');
    int ss = (s[17] - '0') * 10 + (s[18] - '0');
    if (mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) return false;
    std::size_t i = 19;
    if (i < s.size() && s[i] == '.') {
        ++i;
        std::size_t b = i;
        while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
        if (i == b) return false;
    }
    if (i == s.size()) return true;
    if (s[i] == 'Z') return i + 1 == s.size();
    if (s[i] == '+' || s[i] == '-') return s.size() == i + 6 && digits(s, i + 1, 2) && s[i + 3] == ':' && digits(s, i + 4, 2);
    return false;
}

bool validBase64(std::string_view s) {
    if (s.size() % 4 != 0) return false;
    std::size_t pad = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '=') {
            ++pad;
            if (i < s.size() - 2) return false;
        } else {
            if (pad) return false;
            if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/')) return false;
        }
    }
    return pad <= 2;
}

bool inRanges(const ParamSchema& p, bool isNeg, std::int64_t sv, std::uint64_t uv) {
    if (p.ranges.empty()) return true;
    for (const Range& r : p.ranges) {
        bool ok = true;
        if (isNeg) {
            if (r.hasMin && sv < r.min) ok = false;
            if (r.hasMax && sv > r.max) ok = false;
        } else {
            if (r.hasMin && r.min > 0 && uv < static_cast<std::uint64_t>(r.min)) ok = false;
            if (r.hasMax && (r.max < 0 || uv > static_cast<std::uint64_t>(r.max))) ok = false;
        }
        if (ok) return true;
    }
    return false;
}

Result<std::string> validateScalar(const ParamSchema& p, std::string_view v) {
    switch (p.type) {
        case ValueType::kBoolean:
            if (v == "true" || v == "1") return std::string("true");
            if (v == "false" || v == "0") return std::string("false");
            return invalidType(p, v, "a boolean");
        case ValueType::kInt:
        case ValueType::kLong: {
            std::int64_t x = 0;
            if (!parseSigned(v, x)) return invalidType(p, v, "an integer");
            if (p.type == ValueType::kInt && (x < std::numeric_limits<std::int32_t>::min() || x > std::numeric_limits<std::int32_t>::max()))
                return invalidValue(p, v, "is outside the int range");
            if (!inRanges(p, x < 0, x, x < 0 ? 0 : static_cast<std::uint64_t>(x))) return invalidValue(p, v, "is out of range");
            return std::to_string(x);
        }
        case ValueType::kUnsignedInt:
        case ValueType::kUnsignedLong: {
            std::uint64_t x = 0;
            if (!parseUnsigned(v, x)) return invalidType(p, v, "an unsigned integer");
            if (p.type == ValueType::kUnsignedInt && x > std::numeric_limits<std::uint32_t>::max())
                return invalidValue(p, v, "is outside the unsignedInt range");
            if (!inRanges(p, false, 0, x)) return invalidValue(p, v, "is out of range");
            return std::to_string(x);
        }
        case ValueType::kDateTime:
            if (!validDateTime(v)) return invalidType(p, v, "a dateTime");
            return std::string(v);
        case ValueType::kBase64:
            if (!validBase64(v)) return invalidType(p, v, "base64");
            return std::string(v);
        case ValueType::kHexBinary:
            if (v.size() % 2) return invalidType(p, v, "hexBinary");
            for (char c : v)
                if (!std::isxdigit(static_cast<unsigned char>(c))) return invalidType(p, v, "hexBinary");
            if (p.maxLen && v.size() / 2 > p.maxLen) return invalidValue(p, v, "is too long");
            return std::string(v);
        case ValueType::kDecimal: {
            char* end = nullptr;
            std::string tmp(v);
            errno = 0;
            std::strtod(tmp.c_str(), &end);
            if (tmp.empty() || *end || errno) return invalidType(p, v, "a decimal");
            return tmp;
        }
        case ValueType::kString:
        case ValueType::kUnknown:
            break;
    }
    if (p.maxLen && v.size() > p.maxLen) return invalidValue(p, v, "is longer than " + std::to_string(p.maxLen));
    if (v.size() < p.minLen) return invalidValue(p, v, "is shorter than " + std::to_string(p.minLen));
    if (!p.enums.empty()) {
        bool found = false;
        for (const auto& e : p.enums)
            if (e == v) found = true;
        if (!found) return invalidValue(p, v, "is not one of the allowed values");
    }
    if (p.isAlias && (v.empty() || !std::isalpha(static_cast<unsigned char>(v[0]))))
        return invalidValue(p, v, "must start with a letter");
    return std::string(v);
}

}  // namespace

void splitList(std::string_view s, std::vector<std::string_view>& out) {
    out.clear();
    if (s.find_first_not_of(" \t") == std::string_view::npos) return;
    while (true) {
        auto comma = s.find(',');
        std::string_view item = s.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        out.push_back(item);
        if (comma == std::string_view::npos) break;
        s = s.substr(comma + 1);
    }
}

Result<std::string> validateValue(const ParamSchema& p, std::string_view value) {
    if (!p.isList) return validateScalar(p, value);
    if (p.listMaxLen && value.size() > p.listMaxLen)
        return invalidValue(p, value, "is longer than " + std::to_string(p.listMaxLen));
    std::vector<std::string_view> items;
    splitList(value, items);
    std::string out;
    for (std::size_t i = 0; i < items.size(); ++i) {
        auto r = validateScalar(p, items[i]);
        if (!r) return r;
        if (i) out += ',';
        out += *r;
    }
    return out;
}

Result<bool> compareValue(const ParamSchema& p, std::string_view actual, CompareOp op, const Condition& cond) {
    auto bad = [&](const std::string& why) {
        return Error(ErrorCode::kInvalidPathSyntax, "invalid search expression on " + p.name + ": " + why);
    };
    if (op == CompareOp::kContains) {
        if (!cond.quoted && p.type == ValueType::kString) return bad("string values must be quoted");
        std::vector<std::string_view> items;
        splitList(actual, items);
        for (auto i : items)
            if (i == cond.value) return true;
        return false;
    }
    bool numeric = !p.isList && (p.type == ValueType::kInt || p.type == ValueType::kLong ||
                                 p.type == ValueType::kUnsignedInt || p.type == ValueType::kUnsignedLong ||
                                 p.type == ValueType::kDecimal);
    bool ordered = numeric || (!p.isList && p.type == ValueType::kDateTime);
    if (!ordered && op != CompareOp::kEq && op != CompareOp::kNe)
        return bad("only == and != are allowed for this type");
    int cmp = 0;
    if (p.type == ValueType::kString || p.type == ValueType::kBase64 || p.type == ValueType::kHexBinary || p.isList) {
        if (!cond.quoted) return bad("string values must be quoted");
        cmp = std::string_view(actual).compare(cond.value);
    } else if (p.type == ValueType::kBoolean) {
        if (cond.quoted) return bad("boolean values are not quoted");
        std::string lit;
        if (cond.value == "true" || cond.value == "1") lit = "true";
        else if (cond.value == "false" || cond.value == "0") lit = "false";
        else return bad("'" + cond.value + "' is not a boolean");
        bool a = actual == "true" || actual == "1";
        cmp = (a == (lit == "true")) ? 0 : 1;
    } else if (p.type == ValueType::kDateTime) {
        if (cond.quoted) return bad("dateTime values are not quoted");
        if (!validDateTime(cond.value)) return bad("'" + cond.value + "' is not a dateTime");
        if (op != CompareOp::kEq && op != CompareOp::kNe && cond.value.rfind("0001-", 0) == 0)
            return bad("the Unknown Time only allows == and !=");
        cmp = std::string_view(actual).compare(cond.value);  // same-format UTC strings order lexically
    } else if (numeric) {
        if (cond.quoted) return bad("numbers are not quoted");
        char* end = nullptr;
        errno = 0;
        long double lit = std::strtold(cond.value.c_str(), &end);
        if (*end || errno) return bad("'" + cond.value + "' is not a number");
        std::string a(actual);
        long double av = std::strtold(a.c_str(), &end);
        if (a.empty() || *end) return false;  // an unset number matches nothing
        cmp = av < lit ? -1 : (av > lit ? 1 : 0);
    } else {
        cmp = std::string_view(actual).compare(cond.value);
    }
    switch (op) {
        case CompareOp::kEq: return cmp == 0;
        case CompareOp::kNe: return cmp != 0;
        case CompareOp::kLt: return cmp < 0;
        case CompareOp::kGt: return cmp > 0;
        case CompareOp::kLe: return cmp <= 0;
        case CompareOp::kGe: return cmp >= 0;
        case CompareOp::kContains: break;
    }
    return false;
}

}  // namespace berth::dm
