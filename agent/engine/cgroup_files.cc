#include "engine/cgroup_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "engine/cgroup.h"
#include "hull/core/fd.h"
#include "hull/core/syscall.h"

namespace hull::engine {
namespace cgroup_files {

// Kernel text is trusted not to be hostile, but never to be what we expect;
// quote a bounded piece of it in errors.
std::string Quote(std::string_view s) {
  constexpr size_t kMax = 64;
  std::string out = "`";
  for (char c : s.substr(0, kMax)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > kMax) out += "...";
  return out + "`";
}

Unexpected ParseError(size_t line_number, std::string_view line, std::string_view why) {
  return MakeError(ErrorCode::kInternal, "line " + std::to_string(line_number) + " " + Quote(line) +
                                             ": " + std::string(why));
}

std::string JoinPath(const std::string& dir, std::string_view name) {
  std::string path = dir;
  if (path.empty() || path.back() != '/') path += '/';
  path += name;
  return path;
}

// Writes `value` to a cgroup interface file in one write(2). Returns 0 or the
// errno of open/write.
//
// No O_CREAT: a missing interface file must fail with ENOENT (the controller
// is off), not create a file (cgroupfs answers O_CREAT with a confusing
// EACCES). No O_TRUNC but O_APPEND: cgroupfs ignores the file offset, so this
// is the same as a plain write there, and on a fake tree of plain files every
// write is kept, so tests see the whole sequence (io.max takes one line per
// device, cgroup.subtree_control one controller per write). The trailing
// newline is what `echo` sends; every cgroup file accepts it.
int WriteValue(const std::string& path, std::string_view value) {
  UniqueFd fd(RetryEintr([&] { return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC); }));
  if (!fd) return errno;
  std::string data(value);
  data += '\n';
  ssize_t n = RetryEintr([&] { return ::write(fd.get(), data.data(), data.size()); });
  if (n < 0) return errno;
  if (static_cast<size_t>(n) != data.size()) return EIO;
  return 0;
}

namespace {

std::string ControllerOf(std::string_view file) {
  return std::string(file.substr(0, file.find('.')));
}

}  // namespace

// Reads a file that may legitimately be absent (a controller that is off).
Result<std::optional<std::string>> ReadOptionalFile(const std::string& path) {
  auto text = ReadFile(path, 1 << 20);
  if (!text) {
    if (text.error().sys_errno() == ENOENT) return std::optional<std::string>();
    return std::move(text).error();
  }
  return std::optional<std::string>(std::move(*text));
}

Result<std::set<std::string>> ReadControllers(const std::string& dir) {
  auto text = ReadFile(JoinPath(dir, "cgroup.controllers"), 1 << 16);
  if (!text) {
    if (text.error().sys_errno() == ENOENT) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "`" + dir + "` is not a cgroup v2 directory (no cgroup.controllers)");
    }
    return std::move(text).error();
  }
  std::set<std::string> controllers;
  for (std::string_view name : SplitFields(*text)) controllers.emplace(name);
  return controllers;
}

// The error for an interface file that does not exist: which controller is
// missing, or that this kernel lacks the file altogether.
Error MissingFileError(const std::string& dir, std::string_view file) {
  if (!PathExists(dir)) {
    return Error(ErrorCode::kNotFound, "cgroup `" + dir + "` does not exist");
  }
  std::string controller = ControllerOf(file);
  std::string why = "this kernel has no " + std::string(file);
  if (controller != "cgroup") {
    auto enabled = ReadControllers(dir);
    if (enabled && !enabled->contains(controller)) {
      why = "the " + controller + " controller is not available";
    }
  }
  return Error(ErrorCode::kFailedPrecondition, std::string(file) + ": ENOENT (" + why + ")");
}

// Writes one interface file of the cgroup at `dir`; errors name the file and
// the value, and are wrapped with the spec field that asked for the write.
Status SetValue(const std::string& dir, std::string_view file, std::string_view value,
                const std::string& field) {
  int err = WriteValue(JoinPath(dir, file), value);
  if (err == 0) return Ok();
  if (err == ENOENT) return Unexpected{MissingFileError(dir, file).Wrap(field)};
  std::string what = "write " + Quote(value) + " to " + std::string(file);
  switch (err) {
    // The kernel refusing the value itself: out of range, malformed, or
    // impossible now (memory.max below what cannot be reclaimed).
    case EINVAL:
    case ERANGE:
    case EBUSY:
    case EOVERFLOW:
      return Unexpected{Error(ErrorCode::kInvalidArgument, what, err).Wrap(field)};
    default:
      return Unexpected{Error::FromErrno(err, what).Wrap(field)};
  }
}

}  // namespace cgroup_files

