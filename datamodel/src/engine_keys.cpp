// Unique keys, Alias and references of the instance tree.

#include <algorithm>

#include "berth/datamodel/engine.h"
#include "engine_impl.h"
#include "value.h"

namespace berth::dm {

using detail::ObjNode;
using detail::Table;

// ---------------------------------------------------------------------------------------
// Unique keys, Alias, references

std::vector<std::pair<std::string_view, std::string>> Engine::Impl::uniqueKeysOf(ObjNode& row, const Permissions* perms) {
    std::vector<std::pair<std::string_view, std::string>> out;
    std::vector<bool> seen(row.schema->params().size());
    for (const auto& ks : row.schema->uniqueKeys())
        for (auto idx : ks.params) {
            if (seen[idx]) continue;
            seen[idx] = true;
            const ParamSchema& p = row.schema->params()[idx];
            if (perms && !perms->isFullAccess() && !(perms->forParam(row.path, p.name) & kPermRead)) continue;
            auto v = readValue(row, idx);
            out.emplace_back(p.name, v ? std::move(*v) : std::string());
        }
    return out;
}

Status Engine::Impl::checkUniqueKeys(ObjNode& row) const {
    const ObjectSchema& s = *row.schema;
    if (s.uniqueKeys().empty() || !row.parent) return okStatus();
    const Table& t = *row.parent->tables[s.index()];
    int en = s.enableParam();
    auto enabled = [&](const ObjNode& n) { return en < 0 || n.values[static_cast<std::size_t>(en)] == "true"; };
    for (const auto& ks : s.uniqueKeys()) {
        // Functional keys of a table with an Enable parameter only need to be unique among
        // enabled rows (TR-181 "unique keys" rules).
        if (ks.functional && en >= 0 && !enabled(row)) continue;
        for (const auto& [inst, other] : t.rows) {
            if (other.get() == &row) continue;
            if (ks.functional && en >= 0 && !enabled(*other)) continue;
            bool same = true;
            for (auto idx : ks.params)
                if (other->values[idx] != row.values[idx]) same = false;
            if (same) {
                std::string names;
                for (auto idx : ks.params) names += (names.empty() ? "" : ",") + s.params()[idx].name;
                return Error(ErrorCode::kDuplicateUniqueKey,
                             "unique key (" + names + ") duplicates " + other->path, row.path);
            }
        }
    }
    return okStatus();
}

void Engine::Impl::assignAlias(ObjNode& row) {
    int a = row.schema->aliasParam();
    if (a < 0 || !row.values[static_cast<std::size_t>(a)].empty()) return;
    const Table& t = *row.parent->tables[row.schema->index()];
    std::string base = "cpe-" + std::to_string(row.instance);
    std::string cand = base;
    for (int n = 2;; ++n) {
        bool clash = false;
        for (const auto& [i, other] : t.rows)
            if (other.get() != &row && other->values[static_cast<std::size_t>(a)] == cand) clash = true;
        if (!clash) break;
        cand = base + "-" + std::to_string(n);
    }
    writeValue(row, static_cast<std::uint16_t>(a), cand);
}

std::string Engine::Impl::canonicalRefForm(const ParamSchema& p, std::string_view value) {
    if (!p.isList) return referenceValue(value);
    std::vector<std::string_view> items;
    splitList(value, items);
    std::string out;
    for (std::size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + referenceValue(items[i]);
    return out;
}

// References are stored in one form, "Device.MQTT.Client.1" (see path.h), whatever form
// the writer used. A strong reference must name one existing row of the table its pathRef
// names (R-ARC.12: 7012 otherwise); a weak one is never refused, only put in canonical form.
Result<std::string> Engine::Impl::canonicalRef(const ParamSchema& p, const std::string& value) {
    if ((!p.strongRef && !p.weakRef) || value.empty()) return value;
    std::vector<std::string_view> items;
    if (p.isList) splitList(value, items);
    else items.push_back(value);
    std::string out;
    for (std::size_t i = 0; i < items.size(); ++i) {
        std::string item = referenceValue(items[i]);
        if (i) out += ',';
        if (!p.strongRef) {
            out += item;
            continue;
        }
        auto parsed = parsePath(item + ".");
        if (item.empty() || !parsed || parsed->kind != PathKind::kObject)
            return Error(ErrorCode::kInvalidValue, "'" + std::string(items[i]) + "' is not an object reference");
        auto r = resolve(*parsed);
        if (!r || r->tableEnd || r->positions.size() != 1)
            return Error(ErrorCode::kInvalidValue, "reference '" + std::string(items[i]) + "' does not name one existing object");
        const ObjNode& target = *r->positions[0].node;
        if (p.refTarget && target.schema != p.refTarget)
            return Error(ErrorCode::kInvalidValue, "reference '" + std::string(items[i]) + "' must name a row of " +
                                                       p.refTarget->path());
        std::string path = target.path;
        path.pop_back();
        out += path;
    }
    return out;
}

void Engine::Impl::clearReferencesTo(const std::string& deleted) {
    std::string bare = deleted.substr(0, deleted.size() - 1);
    auto refersInto = [&](std::string_view v) {
        return v == bare || v.substr(0, deleted.size()) == deleted;
    };
    std::vector<ObjNode*> stack{root.get()};
    while (!stack.empty()) {
        ObjNode* n = stack.back();
        stack.pop_back();
        if (hasStrongRefs[n->schema->id()])
            for (const auto& p : n->schema->params()) {
                if (!p.strongRef || n->values[p.index].empty()) continue;
                if (!p.isList) {
                    if (refersInto(n->values[p.index])) writeValue(*n, p.index, std::string());
                    continue;
                }
                std::vector<std::string_view> items;
                splitList(n->values[p.index], items);
                std::string kept;
                bool changed = false;
                for (auto it : items) {
                    if (refersInto(it)) {
                        changed = true;
                        continue;
                    }
                    if (!kept.empty()) kept += ',';
                    kept += it;
                }
                if (changed) writeValue(*n, p.index, kept);
            }
        for (auto& s : n->singles)
            if (s) stack.push_back(s.get());
        for (auto& t : n->tables)
            if (t)
                for (auto& [i, r] : t->rows) stack.push_back(r.get());
    }
}

}  // namespace berth::dm
