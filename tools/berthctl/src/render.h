#pragma once
// Turning an Agent's answer into text for people or JSON for scripts, and deciding
// whether it counts as a failure (exit code 1).
//
// JSON mirrors the USP message: the top-level key is the body's field name
// ("get_resp", "set_resp", ..., "error", "notify"), nested keys are the protobuf
// field names, maps become objects, enums their protobuf names. "msg_id" is added at
// the top level.
//
// Text: one line per parameter as `Device.Path.Param = value` (sorted by path), and
// `<path>: error <code> <name>: <message>` for every per-path failure.

#include <nlohmann/json.hpp>
#include <string>

#include "usp-msg-1-4.pb.h"

namespace berthctl {

struct Rendered {
    nlohmann::json json;
    std::string text;     // ends with '\n' unless empty
    bool failed = false;  // an Error message, or a per-path / per-object / per-command failure
};

Rendered renderAnswer(const usp::Msg& answer);
// A Notify request, for `watch` and `operate --wait`.
Rendered renderNotify(const usp::Msg& notify);

// "error 7026 Invalid path: <message>"
std::string describeUspError(unsigned code, const std::string& message);

}  // namespace berthctl
