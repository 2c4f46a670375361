#pragma once
// Request and response structs of the data-model operations, shaped after the USP
// protobuf messages (usp-msg-1-4.proto) so the agent's translation is field-by-field.
//
// When a response's `error` is set the agent sends a USP Error message (err_code,
// err_msg, param_errs) instead of the normal response. Parameter names in results are
// string_views into the engine's Schema: valid for the engine's lifetime.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/core/error.h"
#include "berth/datamodel/schema.h"

namespace berth::dm {

using ArgMap = std::map<std::string, std::string>;

struct ParamError {
    std::string path;  // full parameter (or object) path
    ErrorCode code = ErrorCode::kOk;
    std::string message;
};

// Body of a USP Error message.
struct MessageError {
    ErrorCode code = ErrorCode::kMessageFailed;
    std::string message;
    std::vector<ParamError> paramErrors;
};

// Responses that can grow with the data model (Get, GetInstances, GetSupportedDM) are
// bounded while they are built: the operation adds up the encoded size of each element
// (protobuf wire size of its strings and their framing, a close upper estimate) and
// stops as soon as the total passes maxResponseBytes, answering with `error` 7005
// Resources Exceeded and no results. 0 = no bound.
std::size_t wireFieldSize(std::size_t payloadBytes);  // tag + length + payload

// ---- Get ---------------------------------------------------------------------------
struct GetRequest {
    std::vector<std::string> paths;
    std::uint32_t maxDepth = 0;  // 0 = unlimited
    std::size_t maxResponseBytes = 0;
};

struct ParamValue {
    std::string_view name;  // relative to the resolved object
    std::string value;
};

struct ResolvedObject {  // ResolvedPathResult
    std::string path;    // "Device.LocalAgent.Subscription.3."
    std::vector<ParamValue> params;
};

struct GetPathResult {  // RequestedPathResult
    std::string requestedPath;
    ErrorCode err = ErrorCode::kOk;
    std::string errMsg;
    std::vector<ResolvedObject> resolved;
};

struct GetResponse {
    std::optional<MessageError> error;  // 7005 when maxResponseBytes was passed
    std::vector<GetPathResult> results;
};

// ---- GetInstances --------------------------------------------------------------------
struct GetInstancesRequest {
    std::vector<std::string> paths;
    bool firstLevelOnly = false;
    std::size_t maxResponseBytes = 0;
};

struct InstanceInfo {  // CurrInstance
    std::string path;  // instantiated_obj_path
    std::vector<std::pair<std::string_view, std::string>> uniqueKeys;
};

struct GetInstancesPathResult {
    std::string requestedPath;
    ErrorCode err = ErrorCode::kOk;
    std::string errMsg;
    std::vector<InstanceInfo> instances;
};

struct GetInstancesResponse {
    std::optional<MessageError> error;  // 7005 when maxResponseBytes was passed
    std::vector<GetInstancesPathResult> results;
};

// ---- GetSupportedDM ------------------------------------------------------------------
struct GsdmRequest {
    std::vector<std::string> paths;
    bool firstLevelOnly = false;
    bool returnCommands = true;
    bool returnEvents = true;
    bool returnParams = true;
    bool returnUniqueKeySets = true;
    std::size_t maxResponseBytes = 0;
};

enum class GsdmParamAccess : std::uint8_t { kReadOnly = 0, kReadWrite = 1, kWriteOnly = 2 };
enum class ValueChangeType : std::uint8_t { kUnknown = 0, kAllowed = 1, kWillIgnore = 2 };
enum class CommandType : std::uint8_t { kUnknown = 0, kSync = 1, kAsync = 2 };

struct SupportedParam {
    std::string_view name;
    GsdmParamAccess access = GsdmParamAccess::kReadOnly;
    ValueType type = ValueType::kString;
    ValueChangeType valueChange = ValueChangeType::kAllowed;
};

struct SupportedCommand {
    std::string_view name;  // "Reboot()"
    std::vector<std::string_view> inputArgs;
    std::vector<std::string_view> outputArgs;
    CommandType type = CommandType::kSync;
};

struct SupportedEvent {
    std::string_view name;
    std::vector<std::string_view> args;
};

struct SupportedObject {
    std::string_view path;  // supported path with {i}
    ObjAccess access = ObjAccess::kReadOnly;
    bool multiInstance = false;
    std::vector<SupportedParam> params;
    std::vector<SupportedCommand> commands;
    std::vector<SupportedEvent> events;
    std::vector<std::vector<std::string_view>> uniqueKeySets;
};

struct GsdmPathResult {  // RequestedObjectResult
    std::string requestedPath;
    ErrorCode err = ErrorCode::kOk;
    std::string errMsg;
    std::string dataModelInstUri;
    std::vector<SupportedObject> objects;
};

struct GsdmResponse {
    std::optional<MessageError> error;  // 7005 when maxResponseBytes was passed
    std::vector<GsdmPathResult> results;
};

// ---- Add -----------------------------------------------------------------------------
struct ParamSetting {
    std::string param;  // relative name
    std::string value;
    bool required = false;
};

struct CreateObject {
    std::string objPath;  // table path, may be a search path
    std::vector<ParamSetting> params;
};

struct AddRequest {
    bool allowPartial = false;
    std::vector<CreateObject> objects;
};

struct CreatedObjectResult {
    std::string requestedPath;
    bool success = false;
    // success (OperationSuccess)
    std::string instantiatedPath;
    std::vector<ParamError> paramErrors;  // failed non-required params
    std::vector<std::pair<std::string_view, std::string>> uniqueKeys;
    // failure (OperationFailure)
    ErrorCode err = ErrorCode::kOk;
    std::string errMsg;
};

struct AddResponse {
    std::optional<MessageError> error;
    std::vector<CreatedObjectResult> results;
};

// ---- Set -----------------------------------------------------------------------------
struct UpdateObject {
    std::string objPath;  // object/instance path, may be a search path
    std::vector<ParamSetting> params;
};

struct SetRequest {
    bool allowPartial = false;
    std::vector<UpdateObject> objects;
};

struct UpdatedInstance {  // UpdatedInstanceResult
    std::string affectedPath;
    std::vector<ParamError> paramErrors;
    std::vector<std::pair<std::string_view, std::string>> updatedParams;
};

struct UpdatedInstanceFailure {
    std::string affectedPath;
    std::vector<ParamError> paramErrors;
};

struct UpdatedObjectResult {
    std::string requestedPath;
    bool success = false;
    std::vector<UpdatedInstance> updated;           // success
    ErrorCode err = ErrorCode::kOk;                 // failure
    std::string errMsg;
    std::vector<UpdatedInstanceFailure> failures;  // failure
};

struct SetResponse {
    std::optional<MessageError> error;
    std::vector<UpdatedObjectResult> results;
};

// ---- Delete --------------------------------------------------------------------------
struct DeleteRequest {
    bool allowPartial = false;
    std::vector<std::string> paths;
};

struct DeletedObjectResult {
    std::string requestedPath;
    bool success = false;
    std::vector<std::string> affectedPaths;  // success
    std::vector<ParamError> unaffected;      // success: UnaffectedPathError
    ErrorCode err = ErrorCode::kOk;          // failure
    std::string errMsg;
};

struct DeleteResponse {
    std::optional<MessageError> error;
    std::vector<DeletedObjectResult> results;
};

// ---- Operate -------------------------------------------------------------------------
struct CommandCall {
    std::string objPath;      // "Device.SoftwareModules." (instance path of the command's object)
    std::string command;      // "InstallDU()"
    std::string commandPath;  // objPath + command
    std::string commandKey;
    ArgMap input;  // validated; unknown args dropped, defaults filled in
    // Asynchronous commands: the Device.LocalAgent.Request.{i}. row of this call, set
    // before the handler runs (empty for synchronous calls). Identifies the call to a
    // cancel handler.
    std::string requestPath;
};

// Hooks the agent gives for asynchronous commands: createRequest is called when an async
// command is accepted and returns the Device.LocalAgent.Request.{i}. path reported as
// req_obj_path; completed is called (on the loop thread) when the handler finishes.
struct AsyncHooks {
    std::function<Result<std::string>(const CommandCall&)> createRequest;
    std::function<void(const CommandCall&, const std::string& requestPath, Result<ArgMap>)> completed;
};

struct OperateRequest {
    std::string command;  // command path, may be a search path
    std::string commandKey;
    ArgMap inputArgs;
};

struct OperationResult {
    enum class Kind : std::uint8_t { kOutputArgs, kRequestPath, kFailure };
    std::string executedCommand;
    Kind kind = Kind::kFailure;
    ArgMap outputArgs;        // kOutputArgs
    std::string requestPath;  // kRequestPath
    ErrorCode err = ErrorCode::kOk;  // kFailure
    std::string errMsg;
};

struct OperateResponse {
    std::optional<MessageError> error;
    std::vector<OperationResult> results;
};

}  // namespace berth::dm
