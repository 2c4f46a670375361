#include "berth/core/error.h"

#include <sstream>

namespace berth {

std::string_view errorCodeName(ErrorCode code) {
    switch (code) {
        case ErrorCode::kOk: return "Success";
        case ErrorCode::kMessageFailed: return "Message failed";
        case ErrorCode::kMessageNotSupported: return "Message not supported";
        case ErrorCode::kRequestDenied: return "Request denied";
        case ErrorCode::kInternalError: return "Internal error";
        case ErrorCode::kInvalidArguments: return "Invalid arguments";
        case ErrorCode::kResourcesExceeded: return "Resources exceeded";
        case ErrorCode::kPermissionDenied: return "Permission denied";
        case ErrorCode::kInvalidConfiguration: return "Invalid configuration";
        case ErrorCode::kInvalidPathSyntax: return "Invalid path syntax";
        case ErrorCode::kParameterActionFailed: return "Parameter action failed";
        case ErrorCode::kUnsupportedParameter: return "Unsupported parameter";
        case ErrorCode::kInvalidType: return "Invalid type";
        case ErrorCode::kInvalidValue: return "Invalid value";
        case ErrorCode::kParameterNotWritable: return "Parameter not writable";
        case ErrorCode::kValueConflict: return "Value conflict";
        case ErrorCode::kOperationError: return "Operation error";
        case ErrorCode::kObjectDoesNotExist: return "Object does not exist";
        case ErrorCode::kObjectCouldNotBeCreated: return "Object could not be created";
        case ErrorCode::kObjectNotTable: return "Object is not a table";
        case ErrorCode::kObjectNotCreatable: return "Object is not creatable";
        case ErrorCode::kObjectCouldNotBeUpdated: return "Object could not be updated";
        case ErrorCode::kRequiredParameterFailed: return "Required parameter failed";
        case ErrorCode::kCommandFailure: return "Command failure";
        case ErrorCode::kCommandCanceled: return "Command canceled";
        case ErrorCode::kDeleteFailure: return "Delete failure";
        case ErrorCode::kDuplicateUniqueKey: return "Object exists with duplicate key";
        case ErrorCode::kInvalidPath: return "Invalid path";
        case ErrorCode::kInvalidCommandArguments: return "Invalid command arguments";
        case ErrorCode::kRegisterFailure: return "Register failure";
        case ErrorCode::kAlreadyInUse: return "Already in use";
        case ErrorCode::kDeregisterFailure: return "Deregister failure";
        case ErrorCode::kPathRegisteredByOther: return "Path registered by another endpoint";
        case ErrorCode::kUnavailableRole: return "Unavailable role";
        case ErrorCode::kServerUnreachable: return "Server unreachable";
        case ErrorCode::kServerInsecure: return "Server insecure";
        case ErrorCode::kCorruptData: return "Corrupt data";
        case ErrorCode::kBadSignature: return "Bad signature";
        case ErrorCode::kUnavailableUserRole: return "Unavailable user role";
        case ErrorCode::kRecordNotParsed: return "Record could not be parsed";
        case ErrorCode::kSecureSessionRequired: return "Secure session required";
        case ErrorCode::kSecureSessionNotSupported: return "Secure session not supported";
        case ErrorCode::kSegmentationNotSupported: return "Segmentation and reassembly not supported";
        case ErrorCode::kRecordFieldInvalid: return "Invalid record field";
        case ErrorCode::kSessionContextTerminated: return "Session context terminated";
        case ErrorCode::kSessionContextNotAllowed: return "Session context not allowed";
        case ErrorCode::kUnknownExecEnv: return "Unknown execution environment";
        case ErrorCode::kDuExecEnvMismatch: return "Deployment unit to execution environment mismatch";
        case ErrorCode::kDuplicateDeploymentUnit: return "Duplicate deployment unit";
        case ErrorCode::kSystemResourcesExceeded: return "System resources exceeded";
        case ErrorCode::kInvalidDuState: return "Invalid deployment unit state";
        case ErrorCode::kInvalidExecEnvState: return "Invalid execution environment state";
    }
    return "Unknown error";
}

std::string Error::describe() const {
    std::ostringstream os;
    os << numeric() << ' ' << errorCodeName(code);
    if (!message.empty()) os << ": " << message;
    if (!path.empty()) os << " (path: " << path << ')';
    return os.str();
}

}  // namespace berth
