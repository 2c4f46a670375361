// USP Get, GetInstances and GetSupportedDM on top of the engine core. Responses are
// bounded while they are built (see maxResponseBytes).

#include <algorithm>
#include <optional>

#include "berth/datamodel/engine.h"
#include "engine_impl.h"
#include "operations_util.h"
#include "value.h"

namespace berth::dm {

using detail::messageError;
using detail::ObjNode;
using detail::Pos;
using detail::readable;
using detail::Resolved;

namespace {

std::size_t varintSize(std::size_t v) {
    std::size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        ++n;
    }
    return n;
}

// Adds up the encoded size of a response as it is built (see maxResponseBytes).
class SizeMeter {
public:
    explicit SizeMeter(std::size_t max) : max_(max) {}
    // Adds n bytes; false once the total is past the bound.
    bool add(std::size_t n) {
        used_ += n;
        return !over();
    }
    bool over() const { return max_ != 0 && used_ > max_; }
    MessageError error(const char* what) const {
        return MessageError{ErrorCode::kResourcesExceeded,
                            std::string("the ") + what + " response would exceed " + std::to_string(max_) +
                                " bytes, the most this agent sends in one record; ask for less",
                            {}};
    }

private:
    std::size_t max_;
    std::size_t used_ = 0;
};

// An entry of a map<string,string> field (result_params, unique_keys, ...).
std::size_t mapEntrySize(std::size_t key, std::size_t value) {
    return wireFieldSize(wireFieldSize(key) + wireFieldSize(value));
}

}  // namespace

std::size_t wireFieldSize(std::size_t payloadBytes) { return 2 + varintSize(payloadBytes) + payloadBytes; }

// ---------------------------------------------------------------------------------------
// Get

namespace {

struct GetWalker {
    Engine::Impl& impl;
    const Permissions& perms;
    std::vector<ResolvedObject>& out;
    SizeMeter& meter;

    void emitObject(ObjNode& n) {
        const auto& params = n.schema->params();
        if (params.empty()) return;
        bool full = perms.isFullAccess();
        std::uint8_t objParamBits = kPermAll;
        if (!full) {
            PermissionBits b = perms.forObject(n.path);
            if (!(b.obj & kPermRead)) return;
            objParamBits = b.param;
        }
        ResolvedObject ro;
        ro.path = n.path;
        ro.params.reserve(params.size());
        const auto& prov = impl.providers[n.schema->id()];
        for (const ParamSchema& p : params) {
            if (!full) {
                std::uint8_t bits = perms.hasParamRules() ? perms.forParam(n.path, p.name) : objParamBits;
                if (!(bits & kPermRead)) continue;
            }
            ParamValue& pv = ro.params.emplace_back();
            pv.name = p.name;
            if (p.secured && !perms.mayReadSecured()) continue;  // secured values read as ""
            if (p.counts) {
                pv.value = impl.countValue(n, p);
            } else if (prov.provider && prov.provided[p.index]) {
                ObjectView v = makeView(n);
                auto r = prov.provider->get(v, p.name);
                if (r) pv.value = std::move(*r);
            } else {
                pv.value = n.values[p.index];
            }
            // Checked per parameter: one object with many large values stops early too.
            if (!meter.add(mapEntrySize(pv.name.size(), pv.value.size()))) return;
        }
        if (ro.params.empty()) return;
        meter.add(wireFieldSize(ro.path.size()) + 4);
        out.push_back(std::move(ro));
    }

    ObjectView makeView(ObjNode& n);

    // depth: levels still allowed (0 = unlimited)
    void walk(ObjNode& n, std::uint32_t depth) {
        emitObject(n);
        if (depth == 1 || meter.over()) return;
        std::uint32_t next = depth == 0 ? 0 : depth - 1;
        for (std::size_t c = 0; c < n.singles.size() && !meter.over(); ++c) {
            if (n.singles[c]) walk(*n.singles[c], next);
            else
                for (auto& [i, row] : n.tables[c]->rows) {
                    walk(*row, next);
                    if (meter.over()) return;
                }
        }
    }
};

}  // namespace

