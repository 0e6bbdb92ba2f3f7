// Internal to the cgroup manager (engine/cgroup.h): reading and writing
// cgroup interface files, and the small text helpers the parsers share.
// Split out so the resource translation, the handle and the OOM watcher
// (cgroup_resources.cc, cgroup.cc, oom_watcher.cc) use one copy.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hull/core/error.h"
#include "hull/core/text.h"

// Propagate errors that already carry their context (no extra frame).
#define CGROUP_CHECK_IMPL(tmp, expr)                             \
  do {                                                           \
    auto tmp = (expr);                                           \
    if (!tmp) return ::hull::Unexpected{std::move(tmp).error()}; \
  } while (0)
#define CGROUP_CHECK(expr) CGROUP_CHECK_IMPL(HULL_CONCAT(cgroup_check_, __LINE__), expr)
#define CGROUP_TRY_IMPL(tmp, lhs, expr)                        \
  auto tmp = (expr);                                           \
  if (!tmp) return ::hull::Unexpected{std::move(tmp).error()}; \
  lhs = std::move(tmp).value()
#define CGROUP_TRY(lhs, expr) CGROUP_TRY_IMPL(HULL_CONCAT(cgroup_try_, __LINE__), lhs, expr)

namespace hull::engine::cgroup_files {

using ::hull::IsSpace;
using ::hull::SplitFields;
using ::hull::SplitLines;
using ::hull::Trim;

// A whole decimal number, nothing else.
template <typename T>
bool ParseNumber(std::string_view s, T* out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, 10);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// Kernel text is trusted not to be hostile, but never to be what we expect;
// quote a bounded piece of it in errors.
std::string Quote(std::string_view s);
Unexpected ParseError(size_t line_number, std::string_view line, std::string_view why);

std::string JoinPath(const std::string& dir, std::string_view name);

// Writes `value` plus a newline to a cgroup interface file in one write(2).
// Returns 0 or the errno of open/write (see the definition for why no
// O_CREAT and why O_APPEND).
int WriteValue(const std::string& path, std::string_view value);

// Reads a file that may legitimately be absent (a controller that is off).
Result<std::optional<std::string>> ReadOptionalFile(const std::string& path);

// cgroup.controllers of `dir`; kFailedPrecondition when `dir` is not a
// cgroup v2 directory.
Result<std::set<std::string>> ReadControllers(const std::string& dir);

// The error for an interface file that does not exist: which controller is
// missing, or that this kernel lacks the file altogether.
Error MissingFileError(const std::string& dir, std::string_view file);

// Writes one interface file of the cgroup at `dir`; errors name the file and
// the value, and are wrapped with the spec field that asked for the write.
Status SetValue(const std::string& dir, std::string_view file, std::string_view value,
                const std::string& field);

}  // namespace hull::engine::cgroup_files
