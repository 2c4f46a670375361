#pragma once
// Message handlers: translate one USP request Msg into the data-model engine's
// operation and the engine's result back into the response Msg (or an Error Msg).
// The semantics (allow_partial, required parameters, path resolution, permissions)
// live in the engine; this layer is field-by-field translation.
//
// Threading: loop thread only (the engine's thread).

#include <cstddef>
#include <optional>
#include <string>

#include "berth/datamodel/engine.h"
#include "usp-msg-1-4.pb.h"

namespace berth::agent {

// What one request may make the agent do (docs/security.md). A request over a limit
// is answered with an Error 7005 Resources Exceeded and changes nothing.
struct RequestLimits {
    // Paths in one Get, GetInstances, GetSupportedDM or Delete. Identical paths count
    // (and are answered) once.
    std::size_t maxPaths = 256;
    // Objects plus parameter settings in one Set or Add; input arguments of one Operate.
    std::size_t maxParams = 1024;
    // Encoded size a Get, GetInstances or GetSupportedDM response may reach; it is
    // checked while the response is built, which stops as soon as it is passed.
    std::size_t maxResponseBytes = std::size_t{1} << 20;
};

struct HandlerContext {
    dm::Engine& engine;
    const dm::Permissions& permissions;
    // For asynchronous Operate: creates the Request.{i} row and reports completion.
    dm::AsyncHooks asyncHooks;
    RequestLimits limits{};
};

// Answers `request` (a Msg whose body holds a Request the agent serves). Returns the
// response or Error Msg with the request's msg_id, or nullopt when nothing is to be sent
// (Operate with send_resp=false whose commands were all accepted).
std::optional<usp::Msg> handleRequest(const usp::Msg& request, HandlerContext& ctx);

}  // namespace berth::agent
