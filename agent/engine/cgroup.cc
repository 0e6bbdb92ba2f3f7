#include "engine/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <set>
#include <utility>

#include "hull/core/log.h"
#include "hull/core/syscall.h"
#include "hull/core/thread.h"

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

namespace hull::engine {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// The controllers a container cgroup uses. freezer and devices are not
// controllers on v2 (cgroup.freeze is core; devices is an eBPF hook).
constexpr std::string_view kWantedControllers[] = {"cpu", "cpuset", "io", "memory", "pids"};

// runc writes this default period when only a quota is given (fs2/cpu.go);
// it is the kernel's default (Documentation/admin-guide/cgroup-v2.rst, cpu.max).
constexpr uint64_t kDefaultCpuPeriod = 100000;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && IsSpace(line[i])) ++i;
    size_t start = i;
    while (i < line.size() && !IsSpace(line[i])) ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    size_t end = text.find('\n');
    lines.push_back(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return lines;
}

template <typename T>
bool ParseNumber(std::string_view s, T* out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, 10);
  return ec == std::errc() && ptr == s.data() + s.size();
}

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

// runc's numToStr (fs2/memory.go): 0 is "unset", -1 is "max".
std::string NumToStr(int64_t value) {
  if (value == 0) return "";
  if (value == -1) return "max";
  return std::to_string(value);
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

std::string ControllerOf(std::string_view file) {
  return std::string(file.substr(0, file.find('.')));
}

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

Status ApplyPids(const std::string& dir, const oci::PidsResources& pids) {
  return SetValue(dir, "pids.max", pids.limit > 0 ? std::to_string(pids.limit) : "max",
                  "linux.resources.pids.limit");
}

// runc fs2/memory.go setMemory.
Status ApplyMemory(const std::string& dir, const oci::MemoryResources& memory) {
  const int64_t limit = memory.limit.value_or(0);
  const int64_t swap = memory.swap.value_or(0);
  const int64_t reservation = memory.reservation.value_or(0);
  if (limit == 0 && swap == 0 && reservation == 0) return Ok();

  auto swap_max = ConvertMemorySwapToCgroupV2(swap, limit);
  if (!swap_max) return Unexpected{std::move(swap_max).error().Wrap("linux.resources.memory.swap")};
  std::string swap_value = NumToStr(*swap_max);
  // swap == limit: no swap at all. ("" would mean "leave it alone".)
  if (swap_value.empty() && *swap_max == 0 && swap > 0) swap_value = "0";
  if (!swap_value.empty()) {
    // Without swap accounting (CONFIG_MEMCG_SWAP off, swapaccount=0) there is
    // no memory.swap.max; "max" and "0" ask for what the kernel does anyway,
    // and runc skips them then.
    const bool harmless = swap_value == "max" || swap_value == "0";
    if (!harmless || PathExists(JoinPath(dir, "memory.swap.max"))) {
      CGROUP_CHECK(SetValue(dir, "memory.swap.max", swap_value, "linux.resources.memory.swap"));
    }
  }
  if (std::string value = NumToStr(limit); !value.empty()) {
    CGROUP_CHECK(SetValue(dir, "memory.max", value, "linux.resources.memory.limit"));
  }
  if (std::string value = NumToStr(reservation); !value.empty()) {
    CGROUP_CHECK(SetValue(dir, "memory.low", value, "linux.resources.memory.reservation"));
  }
  if (memory.kernel || memory.swappiness || memory.disable_oom_killer) {
    HULL_LOG_DEBUG(
        "cgroup {}: memory.kernel, memory.swappiness and disableOOMKiller have no "
        "cgroup v2 equivalent; ignored",
        dir);
  }
  return Ok();
}

// Per-device BFQ weights need Linux >= 5.4 (commit 795fe54c2a8), which prints
// "default N" plus per-device lines in io.bfq.weight; older kernels print a
// bare number (runc fs2/io.go bfqDeviceWeightSupported).
bool BfqDeviceWeightSupported(const std::string& bfq_path) {
  auto text = ReadFile(bfq_path, 4096);
  if (!text) return false;
  uint64_t number = 0;
  return !ParseNumber(Trim(*text), &number);
}

std::string DeviceRate(const oci::BlockIoDeviceRate& device, std::string_view key) {
  return std::to_string(device.major) + ":" + std::to_string(device.minor) + " " +
         std::string(key) + "=" + std::to_string(device.rate);
}

// runc fs2/io.go setIo: BFQ's io.bfq.weight (in blkio units) when the bfq
// scheduler is loaded, else io.weight through the conversion.
Status ApplyIo(const std::string& dir, const oci::BlockIoResources& io) {
  const uint16_t weight = io.weight.value_or(0);
  const std::string bfq_path = JoinPath(dir, "io.bfq.weight");
  const bool bfq = (weight != 0 || !io.weight_device.empty()) && PathExists(bfq_path);
  if (weight != 0) {
    const std::string field = "linux.resources.blockIO.weight";
    if (bfq) {
      CGROUP_CHECK(SetValue(dir, "io.bfq.weight", std::to_string(weight), field));
    } else {
      // runc's conversion underflows below 10 and writes a nonsense number;
      // say what is wrong instead.
      if (weight < 10 || weight > 1000) {
        return MakeError(ErrorCode::kInvalidArgument,
                         field + ": " + std::to_string(weight) + " is outside [10, 1000]");
      }
      CGROUP_CHECK(
          SetValue(dir, "io.weight", std::to_string(ConvertBlkioWeightToIoWeight(weight)), field));
    }
  }
  if (!io.weight_device.empty()) {
    if (bfq && BfqDeviceWeightSupported(bfq_path)) {
      for (const auto& device : io.weight_device) {
        // leafWeight is cgroup v1 only; an entry without a weight sets nothing.
        if (!device.weight) continue;
        std::string value = std::to_string(device.major) + ":" + std::to_string(device.minor) +
                            " " + std::to_string(*device.weight);
        CGROUP_CHECK(SetValue(dir, "io.bfq.weight", value, "linux.resources.blockIO.weightDevice"));
      }
    } else {
      // As runc: io.weight's per-device form is for blk-iocost, whose scale
      // differs; without BFQ the device weights are dropped.
      HULL_LOG_DEBUG("cgroup {}: blockIO.weightDevice needs the bfq scheduler; ignored", dir);
    }
  }
  struct Throttle {
    const std::vector<oci::BlockIoDeviceRate>& devices;
    const char* key;
    const char* field;
  };
  const Throttle throttles[] = {
      {io.throttle_read_bps_device, "rbps", "linux.resources.blockIO.throttleReadBpsDevice"},
      {io.throttle_write_bps_device, "wbps", "linux.resources.blockIO.throttleWriteBpsDevice"},
      {io.throttle_read_iops_device, "riops", "linux.resources.blockIO.throttleReadIOPSDevice"},
      {io.throttle_write_iops_device, "wiops", "linux.resources.blockIO.throttleWriteIOPSDevice"},
  };
  for (const Throttle& throttle : throttles) {
    for (const auto& device : throttle.devices) {
      CGROUP_CHECK(SetValue(dir, "io.max", DeviceRate(device, throttle.key), throttle.field));
    }
  }
  return Ok();
}

// runc fs2/cpu.go setCPU (shares converted as in specconv).
Status ApplyCpu(const std::string& dir, const oci::CpuResources& cpu) {
  if (cpu.idle) {
    CGROUP_CHECK(SetValue(dir, "cpu.idle", std::to_string(*cpu.idle), "linux.resources.cpu.idle"));
  }
  if (uint64_t weight = ConvertCpuSharesToCpuWeight(cpu.shares.value_or(0)); weight != 0) {
    CGROUP_CHECK(SetValue(dir, "cpu.weight", std::to_string(weight), "linux.resources.cpu.shares"));
  }
  const int64_t quota = cpu.quota.value_or(0);
  const uint64_t period = cpu.period.value_or(0);
  if (quota != 0 || period != 0) {
    std::string value = quota > 0 ? std::to_string(quota) : "max";
    value += " " + std::to_string(period != 0 ? period : kDefaultCpuPeriod);
    CGROUP_CHECK(SetValue(dir, "cpu.max", value,
                          quota != 0 ? "linux.resources.cpu.quota" : "linux.resources.cpu.period"));
  }
  if (cpu.realtime_runtime.value_or(0) != 0 || cpu.realtime_period.value_or(0) != 0) {
    HULL_LOG_DEBUG("cgroup {}: realtime cpu settings have no cgroup v2 equivalent; ignored", dir);
  }
  // runc fs2/cpuset.go.
  if (!cpu.cpus.empty()) {
    CGROUP_CHECK(SetValue(dir, "cpuset.cpus", cpu.cpus, "linux.resources.cpu.cpus"));
  }
  if (!cpu.mems.empty()) {
    CGROUP_CHECK(SetValue(dir, "cpuset.mems", cpu.mems, "linux.resources.cpu.mems"));
  }
  return Ok();
}

// runc fs2/fs2.go setUnified: each key is a file of the cgroup, written line
// by line.
Status ApplyUnified(const std::string& dir, const std::map<std::string, std::string>& unified) {
  for (const auto& [key, value] : unified) {
    const std::string field = "linux.resources.unified[" + key + "]";
    if (key.empty() || key == "." || key == ".." || key.find('/') != std::string::npos ||
        key.find('\0') != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument,
                       field + ": must be a file name of the cgroup (no slashes)");
    }
    bool wrote = false;
    for (std::string_view line : SplitLines(value)) {
      if (Trim(line).empty()) continue;
      CGROUP_CHECK(SetValue(dir, key, line, field));
      wrote = true;
    }
    if (!wrote) CGROUP_CHECK(SetValue(dir, key, value, field));
  }
  return Ok();
}

