#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <type_traits>

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

namespace {
// A leaf module's own error kind, the way oci::RunnerError is one.
enum class ParseKind { kEmpty, kNotANumber };
struct ParseError {
    ParseKind kind = ParseKind::kEmpty;
    std::string where;
};
using ParseResult = Result<int, ParseError>;
using ParseStatus = Result<void, ParseError>;

ParseResult parseDigit(const std::string& s) {
    if (s.empty()) return ParseError{ParseKind::kEmpty, "input"};
    if (s.size() != 1 || s[0] < '0' || s[0] > '9') return ParseError{ParseKind::kNotANumber, s};
    return s[0] - '0';
}
ParseStatus requireDigits(const std::string& a, const std::string& b) {
    BERTH_TRY(parseDigit(a));
    BERTH_TRY(parseDigit(b));
    return {};
}
Result<std::string, ParseError> sumAsText(const std::string& a, const std::string& b) {
    BERTH_TRY(requireDigits(a, b));
    return std::to_string(*parseDigit(a) + *parseDigit(b));
}
}  // namespace

TEST_CASE("Result with a module's own error type holds the value or that error", "[core]") {
    auto good = parseDigit("7");
    REQUIRE(good.ok());
    CHECK(*good == 7);
    CHECK(good.valueOr(0) == 7);
    auto bad = parseDigit("x");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().kind == ParseKind::kNotANumber);
    CHECK(bad.error().where == "x");
    CHECK(bad.valueOr(-1) == -1);
    static_assert(std::is_same_v<ParseResult::error_type, ParseError>);
    static_assert(std::is_same_v<berth::Result<int>::error_type, Error>);
}

TEST_CASE("BERTH_TRY propagates a module's own error type through void and value Results", "[core]") {
    CHECK(requireDigits("1", "2").ok());
    auto st = requireDigits("1", "");
    REQUIRE_FALSE(st);
    CHECK(st.error().kind == ParseKind::kEmpty);
    CHECK(st.error().where == "input");

    auto sum = sumAsText("4", "5");
    REQUIRE(sum);
    CHECK(*sum == "9");
    auto failed = sumAsText("4", "five");
    REQUIRE_FALSE(failed);
    CHECK(failed.error().kind == ParseKind::kNotANumber);
    CHECK(failed.error().where == "five");
}

TEST_CASE("Result with a custom error moves a move-only value and a move-only error out", "[core]") {
    struct OwnedError {
        std::unique_ptr<std::string> what;
    };
    Result<std::unique_ptr<int>, OwnedError> ok(std::make_unique<int>(3));
    REQUIRE(ok);
    CHECK(*std::move(ok).value() == 3);
    Result<void, OwnedError> bad(OwnedError{std::make_unique<std::string>("gone")});
    REQUIRE_FALSE(bad);
    OwnedError e = std::move(bad).error();
    CHECK(*e.what == "gone");
}