ObjectView GetWalker::makeView(ObjNode& n) { return ObjectView(impl.self, &n); }

namespace {

// The path fails: its error, and nothing resolved.
void failGetPath(GetPathResult& res, SizeMeter& meter, const Error& e) {
    res.err = e.code;
    res.errMsg = e.message;
    res.resolved.clear();
    meter.add(wireFieldSize(e.message.size()));
}

// A parameter path: one value per resolved object the Controller may read.
void getParameterValues(Engine::Impl& im, const ParsedPath& parsed, const Resolved& r, const Permissions& perms,
                        const std::string& path, SizeMeter& meter, GetPathResult& res) {
    for (const Pos& pos : r.positions) {
        ObjNode& n = *pos.node;
        const ParamSchema& p = n.schema->params()[static_cast<std::size_t>(r.member)];
        if (!perms.isFullAccess() && (!readable(perms, n) || !(perms.forParam(n.path, p.name) & kPermRead))) {
            if (!parsed.isSearch) failGetPath(res, meter, Error(ErrorCode::kInvalidPath, "parameter not readable: " + path));
            continue;
        }
        ResolvedObject ro;
        ro.path = n.path;
        std::string value;
        if (!(p.secured && !perms.mayReadSecured())) {
            auto v = im.readValue(n, p.index);
            if (v) value = std::move(*v);
        }
        if (!meter.add(wireFieldSize(ro.path.size()) + mapEntrySize(p.name.size(), value.size()) + 4)) break;
        ro.params.push_back(ParamValue{p.name, std::move(value)});
        res.resolved.push_back(std::move(ro));
    }
}

// An object path: every resolved object (or every row of a resolved table) and what
// lies below it, down to maxDepth.
void getObjectTrees(Engine::Impl& im, const ParsedPath& parsed, const Resolved& r, const Permissions& perms,
                    const GetRequest& req, const std::string& path, SizeMeter& meter, GetPathResult& res) {
    GetWalker w{im, perms, res.resolved, meter};
    for (const Pos& pos : r.positions) {
        if (meter.over()) break;
        if (pos.pendingChild >= 0) {
            for (auto& [i, row] : pos.node->tables[static_cast<std::size_t>(pos.pendingChild)]->rows) {
                w.walk(*row, req.maxDepth);
                if (meter.over()) break;
            }
        } else {
            if (!parsed.isSearch && !perms.isFullAccess() && !readable(perms, *pos.node)) {
                failGetPath(res, meter, Error(ErrorCode::kInvalidPath, "object not readable: " + path));
                break;
            }
            w.walk(*pos.node, req.maxDepth);
        }
    }
}

}  // namespace

GetResponse Engine::get(const GetRequest& req, const Permissions& perms) {
    GetResponse resp;
    SizeMeter meter(req.maxResponseBytes);
    resp.results.reserve(req.paths.size());
    for (const std::string& path : req.paths) {
        if (meter.over()) break;
        GetPathResult& res = resp.results.emplace_back();
        meter.add(wireFieldSize(path.size()) + 8);
        res.requestedPath = path;
        auto parsed = parsePath(path);
        if (!parsed) {
            failGetPath(res, meter, parsed.error());
            continue;
        }
        if (parsed->kind == PathKind::kCommand || parsed->kind == PathKind::kEvent) {
            failGetPath(res, meter, Error(ErrorCode::kInvalidPath, "Get needs an object or parameter path: " + path));
            continue;
        }
        auto r = impl_->resolve(*parsed, &perms);
        if (!r) {
            failGetPath(res, meter, r.error());
            continue;
        }
        if (r->missingInstance) {
            failGetPath(res, meter, Error(ErrorCode::kInvalidPath, "object instance does not exist: " + path));
            continue;
        }
        if (parsed->kind == PathKind::kParameter) getParameterValues(*impl_, *parsed, *r, perms, path, meter, res);
        else getObjectTrees(*impl_, *parsed, *r, perms, req, path, meter, res);
    }
    if (meter.over()) {
        resp.results.clear();
        resp.results.shrink_to_fit();
        resp.error = meter.error("Get");
    }
    return resp;
}

