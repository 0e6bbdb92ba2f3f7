#include "session.h"

#include <fcntl.h>
#include <grpcpp/client_context.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "hull/core/log.h"
#include "hull/core/syscall.h"
#include "shared_dir.h"

namespace hull {

namespace v1 = agent::v1;
using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

Result<std::unique_ptr<Session>> Session::Open(const Config& config, const std::string& id,
                                               const SessionOptions& options) {
  HULL_TRY(VmConfig vm_config,
           VmConfigFromConfig(config, options.vm_id.empty() ? id : options.vm_id), "open sandbox");
  if (!options.vm_parent_dir.empty()) vm_config.run_dir = options.vm_parent_dir;
  if (options.vcpus != 0) vm_config.vcpus = options.vcpus;
  if (options.memory_mib != 0) vm_config.memory_mib = options.memory_mib;
  vm_config.share_dir = true;
  HULL_TRY(auto hypervisor, MakeHypervisor(config.hypervisor.backend), "open sandbox");
  std::optional<PodNetwork> network;
  if (!options.netns_path.empty()) {
    HULL_TRY(PodNetwork attached,
             PodNetwork::Attach(options.netns_path, hypervisor->tap_handover()), "open sandbox");
    network.emplace(std::move(attached));
    vm_config.network.netns_path = options.netns_path;
    vm_config.network.tap_fd = network->tap_fd();
    vm_config.network.mac_address = network->interface().mac_address;
    if (hypervisor->tap_handover() == TapHandover::kNameInHostNetns) {
      vm_config.network.tap_name = network->tap_name();
      // For `delete` after a crash of this process before the move below.
      if (!options.vm_parent_dir.empty()) {
        HULL_CHECK_OK(WriteFile(options.vm_parent_dir + "/" + kHostTapRecord, network->tap_name()),
                      "open sandbox");
      }
    }
  }
  std::optional<HostCgroup> host_cgroup;
  if (!options.host_cgroup_path.empty()) {
    // The node's accounting of the pod: QEMU starts in the pod's cgroup, so
    // the guest's RAM is charged there. A pod still runs without it.
    if (auto cgroup = HostCgroup::Create(options.host_cgroup_path); cgroup) {
      host_cgroup.emplace(std::move(*cgroup));
      vm_config.host_cgroup_dirs = host_cgroup->dirs();
      // For `delete` after a crash of this process.
      if (!options.vm_parent_dir.empty()) {
        HULL_CHECK_OK(host_cgroup->Record(options.vm_parent_dir + "/" + kHostCgroupRecord),
                      "open sandbox");
      }
    } else {
      HULL_LOG_WARN("sandbox {}: the VM stays outside the pod's host cgroup: {}", id,
                    cgroup.error().ToString());
    }
  }
  HULL_TRY(auto vm, hypervisor->Launch(vm_config), "open sandbox");
  std::unique_ptr<Session> session(new Session(config, std::move(vm)));
  if (network) {
    network->CloseTap();  // QEMU holds it now: the tap goes when QEMU does
    if (hypervisor->tap_handover() == TapHandover::kNameInHostNetns) {
      HULL_CHECK_OK(network->MoveTapIntoNetns(), "open sandbox");
    }
    session->network_ = std::move(network);
  }
  if (host_cgroup) session->host_cgroup_ = std::move(host_cgroup);
  auto deadline = session->vm_->launched_at() + seconds(config.agent.boot_timeout_seconds);
  Vm* raw_vm = session->vm_.get();
  auto client = AgentClient::Connect(
      [raw_vm](Clock::time_point d) { return raw_vm->ConnectAgent(d); }, deadline);
  if (!client) {
    // What the guest printed is the best clue to why it never answered.
    std::string console = ReadFile(raw_vm->console_log_path(), 16 << 20).value_or("");
    if (console.size() > 2000) console = console.substr(console.size() - 2000);
    return Unexpected{
        std::move(client).error().Wrap("open sandbox (guest console ends with:\n" + console + ")")};
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
  if (session->network_) HULL_CHECK_OK(session->ConfigureGuestNetwork(), "open sandbox");
  return session;
}

Result<std::string> Session::SharePath(const std::string& container_id,
                                       const std::string& host_path, bool read_only) {
  std::lock_guard lock(mu_);
  const std::string what = "share `" + host_path + "` with container `" + container_id + "`";
  struct stat st {};
  if (::stat(host_path.c_str(), &st) < 0) return ErrnoError(what);
  std::string name = std::to_string(share_counter_[container_id]++);
  std::string relative = container_id + "/volumes/" + name;
  HULL_CHECK_OK(ShareLocked(container_id, host_path, relative, S_ISDIR(st.st_mode), read_only),
                what);
  return std::string(kGuestSharedDir) + "/" + relative;
}

Status Session::ShareLocked(const std::string& container_id, const std::string& host_path,
                            const std::string& relative, bool directory, bool read_only) {
  if (!shared_fd_) {
    shared_fd_.reset(::open(vm_->shared_dir().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!shared_fd_) return ErrnoError("open the shared directory `" + vm_->shared_dir() + "`");
  }
  auto slash = relative.rfind('/');
  HULL_TRY(UniqueFd parent, OpenDirBeneath(shared_fd_.get(), relative.substr(0, slash), true), "");
  std::string name = relative.substr(slash + 1);
  UniqueFd target;
  if (directory) {
    if (::mkdirat(parent.get(), name.c_str(), 0755) < 0 && errno != EEXIST) {
      return ErrnoError("create the mount point `" + relative + "`");
    }
    HULL_TRY(target, OpenBeneath(parent.get(), name, O_PATH | O_DIRECTORY), "");
  } else {
    HULL_TRY(target, OpenBeneath(parent.get(), name, O_WRONLY | O_CREAT, 0644), "");
  }
  HULL_CHECK_OK(BindOnto(host_path, target.get(), read_only), "");
  mounts_[container_id].push_back(relative);
  return Ok();
}

Result<uint32_t> Session::CreateContainer(const std::string& id, const std::string& spec_json,
                                          const std::string& host_rootfs, const v1::ProcessIo& io) {
  const std::string what = "create container `" + id + "`";
  {
    std::lock_guard lock(mu_);
    if (auto shared = ShareLocked(id, host_rootfs, id + "/rootfs", true, false); !shared) {
      UnshareLocked(id);
      return std::move(shared).error().Wrap(what + ": share the root filesystem `" + host_rootfs +
                                            "`");
    }
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
  return response.init_pid();
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
  bool clean = true;
  auto it = mounts_.find(id);
  if (it != mounts_.end()) {
    for (auto mount = it->second.rbegin(); mount != it->second.rend(); ++mount) {
      // The mount point is found as it was made: component by component, so
      // a symlink the guest put in its way cannot aim the unmount elsewhere.
      auto slash = mount->rfind('/');
      auto parent = OpenDirBeneath(shared_fd_.get(), mount->substr(0, slash), false);
      UniqueFd target;
      if (parent)
        target.reset(::openat(parent->get(), mount->substr(slash + 1).c_str(),
                              O_PATH | O_NOFOLLOW | O_CLOEXEC));
      if (!target || ::umount2(FdPath(target.get()).c_str(), MNT_DETACH) < 0) {
        HULL_LOG_WARN("unmount {}/{}: {}", vm_->shared_dir(), *mount, strerror(errno));
        clean = false;
      }
    }
    mounts_.erase(it);
  }
  share_counter_.erase(id);
  if (!vm_ || vm_->shared_dir().empty()) return;
  std::string dir = vm_->shared_dir() + "/" + id;
  // Never delete through something still mounted (a bind of a host
  // directory on the same filesystem would not stop RemoveTree).
  if (clean && MountPointsUnder(dir).empty()) {
    (void)RemoveTree(dir);
  } else {
    HULL_LOG_WARN("{} still has mounts: left for the VM's teardown", dir);
  }
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
  if (network_) network_->Detach();
  if (host_cgroup_) host_cgroup_->Remove();
}

Status Session::ConfigureGuestNetwork() {
  const CniInterface& cni = network_->interface();
  v1::UpdateInterfaceRequest update;
  v1::Interface* interface = update.mutable_interface();
  interface->set_mac_address(cni.mac_address);
  interface->set_mtu(cni.mtu);
  interface->set_up(true);
  for (const auto& address : cni.addresses) *interface->add_addresses() = address;
  v1::Interface configured;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + seconds(30));
    auto status = client_->agent().UpdateInterface(&context, update, &configured);
    if (!status.ok()) return Unexpected{ErrorFromGrpc(status, "UpdateInterface")};
  }
  v1::UpdateRoutesRequest routes;
  for (auto route : cni.routes) {
    route.set_device(configured.name());
    *routes.add_routes() = route;
  }
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(30));
  v1::UpdateRoutesResponse routed;
  auto status = client_->agent().UpdateRoutes(&context, routes, &routed);
  if (!status.ok()) return Unexpected{ErrorFromGrpc(status, "UpdateRoutes")};
  HULL_LOG_INFO("guest {}: {} with {} address(es), {} route(s)", vm_->id(), configured.name(),
                cni.addresses.size(), cni.routes.size());
  return Ok();
}

Session::~Session() { Close(); }

}  // namespace hull
