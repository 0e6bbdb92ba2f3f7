// The cgroup v2 manager of the container engine.
//
// The guest always has a pure cgroup v2 hierarchy at /sys/fs/cgroup (mounted
// by hull-agent with nsdelegate). Every entry point takes the cgroup root as
// a path, so tests run the same code against a fake tree of plain files in a
// temp dir, or against a private cgroup2 mount.
//
// Resources are translated from the OCI spec exactly as runc does for cgroup
// v2 (libcontainer/cgroups/fs2 and cgroups/utils.go); where hull differs, the
// comment at the translation says so and why.
//
// Threading: a Cgroup is a handle to a directory and holds no kernel state;
// its methods may be called from any thread. Two threads freezing and thawing
// the same cgroup race exactly as two shells would. OomWatcher is thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "hull/core/error.h"
#include "hull/core/fd.h"
#include "hull/core/oci_spec.h"

namespace hull::engine {

// --- Statistics --------------------------------------------------------------

struct CpuStats {  // cpu.stat
  uint64_t usage_usec = 0;
  uint64_t user_usec = 0;
  uint64_t system_usec = 0;
  uint64_t nr_periods = 0;
  uint64_t nr_throttled = 0;
  uint64_t throttled_usec = 0;
};

struct MemoryStats {
  uint64_t current = 0;                  // memory.current
  uint64_t max = 0;                      // memory.max; 0 = "max" (no limit)
  uint64_t swap_current = 0;             // memory.swap.current (0 without swap accounting)
  uint64_t anon = 0;                     // memory.stat "anon"
  uint64_t file = 0;                     // memory.stat "file"
  std::map<std::string, uint64_t> stat;  // all of memory.stat
  uint64_t oom = 0;                      // memory.events "oom"
  uint64_t oom_kill = 0;                 // memory.events "oom_kill"
};

struct PidsStats {
  uint64_t current = 0;  // pids.current
  uint64_t max = 0;      // pids.max; 0 = "max" (no limit)
};

struct IoDeviceStats {  // one line of io.stat
  uint32_t major = 0;
  uint32_t minor = 0;
  uint64_t rbytes = 0;
  uint64_t wbytes = 0;
  uint64_t rios = 0;
  uint64_t wios = 0;
};

struct CgroupStats {
  CpuStats cpu;
  MemoryStats memory;
  PidsStats pids;
  std::vector<IoDeviceStats> io;
};

// --- Pure functions (kernel text in, values out; never crash on garbage) ------

// A "flat keyed" cgroup file: one "key value" pair per line, value an
// unsigned decimal (cpu.stat, memory.stat, memory.events, cgroup.events).
// Empty lines are skipped; anything else malformed is a kInternal error that
// names the line.
Result<std::map<std::string, uint64_t>> ParseFlatKeyed(std::string_view text);

// io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N" per
// line. Keys hull does not report (dbytes, dios, cost.*) are skipped; a bad
// device or a bad value of a reported key is a kInternal error.
Result<std::vector<IoDeviceStats>> ParseIoStat(std::string_view text);

// A single-value file such as memory.max or pids.max: a number, or "max"
// (returned as nullopt). Surrounding whitespace is ignored.
Result<std::optional<uint64_t>> ParseUintOrMax(std::string_view text);

// cgroup.procs: one pid per line.
Result<std::vector<pid_t>> ParseCgroupProcs(std::string_view text);

// A cgroup path relative to the cgroup root: "a/b". Absolute paths, empty
// components ("a//b", "a/"), "." and ".." are kInvalidArgument.
Status ValidateCgroupRelativePath(std::string_view relative_path);

// runc's conversions of cgroup v1 values in the OCI spec (cgroups/utils.go).
//
// cpu.shares [2, 262144] -> cpu.weight [1, 10000], linearly:
// 1 + ((shares - 2) * 9999) / 262142, so 1024 -> 39. 0 means unset (returns
// 0). runc >= 1.3 (opencontainers/runc#4785) moved to a quadratic fit that
// maps 1024 -> 100; hull keeps the linear formula runc used for years.
uint64_t ConvertCpuSharesToCpuWeight(uint64_t shares);
// blkio.weight [10, 1000] -> io.weight [1, 10000]: 1 + (weight - 10) * 9999 / 990.
// 0 means unset (returns 0).
uint64_t ConvertBlkioWeightToIoWeight(uint16_t weight);
// memory+swap (v1) -> memory.swap.max (v2); -1 is "max", 0 is "unset".
// Errors (kInvalidArgument) as runc: swap without a memory limit, swap below
// the memory limit, a negative memory limit other than -1.
Result<int64_t> ConvertMemorySwapToCgroupV2(int64_t memory_swap, int64_t memory);

// --- Cgroup ------------------------------------------------------------------

// One cgroup directory. Move-only: it names the cgroup a container owns;
// Destroy() removes it.
class Cgroup {
 public:
  // Creates root/relative_path (mkdir -p; an existing cgroup is fine) and
  // enables, in the cgroup.subtree_control of root and of every ancestor
  // below it, those of cpu, cpuset, io, memory and pids that the ancestor's
  // cgroup.controllers lists. Each controller is enabled by its own write; a
  // controller the kernel refuses (EBUSY: processes in an inner cgroup, ...)
  // is logged at debug level and skipped, and the Apply() that needs it
  // reports the missing file. Errors: kInvalidArgument for a bad path,
  // kFailedPrecondition when root or an ancestor is not a cgroup v2
  // directory (no cgroup.controllers), errno-coded errors from mkdir.
  static Result<Cgroup> Create(const std::string& root, const std::string& relative_path);
  // An existing cgroup; kNotFound if the directory is missing.
  static Result<Cgroup> Open(const std::string& root, const std::string& relative_path);