// ---------------------------------------------------------------------------------------
// GetInstances

GetInstancesResponse Engine::getInstances(const GetInstancesRequest& req, const Permissions& perms) {
    GetInstancesResponse resp;
    SizeMeter meter(req.maxResponseBytes);
    for (const std::string& path : req.paths) {
        if (meter.over()) break;
        GetInstancesPathResult& res = resp.results.emplace_back();
        meter.add(wireFieldSize(path.size()) + 8);
        res.requestedPath = path;
        auto fail = [&](const Error& e) {
            res.err = e.code;
            res.errMsg = e.message;
            res.instances.clear();
        };
        auto parsed = parsePath(path);
        if (!parsed) {
            fail(parsed.error());
            continue;
        }
        if (parsed->kind != PathKind::kObject) {
            fail(Error(ErrorCode::kInvalidPathSyntax, "GetInstances needs an object path: " + path));
            continue;
        }
        auto r = impl_->resolve(*parsed, &perms);
        if (!r) {
            fail(r.error());
            continue;
        }
        if (r->missingInstance) {
            fail(Error(ErrorCode::kObjectDoesNotExist, "object instance does not exist: " + path));
            continue;
        }
        auto visible = [&](ObjNode& row) {
            return perms.isFullAccess() || (perms.forObject(row.path).instObj & kPermRead);
        };
        auto addRow = [&](ObjNode& row) {
            if (!visible(row) || meter.over()) return;
            InstanceInfo& ii = res.instances.emplace_back();
            ii.path = row.path;
            ii.uniqueKeys = impl_->uniqueKeysOf(row, &perms);
            std::size_t bytes = wireFieldSize(ii.path.size());
            for (const auto& [k, v] : ii.uniqueKeys) bytes += mapEntrySize(k.size(), v.size());
            meter.add(wireFieldSize(bytes));
        };
        // Rows of every table below n (recursively unless first level only).
        std::function<void(ObjNode&, bool)> below = [&](ObjNode& n, bool recurse) {
            for (std::size_t c = 0; c < n.singles.size() && !meter.over(); ++c) {
                if (n.singles[c]) {
                    if (recurse) below(*n.singles[c], true);
                    continue;
                }
                for (auto& [i, row] : n.tables[c]->rows) {
                    addRow(*row);
                    if (recurse) below(*row, true);
                    if (meter.over()) return;
                }
            }
        };
        for (const Pos& pos : r->positions) {
            if (meter.over()) break;
            if (pos.pendingChild >= 0) {
                for (auto& [i, row] : pos.node->tables[static_cast<std::size_t>(pos.pendingChild)]->rows) {
                    addRow(*row);
                    if (!req.firstLevelOnly) below(*row, true);
                }
            } else if (pos.node->schema->multiInstance()) {
                addRow(*pos.node);
                if (!req.firstLevelOnly) below(*pos.node, true);
            } else {
                below(*pos.node, !req.firstLevelOnly);
            }
        }
    }
    if (meter.over()) {
        resp.results.clear();
        resp.results.shrink_to_fit();
        resp.error = meter.error("GetInstances");
    }
    return resp;
}

// ---------------------------------------------------------------------------------------
// GetSupportedDM

namespace {

SupportedParam supportedParam(const ParamSchema& p) {
    SupportedParam sp;
    sp.name = p.name;
    sp.access = p.writable() ? GsdmParamAccess::kReadWrite : GsdmParamAccess::kReadOnly;
    sp.type = p.type;
    sp.valueChange = p.canDenyValueChange ? ValueChangeType::kWillIgnore : ValueChangeType::kAllowed;
    return sp;
}

SupportedCommand supportedCommand(const CommandSchema& c) {
    SupportedCommand sc;
    sc.name = c.name;
    sc.type = c.async ? CommandType::kAsync : CommandType::kSync;
    for (const auto& a : c.inputs) sc.inputArgs.push_back(a.name);
    for (const auto& a : c.outputs) sc.outputArgs.push_back(a.name);
    return sc;
}

SupportedEvent supportedEvent(const EventSchema& e) {
    SupportedEvent se;
    se.name = e.name;
    for (const auto& a : e.args) se.args.push_back(a.name);
    return se;
}

}  // namespace

