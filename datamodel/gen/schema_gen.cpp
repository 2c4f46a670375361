// Build-time generator: reads the TR-181 subset JSON and the project overlay and writes
// a C++ source holding the compact schema tables declared in src/schema_tables.h.
//
//   berth-dm-schema-gen <tr181-subset.json> <berth-overlay.json> <out.cpp>
//
// The overlay's "add" list extends objects with vendor parameters (X_BERTH_...).
//
// Type strings come in the flattened TR-181 notation, e.g. "unsignedInt {range 1:65535}",
// "URL [string(:2048)]", "list<string {size :256}>", "string {pathRef #.ExecEnv. (row) weak}".

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

using nlohmann::json;

enum ValueType : int {
    kUnknown = 0, kBase64 = 1, kBoolean = 2, kDateTime = 3, kDecimal = 4, kHexBinary = 5,
    kInt = 6, kLong = 7, kString = 8, kUnsignedInt = 9, kUnsignedLong = 10,
};

enum Flags : unsigned {
    kList = 1 << 0, kSecured = 1 << 1, kHasDefault = 1 << 2, kStrongRef = 1 << 3,
    kWeakRef = 1 << 4, kMandatory = 1 << 5, kAlias = 1 << 6, kCanDeny = 1 << 7,
    kDeprecated = 1 << 8,
};

struct TypeInfo {
    int type = kString;
    unsigned flags = 0;
    std::string ranges;
    std::uint32_t minLen = 0, maxLen = 0, listMaxLen = 0;
    std::string pathRef;
};

std::string trim(const std::string& s) {
    std::size_t b = s.find_first_not_of(' ');
    if (b == std::string::npos) return {};
    std::size_t e = s.find_last_not_of(' ');
    return s.substr(b, e - b + 1);
}

int baseType(const std::string& name) {
    static const std::map<std::string, int> kBases = {
        {"string", kString}, {"boolean", kBoolean}, {"unsignedInt", kUnsignedInt},
        {"int", kInt}, {"long", kLong}, {"unsignedLong", kUnsignedLong},
        {"dateTime", kDateTime}, {"base64", kBase64}, {"hexBinary", kHexBinary},
        {"decimal", kDecimal},
    };
    auto it = kBases.find(name);
    return it == kBases.end() ? -1 : it->second;
}

void parseSize(const std::string& spec, std::uint32_t& minLen, std::uint32_t& maxLen) {
    auto colon = spec.find(':');
    std::string lo = colon == std::string::npos ? spec : spec.substr(0, colon);
    std::string hi = colon == std::string::npos ? spec : spec.substr(colon + 1);
    if (!trim(lo).empty()) minLen = static_cast<std::uint32_t>(std::stoul(trim(lo)));
    if (!trim(hi).empty()) maxLen = static_cast<std::uint32_t>(std::stoul(trim(hi)));
}

// Facets inside "{...}": "size :256; range 1:; units seconds; pathRef X (row) strong".
void parseFacets(const std::string& body, TypeInfo& t, bool forList) {
    std::stringstream ss(body);
    std::string item;
    while (std::getline(ss, item, ';')) {
        item = trim(item);
        if (item.rfind("size ", 0) == 0) {
            std::uint32_t lo = 0, hi = 0;
            parseSize(item.substr(5), lo, hi);
            if (forList) {
                t.listMaxLen = hi;
            } else {
                t.minLen = lo;
                t.maxLen = hi;
            }
        } else if (item.rfind("range ", 0) == 0) {
            if (!t.ranges.empty()) t.ranges += ";";
            t.ranges += trim(item.substr(6));
        } else if (item.rfind("pathRef", 0) == 0) {
            std::string rest = trim(item.substr(7));
            if (rest.size() >= 6 && rest.compare(rest.size() - 6, 6, "strong") == 0) t.flags |= kStrongRef;
            if (rest.size() >= 4 && rest.compare(rest.size() - 4, 4, "weak") == 0) t.flags |= kWeakRef;
            auto sp = rest.find(' ');
            t.pathRef = rest.rfind("(row)", 0) == 0 ? "" : rest.substr(0, sp);
        }
    }
}

