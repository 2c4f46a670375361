// USP Set, Add and Delete on top of the engine core, each in its phases: resolve the
// path, validate and apply every setting on every instance (undone to a mark when the
// instance or object fails), then commit the whole message as one transaction.

#include <algorithm>

#include "berth/datamodel/engine.h"
#include "engine_impl.h"
#include "operations_util.h"

namespace berth::dm {

using detail::messageError;
using detail::ObjNode;
using detail::Pos;
using detail::readable;
using detail::Resolved;

// ---------------------------------------------------------------------------------------
// Resolve

Result<Engine::Impl::Target> Engine::Impl::resolveObjectPath(const std::string& path, const Permissions& perms,
                                                             std::string_view needs) {
    auto parsed = parsePath(path);
    if (!parsed) return parsed.error();
    if (parsed->kind != PathKind::kObject)
        return Error(ErrorCode::kInvalidPathSyntax, std::string(needs) + ": " + path, path);
    auto resolved = resolve(*parsed, &perms);
    if (!resolved) return resolved.error();
    return Target{parsed->isSearch, std::move(*resolved)};
}

Result<Engine::Impl::Target> Engine::Impl::resolveForSet(const std::string& path, const Permissions& perms) {
    auto t = resolveObjectPath(path, perms, "Set needs an object path");
    if (!t) return t;
    if (t->resolved.missingInstance)
        return Error(ErrorCode::kObjectDoesNotExist, "object instance does not exist: " + path, path);
    if (t->resolved.tableEnd)
        return Error(ErrorCode::kInvalidPath, "Set needs object instances, not a table: " + path, path);
    return t;
}

Result<Engine::Impl::Target> Engine::Impl::resolveForAdd(const std::string& path, const Permissions& perms) {
    auto t = resolveObjectPath(path, perms, "Add needs an object path");
    if (!t) return t;
    const Resolved& r = t->resolved;
    if (r.missingInstance) return Error(ErrorCode::kObjectDoesNotExist, "object instance does not exist: " + path, path);
    if (!r.tableEnd) return Error(ErrorCode::kObjectNotTable, "not a multi-instance object: " + path, path);
    if (r.schema && r.schema->access() == ObjAccess::kReadOnly)
        return Error(ErrorCode::kObjectNotCreatable, "instances of " + r.schema->path() + " cannot be created", path);
    return t;
}

Result<Engine::Impl::Target> Engine::Impl::resolveForDelete(const std::string& path, const Permissions& perms) {
    auto t = resolveObjectPath(path, perms, "Delete needs an object instance path");
    if (!t) return t;
    if (t->resolved.tableEnd || (t->resolved.schema && !t->resolved.schema->multiInstance()))
        return Error(ErrorCode::kDeleteFailure, "only object instances can be deleted: " + path, path);
    return t;
}

// ---------------------------------------------------------------------------------------
// Set

std::optional<ParamError> Engine::Impl::setParam(ObjNode& n, const ParamSetting& ps, const Permissions& perms,
                                                 UpdatedInstance& ui, std::vector<std::string_view>& changed) {
    ObjNode* owner = nullptr;
    int idx = -1;
    auto fail = [&](ErrorCode code, std::string msg) { return ParamError{n.path + ps.param, code, std::move(msg)}; };
    if (!relParam(n, ps.param, owner, idx))
        return fail(ErrorCode::kUnsupportedParameter, "no parameter " + ps.param + " in " + n.path);
    const ParamSchema& p = owner->schema->params()[static_cast<std::size_t>(idx)];
    if (!perms.isFullAccess() && !(perms.forParam(owner->path, p.name) & kPermWrite))
        return fail(ErrorCode::kPermissionDenied, "no write permission on " + owner->path + p.name);
    auto v = p.validate(ps.value);
    if (v) v = canonicalRef(p, *v);
    if (!v) return fail(v.error().code, v.error().message);
    const std::string& cur = owner->values[p.index];
    bool nonFunctionalKey = false;
    for (const auto& ks : owner->schema->uniqueKeys())
        if (!ks.functional && std::find(ks.params.begin(), ks.params.end(), p.index) != ks.params.end())
            nonFunctionalKey = true;
    if (p.access == ParamAccess::kReadOnly || p.counts) return fail(ErrorCode::kParameterNotWritable, p.name + " is read-only");
    if (*v != cur && p.access == ParamAccess::kWriteOnceReadOnly && !cur.empty())
        return fail(ErrorCode::kParameterNotWritable, p.name + " can only be written once");
    if (*v != cur && nonFunctionalKey && p.access != ParamAccess::kWriteOnceReadOnly)
        return fail(ErrorCode::kParameterNotWritable, p.name + " is a non-functional unique key and cannot change");
    if (isProvided(*owner, p.index)) providedWrites.push_back({owner->path, p.index, owner->schema, *v});
    else writeValue(*owner, p.index, *v);
    changed.push_back(p.name);
    ui.updatedParams.emplace_back(p.name, std::move(*v));
    return std::nullopt;
}

std::vector<ParamError> Engine::Impl::setInstance(ObjNode& n, const UpdateObject& uo, const Permissions& perms,
                                                  UpdatedInstance& ui) {
    ui.affectedPath = n.path;
    std::vector<ParamError> requiredFailed;
    std::vector<std::string_view> changed;
    for (const ParamSetting& ps : uo.params)
        if (auto err = setParam(n, ps, perms, ui, changed))
            (ps.required ? requiredFailed : ui.paramErrors).push_back(std::move(*err));
    if (!requiredFailed.empty()) return requiredFailed;
    if (Provider* pr = providerFor(*n.schema))
        if (auto st = pr->validateSet(ObjectView(self, &n), changed); !st)
            return {ParamError{st.error().path.empty() ? n.path : st.error().path, st.error().code, st.error().message}};
    if (auto st = checkUniqueKeys(n); !st) return {ParamError{n.path, st.error().code, st.error().message}};
    return {};
}

void Engine::Impl::dropProvidedWritesUnder(const std::vector<std::string>& objPaths) {
    providedWrites.erase(std::remove_if(providedWrites.begin(), providedWrites.end(),
                                        [&](const ProvidedWrite& w) {
                                            for (const auto& p : objPaths)
                                                if (w.objPath.rfind(p, 0) == 0) return true;
                                            return false;
                                        }),
                         providedWrites.end());
}

std::optional<MessageError> Engine::Impl::setObject(const UpdateObject& uo, bool allowPartial, const Permissions& perms,
                                                    SetResponse& resp) {
    auto target = resolveForSet(uo.objPath, perms);
    if (!target) {
        const Error& e = target.error();
        if (!allowPartial) return messageError(e.code, e.message, {ParamError{uo.objPath, e.code, e.message}});
        UpdatedObjectResult& r = resp.results.emplace_back();
        r.requestedPath = uo.objPath;
        r.err = e.code;
        r.errMsg = e.message;
        return std::nullopt;
    }
    std::size_t objMark = mark();
    std::vector<UpdatedInstance> updated;
    std::vector<UpdatedInstanceFailure> failures;
    for (const Pos& pos : target->resolved.positions) {
        ObjNode& n = *pos.node;
        if (!perms.isFullAccess() && !readable(perms, n)) {
            if (target->isSearch) continue;  // invisible objects are absent from searches
            failures.push_back(UpdatedInstanceFailure{
                n.path, {ParamError{n.path, ErrorCode::kPermissionDenied, "no permission on " + n.path}}});
            continue;
        }
        UpdatedInstance ui;
        auto requiredFailed = setInstance(n, uo, perms, ui);
        if (!requiredFailed.empty()) failures.push_back(UpdatedInstanceFailure{n.path, std::move(requiredFailed)});
        else updated.push_back(std::move(ui));
    }
    UpdatedObjectResult result;
    result.requestedPath = uo.objPath;
    if (failures.empty()) {
        result.success = true;
        result.updated = std::move(updated);
        resp.results.push_back(std::move(result));
        return std::nullopt;
    }
    // A failed instance fails the whole (search) path: R-SET.2a.
    rollbackTo(objMark);
    std::vector<std::string> undone;
    for (const auto& f : failures) undone.push_back(f.affectedPath);
    for (const auto& u : updated) undone.push_back(u.affectedPath);
    dropProvidedWritesUnder(undone);
    if (!allowPartial) {
        std::vector<ParamError> errs;
        for (auto& f : failures)
            for (auto& e : f.paramErrors) errs.push_back(e);
        ErrorCode first = errs.empty() ? ErrorCode::kObjectCouldNotBeUpdated : errs.front().code;
        return messageError(first, "Set failed: " + (errs.empty() ? uo.objPath : errs.front().message), std::move(errs));
    }
    result.err = ErrorCode::kRequiredParameterFailed;
    result.errMsg = "required parameters failed for " + uo.objPath;
    result.failures = std::move(failures);
    resp.results.push_back(std::move(result));
    return std::nullopt;
}

SetResponse Engine::set(const SetRequest& req, const Permissions& perms) {
    SetResponse resp;
    Impl::Txn tx(*impl_);
    for (const UpdateObject& uo : req.objects) {
        if (auto err = impl_->setObject(uo, req.allowPartial, perms, resp)) {
            resp.results.clear();
            resp.error = std::move(*err);
            return resp;  // tx rolls everything back
        }
    }
    if (auto st = tx.commit(); !st) {
        resp.results.clear();
        resp.error = MessageError{st.error().code, st.error().message, {}};
    }
    return resp;
}

// ---------------------------------------------------------------------------------------
// Add

std::optional<ParamError> Engine::Impl::addParam(ObjNode& row, const ParamSetting& ps, const Permissions& perms,
                                                 const std::string& tpath, bool& isKey) {
    ObjNode* o = nullptr;
    int idx = -1;
    auto fail = [&](ErrorCode code, std::string msg) { return ParamError{row.path + ps.param, code, std::move(msg)}; };
    if (!relParam(row, ps.param, o, idx)) return fail(ErrorCode::kUnsupportedParameter, "no parameter " + ps.param + " in " + tpath);
    const ParamSchema& p = o->schema->params()[static_cast<std::size_t>(idx)];
    if (o == &row)
        for (const auto& ks : row.schema->uniqueKeys())
            if (std::find(ks.params.begin(), ks.params.end(), p.index) != ks.params.end()) isKey = true;
    if (p.access == ParamAccess::kReadOnly || p.counts) return fail(ErrorCode::kParameterNotWritable, p.name + " is read-only");
    if (!perms.isFullAccess() && !(perms.forParam(o->path, p.name) & kPermWrite))
        return fail(ErrorCode::kPermissionDenied, "no write permission on " + o->path + p.name);
    auto v = p.validate(ps.value);
    if (v) v = canonicalRef(p, *v);
    if (!v) return fail(v.error().code, v.error().message);
    if (isProvided(*o, p.index)) providedWrites.push_back({o->path, p.index, o->schema, *v});
    else writeValue(*o, p.index, std::move(*v));
    return std::nullopt;
}

std::optional<ParamError> Engine::Impl::fillNewRow(ObjNode& row, const CreateObject& co, const Permissions& perms,
                                                   const std::string& tpath, std::vector<ParamError>& optionalErrs) {
    std::optional<ParamError> fatal;
    std::vector<std::string> given;
    for (const ParamSetting& ps : co.params) {
        bool isKey = false;
        auto err = addParam(row, ps, perms, tpath, isKey);
        if (!err) {
            given.push_back(ps.param);
        } else if (ps.required || isKey) {
            if (!fatal) fatal = std::move(*err);
        } else {
            optionalErrs.push_back(std::move(*err));
        }
    }
    if (fatal) return fatal;
    if (Provider* pr = providerFor(*row.schema)) {
        ObjectEditor ed(self, &row, &given);
        if (auto st = pr->onAdd(ed); !st)
            return ParamError{st.error().path.empty() ? row.path : st.error().path, st.error().code, st.error().message};
    }
    assignAlias(row);
    if (auto st = checkUniqueKeys(row); !st) return ParamError{row.path, st.error().code, st.error().message};
    return std::nullopt;
}

std::optional<MessageError> Engine::Impl::addObject(const CreateObject& co, bool allowPartial, const Permissions& perms,
                                                    AddResponse& resp) {
    // Returns the message error when partial results are not allowed, else records the failure.
    auto fail = [&](const Error& e, std::vector<ParamError> errs) -> std::optional<MessageError> {
        if (!allowPartial) return messageError(e.code, e.message, std::move(errs));
        CreatedObjectResult& r = resp.results.emplace_back();
        r.requestedPath = co.objPath;
        r.err = e.code;
        r.errMsg = e.message;
        return std::nullopt;
    };
    auto target = resolveForAdd(co.objPath, perms);
    if (!target) return fail(target.error(), {ParamError{co.objPath, target.error().code, target.error().message}});
    for (const Pos& pos : target->resolved.positions) {
        ObjNode& owner = *pos.node;
        auto child = static_cast<std::uint16_t>(pos.pendingChild);
        std::string tpath = tablePath(owner, child);
        if (!perms.isFullAccess() && !(perms.forObject(tpath).obj & kPermWrite)) {
            Error e(ErrorCode::kPermissionDenied, "no permission to add to " + tpath, tpath);
            if (auto m = fail(e, {ParamError{tpath, e.code, e.message}})) return m;
            continue;
        }
        std::size_t rowMark = mark();
        auto rowR = addRow(owner, child, 0);
        if (!rowR) {
            if (auto m = fail(rowR.error(), {ParamError{tpath, rowR.error().code, rowR.error().message}})) return m;
            continue;
        }
        ObjNode& row = **rowR;
        std::vector<ParamError> optionalErrs;
        if (auto fatal = fillNewRow(row, co, perms, tpath, optionalErrs)) {
            rollbackTo(rowMark);
            if (!allowPartial) return messageError(fatal->code, fatal->message, {*fatal});
            (void)fail(Error(fatal->code, fatal->message + " (" + fatal->path + ")"), {});
            continue;
        }
        CreatedObjectResult& r = resp.results.emplace_back();
        r.requestedPath = co.objPath;
        r.success = true;
        r.instantiatedPath = row.path;
        r.paramErrors = std::move(optionalErrs);
        r.uniqueKeys = uniqueKeysOf(row, &perms);
    }
    return std::nullopt;
}

AddResponse Engine::add(const AddRequest& req, const Permissions& perms) {
    AddResponse resp;
    Impl::Txn tx(*impl_);
    for (const CreateObject& co : req.objects) {
        if (auto err = impl_->addObject(co, req.allowPartial, perms, resp)) {
            resp.results.clear();
            resp.error = std::move(*err);
            return resp;  // tx rolls everything back
        }
    }
    if (auto st = tx.commit(); !st) {
        resp.results.clear();
        resp.error = MessageError{st.error().code, st.error().message, {}};
    }
    return resp;
}

// ---------------------------------------------------------------------------------------
// Delete

std::optional<Error> Engine::Impl::checkDeletable(const std::vector<ObjNode*>& rows, const Permissions& perms) {
    for (ObjNode* row : rows) {
        if (!perms.isFullAccess() && !readable(perms, *row)) continue;
        if (row->schema->access() == ObjAccess::kReadOnly || row->schema->access() == ObjAccess::kAddOnly)
            return Error(ErrorCode::kDeleteFailure, "instances of " + row->schema->path() + " cannot be deleted", row->path);
        if (!perms.isFullAccess() && !(perms.forObject(row->path).instObj & kPermWrite))
            return Error(ErrorCode::kPermissionDenied, "no permission to delete " + row->path, row->path);
        if (Provider* pr = providerFor(*row->schema)) {
            if (auto st = pr->onDelete(ObjectView(self, row)); !st)
                return Error(st.error().code == ErrorCode::kOk ? ErrorCode::kDeleteFailure : st.error().code,
                             st.error().message, row->path);
        }
    }
    return std::nullopt;
}

void Engine::Impl::deleteRows(const std::vector<ObjNode*>& rows, const Permissions& perms, DeletedObjectResult& res) {
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
        removeRow(*row);
        clearReferencesTo(p);
    }
}

DeleteResponse Engine::del(const DeleteRequest& req, const Permissions& perms) {
    DeleteResponse resp;
    Impl& im = *impl_;
    Impl::Txn tx(im);
    for (const std::string& path : req.paths) {
        // Returns true when the whole message fails (the transaction is then rolled back).
        auto failPath = [&](const Error& e) -> bool {
            if (!req.allowPartial) {
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
        auto target = im.resolveForDelete(path, perms);
        if (!target) {
            if (failPath(target.error())) return resp;
            continue;
        }
        std::vector<ObjNode*> rows;
        for (const Pos& pos : target->resolved.positions) rows.push_back(pos.node);
        std::size_t m = im.mark();
        if (auto err = im.checkDeletable(rows, perms)) {
            im.rollbackTo(m);
            if (failPath(*err)) return resp;
            continue;
        }
        DeletedObjectResult res;
        res.requestedPath = path;
        res.success = true;
        im.deleteRows(rows, perms, res);
        resp.results.push_back(std::move(res));
    }
    if (auto st = tx.commit(); !st) {
        resp.results.clear();
        resp.error = MessageError{st.error().code, st.error().message, {}};
    }
    return resp;
}

}  // namespace berth::dm