// The child cgroups (subdirectories) of `dir`; none if it is gone.
Status ListChildCgroups(const std::string& dir, std::vector<std::string>* children) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return errno == ENOENT ? Ok() : ErrnoError("open `" + dir + "`");
  while (dirent* entry = ::readdir(d)) {
    if (entry->d_type == DT_DIR && std::strcmp(entry->d_name, ".") != 0 &&
        std::strcmp(entry->d_name, "..") != 0) {
      children->emplace_back(entry->d_name);
    }
  }
  ::closedir(d);
  return Ok();
}

// Gives every process of the subtree rooted at `dir`; directories that vanish
// while we walk are skipped.
Status CollectTreePids(const std::string& dir, std::vector<pid_t>* pids) {
  auto procs = ReadFile(JoinPath(dir, "cgroup.procs"), 16 << 20);
  if (!procs) {
    if (procs.error().sys_errno() == ENOENT || procs.error().sys_errno() == ENODEV) return Ok();
    return std::move(procs).error();
  }
  auto parsed = ParseCgroupProcs(*procs);
  if (!parsed)
    return Unexpected{std::move(parsed).error().Wrap("parse `" + dir + "/cgroup.procs`")};
  pids->insert(pids->end(), parsed->begin(), parsed->end());

  std::vector<std::string> children;
  CGROUP_CHECK(ListChildCgroups(dir, &children));
  for (const auto& child : children) CGROUP_CHECK(CollectTreePids(JoinPath(dir, child), pids));
  return Ok();
}