// Parses one scalar type ("unsignedInt {range 1:}", "URL [string(:2048)]", "string").
void parseScalar(const std::string& in, TypeInfo& t) {
    std::string s = trim(in);
    // Named data type: "Name [base(...) ...]".
    auto br = s.find(" [");
    if (br != std::string::npos && s.back() == ']') {
        std::string name = s.substr(0, br);
        std::string inner = s.substr(br + 2, s.size() - br - 3);
        if (name == "_AliasUSP" || name == "Alias") t.flags |= kAlias;
        std::size_t i = 0;
        while (i < inner.size() && std::isalpha(static_cast<unsigned char>(inner[i]))) ++i;
        int b = baseType(inner.substr(0, i));
        t.type = b < 0 ? kString : b;
        if (i < inner.size() && inner[i] == '(') {
            auto close = inner.find(')', i);
            parseSize(inner.substr(i + 1, close - i - 1), t.minLen, t.maxLen);
        }
        return;
    }
    auto brace = s.find(" {");
    std::string base = brace == std::string::npos ? s : s.substr(0, brace);
    int b = baseType(trim(base));
    if (b < 0) throw std::runtime_error("unknown type '" + s + "'");
    t.type = b;
    if (brace != std::string::npos) {
        auto close = s.rfind('}');
        parseFacets(s.substr(brace + 2, close - brace - 2), t, false);
    }
}

TypeInfo parseType(const std::string& s) {
    TypeInfo t;
    if (s.rfind("list<", 0) == 0) {
        t.flags |= kList;
        int depth = 0;
        std::size_t end = 5;
        for (; end < s.size(); ++end) {
            if (s[end] == '{' || s[end] == '<') ++depth;
            if (s[end] == '}') --depth;
            if (s[end] == '>') {
                if (depth == 0) break;
                --depth;
            }
        }
        parseScalar(s.substr(5, end - 5), t);
        std::string rest = trim(s.substr(end + 1));
        if (!rest.empty() && rest.front() == '{') parseFacets(rest.substr(1, rest.size() - 2), t, true);
        return t;
    }
    parseScalar(s, t);
    return t;
}

std::string cstr(const std::string& s) {
    std::string o = "\"";
    for (char c : s) {
        switch (c) {
            case '"': o += "\\\""; break;
            case '\\': o += "\\\\"; break;
            case '\n': o += "\\n"; break;
            default: o += c;
        }
    }
    return o + "\"";
}

bool isDeleted(const json& j) {
    auto st = j.value("status", std::string());
    return st == "deleted" || st == "obsoleted";
}

int accessOf(const json& p) {
    std::string a = p.value("access", std::string("readOnly"));
    if (a == "readWrite") return 1;
    if (a == "writeOnceReadOnly") return 2;
    return 0;
}

std::string enumsOf(const json& p) {
    std::string out;
    if (!p.contains("enum")) return out;
    for (const auto& e : p["enum"]) {
        std::string v = e.get<std::string>();
        auto paren = v.find(" (");
        if (paren != std::string::npos) {
            std::string tag = v.substr(paren);
            if (tag == " (deleted)" || tag == " (obsoleted)") continue;
            v = v.substr(0, paren);
        }
        if (!out.empty()) out += "\n";
        out += v;
    }
    return out;
}

// A number for a 16-bit table field; anything wider is refused, not truncated.
std::uint32_t u16(std::uint64_t v, const std::string& what) {
    if (v > 0xFFFF) throw std::runtime_error(what + " is " + std::to_string(v) + ": does not fit the 16-bit table field");
    return static_cast<std::uint32_t>(v);
}

// Every string of the tables, each distinct one once, '\0'-terminated; offset 0 is "".
struct StringPool {
    std::string data = std::string(1, '\0');
    std::map<std::string, std::uint32_t> offsets{{std::string(), 0}};
    std::vector<std::string> order;

    std::uint32_t operator()(const std::string& s) {
        auto [it, added] = offsets.emplace(s, static_cast<std::uint32_t>(data.size()));
        if (added) {
            order.push_back(s);
            data += s;
            data += '\0';
            u16(it->second, "string pool offset of \"" + s + "\"");
        }
        return it->second;
    }

    // One literal per string: adjacent literals concatenate, and "\0" never runs into a
    // following digit.
    std::string literal() const {
        std::string out = "    \"\\0\"\n";
        for (const auto& s : order) {
            std::string quoted = cstr(s);
            quoted.insert(quoted.size() - 1, "\\0");
            out += "    " + quoted + "\n";
        }
        return out;
    }
};

