#pragma once
// TR-106 lexical forms: validation of values against a ParamSchema and typed comparison
// for search expressions.

#include <optional>
#include <string>
#include <string_view>

#include "berth/datamodel/path.h"
#include "berth/datamodel/schema.h"

namespace berth::dm {

Result<std::string> validateValue(const ParamSchema& p, std::string_view value);

// Evaluates "actual op literal" for a parameter of the given schema. Returns 7008 when the
// literal does not fit the type or the operator is not allowed for it (string, boolean:
// only == and !=, plus ~= on lists).
Result<bool> compareValue(const ParamSchema& p, std::string_view actual, CompareOp op, const Condition& cond);

// Splits a comma-separated TR-106 list, trimming blanks around items.
void splitList(std::string_view s, std::vector<std::string_view>& out);

}  // namespace berth::dm