// rmdir of a cgroup subtree, children first (runc cgroups.RemovePath). The
// interface files inside need no unlinking: rmdir of a cgroup removes them.
// EBUSY right after the last process left is transient; retry until deadline.
Status RemoveCgroupTree(const std::string& dir, steady_clock::time_point deadline) {
  std::vector<std::string> children;
  CGROUP_CHECK(ListChildCgroups(dir, &children));
  for (const auto& child : children) {
    CGROUP_CHECK(RemoveCgroupTree(JoinPath(dir, child), deadline));
  }
  for (;;) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return Ok();
    if (errno != EBUSY || steady_clock::now() >= deadline) return ErrnoError("rmdir `" + dir + "`");
    ::usleep(10 * 1000);
  }
}

std::string Millis(milliseconds ms) { return std::to_string(ms.count()) + "ms"; }

}  // namespace

// --- Pure functions ------------------------------------------------------------

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

uint64_t ConvertCpuSharesToCpuWeight(uint64_t shares) {
  if (shares == 0) return 0;
  // The v1 kernel clamped cpu.shares into [MIN_SHARES, MAX_SHARES] = [2, 2^18]
  // on write, so clamping keeps the meaning a v1 spec had; runc's formula
  // underflows for shares == 1.
  shares = std::clamp<uint64_t>(shares, 2, 262144);
  return 1 + ((shares - 2) * 9999) / 262142;
}