struct Emitter {
    std::ostringstream params, args, cmds, events, objs;
    int paramCount = 0, argCount = 0, cmdCount = 0, eventCount = 0, objCount = 0;
    StringPool str;

    std::string paramRow(const std::string& name, const json& p, bool isArg) {
        TypeInfo t = parseType(p.at("type").get<std::string>());
        unsigned flags = t.flags;
        if (p.value("secured", false)) flags |= kSecured;
        if (p.value("mandatory", std::string()) == "true") flags |= kMandatory;
        if (p.value("activeNotify", std::string()) == "canDeny") flags |= kCanDeny;
        if (p.value("status", std::string()) == "deprecated") flags |= kDeprecated;
        std::string def;
        if (p.contains("default")) {
            const auto& d = p["default"];
            std::string dt = d.value("type", std::string());
            if (dt == "object" || dt == "implementation" || (isArg && dt == "parameter")) {
                flags |= kHasDefault;
                def = d.value("value", std::string());
                if ((flags & kList) && def == "[]") def.clear();
            }
        }
        std::ostringstream o;
        o << "    {" << str(name) << ", " << str(t.ranges) << ", " << str(def) << ", " << str(enumsOf(p)) << ", "
          << str(t.pathRef) << ", " << flags << ", " << u16(t.minLen, name + " minimum length") << ", "
          << u16(t.maxLen, name + " maximum length") << ", " << u16(t.listMaxLen, name + " list length") << ", "
          << t.type << ", " << accessOf(p) << "},\n";
        return o.str();
    }

