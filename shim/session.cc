#include "session.h"

#include <fcntl.h>
#include <grpcpp/client_context.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>

#include "hull/core/log.h"
#include "hull/core/syscall.h"

namespace hull {

namespace v1 = agent::v1;
using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

Result<std::unique_ptr<Session>> Session::Open(const Config& config, const std::string& id,
                                               const SessionOptions& options) {
  HULL_TRY(VmConfig vm_config, VmConfigFromConfig(config, options.vm_id.empty() ? id : options.vm_id),
           "open sandbox");
  if (!options.vm_parent_dir.empty()) vm_config.run_dir = options.vm_parent_dir;
  if (options.vcpus != 0) vm_config.vcpus = options.vcpus;
  if (options.memory_mib != 0) vm_config.memory_mib = options.memory_mib;
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
  context.set_deadline(std::chrono::system_clock::now() + seconds(30));
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

Result<std::string> Session::SharePath(const std::string& container_id, const std::string& host_path,
                                       bool read_only) {
  std::lock_guard lock(mu_);
  const std::string what = "share `" + host_path + "` with container `" + container_id + "`";
  struct stat st {};
  if (::stat(host_path.c_str(), &st) < 0) return ErrnoError(what);
  std::string name = "volumes/" + std::to_string(share_counter_[container_id]++);
  std::string mount_point = vm_->shared_dir() + "/" + container_id + "/" + name;
  if (S_ISDIR(st.st_mode)) {
    HULL_CHECK_OK(MakeDirs(mount_point, 0755), what);
  } else {
    HULL_CHECK_OK(MakeDirs(vm_->shared_dir() + "/" + container_id + "/volumes", 0755), what);
    UniqueFd placeholder(::open(mount_point.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    if (!placeholder) return ErrnoError(what + ": create the mount point");
  }
  if (::mount(host_path.c_str(), mount_point.c_str(), nullptr, MS_BIND | MS_REC, nullptr) < 0) {
    return ErrnoError(what + ": bind mount");
  }
  mounts_[container_id].push_back(mount_point);
  // Read-only on the host too: the guest cannot write through virtiofsd even
  // if it ignores the spec's "ro".
  if (read_only &&
      ::mount(nullptr, mount_point.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) < 0) {
    return ErrnoError(what + ": make the bind read-only");
  }
  return std::string(kGuestSharedDir) + "/" + container_id + "/" + name;
}

Status Session::CreateContainer(const std::string& id, const std::string& spec_json, const std::string& host_rootfs,
                                const v1::ProcessIo& io) {
  const std::string what = "create container `" + id + "`";
  {
    std::lock_guard lock(mu_);
    std::string mount_point = vm_->shared_dir() + "/" + id + "/rootfs";
    HULL_CHECK_OK(MakeDirs(mount_point, 0755), what);
    if (::mount(host_rootfs.c_str(), mount_point.c_str(), nullptr, MS_BIND | MS_REC, nullptr) < 0) {
      auto error = ErrnoError(what + ": share the root filesystem `" + host_rootfs + "`");
      UnshareLocked(id);
      return error;
    }
    mounts_[id].push_back(mount_point);
  }
  grpc::ClientContext context;
  v1::CreateContainerRequest request;
  request.set_container_id(id);
  request.set_oci_spec_json(spec_json);
  request.set_rootfs_path(std::string(kGuestSharedDir) + "/" + id + "/rootfs");
  *request.mutable_io() = io;
  v1::CreateContainerResponse response;
  auto status = client_->agent().CreateContainer(&context, request, &response);
  std::lock_guard lock(mu_);
  if (!status.ok()) {
    UnshareLocked(id);
    return Unexpected{ErrorFromGrpc(status, "CreateContainer")};
  }
  containers_.push_back(id);
  return Ok();
}

Status Session::RemoveContainer(const std::string& id) {
  Status result;
  bool known;
  {
    std::lock_guard lock(mu_);
    known = std::find(containers_.begin(), containers_.end(), id) != containers_.end();
  }
  if (known && client_) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + seconds(15));
    v1::RemoveContainerRequest request;
    request.set_container_id(id);
    request.set_force(true);
    v1::RemoveContainerResponse response;
    auto status = client_->agent().RemoveContainer(&context, request, &response);
    if (!status.ok() && status.error_code() != grpc::StatusCode::NOT_FOUND) {
      result = Unexpected{ErrorFromGrpc(status, "RemoveContainer")};
    }
  }
  std::lock_guard lock(mu_);
  std::erase(containers_, id);
  UnshareLocked(id);
  return result;
}

void Session::UnshareLocked(const std::string& id) {
  auto it = mounts_.find(id);
  if (it != mounts_.end()) {
    for (auto mount = it->second.rbegin(); mount != it->second.rend(); ++mount) {
      if (::umount2(mount->c_str(), MNT_DETACH) < 0) HULL_LOG_WARN("unmount {}: {}", *mount, strerror(errno));
    }
    mounts_.erase(it);
  }
  share_counter_.erase(id);
  if (vm_ && !vm_->shared_dir().empty()) (void)RemoveTree(vm_->shared_dir() + "/" + id);
}

void Session::Close() {
  std::vector<std::string> containers;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    containers = containers_;
  }
  if (client_) {
    for (const auto& id : containers) {
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
  }
  // The guest is gone (or going): unshare the root filesystems, then stop.
  {
    std::lock_guard lock(mu_);
    std::vector<std::string> ids;
    for (const auto& [id, mounts] : mounts_) ids.push_back(id);
    for (const auto& id : ids) UnshareLocked(id);
    containers_.clear();
  }
  // The client stays until the destructor: other threads may still be in a
  // call, which fails now that the VM is gone.
  vm_->Stop(seconds(config_.hypervisor.stop_grace_seconds));
}

Session::~Session() { Close(); }

}  // namespace hull