uint64_t ConvertBlkioWeightToIoWeight(uint16_t weight) {
  if (weight == 0) return 0;
  // Callers reject weights below 10 (see ApplyIo); clamp so the arithmetic
  // cannot wrap for a direct caller.
  uint64_t w = std::clamp<uint64_t>(weight, 10, 1000);
  return 1 + (w - 10) * 9999 / 990;
}

// runc cgroups/utils.go ConvertMemorySwapToCgroupV2Value, case for case.
Result<int64_t> ConvertMemorySwapToCgroupV2(int64_t memory_swap, int64_t memory) {
  // For compatibility with cgroup v1: unlimited memory with swap not set means
  // "both unlimited".
  if (memory == -1 && memory_swap == 0) return int64_t{-1};
  // -1 ("max") and 0 ("unset") pass through.
  if (memory_swap == -1 || memory_swap == 0) return memory_swap;
  // Unlimited memory: swap is taken as is.
  if (memory == -1) return memory_swap;
  if (memory == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "unable to set swap limit without memory limit");
  }
  if (memory < 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "invalid memory value: " + std::to_string(memory));
  }
  if (memory_swap < memory) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "memory+swap limit (" + std::to_string(memory_swap) +
                         ") should be >= memory limit (" + std::to_string(memory) + ")");
  }
  return memory_swap - memory;
}

// --- Cgroup --------------------------------------------------------------------

namespace {

Result<std::string> CgroupDir(const std::string& root, const std::string& relative_path) {
  if (root.empty() || root.front() != '/') {
    return MakeError(ErrorCode::kInvalidArgument, "cgroup root `" + root + "` is not absolute");
  }
  HULL_CHECK_OK(ValidateCgroupRelativePath(relative_path), "cgroup");
  std::string dir = root;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return JoinPath(dir, relative_path);
}

// Enables the wanted controllers for the children of `dir`, one write each:
// one refused controller must not keep the others off.
Status EnableControllers(const std::string& dir) {
  HULL_TRY(auto available, ReadControllers(dir), "enable controllers");
  const std::string subtree_control = JoinPath(dir, "cgroup.subtree_control");
  for (std::string_view controller : kWantedControllers) {
    if (!available.contains(std::string(controller))) continue;
    if (int err = WriteValue(subtree_control, "+" + std::string(controller)); err != 0) {
      // EBUSY: `dir` holds processes and is not the root (no internal
      // processes rule). The Apply() needing the controller will say so.
      HULL_LOG_DEBUG("cgroup {}: cannot enable the {} controller for children: {}", dir, controller,
                     strerrorname_np(err) != nullptr ? strerrorname_np(err) : "?");
    }
  }
  return Ok();
}

}  // namespace

Result<Cgroup> Cgroup::Create(const std::string& root, const std::string& relative_path) {
  HULL_TRY(std::string path, CgroupDir(root, relative_path), "create cgroup");
  std::string dir = path.substr(0, path.size() - relative_path.size() - 1);
  if (dir.empty()) dir = "/";
  std::string_view rest = relative_path;
  for (;;) {
    HULL_CHECK_OK(EnableControllers(dir), "create cgroup `" + path + "`");
    size_t slash = rest.find('/');
    dir = JoinPath(dir, rest.substr(0, slash));
    if (::mkdir(dir.c_str(), 0755) < 0) {
      if (errno != EEXIST) return ErrnoError("create cgroup `" + dir + "`");
      struct stat st;
      if (::stat(dir.c_str(), &st) < 0) return ErrnoError("stat `" + dir + "`");
      if (!S_ISDIR(st.st_mode)) {
        return MakeError(ErrorCode::kAlreadyExists,
                         "create cgroup `" + dir + "`: exists and is not a directory");
      }
    }
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  return Cgroup(relative_path, std::move(path));
}

Result<Cgroup> Cgroup::Open(const std::string& root, const std::string& relative_path) {
  HULL_TRY(std::string path, CgroupDir(root, relative_path), "open cgroup");
  struct stat st;
  if (::stat(path.c_str(), &st) < 0) return ErrnoError("open cgroup `" + path + "`");
  if (!S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kFailedPrecondition, "open cgroup `" + path + "`: not a directory");
  }
  return Cgroup(relative_path, std::move(path));
}

