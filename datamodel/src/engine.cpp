// Engine core: the instance tree, path resolution, providers, listeners, internal access
// and factory defaults. Transactions and persistence are in engine_txn.cpp, unique keys
// and references in engine_keys.cpp, the USP operations in operations*.cpp.

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
using detail::notFound;
using detail::unsupported;

namespace {

const SystemClock& systemClock() {
    static const SystemClock kClock;
    return kClock;
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
    Impl::Txn tx(*impl_);
    for (const Pos& pos : r->positions) {
        ObjNode& n = *pos.node;
        const ParamSchema& ps = n.schema->params()[static_cast<std::size_t>(r->member)];
        if (ps.counts) return Error(ErrorCode::kParameterNotWritable, "counters are computed", std::string(paramPath));
        auto v = ps.validate(value);
        if (v) v = impl_->canonicalRef(ps, *v);
        if (!v) return Error(v.error().code, v.error().message, std::string(paramPath));
        if (impl_->isProvided(n, ps.index)) {
            impl_->providedWrites.push_back({n.path, ps.index, n.schema, std::move(*v)});
            continue;
        }
        impl_->writeValue(n, ps.index, std::move(*v));
    }
    return tx.commit();
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
    Impl::Txn tx(*impl_);
    auto row = impl_->addRow(owner, static_cast<std::uint16_t>(r->positions[0].pendingChild), instance);
    if (!row) return row.error();
    for (const auto& [name, value] : values) {
        ObjNode* o = nullptr;
        int idx = -1;
        if (!impl_->relParam(**row, name, o, idx))
            return Error(ErrorCode::kUnsupportedParameter, "no parameter " + name, (*row)->path + name);
        const ParamSchema& ps = o->schema->params()[static_cast<std::size_t>(idx)];
        auto v = ps.validate(value);
        if (v) v = impl_->canonicalRef(ps, *v);
        if (!v) return Error(v.error().code, v.error().message, (*row)->path + name);
        impl_->writeValue(*o, ps.index, std::move(*v));
    }
    impl_->assignAlias(**row);
    BERTH_TRY(impl_->checkUniqueKeys(**row));
    std::string path = (*row)->path;
    BERTH_TRY(tx.commit());
    return path;
}

Status Engine::deleteInstance(std::string_view instancePath) {
    ObjNode* n = instancePath.empty() ? nullptr : impl_->findNode(withDot(instancePath));
    if (!n) return notFound(instancePath, "object instance");
    if (!n->schema->multiInstance()) return Error(ErrorCode::kDeleteFailure, "not a table row", std::string(instancePath));
    Impl::Txn tx(*impl_);
    std::string path = n->path;
    impl_->removeRow(*n);
    impl_->clearReferencesTo(path);
    return tx.commit();
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
        auto stx = impl_->store->transaction();
        if (!stx) return stx.error();
        BERTH_TRY(impl_->store->setFactory(values));
        BERTH_TRY(stx->commit());
    }
    if (!fresh) return okStatus();
    Impl::Txn tx(*impl_);
    BERTH_TRY(impl_->applyPairs(values));
    BERTH_TRY(tx.commit());
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
    impl_->begin();  // the undo log is dropped below, not replayed: the old tree is kept aside
    Status st = impl_->applyPairs(values);
    if (st && impl_->store) st = impl_->storeWholeTree();
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
