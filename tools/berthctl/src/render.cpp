#include "render.h"

#include <algorithm>
#include <map>
#include <sstream>
#include <vector>

#include "berth/core/error.h"

namespace berthctl {

using nlohmann::json;

namespace {

template <typename Map>
json mapJson(const Map& m) {
    json j = json::object();
    for (const auto& [k, v] : m) j[k] = v;
    return j;
}

template <typename Map>
std::vector<std::pair<std::string, std::string>> sorted(const Map& m) {
    std::vector<std::pair<std::string, std::string>> v(m.begin(), m.end());
    std::sort(v.begin(), v.end());
    return v;
}

template <typename Repeated>
json listJson(const Repeated& r) {
    json j = json::array();
    for (const auto& s : r) j.push_back(s);
    return j;
}

std::string join(const google::protobuf::RepeatedPtrField<std::string>& r, const char* sep = ", ") {
    std::string out;
    for (const auto& s : r) {
        if (!out.empty()) out += sep;
        out += s;
    }
    return out;
}

void errorLine(std::ostringstream& os, const std::string& path, unsigned code, const std::string& message) {
    os << (path.empty() ? "" : path + ": ") << describeUspError(code, message) << "\n";
}

Rendered renderError(const usp::Error& e) {
    Rendered r;
    r.failed = true;
    json errs = json::array();
    std::ostringstream os;
    errorLine(os, "", e.err_code(), e.err_msg());
    for (const auto& pe : e.param_errs()) {
        errs.push_back({{"param_path", pe.param_path()}, {"err_code", pe.err_code()}, {"err_msg", pe.err_msg()}});
        os << "  ";
        errorLine(os, pe.param_path(), pe.err_code(), pe.err_msg());
    }
    r.json = {{"error", {{"err_code", e.err_code()}, {"err_msg", e.err_msg()}, {"param_errs", errs}}}};
    r.text = os.str();
    return r;
}

Rendered renderGet(const usp::GetResp& g) {
    Rendered r;
    json results = json::array();
    std::ostringstream os;
    std::vector<std::pair<std::string, std::string>> lines;
    for (const auto& rp : g.req_path_results()) {
        json resolved = json::array();
        for (const auto& res : rp.resolved_path_results()) {
            resolved.push_back({{"resolved_path", res.resolved_path()}, {"result_params", mapJson(res.result_params())}});
            for (const auto& [k, v] : res.result_params()) lines.emplace_back(res.resolved_path() + k, v);
        }
        results.push_back({{"requested_path", rp.requested_path()},
                           {"err_code", rp.err_code()},
                           {"err_msg", rp.err_msg()},
                           {"resolved_path_results", resolved}});
        if (rp.err_code() != 0) r.failed = true;
    }
    std::sort(lines.begin(), lines.end());
    lines.erase(std::unique(lines.begin(), lines.end()), lines.end());
    for (const auto& [k, v] : lines) os << k << " = " << v << "\n";
    for (const auto& rp : g.req_path_results())
        if (rp.err_code() != 0) errorLine(os, rp.requested_path(), rp.err_code(), rp.err_msg());
    r.json = {{"get_resp", {{"req_path_results", results}}}};
    r.text = os.str();
    return r;
}

template <typename ParamErrors>
json paramErrorsJson(const ParamErrors& errs) {
    json j = json::array();
    for (const auto& pe : errs) j.push_back({{"param", pe.param()}, {"err_code", pe.err_code()}, {"err_msg", pe.err_msg()}});
    return j;
}

template <typename ParamErrors>
void paramErrorLines(std::ostringstream& os, const std::string& obj, const ParamErrors& errs) {
    for (const auto& pe : errs) errorLine(os, obj + pe.param(), pe.err_code(), pe.err_msg());
}

Rendered renderSet(const usp::SetResp& s) {
    Rendered r;
    json results = json::array();
    std::ostringstream os;
    for (const auto& u : s.updated_obj_results()) {
        json status;
        const auto& st = u.oper_status();
        if (st.has_oper_success()) {
            json insts = json::array();
            for (const auto& inst : st.oper_success().updated_inst_results()) {
                insts.push_back({{"affected_path", inst.affected_path()},
                                 {"updated_params", mapJson(inst.updated_params())},
                                 {"param_errs", paramErrorsJson(inst.param_errs())}});
                for (const auto& [k, v] : sorted(inst.updated_params())) os << inst.affected_path() << k << " = " << v << "\n";
                paramErrorLines(os, inst.affected_path(), inst.param_errs());
                if (inst.param_errs_size() > 0) r.failed = true;
            }
            status = {{"oper_success", {{"updated_inst_results", insts}}}};
        } else {
            const auto& f = st.oper_failure();
            json insts = json::array();
            errorLine(os, u.requested_path(), f.err_code(), f.err_msg());
            for (const auto& inst : f.updated_inst_failures()) {
                insts.push_back({{"affected_path", inst.affected_path()}, {"param_errs", paramErrorsJson(inst.param_errs())}});
                paramErrorLines(os, inst.affected_path(), inst.param_errs());
            }
            status = {{"oper_failure",
                       {{"err_code", f.err_code()}, {"err_msg", f.err_msg()}, {"updated_inst_failures", insts}}}};
            r.failed = true;
        }
        results.push_back({{"requested_path", u.requested_path()}, {"oper_status", status}});
    }
    r.json = {{"set_resp", {{"updated_obj_results", results}}}};
    r.text = os.str();
    return r;
}

Rendered renderAdd(const usp::AddResp& a) {
    Rendered r;
    json results = json::array();
    std::ostringstream os;
    for (const auto& c : a.created_obj_results()) {
        json status;
        const auto& st = c.oper_status();
        if (st.has_oper_success()) {
            const auto& ok = st.oper_success();
            status = {{"oper_success",
                       {{"instantiated_path", ok.instantiated_path()},
                        {"unique_keys", mapJson(ok.unique_keys())},
                        {"param_errs", paramErrorsJson(ok.param_errs())}}}};
            os << ok.instantiated_path() << "\n";
            for (const auto& [k, v] : sorted(ok.unique_keys())) os << "  " << k << " = " << v << "\n";
            paramErrorLines(os, ok.instantiated_path(), ok.param_errs());
            if (ok.param_errs_size() > 0) r.failed = true;
        } else {
            const auto& f = st.oper_failure();
            status = {{"oper_failure", {{"err_code", f.err_code()}, {"err_msg", f.err_msg()}}}};
            errorLine(os, c.requested_path(), f.err_code(), f.err_msg());
            r.failed = true;
        }
        results.push_back({{"requested_path", c.requested_path()}, {"oper_status", status}});
    }
    r.json = {{"add_resp", {{"created_obj_results", results}}}};
    r.text = os.str();
    return r;
}

Rendered renderDelete(const usp::DeleteResp& d) {
    Rendered r;
    json results = json::array();
    std::ostringstream os;
    for (const auto& del : d.deleted_obj_results()) {
        json status;
        const auto& st = del.oper_status();
        if (st.has_oper_success()) {
            const auto& ok = st.oper_success();
            json unaffected = json::array();
            for (const auto& p : ok.affected_paths()) os << "deleted " << p << "\n";
            if (ok.affected_paths_size() == 0) os << del.requested_path() << ": nothing to delete\n";
            for (const auto& u : ok.unaffected_path_errs()) {
                unaffected.push_back(
                    {{"unaffected_path", u.unaffected_path()}, {"err_code", u.err_code()}, {"err_msg", u.err_msg()}});
                errorLine(os, u.unaffected_path(), u.err_code(), u.err_msg());
                r.failed = true;
            }
            status = {{"oper_success", {{"affected_paths", listJson(ok.affected_paths())}, {"unaffected_path_errs", unaffected}}}};
        } else {
            const auto& f = st.oper_failure();
            status = {{"oper_failure", {{"err_code", f.err_code()}, {"err_msg", f.err_msg()}}}};
            errorLine(os, del.requested_path(), f.err_code(), f.err_msg());
            r.failed = true;
        }
        results.push_back({{"requested_path", del.requested_path()}, {"oper_status", status}});
    }
    r.json = {{"delete_resp", {{"deleted_obj_results", results}}}};
    r.text = os.str();
    return r;
}

Rendered renderInstances(const usp::GetInstancesResp& g) {
    Rendered r;
    json results = json::array();
    std::ostringstream os;
    for (const auto& rp : g.req_path_results()) {
        json insts = json::array();
        for (const auto& inst : rp.curr_insts()) {
            insts.push_back({{"instantiated_obj_path", inst.instantiated_obj_path()}, {"unique_keys", mapJson(inst.unique_keys())}});
            os << inst.instantiated_obj_path();
            for (const auto& [k, v] : sorted(inst.unique_keys())) os << "  " << k << "=" << v;
            os << "\n";
        }
        if (rp.err_code() != 0) {
            errorLine(os, rp.requested_path(), rp.err_code(), rp.err_msg());
            r.failed = true;
        }
        results.push_back({{"requested_path", rp.requested_path()},
                           {"err_code", rp.err_code()},
                           {"err_msg", rp.err_msg()},
                           {"curr_insts", insts}});
    }
    r.json = {{"get_instances_resp", {{"req_path_results", results}}}};
    r.text = os.str();
    return r;
}

using Gsdm = usp::GetSupportedDMResp;

std::string objAccessText(Gsdm::ObjAccessType a) {
    switch (a) {
        case Gsdm::OBJ_READ_ONLY: return "read-only";
        case Gsdm::OBJ_ADD_DELETE: return "add/delete";
        case Gsdm::OBJ_ADD_ONLY: return "add-only";
        case Gsdm::OBJ_DELETE_ONLY: return "delete-only";
        default: return "?";
    }
}
std::string paramAccessText(Gsdm::ParamAccessType a) {
    switch (a) {
        case Gsdm::PARAM_READ_ONLY: return "read-only";
        case Gsdm::PARAM_READ_WRITE: return "read-write";
        case Gsdm::PARAM_WRITE_ONLY: return "write-only";
        default: return "?";
    }
}
std::string valueTypeText(Gsdm::ParamValueType t) {
    switch (t) {
        case Gsdm::PARAM_BASE_64: return "base64";
        case Gsdm::PARAM_BOOLEAN: return "boolean";
        case Gsdm::PARAM_DATE_TIME: return "dateTime";
        case Gsdm::PARAM_DECIMAL: return "decimal";
        case Gsdm::PARAM_HEX_BINARY: return "hexBinary";
        case Gsdm::PARAM_INT: return "int";
        case Gsdm::PARAM_LONG: return "long";
        case Gsdm::PARAM_STRING: return "string";
        case Gsdm::PARAM_UNSIGNED_INT: return "unsignedInt";
        case Gsdm::PARAM_UNSIGNED_LONG: return "unsignedLong";
        default: return "unknown";
    }
}
std::string cmdTypeText(Gsdm::CmdType t) {
    switch (t) {
        case Gsdm::CMD_SYNC: return "sync";
        case Gsdm::CMD_ASYNC: return "async";
        default: return "unknown";
    }
}

Rendered renderGsdm(const Gsdm& g) {
    Rendered r;
    json results = json::array();
    std::ostringstream os;
    for (const auto& ro : g.req_obj_results()) {
        json objs = json::array();
        if (ro.err_code() != 0) {
            errorLine(os, ro.req_obj_path(), ro.err_code(), ro.err_msg());
            r.failed = true;
        }
        for (const auto& so : ro.supported_objs()) {
            json params = json::array();
            json cmds = json::array();
            json events = json::array();
            json keys = json::array();
            os << so.supported_obj_path() << "  " << objAccessText(so.access())
               << (so.is_multi_instance() ? " multi-instance" : "") << "\n";
            for (const auto& ks : so.unique_key_sets()) {
                keys.push_back({{"key_names", listJson(ks.key_names())}});
                os << "  unique key: " << join(ks.key_names(), " + ") << "\n";
            }
            for (const auto& p : so.supported_params()) {
                params.push_back({{"param_name", p.param_name()},
                                  {"access", Gsdm::ParamAccessType_Name(p.access())},
                                  {"value_type", Gsdm::ParamValueType_Name(p.value_type())},
                                  {"value_change", Gsdm::ValueChangeType_Name(p.value_change())}});
                os << "  " << p.param_name() << "  " << valueTypeText(p.value_type()) << "  "
                   << paramAccessText(p.access()) << "\n";
            }
            for (const auto& c : so.supported_commands()) {
                cmds.push_back({{"command_name", c.command_name()},
                                {"input_arg_names", listJson(c.input_arg_names())},
                                {"output_arg_names", listJson(c.output_arg_names())},
                                {"command_type", Gsdm::CmdType_Name(c.command_type())}});
                os << "  " << c.command_name() << "  " << cmdTypeText(c.command_type());
                if (c.input_arg_names_size() > 0) os << "  in: " << join(c.input_arg_names());
                if (c.output_arg_names_size() > 0) os << "  out: " << join(c.output_arg_names());
                os << "\n";
            }
            for (const auto& e : so.supported_events()) {
                events.push_back({{"event_name", e.event_name()}, {"arg_names", listJson(e.arg_names())}});
                os << "  " << e.event_name();
                if (e.arg_names_size() > 0) os << "  args: " << join(e.arg_names());
                os << "\n";
            }
            objs.push_back({{"supported_obj_path", so.supported_obj_path()},
                            {"access", Gsdm::ObjAccessType_Name(so.access())},
                            {"is_multi_instance", so.is_multi_instance()},
                            {"supported_params", params},
                            {"supported_commands", cmds},
                            {"supported_events", events},
                            {"unique_key_sets", keys},
                            {"divergent_paths", listJson(so.divergent_paths())}});
        }
        results.push_back({{"req_obj_path", ro.req_obj_path()},
                           {"err_code", ro.err_code()},
                           {"err_msg", ro.err_msg()},
                           {"data_model_inst_uri", ro.data_model_inst_uri()},
                           {"supported_objs", objs}});
    }
    r.json = {{"get_supported_dm_resp", {{"req_obj_results", results}}}};
    r.text = os.str();
    return r;
}

Rendered renderOperate(const usp::OperateResp& o) {
    Rendered r;
    json results = json::array();
    std::ostringstream os;
    for (const auto& res : o.operation_results()) {
        json j = {{"executed_command", res.executed_command()}};
        switch (res.operation_resp_case()) {
            case usp::OperateResp::OperationResult::kReqObjPath:
                j["req_obj_path"] = res.req_obj_path();
                os << res.executed_command() << ": started as " << res.req_obj_path() << "\n";
                break;
            case usp::OperateResp::OperationResult::kReqOutputArgs:
                j["req_output_args"] = {{"output_args", mapJson(res.req_output_args().output_args())}};
                os << res.executed_command() << ": ok\n";
                for (const auto& [k, v] : sorted(res.req_output_args().output_args())) os << "  " << k << " = " << v << "\n";
                break;
            case usp::OperateResp::OperationResult::kCmdFailure:
                j["cmd_failure"] = {{"err_code", res.cmd_failure().err_code()}, {"err_msg", res.cmd_failure().err_msg()}};
                errorLine(os, res.executed_command(), res.cmd_failure().err_code(), res.cmd_failure().err_msg());
                r.failed = true;
                break;
            default:
                os << res.executed_command() << ": (empty result)\n";
                break;
        }
        results.push_back(j);
    }
    r.json = {{"operate_resp", {{"operation_results", results}}}};
    r.text = os.str();
    return r;
}

}  // namespace

std::string describeUspError(unsigned code, const std::string& message) {
    std::ostringstream os;
    os << "error " << code;
    auto name = berth::errorCodeName(static_cast<berth::ErrorCode>(code));
    if (!name.empty()) os << " " << name;
    if (!message.empty() && message != name) os << ": " << message;
    return os.str();
}

Rendered renderAnswer(const usp::Msg& answer) {
    Rendered r;
    const auto& body = answer.body();
    if (body.has_error()) {
        r = renderError(body.error());
    } else if (body.has_response()) {
        const auto& resp = body.response();
        switch (resp.resp_type_case()) {
            case usp::Response::kGetResp: r = renderGet(resp.get_resp()); break;
            case usp::Response::kSetResp: r = renderSet(resp.set_resp()); break;
            case usp::Response::kAddResp: r = renderAdd(resp.add_resp()); break;
            case usp::Response::kDeleteResp: r = renderDelete(resp.delete_resp()); break;
            case usp::Response::kGetInstancesResp: r = renderInstances(resp.get_instances_resp()); break;
            case usp::Response::kGetSupportedDmResp: r = renderGsdm(resp.get_supported_dm_resp()); break;
            case usp::Response::kOperateResp: r = renderOperate(resp.operate_resp()); break;
            case usp::Response::kGetSupportedProtocolResp: {
                const auto& v = resp.get_supported_protocol_resp().agent_supported_protocol_versions();
                r.json = {{"get_supported_protocol_resp", {{"agent_supported_protocol_versions", v}}}};
                r.text = v + "\n";
                break;
            }
            default:
                r.json = {{"response", "unexpected response type"}};
                r.text = "unexpected response type " + std::to_string(resp.resp_type_case()) + "\n";
                r.failed = true;
                break;
        }
    } else {
        r.json = {{"response", "empty body"}};
        r.text = "the agent sent an empty message body\n";
        r.failed = true;
    }
    r.json["msg_id"] = answer.header().msg_id();
    return r;
}

Rendered renderNotify(const usp::Msg& msg) {
    Rendered r;
    const auto& n = msg.body().request().notify();
    json j = {{"subscription_id", n.subscription_id()}, {"send_resp", n.send_resp()}};
    std::ostringstream os;
    os << "[" << n.subscription_id() << "] ";
    switch (n.notification_case()) {
        case usp::Notify::kEvent:
            j["event"] = {{"obj_path", n.event().obj_path()},
                          {"event_name", n.event().event_name()},
                          {"params", mapJson(n.event().params())}};
            os << "event " << n.event().obj_path() << n.event().event_name() << "\n";
            for (const auto& [k, v] : sorted(n.event().params())) os << "  " << k << " = " << v << "\n";
            break;
        case usp::Notify::kValueChange:
            j["value_change"] = {{"param_path", n.value_change().param_path()},
                                 {"param_value", n.value_change().param_value()}};
            os << "value change " << n.value_change().param_path() << " = " << n.value_change().param_value() << "\n";
            break;
        case usp::Notify::kObjCreation:
            j["obj_creation"] = {{"obj_path", n.obj_creation().obj_path()},
                                 {"unique_keys", mapJson(n.obj_creation().unique_keys())}};
            os << "object created " << n.obj_creation().obj_path() << "\n";
            for (const auto& [k, v] : sorted(n.obj_creation().unique_keys())) os << "  " << k << " = " << v << "\n";
            break;
        case usp::Notify::kObjDeletion:
            j["obj_deletion"] = {{"obj_path", n.obj_deletion().obj_path()}};
            os << "object deleted " << n.obj_deletion().obj_path() << "\n";
            break;
        case usp::Notify::kOperComplete: {
            const auto& oc = n.oper_complete();
            json o = {{"obj_path", oc.obj_path()}, {"command_name", oc.command_name()}, {"command_key", oc.command_key()}};
            os << "operation complete " << oc.obj_path() << oc.command_name() << " (key " << oc.command_key() << ")";
            if (oc.has_cmd_failure()) {
                o["cmd_failure"] = {{"err_code", oc.cmd_failure().err_code()}, {"err_msg", oc.cmd_failure().err_msg()}};
                os << ": " << describeUspError(oc.cmd_failure().err_code(), oc.cmd_failure().err_msg()) << "\n";
                r.failed = true;
            } else {
                o["req_output_args"] = {{"output_args", mapJson(oc.req_output_args().output_args())}};
                os << ": ok\n";
                for (const auto& [k, v] : sorted(oc.req_output_args().output_args())) os << "  " << k << " = " << v << "\n";
            }
            j["oper_complete"] = o;
            break;
        }
        case usp::Notify::kOnBoardReq: {
            const auto& ob = n.on_board_req();
            j["on_board_req"] = {{"oui", ob.oui()},
                                 {"product_class", ob.product_class()},
                                 {"serial_number", ob.serial_number()},
                                 {"agent_supported_protocol_versions", ob.agent_supported_protocol_versions()}};
            os << "onboard request " << ob.oui() << "-" << ob.product_class() << "-" << ob.serial_number()
               << " (USP " << ob.agent_supported_protocol_versions() << ")\n";
            break;
        }
        default:
            os << "empty notification\n";
            break;
    }
    r.json = {{"notify", j}, {"msg_id", msg.header().msg_id()}};
    r.text = os.str();
    return r;
}

}  // namespace berthctl
