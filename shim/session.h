// A sandbox session: one VM with a shared directory, its agent connected and
// its sandbox created; containers are added from host root filesystems, and
// host paths (volumes) are shared into them. Tearing down removes every
// container, powers the guest off, stops the VM and virtiofsd, and unmounts
// what was shared. Used by the shim (one per pod) and by hullctl.
//
// Threading: every method may be called from any thread.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent_client.h"
#include "host_cgroup.h"
#include "hull/core/config.h"
#include "hull/core/error.h"
#include "hull/hypervisor/hypervisor.h"
#include "pod_network.h"

namespace hull {

// Where the guest mounts the VM's shared directory.
inline constexpr char kGuestSharedDir[] = "/run/hull/shared";

struct SessionOptions {
  // The VM's state directory is <vm_parent_dir>/<vm_id>; "" = the
  // configuration's run_dir and the sandbox id.
  std::string vm_parent_dir;
  std::string vm_id;
  // Overrides of the configuration for this VM (0 = configured value).
  uint32_t vcpus = 0;
  uint64_t memory_mib = 0;
  // A pod's CNI netns: the VM joins its network (see pod_network.h); "" =
  // loopback only.
  std::string netns_path;
  // A pod's cgroup on the host (the sandbox's linux.cgroupsPath): QEMU is
  // moved into it (see host_cgroup.h); "" = none.
  std::string host_cgroup_path;
};

class Session {
 public:
  // Boots the VM for sandbox `id` and creates its sandbox. On failure nothing
  // is left behind. The hypervisor and virtiofsd die with the calling thread
  // (PR_SET_PDEATHSIG follows the thread that forks): call it from a thread
  // that lives as long as the session.
  static Result<std::unique_ptr<Session>> Open(const Config& config, const std::string& id,
                                               const SessionOptions& options = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Shares `host_path` (a directory or file) read-write or read-only for
  // container `container_id`; returns the path the guest sees it at. Undone
  // by RemoveContainer or Close.
  Result<std::string> SharePath(const std::string& container_id, const std::string& host_path,
                                bool read_only);

  // Shares `host_rootfs` into the guest and creates container `id` from the
  // spec JSON; returns once the container is created (not started), with its
  // init's pid in the guest (only meaningful inside the guest). On failure,
  // what was shared for `id` is unshared.
  Result<uint32_t> CreateContainer(const std::string& id, const std::string& spec_json,
                                   const std::string& host_rootfs, const agent::v1::ProcessIo& io);
  // Removes the container from the guest (killing what still runs) and
  // unshares what was shared for it. Unknown ids are fine.
  Status RemoveContainer(const std::string& id);

  // Removes the containers, powers the guest off and stops the VM. Safe to
  // call more than once.
  void Close();

  AgentClient& client() { return *client_; }
  Vm& vm() { return *vm_; }

 private:
  Session(Config config, std::unique_ptr<Vm> vm) : config_(std::move(config)), vm_(std::move(vm)) {}
  // Binds `host_path` at `relative` (beneath the shared dir) for
  // `container_id`; mu_ held.
  Status ShareLocked(const std::string& container_id, const std::string& host_path,
                     const std::string& relative, bool directory, bool read_only);
  // Gives the guest's NIC the pod interface's addresses, MTU and routes.
  Status ConfigureGuestNetwork();
  // Unmounts and removes what was shared for `id`; mu_ held.
  void UnshareLocked(const std::string& id);

  Config config_;
  std::unique_ptr<Vm> vm_;
  std::unique_ptr<AgentClient> client_;
  std::optional<PodNetwork> network_;
  std::optional<HostCgroup> host_cgroup_;
  std::mutex mu_;
  std::vector<std::string> containers_;
  UniqueFd shared_fd_;  // O_PATH of the shared dir
  // Per container: mount points relative to the shared dir, in mount order.
  std::map<std::string, std::vector<std::string>> mounts_;
  std::map<std::string, int> share_counter_;
  bool closed_ = false;
};

}  // namespace hull
