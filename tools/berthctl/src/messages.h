#pragma once
// Building USP requests from berthctl's command-line words. Pure functions: no I/O.
//
// Word syntax:
//   Set:     Device.X.Y.Param=value          (objects grouped: one UpdateObject per object path)
//   Add:     Param=value                     (relative to the object being added)
//   Operate: Arg=value                       (relative input-argument names)
// The '=' that separates name and value is the first one outside a search expression
// ("[...]"), so `Device.IP.Interface.[Alias=="wan"].Enable=true` works. Values may
// contain '=' and '.'.
//
// Errors (kInvalidArguments, for exit code 2): a word without '=', an empty name, a Set
// path that is not a parameter path.

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/core/result.h"
#include "usp-msg-1-4.pb.h"

namespace berthctl {

// "name=value" split at the first '=' outside brackets.
berth::Result<std::pair<std::string, std::string>> splitAssignment(std::string_view word);

struct SetOptions {
    bool allowPartial = false;
    bool required = true;
};
struct AddOptions {
    bool allowPartial = false;
    bool required = true;
};
struct GsdmOptions {
    bool firstLevelOnly = false;
    bool returnCommands = true;
    bool returnEvents = true;
    bool returnParams = true;
    bool returnUniqueKeySets = true;
};
struct OperateOptions {
    std::string commandKey;
    bool sendResp = true;
};

// Each builder returns a complete usp::Msg (header msg_id and msg_type set).
usp::Msg makeGet(const std::string& msgId, const std::vector<std::string>& paths, unsigned maxDepth);
berth::Result<usp::Msg> makeSet(const std::string& msgId, const std::vector<std::string>& assignments,
                                const SetOptions& options);
berth::Result<usp::Msg> makeAdd(const std::string& msgId, const std::string& objPath,
                                const std::vector<std::string>& assignments, const AddOptions& options);
usp::Msg makeDelete(const std::string& msgId, const std::vector<std::string>& paths, bool allowPartial);
usp::Msg makeGetInstances(const std::string& msgId, const std::vector<std::string>& paths, bool firstLevelOnly);
usp::Msg makeGetSupportedDm(const std::string& msgId, const std::vector<std::string>& paths,
                            const GsdmOptions& options);
usp::Msg makeGetSupportedProtocol(const std::string& msgId, const std::string& versions);
berth::Result<usp::Msg> makeOperate(const std::string& msgId, const std::string& command,
                                    const std::vector<std::string>& arguments, const OperateOptions& options);
// NotifyResp answering a Notify (echoes its subscription_id, R-NOT.10).
usp::Msg makeNotifyResp(const std::string& msgId, const std::string& subscriptionId);

}  // namespace berthctl