Result<UniqueFd> Cgroup::OpenDirFd() const {
  UniqueFd fd(RetryEintr([&] { return ::open(path_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC); }));
  if (!fd) return ErrnoError("open cgroup `" + path_ + "`");
  return fd;
}

Status Cgroup::Apply(const oci::Resources& resources) {
  const std::string frame = "apply resources to cgroup `" + path_ + "`";
  // runc's order (fs2/fs2.go Set): pids, memory, io, cpu, devices, cpuset,
  // unified last so that it overrides the rest.
  if (resources.pids) HULL_CHECK_OK(ApplyPids(path_, *resources.pids), frame);
  if (resources.memory) HULL_CHECK_OK(ApplyMemory(path_, *resources.memory), frame);
  if (resources.block_io) HULL_CHECK_OK(ApplyIo(path_, *resources.block_io), frame);
  if (resources.cpu) HULL_CHECK_OK(ApplyCpu(path_, *resources.cpu), frame);
  // linux.resources.devices: on cgroup v2 runc attaches an eBPF device
  // program. hull does not: a container's /dev is a fresh tmpfs holding only
  // the devices the spec lists (and the defaults runc also creates), mknod
  // needs CAP_MKNOD, and the VM itself is the isolation boundary. The rules
  // are accepted so specs written for runc work unchanged.
  HULL_CHECK_OK(ApplyUnified(path_, resources.unified), frame);
  return Ok();
}

Status Cgroup::AddProcess(pid_t pid) {
  const std::string procs = JoinPath(path_, "cgroup.procs");
  const std::string what = "add process " + std::to_string(pid) + " to cgroup `" + path_ + "`";
  int err = 0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    err = WriteValue(procs, std::to_string(pid));
    // EINVAL may mean the task is still TASK_NEW (runc WriteCgroupProc).
    if (err != EINVAL) break;
    ::usleep(30 * 1000);
  }
  if (err == 0) return Ok();
  if (err == ESRCH) return MakeError(ErrorCode::kNotFound, what + ": no such process");
  return ErrnoError(what, err);
}

Result<std::vector<pid_t>> Cgroup::Pids() const {
  const std::string procs = JoinPath(path_, "cgroup.procs");
  HULL_TRY(std::string text, ReadFile(procs, 16 << 20), "list processes");
  HULL_TRY(auto pids, ParseCgroupProcs(text), "parse `" + procs + "`");
  return pids;
}

Result<bool> Cgroup::Populated() const {
  const std::string events = JoinPath(path_, "cgroup.events");
  HULL_TRY(std::string text, ReadFile(events, 4096), "read cgroup state");
  HULL_TRY(auto values, ParseFlatKeyed(text), "parse `" + events + "`");
  auto it = values.find("populated");
  if (it == values.end()) {
    return MakeError(ErrorCode::kInternal, "`" + events + "` has no `populated` key");
  }
  return it->second != 0;
}

