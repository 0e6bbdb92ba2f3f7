#include "libvirt/libvirt_vm.h"

#include <dirent.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <signal.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>

#include "hull/core/log.h"
#include "hull/core/syscall.h"
#include "libvirt/domain_xml.h"
#include "libvirt/libvirt_connection.h"
#include "src/vm_base.h"

namespace hull::libvirt {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

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

// The run state plus what the event callbacks need to find their domain and
// name its end.
struct Watch : VmRunState {
  Watch(std::string id, std::string uuid, std::string console_log)
      : id(std::move(id)), uuid(std::move(uuid)), console_log(std::move(console_log)) {}

  const std::string id;
  const std::string uuid;
  const std::string console_log;

  // Records the end of the VM from libvirt's stop detail (-1: none). Called
  // with mu held.
  void RecordStop(int stopped_detail) {
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
          "QEMU died without the guest powering off (killed, or it failed: see libvirt's log for "
          "hull-" +
          id + ")";
    } else {
      end.reason = "the domain is gone";
    }
    // libvirt does not pass on QEMU's wait status: a clean power-off (or a
    // stop hull asked for) reads as success, anything else as a failure.
    const bool clean = powered_off || stop_requested;
    end.process = clean ? ExitStatus{0, 0} : ExitStatus{1, 0};
    RecordExit(id, std::move(end));
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
  watch.RecordStop(detail);
  return 0;
}

void OnMonitorEvent(virConnectPtr, virDomainPtr domain, const char* event, long long, unsigned int,
                    const char* details, void* opaque) {
  Watch& watch = *WatchOf(opaque);
  if (event == nullptr || UuidOf(domain) != watch.uuid) return;
  auto data = nlohmann::json::parse(details != nullptr ? details : "null", nullptr, false);
  watch.OnQemuEvent(event, data, kAgentChannelAlias);
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

class LibvirtVm final : public VmBase {
 public:
  LibvirtVm(VmConfig config, std::string state_dir, std::string shared_dir,
            std::optional<SharedMount> mount, std::shared_ptr<Watch> watch,
            Subscription subscription)
      : VmBase(std::move(config), std::move(state_dir), std::move(shared_dir), watch),
        mount_(std::move(mount)),
        watch_(std::move(watch)),
        subscription_(std::make_unique<Subscription>(std::move(subscription))) {}

  ~LibvirtVm() override { StopUnlessStopped(); }

  // Creates the transient domain and starts watching it. On error the caller
  // drops the VM, whose destructor removes what is left.
  Status Create(const std::string& xml) {
    launched_at_ = Clock::now();
    // Autodestroy: libvirt destroys the domain when this connection closes,
    // so a VM does not outlive a process that dies without stopping it (as
    // PR_SET_PDEATHSIG does for the QEMU backend).
    Domain domain(
        virDomainCreateXML(subscription_->conn(), xml.c_str(), VIR_DOMAIN_START_AUTODESTROY));
    if (!domain) return LibvirtError("libvirt could not start domain hull-" + id());
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
    StartMonitor([this] { Monitor(); });
    return Ok();
  }

  pid_t pid() const override {
    std::lock_guard lock(pid_mu_);
    if (pid_ == 0 || ::kill(pid_, 0) < 0) pid_ = FindQemuPid(watch_->uuid);
    return pid_;
  }

 private:
  // Destroys the domain, stops the monitor, and lets go of libvirt.
  void EndVm() override {
    const bool destroyed = running() && Destroy();
    {
      std::lock_guard lock(mu_);
      monitor_quit_ = true;
    }
    monitor_wake_.notify_all();
    JoinMonitor();
    {
      // A domain that never started, or one libvirt lost track of.
      std::lock_guard lock(watch_->mu);
      if (!watch_->exit) watch_->RecordStop(destroyed ? VIR_DOMAIN_EVENT_STOPPED_DESTROYED : -1);
    }
    {
      std::lock_guard lock(mu_);
      domain_.reset();
      subscription_.reset();
    }
    // libvirt stopped the virtiofsd it started along with the domain.
    if (mount_) mount_->Release();
  }

  void KillHypervisor() override {
    std::lock_guard lock(mu_);
    if (domain_ && virDomainDestroy(domain_.get()) != 0 && !LastErrorIsNoDomain()) {
      HULL_LOG_ERROR("VM {}: {}", id(), LibvirtError("destroy").error.ToString());
    }
    virResetLastError();
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
    HULL_LOG_WARN("VM {}: {}; killing it", id(), LibvirtError("graceful destroy").error.ToString());
    if (virDomainDestroy(domain_.get()) == 0 || LastErrorIsNoDomain()) {
      virResetLastError();
      return true;
    }
    HULL_LOG_ERROR("VM {}: {}: domain hull-{} may still run", id(),
                   LibvirtError("destroy").error.ToString(), id());
    return false;
  }

  // Opens a new connection after the old one died and finds the domain
  // again. Called with mu_ held. False if libvirt is unreachable or the
  // domain is gone (then the exit is recorded).
  bool Reconnect() {
    auto subscription = Subscription::Open(config_.libvirt_uri, watch_);
    if (!subscription) {
      HULL_LOG_DEBUG("VM {}: reconnect to libvirt: {}", id(), subscription.error().ToString());
      return false;
    }
    subscription_ = std::make_unique<Subscription>(std::move(*subscription));
    domain_.reset(virDomainLookupByUUIDString(subscription_->conn(), watch_->uuid.c_str()));
    if (!domain_) {
      bool gone = LastErrorIsNoDomain();
      virResetLastError();
      if (gone) {
        std::lock_guard lock(watch_->mu);
        watch_->RecordStop(-1);
      }
      return false;
    }
    HULL_LOG_INFO("VM {}: reconnected to libvirt", id());
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
          HULL_LOG_WARN("VM {}: lost the libvirt connection; reconnecting", id());
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
        watch_->RecordStop(state == VIR_DOMAIN_CRASHED ? VIR_DOMAIN_EVENT_STOPPED_CRASHED : -1);
        break;
      }
    }
  }

  std::optional<SharedMount> mount_;
  const std::shared_ptr<Watch> watch_;  // the same object as run_, with libvirt's view

  mutable std::mutex pid_mu_;
  mutable pid_t pid_ = 0;

  std::mutex mu_;  // guards the connection and domain handles, and the monitor
  std::condition_variable monitor_wake_;
  std::unique_ptr<Subscription> subscription_;
  Domain domain_;
  bool monitor_quit_ = false;
  bool lost_connection_ = false;
};

}  // namespace

Result<std::unique_ptr<Vm>> CreateLibvirtVm(LibvirtVmPlan plan) {
  const std::string context = "launch VM `" + plan.config.id + "` through libvirt";
  auto watch = std::make_shared<Watch>(plan.config.id, plan.uuid, plan.console_log);
  auto subscription = Subscription::Open(plan.config.libvirt_uri, watch);
  if (!subscription) {
    plan.mount.reset();
    (void)RemoveTree(plan.state_dir);
    return std::move(subscription).error().Wrap(context);
  }
  auto vm = std::make_unique<LibvirtVm>(std::move(plan.config), plan.state_dir,
                                        std::move(plan.shared_dir), std::move(plan.mount), watch,
                                        std::move(*subscription));
  // The VM owns the state directory from here on: dropping it cleans up.
  HULL_LOG_DEBUG("VM {}: creating libvirt domain hull-{} ({})", vm->id(), vm->id(), plan.uuid);
  HULL_CHECK_OK(vm->Create(plan.xml), context);
  return std::unique_ptr<Vm>(std::move(vm));
}

}  // namespace hull::libvirt
