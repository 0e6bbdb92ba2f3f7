#include "libvirt/libvirt_hypervisor.h"

#include <dirent.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "hull/core/log.h"
#include "hull/core/syscall.h"
#include "hull/hypervisor/kernel_cmdline.h"
#include "libvirt/domain_xml.h"
#include "src/agent_port.h"

namespace hull::libvirt {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// libvirt delivers events only to processes that run an event loop. One per
// process, started on first use, serves every connection. Errors are returned
// (virGetLastError), never printed: libvirt's default handler writes to stderr.
void EnsureEventLoop() {
  static std::once_flag once;
  std::call_once(once, [] {
    virSetErrorFunc(nullptr, [](void*, virErrorPtr) {});
    if (virInitialize() < 0 || virEventRegisterDefaultImpl() < 0) {
      HULL_LOG_WARN(
          "libvirt: could not start its event loop; VM deaths are "
          "noticed by polling only");
      return;
    }
    std::thread([] {
      while (virEventRunDefaultImpl() == 0) {
      }
      HULL_LOG_WARN("libvirt: event loop ended");
    }).detach();
  });
}

// The calling thread's last libvirt error as a hull error, then cleared.
Unexpected LibvirtError(const std::string& what) {
  virErrorPtr error = virGetLastError();
  std::string message =
      error != nullptr && error->message != nullptr ? error->message : "unknown libvirt error";
  ErrorCode code = ErrorCode::kInternal;
  if (error != nullptr) {
    switch (error->code) {
      case VIR_ERR_NO_DOMAIN:
        code = ErrorCode::kNotFound;
        break;
      case VIR_ERR_NO_CONNECT:
      case VIR_ERR_SYSTEM_ERROR:
      case VIR_ERR_RPC:
      case VIR_ERR_AUTH_FAILED:
      case VIR_ERR_AUTH_UNAVAILABLE:
        code = ErrorCode::kUnavailable;
        break;
      case VIR_ERR_OPERATION_INVALID:
        code = ErrorCode::kFailedPrecondition;
        break;
      case VIR_ERR_XML_ERROR:
      case VIR_ERR_CONFIG_UNSUPPORTED:
      case VIR_ERR_INVALID_ARG:
        code = ErrorCode::kInvalidArgument;
        break;
      default:
        break;
    }
  }
  virResetLastError();
  return MakeError(code, what + ": " + message);
}

bool LastErrorIsNoDomain() {
  virErrorPtr error = virGetLastError();
  return error != nullptr && error->code == VIR_ERR_NO_DOMAIN;
}

struct ConnectionCloser {
  void operator()(virConnectPtr conn) const { virConnectClose(conn); }
};
using Connection = std::unique_ptr<virConnect, ConnectionCloser>;
struct DomainFreer {
  void operator()(virDomainPtr domain) const { virDomainFree(domain); }
};
using Domain = std::unique_ptr<virDomain, DomainFreer>;

Result<Connection> Open(const std::string& uri) {
  EnsureEventLoop();
  Connection conn(virConnectOpen(uri.c_str()));
  if (!conn) return LibvirtError("connect to libvirt at `" + uri + "`");
  // A daemon that stops answering closes the connection after ~15 s, so the
  // monitor notices and reconnects.
  if (virConnectSetKeepAlive(conn.get(), 5, 3) < 0) virResetLastError();
  return conn;
}

std::string FormatVersion(unsigned long version) {
  return std::to_string(version / 1000000) + "." + std::to_string(version / 1000 % 1000) + "." +
         std::to_string(version % 1000);
}

// A random RFC 4122 version 4 UUID.
std::string NewUuid() {
  unsigned char bytes[16] = {};
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  char text[37];
  std::snprintf(text, sizeof text,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", bytes[0],
                bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8],
                bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]);
  return text;
}

std::string UuidOf(virDomainPtr domain) {
  char uuid[VIR_UUID_STRING_BUFLEN] = {};
  if (virDomainGetUUIDString(domain, uuid) < 0) return "";
  return uuid;
}

// libvirt does not say which process runs a domain; QEMU's command line
// does: libvirt passes `-uuid <uuid>`. Local hosts only; 0 if not found.
pid_t FindQemuPid(const std::string& uuid) {
  const std::string needle = std::string("-uuid") + '\0' + uuid + '\0';
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return 0;
  pid_t found = 0;
  while (dirent* entry = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0') continue;
    auto cmdline = ReadFile(std::string("/proc/") + entry->d_name + "/cmdline", 1 << 20);
    if (cmdline && cmdline->find(needle) != std::string::npos) {
      found = static_cast<pid_t>(pid);
      break;
    }
  }
  ::closedir(proc);
  return found;
}

