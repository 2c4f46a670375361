#pragma once
// The one place where OCI runner failures become USP fault codes.
//
// Every oci::ErrorKind has one row: the TR-181/TR-369 code reported in
// OperationComplete and DUStateChange! (72xx, 7032-7037, 7002-7004, 7023) and a hint
// telling a person what to do about it. See docs/software-modules.md for the table.
// Pure functions; any thread.

#include <string>
#include <string_view>
#include <vector>

#include "berth/core/error.h"
#include "berth/oci/error.h"

namespace berth::smm {

struct FaultMapping {
    oci::ErrorKind kind;
    ErrorCode code;
    std::string_view hint;  // what a person can do about it
};

// The whole table, one row per ErrorKind (for documentation and tests).
const std::vector<FaultMapping>& faultTable();

// The row for `kind`.
const FaultMapping& faultFor(oci::ErrorKind kind);

// "<what> failed: <runner message> (<hint>)" with the mapped code; the runner's path
// becomes the error path. `what` names the step ("download of http://...", "stop of EU x").
Error toUspError(const oci::RunnerError& error, std::string_view what);

}  // namespace berth::smm
