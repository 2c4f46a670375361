#pragma once
// USP error codes and the Error value carried by Result<T>.
//
// Numeric values are the ones TR-369 (7000-7031, 7100-7106) and TR-181
// (72xx software-module codes, 7032-7037 transfer/trust codes) assign. Leaf
// modules may keep their own error kinds and map them at the seam that knows
// both sides; everything that crosses a module boundary is an Error.

#include <cstdint>
#include <string>
#include <string_view>

namespace berth {

enum class ErrorCode : std::uint32_t {
    kOk = 0,
    // TR-369 message-level codes.
    kMessageFailed = 7000,
    kMessageNotSupported = 7001,
    kRequestDenied = 7002,
    kInternalError = 7003,
    kInvalidArguments = 7004,
    kResourcesExceeded = 7005,
    kPermissionDenied = 7006,
    kInvalidConfiguration = 7007,
    kInvalidPathSyntax = 7008,
    kParameterActionFailed = 7009,
    kUnsupportedParameter = 7010,
    kInvalidType = 7011,
    kInvalidValue = 7012,
    kParameterNotWritable = 7013,
    kValueConflict = 7014,
    kOperationError = 7015,
    kObjectDoesNotExist = 7016,
    kObjectCouldNotBeCreated = 7017,
    kObjectNotTable = 7018,
    kObjectNotCreatable = 7019,
    kObjectCouldNotBeUpdated = 7020,
    kRequiredParameterFailed = 7021,
    kCommandFailure = 7022,
    kCommandCanceled = 7023,
    kDeleteFailure = 7024,
    kDuplicateUniqueKey = 7025,
    kInvalidPath = 7026,
    kInvalidCommandArguments = 7027,
    kRegisterFailure = 7028,
    kAlreadyInUse = 7029,
    kDeregisterFailure = 7030,
    kPathRegisteredByOther = 7031,
    // TR-181 transfer / trust codes (DUStateChange! Fault.FaultCode).
    kUnavailableRole = 7032,
    kServerUnreachable = 7033,
    kServerInsecure = 7034,
    kCorruptData = 7035,
    kBadSignature = 7036,
    kUnavailableUserRole = 7037,
    // TR-369 record-level codes.
    kRecordNotParsed = 7100,
    kSecureSessionRequired = 7101,
    kSecureSessionNotSupported = 7102,
    kSegmentationNotSupported = 7103,
    kRecordFieldInvalid = 7104,
    kSessionContextTerminated = 7105,
    kSessionContextNotAllowed = 7106,
    // TR-181 software-module codes.
    kUnknownExecEnv = 7223,
    kDuExecEnvMismatch = 7225,
    kDuplicateDeploymentUnit = 7226,
    kSystemResourcesExceeded = 7227,
    kInvalidDuState = 7229,
    kInvalidExecEnvState = 7230,
};

// Short English name of a code ("Invalid path"), for logs and err_msg prefixes.
std::string_view errorCodeName(ErrorCode code);

struct Error {
    ErrorCode code = ErrorCode::kInternalError;
    std::string message;  // for people; says what went wrong and, where useful, what to do
    std::string path;     // data-model path or file path the error is about; may be empty

    Error() = default;
    Error(ErrorCode c, std::string msg, std::string p = {})
        : code(c), message(std::move(msg)), path(std::move(p)) {}

    std::uint32_t numeric() const { return static_cast<std::uint32_t>(code); }
    // "7026 Invalid path: <message> (path: X)" for logs.
    std::string describe() const;
};

}  // namespace berth