// The CID libvirt picked, from the live XML's <cid auto='yes' address='N'/>.
std::optional<uint32_t> VsockCidFromXml(const std::string& xml) {
  auto cid = xml.find("<cid ");
  if (cid == std::string::npos) return std::nullopt;
  auto address = xml.find("address='", cid);
  if (address == std::string::npos || address > xml.find('>', cid)) return std::nullopt;
  return static_cast<uint32_t>(std::strtoul(xml.c_str() + address + 9, nullptr, 10));
}

// What a VM's event callbacks and its monitor thread share. Reference-counted:
// libvirt may still run a callback while the VM deregisters it.
struct Watch {
  Watch(std::string id, std::string uuid, std::string console_log)
      : id(std::move(id)), uuid(std::move(uuid)), console_log(std::move(console_log)) {}

  const std::string id;
  const std::string uuid;
  const std::string console_log;
  std::mutex mu;
  std::condition_variable changed;
  AgentPortState agent_port;
  bool stop_requested = false;
  std::string shutdown_reason;  // from QEMU's SHUTDOWN event
  std::optional<VmExit> exit;

  // Records the end of the VM (first report wins). Called with mu held.
  void RecordExit(int stopped_detail) {
    if (exit) return;
    VmExit end;
    end.expected = stop_requested;
    // libvirt reports a stop after QEMU's SHUTDOWN event as detail SHUTDOWN
    // (hull never asks libvirt for an ACPI shutdown); QEMU's own reason, when
    // its event arrived first, tells a power-off from a reset or panic.
    const bool guest_reset = shutdown_reason == "guest-reset" || shutdown_reason == "guest-panic";
    const bool powered_off = shutdown_reason == "guest-shutdown" ||
                             (stopped_detail == VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN && !guest_reset);
    if (powered_off) {
      end.reason = "the guest powered off";
    } else if (guest_reset || stopped_detail == VIR_DOMAIN_EVENT_STOPPED_CRASHED) {
      end.reason = "the guest rebooted or panicked (see " + console_log + ")";
    } else if (stopped_detail == VIR_DOMAIN_EVENT_STOPPED_DESTROYED) {
      end.reason = stop_requested ? "libvirt destroyed the domain on request"
                                  : "the domain was destroyed through libvirt by someone else";
    } else if (stopped_detail == VIR_DOMAIN_EVENT_STOPPED_FAILED) {
      end.reason =
          "QEMU died without the guest powering off (killed, or it "
          "failed: see libvirt's log for "
          "hull-" +
          id + ")";
    } else {
      end.reason = "the domain is gone";
    }
    // libvirt does not pass on QEMU's wait status: a clean power-off (or a
    // stop hull asked for) reads as success, anything else as a failure.
    const bool clean = powered_off || stop_requested;
    end.process = clean ? ExitStatus{0, 0} : ExitStatus{1, 0};
    if (stop_requested) {
      HULL_LOG_DEBUG("VM {} stopped: {}", id, end.reason);
    } else {
      HULL_LOG_WARN("VM {} stopped unexpectedly: {}", id, end.reason);
    }
    exit = end;
    agent_port.OnVmExit();
    changed.notify_all();
  }
};

std::shared_ptr<Watch>& WatchOf(void* opaque) {
  return *static_cast<std::shared_ptr<Watch>*>(opaque);
}
void FreeWatch(void* opaque) { delete static_cast<std::shared_ptr<Watch>*>(opaque); }

// Registered on the whole connection before the domain exists, so no event
// of its first moments is missed; each VM keeps its own by UUID.
int OnLifecycle(virConnectPtr, virDomainPtr domain, int event, int detail, void* opaque) {
  Watch& watch = *WatchOf(opaque);
  if (event != VIR_DOMAIN_EVENT_STOPPED || UuidOf(domain) != watch.uuid) return 0;
  HULL_LOG_DEBUG("VM {}: libvirt reports the domain stopped (detail {})", watch.id, detail);
  std::lock_guard lock(watch.mu);
  watch.RecordExit(detail);
  return 0;
}