Status Cgroup::WaitForEvent(std::string_view key, uint64_t want, milliseconds timeout,
                            std::string_view what) const {
  const auto deadline = steady_clock::now() + timeout;
  const std::string events = JoinPath(path_, "cgroup.events");
  // Watch before the first read, so a change between the read and the wait
  // still wakes us. cgroupfs raises IN_MODIFY on cgroup.events for every
  // change of its values.
  UniqueFd inotify(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify) return ErrnoError("inotify_init1");
  if (::inotify_add_watch(inotify.get(), events.c_str(), IN_MODIFY) < 0) {
    return ErrnoError("watch `" + events + "`");
  }
  for (;;) {
    HULL_TRY(std::string text, ReadFile(events, 4096), "wait for cgroup `" + path_ + "`");
    // A fake tree being rewritten can be read half-written; only a value
    // that matches counts, anything else means "not yet".
    auto values = ParseFlatKeyed(text);
    if (values) {
      auto it = values->find(std::string(key));
      if (it != values->end() && it->second == want) return Ok();
    }
    auto now = steady_clock::now();
    if (now >= deadline) {
      return MakeError(
          ErrorCode::kDeadlineExceeded,
          "cgroup `" + path_ + "` did not " + std::string(what) + " within " + Millis(timeout));
    }
    // Re-read at least every 100 ms: cheap insurance against a lost event.
    auto wait = std::min<steady_clock::duration>(deadline - now, milliseconds(100));
    auto wait_ms = std::chrono::ceil<milliseconds>(wait);
    HULL_CHECK_OK(WaitReadable(inotify.get(), wait_ms), "wait for `" + events + "`");
    alignas(inotify_event) char buf[4096];
    while (::read(inotify.get(), buf, sizeof buf) > 0) {
    }
  }
}

Status Cgroup::Freeze(milliseconds timeout) {
  if (int err = WriteValue(JoinPath(path_, "cgroup.freeze"), "1"); err != 0) {
    if (err == ENOENT) return Unexpected{MissingFileError(path_, "cgroup.freeze").Wrap("freeze")};
    return ErrnoError("freeze cgroup `" + path_ + "`", err);
  }
  return WaitForEvent("frozen", 1, timeout, "freeze");
}

Status Cgroup::Thaw(milliseconds timeout) {
  if (int err = WriteValue(JoinPath(path_, "cgroup.freeze"), "0"); err != 0) {
    if (err == ENOENT) return Unexpected{MissingFileError(path_, "cgroup.freeze").Wrap("thaw")};
    return ErrnoError("thaw cgroup `" + path_ + "`", err);
  }
  return WaitForEvent("frozen", 0, timeout, "thaw");
}

Status Cgroup::KillAll() {
  int err = WriteValue(JoinPath(path_, "cgroup.kill"), "1");
  if (err == 0) return Ok();
  if (err == ENOENT) {
    if (!PathExists(path_)) {
      return MakeError(ErrorCode::kNotFound, "cgroup `" + path_ + "` does not exist");
    }
    // Linux < 5.14: no cgroup.kill.
    HULL_CHECK_OK(KillCgroupTree(path_), "kill processes of cgroup `" + path_ + "`");
    return Ok();
  }
  return ErrnoError("kill processes of cgroup `" + path_ + "`", err);
}

Status Cgroup::Destroy(milliseconds timeout) {
  const auto deadline = steady_clock::now() + timeout;
  const std::string frame = "destroy cgroup `" + path_ + "`";
  if (!PathExists(path_)) return Ok();
  if (auto killed = KillAll(); !killed) {
    if (!PathExists(path_)) return Ok();
    return Unexpected{std::move(killed).error().Wrap(frame)};
  }
  auto remaining = std::chrono::ceil<milliseconds>(deadline - steady_clock::now());
  if (auto empty = WaitForEvent("populated", 0, std::max(remaining, milliseconds(0)), "empty");
      !empty) {
    if (!PathExists(path_)) return Ok();
    return Unexpected{std::move(empty).error().Wrap(frame)};
  }
  HULL_CHECK_OK(RemoveCgroupTree(path_, deadline), frame);
  return Ok();
}

