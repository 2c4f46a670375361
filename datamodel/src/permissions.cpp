#include "berth/datamodel/permissions.h"

#include <algorithm>

#include "berth/datamodel/engine.h"
#include "engine_impl.h"
#include "value.h"

namespace berth::dm {

using detail::ObjNode;

namespace {

std::vector<std::string_view> splitSegments(std::string_view path) {
    std::vector<std::string_view> out;
    while (!path.empty()) {
        auto dot = path.find('.');
        out.push_back(path.substr(0, dot));
        if (dot == std::string_view::npos) break;
        path = path.substr(dot + 1);
    }
    return out;
}

bool isNumber(std::string_view s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

// Rule segment vs. path segment: "*" matches any instance; "{i}" in the path (supported
// paths in GetSupportedDM) matches any instance selector of the rule.
bool segMatch(const std::string& rule, std::string_view seg) {
    if (rule == seg) return true;
    if (rule == "*") return isNumber(seg) || seg == "{i}";
    if (seg == "{i}") return isNumber(rule);
    return false;
}

}  // namespace

std::uint8_t parsePermString(std::string_view s) {
    if (s.size() != 4) return 0;
    std::uint8_t out = 0;
    const char kLetters[] = "rwxn";
    for (int i = 0; i < 4; ++i) {
        if (s[static_cast<std::size_t>(i)] == kLetters[i]) out |= static_cast<std::uint8_t>(1u << i);
        else if (s[static_cast<std::size_t>(i)] != '-') return 0;
    }
    return out;
}

Permissions Permissions::fullAccess() {
    Permissions p;
    p.full_ = true;
    p.secured_ = true;
    return p;
}

Permissions Permissions::fullAccessWithoutSecured() {
    Permissions p;
    p.full_ = true;
    p.secured_ = false;
    return p;
}

Permissions Permissions::fromRoles(const Engine& engine, const std::vector<std::string>& roles, bool mayReadSecured) {
    Permissions out;
    out.secured_ = mayReadSecured;
    Engine::Impl& im = *engine.impl_;
    ObjNode* trust = im.findNode("Device.LocalAgent.ControllerTrust.");
    if (!trust) return out;
    const ObjectSchema* roleSchema = trust->schema->findChild("Role");
    if (!roleSchema) return out;
    auto& roleTable = *trust->tables[roleSchema->index()];
    const ObjectSchema* permSchema = roleSchema->findChild("Permission");
    auto val = [](const ObjNode& n, std::string_view name) -> std::string_view {
        int i = n.schema->paramIndex(name);
        return i < 0 ? std::string_view() : std::string_view(n.values[static_cast<std::size_t>(i)]);
    };
    std::vector<const ObjNode*> chosen;
    for (const std::string& r : roles) {
        std::string key = r;
        if (!key.empty() && key.back() != '.' && key.rfind("Device.", 0) == 0) key += '.';
        for (auto& [i, row] : roleTable.rows)
            if (row->path == key || val(*row, "Name") == r) {
                if (std::find(chosen.begin(), chosen.end(), row.get()) == chosen.end()) chosen.push_back(row.get());
            }
    }
    for (const ObjNode* role : chosen) {
        if (val(*role, "Enable") != "true") continue;
        Role ro;
        if (permSchema)
            for (auto& [i, perm] : role->tables[permSchema->index()]->rows) {
                if (val(*perm, "Enable") != "true") continue;
                PermissionBits bits;
                bits.param = parsePermString(val(*perm, "Param"));
                bits.obj = parsePermString(val(*perm, "Obj"));
                bits.instObj = parsePermString(val(*perm, "InstantiatedObj"));
                bits.cmdEvent = parsePermString(val(*perm, "CommandEvent"));
                std::uint32_t order = static_cast<std::uint32_t>(std::strtoul(std::string(val(*perm, "Order")).c_str(), nullptr, 10));
                std::vector<std::string_view> targets;
                splitList(val(*perm, "Targets"), targets);
                for (std::string_view t : targets) {
                    auto parsed = parsePath(t);
                    if (!parsed) continue;
                    std::vector<std::string> objPaths;
                    bool hasSearch = std::any_of(parsed->segments.begin(), parsed->segments.end(),
                                                 [](const Segment& s) { return s.kind == Segment::kSearch || s.ref.kind != RefFollow::kNone; });
                    std::string objPart(t.substr(0, t.size() - parsed->leaf.size()));
                    if (hasSearch) {
                        // Search targets are resolved to the instances matching now.
                        auto res = const_cast<Engine&>(engine).resolveObjects(objPart);
                        if (!res) continue;
                        objPaths = std::move(*res);
                    } else {
                        objPaths.push_back(objPart);
                    }
                    for (const auto& op : objPaths) {
                        Rule rule;
                        for (auto s : splitSegments(op))
                            if (!s.empty()) rule.concrete.emplace_back(s);
                        rule.leaf = parsed->leaf;
                        rule.order = order;
                        rule.bits = bits;
                        if (!rule.leaf.empty() && parsed->kind == PathKind::kParameter) out.hasParamRules_ = true;
                        ro.rules.push_back(std::move(rule));
                    }
                }
            }
        out.roles_.push_back(std::move(ro));
    }
    return out;
}

PermissionBits Permissions::evaluate(std::string_view objPath, std::string_view leaf, bool leafOnly) const {
    if (full_) return PermissionBits{kPermAll, kPermAll, kPermAll, kPermAll};
    auto segs = splitSegments(objPath);
    while (!segs.empty() && segs.back().empty()) segs.pop_back();
    PermissionBits out;
    for (const Role& role : roles_) {
        const Rule* best = nullptr;
        for (const Rule& r : role.rules) {
            if (!r.leaf.empty()) {
                // A rule on one parameter/command/event: exact object, same leaf.
                if (!leafOnly || r.leaf != leaf || r.concrete.size() != segs.size()) continue;
            } else if (r.concrete.size() > segs.size()) {
                continue;
            }
            bool ok = true;
            for (std::size_t i = 0; i < r.concrete.size() && ok; ++i) ok = segMatch(r.concrete[i], segs[i]);
            if (!ok) continue;
            if (!best || r.order > best->order) best = &r;
        }
        if (best) {
            out.param |= best->bits.param;
            out.obj |= best->bits.obj;
            out.instObj |= best->bits.instObj;
            out.cmdEvent |= best->bits.cmdEvent;
        }
    }
    return out;
}

PermissionBits Permissions::forObject(std::string_view objPath) const { return evaluate(objPath, {}, false); }

std::uint8_t Permissions::forParam(std::string_view objPath, std::string_view param) const {
    return evaluate(objPath, param, true).param;
}

std::uint8_t Permissions::forCommandEvent(std::string_view objPath, std::string_view name) const {
    return evaluate(objPath, name, true).cmdEvent;
}

}  // namespace berth::dm
