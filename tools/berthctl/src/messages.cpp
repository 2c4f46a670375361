#include "messages.h"

namespace berthctl {

using berth::Error;
using berth::ErrorCode;
using berth::Result;

namespace {

usp::Msg requestMsg(const std::string& msgId, usp::Header::MsgType type) {
    usp::Msg msg;
    msg.mutable_header()->set_msg_id(msgId);
    msg.mutable_header()->set_msg_type(type);
    return msg;
}

}  // namespace

Result<std::pair<std::string, std::string>> splitAssignment(std::string_view word) {
    int depth = 0;
    bool quoted = false;
    for (std::size_t i = 0; i < word.size(); ++i) {
        char c = word[i];
        if (c == '"' && depth > 0) quoted = !quoted;
        if (quoted) continue;
        if (c == '[') ++depth;
        if (c == ']' && depth > 0) --depth;
        if (c == '=' && depth == 0) {
            if (i == 0) return Error(ErrorCode::kInvalidArguments, "empty name in '" + std::string(word) + "'");
            return std::make_pair(std::string(word.substr(0, i)), std::string(word.substr(i + 1)));
        }
    }
    return Error(ErrorCode::kInvalidArguments, "expected Name=value, got '" + std::string(word) + "'");
}

usp::Msg makeGet(const std::string& msgId, const std::vector<std::string>& paths, unsigned maxDepth) {
    auto msg = requestMsg(msgId, usp::Header::GET);
    auto* get = msg.mutable_body()->mutable_request()->mutable_get();
    for (const auto& p : paths) get->add_param_paths(p);
    get->set_max_depth(maxDepth);
    return msg;
}

Result<usp::Msg> makeSet(const std::string& msgId, const std::vector<std::string>& assignments,
                         const SetOptions& options) {
    auto msg = requestMsg(msgId, usp::Header::SET);
    auto* set = msg.mutable_body()->mutable_request()->mutable_set();
    set->set_allow_partial(options.allowPartial);
    // Keep the objects in the order they first appear on the command line.
    std::map<std::string, usp::Set::UpdateObject*> byObject;
    for (const auto& word : assignments) {
        auto kv = splitAssignment(word);
        if (!kv) return kv.error();
        const auto& path = kv->first;
        auto dot = path.rfind('.');
        if (dot == std::string::npos || dot + 1 == path.size() || path.back() == ']')
            return Error(ErrorCode::kInvalidArguments,
                         "'" + path + "' is not a parameter path (expected Device.Object.Param=value)");
        std::string obj = path.substr(0, dot + 1);
        auto& update = byObject[obj];
        if (!update) {
            update = set->add_update_objs();
            update->set_obj_path(obj);
        }
        auto* setting = update->add_param_settings();
        setting->set_param(path.substr(dot + 1));
        setting->set_value(kv->second);
        setting->set_required(options.required);
    }
    if (set->update_objs_size() == 0)
        return Error(ErrorCode::kInvalidArguments, "nothing to set: give Device.Object.Param=value");
    return msg;
}

Result<usp::Msg> makeAdd(const std::string& msgId, const std::string& objPath,
                         const std::vector<std::string>& assignments, const AddOptions& options) {
    if (objPath.empty() || objPath.back() != '.')
        return Error(ErrorCode::kInvalidArguments, "'" + objPath + "' is not an object path (it must end in '.')");
    auto msg = requestMsg(msgId, usp::Header::ADD);
    auto* add = msg.mutable_body()->mutable_request()->mutable_add();
    add->set_allow_partial(options.allowPartial);
    auto* create = add->add_create_objs();
    create->set_obj_path(objPath);
    for (const auto& word : assignments) {
        auto kv = splitAssignment(word);
        if (!kv) return kv.error();
        auto* setting = create->add_param_settings();
        setting->set_param(kv->first);
        setting->set_value(kv->second);
        setting->set_required(options.required);
    }
    return msg;
}

usp::Msg makeDelete(const std::string& msgId, const std::vector<std::string>& paths, bool allowPartial) {
    auto msg = requestMsg(msgId, usp::Header::DELETE);
    auto* del = msg.mutable_body()->mutable_request()->mutable_delete_();
    del->set_allow_partial(allowPartial);
    for (const auto& p : paths) del->add_obj_paths(p);
    return msg;
}

usp::Msg makeGetInstances(const std::string& msgId, const std::vector<std::string>& paths, bool firstLevelOnly) {
    auto msg = requestMsg(msgId, usp::Header::GET_INSTANCES);
    auto* gi = msg.mutable_body()->mutable_request()->mutable_get_instances();
    for (const auto& p : paths) gi->add_obj_paths(p);
    gi->set_first_level_only(firstLevelOnly);
    return msg;
}

usp::Msg makeGetSupportedDm(const std::string& msgId, const std::vector<std::string>& paths,
                            const GsdmOptions& options) {
    auto msg = requestMsg(msgId, usp::Header::GET_SUPPORTED_DM);
    auto* g = msg.mutable_body()->mutable_request()->mutable_get_supported_dm();
    for (const auto& p : paths) g->add_obj_paths(p);
    g->set_first_level_only(options.firstLevelOnly);
    g->set_return_commands(options.returnCommands);
    g->set_return_events(options.returnEvents);
    g->set_return_params(options.returnParams);
    g->set_return_unique_key_sets(options.returnUniqueKeySets);
    return msg;
}

usp::Msg makeGetSupportedProtocol(const std::string& msgId, const std::string& versions) {
    auto msg = requestMsg(msgId, usp::Header::GET_SUPPORTED_PROTO);
    msg.mutable_body()->mutable_request()->mutable_get_supported_protocol()->set_controller_supported_protocol_versions(
        versions);
    return msg;
}

Result<usp::Msg> makeOperate(const std::string& msgId, const std::string& command,
                             const std::vector<std::string>& arguments, const OperateOptions& options) {
    if (command.size() < 3 || command.compare(command.size() - 2, 2, "()") != 0)
        return Error(ErrorCode::kInvalidArguments, "'" + command + "' is not a command path (it must end in '()')");
    auto msg = requestMsg(msgId, usp::Header::OPERATE);
    auto* op = msg.mutable_body()->mutable_request()->mutable_operate();
    op->set_command(command);
    op->set_command_key(options.commandKey);
    op->set_send_resp(options.sendResp);
    for (const auto& word : arguments) {
        auto kv = splitAssignment(word);
        if (!kv) return kv.error();
        (*op->mutable_input_args())[kv->first] = kv->second;
    }
    return msg;
}

usp::Msg makeNotifyResp(const std::string& msgId, const std::string& subscriptionId) {
    usp::Msg msg;
    msg.mutable_header()->set_msg_id(msgId);
    msg.mutable_header()->set_msg_type(usp::Header::NOTIFY_RESP);
    msg.mutable_body()->mutable_response()->mutable_notify_resp()->set_subscription_id(subscriptionId);
    return msg;
}

}  // namespace berthctl
