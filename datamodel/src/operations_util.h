#pragma once
// Helpers shared by the USP operations (operations*.cpp), private to the module.

#include <string>
#include <utility>
#include <vector>

#include "berth/datamodel/engine.h"
#include "engine_impl.h"

namespace berth::dm::detail {

// The err_code of an Error message that carries param_errs: failures caused by the
// request's own arguments are reported as 7004 Invalid arguments, the specific codes
// go in param_errs; other failures (7006, 7003, ...) keep their code.
inline ErrorCode outerCode(ErrorCode c) {
    switch (c) {
        case ErrorCode::kInvalidPathSyntax:
        case ErrorCode::kUnsupportedParameter:
        case ErrorCode::kInvalidType:
        case ErrorCode::kInvalidValue:
        case ErrorCode::kParameterNotWritable:
        case ErrorCode::kValueConflict:
        case ErrorCode::kObjectDoesNotExist:
        case ErrorCode::kObjectCouldNotBeCreated:
        case ErrorCode::kObjectNotTable:
        case ErrorCode::kObjectNotCreatable:
        case ErrorCode::kObjectCouldNotBeUpdated:
        case ErrorCode::kRequiredParameterFailed:
        case ErrorCode::kDeleteFailure:
        case ErrorCode::kDuplicateUniqueKey:
        case ErrorCode::kInvalidPath:
            return ErrorCode::kInvalidArguments;
        default:
            return c;
    }
}

inline MessageError messageError(ErrorCode code, std::string msg, std::vector<ParamError> errs) {
    MessageError e;
    e.code = outerCode(code);
    e.message = std::move(msg);
    e.paramErrors = std::move(errs);
    return e;
}

inline bool readable(const Permissions& perms, const ObjNode& n) {
    return perms.isFullAccess() || (perms.forObject(n.path).obj & kPermRead);
}

}  // namespace berth::dm::detail