void OnMonitorEvent(virConnectPtr, virDomainPtr domain, const char* event, long long, unsigned int,
                    const char* details, void* opaque) {
  Watch& watch = *WatchOf(opaque);
  if (event == nullptr || UuidOf(domain) != watch.uuid) return;
  auto data = nlohmann::json::parse(details != nullptr ? details : "null", nullptr, false);
  if (!data.is_object()) return;
  std::lock_guard lock(watch.mu);
  if (std::string_view(event) == "VSERPORT_CHANGE") {
    auto id = data.find("id");
    auto open = data.find("open");
    if (id != data.end() && id->is_string() && *id == kAgentChannelAlias && open != data.end() &&
        open->is_boolean()) {
      watch.agent_port.OnChange(open->get<bool>());
    }
  } else if (std::string_view(event) == "SHUTDOWN") {
    auto reason = data.find("reason");
    if (reason != data.end() && reason->is_string())
      watch.shutdown_reason = reason->get<std::string>();
  }
  watch.changed.notify_all();
}

// One libvirt connection with this VM's callbacks on it.
class Subscription {
 public:
  static Result<Subscription> Open(const std::string& uri, const std::shared_ptr<Watch>& watch) {
    auto conn = libvirt::Open(uri);
    if (!conn) return Unexpected{std::move(conn).error()};
    Subscription subscription(std::move(*conn));
    subscription.lifecycle_id_ = virConnectDomainEventRegisterAny(
        subscription.conn(), nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
        VIR_DOMAIN_EVENT_CALLBACK(OnLifecycle), new std::shared_ptr<Watch>(watch), FreeWatch);
    if (subscription.lifecycle_id_ < 0)
      return LibvirtError("subscribe to libvirt's lifecycle events");
    subscription.monitor_id_ = virConnectDomainQemuMonitorEventRegister(
        subscription.conn(), nullptr, "^(VSERPORT_CHANGE|SHUTDOWN)$", OnMonitorEvent,
        new std::shared_ptr<Watch>(watch), FreeWatch,
        VIR_CONNECT_DOMAIN_QEMU_MONITOR_EVENT_REGISTER_REGEX);
    if (subscription.monitor_id_ < 0)
      return LibvirtError("subscribe to QEMU's events through libvirt");
    return subscription;
  }

  Subscription(Subscription&& other) noexcept
      : conn_(std::move(other.conn_)),
        lifecycle_id_(std::exchange(other.lifecycle_id_, -1)),
        monitor_id_(std::exchange(other.monitor_id_, -1)) {}
  Subscription& operator=(Subscription&&) = delete;
  ~Subscription() {
    if (!conn_) return;
    if (lifecycle_id_ >= 0) virConnectDomainEventDeregisterAny(conn_.get(), lifecycle_id_);
    if (monitor_id_ >= 0) virConnectDomainQemuMonitorEventDeregister(conn_.get(), monitor_id_);
    virResetLastError();
  }

  virConnectPtr conn() const { return conn_.get(); }
  bool alive() const { return virConnectIsAlive(conn_.get()) == 1; }

 private:
  explicit Subscription(Connection conn) : conn_(std::move(conn)) {}
  Connection conn_;
  int lifecycle_id_ = -1;
  int monitor_id_ = -1;
};

class LibvirtVm final : public Vm {
 public:
  LibvirtVm(VmConfig config, std::string state_dir, std::string shared_dir,
            std::optional<SharedMount> mount, std::shared_ptr<Watch> watch,
            Subscription subscription)
      : config_(std::move(config)),
        state_dir_(std::move(state_dir)),
        shared_dir_(std::move(shared_dir)),
        mount_(std::move(mount)),
        watch_(std::move(watch)),
        subscription_(std::make_unique<Subscription>(std::move(subscription))) {}

  ~LibvirtVm() override {
    if (!stopped_) Stop(milliseconds(0));
  }

  // Creates the transient domain and starts watching it. On error the caller
  // drops the VM, whose destructor removes what is left.
  Status Create(const std::string& xml) {
    launched_at_ = Clock::now();
    // Autodestroy: libvirt destroys the domain when this connection closes,
    // so a VM does not outlive a process that dies without stopping it (as
    // PR_SET_PDEATHSIG does for the QEMU backend).
    Domain domain(
        virDomainCreateXML(subscription_->conn(), xml.c_str(), VIR_DOMAIN_START_AUTODESTROY));
    if (!domain) return LibvirtError("libvirt could not start domain hull-" + config_.id);
    if (config_.transport == TransportKind::kVsock) {
      char* live = virDomainGetXMLDesc(domain.get(), 0);
      std::optional<uint32_t> cid = live != nullptr ? VsockCidFromXml(live) : std::nullopt;
      std::free(live);
      if (!cid)
        return MakeError(ErrorCode::kInternal, "libvirt did not report the domain's vsock CID");
      vsock_cid_ = *cid;
    }
    {
      std::lock_guard lock(mu_);
      domain_ = std::move(domain);
    }
    monitor_ = std::thread([this] { Monitor(); });
    return Ok();
  }

