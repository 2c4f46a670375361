// The engine's transactions (undo log, commit in phases, rollback) and its persistence
// (restore at start, factory defaults).

#include <algorithm>
#include <map>
#include <set>

#include "berth/core/log.h"
#include "berth/datamodel/engine.h"
#include "engine_impl.h"

namespace berth::dm {

using detail::ObjNode;
using detail::Table;
using detail::UndoEntry;
using detail::unsupported;

// ---------------------------------------------------------------------------------------
// Transactions

void Engine::Impl::writeValue(ObjNode& n, std::uint16_t param, std::string value) {
    if (n.values[param] == value) return;
    UndoEntry e;
    e.kind = UndoEntry::kValue;
    e.node = &n;
    e.index = param;
    e.old = std::move(n.values[param]);
    n.values[param] = std::move(value);
    undo.push_back(std::move(e));
}

Result<ObjNode*> Engine::Impl::addRow(ObjNode& owner, std::uint16_t child, std::uint32_t instance) {
    Table& t = *owner.tables[child];
    const ObjectSchema& s = *owner.schema->children()[child];
    if (instance == 0) instance = t.next;
    if (t.rows.count(instance))
        return Error(ErrorCode::kObjectCouldNotBeCreated, "instance " + std::to_string(instance) + " exists", tablePath(owner, child));
    if (instance == 0xFFFFFFFFu)
        return Error(ErrorCode::kResourcesExceeded, "no instance numbers left", tablePath(owner, child));
    UndoEntry c;
    c.kind = UndoEntry::kCounter;
    c.node = &owner;
    c.index = child;
    c.oldNext = t.next;
    undo.push_back(std::move(c));
    t.next = std::max(t.next, instance + 1);
    auto node = makeNode(s, &owner, instance);
    ObjNode* raw = node.get();
    t.rows.emplace(instance, std::move(node));
    UndoEntry a;
    a.kind = UndoEntry::kAdd;
    a.node = raw;
    a.index = child;
    undo.push_back(std::move(a));
    return raw;
}

void Engine::Impl::removeRow(ObjNode& row) {
    ObjNode& owner = *row.parent;
    std::uint16_t child = row.schema->index();
    auto& rows = owner.tables[child]->rows;
    auto it = rows.find(row.instance);
    UndoEntry d;
    d.kind = UndoEntry::kDelete;
    d.node = &row;
    d.index = child;
    d.detached = std::move(it->second);
    d.detached->detached = true;
    rows.erase(it);
    undo.push_back(std::move(d));
}

void Engine::Impl::rollbackTo(std::size_t m) {
    while (undo.size() > m) {
        UndoEntry& e = undo.back();
        switch (e.kind) {
            case UndoEntry::kValue:
                e.node->values[e.index] = std::move(e.old);
                break;
            case UndoEntry::kAdd:
                e.node->parent->tables[e.index]->rows.erase(e.node->instance);
                break;
            case UndoEntry::kDelete: {
                ObjNode* n = e.detached.get();
                n->detached = false;
                n->parent->tables[e.index]->rows.emplace(n->instance, std::move(e.detached));
                break;
            }
            case UndoEntry::kCounter:
                e.node->tables[e.index]->next = e.oldNext;
                break;
        }
        undo.pop_back();
    }
}

void Engine::Impl::abort() {
    if (depth > 1) {
        --depth;
        return;
    }
    discard();
}

bool Engine::Impl::persisted(const ObjNode& n, std::uint16_t param) const {
    if (n.schema->isVolatile()) return false;
    const ParamSchema& p = n.schema->params()[param];
    if (p.counts) return false;
    return !isProvided(n, param);
}

Status Engine::Impl::persistNode(ObjNode& n, bool withRow) {
    if (n.schema->isVolatile()) return okStatus();
    if (withRow) BERTH_TRY(store->putInstance(n.path));
    for (const auto& p : n.schema->params())
        if (persisted(n, p.index)) BERTH_TRY(store->putParam(n.path + p.name, n.values[p.index], p.secured));
    for (auto& c : n.singles)
        if (c) BERTH_TRY(persistNode(*c, false));
    return okStatus();
}

// The net effect of the undo log: what the store must write and listeners must hear.
struct Engine::Impl::NetChange {
    struct ValueKey {
        ObjNode* node;
        std::uint16_t param;
        bool operator<(const ValueKey& o) const { return node != o.node ? node < o.node : param < o.param; }
    };
    std::map<ValueKey, std::string> original;  // first old value of each changed parameter
    std::set<ObjNode*> created;
    std::vector<ObjNode*> createdOrder;
    std::vector<std::pair<ObjNode*, bool>> deleted;  // row, created in this transaction
    std::set<std::pair<ObjNode*, std::uint16_t>> counters;
    std::set<std::pair<ObjNode*, std::uint16_t>> countChanged;

