// The USP operations (Get, GetInstances, GetSupportedDM, Add, Set, Delete, Operate) on
// top of the engine core.

#include <algorithm>

#include "berth/datamodel/engine.h"
#include "engine_impl.h"
#include "value.h"

namespace berth::dm {

using detail::ObjNode;
using detail::Pos;
using detail::Resolved;

namespace {

// The err_code of an Error message that carries param_errs: failures caused by the
// request's own arguments are reported as 7004 Invalid arguments, the specific codes
// go in param_errs; other failures (7006, 7003, ...) keep their code.
ErrorCode outerCode(ErrorCode c) {
    switch (c) {
        case ErrorCode::kInvalidPathSyntax:
        case ErrorCode::kUnsupportedParameter:
        case ErrorCode::kInvalidType:
        case ErrorCode::kInvalidValue:
        case ErrorCode::kParameterNotWritable:
        case ErrorCode::kValueConflict:
        case ErrorCode::kObjectDoesNotExist:
        case ErrorCode::kObjectCouldNotBeCreated:
        case ErrorCode::kObjectNotTable:
        case ErrorCode::kObjectNotCreatable:
        case ErrorCode::kObjectCouldNotBeUpdated:
        case ErrorCode::kRequiredParameterFailed:
        case ErrorCode::kDeleteFailure:
        case ErrorCode::kDuplicateUniqueKey:
        case ErrorCode::kInvalidPath:
            return ErrorCode::kInvalidArguments;
        default:
            return c;
    }
}

MessageError messageError(ErrorCode code, std::string msg, std::vector<ParamError> errs) {
    MessageError e;
    e.code = outerCode(code);
    e.message = std::move(msg);
    e.paramErrors = std::move(errs);
    return e;
}

bool readable(const Permissions& perms, const ObjNode& n) {
    return perms.isFullAccess() || (perms.forObject(n.path).obj & kPermRead);
}

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

GetResponse Engine::get(const GetRequest& req, const Permissions& perms) {
    GetResponse resp;
    SizeMeter meter(req.maxResponseBytes);
    resp.results.reserve(req.paths.size());
    for (const std::string& path : req.paths) {
        if (meter.over()) {
            resp.results.clear();
            resp.results.shrink_to_fit();
            resp.error = meter.error("Get");
            return resp;
        }
        GetPathResult& res = resp.results.emplace_back();
        meter.add(wireFieldSize(path.size()) + 8);
        res.requestedPath = path;
        auto fail = [&](const Error& e) {
            res.err = e.code;
            res.errMsg = e.message;
            res.resolved.clear();
            meter.add(wireFieldSize(e.message.size()));
        };
        auto parsed = parsePath(path);
        if (!parsed) {
            fail(parsed.error());
            continue;
        }
        if (parsed->kind == PathKind::kCommand || parsed->kind == PathKind::kEvent) {
            fail(Error(ErrorCode::kInvalidPath, "Get needs an object or parameter path: " + path));
            continue;
        }
        auto r = impl_->resolve(*parsed, &perms);
        if (!r) {
            fail(r.error());
            continue;
        }
        if (r->missingInstance) {
            fail(Error(ErrorCode::kInvalidPath, "object instance does not exist: " + path));
            continue;
        }
        GetWalker w{*impl_, perms, res.resolved, meter};
        if (parsed->kind == PathKind::kParameter) {
            for (const Pos& pos : r->positions) {
                ObjNode& n = *pos.node;
                const ParamSchema& p = n.schema->params()[static_cast<std::size_t>(r->member)];
                if (!perms.isFullAccess() && (!readable(perms, n) || !(perms.forParam(n.path, p.name) & kPermRead))) {
                    if (!parsed->isSearch) fail(Error(ErrorCode::kInvalidPath, "parameter not readable: " + path));
                    continue;
                }
                ResolvedObject ro;
                ro.path = n.path;
                std::string value;
                if (!(p.secured && !perms.mayReadSecured())) {
                    auto v = impl_->readValue(n, p.index);
                    if (v) value = std::move(*v);
                }
                if (!meter.add(wireFieldSize(ro.path.size()) + mapEntrySize(p.name.size(), value.size()) + 4)) break;
                ro.params.push_back(ParamValue{p.name, std::move(value)});
                res.resolved.push_back(std::move(ro));
            }
            continue;
        }
        for (const Pos& pos : r->positions) {
            if (meter.over()) break;
            if (pos.pendingChild >= 0) {
                for (auto& [i, row] : pos.node->tables[static_cast<std::size_t>(pos.pendingChild)]->rows) {
                    w.walk(*row, req.maxDepth);
                    if (meter.over()) break;
                }
            } else {
                if (!parsed->isSearch && !perms.isFullAccess() && !readable(perms, *pos.node)) {
                    fail(Error(ErrorCode::kInvalidPath, "object not readable: " + path));
                    break;
                }
                w.walk(*pos.node, req.maxDepth);
            }
        }
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

GsdmResponse Engine::getSupportedDm(const GsdmRequest& req, const Permissions& perms) {
    GsdmResponse resp;
    SizeMeter meter(req.maxResponseBytes);
    // The encoded size of one supported object as GetSupportedDMResp carries it.
    auto objectBytes = [](const SupportedObject& so) {
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
    };
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
        std::string objPath = supportedForm(*parsed);
        objPath.resize(objPath.size() - parsed->leaf.size());
        const ObjectSchema* s = impl_->schema->findObject(objPath);
        if (s && s->multiInstance() && parsed->kind != PathKind::kObject && !parsed->segments.empty() &&
            parsed->segments.back().kind == Segment::kName)
            s = nullptr;  // "Table.Param" without an instance selector
        const ParamSchema* leafParam = nullptr;
        const CommandSchema* leafCmd = nullptr;
        const EventSchema* leafEvent = nullptr;
        if (s && parsed->kind == PathKind::kParameter && !(leafParam = s->findParam(parsed->leaf))) s = nullptr;
        if (s && parsed->kind == PathKind::kCommand && !(leafCmd = s->findCommand(parsed->leaf))) s = nullptr;
        if (s && parsed->kind == PathKind::kEvent && !(leafEvent = s->findEvent(parsed->leaf))) s = nullptr;
        if (!s) {
            res.err = ErrorCode::kInvalidPath;
            res.errMsg = "not in the supported data model: " + path;
            continue;
        }
        auto objVisible = [&](const ObjectSchema& o) {
            return perms.isFullAccess() || (perms.forObject(o.path()).obj & kPermRead);
        };
        auto fill = [&](const ObjectSchema& o, bool details) {
            SupportedObject so;
            so.path = o.path();
            so.access = o.access();
            so.multiInstance = o.multiInstance();
            if (details) {
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
            }
            if (!meter.add(objectBytes(so))) return;
            res.objects.push_back(std::move(so));
        };
        if (!objVisible(*s)) {
            res.err = ErrorCode::kInvalidPath;
            res.errMsg = "not in the supported data model: " + path;
            continue;
        }
        if (parsed->kind != PathKind::kObject) {
            // A single parameter, command or event (USP 1.4): only that element.
            SupportedObject so;
            so.path = s->path();
            so.access = s->access();
            so.multiInstance = s->multiInstance();
            if (leafParam && (perms.isFullAccess() || (perms.forParam(s->path(), leafParam->name) & kPermRead)))
                so.params.push_back(supportedParam(*leafParam));
            if (leafCmd && (perms.isFullAccess() || (perms.forCommandEvent(s->path(), leafCmd->name) & kPermRead)))
                so.commands.push_back(supportedCommand(*leafCmd));
            if (leafEvent && (perms.isFullAccess() || (perms.forCommandEvent(s->path(), leafEvent->name) & kPermRead)))
                so.events.push_back(supportedEvent(*leafEvent));
            res.objects.push_back(std::move(so));
            continue;
        }
        fill(*s, true);
        std::vector<std::pair<const ObjectSchema*, bool>> stack;
        for (auto it = s->children().rbegin(); it != s->children().rend(); ++it) stack.emplace_back(it->get(), true);
        while (!stack.empty() && !meter.over()) {
            auto [o, first] = stack.back();
            stack.pop_back();
            if (!objVisible(*o)) continue;
            fill(*o, !req.firstLevelOnly);
            if (!req.firstLevelOnly)
                for (auto it = o->children().rbegin(); it != o->children().rend(); ++it) stack.emplace_back(it->get(), false);
            (void)first;
        }
    }
    if (meter.over()) {
        resp.results.clear();
        resp.results.shrink_to_fit();
        resp.error = meter.error("GetSupportedDM");
    }
    return resp;
}

// ---------------------------------------------------------------------------------------
// Set

namespace {

struct ParamFailure {
    ParamError err;
    bool required = false;
};

}  // namespace

SetResponse Engine::set(const SetRequest& req, const Permissions& perms) {
    SetResponse resp;
    Impl& im = *impl_;
    im.begin();
    auto failMessage = [&](MessageError e) {
        im.abort();
        resp.results.clear();
        resp.error = std::move(e);
        return std::move(resp);
    };
    for (const UpdateObject& uo : req.objects) {
        auto objError = [&](const Error& e) -> bool {  // returns true when the message fails
            if (!req.allowPartial) return true;
            UpdatedObjectResult& r = resp.results.emplace_back();
            r.requestedPath = uo.objPath;
            r.err = e.code;
            r.errMsg = e.message;
            return false;
        };
        auto parsed = parsePath(uo.objPath);
        Error pathErr;
        bool bad = false;
        Result<Resolved> resolved = Error();
        if (!parsed) {
            pathErr = parsed.error();
            bad = true;
        } else if (parsed->kind != PathKind::kObject) {
            pathErr = Error(ErrorCode::kInvalidPathSyntax, "Set needs an object path: " + uo.objPath, uo.objPath);
            bad = true;
        } else {
            resolved = im.resolve(*parsed, &perms);
            if (!resolved) {
                pathErr = resolved.error();
                bad = true;
            } else if (resolved->missingInstance) {
                pathErr = Error(ErrorCode::kObjectDoesNotExist, "object instance does not exist: " + uo.objPath, uo.objPath);
                bad = true;
            } else if (resolved->tableEnd) {
                pathErr = Error(ErrorCode::kInvalidPath, "Set needs object instances, not a table: " + uo.objPath, uo.objPath);
                bad = true;
            }
        }
        if (bad) {
            if (objError(pathErr))
                return failMessage(messageError(pathErr.code, pathErr.message, {ParamError{uo.objPath, pathErr.code, pathErr.message}}));
            continue;
        }
        std::size_t objMark = im.mark();
        std::vector<UpdatedInstance> updated;
        std::vector<UpdatedInstanceFailure> failures;
        for (const Pos& pos : resolved->positions) {
            ObjNode& n = *pos.node;
            if (!perms.isFullAccess() && !readable(perms, n)) {
                if (parsed->isSearch) continue;  // invisible objects are absent from searches
                failures.push_back(UpdatedInstanceFailure{
                    n.path, {ParamError{n.path, ErrorCode::kPermissionDenied, "no permission on " + n.path}}});
                continue;
            }
            UpdatedInstance ui;
            ui.affectedPath = n.path;
            std::vector<ParamError> requiredFailed;
            std::vector<std::string_view> changed;
            for (const ParamSetting& ps : uo.params) {
                ObjNode* owner = nullptr;
                int idx = -1;
                auto failParam = [&](ErrorCode code, std::string msg) {
                    ParamError pe{n.path + ps.param, code, std::move(msg)};
                    if (ps.required) requiredFailed.push_back(std::move(pe));
                    else ui.paramErrors.push_back(std::move(pe));
                };
                if (!im.relParam(n, ps.param, owner, idx)) {
                    failParam(ErrorCode::kUnsupportedParameter, "no parameter " + ps.param + " in " + n.path);
                    continue;
                }
                const ParamSchema& p = owner->schema->params()[static_cast<std::size_t>(idx)];
                if (!perms.isFullAccess() && !(perms.forParam(owner->path, p.name) & kPermWrite)) {
                    failParam(ErrorCode::kPermissionDenied, "no write permission on " + owner->path + p.name);
                    continue;
                }
                auto v = p.validate(ps.value);
                if (v) v = im.canonicalRef(p, *v);
                if (!v) {
                    failParam(v.error().code, v.error().message);
                    continue;
                }
                const std::string& cur = owner->values[p.index];
                bool nonFunctionalKey = false;
                for (const auto& ks : owner->schema->uniqueKeys())
                    if (!ks.functional && std::find(ks.params.begin(), ks.params.end(), p.index) != ks.params.end())
                        nonFunctionalKey = true;
                if (p.access == ParamAccess::kReadOnly || p.counts) {
                    failParam(ErrorCode::kParameterNotWritable, p.name + " is read-only");
                    continue;
                }
                if (*v != cur && p.access == ParamAccess::kWriteOnceReadOnly && !cur.empty()) {
                    failParam(ErrorCode::kParameterNotWritable, p.name + " can only be written once");
                    continue;
                }
                if (*v != cur && nonFunctionalKey && p.access != ParamAccess::kWriteOnceReadOnly) {
                    failParam(ErrorCode::kParameterNotWritable, p.name + " is a non-functional unique key and cannot change");
                    continue;
                }
                if (im.isProvided(*owner, p.index)) {
                    im.providedWrites.push_back({owner->path, p.index, owner->schema, *v});
                } else {
                    im.writeValue(*owner, p.index, *v);
                }
                changed.push_back(p.name);
                ui.updatedParams.emplace_back(p.name, std::move(*v));
            }
            if (requiredFailed.empty()) {
                if (Provider* pr = im.providerFor(*n.schema)) {
                    if (auto st = pr->validateSet(ObjectView(this, &n), changed); !st)
                        requiredFailed.push_back(ParamError{st.error().path.empty() ? n.path : st.error().path, st.error().code,
                                                            st.error().message});
                }
            }
            if (requiredFailed.empty()) {
                if (auto st = im.checkUniqueKeys(n); !st)
                    requiredFailed.push_back(ParamError{n.path, st.error().code, st.error().message});
            }
            if (!requiredFailed.empty()) {
                failures.push_back(UpdatedInstanceFailure{n.path, std::move(requiredFailed)});
                continue;
            }
            updated.push_back(std::move(ui));
        }
        if (!failures.empty()) {
            // A failed instance fails the whole (search) path: R-SET.2a.
            im.rollbackTo(objMark);
            im.providedWrites.erase(std::remove_if(im.providedWrites.begin(), im.providedWrites.end(),
                                                   [&](const auto& w) {
                                                       for (const auto& f : failures)
                                                           if (w.objPath.rfind(f.affectedPath, 0) == 0) return true;
                                                       for (const auto& u : updated)
                                                           if (w.objPath.rfind(u.affectedPath, 0) == 0) return true;
                                                       return false;
                                                   }),
                                    im.providedWrites.end());
            if (!req.allowPartial) {
                std::vector<ParamError> errs;
                for (auto& f : failures)
                    for (auto& e : f.paramErrors) errs.push_back(e);
                ErrorCode first = errs.empty() ? ErrorCode::kObjectCouldNotBeUpdated : errs.front().code;
                return failMessage(messageError(first, "Set failed: " + (errs.empty() ? uo.objPath : errs.front().message), std::move(errs)));
            }
            UpdatedObjectResult& r = resp.results.emplace_back();
            r.requestedPath = uo.objPath;
            r.err = ErrorCode::kRequiredParameterFailed;
            r.errMsg = "required parameters failed for " + uo.objPath;
            r.failures = std::move(failures);
            continue;
        }
        UpdatedObjectResult& r = resp.results.emplace_back();
        r.requestedPath = uo.objPath;
        r.success = true;
        r.updated = std::move(updated);
    }
    if (auto st = im.commit(); !st) {
        resp.results.clear();
        resp.error = MessageError{st.error().code, st.error().message, {}};
    }
    return resp;
}

// ---------------------------------------------------------------------------------------
// Add

AddResponse Engine::add(const AddRequest& req, const Permissions& perms) {
    AddResponse resp;
    Impl& im = *impl_;
    im.begin();
    auto failMessage = [&](const Error& e, std::vector<ParamError> errs) {
        im.abort();
        resp.results.clear();
        resp.error = messageError(e.code, e.message, std::move(errs));
        return std::move(resp);
    };
    for (const CreateObject& co : req.objects) {
        auto objFailure = [&](const Error& e) {
            CreatedObjectResult& r = resp.results.emplace_back();
            r.requestedPath = co.objPath;
            r.err = e.code;
            r.errMsg = e.message;
        };
        auto parsed = parsePath(co.objPath);
        Error pathErr;
        bool bad = false;
        Result<Resolved> resolved = Error();
        if (!parsed) {
            pathErr = parsed.error();
            bad = true;
        } else if (parsed->kind != PathKind::kObject) {
            pathErr = Error(ErrorCode::kInvalidPathSyntax, "Add needs an object path: " + co.objPath, co.objPath);
            bad = true;
        } else {
            resolved = im.resolve(*parsed, &perms);
            if (!resolved) {
                pathErr = resolved.error();
                bad = true;
            } else if (resolved->missingInstance) {
                pathErr = Error(ErrorCode::kObjectDoesNotExist, "object instance does not exist: " + co.objPath, co.objPath);
                bad = true;
            } else if (!resolved->tableEnd) {
                pathErr = Error(ErrorCode::kObjectNotTable, "not a multi-instance object: " + co.objPath, co.objPath);
                bad = true;
            } else if (resolved->schema && resolved->schema->access() == ObjAccess::kReadOnly) {
                pathErr = Error(ErrorCode::kObjectNotCreatable, "instances of " + resolved->schema->path() + " cannot be created",
                                co.objPath);
                bad = true;
            }
        }
        if (bad) {
            if (!req.allowPartial) return failMessage(pathErr, {ParamError{co.objPath, pathErr.code, pathErr.message}});
            objFailure(pathErr);
            continue;
        }
        for (const Pos& pos : resolved->positions) {
            ObjNode& owner = *pos.node;
            auto child = static_cast<std::uint16_t>(pos.pendingChild);
            std::string tpath = im.tablePath(owner, child);
            if (!perms.isFullAccess() && !(perms.forObject(tpath).obj & kPermWrite)) {
                Error e(ErrorCode::kPermissionDenied, "no permission to add to " + tpath, tpath);
                if (!req.allowPartial) return failMessage(e, {ParamError{tpath, e.code, e.message}});
                objFailure(e);
                continue;
            }
            std::size_t rowMark = im.mark();
            auto rowR = im.addRow(owner, child, 0);
            if (!rowR) {
                if (!req.allowPartial) return failMessage(rowR.error(), {ParamError{tpath, rowR.error().code, rowR.error().message}});
                objFailure(rowR.error());
                continue;
            }
            ObjNode& row = **rowR;
            std::vector<ParamError> optionalErrs;
            std::optional<ParamError> fatal;
            std::vector<std::string> given;
            for (const ParamSetting& ps : co.params) {
                ObjNode* o = nullptr;
                int idx = -1;
                bool isKey = false;
                auto failParam = [&](ErrorCode code, std::string msg) {
                    ParamError pe{row.path + ps.param, code, std::move(msg)};
                    if (ps.required || isKey) {
                        if (!fatal) fatal = std::move(pe);
                    } else {
                        optionalErrs.push_back(std::move(pe));
                    }
                };
                if (!im.relParam(row, ps.param, o, idx)) {
                    failParam(ErrorCode::kUnsupportedParameter, "no parameter " + ps.param + " in " + tpath);
                    continue;
                }
                const ParamSchema& p = o->schema->params()[static_cast<std::size_t>(idx)];
                if (o == &row)
                    for (const auto& ks : row.schema->uniqueKeys())
                        if (std::find(ks.params.begin(), ks.params.end(), p.index) != ks.params.end()) isKey = true;
                if (p.access == ParamAccess::kReadOnly || p.counts) {
                    failParam(ErrorCode::kParameterNotWritable, p.name + " is read-only");
                    continue;
                }
                if (!perms.isFullAccess() && !(perms.forParam(o->path, p.name) & kPermWrite)) {
                    failParam(ErrorCode::kPermissionDenied, "no write permission on " + o->path + p.name);
                    continue;
                }
                auto v = p.validate(ps.value);
                if (v) v = im.canonicalRef(p, *v);
                if (!v) {
                    failParam(v.error().code, v.error().message);
                    continue;
                }
                if (im.isProvided(*o, p.index)) im.providedWrites.push_back({o->path, p.index, o->schema, *v});
                else im.writeValue(*o, p.index, std::move(*v));
                given.push_back(ps.param);
            }
            if (!fatal) {
                if (Provider* pr = im.providerFor(*row.schema)) {
                    ObjectEditor ed(this, &row, &given);
                    if (auto st = pr->onAdd(ed); !st)
                        fatal = ParamError{st.error().path.empty() ? row.path : st.error().path, st.error().code, st.error().message};
                }
            }
            if (!fatal) {
                im.assignAlias(row);
                if (auto st = im.checkUniqueKeys(row); !st) fatal = ParamError{row.path, st.error().code, st.error().message};
            }
            if (fatal) {
                im.rollbackTo(rowMark);
                if (!req.allowPartial)
                    return failMessage(Error(fatal->code, fatal->message), {*fatal});
                objFailure(Error(fatal->code, fatal->message + " (" + fatal->path + ")"));
                continue;
            }
            CreatedObjectResult& r = resp.results.emplace_back();
            r.requestedPath = co.objPath;
            r.success = true;
            r.instantiatedPath = row.path;
            r.paramErrors = std::move(optionalErrs);
            r.uniqueKeys = im.uniqueKeysOf(row, &perms);
        }
    }
    if (auto st = im.commit(); !st) {
        resp.results.clear();
        resp.error = MessageError{st.error().code, st.error().message, {}};
    }
    return resp;
}

// ---------------------------------------------------------------------------------------
// Delete

DeleteResponse Engine::del(const DeleteRequest& req, const Permissions& perms) {
    DeleteResponse resp;
    Impl& im = *impl_;
    im.begin();
    for (const std::string& path : req.paths) {
        auto failPath = [&](const Error& e) -> bool {
            if (!req.allowPartial) {
                im.abort();
                resp.results.clear();
                resp.error = messageError(e.code, e.message, {ParamError{path, e.code, e.message}});
                return true;
            }
            DeletedObjectResult& r = resp.results.emplace_back();
            r.requestedPath = path;
            r.err = e.code;
            r.errMsg = e.message;
            return false;
        };
        auto parsed = parsePath(path);
        if (!parsed) {
            if (failPath(parsed.error())) return resp;
            continue;
        }
        if (parsed->kind != PathKind::kObject) {
            if (failPath(Error(ErrorCode::kInvalidPathSyntax, "Delete needs an object instance path: " + path, path))) return resp;
            continue;
        }
        auto r = im.resolve(*parsed, &perms);
        if (!r) {
            if (failPath(r.error())) return resp;
            continue;
        }
        if (r->tableEnd || (r->schema && !r->schema->multiInstance())) {
            if (failPath(Error(ErrorCode::kDeleteFailure, "only object instances can be deleted: " + path, path))) return resp;
            continue;
        }
        std::size_t m = im.mark();
        std::optional<Error> err;
        DeletedObjectResult res;
        res.requestedPath = path;
        res.success = true;
        // Sorting by path, deepest first, keeps nested matches valid while deleting.
        std::vector<ObjNode*> rows;
        for (const Pos& pos : r->positions) rows.push_back(pos.node);
        for (ObjNode* row : rows) {
            if (!perms.isFullAccess() && !readable(perms, *row)) continue;
            if (row->schema->access() == ObjAccess::kReadOnly || row->schema->access() == ObjAccess::kAddOnly) {
                err = Error(ErrorCode::kDeleteFailure, "instances of " + row->schema->path() + " cannot be deleted", row->path);
                break;
            }
            if (!perms.isFullAccess() && !(perms.forObject(row->path).instObj & kPermWrite)) {
                err = Error(ErrorCode::kPermissionDenied, "no permission to delete " + row->path, row->path);
                break;
            }
            if (Provider* pr = im.providerFor(*row->schema)) {
                if (auto st = pr->onDelete(ObjectView(this, row)); !st) {
                    err = Error(st.error().code == ErrorCode::kOk ? ErrorCode::kDeleteFailure : st.error().code, st.error().message,
                                row->path);
                    break;
                }
            }
        }
        if (!err) {
            for (ObjNode* row : rows) {
                if (!row->alive()) continue;
                if (!perms.isFullAccess() && !readable(perms, *row)) continue;
                std::vector<ObjNode*> stack{row};
                while (!stack.empty()) {  // nested rows are deleted too and reported
                    ObjNode* n = stack.back();
                    stack.pop_back();
                    if (n->schema->multiInstance()) res.affectedPaths.push_back(n->path);
                    for (auto& s : n->singles)
                        if (s) stack.push_back(s.get());
                    for (auto& t : n->tables)
                        if (t)
                            for (auto& [i, c] : t->rows) stack.push_back(c.get());
                }
                std::string p = row->path;
                im.removeRow(*row);
                im.clearReferencesTo(p);
            }
        }
        if (err) {
            im.rollbackTo(m);
            if (failPath(*err)) return resp;
            continue;
        }
        resp.results.push_back(std::move(res));
    }
    if (auto st = im.commit(); !st) {
        resp.results.clear();
        resp.error = MessageError{st.error().code, st.error().message, {}};
    }
    return resp;
}

// ---------------------------------------------------------------------------------------
// Operate

namespace {

bool sameSupportedName(std::string_view pattern, std::string_view given) {
    // pattern may contain "{i}" segments matching instance numbers in given.
    while (true) {
        auto pd = pattern.find('.');
        auto gd = given.find('.');
        std::string_view ps = pattern.substr(0, pd), gs = given.substr(0, gd);
        if (ps == "{i}") {
            if (gs.empty() || gs.find_first_not_of("0123456789") != std::string_view::npos) return false;
        } else if (ps != gs) {
            return false;
        }
        if (pd == std::string_view::npos || gd == std::string_view::npos) return pd == gd;
        pattern = pattern.substr(pd + 1);
        given = given.substr(gd + 1);
    }
}

Result<ArgMap> validateInputs(const CommandSchema& cs, const ArgMap& given) {
    ArgMap out;
    for (const ParamSchema& a : cs.inputs) {
        if (a.name.find("{i}") != std::string::npos) {
            for (const auto& [k, v] : given)
                if (sameSupportedName(a.name, k)) {
                    auto r = a.validate(v);
                    if (!r) return Error(ErrorCode::kInvalidCommandArguments, "argument " + k + ": " + r.error().message);
                    out[k] = std::move(*r);
                }
            continue;
        }
        auto it = given.find(a.name);
        if (it == given.end()) {
            // Arguments of an optional argument object ("AutoRestart.Enable") are only
            // required, and defaulted, when the Controller sends that object at all.
            auto dot = a.name.rfind('.');
            if (dot != std::string::npos) {
                std::string prefix = a.name.substr(0, dot + 1);
                auto p = given.lower_bound(prefix);
                if (p == given.end() || p->first.compare(0, prefix.size(), prefix) != 0) continue;
            }
            if (a.mandatory) return Error(ErrorCode::kInvalidCommandArguments, "missing mandatory argument " + a.name);
            if (a.hasDefault) out[a.name] = a.defaultValue;
            continue;
        }
        auto r = a.validate(it->second);
        if (!r) return Error(ErrorCode::kInvalidCommandArguments, "argument " + a.name + ": " + r.error().message);
        out[a.name] = std::move(*r);
    }
    return out;  // unknown arguments are ignored (R-OPR.6)
}

}  // namespace

OperateResponse Engine::operate(const OperateRequest& req, const Permissions& perms, const AsyncHooks& hooks) {
    OperateResponse resp;
    auto parsed = parsePath(req.command);
    if (!parsed) {
        resp.error = MessageError{parsed.error().code, parsed.error().message, {}};
        return resp;
    }
    if (parsed->kind != PathKind::kCommand) {
        resp.error = MessageError{ErrorCode::kInvalidPathSyntax, "Operate needs a command path: " + req.command, {}};
        return resp;
    }
    auto r = impl_->resolve(*parsed, &perms);
    if (!r) {
        resp.error = MessageError{r.error().code, r.error().message, {}};
        return resp;
    }
    if (r->missingInstance) {
        resp.error = MessageError{ErrorCode::kObjectDoesNotExist, "object instance does not exist: " + req.command, {}};
        return resp;
    }
    for (const Pos& pos : r->positions) {
        ObjNode& n = *pos.node;
        if (parsed->isSearch && !perms.isFullAccess() && !readable(perms, n)) continue;
        const CommandSchema& cs = n.schema->commands()[static_cast<std::size_t>(r->member)];
        OperationResult& res = resp.results.emplace_back();
        res.executedCommand = n.path + cs.name;
        auto failure = [&](ErrorCode c, std::string msg) {
            res.kind = OperationResult::Kind::kFailure;
            res.err = c;
            res.errMsg = std::move(msg);
        };
        if (!perms.isFullAccess() && !(perms.forCommandEvent(n.path, cs.name) & kPermExecute)) {
            failure(ErrorCode::kPermissionDenied, "no permission to run " + res.executedCommand);
            continue;
        }
        std::string key = n.schema->path() + cs.name;
        auto sit = impl_->syncCommands.find(key);
        auto ait = impl_->asyncCommands.find(key);
        if (sit == impl_->syncCommands.end() && ait == impl_->asyncCommands.end()) {
            failure(ErrorCode::kCommandFailure, res.executedCommand + " is not implemented");
            continue;
        }
        auto in = validateInputs(cs, req.inputArgs);
        if (!in) {
            failure(in.error().code, in.error().message);
            continue;
        }
        CommandCall call{n.path, cs.name, res.executedCommand, req.commandKey, std::move(*in)};
        if (sit != impl_->syncCommands.end()) {
            auto out = sit->second(call);
            if (!out) {
                failure(out.error().code, out.error().message);
                continue;
            }
            res.kind = OperationResult::Kind::kOutputArgs;
            res.outputArgs = std::move(*out);
            continue;
        }
        Result<std::string> reqPath = hooks.createRequest ? hooks.createRequest(call)
                                                          : Result<std::string>(std::string());
        if (!reqPath) {
            failure(reqPath.error().code, reqPath.error().message);
            continue;
        }
        res.kind = OperationResult::Kind::kRequestPath;
        res.requestPath = *reqPath;
        auto completed = hooks.completed;
        std::string rp = *reqPath;
        CommandCall copy = call;
        copy.requestPath = rp;
        ait->second(copy, [completed, rp, copy](Result<ArgMap> result) {
            if (completed) completed(copy, rp, std::move(result));
        });
    }
    return resp;
}

}  // namespace berth::dm
