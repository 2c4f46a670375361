// USP Operate on top of the engine core. Get, GetInstances and GetSupportedDM are in
// operations_read.cpp; Set, Add and Delete in operations_write.cpp.

#include <algorithm>

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