namespace {

// The encoded size of one supported object as GetSupportedDMResp carries it.
std::size_t supportedObjectBytes(const SupportedObject& so) {
    std::size_t n = wireFieldSize(so.path.size()) + 6;
    for (const auto& p : so.params) n += wireFieldSize(wireFieldSize(p.name.size()) + 8);
    for (const auto& c : so.commands) {
        std::size_t cb = wireFieldSize(c.name.size()) + 2;
        for (auto a : c.inputArgs) cb += wireFieldSize(a.size());
        for (auto a : c.outputArgs) cb += wireFieldSize(a.size());
        n += wireFieldSize(cb);
    }
    for (const auto& e : so.events) {
        std::size_t eb = wireFieldSize(e.name.size());
        for (auto a : e.args) eb += wireFieldSize(a.size());
        n += wireFieldSize(eb);
    }
    for (const auto& ks : so.uniqueKeySets) {
        std::size_t kb = 0;
        for (auto k : ks) kb += wireFieldSize(k.size());
        n += wireFieldSize(kb);
    }
    return wireFieldSize(n);
}

// What a GetSupportedDM path names in the schema: an object, or one element of it.
struct SupportedTarget {
    const ObjectSchema* object = nullptr;
    const ParamSchema* param = nullptr;
    const CommandSchema* command = nullptr;
    const EventSchema* event = nullptr;
};

// Resolve: nullopt when the path is not in the supported data model.
std::optional<SupportedTarget> findSupported(const Schema& schema, const ParsedPath& parsed) {
    std::string objPath = supportedForm(parsed);
    objPath.resize(objPath.size() - parsed.leaf.size());
    SupportedTarget t;
    t.object = schema.findObject(objPath);
    const ObjectSchema* s = t.object;
    if (!s) return std::nullopt;
    if (s->multiInstance() && parsed.kind != PathKind::kObject && !parsed.segments.empty() &&
        parsed.segments.back().kind == Segment::kName)
        return std::nullopt;  // "Table.Param" without an instance selector
    if (parsed.kind == PathKind::kParameter && !(t.param = s->findParam(parsed.leaf))) return std::nullopt;
    if (parsed.kind == PathKind::kCommand && !(t.command = s->findCommand(parsed.leaf))) return std::nullopt;
    if (parsed.kind == PathKind::kEvent && !(t.event = s->findEvent(parsed.leaf))) return std::nullopt;
    return t;
}

bool supportedObjectVisible(const Permissions& perms, const ObjectSchema& o) {
    return perms.isFullAccess() || (perms.forObject(o.path()).obj & kPermRead);
}

SupportedObject describeObject(const ObjectSchema& o) {
    SupportedObject so;
    so.path = o.path();
    so.access = o.access();
    so.multiInstance = o.multiInstance();
    return so;
}

// An object with the elements the request asks for and the Controller may read.
SupportedObject describeObjectDetails(const ObjectSchema& o, const GsdmRequest& req, const Permissions& perms) {
    SupportedObject so = describeObject(o);
    bool full = perms.isFullAccess();
    if (req.returnParams)
        for (const auto& p : o.params())
            if (full || (perms.forParam(o.path(), p.name) & kPermRead)) so.params.push_back(supportedParam(p));
    if (req.returnCommands)
        for (const auto& c : o.commands())
            if (full || (perms.forCommandEvent(o.path(), c.name) & kPermRead)) so.commands.push_back(supportedCommand(c));
    if (req.returnEvents)
        for (const auto& e : o.events())
            if (full || (perms.forCommandEvent(o.path(), e.name) & kPermRead)) so.events.push_back(supportedEvent(e));
    if (req.returnUniqueKeySets)
        for (const auto& ks : o.uniqueKeys()) {
            std::vector<std::string_view> names;
            for (auto i : ks.params) names.push_back(o.params()[i].name);
            so.uniqueKeySets.push_back(std::move(names));
        }
    return so;
}

// A single parameter, command or event (USP 1.4): only that element.
SupportedObject describeElement(const SupportedTarget& t, const Permissions& perms) {
    const ObjectSchema& s = *t.object;
    SupportedObject so = describeObject(s);
    bool full = perms.isFullAccess();
    if (t.param && (full || (perms.forParam(s.path(), t.param->name) & kPermRead))) so.params.push_back(supportedParam(*t.param));
    if (t.command && (full || (perms.forCommandEvent(s.path(), t.command->name) & kPermRead)))
        so.commands.push_back(supportedCommand(*t.command));
    if (t.event && (full || (perms.forCommandEvent(s.path(), t.event->name) & kPermRead)))
        so.events.push_back(supportedEvent(*t.event));
    return so;
}

// The object and, below it, every visible descendant (or only its children), until the
// response bound is reached.
void describeSubtree(const ObjectSchema& top, const GsdmRequest& req, const Permissions& perms, SizeMeter& meter,
                     std::vector<SupportedObject>& out) {
    auto add = [&](const ObjectSchema& o, bool details) {
        SupportedObject so = details ? describeObjectDetails(o, req, perms) : describeObject(o);
        if (meter.add(supportedObjectBytes(so))) out.push_back(std::move(so));
    };
    add(top, true);
    std::vector<const ObjectSchema*> stack;
    for (auto it = top.children().rbegin(); it != top.children().rend(); ++it) stack.push_back(it->get());
    while (!stack.empty() && !meter.over()) {
        const ObjectSchema* o = stack.back();
        stack.pop_back();
        if (!supportedObjectVisible(perms, *o)) continue;
        add(*o, !req.firstLevelOnly);
        if (!req.firstLevelOnly)
            for (auto it = o->children().rbegin(); it != o->children().rend(); ++it) stack.push_back(it->get());
    }
}

}  // namespace

