// hull::Error and hull::Result<T>: errors are values.
//
// An Error carries a code that maps onto gRPC (and ttrpc) status codes, the
// errno that caused it (0 if none), a message, and context frames added on the
// way up. It prints as "outer: inner: message: ENOENT (No such file or directory)".
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace hull {

// Same numbering as google.rpc.Code / grpc::StatusCode, so a code crosses the
// gRPC and ttrpc edges unchanged.
enum class ErrorCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

std::string_view ErrorCodeName(ErrorCode code);

// The code an errno most naturally maps to (ENOENT -> kNotFound, ...).
ErrorCode ErrorCodeFromErrno(int err);

class Error {
 public:
  Error(ErrorCode code, std::string message, int err = 0)
      : code_(code), errno_(err), message_(std::move(message)) {}

  // An error from a failed system call; the code follows the errno.
  static Error FromErrno(int err, std::string message) {
    return Error(ErrorCodeFromErrno(err), std::move(message), err);
  }

  ErrorCode code() const { return code_; }
  int sys_errno() const { return errno_; }
  const std::string& message() const { return message_; }
  // Context frames, outermost first.
  const std::vector<std::string>& context() const { return context_; }

  // Adds an outer frame: Error("ENOENT").Wrap("mount rootfs").Wrap("create `web`")
  // prints "create `web`: mount rootfs: ...".
  // An empty frame adds nothing.
  Error& Wrap(std::string frame) & {
    if (!frame.empty()) context_.insert(context_.begin(), std::move(frame));
    return *this;
  }
  Error&& Wrap(std::string frame) && {
    if (!frame.empty()) context_.insert(context_.begin(), std::move(frame));
    return std::move(*this);
  }

  std::string ToString() const;

 private:
  ErrorCode code_;
  int errno_;
  std::string message_;
  std::vector<std::string> context_;
};

// Marks a value as the error alternative of a Result (like std::unexpected).
struct Unexpected {
  Error error;
};

inline Unexpected MakeError(ErrorCode code, std::string message) {
  return Unexpected{Error(code, std::move(message))};
}
inline Unexpected ErrnoError(std::string message, int err = errno) {
  return Unexpected{Error::FromErrno(err, std::move(message))};
}

// A small std::expected<T, Error>. GCC 12 has std::expected, but clang 14 (the
// fuzzing compiler on Debian bookworm) cannot compile it, and the core must
// build with both.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}
  Result(Unexpected u) : state_(std::in_place_index<1>, std::move(u.error)) {}
  Result(Error e) : state_(std::in_place_index<1>, std::move(e)) {}
  template <typename U>
  requires(std::is_constructible_v<T, U&&> && !std::is_same_v<std::decay_t<U>, Result> &&
           !std::is_same_v<std::decay_t<U>, Error> && !std::is_same_v<std::decay_t<U>, Unexpected>)
      Result(U&& value)
      : state_(std::in_place_index<0>, std::forward<U>(value)) {}

  bool has_value() const { return state_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  Error& error() & { return std::get<1>(state_); }
  const Error& error() const& { return std::get<1>(state_); }
  Error&& error() && { return std::get<1>(std::move(state_)); }

  template <typename U>
  T value_or(U&& fallback) const& {
    return has_value() ? value() : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  std::variant<T, Error> state_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Unexpected u) : error_(std::move(u.error)), ok_(false) {}
  Result(Error e) : error_(std::move(e)), ok_(false) {}

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  void value() const {}
  Error& error() & { return error_; }
  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }

 private:
  Error error_{ErrorCode::kOk, ""};
  bool ok_ = true;
};

using Status = Result<void>;

inline Status Ok() { return {}; }

}  // namespace hull

// Propagates an error with an added context frame:
//   HULL_TRY(fd, OpenFile(path), "open config");
#define HULL_CONCAT_INNER(a, b) a##b
#define HULL_CONCAT(a, b) HULL_CONCAT_INNER(a, b)

#define HULL_TRY_IMPL(tmp, lhs, expr, ...)                                       \
  auto tmp = (expr);                                                             \
  if (!tmp) return ::hull::Unexpected{std::move(tmp).error().Wrap(__VA_ARGS__)}; \
  lhs = std::move(tmp).value()
#define HULL_TRY(lhs, expr, ...) \
  HULL_TRY_IMPL(HULL_CONCAT(hull_try_, __LINE__), lhs, expr, __VA_ARGS__)

#define HULL_CHECK_OK_IMPL(tmp, expr, ...)                                         \
  do {                                                                             \
    auto tmp = (expr);                                                             \
    if (!tmp) return ::hull::Unexpected{std::move(tmp).error().Wrap(__VA_ARGS__)}; \
  } while (0)
// Propagates the error of a Status (or any Result whose value is unused).
#define HULL_CHECK_OK(expr, ...) \
  HULL_CHECK_OK_IMPL(HULL_CONCAT(hull_ok_, __LINE__), expr, __VA_ARGS__)
