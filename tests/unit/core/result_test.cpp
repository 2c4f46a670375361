#include <catch2/catch.hpp>

#include "berth/core/result.h"

using berth::Error;
using berth::ErrorCode;
using berth::Result;
using berth::Status;

namespace {
Result<int> parsePositive(int v) {
    if (v <= 0) return Error(ErrorCode::kInvalidValue, "must be positive", "Device.X.Y");
    return v;
}
Status chain(int v) {
    BERTH_TRY(parsePositive(v));
    return {};
}
}  // namespace

TEST_CASE("Result holds a value or an error with its USP code", "[core]") {
    auto good = parsePositive(3);
    REQUIRE(good.ok());
    CHECK(*good == 3);
    auto bad = parsePositive(-1);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().numeric() == 7012);
    CHECK(bad.error().path == "Device.X.Y");
    CHECK(bad.error().describe() == "7012 Invalid value: must be positive (path: Device.X.Y)");
}

TEST_CASE("BERTH_TRY propagates the first error unchanged", "[core]") {
    CHECK(chain(1).ok());
    auto st = chain(0);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == ErrorCode::kInvalidValue);
}

TEST_CASE("Error codes carry the numeric values TR-369 and TR-181 assign", "[core]") {
    CHECK(static_cast<int>(ErrorCode::kInvalidPath) == 7026);
    CHECK(static_cast<int>(ErrorCode::kPermissionDenied) == 7006);
    CHECK(static_cast<int>(ErrorCode::kInvalidCommandArguments) == 7027);
    CHECK(static_cast<int>(ErrorCode::kCommandCanceled) == 7023);
    CHECK(static_cast<int>(ErrorCode::kSessionContextNotAllowed) == 7106);
    CHECK(static_cast<int>(ErrorCode::kRecordNotParsed) == 7100);
    CHECK(static_cast<int>(ErrorCode::kCorruptData) == 7035);
    CHECK(static_cast<int>(ErrorCode::kDuplicateDeploymentUnit) == 7226);
    CHECK(static_cast<int>(ErrorCode::kInvalidDuState) == 7229);
    CHECK(berth::errorCodeName(ErrorCode::kInvalidPath) == "Invalid path");
}

TEST_CASE("Result of a move-only type can be moved out", "[core]") {
    Result<std::unique_ptr<int>> r(std::make_unique<int>(5));
    REQUIRE(r);
    std::unique_ptr<int> p = std::move(r).value();
    CHECK(*p == 5);
}
