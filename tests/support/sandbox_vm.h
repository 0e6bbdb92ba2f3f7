// A test fixture for the container engine in a real guest: a booted VM with
// hull-agent connected, a sandbox whose shared directory is mounted at
// /run/hull/shared, and helpers to run busybox containers in it, the way the
// shim and `hullctl run` drive the agent API.
#pragma once

#include <grpcpp/client_context.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "hull/agent/v1/agent.grpc.pb.h"
#include "hull/core/error.h"
#include "hull/core/oci_spec.h"
#include "hull/hypervisor/hypervisor.h"
#include "hull/sandbox/agent_api.h"
#include "hull/sandbox/sandbox.h"
#include "testlib.h"

namespace hull::testing {

struct SandboxVmOptions {
  std::string guest_dir;   // holds vmlinuz and initrd.img
  std::string run_dir;     // parent of the VM's state directory; must exist
  std::string initrd;      // "" = <guest_dir>/initrd.img
  std::string root_image;  // "" = <guest_dir>/root.erofs
  uint64_t memory_mib = 512;
  std::string agent_log_level = "info";
  // Start from a VM template ([hypervisor] template, template_dir); the
  // shared one of the test run unless a test wants its own.
  bool from_template = true;
  std::string template_dir = testlib::SharedTemplateDir();
};

// Not thread-safe to construct or destroy; the RPC helpers may be called from
// any thread (gRPC stubs are thread-safe). The helpers speak the agent's wire
// API (grpc::Status and all): these are tests of that contract. What the
// host runtime uses is api(), the typed AgentApi.
class SandboxVm {
 public:
  static constexpr std::string_view kGuestSharedDir = ::hull::sandbox::kGuestSharedDir;

  // Boots the VM (virtio-fs share created by hull in its state directory),
  // connects to the agent and creates the sandbox. Nothing is left behind on
  // failure.
  static Result<std::unique_ptr<SandboxVm>> Boot(const SandboxVmOptions& options);

  SandboxVm(const SandboxVm&) = delete;
  SandboxVm& operator=(const SandboxVm&) = delete;
  // Force-removes what containers remain, powers the guest off and stops the
  // VM (removing its state directory, container root filesystems included).
  ~SandboxVm();

  // The agent's raw stub, on the sandbox's own connection.
  agent::v1::Agent::Stub& agent() { return *stub_; }
  sandbox::AgentApi& api() { return session_->agent(); }
  Vm& vm() { return session_->vm(); }
  const std::string& sandbox_id() const { return sandbox_id_; }
  // Whether the VM started as a clone of a template.
  bool from_template() const { return session_->from_template(); }
  // The guest console so far (agent logs), for failure messages.
  std::string Console() const;

  // Where container `id`'s root filesystem is, on the host and in the guest.
  std::string HostRootfs(const std::string& id) const;
  std::string GuestRootfs(const std::string& id) const;

  // A busybox root filesystem for `id` (host path HostRootfs(id)), shared into
  // the guest as a shim shares one; made once, reused by later containers of
  // that id.
  Status MakeRootfs(const std::string& id);

  // CreateContainer with `spec` over a busybox rootfs (made if missing).
  grpc::Status CreateContainer(const std::string& id, const oci::Spec& spec,
                               const agent::v1::ProcessIo& io);
  grpc::Status StartContainer(const std::string& id);
  // CreateContainer + StartContainer.
  grpc::Status RunContainer(const std::string& id, const oci::Spec& spec,
                            const agent::v1::ProcessIo& io);
  grpc::Status RemoveContainer(const std::string& id, bool force);
  // ExecProcess of `args` with the container spec's process as the template
  // (user, cwd, capabilities...), env replaced by `env` when given.
  grpc::Status Exec(const std::string& id, const std::string& exec_id, const oci::Spec& spec,
                    std::vector<std::string> args, const agent::v1::ProcessIo& io,
                    std::optional<std::vector<std::string>> env = std::nullopt);
  grpc::Status Wait(const std::string& id, const std::string& exec_id,
                    agent::v1::WaitProcessResponse* response,
                    std::chrono::milliseconds timeout = std::chrono::seconds(60));
  grpc::Status Signal(const std::string& id, const std::string& exec_id, int signal,
                      bool all = false);
  // WriteStdin: one message with `data`, then close when `close` is set (the
  // end of the stream closes stdin either way).
  grpc::Status WriteStdin(const std::string& id, const std::string& exec_id,
                          const std::string& data, bool close = true);

 private:
  SandboxVm() = default;

  std::unique_ptr<sandbox::Sandbox> session_;
  std::unique_ptr<agent::v1::Agent::Stub> stub_;
  std::string sandbox_id_;
  // Where the containers' root filesystems are made on the host (beside the
  // VM's state dir), and where each is shared into the guest.
  std::string rootfs_parent_;
  std::map<std::string, std::string> guest_rootfs_;
};

// A client context whose deadline is `timeout` from now.
std::unique_ptr<grpc::ClientContext> ContextWithTimeout(std::chrono::milliseconds timeout);

// The OCI "process" object of `process` as JSON (ExecProcess's oci_process_json).
std::string ProcessJson(const oci::Process& process);

// Reads one output stream of a process on a thread of its own (the host's
// one output pump, sandbox::PumpOutput), collecting what arrives. The
// destructor cancels the call and joins.
class OutputReader {
 public:
  OutputReader(sandbox::AgentApi& agent, const std::string& container_id,
               const std::string& exec_id, sandbox::OutputStream stream);
  ~OutputReader();
  OutputReader(const OutputReader&) = delete;
  OutputReader& operator=(const OutputReader&) = delete;

  // Waits until the output contains `needle`; false on timeout or if the
  // stream ended without it.
  bool WaitFor(const std::string& needle, std::chrono::milliseconds timeout);
  // Waits until the stream ends; false on timeout.
  bool WaitForEnd(std::chrono::milliseconds timeout);
  std::string text();
  // How the stream ended (valid once ended).
  Status status();

 private:
  sandbox::Cancellation cancellation_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::string text_;
  bool ended_ = false;
  Status status_;
  std::thread thread_;
};

}  // namespace hull::testing
