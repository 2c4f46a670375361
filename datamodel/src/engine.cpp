// Engine core: the instance tree, path resolution, transactions with undo, persistence,
// providers, listeners, internal access and factory defaults. The USP operations are in
// operations.cpp.

#include "berth/datamodel/engine.h"

#include <algorithm>
#include <set>

#include "berth/core/log.h"
#include "engine_impl.h"
#include "value.h"

namespace berth::dm {

using detail::ObjNode;
using detail::Pos;
using detail::Resolved;
using detail::Table;
using detail::UndoEntry;

namespace {

const SystemClock& systemClock() {
    static const SystemClock kClock;
    return kClock;
}

Error notFound(std::string_view path, const std::string& what) {
    return Error(ErrorCode::kObjectDoesNotExist, what + " does not exist: " + std::string(path), std::string(path));
}

Error unsupported(std::string_view path, const std::string& what) {
    return Error(ErrorCode::kInvalidPath, what + " is not in the supported data model: " + std::string(path),
                 std::string(path));
}

}  // namespace

// ---------------------------------------------------------------------------------------
// ObjectView / ObjectEditor

const std::string& ObjectView::path() const { return node_->path; }
std::uint32_t ObjectView::instance() const { return node_->instance; }
const ObjectSchema& ObjectView::schema() const { return *node_->schema; }
std::string_view ObjectView::get(std::string_view param) const {
    int i = node_->schema->paramIndex(param);
    return i < 0 ? std::string_view() : std::string_view(node_->values[static_cast<std::size_t>(i)]);
}

Status ObjectEditor::set(std::string_view param, std::string_view value) {
    const ParamSchema* p = node_->schema->findParam(param);
    if (!p) return Error(ErrorCode::kUnsupportedParameter, "no parameter " + std::string(param), node_->path + std::string(param));
    auto v = p->validate(value);
    if (v) v = engine_->impl_->canonicalRef(*p, *v);
    if (!v) return v.error();
    engine_->impl_->writeValue(*node_, p->index, std::move(*v));
    return okStatus();
}

bool ObjectEditor::wasGiven(std::string_view param) const {
    return std::find(given_->begin(), given_->end(), param) != given_->end();
}

// ---------------------------------------------------------------------------------------
// Tree

std::unique_ptr<ObjNode> Engine::Impl::makeNode(const ObjectSchema& s, ObjNode* parent, std::uint32_t instance) {
    auto n = std::make_unique<ObjNode>();
    n->schema = &s;
    n->parent = parent;
    n->instance = instance;
    if (!parent) {
        n->path = s.name() + ".";
    } else {
        n->path.reserve(parent->path.size() + s.name().size() + 12);
        n->path = parent->path;
        n->path += s.name();
        n->path += '.';
        if (s.multiInstance()) {
            n->path += std::to_string(instance);
            n->path += '.';
        }
    }
    n->values.resize(s.params().size());
    for (const auto& p : s.params()) {
        if (p.hasDefault) {
            n->values[p.index] = p.defaultValue;
            continue;
        }
        // No TR-181 default: start from the type's zero value (TR-106), so a number
        // never reads as "" and a dateTime reads as the Unknown Time.
        switch (p.type) {
            case ValueType::kInt:
            case ValueType::kUnsignedInt:
            case ValueType::kLong:
            case ValueType::kUnsignedLong:
            case ValueType::kDecimal: n->values[p.index] = "0"; break;
            case ValueType::kBoolean: n->values[p.index] = "false"; break;
            case ValueType::kDateTime: n->values[p.index] = "0001-01-01T00:00:00Z"; break;
            default: break;
        }
    }
    n->singles.resize(s.children().size());
    n->tables.resize(s.children().size());
    for (const auto& c : s.children()) {
        if (c->multiInstance()) n->tables[c->index()] = std::make_unique<Table>();
        else n->singles[c->index()] = makeNode(*c, n.get(), 0);
    }
    return n;
}

ObjNode* Engine::Impl::findNode(std::string_view path) const {
    if (path.substr(0, 7) != "Device.") return nullptr;
    ObjNode* cur = root.get();
    std::string_view rest = path.substr(7);
    int pending = -1;
    while (!rest.empty()) {
        auto dot = rest.find('.');
        if (dot == std::string_view::npos) return nullptr;
        std::string_view seg = rest.substr(0, dot);
        rest = rest.substr(dot + 1);
        if (pending >= 0) {
            std::uint32_t inst = 0;
            for (char c : seg) {
                if (c < '0' || c > '9') return nullptr;
                inst = inst * 10 + static_cast<std::uint32_t>(c - '0');
            }
            auto& rows = cur->tables[static_cast<std::size_t>(pending)]->rows;
            auto it = rows.find(inst);
            if (it == rows.end()) return nullptr;
            cur = it->second.get();
            pending = -1;
            continue;
        }
        const ObjectSchema* c = cur->schema->findChild(seg);
        if (!c) return nullptr;
        if (c->multiInstance()) pending = c->index();
        else cur = cur->singles[c->index()].get();
    }
    return pending >= 0 ? nullptr : cur;
}

std::string Engine::Impl::tablePath(const ObjNode& owner, std::uint16_t child) const {
    return owner.path + owner.schema->children()[child]->name() + ".";
}

std::string Engine::Impl::countValue(const ObjNode& n, const ParamSchema& p) const {
    const auto& t = n.tables[p.counts->index()];
    return std::to_string(t ? t->rows.size() : 0);
}

Result<std::string> Engine::Impl::readValue(ObjNode& n, std::uint16_t param) {
    const ParamSchema& p = n.schema->params()[param];
    if (p.counts && p.counts->parent() == n.schema) return countValue(n, p);
    if (isProvided(n, param)) {
        ObjectView v(self, &n);
        return providers[n.schema->id()].provider->get(v, p.name);
    }
    return n.values[param];
}

bool Engine::Impl::relParam(ObjNode& n, std::string_view rel, ObjNode*& owner, int& index) const {
    ObjNode* cur = &n;
    while (true) {
        auto dot = rel.find('.');
        if (dot == std::string_view::npos) {
            index = cur->schema->paramIndex(rel);
            owner = cur;
            return index >= 0;
        }
        const ObjectSchema* c = cur->schema->findChild(rel.substr(0, dot));
        if (!c || c->multiInstance()) return false;
        cur = cur->singles[c->index()].get();
        rel = rel.substr(dot + 1);
    }
}

// ---------------------------------------------------------------------------------------
// Path resolution

// Walks the schema along the static part of a path (up to the first reference
// following) to give 7026 for unsupported names independently of the instances.
Status Engine::Impl::checkStatic(const ParsedPath& p, const ObjectSchema*& finalSchema, int& member, bool& dynamic) const {
    dynamic = false;
    member = -1;
    if (p.segments.empty() || p.segments[0].kind != Segment::kName || p.segments[0].name != "Device")
        return unsupported(p.text, "path");
    const ObjectSchema* cur = &schema->root();
    bool atTable = false;
    for (std::size_t i = 1; i < p.segments.size(); ++i) {
        const Segment& s = p.segments[i];
        if (atTable) {
            if (s.kind == Segment::kName) return unsupported(p.text, "path");  // a table name needs an instance
            atTable = false;
            continue;
        }
        if (s.kind != Segment::kName) return unsupported(p.text, "object '" + cur->name() + "' is not a table, path");
        if (s.ref.kind != RefFollow::kNone) {
            const ParamSchema* ps = cur->findParam(s.name);
            if (!ps) return unsupported(p.text, "reference parameter '" + s.name + "' of path");
            if (!ps->strongRef && !ps->weakRef)
                return Error(ErrorCode::kInvalidPathSyntax, "'" + s.name + "' is not a reference parameter in " + p.text, p.text);
            if (s.ref.kind != RefFollow::kPlain && !ps->isList)
                return Error(ErrorCode::kInvalidPathSyntax, "'" + s.name + "' is not a list in " + p.text, p.text);
            dynamic = true;
            finalSchema = nullptr;
            return okStatus();
        }
        const ObjectSchema* c = cur->findChild(s.name);
        if (!c) return unsupported(p.text, "object '" + s.name + "' of path");
        cur = c;
        atTable = c->multiInstance();
    }
    finalSchema = cur;
    if (p.kind == PathKind::kParameter) {
        member = cur->paramIndex(p.leaf);
        if (member < 0 || atTable) return unsupported(p.text, "parameter");
    } else if (p.kind == PathKind::kCommand) {
        const CommandSchema* c = cur->findCommand(p.leaf);
        if (!c || atTable) return unsupported(p.text, "command");
        member = static_cast<int>(c - cur->commands().data());
    } else if (p.kind == PathKind::kEvent) {
        const EventSchema* e = cur->findEvent(p.leaf);
        if (!e || atTable) return unsupported(p.text, "event");
        member = static_cast<int>(e - cur->events().data());
    }
    return okStatus();
}

void Engine::Impl::deref(ObjNode& n, const ParamSchema& p, const RefFollow& ref, std::vector<ObjNode*>& out) {
    auto v = readValue(n, p.index);
    if (!v) return;
    std::vector<std::string_view> items;
    if (p.isList) splitList(*v, items);
    else items.push_back(*v);
    auto add = [&](std::string_view target) {
        if (target.empty()) return;
        if (ObjNode* r = findNode(withDot(target))) out.push_back(r);
    };
    if (ref.kind == RefFollow::kIndex) {
        if (ref.index >= 1 && ref.index <= items.size()) add(items[ref.index - 1]);
    } else {
        for (auto i : items) add(i);
    }
}

Result<bool> Engine::Impl::matches(ObjNode& row, const std::vector<Condition>& conds, const Permissions* perms) {
    for (const Condition& c : conds) {
        std::vector<ObjNode*> cur{&row};
        bool any = false;
        for (std::size_t i = 0; i < c.rel.size(); ++i) {
            const RelStep& st = c.rel[i];
            bool last = i + 1 == c.rel.size();
            std::vector<ObjNode*> next;
            for (ObjNode* n : cur) {
                if (last) {
                    int idx = n->schema->paramIndex(st.name);
                    if (idx < 0) return unsupported(st.name, "search parameter");
                    const ParamSchema& ps = n->schema->params()[static_cast<std::size_t>(idx)];
                    // A secured value reads as "" to this controller, in a search too: no oracle.
                    auto v = ps.secured && perms && !perms->mayReadSecured() ? Result<std::string>(std::string())
                                                                             : readValue(*n, ps.index);
                    if (!v) continue;
                    auto m = compareValue(ps, *v, c.op, c);
                    if (!m) return m.error();
                    if (*m) any = true;
                } else if (st.ref.kind != RefFollow::kNone) {
                    const ParamSchema* ps = n->schema->findParam(st.name);
                    if (!ps) return unsupported(st.name, "search reference parameter");
                    deref(*n, *ps, st.ref, next);
                } else {
                    const ObjectSchema* ch = n->schema->findChild(st.name);
                    if (!ch) return unsupported(st.name, "search object");
                    if (ch->multiInstance())
                        return Error(ErrorCode::kInvalidPathSyntax,
                                     "a search expression must not descend into the table " + st.name, st.name);
                    next.push_back(n->singles[ch->index()].get());
                }
            }
            if (!last) cur = std::move(next);
        }
        if (!any) return false;
    }
    return true;
}

Result<Resolved> Engine::Impl::resolve(const ParsedPath& p, const Permissions* perms) {
    Resolved r;
    bool dynamic = false;
    BERTH_TRY(checkStatic(p, r.schema, r.member, dynamic));
    std::vector<Pos> cur{Pos{root.get(), -1}};
    for (std::size_t i = 1; i < p.segments.size(); ++i) {
        const Segment& s = p.segments[i];
        std::vector<Pos> next;
        next.reserve(cur.size());
        for (const Pos& pos : cur) {
            if (pos.pendingChild >= 0) {
                Table& t = *pos.node->tables[static_cast<std::size_t>(pos.pendingChild)];
                switch (s.kind) {
                    case Segment::kInstance: {
                        auto it = t.rows.find(s.instance);
                        if (it != t.rows.end()) next.push_back(Pos{it->second.get(), -1});
                        else if (!p.isSearch) r.missingInstance = true;
                        break;
                    }
                    case Segment::kWildcard:
                    case Segment::kSupportedInstance:
                        for (auto& [n, row] : t.rows) next.push_back(Pos{row.get(), -1});
                        break;
                    case Segment::kSearch:
                        for (auto& [n, row] : t.rows) {
                            auto m = matches(*row, s.conds, perms);
                            if (!m)
                                return Error(m.error().code, m.error().message + " in " + p.text, p.text);
                            if (*m) next.push_back(Pos{row.get(), -1});
                        }
                        break;
                    case Segment::kName:
                        break;  // unreachable after checkStatic unless behind a reference
                }
                continue;
            }
            if (s.kind != Segment::kName) continue;  // instance selector on a single object (behind a reference)
            ObjNode& n = *pos.node;
            if (s.ref.kind != RefFollow::kNone) {
                const ParamSchema* ps = n.schema->findParam(s.name);
                if (!ps) continue;
                std::vector<ObjNode*> targets;
                deref(n, *ps, s.ref, targets);
                for (ObjNode* t : targets) next.push_back(Pos{t, -1});
                continue;
            }
            const ObjectSchema* c = n.schema->findChild(s.name);
            if (!c) continue;
            if (c->multiInstance()) next.push_back(Pos{&n, c->index()});
            else next.push_back(Pos{n.singles[c->index()].get(), -1});
        }
        cur = std::move(next);
    }
    // Behind a reference the leaf is checked per object; drop objects without it.
    if (dynamic) {
        std::vector<Pos> kept;
        for (const Pos& pos : cur) {
            const ObjectSchema& s = *pos.node->schema;
            bool ok = pos.pendingChild < 0 || p.kind == PathKind::kObject;
            if (p.kind == PathKind::kParameter) ok = ok && s.paramIndex(p.leaf) >= 0;
            if (p.kind == PathKind::kCommand) ok = ok && s.findCommand(p.leaf);
            if (p.kind == PathKind::kEvent) ok = ok && s.findEvent(p.leaf);
            if (ok) kept.push_back(pos);
        }
        cur = std::move(kept);
        r.schema = cur.empty() ? nullptr
                               : (cur[0].pendingChild >= 0 ? cur[0].node->schema->children()[static_cast<std::size_t>(cur[0].pendingChild)].get()
                                                          : cur[0].node->schema);
        if (r.schema && p.kind == PathKind::kParameter) r.member = r.schema->paramIndex(p.leaf);
        if (r.schema && p.kind == PathKind::kCommand) r.member = static_cast<int>(r.schema->findCommand(p.leaf) - r.schema->commands().data());
        if (r.schema && p.kind == PathKind::kEvent) r.member = static_cast<int>(r.schema->findEvent(p.leaf) - r.schema->events().data());
    }
    r.tableEnd = !cur.empty() ? cur[0].pendingChild >= 0
                              : (r.schema && r.schema->multiInstance() && !p.segments.empty() &&
                                 p.segments.back().kind == Segment::kName);
    r.positions = std::move(cur);
    return r;
}

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
    rollbackTo(0);
    pendingEvents.clear();
    providedWrites.clear();
    depth = 0;
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

Status Engine::Impl::commit() {
    if (depth > 1) {
        --depth;
        return okStatus();
    }
    // Work out the net effect of the undo log.
    struct ValueKey {
        ObjNode* node;
        std::uint16_t param;
        bool operator<(const ValueKey& o) const { return node != o.node ? node < o.node : param < o.param; }
    };
    std::map<ValueKey, std::string> original;
    std::set<ObjNode*> created;
    std::vector<ObjNode*> createdOrder;
    std::vector<std::pair<ObjNode*, bool>> deleted;  // row, created in this transaction
    std::set<std::pair<ObjNode*, std::uint16_t>> counters;
    std::set<std::pair<ObjNode*, std::uint16_t>> countChanged;
    for (auto& e : undo) {
        switch (e.kind) {
            case UndoEntry::kValue:
                original.emplace(ValueKey{e.node, e.index}, e.old);
                break;
            case UndoEntry::kAdd:
                created.insert(e.node);
                createdOrder.push_back(e.node);
                countChanged.emplace(e.node->parent, e.index);
                break;
            case UndoEntry::kDelete:
                deleted.emplace_back(e.node, created.count(e.node) > 0);
                countChanged.emplace(e.node->parent, e.index);
                break;
            case UndoEntry::kCounter:
                counters.emplace(e.node, e.index);
                break;
        }
    }
    auto createdAlive = [&](ObjNode* n) {
        for (ObjNode* a = n; a; a = a->parent)
            if (created.count(a)) return true;
        return false;
    };

    if (store && !undo.empty()) {
        Status st = store->begin();
        auto persistAll = [&]() -> Status {
            for (auto& [row, wasCreated] : deleted)
                if (!wasCreated && !row->schema->isVolatile()) BERTH_TRY(store->deleteSubtree(row->path));
            for (ObjNode* n : createdOrder)
                if (n->alive()) BERTH_TRY(persistNode(*n, true));
            for (auto& [k, old] : original) {
                if (!k.node->alive() || createdAlive(k.node) || !persisted(*k.node, k.param)) continue;
                if (k.node->values[k.param] == old) continue;
                const ParamSchema& p = k.node->schema->params()[k.param];
                BERTH_TRY(store->putParam(k.node->path + p.name, k.node->values[k.param], p.secured));
            }
            for (auto& [owner, child] : counters)
                if (owner->alive() && !owner->schema->children()[child]->isVolatile())
                    BERTH_TRY(store->putCounter(tablePath(*owner, child), owner->tables[child]->next));
            return store->commit();
        };
        if (st) st = persistAll();
        if (!st) {
            store->rollback();
            BERTH_LOG_ERROR("dm") << "database write failed, change rolled back: " << st.error().message;
            rollbackTo(0);
            pendingEvents.clear();
            providedWrites.clear();
            depth = 0;
            return Error(ErrorCode::kInternalError, "cannot store the change: " + st.error().message);
        }
    }

    // Collect announcements before the undo log (and detached rows) go away.
    struct Announce {
        enum Kind { kValue, kCreated, kDeleted } kind;
        std::string path;
        std::string value;
        std::vector<std::pair<std::string_view, std::string>> keys;
    };
    std::vector<Announce> out;
    if (!listeners.empty()) {
        for (auto& [row, wasCreated] : deleted) {
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
                if ((*it)->schema->multiInstance()) out.push_back({Announce::kDeleted, (*it)->path, {}, {}});
        }
        for (ObjNode* n : createdOrder)
            if (n->alive()) out.push_back({Announce::kCreated, n->path, {}, uniqueKeysOf(*n, nullptr)});
        for (auto& [k, old] : original) {
            if (!k.node->alive() || createdAlive(k.node) || k.node->values[k.param] == old) continue;
            if (isProvided(*k.node, k.param)) continue;
            out.push_back({Announce::kValue, k.node->path + k.node->schema->params()[k.param].name, k.node->values[k.param], {}});
        }
        for (auto& [owner, child] : countChanged) {
            if (!owner->alive()) continue;
            for (const auto& p : owner->schema->params())
                if (p.counts == owner->schema->children()[child].get())
                    out.push_back({Announce::kValue, owner->path + p.name, countValue(*owner, p), {}});
        }
    }
    auto writes = std::move(providedWrites);
    auto events = std::move(pendingEvents);
    providedWrites.clear();
    pendingEvents.clear();
    undo.clear();
    depth = 0;

    for (auto& w : writes)
        if (ObjNode* n = findNode(w.objPath))
            if (Provider* pr = providerFor(*n->schema)) pr->setProvided(ObjectView(self, n), n->schema->params()[w.param].name, w.value);
    auto ls = listeners;  // a listener may unregister itself
    for (const auto& a : out)
        for (ChangeListener* l : ls) {
            if (a.kind == Announce::kValue) l->onValueChange(a.path, a.value);
            else if (a.kind == Announce::kCreated) l->onObjectCreated(a.path, a.keys);
            else l->onObjectDeleted(a.path);
        }
    for (const auto& e : events)
        for (ChangeListener* l : ls) l->onEvent(e.path, e.args);
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

// ---------------------------------------------------------------------------------------
// Engine

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) { impl_->self = this; }
Engine::~Engine() = default;

Result<std::unique_ptr<Engine>> Engine::open(EngineOptions options) {
    auto impl = std::make_unique<Impl>();
    impl->schema = options.schema ? options.schema : &Schema::builtin();
    impl->clock = options.clock ? options.clock : &systemClock();
    impl->root = impl->makeNode(impl->schema->root(), nullptr, 0);
    impl->providers.resize(impl->schema->objectCount());
    impl->hasStrongRefs.resize(impl->schema->objectCount());
    std::vector<const ObjectSchema*> stack{&impl->schema->root()};
    while (!stack.empty()) {
        const ObjectSchema* s = stack.back();
        stack.pop_back();
        for (const auto& p : s->params())
            if (p.strongRef) impl->hasStrongRefs[s->id()] = true;
        for (const auto& c : s->children()) stack.push_back(c.get());
    }
    if (!options.dbPath.empty()) {
        std::filesystem::path key = options.keyPath.empty() ? std::filesystem::path(options.dbPath.string() + ".key") : options.keyPath;
        auto st = detail::Store::open(options.dbPath, key);
        if (!st) return st.error();
        impl->store = std::move(*st);
        impl->fresh = impl->store->fresh();
        BERTH_TRY(impl->restore());
    }
    return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

const Schema& Engine::schema() const { return *impl_->schema; }
bool Engine::freshDatabase() const { return impl_->fresh; }

Result<std::string> Engine::getValue(std::string_view paramPath) {
    auto p = parsePath(paramPath);
    if (!p) return p.error();
    if (p->kind != PathKind::kParameter || p->isSearch)
        return Error(ErrorCode::kInvalidPathSyntax, "not a plain parameter path", std::string(paramPath));
    auto r = impl_->resolve(*p);
    if (!r) return r.error();
    if (r->positions.empty()) return notFound(paramPath, "object");
    return impl_->readValue(*r->positions[0].node, static_cast<std::uint16_t>(r->member));
}

Status Engine::setValue(std::string_view paramPath, std::string_view value) {
    auto p = parsePath(paramPath);
    if (!p) return p.error();
    if (p->kind != PathKind::kParameter)
        return Error(ErrorCode::kInvalidPathSyntax, "not a parameter path", std::string(paramPath));
    auto r = impl_->resolve(*p);
    if (!r) return r.error();
    if (r->positions.empty() && !p->isSearch) return notFound(paramPath, "object");
    impl_->begin();
    for (const Pos& pos : r->positions) {
        ObjNode& n = *pos.node;
        const ParamSchema& ps = n.schema->params()[static_cast<std::size_t>(r->member)];
        if (ps.counts) {
            impl_->abort();
            return Error(ErrorCode::kParameterNotWritable, "counters are computed", std::string(paramPath));
        }
        auto v = ps.validate(value);
        if (v) v = impl_->canonicalRef(ps, *v);
        if (!v) {
            impl_->abort();
            return Error(v.error().code, v.error().message, std::string(paramPath));
        }
        if (impl_->isProvided(n, ps.index)) {
            impl_->providedWrites.push_back({n.path, ps.index, n.schema, std::move(*v)});
            continue;
        }
        impl_->writeValue(n, ps.index, std::move(*v));
    }
    return impl_->commit();
}

Result<std::string> Engine::addInstance(std::string_view tablePath, const std::vector<std::pair<std::string, std::string>>& values,
                                        std::uint32_t instance) {
    auto p = parsePath(tablePath);
    if (!p) return p.error();
    if (p->kind != PathKind::kObject || p->isSearch)
        return Error(ErrorCode::kInvalidPathSyntax, "not a plain table path", std::string(tablePath));
    auto r = impl_->resolve(*p);
    if (!r) return r.error();
    if (!r->tableEnd) return Error(ErrorCode::kObjectNotTable, "not a table", std::string(tablePath));
    if (r->positions.empty()) return notFound(tablePath, "object");
    ObjNode& owner = *r->positions[0].node;
    impl_->begin();
    auto row = impl_->addRow(owner, static_cast<std::uint16_t>(r->positions[0].pendingChild), instance);
    if (!row) {
        impl_->abort();
        return row.error();
    }
    for (const auto& [name, value] : values) {
        ObjNode* o = nullptr;
        int idx = -1;
        if (!impl_->relParam(**row, name, o, idx)) {
            impl_->abort();
            return Error(ErrorCode::kUnsupportedParameter, "no parameter " + name, (*row)->path + name);
        }
        const ParamSchema& ps = o->schema->params()[static_cast<std::size_t>(idx)];
        auto v = ps.validate(value);
        if (v) v = impl_->canonicalRef(ps, *v);
        if (!v) {
            impl_->abort();
            return Error(v.error().code, v.error().message, (*row)->path + name);
        }
        impl_->writeValue(*o, ps.index, std::move(*v));
    }
    impl_->assignAlias(**row);
    if (auto st = impl_->checkUniqueKeys(**row); !st) {
        impl_->abort();
        return st.error();
    }
    std::string path = (*row)->path;
    BERTH_TRY(impl_->commit());
    return path;
}

Status Engine::deleteInstance(std::string_view instancePath) {
    ObjNode* n = instancePath.empty() ? nullptr : impl_->findNode(withDot(instancePath));
    if (!n) return notFound(instancePath, "object instance");
    if (!n->schema->multiInstance()) return Error(ErrorCode::kDeleteFailure, "not a table row", std::string(instancePath));
    impl_->begin();
    std::string path = n->path;
    impl_->removeRow(*n);
    impl_->clearReferencesTo(path);
    return impl_->commit();
}

Result<std::vector<std::string>> Engine::resolveObjects(std::string_view path, const Permissions* perms) {
    auto p = parsePath(path);
    if (!p) return p.error();
    auto r = impl_->resolve(*p, perms);
    if (!r) return r.error();
    std::vector<std::string> out;
    for (const Pos& pos : r->positions) {
        if (pos.pendingChild >= 0) {
            for (auto& [i, row] : pos.node->tables[static_cast<std::size_t>(pos.pendingChild)]->rows) out.push_back(row->path);
        } else {
            out.push_back(pos.node->path);
        }
    }
    return out;
}

Engine::Batch::Batch(Engine& e) : e_(&e) { e_->impl_->begin(); }
Engine::Batch::~Batch() {
    if (!done_) (void)commit();
}
Status Engine::Batch::commit() {
    if (done_) return okStatus();
    done_ = true;
    return e_->impl_->commit();
}

Status Engine::registerProvider(std::string_view supportedObjPath, Provider* provider, std::vector<std::string> providedParams) {
    const ObjectSchema* s = impl_->schema->findObject(supportedObjPath);
    if (!s) return unsupported(supportedObjPath, "object");
    auto& e = impl_->providers[s->id()];
    e.provider = provider;
    e.provided.assign(s->params().size(), false);
    for (const auto& name : providedParams) {
        int i = s->paramIndex(name);
        if (i < 0) return unsupported(std::string(supportedObjPath) + name, "parameter");
        e.provided[static_cast<std::size_t>(i)] = true;
    }
    return okStatus();
}

namespace {
Result<std::string> commandKey(const Schema& schema, std::string_view path) {
    auto p = parsePath(path, PathOptions{true});
    if (!p) return p.error();
    if (p->kind != PathKind::kCommand) return Error(ErrorCode::kInvalidPathSyntax, "not a command path", std::string(path));
    std::string obj = supportedForm(*p);
    obj.resize(obj.size() - p->leaf.size());
    const ObjectSchema* s = schema.findObject(obj);
    if (!s || !s->findCommand(p->leaf)) return unsupported(path, "command");
    return s->path() + p->leaf;
}
}  // namespace

Status Engine::registerCommand(std::string_view path, SyncCommandHandler handler) {
    auto k = commandKey(*impl_->schema, path);
    if (!k) return k.error();
    impl_->asyncCommands.erase(*k);
    impl_->syncCommands[*k] = std::move(handler);
    return okStatus();
}

Status Engine::registerAsyncCommand(std::string_view path, AsyncCommandHandler handler, CancelHandler cancel) {
    auto k = commandKey(*impl_->schema, path);
    if (!k) return k.error();
    impl_->syncCommands.erase(*k);
    impl_->asyncCommands[*k] = std::move(handler);
    if (cancel) {
        impl_->cancelHandlers[*k] = std::move(cancel);
    } else {
        impl_->cancelHandlers.erase(*k);
    }
    return okStatus();
}

Status Engine::cancelCommand(const CommandCall& call) {
    auto k = commandKey(*impl_->schema, call.commandPath);
    if (!k) return k.error();
    auto it = impl_->cancelHandlers.find(*k);
    if (it == impl_->cancelHandlers.end())
        return Error(ErrorCode::kRequestDenied, call.commandPath + " cannot be canceled once it has started");
    return it->second(call);
}

void Engine::addListener(ChangeListener* l) { impl_->listeners.push_back(l); }
void Engine::removeListener(ChangeListener* l) {
    auto& v = impl_->listeners;
    v.erase(std::remove(v.begin(), v.end(), l), v.end());
}

Status Engine::raiseEvent(std::string_view eventPath, const ArgMap& args) {
    auto p = parsePath(eventPath);
    if (!p) return p.error();
    if (p->kind != PathKind::kEvent || p->isSearch) return Error(ErrorCode::kInvalidPathSyntax, "not an event path", std::string(eventPath));
    auto r = impl_->resolve(*p);
    if (!r) return r.error();
    if (r->positions.empty()) return notFound(eventPath, "object");
    impl_->emitEvent(std::string(eventPath), args);
    return okStatus();
}

Status Engine::notifyValueChanged(std::string_view paramPath) {
    auto v = getValue(paramPath);
    if (!v) return v.error();
    auto ls = impl_->listeners;
    for (ChangeListener* l : ls) l->onValueChange(paramPath, *v);
    return okStatus();
}

Status Engine::applyFactoryDefaults(const std::vector<std::pair<std::string, std::string>>& values) {
    bool fresh = impl_->fresh;
    if (impl_->store) {
        BERTH_TRY(impl_->store->begin());
        Status st = impl_->store->setFactory(values);
        if (st) st = impl_->store->commit();
        if (!st) {
            impl_->store->rollback();
            return st;
        }
    }
    if (!fresh) return okStatus();
    impl_->begin();
    if (auto st = impl_->applyPairs(values); !st) {
        impl_->abort();
        return st;
    }
    BERTH_TRY(impl_->commit());
    impl_->fresh = false;
    if (impl_->store) BERTH_TRY(impl_->store->markInitialized());
    return okStatus();
}

std::vector<std::pair<std::string, std::string>> Engine::persistedValues() const {
    std::vector<std::pair<std::string, std::string>> out;
    std::vector<const ObjNode*> stack{impl_->root.get()};
    while (!stack.empty()) {
        const ObjNode* n = stack.back();
        stack.pop_back();
        if (!n->schema->isVolatile())
            for (const auto& p : n->schema->params())
                if (impl_->persisted(*n, p.index)) out.emplace_back(n->path + p.name, n->values[p.index]);
        // Pushed in reverse so the walk is in tree order.
        for (auto t = n->tables.rbegin(); t != n->tables.rend(); ++t)
            if (*t)
                for (auto r = (*t)->rows.rbegin(); r != (*t)->rows.rend(); ++r) stack.push_back(r->second.get());
        for (auto s = n->singles.rbegin(); s != n->singles.rend(); ++s)
            if (*s) stack.push_back(s->get());
    }
    return out;
}

Status Engine::factoryReset() {
    std::vector<std::pair<std::string, std::string>> values;
    if (impl_->store) {
        auto f = impl_->store->factory();
        if (!f) return f.error();
        values = std::move(*f);
    }
    if (impl_->depth > 0) return Error(ErrorCode::kInternalError, "factory reset inside a transaction");
    // Build the new tree aside; swap it in only when the database holds the same state.
    auto oldRoot = std::move(impl_->root);
    impl_->root = impl_->makeNode(impl_->schema->root(), nullptr, 0);
    impl_->begin();
    Status st = impl_->applyPairs(values);
    if (st && impl_->store) {
        st = impl_->store->begin();
        if (st) st = impl_->store->clearModel();
        // Persist the whole fresh tree (instances, values and counters).
        std::vector<ObjNode*> stack{impl_->root.get()};
        while (st && !stack.empty()) {
            ObjNode* n = stack.back();
            stack.pop_back();
            if (!n->schema->isVolatile()) {
                if (n->schema->multiInstance()) st = impl_->store->putInstance(n->path);
                for (const auto& p : n->schema->params())
                    if (st && impl_->persisted(*n, p.index)) st = impl_->store->putParam(n->path + p.name, n->values[p.index], p.secured);
            }
            for (std::size_t c = 0; st && c < n->tables.size(); ++c)
                if (n->tables[c] && !n->schema->children()[c]->isVolatile()) {
                    st = impl_->store->putCounter(impl_->tablePath(*n, static_cast<std::uint16_t>(c)), n->tables[c]->next);
                    for (auto& [i, r] : n->tables[c]->rows) stack.push_back(r.get());
                }
            for (auto& s : n->singles)
                if (s) stack.push_back(s.get());
        }
        if (st) st = impl_->store->commit();
        if (!st) impl_->store->rollback();
    }
    impl_->undo.clear();
    impl_->pendingEvents.clear();
    impl_->providedWrites.clear();
    impl_->depth = 0;
    if (!st) {
        impl_->root = std::move(oldRoot);
        return st;
    }
    return okStatus();
}

}  // namespace berth::dm
