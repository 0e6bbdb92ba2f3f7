// A sandbox: one VM (booted, or cloned from a template when the
// configuration allows: see hull/hypervisor/template.h) with a shared directory, its agent
// connected and its sandbox created; containers are added from host root filesystems, and host
// paths (volumes) are shared into them. Closing removes every container,
// powers the guest off, stops the VM and virtiofsd, unmounts what was shared,
// and takes down the pod's tap and host cgroup. The host runtime's unit: the
// shim runs one per pod, hullctl one per `run`.
//
// Threading: every method may be called from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "hull/core/config.h"
#include "hull/core/error.h"
#include "hull/core/guest_contract.h"
#include "hull/hypervisor/hypervisor.h"
#include "hull/hypervisor/template.h"
#include "hull/sandbox/agent_api.h"
#include "hull/sandbox/host_cgroup.h"
#include "hull/sandbox/pod_network.h"
#include "hull/sandbox/shared_dir.h"

namespace hull::sandbox {

// Where the guest mounts the VM's shared directory (the contract with the
// agent, spelled in core).
inline constexpr std::string_view kGuestSharedDir = guest::kSharedDir;

struct SandboxOptions {
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

// Connects to a VM's agent and waits until it serves, until `deadline`.
using ConnectAgentFn = std::function<Result<std::unique_ptr<AgentApi>>(
    Vm& vm, std::chrono::steady_clock::time_point deadline, const AgentTimeouts& timeouts)>;

// The collaborators a sandbox is built from. Each empty one is the real
// thing; tests put doubles in (tests/support/fake_vm.h, fake_agent.h).
struct SandboxDeps {
  using Clock = std::chrono::steady_clock;
  // Default: MakeHypervisor(config.hypervisor.backend).
  std::shared_ptr<Hypervisor> hypervisor;
  // Default: GrpcAgent over Vm::ConnectAgent.
  ConnectAgentFn connect_agent;
  // What shares host paths into the VM. Default: BindShare.
  std::function<std::unique_ptr<HostShare>(const std::string& shared_dir)> make_share;
  // Where the host's cgroup hierarchies are. Default: /sys/fs/cgroup.
  std::string host_cgroup_root;
};

// The agent's deadlines as the configuration sets them.
AgentTimeouts AgentTimeoutsFromConfig(const Config& config);

// The template for `vm_config`'s shape (see hull/hypervisor/template.h):
// the one in TemplateRoot(config), or one built now by booting a VM and
// saving it once its agent answered (`connect_agent`; empty = gRPC).
// Errors: kFailedPrecondition (this VM cannot be cloned: why), kUnavailable
// (another process is building it), kResourceExhausted (too many templates),
// kUnimplemented (the backend cannot), or why the build failed.
Result<TemplateRef> EnsureTemplate(const Config& config, const VmConfig& vm_config,
                                   Hypervisor& hypervisor,
                                   const ConnectAgentFn& connect_agent = {});

class Sandbox {
 public:
  // Starts the VM for sandbox `id` -- a clone of its shape's template, or a
  // boot when there is none yet (the template is then built in the
  // background, for the next sandbox; Close waits for that) -- and creates
  // its sandbox. On failure nothing is left behind. The hypervisor and
  // virtiofsd die with the calling thread (PR_SET_PDEATHSIG follows the
  // thread that forks): call it from a thread that lives as long as the
  // sandbox.
  static Result<std::unique_ptr<Sandbox>> Open(const Config& config, const std::string& id,
                                               const SandboxOptions& options = {},
                                               SandboxDeps deps = {});
  ~Sandbox();  // Close()
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

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
                                   const std::string& host_rootfs, const StdioSetup& stdio);
  // Removes the container from the guest (killing what still runs) and
  // unshares what was shared for it. Unknown ids are fine.
  Status RemoveContainer(const std::string& id);

  // Removes the containers, powers the guest off and stops the VM. Safe to
  // call more than once.
  void Close();

  // The agent stays valid until the sandbox is destroyed; after Close its
  // calls fail (the VM is gone).
  AgentApi& agent() { return *agent_; }
  // The same agent without that watch, as connected (a GrpcAgent unless the
  // deps said otherwise): for tests and tools that speak its wire directly.
  AgentApi& unwatched_agent() { return *unwatched_agent_; }
  Vm& vm() { return *vm_; }
  const std::string& id() const { return id_; }
  // Whether the VM started as a clone of a template (else it booted).
  bool from_template() const { return started_from_template_; }

 private:
  Sandbox(Config config, std::string id, std::unique_ptr<Vm> vm)
      : config_(std::move(config)), id_(std::move(id)), vm_(std::move(vm)) {}
  // One attempt of Open; `cloned` says whether its VM was a clone that
  // came up (so a failure after that is worth a boot).
  static Result<std::unique_ptr<Sandbox>> OpenOnce(const Config& config, const std::string& id,
                                                   const SandboxOptions& options, SandboxDeps deps,
                                                   bool& cloned);
  // `error` of an agent call, with why the VM ended when it ended under it
  // (a dropped connection alone does not tell the caller that).
  Error WithVmExit(Error error);
  // Gives the guest's NIC the pod interface's addresses, MTU and routes.
  Status ConfigureGuestNetwork();
  // Builds the template this sandbox's VM lacked, on a thread of its own
  // (the template VM lives as long as that thread); Close waits for it.
  void BuildTemplateInBackground(const VmConfig& vm_config, const ConnectAgentFn& connect);

  Config config_;
  std::string id_;
  std::shared_ptr<Hypervisor> hypervisor_;  // outlives vm_
  std::unique_ptr<Vm> vm_;
  std::unique_ptr<AgentApi> unwatched_agent_;
  // unwatched_agent_ behind a WatchedAgent: a call past its deadline ends
  // the VM (Abort), so nothing waits on a guest that stopped answering.
  std::unique_ptr<AgentApi> agent_;
  std::unique_ptr<HostShare> share_;
  std::optional<PodNetwork> network_;
  std::optional<HostCgroup> host_cgroup_;
  std::mutex mu_;
  std::vector<std::string> containers_;
  std::map<std::string, int> share_counter_;
  bool closed_ = false;
  bool started_from_template_ = false;
  std::thread template_build_;
};

}  // namespace hull::sandbox