  const std::string& id() const override { return config_.id; }
  const std::string& state_dir() const override { return state_dir_; }
  std::string console_log_path() const override { return state_dir_ + "/console.log"; }
  const std::string& shared_dir() const override { return shared_dir_; }
  pid_t pid() const override {
    std::lock_guard lock(pid_mu_);
    if (pid_ == 0 || ::kill(pid_, 0) < 0) pid_ = FindQemuPid(watch_->uuid);
    return pid_;
  }
  Clock::time_point launched_at() const override { return launched_at_; }

  Result<UniqueFd> ConnectAgent(Clock::time_point deadline) override {
    auto dead = [this]() -> std::optional<Unexpected> {
      if (!watch_->exit) return std::nullopt;
      return DeadError();
    };
    return ConnectAgentWhenReady({config_.transport, state_dir_ + "/agent.sock", vsock_cid_},
                                 watch_->mu, watch_->changed, watch_->agent_port, dead, deadline);
  }

  bool running() override {
    std::lock_guard lock(watch_->mu);
    return !watch_->exit.has_value();
  }

  std::optional<VmExit> exit() override {
    std::lock_guard lock(watch_->mu);
    return watch_->exit;
  }

  Result<std::optional<VmExit>> WaitForExit(milliseconds timeout) override {
    std::unique_lock lock(watch_->mu);
    watch_->changed.wait_for(lock, timeout, [&] { return watch_->exit.has_value(); });
    return watch_->exit;
  }

  void ExpectExit() override {
    std::lock_guard lock(watch_->mu);
    watch_->stop_requested = true;
  }

  VmExit Stop(milliseconds grace) override {
    std::unique_lock stop_lock(stop_mu_);
    if (stopped_) return exit().value_or(VmExit{});
    {
      std::unique_lock lock(watch_->mu);
      watch_->stop_requested = true;
      watch_->changed.wait_for(lock, grace, [&] { return watch_->exit.has_value(); });
    }
    const bool destroyed = running() && Destroy();
    {
      std::lock_guard lock(mu_);
      monitor_quit_ = true;
    }
    monitor_wake_.notify_all();
    if (monitor_.joinable()) monitor_.join();
    {
      // A domain that never started, or one libvirt lost track of.
      std::lock_guard lock(watch_->mu);
      if (!watch_->exit) watch_->RecordExit(destroyed ? VIR_DOMAIN_EVENT_STOPPED_DESTROYED : -1);
    }
    {
      std::lock_guard lock(mu_);
      domain_.reset();
      subscription_.reset();
    }
    // libvirt stopped the virtiofsd it started along with the domain.
    if (mount_) mount_->Release();
    RemoveVmStateDir(config_.id, state_dir_);
    stopped_ = true;
    return *exit();
  }

 private:
  Unexpected DeadError() const {
    return MakeError(ErrorCode::kUnavailable,
                     "VM `" + config_.id + "` is not running: " + watch_->exit->reason);
  }

  // SIGTERM to QEMU first (libvirt waits for it), then SIGKILL. A transient
  // domain is gone once destroyed.
  // True once the domain is gone.
  bool Destroy() {
    std::lock_guard lock(mu_);
    if ((!domain_ || !subscription_ || !subscription_->alive()) && !Reconnect()) return !running();
    if (virDomainDestroyFlags(domain_.get(), VIR_DOMAIN_DESTROY_GRACEFUL) == 0) return true;
    if (LastErrorIsNoDomain()) {
      virResetLastError();
      return true;
    }
    HULL_LOG_WARN("VM {}: {}; killing it", config_.id,
                  LibvirtError("graceful destroy").error.ToString());
    if (virDomainDestroy(domain_.get()) == 0 || LastErrorIsNoDomain()) {
      virResetLastError();
      return true;
    }
    HULL_LOG_ERROR("VM {}: {}: domain hull-{} may still run", config_.id,
                   LibvirtError("destroy").error.ToString(), config_.id);
    return false;
  }