Result<CgroupStats> Cgroup::Stats() const {
  CgroupStats stats;
  const std::string frame = "stats of cgroup `" + path_ + "`";
  // Reads a file (empty if absent) and parses it; errors name the file.
  auto read = [&](std::string_view file) -> Result<std::optional<std::string>> {
    auto text = ReadOptionalFile(JoinPath(path_, file));
    if (!text) return Unexpected{std::move(text).error().Wrap(frame)};
    return text;
  };
  auto flat = [&](std::string_view file) -> Result<std::map<std::string, uint64_t>> {
    CGROUP_TRY(auto text, read(file));
    if (!text) return std::map<std::string, uint64_t>();
    HULL_TRY(auto values, ParseFlatKeyed(*text), frame + ": parse " + std::string(file));
    return values;
  };
  // A single number; "max" and a missing file read as 0.
  auto single = [&](std::string_view file) -> Result<uint64_t> {
    CGROUP_TRY(auto text, read(file));
    if (!text) return uint64_t{0};
    HULL_TRY(auto value, ParseUintOrMax(*text), frame + ": parse " + std::string(file));
    return value.value_or(0);
  };
  auto get = [](const std::map<std::string, uint64_t>& values, const char* key) -> uint64_t {
    auto it = values.find(key);
    return it == values.end() ? 0 : it->second;
  };

  CGROUP_TRY(auto cpu, flat("cpu.stat"));
  stats.cpu.usage_usec = get(cpu, "usage_usec");
  stats.cpu.user_usec = get(cpu, "user_usec");
  stats.cpu.system_usec = get(cpu, "system_usec");
  stats.cpu.nr_periods = get(cpu, "nr_periods");
  stats.cpu.nr_throttled = get(cpu, "nr_throttled");
  stats.cpu.throttled_usec = get(cpu, "throttled_usec");

  CGROUP_TRY(stats.memory.current, single("memory.current"));
  CGROUP_TRY(stats.memory.max, single("memory.max"));
  CGROUP_TRY(stats.memory.swap_current, single("memory.swap.current"));
  CGROUP_TRY(stats.memory.stat, flat("memory.stat"));
  stats.memory.anon = get(stats.memory.stat, "anon");
  stats.memory.file = get(stats.memory.stat, "file");
  CGROUP_TRY(auto events, flat("memory.events"));
  stats.memory.oom = get(events, "oom");
  stats.memory.oom_kill = get(events, "oom_kill");

  CGROUP_TRY(stats.pids.current, single("pids.current"));
  CGROUP_TRY(stats.pids.max, single("pids.max"));

  CGROUP_TRY(auto io_text, read("io.stat"));
  if (io_text) {
    HULL_TRY(stats.io, ParseIoStat(*io_text), frame + ": parse io.stat");
  }
  return stats;
}

Status KillCgroupTree(const std::string& cgroup_path) {
  const auto deadline = steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    std::vector<pid_t> pids;
    HULL_CHECK_OK(CollectTreePids(cgroup_path, &pids), "list processes of `" + cgroup_path + "`");
    // Exited processes leave cgroup.procs at exit, before they are reaped.
    if (pids.empty()) return Ok();
    for (pid_t pid : pids) {
      if (::kill(pid, SIGKILL) < 0 && errno != ESRCH) {
        return ErrnoError("kill process " + std::to_string(pid));
      }
    }
    if (steady_clock::now() >= deadline) {
      return MakeError(ErrorCode::kDeadlineExceeded, std::to_string(pids.size()) +
                                                         " processes are still in `" + cgroup_path +
                                                         "` after 2s of SIGKILL");
    }
    ::usleep(10 * 1000);
  }
}

// --- OomWatcher ----------------------------------------------------------------

namespace {

// The oom_kill count of a memory.events file; nullopt if unreadable or
// half-written (a fake tree being rewritten).
std::optional<uint64_t> ReadOomKill(const std::string& events_path) {
  auto text = ReadFile(events_path, 4096);
  if (!text) return std::nullopt;
  auto values = ParseFlatKeyed(*text);
  if (!values) return std::nullopt;
  auto it = values->find("oom_kill");
  if (it == values->end()) return std::nullopt;
  return it->second;
}

}  // namespace

Result<std::unique_ptr<OomWatcher>> OomWatcher::Create(Callback callback) {
  UniqueFd inotify(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify) return ErrnoError("inotify_init1");
  UniqueFd wake(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake) return ErrnoError("eventfd");
  std::unique_ptr<OomWatcher> watcher(
      new OomWatcher(std::move(callback), std::move(inotify), std::move(wake)));
  watcher->thread_ = SpawnThread("oom-watcher", [self = watcher.get()] { self->Run(); });
  return watcher;
}