    // Inside a row created in this transaction (persisted and announced with the row).
    bool inCreated(ObjNode* n) const {
        for (ObjNode* a = n; a; a = a->parent)
            if (created.count(a)) return true;
        return false;
    }
};

struct Engine::Impl::Announcement {
    enum Kind { kValue, kCreated, kDeleted } kind;
    std::string path;
    std::string value;
    std::vector<std::pair<std::string_view, std::string>> keys;
};

Engine::Impl::NetChange Engine::Impl::netChange() const {
    NetChange c;
    for (const auto& e : undo) {
        switch (e.kind) {
            case UndoEntry::kValue:
                c.original.emplace(NetChange::ValueKey{e.node, e.index}, e.old);
                break;
            case UndoEntry::kAdd:
                c.created.insert(e.node);
                c.createdOrder.push_back(e.node);
                c.countChanged.emplace(e.node->parent, e.index);
                break;
            case UndoEntry::kDelete:
                c.deleted.emplace_back(e.node, c.created.count(e.node) > 0);
                c.countChanged.emplace(e.node->parent, e.index);
                break;
            case UndoEntry::kCounter:
                c.counters.emplace(e.node, e.index);
                break;
        }
    }
    return c;
}

Status Engine::Impl::persist(const NetChange& c) {
    auto tx = store->transaction();
    if (!tx) return tx.error();
    for (const auto& [row, wasCreated] : c.deleted)
        if (!wasCreated && !row->schema->isVolatile()) BERTH_TRY(store->deleteSubtree(row->path));
    for (ObjNode* n : c.createdOrder)
        if (n->alive()) BERTH_TRY(persistNode(*n, true));
    for (const auto& [k, old] : c.original) {
        if (!k.node->alive() || c.inCreated(k.node) || !persisted(*k.node, k.param)) continue;
        if (k.node->values[k.param] == old) continue;
        const ParamSchema& p = k.node->schema->params()[k.param];
        BERTH_TRY(store->putParam(k.node->path + p.name, k.node->values[k.param], p.secured));
    }
    for (const auto& [owner, child] : c.counters)
        if (owner->alive() && !owner->schema->children()[child]->isVolatile())
            BERTH_TRY(store->putCounter(tablePath(*owner, child), owner->tables[child]->next));
    return tx->commit();
}

// Collected before the undo log (and the detached rows it keeps alive) goes away.
std::vector<Engine::Impl::Announcement> Engine::Impl::announcements(const NetChange& c) {
    std::vector<Announcement> out;
    if (listeners.empty()) return out;
    for (const auto& [row, wasCreated] : c.deleted) {
        if (wasCreated) continue;
        // Nested rows first, then the row itself.
        std::vector<ObjNode*> stack{row}, order;
        while (!stack.empty()) {
            ObjNode* n = stack.back();
            stack.pop_back();
            order.push_back(n);
            for (auto& s : n->singles)
                if (s) stack.push_back(s.get());
            for (auto& t : n->tables)
                if (t)
                    for (auto& [i, r] : t->rows) stack.push_back(r.get());
        }
        for (auto it = order.rbegin(); it != order.rend(); ++it)
            if ((*it)->schema->multiInstance()) out.push_back({Announcement::kDeleted, (*it)->path, {}, {}});
    }
    for (ObjNode* n : c.createdOrder)
        if (n->alive()) out.push_back({Announcement::kCreated, n->path, {}, uniqueKeysOf(*n, nullptr)});
    for (const auto& [k, old] : c.original) {
        if (!k.node->alive() || c.inCreated(k.node) || k.node->values[k.param] == old) continue;
        if (isProvided(*k.node, k.param)) continue;
        out.push_back({Announcement::kValue, k.node->path + k.node->schema->params()[k.param].name, k.node->values[k.param], {}});
    }
    for (const auto& [owner, child] : c.countChanged) {
        if (!owner->alive()) continue;
        for (const auto& p : owner->schema->params())
            if (p.counts == owner->schema->children()[child].get())
                out.push_back({Announcement::kValue, owner->path + p.name, countValue(*owner, p), {}});
    }
    return out;
}

void Engine::Impl::deliver(const std::vector<ProvidedWrite>& writes, const std::vector<Announcement>& out,
                           const std::vector<detail::PendingEvent>& events) {
    for (const auto& w : writes)
        if (ObjNode* n = findNode(w.objPath))
            if (Provider* pr = providerFor(*n->schema)) pr->setProvided(ObjectView(self, n), n->schema->params()[w.param].name, w.value);
    auto ls = listeners;  // a listener may unregister itself
    for (const auto& a : out)
        for (ChangeListener* l : ls) {
            if (a.kind == Announcement::kValue) l->onValueChange(a.path, a.value);
            else if (a.kind == Announcement::kCreated) l->onObjectCreated(a.path, a.keys);
            else l->onObjectDeleted(a.path);
        }
    for (const auto& e : events)
        for (ChangeListener* l : ls) l->onEvent(e.path, e.args);
}

void Engine::Impl::discard() {
    rollbackTo(0);
    pendingEvents.clear();
    providedWrites.clear();
    depth = 0;
}

Status Engine::Impl::commit() {
    if (depth > 1) {
        --depth;
        return okStatus();
    }
    NetChange c = netChange();
    if (store && !undo.empty()) {
        if (Status st = persist(c); !st) {
            BERTH_LOG_ERROR("dm") << "database write failed, change rolled back: " << st.error().message;
            discard();
            return Error(ErrorCode::kInternalError, "cannot store the change: " + st.error().message);
        }
    }
    auto out = announcements(c);
    auto writes = std::move(providedWrites);
    auto events = std::move(pendingEvents);
    providedWrites.clear();
    pendingEvents.clear();
    undo.clear();
    depth = 0;
    deliver(writes, out, events);
    return okStatus();
}

void Engine::Impl::emitEvent(std::string path, ArgMap args) {
    if (depth > 0) {
        pendingEvents.push_back({std::move(path), std::move(args)});
        return;
    }
    auto ls = listeners;
    for (ChangeListener* l : ls) l->onEvent(path, args);
}

// ---------------------------------------------------------------------------------------
// Persistence: restore and factory defaults

Status Engine::Impl::restore() {
    auto c = store->load();
    if (!c) return c.error();
    auto& ins = c->instances;
    std::sort(ins.begin(), ins.end(), [](const std::string& a, const std::string& b) {
        auto da = std::count(a.begin(), a.end(), '.'), db = std::count(b.begin(), b.end(), '.');
        return da != db ? da < db : a < b;
    });
    for (const auto& path : ins) {
        // "X.Table.7." -> owner "X.", table name "Table", instance 7.
        std::string body = path.substr(0, path.size() - 1);
        auto d1 = body.rfind('.');
        if (d1 == std::string::npos) continue;
        std::string inst = body.substr(d1 + 1);
        std::string tbl = body.substr(0, d1);
        auto d2 = tbl.rfind('.');
        if (d2 == std::string::npos) continue;
        ObjNode* owner = findNode(tbl.substr(0, d2 + 1));
        const ObjectSchema* cs = owner ? owner->schema->findChild(tbl.substr(d2 + 1)) : nullptr;
        std::uint32_t n = static_cast<std::uint32_t>(std::strtoul(inst.c_str(), nullptr, 10));
        if (!cs || !cs->multiInstance() || n == 0) {
            BERTH_LOG_WARN("dm") << "ignoring stored instance not in the model: " << path;
            continue;
        }
        Table& t = *owner->tables[cs->index()];
        if (t.rows.count(n)) continue;
        t.rows.emplace(n, makeNode(*cs, owner, n));
        t.next = std::max(t.next, n + 1);
    }
    for (const auto& [path, value] : c->params) {
        auto dot = path.rfind('.');
        ObjNode* n = dot == std::string::npos ? nullptr : findNode(std::string_view(path).substr(0, dot + 1));
        int idx = n ? n->schema->paramIndex(std::string_view(path).substr(dot + 1)) : -1;
        if (idx < 0) {
            BERTH_LOG_WARN("dm") << "ignoring stored parameter not in the model: " << path;
            continue;
        }
        const ParamSchema& p = n->schema->params()[static_cast<std::size_t>(idx)];
        // Databases written before references had one form hold "Device.X.1."; read them
        // as "Device.X.1" (rewritten in that form at the next write).
        n->values[static_cast<std::size_t>(idx)] = (p.strongRef || p.weakRef) ? canonicalRefForm(p, value) : value;
    }
    for (const auto& [path, next] : c->counters) {
        std::string body = path.substr(0, path.size() - 1);
        auto d = body.rfind('.');
        ObjNode* owner = d == std::string::npos ? nullptr : findNode(body.substr(0, d + 1));
        const ObjectSchema* cs = owner ? owner->schema->findChild(body.substr(d + 1)) : nullptr;
        if (cs && cs->multiInstance()) {
            Table& t = *owner->tables[cs->index()];
            t.next = std::max(t.next, next);
        }
    }
    return okStatus();
}

// Applies (path, value) pairs inside the open transaction, creating instances named by
// number in the paths.
Status Engine::Impl::applyPairs(const std::vector<std::pair<std::string, std::string>>& values) {
    struct PendingRef {
        std::string object;
        std::uint16_t param;
        std::string path;
    };
    std::vector<PendingRef> refs;
    for (const auto& [path, value] : values) {
        auto parsed = parsePath(path);
        if (!parsed) return parsed.error();
        if (parsed->isSearch || parsed->kind == PathKind::kCommand || parsed->kind == PathKind::kEvent)
            return Error(ErrorCode::kInvalidArguments, "factory default paths must be plain parameter or object paths", path);
        if (parsed->segments.empty() || parsed->segments[0].name != "Device") return unsupported(path, "path");
        ObjNode* cur = root.get();
        int pending = -1;
        for (std::size_t i = 1; i < parsed->segments.size(); ++i) {
            const Segment& s = parsed->segments[i];
            if (pending >= 0) {
                if (s.kind != Segment::kInstance) return unsupported(path, "path");
                Table& t = *cur->tables[static_cast<std::size_t>(pending)];
                auto it = t.rows.find(s.instance);
                if (it != t.rows.end()) {
                    cur = it->second.get();
                } else {
                    auto row = addRow(*cur, static_cast<std::uint16_t>(pending), s.instance);
                    if (!row) return row.error();
                    assignAlias(**row);
                    cur = *row;
                }
                pending = -1;
                continue;
            }
            const ObjectSchema* c = s.kind == Segment::kName ? cur->schema->findChild(s.name) : nullptr;
            if (!c) return unsupported(path, "path");
            if (c->multiInstance()) pending = c->index();
            else cur = cur->singles[c->index()].get();
        }
        if (parsed->kind == PathKind::kObject) continue;
        if (pending >= 0) return unsupported(path, "parameter");
        int idx = cur->schema->paramIndex(parsed->leaf);
        if (idx < 0) return unsupported(path, "parameter");
        const ParamSchema& p = cur->schema->params()[static_cast<std::size_t>(idx)];
        auto v = p.validate(value);
        if (!v) return Error(v.error().code, v.error().message, path);
        // A reference may name a row created by a later line: check it once all are in.
        if (p.strongRef && !v->empty()) refs.push_back({cur->path, p.index, path});
        writeValue(*cur, p.index, (p.strongRef || p.weakRef) ? canonicalRefForm(p, *v) : std::move(*v));
    }
    for (const auto& ref : refs) {
        ObjNode* n = findNode(ref.object);
        if (!n) continue;
        const ParamSchema& p = n->schema->params()[ref.param];
        auto v = canonicalRef(p, n->values[ref.param]);
        if (!v) return Error(v.error().code, v.error().message, ref.path);
        writeValue(*n, ref.param, std::move(*v));
    }
    return okStatus();
}

// Replaces the stored model with the whole tree as it is (instances, values, counters).
Status Engine::Impl::storeWholeTree() {
    auto tx = store->transaction();
    if (!tx) return tx.error();
    BERTH_TRY(store->clearModel());
    std::vector<ObjNode*> stack{root.get()};
    while (!stack.empty()) {
        ObjNode* n = stack.back();
        stack.pop_back();
        if (!n->schema->isVolatile()) {
            if (n->schema->multiInstance()) BERTH_TRY(store->putInstance(n->path));
            for (const auto& p : n->schema->params())
                if (persisted(*n, p.index)) BERTH_TRY(store->putParam(n->path + p.name, n->values[p.index], p.secured));
        }
        for (std::size_t c = 0; c < n->tables.size(); ++c)
            if (n->tables[c] && !n->schema->children()[c]->isVolatile()) {
                BERTH_TRY(store->putCounter(tablePath(*n, static_cast<std::uint16_t>(c)), n->tables[c]->next));
                for (auto& [i, r] : n->tables[c]->rows) stack.push_back(r.get());
            }
        for (auto& s : n->singles)
            if (s) stack.push_back(s.get());
    }
    return tx->commit();
}

}  // namespace berth::dm
