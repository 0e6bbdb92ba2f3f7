#include "session.h"

#include <grpcpp/client_context.h>
#include <sys/mount.h>

#include "hull/core/log.h"
#include "hull/core/syscall.h"

namespace hull::hullctl {

namespace v1 = agent::v1;
using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

Result<std::unique_ptr<Session>> Session::Open(const Config& config, const std::string& id) {
  HULL_TRY(VmConfig vm_config, VmConfigFromConfig(config, id), "open sandbox");
  vm_config.share_dir = true;
  HULL_TRY(auto hypervisor, MakeHypervisor(config.hypervisor.backend), "open sandbox");
  HULL_TRY(auto vm, hypervisor->Launch(vm_config), "open sandbox");
  std::unique_ptr<Session> session(new Session(config, std::move(vm)));
  auto deadline = session->vm_->launched_at() + seconds(config.agent.boot_timeout_seconds);
  Vm* raw_vm = session->vm_.get();
  auto client = AgentClient::Connect([raw_vm](Clock::time_point d) { return raw_vm->ConnectAgent(d); }, deadline);
  if (!client) {
    // What the guest printed is the best clue to why it never answered.
    std::string console = ReadFile(raw_vm->console_log_path(), 16 << 20).value_or("");
    if (console.size() > 2000) console = console.substr(console.size() - 2000);
    return Unexpected{std::move(client).error().Wrap("open sandbox (guest console ends with:\n" + console + ")")};
  }
  session->client_ = std::move(*client);
  grpc::ClientContext context;
  v1::CreateSandboxRequest request;
  request.set_sandbox_id(id);
  auto* storage = request.add_storages();
  storage->set_driver("virtiofs");
  storage->set_source(std::string(kSharedFsTag));
  storage->set_mount_point(kGuestSharedDir);
  v1::CreateSandboxResponse response;
  auto status = session->client_->agent().CreateSandbox(&context, request, &response);
  if (!status.ok()) return Unexpected{ErrorFromGrpc(status, "CreateSandbox")};
  return session;
}

Status Session::CreateContainer(const std::string& id, const std::string& spec_json, const std::string& host_rootfs,
                                const v1::ProcessIo& io) {
  const std::string what = "create container `" + id + "`";
  std::string mount_point = vm_->shared_dir() + "/" + id + "/rootfs";
  HULL_CHECK_OK(MakeDirs(mount_point, 0755), what);
  if (::mount(host_rootfs.c_str(), mount_point.c_str(), nullptr, MS_BIND | MS_REC, nullptr) < 0) {
    return ErrnoError(what + ": share the root filesystem `" + host_rootfs + "`");
  }
  mounts_.push_back(mount_point);
  grpc::ClientContext context;
  v1::CreateContainerRequest request;
  request.set_container_id(id);
  request.set_oci_spec_json(spec_json);
  request.set_rootfs_path(std::string(kGuestSharedDir) + "/" + id + "/rootfs");
  *request.mutable_io() = io;
  v1::CreateContainerResponse response;
  auto status = client_->agent().CreateContainer(&context, request, &response);
  if (!status.ok()) return Unexpected{ErrorFromGrpc(status, "CreateContainer")};
  containers_.push_back(id);
  return Ok();
}

void Session::Close() {
  if (closed_) return;
  closed_ = true;
  if (client_) {
    for (const auto& id : containers_) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + seconds(10));
      v1::RemoveContainerRequest request;
      request.set_container_id(id);
      request.set_force(true);
      v1::RemoveContainerResponse response;
      (void)client_->agent().RemoveContainer(&context, request, &response);
    }
    vm_->ExpectExit();
    (void)client_->Shutdown(true, seconds(5));
    client_.reset();
  }
  // The guest is gone (or going): unshare the root filesystems, then stop.
  for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) {
    if (::umount2(it->c_str(), MNT_DETACH) < 0) HULL_LOG_WARN("unmount {}: {}", *it, strerror(errno));
  }
  mounts_.clear();
  vm_->Stop(seconds(config_.hypervisor.stop_grace_seconds));
}

Session::~Session() { Close(); }

}  // namespace hull::hullctl