  // Opens a new connection after the old one died and finds the domain
  // again. Called with mu_ held. False if libvirt is unreachable or the
  // domain is gone (then the exit is recorded).
  bool Reconnect() {
    auto subscription = Subscription::Open(config_.libvirt_uri, watch_);
    if (!subscription) {
      HULL_LOG_DEBUG("VM {}: reconnect to libvirt: {}", config_.id,
                     subscription.error().ToString());
      return false;
    }
    subscription_ = std::make_unique<Subscription>(std::move(*subscription));
    domain_.reset(virDomainLookupByUUIDString(subscription_->conn(), watch_->uuid.c_str()));
    if (!domain_) {
      bool gone = LastErrorIsNoDomain();
      virResetLastError();
      if (gone) {
        std::lock_guard lock(watch_->mu);
        watch_->RecordExit(-1);
      }
      return false;
    }
    HULL_LOG_INFO("VM {}: reconnected to libvirt", config_.id);
    return true;
  }

  // Events report a stopped domain at once; this loop is the safety net for
  // events lost with a libvirt connection (a restarted daemon): it polls the
  // domain's state every two seconds and reconnects when the connection died.
  void Monitor() {
    std::unique_lock lock(mu_);
    while (!monitor_quit_) {
      monitor_wake_.wait_for(lock, std::chrono::seconds(2));
      if (monitor_quit_) break;
      {
        std::lock_guard watch_lock(watch_->mu);
        if (watch_->exit) break;
      }
      if (!subscription_ || !subscription_->alive()) {
        if (!lost_connection_)
          HULL_LOG_WARN("VM {}: lost the libvirt connection; reconnecting", config_.id);
        lost_connection_ = true;
        if (!Reconnect()) continue;
        lost_connection_ = false;
      }
      int state = VIR_DOMAIN_NOSTATE;
      int reason = 0;
      if (virDomainGetState(domain_.get(), &state, &reason, 0) < 0) {
        bool gone = LastErrorIsNoDomain();
        virResetLastError();
        if (!gone) continue;
        state = VIR_DOMAIN_SHUTOFF;
      }
      if (state == VIR_DOMAIN_SHUTOFF || state == VIR_DOMAIN_CRASHED) {
        std::lock_guard watch_lock(watch_->mu);
        watch_->RecordExit(state == VIR_DOMAIN_CRASHED ? VIR_DOMAIN_EVENT_STOPPED_CRASHED : -1);
        break;
      }
    }
  }

  const VmConfig config_;
  const std::string state_dir_;
  const std::string shared_dir_;
  std::optional<SharedMount> mount_;
  std::shared_ptr<Watch> watch_;
  Clock::time_point launched_at_;
  uint32_t vsock_cid_ = 0;

  mutable std::mutex pid_mu_;
  mutable pid_t pid_ = 0;

  std::mutex stop_mu_;
  bool stopped_ = false;

  std::mutex mu_;  // guards the connection and domain handles, and the monitor
  std::condition_variable monitor_wake_;
  std::unique_ptr<Subscription> subscription_;
  Domain domain_;
  bool monitor_quit_ = false;
  bool lost_connection_ = false;
  std::thread monitor_;
};

class LibvirtHypervisor final : public Hypervisor {
 public:
  std::string_view name() const override { return "libvirt"; }
  // libvirtd opens a tap by name, in its own netns.
  TapHandover tap_handover() const override { return TapHandover::kNameInHostNetns; }

  Result<HypervisorProbe> Probe(const ProbeTarget& target) override {
    EnsureEventLoop();
    const std::string& uri = target.libvirt_uri;
    Connection conn(virConnectOpen(uri.c_str()));
    if (!conn) return LibvirtError("connect to libvirt at `" + uri + "`");
    unsigned long library = 0;
    unsigned long hypervisor = 0;
    if (virConnectGetLibVersion(conn.get(), &library) < 0)
      return LibvirtError("ask libvirt for its version");
    if (virConnectGetVersion(conn.get(), &hypervisor) < 0)
      return LibvirtError("ask libvirt for QEMU's version");
    return HypervisorProbe{"libvirt " + FormatVersion(library) + ", QEMU " +
                           FormatVersion(hypervisor) + " at " + uri};
  }