// --- Pure functions ------------------------------------------------------------

using cgroup_files::ParseError;
using cgroup_files::ParseNumber;
using cgroup_files::Quote;
using cgroup_files::SplitFields;
using cgroup_files::SplitLines;
using cgroup_files::Trim;

Result<std::map<std::string, uint64_t>> ParseFlatKeyed(std::string_view text) {
  std::map<std::string, uint64_t> values;
  size_t line_number = 0;
  for (std::string_view line : SplitLines(text)) {
    ++line_number;
    auto fields = SplitFields(line);
    if (fields.empty()) continue;
    if (fields.size() != 2) return ParseError(line_number, line, "want `key value`");
    uint64_t value = 0;
    if (!ParseNumber(fields[1], &value)) {
      return ParseError(line_number, line, "the value is not an unsigned number");
    }
    values[std::string(fields[0])] = value;
  }
  return values;
}

Result<std::vector<IoDeviceStats>> ParseIoStat(std::string_view text) {
  std::vector<IoDeviceStats> devices;
  size_t line_number = 0;
  for (std::string_view line : SplitLines(text)) {
    ++line_number;
    auto fields = SplitFields(line);
    // runc skips lines without any key=value after the device.
    if (fields.size() < 2) continue;
    IoDeviceStats device;
    std::string_view id = fields[0];
    size_t colon = id.find(':');
    if (colon == std::string_view::npos || !ParseNumber(id.substr(0, colon), &device.major) ||
        !ParseNumber(id.substr(colon + 1), &device.minor)) {
      return ParseError(line_number, line, "the device is not MAJ:MIN");
    }
    for (size_t i = 1; i < fields.size(); ++i) {
      std::string_view item = fields[i];
      size_t eq = item.find('=');
      if (eq == std::string_view::npos) continue;
      std::string_view key = item.substr(0, eq);
      uint64_t* target = key == "rbytes"   ? &device.rbytes
                         : key == "wbytes" ? &device.wbytes
                         : key == "rios"   ? &device.rios
                         : key == "wios"   ? &device.wios
                                           : nullptr;
      if (target == nullptr) continue;  // dbytes, dios, cost.*: not reported
      if (!ParseNumber(item.substr(eq + 1), target)) {
        return ParseError(line_number, line, "bad value of " + std::string(key));
      }
    }
    devices.push_back(device);
  }
  return devices;
}

Result<std::optional<uint64_t>> ParseUintOrMax(std::string_view text) {
  std::string_view value = Trim(text);
  if (value == "max") return std::optional<uint64_t>();
  uint64_t number = 0;
  if (!ParseNumber(value, &number)) {
    return MakeError(ErrorCode::kInternal, Quote(value) + " is neither a number nor `max`");
  }
  return std::optional<uint64_t>(number);
}

Result<std::vector<pid_t>> ParseCgroupProcs(std::string_view text) {
  std::vector<pid_t> pids;
  size_t line_number = 0;
  for (std::string_view line : SplitLines(text)) {
    ++line_number;
    std::string_view value = Trim(line);
    if (value.empty()) continue;
    pid_t pid = 0;
    if (!ParseNumber(value, &pid) || pid <= 0) {
      return ParseError(line_number, line, "not a process id");
    }
    pids.push_back(pid);
  }
  return pids;
}

Status ValidateCgroupRelativePath(std::string_view relative_path) {
  auto invalid = [&](std::string_view why) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "cgroup path " + Quote(relative_path) + ": " + std::string(why));
  };
  if (relative_path.empty()) return invalid("is empty");
  if (relative_path.front() == '/') return invalid("must be relative to the cgroup root");
  if (relative_path.find('\0') != std::string_view::npos) return invalid("contains a NUL byte");
  std::string_view rest = relative_path;
  for (;;) {
    size_t slash = rest.find('/');
    std::string_view component = rest.substr(0, slash);
    if (component.empty()) return invalid("has an empty component (not normalised)");
    if (component == ".") return invalid("contains `.` (not normalised)");
    if (component == "..") return invalid("must not contain `..`");
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  return Ok();
}

}  // namespace hull::engine
