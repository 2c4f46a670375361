#include "berth/agent/message_handlers.h"

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <unordered_set>

#include "berth/agent/codec.h"

namespace berth::agent {
namespace {

using usp::Msg;

struct MessageLimitError {
    std::string message;
};

std::uint32_t code(ErrorCode c) { return static_cast<std::uint32_t>(c); }

Msg errorMsg(const std::string& msgId, const dm::MessageError& e) {
    std::vector<ParamError> params;
    params.reserve(e.paramErrors.size());
    for (const auto& p : e.paramErrors) params.push_back({p.path, p.code, p.message});
    return makeErrorMsg(msgId, Error(e.code, e.message), params);
}

// Identical paths are answered once, in the order they first appear; more distinct
// paths than the limit is an error (the count is checked before anything is copied).
template <typename Paths>
std::optional<MessageLimitError> uniquePaths(const Paths& in, const char* what, const RequestLimits& limits,
                                             std::vector<std::string>& out) {
    if (static_cast<std::size_t>(in.size()) > limits.maxPaths && limits.maxPaths != 0) {
        std::unordered_set<std::string_view> distinct;
        for (const auto& p : in) {
            distinct.insert(p);
            if (distinct.size() > limits.maxPaths)
                return MessageLimitError{std::string(what) + " lists more than " + std::to_string(limits.maxPaths) +
                                         " distinct paths, the most this agent answers in one message"};
        }
    }
    std::unordered_set<std::string_view> seen;
    out.reserve(std::min<std::size_t>(static_cast<std::size_t>(in.size()), limits.maxPaths ? limits.maxPaths : SIZE_MAX));
    for (const auto& p : in)
        if (seen.insert(p).second) out.push_back(p);
    return std::nullopt;
}

Msg limitError(const std::string& msgId, const MessageLimitError& e) {
    return makeErrorMsg(msgId, Error(ErrorCode::kResourcesExceeded, e.message));
}

Msg handleGet(const std::string& msgId, const usp::Get& in, HandlerContext& ctx) {
    dm::GetRequest req;
    if (auto e = uniquePaths(in.param_paths(), "Get", ctx.limits, req.paths)) return limitError(msgId, *e);
    req.maxDepth = in.max_depth();
    req.maxResponseBytes = ctx.limits.maxResponseBytes;
    dm::GetResponse r = ctx.engine.get(req, ctx.permissions);
    if (r.error) return errorMsg(msgId, *r.error);
    Msg out = *makeResponseMsg(msgId, usp::Header::GET);
    auto* resp = out.mutable_body()->mutable_response()->mutable_get_resp();
    for (auto& pr : r.results) {
        auto* rp = resp->add_req_path_results();
        rp->set_requested_path(std::move(pr.requestedPath));
        rp->set_err_code(code(pr.err));
        rp->set_err_msg(std::move(pr.errMsg));
        for (auto& obj : pr.resolved) {
            auto* res = rp->add_resolved_path_results();
            res->set_resolved_path(std::move(obj.path));
            auto& params = *res->mutable_result_params();
            for (auto& pv : obj.params) params[std::string(pv.name)] = std::move(pv.value);
        }
    }
    return out;
}

Msg handleGetInstances(const std::string& msgId, const usp::GetInstances& in, HandlerContext& ctx) {
    dm::GetInstancesRequest req;
    if (auto e = uniquePaths(in.obj_paths(), "GetInstances", ctx.limits, req.paths)) return limitError(msgId, *e);
    req.firstLevelOnly = in.first_level_only();
    req.maxResponseBytes = ctx.limits.maxResponseBytes;
    dm::GetInstancesResponse r = ctx.engine.getInstances(req, ctx.permissions);
    if (r.error) return errorMsg(msgId, *r.error);
    Msg out = *makeResponseMsg(msgId, usp::Header::GET_INSTANCES);
    auto* resp = out.mutable_body()->mutable_response()->mutable_get_instances_resp();
    for (auto& pr : r.results) {
        auto* rp = resp->add_req_path_results();
        rp->set_requested_path(std::move(pr.requestedPath));
        rp->set_err_code(code(pr.err));
        rp->set_err_msg(std::move(pr.errMsg));
        for (auto& inst : pr.instances) {
            auto* ci = rp->add_curr_insts();
            ci->set_instantiated_obj_path(std::move(inst.path));
            auto& keys = *ci->mutable_unique_keys();
            for (auto& [k, v] : inst.uniqueKeys) keys[std::string(k)] = std::move(v);
        }
    }
    return out;
}

Msg handleGsdm(const std::string& msgId, const usp::GetSupportedDM& in, HandlerContext& ctx) {
    dm::GsdmRequest req;
    if (auto e = uniquePaths(in.obj_paths(), "GetSupportedDM", ctx.limits, req.paths)) return limitError(msgId, *e);
    req.maxResponseBytes = ctx.limits.maxResponseBytes;
    req.firstLevelOnly = in.first_level_only();
    req.returnCommands = in.return_commands();
    req.returnEvents = in.return_events();
    req.returnParams = in.return_params();
    req.returnUniqueKeySets = in.return_unique_key_sets();
    dm::GsdmResponse r = ctx.engine.getSupportedDm(req, ctx.permissions);
    if (r.error) return errorMsg(msgId, *r.error);
    Msg out = *makeResponseMsg(msgId, usp::Header::GET_SUPPORTED_DM);
    auto* resp = out.mutable_body()->mutable_response()->mutable_get_supported_dm_resp();
    using R = usp::GetSupportedDMResp;
    for (auto& pr : r.results) {
        auto* ro = resp->add_req_obj_results();
        ro->set_req_obj_path(std::move(pr.requestedPath));
        ro->set_err_code(code(pr.err));
        ro->set_err_msg(std::move(pr.errMsg));
        ro->set_data_model_inst_uri(std::move(pr.dataModelInstUri));
        for (auto& obj : pr.objects) {
            auto* so = ro->add_supported_objs();
            so->set_supported_obj_path(std::string(obj.path));
            so->set_access(static_cast<R::ObjAccessType>(obj.access));
            so->set_is_multi_instance(obj.multiInstance);
            for (auto& p : obj.params) {
                auto* sp = so->add_supported_params();
                sp->set_param_name(std::string(p.name));
                sp->set_access(static_cast<R::ParamAccessType>(p.access));
                sp->set_value_type(static_cast<R::ParamValueType>(p.type));
                sp->set_value_change(static_cast<R::ValueChangeType>(p.valueChange));
            }
            for (auto& c : obj.commands) {
                auto* sc = so->add_supported_commands();
                sc->set_command_name(std::string(c.name));
                for (auto a : c.inputArgs) sc->add_input_arg_names(std::string(a));
                for (auto a : c.outputArgs) sc->add_output_arg_names(std::string(a));
                sc->set_command_type(static_cast<R::CmdType>(c.type));
            }
            for (auto& e : obj.events) {
                auto* se = so->add_supported_events();
                se->set_event_name(std::string(e.name));
                for (auto a : e.args) se->add_arg_names(std::string(a));
            }
            for (auto& keySet : obj.uniqueKeySets) {
                auto* ks = so->add_unique_key_sets();
                for (auto k : keySet) ks->add_key_names(std::string(k));
            }
        }
    }
    return out;
}

template <typename Settings>
std::vector<dm::ParamSetting> settings(const Settings& in) {
    std::vector<dm::ParamSetting> out;
    out.reserve(static_cast<std::size_t>(in.size()));
    for (const auto& s : in) out.push_back({s.param(), s.value(), s.required()});
    return out;
}

// Objects plus parameter settings of a Set or Add, against the limit.
template <typename Objects>
std::optional<MessageLimitError> tooManyParams(const Objects& objs, const char* what, const RequestLimits& limits) {
    if (limits.maxParams == 0) return std::nullopt;
    std::size_t n = 0;
    for (const auto& o : objs) n += 1 + static_cast<std::size_t>(o.param_settings_size());
    if (n <= limits.maxParams) return std::nullopt;
    return MessageLimitError{std::string(what) + " carries " + std::to_string(n) +
                             " objects and parameters; this agent takes at most " + std::to_string(limits.maxParams) +
                             " in one message"};
}

Msg handleAdd(const std::string& msgId, const usp::Add& in, HandlerContext& ctx) {
    if (auto e = tooManyParams(in.create_objs(), "Add", ctx.limits)) return limitError(msgId, *e);
    dm::AddRequest req;
    req.allowPartial = in.allow_partial();
    for (const auto& co : in.create_objs()) req.objects.push_back({co.obj_path(), settings(co.param_settings())});
    dm::AddResponse r = ctx.engine.add(req, ctx.permissions);
    if (r.error) return errorMsg(msgId, *r.error);
    Msg out = *makeResponseMsg(msgId, usp::Header::ADD);
    auto* resp = out.mutable_body()->mutable_response()->mutable_add_resp();
    for (auto& cr : r.results) {
        auto* res = resp->add_created_obj_results();
        res->set_requested_path(std::move(cr.requestedPath));
        auto* st = res->mutable_oper_status();
        if (cr.success) {
            auto* ok = st->mutable_oper_success();
            ok->set_instantiated_path(std::move(cr.instantiatedPath));
            for (auto& pe : cr.paramErrors) {
                auto* e = ok->add_param_errs();
                e->set_param(std::move(pe.path));
                e->set_err_code(code(pe.code));
                e->set_err_msg(std::move(pe.message));
            }
            auto& keys = *ok->mutable_unique_keys();
            for (auto& [k, v] : cr.uniqueKeys) keys[std::string(k)] = std::move(v);
        } else {
            auto* fail = st->mutable_oper_failure();
            fail->set_err_code(code(cr.err));
            fail->set_err_msg(std::move(cr.errMsg));
        }
    }
    return out;
}

Msg handleSet(const std::string& msgId, const usp::Set& in, HandlerContext& ctx) {
    if (auto e = tooManyParams(in.update_objs(), "Set", ctx.limits)) return limitError(msgId, *e);
    dm::SetRequest req;
    req.allowPartial = in.allow_partial();
    for (const auto& uo : in.update_objs()) req.objects.push_back({uo.obj_path(), settings(uo.param_settings())});
    dm::SetResponse r = ctx.engine.set(req, ctx.permissions);
    if (r.error) return errorMsg(msgId, *r.error);
    Msg out = *makeResponseMsg(msgId, usp::Header::SET);
    auto* resp = out.mutable_body()->mutable_response()->mutable_set_resp();
    auto fillErrors = [](auto* target, std::vector<dm::ParamError>& errors) {
        for (auto& pe : errors) {
            auto* e = target->add_param_errs();
            e->set_param(std::move(pe.path));
            e->set_err_code(code(pe.code));
            e->set_err_msg(std::move(pe.message));
        }
    };
    for (auto& ur : r.results) {
        auto* res = resp->add_updated_obj_results();
        res->set_requested_path(std::move(ur.requestedPath));
        auto* st = res->mutable_oper_status();
        if (ur.success) {
            auto* ok = st->mutable_oper_success();
            for (auto& ui : ur.updated) {
                auto* ir = ok->add_updated_inst_results();
                ir->set_affected_path(std::move(ui.affectedPath));
                fillErrors(ir, ui.paramErrors);
                auto& params = *ir->mutable_updated_params();
                for (auto& [k, v] : ui.updatedParams) params[std::string(k)] = std::move(v);
            }
        } else {
            auto* fail = st->mutable_oper_failure();
            fail->set_err_code(code(ur.err));
            fail->set_err_msg(std::move(ur.errMsg));
            for (auto& f : ur.failures) {
                auto* fi = fail->add_updated_inst_failures();
                fi->set_affected_path(std::move(f.affectedPath));
                fillErrors(fi, f.paramErrors);
            }
        }
    }
    return out;
}

Msg handleDelete(const std::string& msgId, const usp::Delete& in, HandlerContext& ctx) {
    dm::DeleteRequest req;
    req.allowPartial = in.allow_partial();
    if (auto e = uniquePaths(in.obj_paths(), "Delete", ctx.limits, req.paths)) return limitError(msgId, *e);
    dm::DeleteResponse r = ctx.engine.del(req, ctx.permissions);
    if (r.error) return errorMsg(msgId, *r.error);
    Msg out = *makeResponseMsg(msgId, usp::Header::DELETE);
    auto* resp = out.mutable_body()->mutable_response()->mutable_delete_resp();
    for (auto& dr : r.results) {
        auto* res = resp->add_deleted_obj_results();
        res->set_requested_path(std::move(dr.requestedPath));
        auto* st = res->mutable_oper_status();
        if (dr.success) {
            auto* ok = st->mutable_oper_success();
            for (auto& p : dr.affectedPaths) ok->add_affected_paths(std::move(p));
            for (auto& u : dr.unaffected) {
                auto* e = ok->add_unaffected_path_errs();
                e->set_unaffected_path(std::move(u.path));
                e->set_err_code(code(u.code));
                e->set_err_msg(std::move(u.message));
            }
        } else {
            auto* fail = st->mutable_oper_failure();
            fail->set_err_code(code(dr.err));
            fail->set_err_msg(std::move(dr.errMsg));
        }
    }
    return out;
}

std::optional<Msg> handleOperate(const std::string& msgId, const usp::Operate& in, HandlerContext& ctx) {
    if (ctx.limits.maxParams != 0 && static_cast<std::size_t>(in.input_args_size()) > ctx.limits.maxParams)
        return limitError(msgId, MessageLimitError{"Operate carries " + std::to_string(in.input_args_size()) +
                                                   " input arguments; this agent takes at most " +
                                                   std::to_string(ctx.limits.maxParams)});
    dm::OperateRequest req;
    req.command = in.command();
    req.commandKey = in.command_key();
    req.inputArgs.insert(in.input_args().begin(), in.input_args().end());
    dm::OperateResponse r = ctx.engine.operate(req, ctx.permissions, ctx.asyncHooks);
    if (r.error) return errorMsg(msgId, *r.error);
    bool anyFailure = false;
    Msg out = *makeResponseMsg(msgId, usp::Header::OPERATE);
    auto* resp = out.mutable_body()->mutable_response()->mutable_operate_resp();
    for (auto& res : r.results) {
        auto* o = resp->add_operation_results();
        o->set_executed_command(std::move(res.executedCommand));
        switch (res.kind) {
            case dm::OperationResult::Kind::kOutputArgs:
                o->mutable_req_output_args()->mutable_output_args()->insert(res.outputArgs.begin(),
                                                                            res.outputArgs.end());
                break;
            case dm::OperationResult::Kind::kRequestPath:
                o->set_req_obj_path(std::move(res.requestPath));
                break;
            case dm::OperationResult::Kind::kFailure:
                anyFailure = true;
                o->mutable_cmd_failure()->set_err_code(code(res.err));
                o->mutable_cmd_failure()->set_err_msg(std::move(res.errMsg));
                break;
        }
    }
    // send_resp=false: no response, except that failures may still be reported (R-OPR.4).
    if (!in.send_resp() && !anyFailure) return std::nullopt;
    return out;
}

Msg handleGetSupportedProtocol(const std::string& msgId) {
    Msg out = *makeResponseMsg(msgId, usp::Header::GET_SUPPORTED_PROTO);
    out.mutable_body()->mutable_response()->mutable_get_supported_protocol_resp()->set_agent_supported_protocol_versions(
        std::string(kSupportedUspVersions));
    return out;
}

}  // namespace

std::optional<usp::Msg> handleRequest(const usp::Msg& request, HandlerContext& ctx) {
    const std::string& msgId = request.header().msg_id();
    const usp::Request& req = request.body().request();
    switch (req.req_type_case()) {
        case usp::Request::kGet: return handleGet(msgId, req.get(), ctx);
        case usp::Request::kGetInstances: return handleGetInstances(msgId, req.get_instances(), ctx);
        case usp::Request::kGetSupportedDm: return handleGsdm(msgId, req.get_supported_dm(), ctx);
        case usp::Request::kAdd: return handleAdd(msgId, req.add(), ctx);
        case usp::Request::kSet: return handleSet(msgId, req.set(), ctx);
        case usp::Request::kDelete: return handleDelete(msgId, req.delete_(), ctx);
        case usp::Request::kOperate: return handleOperate(msgId, req.operate(), ctx);
        case usp::Request::kGetSupportedProtocol: return handleGetSupportedProtocol(msgId);
        default:
            return makeErrorMsg(msgId, Error(ErrorCode::kMessageNotSupported, "this agent does not serve that request"));
    }
}

}  // namespace berth::agent