GsdmResponse Engine::getSupportedDm(const GsdmRequest& req, const Permissions& perms) {
    GsdmResponse resp;
    SizeMeter meter(req.maxResponseBytes);
    for (const std::string& path : req.paths) {
        if (meter.over()) break;
        GsdmPathResult& res = resp.results.emplace_back();
        res.requestedPath = path;
        res.dataModelInstUri = impl_->schema->specUri();
        meter.add(wireFieldSize(path.size()) + wireFieldSize(res.dataModelInstUri.size()) + 8);
        auto parsed = parsePath(path, PathOptions{true});
        if (!parsed) {
            res.err = parsed.error().code;
            res.errMsg = parsed.error().message;
            continue;
        }
        if (std::any_of(parsed->segments.begin(), parsed->segments.end(),
                        [](const Segment& s) { return s.ref.kind != RefFollow::kNone; })) {
            res.err = ErrorCode::kInvalidPathSyntax;
            res.errMsg = "reference following is not allowed in GetSupportedDM: " + path;
            continue;
        }
        auto target = findSupported(*impl_->schema, *parsed);
        if (!target || !supportedObjectVisible(perms, *target->object)) {
            res.err = ErrorCode::kInvalidPath;
            res.errMsg = "not in the supported data model: " + path;
            continue;
        }
        if (parsed->kind != PathKind::kObject) res.objects.push_back(describeElement(*target, perms));
        else describeSubtree(*target->object, req, perms, meter, res.objects);
    }
    if (meter.over()) {
        resp.results.clear();
        resp.results.shrink_to_fit();
        resp.error = meter.error("GetSupportedDM");
    }
    return resp;
}

}  // namespace berth::dm
