#include "hull/sandbox/sandbox.h"

#include <sys/random.h>

#include <algorithm>

#include "hull/core/log.h"
#include "hull/core/syscall.h"
#include "hull/core/thread.h"
#include "hull/hypervisor/template.h"
#include "hull/sandbox/grpc_agent.h"
#include "watched_agent.h"

namespace hull::sandbox {

using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

AgentTimeouts AgentTimeoutsFromConfig(const Config& config) {
  return AgentTimeouts{.call = seconds(config.agent.call_timeout_seconds),
                       .create = seconds(config.agent.create_timeout_seconds)};
}

namespace {

Result<std::unique_ptr<AgentApi>> ConnectGrpcAgent(Vm& vm, Clock::time_point deadline,
                                                   const AgentTimeouts& timeouts) {
  HULL_TRY(auto agent,
           GrpcAgent::Connect([&vm](Clock::time_point d) { return vm.ConnectAgent(d); }, deadline,
                              timeouts),
           "");
  return std::unique_ptr<AgentApi>(std::move(agent));
}

constexpr size_t kEntropyBytes = 64;
// QEMU 7.2's TCG translation cache when tb-size is not given.
constexpr uint64_t kQemuDefaultTbSizeMib = 1024;
constexpr size_t kMaxHostnameBytes = 64;
// How long a clone may take to answer before it counts as broken (and its
// template with it): a clone answers in well under a second, a cold boot in
// seconds, so this is far from both.
constexpr std::chrono::seconds kCloneReadyTimeout{20};
// After a template build failed, sandboxes of that shape boot without
// starting another build for this long.
constexpr std::chrono::seconds kBuildBackoff{600};

Status FillRandom(std::string& bytes) {
  size_t filled = 0;
  while (filled < bytes.size()) {
    ssize_t n = ::getrandom(bytes.data() + filled, bytes.size() - filled, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("getrandom");
    filled += static_cast<size_t>(n);
  }
  return Ok();
}

using ConnectFn = ConnectAgentFn;

struct StartedVm {
  std::unique_ptr<Vm> vm;
  std::unique_ptr<AgentApi> agent;
  bool from_template = false;
  bool build_template = false;  // booted for want of a template: build it now
};

// Connects to the agent of a VM that was just started, by `deadline`; the
// error ends with what the guest printed, the best clue to why it did not.
Result<std::unique_ptr<AgentApi>> ConnectNewVm(Vm& vm, const ConnectFn& connect,
                                               Clock::time_point deadline,
                                               const AgentTimeouts& timeouts) {
  auto agent = connect(vm, deadline, timeouts);
  if (agent) return agent;
  std::string console = ReadFile(vm.console_log_path(), 16 << 20).value_or("");
  if (console.size() > 2000) console = console.substr(console.size() - 2000);
  return Unexpected{std::move(agent).error().Wrap("(guest console ends with:\n" + console + ")")};
}

// The VM as a clone of the template for its shape; nullopt (with the reason
// logged) when that is off, impossible or failed: the caller boots instead.
// `build` is set when the template is missing (never built, or removed here
// because its clone did not come up): the caller builds it once the sandbox
// is up, so that no sandbox waits for a template.
std::optional<StartedVm> CloneFromTemplate(const Config& config, const VmConfig& vm_config,
                                           Hypervisor& hypervisor, const ConnectFn& connect,
                                           const AgentTimeouts& timeouts, bool& build) {
  build = false;
  if (!config.hypervisor.template_enabled) return std::nullopt;
  const std::string& id = vm_config.id;
  if (!hypervisor.supports_templates()) {
    HULL_LOG_DEBUG("VM {}: boots: the {} backend has no templates", id, hypervisor.name());
    return std::nullopt;
  }
  if (std::string why = TemplateIneligibility(vm_config); !why.empty()) {
    HULL_LOG_INFO("VM {}: boots without a template: {}", id, why);
    return std::nullopt;
  }
  auto key = TemplateKey(vm_config);
  if (!key) {
    HULL_LOG_WARN("VM {}: boots without a template: {}", id, key.error().ToString());
    return std::nullopt;
  }
  TemplateStore store(TemplateRoot(config));
  std::optional<TemplateRef> found = store.Find(*key);
  if (!found) {
    if (store.RecentlyFailed(*key, kBuildBackoff)) {
      HULL_LOG_INFO("VM {}: boots; building its template {} failed lately (see {}.failed)", id,
                    TemplateName(*key), store.root() + "/" + TemplateName(*key));
      return std::nullopt;
    }
    HULL_LOG_INFO("VM {}: boots; its template {} is built next", id, TemplateName(*key));
    build = true;
    return std::nullopt;
  }
  VmConfig clone = vm_config;
  clone.clone_of = found->dir;
  auto vm = hypervisor.Launch(clone);
  if (!vm) {
    // kDataLoss: the template itself is broken. Anything else (virtiofsd,
    // the host under load) is not its fault: keep it.
    if (vm.error().code() == ErrorCode::kDataLoss) {
      HULL_LOG_WARN("VM {}: template {} is unusable, removed; booting instead: {}", id, found->name,
                    vm.error().ToString());
      store.Invalidate(*found);
      build = true;
    } else {
      HULL_LOG_WARN("VM {}: the clone of template {} did not start; booting instead: {}", id,
                    found->name, vm.error().ToString());
    }
    return std::nullopt;
  }
  auto agent = ConnectNewVm(**vm, connect, Clock::now() + kCloneReadyTimeout, timeouts);
  if (!agent) {
    HULL_LOG_WARN(
        "VM {}: the clone of template {} did not answer, template removed; booting "
        "instead: {}",
        id, found->name, agent.error().ToString());
    (*vm)->Stop(std::chrono::milliseconds(0));
    store.Invalidate(*found);
    build = true;
    return std::nullopt;
  }
  return StartedVm{std::move(*vm), std::move(*agent), true};
}

Result<StartedVm> StartVm(const Config& config, const VmConfig& vm_config, Hypervisor& hypervisor,
                          const ConnectFn& connect, const AgentTimeouts& timeouts) {
  bool build = false;
  if (auto cloned = CloneFromTemplate(config, vm_config, hypervisor, connect, timeouts, build)) {
    return std::move(*cloned);
  }
  HULL_TRY(auto vm, hypervisor.Launch(vm_config), "");
  auto deadline = vm->launched_at() + seconds(config.agent.boot_timeout_seconds);
  HULL_TRY(auto agent, ConnectNewVm(*vm, connect, deadline, timeouts), "");
  return StartedVm{std::move(vm), std::move(agent), false, build};
}

}  // namespace

Result<TemplateRef> EnsureTemplate(const Config& config, const VmConfig& vm_config,
                                   Hypervisor& hypervisor, const ConnectAgentFn& connect_agent) {
  if (!hypervisor.supports_templates()) {
    return MakeError(ErrorCode::kUnimplemented,
                     "the " + std::string(hypervisor.name()) + " backend has no VM templates");
  }
  if (std::string why = TemplateIneligibility(vm_config); !why.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition, why);
  }
  HULL_TRY(std::string key, TemplateKey(vm_config), "");
  TemplateStore store(TemplateRoot(config));
  if (auto found = store.Find(key)) return *found;
  const ConnectAgentFn& connect = connect_agent ? connect_agent : ConnectAgentFn(ConnectGrpcAgent);
  const auto boot_timeout = seconds(config.agent.boot_timeout_seconds);
  const auto timeouts = AgentTimeoutsFromConfig(config);
  return store.Build(key, [&](const std::string& dir) {
    auto ready = [&](Vm& vm) -> Status {
      HULL_TRY(auto agent, ConnectNewVm(vm, connect, vm.launched_at() + boot_timeout, timeouts),
               "the template's agent");
      return Ok();  // dropping the agent closes the connection
    };
    return hypervisor.SaveTemplate(TemplateVmConfig(vm_config, store.root(), TemplateName(key)),
                                   dir, ready);
  });
}

Result<std::unique_ptr<Sandbox>> Sandbox::Open(const Config& config, const std::string& id,
                                               const SandboxOptions& options, SandboxDeps deps) {
  bool cloned = false;
  auto opened = OpenOnce(config, id, options, deps, cloned);
  if (opened || !cloned) return opened;
  // The clone came up but the sandbox could not be made on it (e.g. its
  // hot-plugged share or NIC never showed up): a template never fails a
  // sandbox, so boot one. Everything of the first attempt is gone by now.
  HULL_LOG_WARN("sandbox {}: failed on a clone, booting instead: {}", id,
                opened.error().ToString());
  Config boot = config;
  boot.hypervisor.template_enabled = false;
  return OpenOnce(boot, id, options, std::move(deps), cloned);
}

Result<std::unique_ptr<Sandbox>> Sandbox::OpenOnce(const Config& config, const std::string& id,
                                                   const SandboxOptions& options, SandboxDeps deps,
                                                   bool& cloned) {
  const std::string what = "open sandbox `" + id + "`";
  const auto opened = Clock::now();
  HULL_TRY(VmConfig vm_config,
           VmConfigFromConfig(config, options.vm_id.empty() ? id : options.vm_id), what);
  if (!options.vm_parent_dir.empty()) vm_config.run_dir = options.vm_parent_dir;
  if (options.vcpus != 0) vm_config.vcpus = options.vcpus;
  if (options.memory_mib != 0) vm_config.memory_mib = options.memory_mib;
  vm_config.share_dir = true;
  std::shared_ptr<Hypervisor> hypervisor = std::move(deps.hypervisor);
  if (!hypervisor) {
    HULL_TRY(hypervisor, MakeHypervisor(config.hypervisor.backend), what);
  }
  std::optional<PodNetwork> network;
  if (!options.netns_path.empty()) {
    HULL_TRY(PodNetwork attached,
             PodNetwork::Attach(options.netns_path, hypervisor->tap_handover()), what);
    network.emplace(std::move(attached));
    vm_config.network.netns_path = options.netns_path;
    vm_config.network.tap_fd = network->tap_fd();
    vm_config.network.mac_address = network->interface().mac_address;
    if (hypervisor->tap_handover() == TapHandover::kNameInHostNetns) {
      vm_config.network.tap_name = network->tap_name();
      // For `delete` after a crash of this process before the move below.
      if (!options.vm_parent_dir.empty()) {
        HULL_CHECK_OK(WriteFile(options.vm_parent_dir + "/" + kHostTapRecord, network->tap_name()),
                      what);
      }
    }
  }
  // QEMU and virtiofsd start in the sandbox's host cgroup -- the pod's
  // (kubelet's accounting: the guest's RAM is charged there from the first
  // page), else one of hull's -- bounded to the guest's RAM plus an overhead
  // and a number of tasks: a guest that breaks out into QEMU, or makes
  // virtiofsd allocate, cannot take the node's memory or pids with it.
  std::optional<HostCgroup> host_cgroup;
  {
    const std::string path = options.host_cgroup_path.empty() ? config.host_cgroup_parent + "/" + id
                                                              : options.host_cgroup_path;
    // Under TCG, QEMU's translation cache (tb-size; QEMU's default 1 GiB) is
    // host memory the guest's code fills: part of the bound.
    const uint64_t tcg_cache_mib = vm_config.accel != Accel::kTcg   ? 0
                                   : vm_config.tcg_tb_size_mib != 0 ? vm_config.tcg_tb_size_mib
                                                                    : kQemuDefaultTbSizeMib;
    const uint64_t memory_bytes =
        (vm_config.memory_mib + config.host_memory_overhead_mib + tcg_cache_mib) << 20;
    auto cgroup = deps.host_cgroup_root.empty() ? HostCgroup::Create(path)
                                                : HostCgroup::Create(path, deps.host_cgroup_root);
    Status limited = cgroup ? cgroup->SetLimits(memory_bytes, config.host_pids_max)
                            : Status(Unexpected{cgroup.error()});
    if (!limited && config.host_cgroup_required) {
      return std::move(limited).error().Wrap(what + ": bound the VM's host resources");
    }
    if (!limited) {
      HULL_LOG_WARN(
          "sandbox {}: runs without host limits (runtime.host_cgroup_required = false): {}", id,
          limited.error().ToString());
    }
    if (cgroup) {
      host_cgroup.emplace(std::move(*cgroup));
      vm_config.host_cgroup_dirs = host_cgroup->dirs();
      // For `delete` after a crash of this process.
      if (!options.vm_parent_dir.empty()) {
        HULL_CHECK_OK(host_cgroup->Record(options.vm_parent_dir + "/" + kHostCgroupRecord), what);
      }
    }
  }
  auto timeouts = AgentTimeoutsFromConfig(config);
  auto connect = deps.connect_agent ? deps.connect_agent : ConnectGrpcAgent;
  HULL_TRY(StartedVm started, StartVm(config, vm_config, *hypervisor, connect, timeouts), what);
  cloned = started.from_template;
  std::unique_ptr<Sandbox> sandbox(new Sandbox(config, id, std::move(started.vm)));
  sandbox->hypervisor_ = std::move(hypervisor);
  sandbox->share_ = deps.make_share ? deps.make_share(sandbox->vm_->shared_dir())
                                    : std::make_unique<BindShare>(sandbox->vm_->shared_dir());
  if (network) {
    network->CloseTap();  // QEMU holds it now: the tap goes when QEMU does
    if (sandbox->hypervisor_->tap_handover() == TapHandover::kNameInHostNetns) {
      HULL_CHECK_OK(network->MoveTapIntoNetns(), what);
    }
    sandbox->network_ = std::move(network);
  }
  if (host_cgroup) {
    // Without a parent directory of its own (hullctl run), the record goes
    // into the VM's state directory, where `hullctl gc` finds it.
    if (options.vm_parent_dir.empty()) {
      HULL_CHECK_OK(host_cgroup->Record(sandbox->vm_->state_dir() + "/" + kHostCgroupRecord), what);
    }
    sandbox->host_cgroup_ = std::move(host_cgroup);
  }
  sandbox->started_from_template_ = started.from_template;
  // A guest that stops answering is ended, not waited on: whatever waits on
  // it (a process's waiter, a Delete) then learns from the VM's death.
  sandbox->unwatched_agent_ = std::move(started.agent);
  sandbox->agent_ = std::make_unique<WatchedAgent>(
      *sandbox->unwatched_agent_, [vm = sandbox->vm_.get()](const Error& missed) {
        vm->Abort("the guest's agent stopped answering (" + missed.ToString() + ")");
      });
  // The guest's own identity: what a clone shares with its template until
  // now (RNG state, clock, hostname) is the sandbox's from here on.
  SandboxSetup setup{.sandbox_id = id, .hostname = id.substr(0, kMaxHostnameBytes)};
  setup.entropy.resize(kEntropyBytes);
  HULL_CHECK_OK(FillRandom(setup.entropy), what);
  setup.realtime_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  setup.storages.push_back(GuestStorage{
      .driver = "virtiofs", .source = kSharedFsTag, .mount_point = std::string(kGuestSharedDir)});
  const auto answered = Clock::now();
  const auto launched = sandbox->vm_->launched_at();
  const bool started_from_template = sandbox->started_from_template_;
  HULL_CHECK_OK(sandbox->agent_->CreateSandbox(setup), what);
  auto created = Clock::now();
  if (sandbox->network_) HULL_CHECK_OK(sandbox->ConfigureGuestNetwork(), what);
  auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  HULL_LOG_DEBUG(
      "sandbox {}: {} in {} ms, agent answered after {} ms, sandbox created in {} ms, "
      "network in {} ms",
      id, started_from_template ? "cloned" : "booted", ms(launched - opened),
      ms(answered - launched), ms(created - answered), ms(Clock::now() - created));
  if (started.build_template) sandbox->BuildTemplateInBackground(vm_config, connect);
  return sandbox;
}

Result<std::string> Sandbox::SharePath(const std::string& container_id,
                                       const std::string& host_path, bool read_only) {
  const std::string what = "share `" + host_path + "` with container `" + container_id + "`";
  std::string relative;
  {
    std::lock_guard lock(mu_);
    if (closed_) return MakeError(ErrorCode::kUnavailable, what + ": the sandbox is closed");
    relative = container_id + "/volumes/" + std::to_string(share_counter_[container_id]++);
  }
  HULL_CHECK_OK(share_->Add(container_id, host_path, relative, read_only), what);
  return std::string(kGuestSharedDir) + "/" + relative;
}

Result<uint32_t> Sandbox::CreateContainer(const std::string& id, const std::string& spec_json,
                                          const std::string& host_rootfs, const StdioSetup& stdio) {
  const std::string what = "create container `" + id + "`";
  {
    std::lock_guard lock(mu_);
    if (closed_) return MakeError(ErrorCode::kUnavailable, what + ": the sandbox is closed");
  }
  if (auto shared = share_->Add(id, host_rootfs, id + "/rootfs", false); !shared) {
    share_->Remove(id);
    return std::move(shared).error().Wrap(what + ": share the root filesystem `" + host_rootfs +
                                          "`");
  }
  ContainerSetup setup{.container_id = id,
                       .oci_spec_json = spec_json,
                       .rootfs_path = std::string(kGuestSharedDir) + "/" + id + "/rootfs",
                       .stdio = stdio};
  auto created = agent_->CreateContainer(setup);
  if (!created) {
    // The agent may have got as far as creating it (a deadline that passed
    // on the way back): make sure nothing of it is left in the guest.
    if (created.error().code() != ErrorCode::kAlreadyExists) {
      (void)agent_->RemoveContainer(id, true);
    }
    share_->Remove(id);
    {
      std::lock_guard lock(mu_);
      share_counter_.erase(id);
    }
    return WithVmExit(std::move(created).error()).Wrap(what);
  }
  std::lock_guard lock(mu_);
  containers_.push_back(id);
  return *created;
}

Status Sandbox::RemoveContainer(const std::string& id) {
  Status result;
  bool known;
  {
    std::lock_guard lock(mu_);
    known = std::find(containers_.begin(), containers_.end(), id) != containers_.end();
  }
  if (known) {
    auto removed = agent_->RemoveContainer(id, true);
    if (!removed && removed.error().code() != ErrorCode::kNotFound) result = std::move(removed);
  }
  share_->Remove(id);
  std::lock_guard lock(mu_);
  std::erase(containers_, id);
  share_counter_.erase(id);
  return result;
}

Error Sandbox::WithVmExit(Error error) {
  if (error.code() != ErrorCode::kUnavailable) return error;
  // The connection drops as the VM dies, a moment before its exit is recorded.
  auto exit = vm_->WaitForExit(std::chrono::milliseconds(1000));
  if (!exit || !exit->has_value()) return error;
  return Error(ErrorCode::kUnavailable,
               "the sandbox VM is gone: " + (*exit)->reason + " (" + error.ToString() + ")");
}

void Sandbox::Close() {
  std::vector<std::string> containers;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    containers = containers_;
  }
  // Whether the agent confirmed the shutdown: its filesystems are synced, so
  // the VM can end now. The kernel's own power-off is not waited for: it can
  // take seconds, or never finish (a clone's virtio-pmem flush at power-off
  // never completes on QEMU 7.2).
  bool synced = false;
  if (agent_) {
    for (const auto& id : containers) (void)agent_->RemoveContainer(id, true);
    vm_->ExpectExit();
    synced = agent_->Shutdown(true).value_or(false);
  }
  // The guest is gone (or going): unshare the root filesystems, then stop.
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, count] : share_counter_) containers.push_back(id);
    share_counter_.clear();
    containers_.clear();
  }
  if (share_) {
    std::sort(containers.begin(), containers.end());
    containers.erase(std::unique(containers.begin(), containers.end()), containers.end());
    for (const auto& id : containers) share_->Remove(id);
  }
  // The agent stays until the destructor: other threads may still be in a
  // call, which fails now that the VM is gone.
  vm_->Stop(synced ? std::chrono::milliseconds(0)
                   : std::chrono::milliseconds(seconds(config_.hypervisor.stop_grace_seconds)));
  if (network_) network_->Detach();
  if (host_cgroup_) host_cgroup_->Remove();
  // A template being built for the next sandbox, on a thread of this
  // sandbox: wait for it to end (its boot and save have deadlines of their
  // own), so that no template VM outlives the sandbox that started it.
  if (template_build_.joinable()) template_build_.join();
}

