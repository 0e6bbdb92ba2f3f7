// The pod's cgroup on the host: the sandbox spec's linux.cgroupsPath (kubelet's
// cgroup_parent/<sandbox id>), so the node
// accounts the pod's real cost to the pod (kubelet's QoS hierarchy, CRI's
// PodSandboxStats, which reads this cgroup). QEMU is started in it
// (SpawnOptions::cgroup_procs), so all it allocates -- the guest's RAM -- is
// charged to the pod from the first page. Works on cgroup v2 and on v1
// hierarchies; systemd-style paths ("slice:prefix:name") are not supported
// (they need systemd to create a scope) and are reported as such.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "hull/core/error.h"

namespace hull::sandbox {

// The file in the sandbox's state dir that names the cgroup's directories.
inline constexpr char kHostCgroupRecord[] = "host-cgroup";

class HostCgroup {
 public:
  // Creates the cgroup (and its parents) in every hierarchy mounted under
  // `cgroup_root` (v2: the one unified hierarchy). `path` is absolute.
  static Result<HostCgroup> Create(const std::string& path,
                                   const std::string& cgroup_root = "/sys/fs/cgroup");

  HostCgroup(HostCgroup&& other) noexcept;
  HostCgroup& operator=(HostCgroup&& other) noexcept;
  HostCgroup(const HostCgroup&) = delete;
  HostCgroup& operator=(const HostCgroup&) = delete;
  // Removes the cgroup's directories (not its parents) once they are empty.
  ~HostCgroup();

  // The cgroup a crashed shim left, from the file Record wrote: `delete`
  // removes it. Only directories below `cgroup_root` are taken.
  static Result<HostCgroup> FromRecord(const std::string& file,
                                       const std::string& cgroup_root = "/sys/fs/cgroup");
  // Writes the directories to `file`, one per line.
  Status Record(const std::string& file) const;

  const std::vector<std::string>& dirs() const { return dirs_; }
  void Remove();

  // Limits what the cgroup's processes may use: `memory_bytes` of memory
  // (v2 memory.max; v1 memory.limit_in_bytes, and memory.memsw too where
  // swap is accounted) and `pids_max` tasks (pids.max). On v2 the memory and
  // pids controllers are enabled on the way down from the hierarchy's root.
  // Fails (kFailedPrecondition) unless both limits are in force in some
  // hierarchy: the caller decides whether a sandbox runs without them.
  Status SetLimits(uint64_t memory_bytes, uint64_t pids_max);

 private:
  HostCgroup() = default;
  std::vector<std::string> dirs_;   // one per hierarchy
  std::vector<std::string> roots_;  // each one's hierarchy (Create only)
};

}  // namespace hull::sandbox
