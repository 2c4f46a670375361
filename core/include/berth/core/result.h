#pragma once
// Result<T>: a value or an Error, shaped like std::expected (which the clang 14
// toolchain here cannot compile). Project code returns Result instead of throwing
// across module boundaries.
//
//   Result<int> parse(std::string_view s);
//   auto r = parse("42");
//   if (!r) return r.error();          // Error converts into any Result<U>
//   use(*r);

#include <cassert>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include "berth/core/error.h"

namespace berth {

template <typename T>
class [[nodiscard]] Result {
public:
    static_assert(!std::is_same_v<T, Error>, "Result<Error> is meaningless");

    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT(google-explicit-constructor)
    Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT(google-explicit-constructor)
    template <typename U, typename = std::enable_if_t<std::is_constructible_v<T, U&&> &&
                                                      !std::is_same_v<std::decay_t<U>, Error> &&
                                                      !std::is_same_v<std::decay_t<U>, T>>>
    Result(U&& value) : v_(std::in_place_index<0>, T(std::forward<U>(value))) {}  // NOLINT

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & { assert(ok()); return std::get<0>(v_); }
    const T& value() const& { assert(ok()); return std::get<0>(v_); }
    T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const& { assert(!ok()); return std::get<1>(v_); }
    Error&& error() && { assert(!ok()); return std::get<1>(std::move(v_)); }

    template <typename U>
    T valueOr(U&& fallback) const& { return ok() ? value() : T(std::forward<U>(fallback)); }

private:
    std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : error_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

    bool ok() const { return !error_.has_value(); }
    explicit operator bool() const { return ok(); }
    const Error& error() const& { assert(!ok()); return *error_; }
    Error&& error() && { assert(!ok()); return std::move(*error_); }

private:
    std::optional<Error> error_;
};

using Status = Result<void>;

inline Status okStatus() { return {}; }

}  // namespace berth

// Propagate an error from an expression returning Result<...>/Status.
#define BERTH_TRY(expr)                                  \
    do {                                                 \
        auto berthTryResult_ = (expr);                   \
        if (!berthTryResult_) return std::move(berthTryResult_).error(); \
    } while (0)