void Sandbox::BuildTemplateInBackground(const VmConfig& vm_config, const ConnectAgentFn& connect) {
  // Everything by value or shared: the thread may outlive this call's frame.
  template_build_ = SpawnThread("template-build", [config = config_, vm_config,
                                                   hypervisor = hypervisor_, connect] {
    auto built = EnsureTemplate(config, vm_config, *hypervisor, connect);
    if (built) {
      HULL_LOG_INFO("VM {}: template {} is ready for the next sandbox", vm_config.id, built->name);
    } else {
      HULL_LOG_INFO("VM {}: no template built: {}", vm_config.id, built.error().ToString());
    }
  });
}

Status Sandbox::ConfigureGuestNetwork() {
  const CniInterface& cni = network_->interface();
  NetInterface wanted{
      .mac_address = cni.mac_address, .mtu = cni.mtu, .addresses = cni.addresses, .up = true};
  HULL_TRY(NetInterface configured, agent_->UpdateInterface(wanted), "");
  std::vector<Route> routes = cni.routes;
  for (auto& route : routes) route.device = configured.name;
  HULL_TRY(auto routed, agent_->UpdateRoutes(routes), "");
  HULL_LOG_INFO("guest {}: {} with {} address(es), {} route(s)", vm_->id(), configured.name,
                cni.addresses.size(), routed.size());
  return Ok();
}

Sandbox::~Sandbox() {
  // A sandbox whose Open failed half-way has no agent: nothing to tell it.
  if (vm_) Close();
}

}  // namespace hull::sandbox