  Cgroup(Cgroup&&) noexcept = default;
  Cgroup& operator=(Cgroup&&) noexcept = default;
  Cgroup(const Cgroup&) = delete;
  Cgroup& operator=(const Cgroup&) = delete;
  ~Cgroup() = default;  // leaves the directory; see Destroy()

  // Absolute path of the cgroup directory.
  const std::string& path() const { return path_; }
  // The path below the root, as given ("pod/ctr").
  const std::string& relative_path() const { return relative_path_; }

  // O_PATH|O_DIRECTORY|O_CLOEXEC fd of the directory, for clone3's
  // CLONE_INTO_CGROUP.
  Result<UniqueFd> OpenDirFd() const;

  // Writes linux.resources into the cgroup's interface files, in runc's order
  // (pids, memory, io, cpu, cpuset, unified). Stops at the first failure;
  // errors name the spec field, the file and the cause:
  //   "linux.resources.blockIO.weight: io.weight: ENOENT (the io controller is
  //   not available)" (kFailedPrecondition),
  //   "linux.resources.memory.limit: write `1` to memory.max: EBUSY (...)"
  //   (kInvalidArgument for EINVAL, ERANGE, EBUSY, EOVERFLOW from the kernel).
  // Device rules are accepted and not written: on cgroup v2 runc enforces them
  // with an eBPF program; hull does not, because the container's /dev holds
  // only the devices the spec lists (the guest is the isolation boundary).
  // realtime cpu settings, memory.kernel, memory.swappiness and
  // disableOOMKiller have no cgroup v2 file and are ignored, as in runc.
  Status Apply(const oci::Resources& resources);

  // Moves a process (all its threads) into the cgroup (cgroup.procs).
  Status AddProcess(pid_t pid);
  // The processes directly in this cgroup (not in its children).
  Result<std::vector<pid_t>> Pids() const;
  // Whether this cgroup or any descendant has a live process (cgroup.events).
  Result<bool> Populated() const;

  // Write cgroup.freeze and wait until cgroup.events says "frozen 1" (or 0).
  // kDeadlineExceeded if the kernel has not finished within `timeout`; the
  // request stays in effect.
  Status Freeze(std::chrono::milliseconds timeout);
  Status Thaw(std::chrono::milliseconds timeout);

  // SIGKILLs every process in the subtree: one write to cgroup.kill (Linux
  // >= 5.14), else KillCgroupTree().
  // Returns once the signals are sent; the processes may not have exited yet.
  Status KillAll();

  // KillAll, wait until the subtree is not populated, then rmdir it
  // bottom-up (retrying EBUSY). A missing directory is Ok, so Destroy is
  // idempotent. kDeadlineExceeded if processes outlive `timeout`.
  Status Destroy(std::chrono::milliseconds timeout);

  // Files of controllers that are not enabled are reported as zeros; an
  // unparsable file is a kInternal error naming it.
  Result<CgroupStats> Stats() const;

 private:
  Cgroup(std::string relative_path, std::string path)
      : relative_path_(std::move(relative_path)), path_(std::move(path)) {}

  Status WaitForEvent(std::string_view key, uint64_t want, std::chrono::milliseconds timeout,
                      std::string_view what) const;

  std::string relative_path_;
  std::string path_;
};

// SIGKILLs every process in cgroup_path and its descendants, again and
// again, until none is left (processes leave cgroup.procs when they exit,
// before they are reaped) or about 2 s have passed (then kDeadlineExceeded).
// The fallback of KillAll() for kernels without cgroup.kill; public so tests
// can exercise it on any kernel.
Status KillCgroupTree(const std::string& cgroup_path);

// --- OOM events --------------------------------------------------------------

// Watches the memory.events files of many cgroups with one inotify fd and one
// thread, and calls `callback` (on that thread) whenever a cgroup's oom_kill
// counter goes up. The kernel raises a modify event on memory.events for
// every change (Documentation/admin-guide/cgroup-v2.rst).
class OomWatcher {
 public:
  using Callback = std::function<void(const std::string& id, uint64_t oom_kill_total)>;

  // Starts the thread. The callback must not block for long; it may call
  // Watch/Unwatch.
  static Result<std::unique_ptr<OomWatcher>> Create(Callback callback);

  OomWatcher(const OomWatcher&) = delete;
  OomWatcher& operator=(const OomWatcher&) = delete;
  // Wakes the thread through an eventfd and joins it; no callback runs after.
  ~OomWatcher();

  // Starts watching `cgroup`'s memory.events under `id`. The current oom_kill
  // count is the baseline: only later kills are reported. Errors:
  // kAlreadyExists for a watched id, kFailedPrecondition when the cgroup has
  // no memory.events (memory controller not enabled).
  Status Watch(const std::string& id, const Cgroup& cgroup);
  // Stops watching; unknown ids are ignored. A callback for `id` that the
  // thread has already started may still complete after Unwatch returns.
  void Unwatch(const std::string& id);

 private:
  struct Entry {
    std::string events_path;
    int wd = -1;
    uint64_t oom_kill = 0;
  };

  OomWatcher(Callback callback, UniqueFd inotify_fd, UniqueFd wake_fd);
  void Run();
  void CheckWatches(const std::vector<int>& wds);

  Callback callback_;
  UniqueFd inotify_fd_;
  UniqueFd wake_fd_;
  std::mutex mutex_;
  std::map<std::string, Entry> entries_;  // by id; guarded by mutex_
  std::thread thread_;
};

}  // namespace hull::engine