    // Command/event arguments: params plus argument objects flattened to relative names
    // ("TimeWindow.{i}.Start").
    void addArgs(const json& block) {
        if (block.is_null() || !block.is_object()) return;
        if (block.contains("params"))
            for (const auto& p : block["params"]) {
                if (isDeleted(p)) continue;
                args << paramRow(p.at("name").get<std::string>(), p, true);
                ++argCount;
            }
        if (block.contains("objects"))
            for (const auto& o : block["objects"]) {
                std::string prefix = o.at("path").get<std::string>();
                if (o.contains("params"))
                    for (const auto& p : o["params"]) {
                        if (isDeleted(p)) continue;
                        args << paramRow(prefix + p.at("name").get<std::string>(), p, true);
                        ++argCount;
                    }
            }
    }
};

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::cerr << "usage: " << argv[0] << " <tr181-subset.json> <overlay.json> <out.cpp>\n";
        return 2;
    }
    try {
        json model = json::parse(std::ifstream(argv[1]));
        json overlay = json::parse(std::ifstream(argv[2]));
        std::set<std::string> excluded, volatileObjs;
        for (const auto& e : overlay.value("exclude", json::array())) excluded.insert(e.get<std::string>());
        for (const auto& e : overlay.value("volatile", json::array())) volatileObjs.insert(e.get<std::string>());

        std::map<std::string, const json*> objects;  // sorted: a parent sorts before its children
        for (const auto& sub : model.at("subsets"))
            for (const auto& o : sub.at("objects")) {
                std::string path = o.at("path").get<std::string>();
                if (isDeleted(o) || excluded.count(path)) continue;
                objects[path] = &o;
            }
        // add: vendor extensions ({"path": ..., "params": [...]} in the subset's format).
        // Params are appended to an existing object; an unknown path becomes a new object.
        std::map<std::string, json> merged;  // owns the extended copies; node addresses are stable
        for (const auto& a : overlay.value("add", json::array())) {
            std::string path = a.at("path").get<std::string>();
            auto it = objects.find(path);
            json& o = merged[path];
            if (it != objects.end()) {
                o = *it->second;
                for (const auto& p : a.value("params", json::array())) o["params"].push_back(p);
            } else {
                o = a;
            }
            objects[path] = &o;
        }
        // Drop objects whose parent is missing (deleted or excluded).
        for (auto it = objects.begin(); it != objects.end();) {
            std::string p = it->first;
            std::string parent;
            std::string body = p.substr(0, p.size() - 1);
            if (body.size() >= 4 && body.compare(body.size() - 4, 4, ".{i}") == 0) body.resize(body.size() - 4);
            auto dot = body.rfind('.');
            if (dot != std::string::npos) parent = body.substr(0, dot + 1);
            if (!parent.empty() && !objects.count(parent)) {
                std::cerr << "schema-gen: dropping " << p << " (no parent " << parent << ")\n";
                it = objects.erase(it);
            } else {
                ++it;
            }
        }

        Emitter em;
        for (const auto& [path, op] : objects) {
            const json& o = *op;
            bool multi = path.size() > 4 && path.compare(path.size() - 5, 5, ".{i}.") == 0;
            unsigned oflags = multi ? 1u : 0u;
            bool isVolatile = false;
            for (const auto& v : volatileObjs)
                if (path.rfind(v, 0) == 0) isVolatile = true;
            if (isVolatile) oflags |= 2u;
            if (multi && o.value("access", std::string()) == "readWrite") oflags |= 4u;

            int pBegin = em.paramCount;
            if (o.contains("params"))
                for (const auto& p : o["params"]) {
                    std::string name = p.at("name").get<std::string>();
                    if (isDeleted(p) || excluded.count(path + name)) continue;
                    em.params << em.paramRow(name, p, false);
                    ++em.paramCount;
                }
            int cBegin = em.cmdCount;
            if (o.contains("commands"))
                for (const auto& c : o["commands"]) {
                    std::string name = c.at("name").get<std::string>();
                    if (isDeleted(c) || excluded.count(path + name)) continue;
                    int inB = em.argCount;
                    em.addArgs(c.value("input", json()));
                    int inE = em.argCount;
                    em.addArgs(c.value("output", json()));
                    em.cmds << "    {" << em.str(name) << ", " << inB << ", " << inE << ", " << inE << ", "
                            << u16(em.argCount, "argument count") << ", "
                            << (c.value("async", std::string()) == "true" ? "true" : "false") << "},\n";
                    ++em.cmdCount;
                }
            int eBegin = em.eventCount;
            if (o.contains("events"))
                for (const auto& e : o["events"]) {
                    std::string name = e.at("name").get<std::string>();
                    if (isDeleted(e) || excluded.count(path + name)) continue;
                    int aB = em.argCount;
                    em.addArgs(e.value("args", json()));
                    em.events << "    {" << em.str(name) << ", " << aB << ", " << u16(em.argCount, "argument count")
                              << "},\n";
                    ++em.eventCount;
                }
            std::string keys;
            if (o.contains("uniqueKeys"))
                for (const auto& k : o["uniqueKeys"]) {
                    if (!keys.empty()) keys += ";";
                    keys += k.value("functional", std::string("true")) == "true" ? "F:" : "N:";
                    bool first = true;
                    for (const auto& n : k.at("keys")) {
                        if (!first) keys += ",";
                        keys += n.get<std::string>();
                        first = false;
                    }
                }
            em.objs << "    {" << em.str(path) << ", " << em.str(keys) << ", "
                    << em.str(o.value("numEntriesParameter", std::string())) << ", "
                    << em.str(o.value("enableParameter", std::string())) << ", " << pBegin << ", "
                    << u16(em.paramCount, "parameter count") << ", " << cBegin << ", " << u16(em.cmdCount, "command count")
                    << ", " << eBegin << ", " << u16(em.eventCount, "event count") << ", " << oflags << "},\n";
            ++em.objCount;
        }

        std::ofstream out(argv[3]);
        out << "// Generated by berth-dm-schema-gen from datamodel/schema/*.json. Do not edit.\n"
            << "#include \"schema_tables.h\"\n\nnamespace berth::dm::detail {\n\n"
            << "const char kTableSpecUri[] = " << cstr(model.value("spec", std::string())) << ";\n\n"
            << "const char kTableStrings[] =\n" << em.str.literal() << "    ;\n\n"
            << "const TableParam kTableParams[] = {\n" << em.params.str() << "    {}};\n\n"
            << "const TableParam kTableArgs[] = {\n" << em.args.str() << "    {}};\n\n"
            << "const TableCommand kTableCommands[] = {\n" << em.cmds.str() << "    {}};\n\n"
            << "const TableEvent kTableEvents[] = {\n" << em.events.str() << "    {}};\n\n"
            << "const TableObject kTableObjects[] = {\n" << em.objs.str() << "    {}};\n\n"
            << "const std::size_t kTableObjectCount = " << em.objCount << ";\n\n"
            << "}  // namespace berth::dm::detail\n";
        if (!out) throw std::runtime_error(std::string("cannot write ") + argv[3]);
    } catch (const std::exception& e) {
        std::cerr << "schema-gen: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