  Result<std::unique_ptr<Vm>> Launch(const VmConfig& config) override {
    const std::string context = "launch VM `" + config.id + "` through libvirt";
    if (!config.virtiofsd_args.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       context +
                           ": virtiofsd_args are not supported (libvirt "
                           "starts virtiofsd itself)");
    }
    const auto& tap = config.network.tap_name;
    if (!config.network.netns_path.empty() &&
        (tap.empty() || tap.size() >= 16 ||
         tap.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") != std::string::npos ||
         config.network.tap_fd >= 0 || config.network.mac_address.size() != 17)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       context +
                           ": the pod network needs a MAC and a tap by "
                           "name in the host's netns (tap_handover)");
    }
    if (!config.host_cgroup_dirs.empty()) {
      // libvirt puts its domains in cgroups of its own (its <resource>
      // partition).
      HULL_LOG_WARN("VM {}: libvirt places QEMU in its own cgroup, not in {}", config.id,
                    config.host_cgroup_dirs.front());
    }
    HULL_TRY(std::string state_dir, CreateVmStateDir(config), context);
    ScopeExit remove_dir([&] { (void)RemoveTree(state_dir); });

    std::string shared_dir = config.shared_dir;
    if (config.share_dir) {
      shared_dir = state_dir + "/shared";
      if (::mkdir(shared_dir.c_str(), 0755) < 0)
        return ErrnoError("create " + shared_dir).error.Wrap(context);
    }
    std::optional<SharedMount> mount;
    if (!shared_dir.empty()) {
      struct stat st {};
      if (::stat(shared_dir.c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         context + ": shared directory `" + shared_dir + "` is not a directory");
      }
      if (!IsExecutable(config.virtiofsd_path)) {
        return MakeError(ErrorCode::kFailedPrecondition, context + ": virtiofsd binary `" +
                                                             config.virtiofsd_path +
                                                             "` is missing or not executable");
      }
      // As for the virtiofsd hull starts itself (see SharedMount), but
      // libvirtd starts this one, maybe in a mount namespace of its own.
      if (config.virtiofsd_sandbox == VirtiofsdSandbox::kNamespace) {
        HULL_TRY(SharedMount bound,
                 SharedMount::Bind(shared_dir, SharedMount::Propagation::kInherit), context);
        mount.emplace(std::move(bound));
      }
    }

    DomainPlan plan;
    plan.name = "hull-" + config.id;
    plan.uuid = NewUuid();
    plan.emulator = config.hypervisor_path;
    plan.machine = config.machine;
    plan.accel = config.accel;
    plan.vcpus = config.vcpus;
    plan.memory_mib = config.memory_mib;
    plan.kernel = config.kernel;
    plan.initrd = config.initrd;
    plan.kernel_cmdline = BuildKernelCmdline(
        {config.transport, config.agent_log_level, config.agent_debug, config.extra_kernel_params});
    plan.console_log = state_dir + "/console.log";
    plan.transport = config.transport;
    plan.agent_socket = state_dir + "/agent.sock";
    plan.shared_dir = shared_dir;
    plan.shared_tag = shared_dir.empty() ? "" : kSharedFsTag;
    plan.virtiofsd_path = config.virtiofsd_path;
    plan.virtiofs_cache = config.virtiofs_cache;
    plan.virtiofsd_sandbox = config.virtiofsd_sandbox;
    plan.free_page_reporting = config.free_page_reporting;
    plan.tcg_tb_size_mib = config.tcg_tb_size_mib;
    if (!config.network.netns_path.empty()) {
      plan.tap_device = config.network.tap_name;
      plan.mac_address = config.network.mac_address;
    }
    plan.uid = ::getuid();
    plan.gid = ::getgid();
    const std::string xml = BuildDomainXml(plan);
    // Kept for operators: what hull asked libvirt for.
    HULL_CHECK_OK(WriteFile(state_dir + "/domain.xml", xml, 0600), context);

    auto watch = std::make_shared<Watch>(config.id, plan.uuid, plan.console_log);
    HULL_TRY(Subscription subscription, Subscription::Open(config.libvirt_uri, watch), context);
    auto vm = std::make_unique<LibvirtVm>(config, state_dir, shared_dir, std::move(mount), watch,
                                          std::move(subscription));
    remove_dir.Dismiss();  // the VM owns the directory from here on
    HULL_LOG_DEBUG("VM {}: creating libvirt domain {} ({})", config.id, plan.name, plan.uuid);
    HULL_CHECK_OK(vm->Create(xml), context);
    return std::unique_ptr<Vm>(std::move(vm));
  }
};

}  // namespace

std::unique_ptr<Hypervisor> MakeLibvirtHypervisor() {
  return std::make_unique<LibvirtHypervisor>();
}

}  // namespace hull::libvirt
