#include "engine/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include "engine/cgroup_files.h"
#include "hull/core/log.h"
#include "hull/core/syscall.h"

namespace hull::engine {
namespace {

using cgroup_files::JoinPath;
using cgroup_files::MissingFileError;
using cgroup_files::ReadControllers;
using cgroup_files::ReadOptionalFile;
using cgroup_files::WriteValue;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// The controllers a container cgroup uses. freezer and devices are not
// controllers on v2 (cgroup.freeze is core; devices is an eBPF hook).
constexpr std::string_view kWantedControllers[] = {"cpu", "cpuset", "io", "memory", "pids"};

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

}  // namespace hull::engine
