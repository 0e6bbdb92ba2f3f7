#include "hull/sandbox/host_cgroup.h"

#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>
#include <thread>
#include <utility>

#include "hull/core/log.h"
#include "hull/core/syscall.h"

namespace hull::sandbox {

namespace {

constexpr long kCgroup2Magic = 0x63677270;

// The hierarchies to use: the root itself on v2, else every cgroup v1 mount
// directly below it (cpu, memory, pids, ... and named ones).
Result<std::vector<std::string>> Hierarchies(const std::string& root) {
  struct statfs fs {};
  if (::statfs(root.c_str(), &fs) < 0) return ErrnoError("statfs " + root);
  if (fs.f_type == kCgroup2Magic) return std::vector<std::string>{root};
  HULL_TRY(std::string mounts, ReadFile("/proc/self/mounts", 1 << 20), "read /proc/self/mounts");
  std::vector<std::string> found;
  std::istringstream lines(mounts);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string source, target, type;
    fields >> source >> target >> type;
    if (type == "cgroup" && target.starts_with(root + "/") &&
        target.find('/', root.size() + 1) == std::string::npos) {
      found.push_back(target);
    }
  }
  if (found.empty())
    return MakeError(ErrorCode::kFailedPrecondition,
                     "no cgroup hierarchy is mounted under " + root);
  return found;
}

}  // namespace

Result<HostCgroup> HostCgroup::Create(const std::string& path, const std::string& cgroup_root) {
  const std::string what = "host cgroup `" + path + "`";
  if (path.find(':') != std::string::npos) {
    return MakeError(ErrorCode::kUnimplemented,
                     what + ": systemd cgroup paths are not supported (use cgroupfs)");
  }
  if (path.empty() || path[0] != '/' || path.find("/..") != std::string::npos ||
      path.find("/./") != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     what + ": must be an absolute path without . or ..");
  }
  HULL_TRY(auto hierarchies, Hierarchies(cgroup_root), what);
  HostCgroup cgroup;
  for (const auto& hierarchy : hierarchies) {
    // Level by level: a new v1 cpuset cgroup has no cpus or mems, and nothing
    // can join it until it gets its parent's.
    const bool cpuset = PathExists(hierarchy + "/cpuset.cpus");
    std::string dir = hierarchy;
    size_t at = 1;
    while (at <= path.size()) {
      size_t next = path.find('/', at);
      if (next == std::string::npos) next = path.size();
      if (next > at) {
        std::string parent = dir;
        dir += "/" + path.substr(at, next - at);
        if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST)
          return ErrnoError("create " + dir).error.Wrap(what);
        if (cpuset) {
          for (const char* file : {"/cpuset.cpus", "/cpuset.mems"}) {
            auto own = ReadFile(dir + file, 4096);
            if (own && own->find_first_not_of(" \n") != std::string::npos) continue;
            HULL_TRY(std::string inherited, ReadFile(parent + file, 4096), what);
            HULL_CHECK_OK(WriteFile(dir + file, inherited), what);
          }
        }
      }
      at = next + 1;
    }
    cgroup.dirs_.push_back(dir);
    cgroup.roots_.push_back(hierarchy);
  }
  return cgroup;
}

Status HostCgroup::SetLimits(uint64_t memory_bytes, uint64_t pids_max) {
  const std::string what = "limit host cgroup `" + (dirs_.empty() ? "" : dirs_.front()) + "`";
  bool memory = false, pids = false;
  for (size_t i = 0; i < dirs_.size(); ++i) {
    const std::string& dir = dirs_[i];
    if (i < roots_.size() && PathExists(dir + "/cgroup.controllers")) {
      // v2: each ancestor hands the controllers down to its children.
      const std::string& root = roots_[i];
      for (size_t at = root.size(); at < dir.size(); at = dir.find('/', at + 1)) {
        std::string ancestor = dir.substr(0, at);
        (void)WriteFile(ancestor + "/cgroup.subtree_control", "+memory +pids");
      }
    }
    if (PathExists(dir + "/memory.max")) {
      HULL_CHECK_OK(WriteFile(dir + "/memory.max", std::to_string(memory_bytes)), what);
      // No swap beyond the limit either: guest RAM that swaps is still the pod's.
      if (PathExists(dir + "/memory.swap.max")) (void)WriteFile(dir + "/memory.swap.max", "0");
      memory = true;
    } else if (PathExists(dir + "/memory.limit_in_bytes")) {
      HULL_CHECK_OK(WriteFile(dir + "/memory.limit_in_bytes", std::to_string(memory_bytes)), what);
      if (PathExists(dir + "/memory.memsw.limit_in_bytes")) {
        HULL_CHECK_OK(WriteFile(dir + "/memory.memsw.limit_in_bytes", std::to_string(memory_bytes)),
                      what);
      }
      memory = true;
    }
    if (PathExists(dir + "/pids.max")) {
      HULL_CHECK_OK(WriteFile(dir + "/pids.max", std::to_string(pids_max)), what);
      pids = true;
    }
  }
  if (!memory || !pids) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     what + ": no " + std::string(!memory ? "memory" : "pids") +
                         " controller in its hierarchies (set runtime.host_cgroup_required = "
                         "false to run sandboxes without limits)");
  }
  return Ok();
}

Result<HostCgroup> HostCgroup::FromRecord(const std::string& file, const std::string& cgroup_root) {
  HULL_TRY(std::string text, ReadFile(file, 64 * 1024), "read the host cgroup record");
  HostCgroup cgroup;
  std::istringstream lines(text);
  for (std::string dir; std::getline(lines, dir);) {
    if (dir.empty()) continue;
    if (!dir.starts_with(cgroup_root + "/") || dir.find("/..") != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument,
                       file + ": `" + dir + "` is not a cgroup below " + cgroup_root);
    }
    cgroup.dirs_.push_back(dir);
  }
  return cgroup;
}

Status HostCgroup::Record(const std::string& file) const {
  std::string text;
  for (const auto& dir : dirs_) text += dir + "\n";
  return WriteFile(file, text);
}

HostCgroup::HostCgroup(HostCgroup&& other) noexcept
    : dirs_(std::exchange(other.dirs_, {})), roots_(std::exchange(other.roots_, {})) {}

HostCgroup& HostCgroup::operator=(HostCgroup&& other) noexcept {
  if (this != &other) {
    Remove();
    dirs_ = std::exchange(other.dirs_, {});
    roots_ = std::exchange(other.roots_, {});
  }
  return *this;
}

HostCgroup::~HostCgroup() { Remove(); }

void HostCgroup::Remove() {
  for (const auto& dir : dirs_) {
    // A process that just exited leaves its cgroup a moment later.
    bool removed = false;
    for (int attempt = 0; attempt < 50 && !removed; ++attempt) {
      removed = ::rmdir(dir.c_str()) == 0 || errno == ENOENT;
      if (!removed && errno != EBUSY) break;
      if (!removed) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!removed) HULL_LOG_WARN("remove host cgroup {}: {}", dir, std::strerror(errno));
  }
  dirs_.clear();
}

}  // namespace hull::sandbox