OomWatcher::OomWatcher(Callback callback, UniqueFd inotify_fd, UniqueFd wake_fd)
    : callback_(std::move(callback)),
      inotify_fd_(std::move(inotify_fd)),
      wake_fd_(std::move(wake_fd)) {}

OomWatcher::~OomWatcher() {
  uint64_t one = 1;
  // An eventfd write cannot fail short of overflowing the counter.
  (void)!::write(wake_fd_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

Status OomWatcher::Watch(const std::string& id, const Cgroup& cgroup) {
  const std::string events_path = JoinPath(cgroup.path(), "memory.events");
  std::lock_guard lock(mutex_);
  if (entries_.contains(id)) {
    return MakeError(ErrorCode::kAlreadyExists, "OOM watch `" + id + "` exists already");
  }
  // Watch first, then read the baseline: a kill after the read raises an
  // event the thread handles once we release the lock.
  int wd = ::inotify_add_watch(inotify_fd_.get(), events_path.c_str(), IN_MODIFY);
  if (wd < 0) {
    if (errno == ENOENT) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "watch OOM events of cgroup `" + cgroup.path() +
                           "`: no memory.events (the memory controller is not enabled)");
    }
    return ErrnoError("watch `" + events_path + "`");
  }
  entries_[id] = Entry{events_path, wd, ReadOomKill(events_path).value_or(0)};
  return Ok();
}

void OomWatcher::Unwatch(const std::string& id) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  int wd = it->second.wd;
  entries_.erase(it);
  // Two ids on the same cgroup share one watch descriptor.
  bool shared = std::any_of(entries_.begin(), entries_.end(),
                            [&](const auto& entry) { return entry.second.wd == wd; });
  if (wd >= 0 && !shared) ::inotify_rm_watch(inotify_fd_.get(), wd);
}

void OomWatcher::Run() {
  pollfd fds[2] = {{inotify_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
  for (;;) {
    int rc = ::poll(fds, 2, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      HULL_LOG_ERROR("OOM watcher: poll: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    std::vector<int> modified;
    alignas(inotify_event) char buf[8192];
    for (;;) {
      ssize_t n = ::read(inotify_fd_.get(), buf, sizeof buf);
      if (n <= 0) break;
      for (char* p = buf; p < buf + n;) {
        auto* event = reinterpret_cast<inotify_event*>(p);
        if (event->mask & IN_Q_OVERFLOW) {
          // Events were dropped: look at every cgroup.
          std::lock_guard lock(mutex_);
          for (const auto& [id, entry] : entries_) modified.push_back(entry.wd);
        } else if (event->mask & IN_IGNORED) {
          // The file is gone (cgroup removed) or the watch was removed.
          std::lock_guard lock(mutex_);
          for (auto& [id, entry] : entries_) {
            if (entry.wd == event->wd) entry.wd = -1;
          }
        } else if (event->mask & IN_MODIFY) {
          modified.push_back(event->wd);
        }
        p += sizeof(inotify_event) + event->len;
      }
    }
    if (!modified.empty()) CheckWatches(modified);
  }
}

void OomWatcher::CheckWatches(const std::vector<int>& wds) {
  std::vector<std::pair<std::string, std::string>> targets;  // id, path
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, entry] : entries_) {
      if (entry.wd >= 0 && std::find(wds.begin(), wds.end(), entry.wd) != wds.end()) {
        targets.emplace_back(id, entry.events_path);
      }
    }
  }
  std::vector<std::pair<std::string, uint64_t>> fired;
  for (const auto& [id, path] : targets) {
    std::optional<uint64_t> count = ReadOomKill(path);
    if (!count) continue;
    std::lock_guard lock(mutex_);
    auto it = entries_.find(id);
    // Unwatched (or re-watched elsewhere) while we read.
    if (it == entries_.end() || it->second.events_path != path) continue;
    if (*count > it->second.oom_kill) {
      it->second.oom_kill = *count;
      fired.emplace_back(id, *count);
    }
  }
  // Outside the lock, so the callback may Watch/Unwatch.
  for (const auto& [id, count] : fired) callback_(id, count);
}

}  // namespace hull::engine
