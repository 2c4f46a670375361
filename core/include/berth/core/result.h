#pragma once
// Result<T, E>: a value or an error, shaped like std::expected (which the clang 14
// toolchain here cannot compile). Project code returns Result instead of throwing
// across module boundaries. E defaults to berth::Error (a USP code, a message and a
// path); leaf modules use their own error type (oci::RunnerError) and map it once,
// at the seam that knows both sides.
//
//   Result<int> parse(std::string_view s);
//   auto r = parse("42");
//   if (!r) return r.error();          // an E converts into any Result<U, E>
//   use(*r);
//
// Result<void, E> holds nothing or an E; Status is Result<void>.

#include <cassert>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include "berth/core/error.h"

namespace berth {

template <typename T, typename E = Error>
class [[nodiscard]] Result {
public:
    static_assert(!std::is_same_v<T, E>, "Result<E, E> is meaningless");
    static_assert(!std::is_reference_v<T> && !std::is_reference_v<E>, "Result holds values");

    using value_type = T;
    using error_type = E;

    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT(google-explicit-constructor)
    Result(E error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT(google-explicit-constructor)
    template <typename U, typename = std::enable_if_t<std::is_constructible_v<T, U&&> &&
                                                      !std::is_same_v<std::decay_t<U>, E> &&
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

    const E& error() const& { assert(!ok()); return std::get<1>(v_); }
    E&& error() && { assert(!ok()); return std::get<1>(std::move(v_)); }

    template <typename U>
    T valueOr(U&& fallback) const& { return ok() ? value() : T(std::forward<U>(fallback)); }

private:
    std::variant<T, E> v_;
};

template <typename E>
class [[nodiscard]] Result<void, E> {
public:
    static_assert(!std::is_reference_v<E>, "Result holds values");

    using value_type = void;
    using error_type = E;

    Result() = default;
    Result(E error) : error_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

    bool ok() const { return !error_.has_value(); }
    explicit operator bool() const { return ok(); }
    const E& error() const& { assert(!ok()); return *error_; }
    E&& error() && { assert(!ok()); return std::move(*error_); }

private:
    std::optional<E> error_;
};

using Status = Result<void>;

inline Status okStatus() { return {}; }

}  // namespace berth

// Propagates the error of an expression returning any Result<U, E>: the enclosing
// function must return a Result<V, E> (or something an E converts into).
#define BERTH_TRY(expr)                                  \
    do {                                                 \
        auto berthTryResult_ = (expr);                   \
        if (!berthTryResult_) return std::move(berthTryResult_).error(); \
    } while (0)
