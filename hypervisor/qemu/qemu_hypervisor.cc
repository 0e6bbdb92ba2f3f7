#include "qemu/qemu_hypervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <thread>

#include "hull/core/guest_contract.h"
#include "hull/core/ids.h"
#include "hull/core/log.h"
#include "hull/core/sys.h"
#include "hull/core/syscall.h"
#include "hull/core/thread.h"
#include "hull/hypervisor/kernel_cmdline.h"
#include "hull/hypervisor/template.h"
#include "qemu/qemu_argv.h"
#include "qemu/qmp.h"
#include "src/console_log.h"
#include "src/vm_base.h"

namespace hull::qemu {

namespace {

// From <linux/vhost.h>, which does not compile as C++.
constexpr unsigned long kVhostVsockSetGuestCid = _IOW(0xAF, 0x60, uint64_t);

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The last lines of a log file, for error messages.
std::string Tail(const std::string& path, size_t max_bytes = 2000) {
  auto text = ReadFile(path, 16 << 20);
  if (!text || text->empty()) return "";
  std::string_view view = *text;
  if (view.size() > max_bytes) view = view.substr(view.size() - max_bytes);
  while (!view.empty() && (view.back() == '\n' || view.back() == '\r')) view.remove_suffix(1);
  return std::string(view);
}

// Picks a free guest CID by asking vhost-vsock to take it: the kernel refuses
// one that another VM holds, so the probe and the reservation are one step.
Result<std::pair<UniqueFd, uint32_t>> ReserveVsockCid() {
  UniqueFd fd(::open("/dev/vhost-vsock", O_RDWR | O_CLOEXEC));
  if (!fd)
    return ErrnoError("open /dev/vhost-vsock (the vsock transport needs the vhost_vsock module)");
  for (int attempt = 0; attempt < 64; ++attempt) {
    uint32_t random = 0;
    if (::getrandom(&random, sizeof random, 0) != sizeof random) continue;
    uint64_t cid = 3 + random % (0xffffffffu - 4);
    if (::ioctl(fd.get(), kVhostVsockSetGuestCid, &cid) == 0) {
      return std::make_pair(std::move(fd), static_cast<uint32_t>(cid));
    }
    if (errno != EADDRINUSE) return ErrnoError("reserve a vsock CID");
  }
  return MakeError(ErrorCode::kResourceExhausted, "no free vsock CID found");
}

// Copies `size` bytes of `from` into `to` at the same offsets, skipping holes:
// a template's RAM file is mostly holes (pages the guest never touched or gave
// back). sendfile works between any two files, copy_file_range not across
// tmpfs instances.
Status CopySparse(int from, int to, off_t size) {
  off_t offset = 0;
  while (offset < size) {
    off_t data = ::lseek(from, offset, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole is left
      return ErrnoError("seek data");
    }
    off_t hole = ::lseek(from, data, SEEK_HOLE);
    if (hole < 0) return ErrnoError("seek hole");
    hole = std::min(hole, size);
    if (::lseek(to, data, SEEK_SET) < 0) return ErrnoError("seek");
    off_t in = data;
    while (in < hole) {
      ssize_t n =
          RetryEintr([&] { return ::sendfile(to, from, &in, static_cast<size_t>(hole - in)); });
      if (n < 0) return ErrnoError("copy");
      if (n == 0) return MakeError(ErrorCode::kDataLoss, "the file shrank while it was copied");
    }
    offset = hole;
  }
  return Ok();
}

// A private copy of a template's RAM file `from`, as a memfd: it goes when
// the clone's QEMU does, whoever dies first.
Result<UniqueFd> CopyTemplateMemory(int from, uint64_t memory_mib) {
  struct stat st {};
  if (::fstat(from, &st) < 0) return ErrnoError("stat the RAM file");
  const off_t size = static_cast<off_t>(memory_mib << 20);
  if (!S_ISREG(st.st_mode) || st.st_size != size) {
    return MakeError(ErrorCode::kDataLoss, "the RAM file holds " + std::to_string(st.st_size) +
                                               " bytes, not the " + std::to_string(size) +
                                               " of the VM's memory");
  }
  UniqueFd ram(sys::MemfdCreate("hull-guest-ram", MFD_CLOEXEC));
  if (!ram) return ErrnoError("memfd_create");
  if (::ftruncate(ram.get(), size) < 0) return ErrnoError("size the guest's RAM");
  HULL_CHECK_OK(CopySparse(from, ram.get(), size), "copy the RAM file");
  return ram;
}

class QemuVm final : public VmBase {
 public:
  QemuVm(VmConfig config, std::string state_dir, Child child, Clock::time_point launched_at,
         uint32_t cid, std::optional<Virtiofsd> virtiofsd, UniqueFd console,
         std::optional<ConsoleLog> console_log)
      : VmBase(std::move(config), std::move(state_dir),
               virtiofsd ? virtiofsd->options().shared_dir : "", std::make_shared<VmRunState>()),
        child_(std::move(child)),
        virtiofsd_(std::move(virtiofsd)),
        console_(std::move(console)),
        console_log_(std::move(console_log)) {
    launched_at_ = launched_at;
    vsock_cid_ = cid;
  }

  ~QemuVm() override { StopUnlessStopped(); }

  // Connects QMP and starts watching the process. On error the caller drops
  // the VM, whose destructor kills QEMU and removes the state directory.
  Status Attach(Clock::time_point deadline) {
    while (true) {
      auto exited = child_.WaitFor(milliseconds(0));
      if (exited && *exited) {
        std::string why = "QEMU " + (*exited)->ToString();
        std::string log = Tail(qemu_log_path());
        if (!log.empty()) why += ": " + log;
        // QEMU fails to start when virtiofsd dies under it: say why it died.
        if (virtiofsd_) {
          if (auto status = virtiofsd_->Reap(); status)
            why += "; " + DescribeVirtiofsdExit(*status);
        }
        return MakeError(ErrorCode::kFailedPrecondition, why);
      }
      auto qmp = QmpClient::Connect(qmp_socket_path(), milliseconds(200));
      if (qmp) {
        // The handler holds the run state, not the VM: Stop clears it, but
        // a call already under way must not outlive what it touches.
        (*qmp)->SetEventHandler([run = run_](const QmpEvent& event) {
          run->OnQemuEvent(event.name, event.data, kAgentPortId);
        });
        std::lock_guard lock(qmp_mu_);
        qmp_ = std::move(*qmp);
        break;
      }
      if (Clock::now() > deadline) return std::move(qmp).error().Wrap("connect to QMP");
    }
    StartMonitor([this] { Monitor(); });
    return Ok();
  }

  pid_t pid() const override { return child_.pid(); }

  // Runs one QMP command (diagnostics and tests; see qemu_hypervisor.h).
  Result<nlohmann::json> ExecuteQmp(std::string_view command, const nlohmann::json& arguments,
                                    milliseconds timeout) {
    std::shared_ptr<QmpClient> qmp = qmp_client();
    if (!qmp) return MakeError(ErrorCode::kUnavailable, "VM `" + id() + "` has no QMP connection");
    return qmp->Execute(command, arguments, timeout);
  }

  // A clone's start: reads the device state from QEMU's inherited fd
  // `state_fd`, plugs the shared directory's device and the NIC into the
  // template's empty root ports, and resumes the guest.
  Status Restore(int state_fd, Clock::time_point deadline) {
    HULL_CHECK_OK(Qmp("migrate-set-capabilities", IgnoreSharedCapability(), deadline), "");
    HULL_CHECK_OK(Qmp("migrate-incoming", {{"uri", "fd:" + std::to_string(state_fd)}}, deadline),
                  "");
    if (auto loaded = WaitForMigration(deadline); !loaded) {
      // A stream that does not load is the template's fault; a deadline is not.
      if (loaded.error().code() == ErrorCode::kFailedPrecondition) {
        return MakeError(ErrorCode::kDataLoss,
                         "restore the device state: " + loaded.error().ToString());
      }
      return std::move(loaded).error().Wrap("restore the device state");
    }
    if (!shared_dir().empty()) {
      HULL_CHECK_OK(Qmp("device_add", SharedFsDevice(kSharedFsTag, kSharePortId).ToQmp(), deadline),
                    "plug in the shared directory");
    }
    if (!config_.network.netns_path.empty()) {
      HULL_CHECK_OK(Qmp("device_add", PodNetDevice(config_.network.mac_address, kNetPortId).ToQmp(),
                        deadline),
                    "plug in the pod's NIC");
    }
    {
      // The template was saved with the agent's port open and no host
      // connection on it: the guest is ready for its first one.
      std::lock_guard lock(run_->mu);
      run_->agent_port.OnChange(true);
      run_->changed.notify_all();
    }
    return Qmp("cont", nullptr, deadline);
  }

  // A template's save, once its agent answered and the host's connection to
  // it closed: waits for the agent to reopen its port, lets the guest report
  // the memory it freed, pauses it and writes its device state to
  // `state_path` through a unix socket (RAM stays in its file: x-ignore-shared).
  Status SaveTo(const std::string& state_path, Clock::time_point deadline) {
    {
      std::unique_lock lock(run_->mu);
      if (!run_->changed.wait_until(lock, deadline, [&] {
            return run_->agent_port.ReadyForConnection() || run_->exit.has_value();
          })) {
        return MakeError(ErrorCode::kDeadlineExceeded,
                         "the agent did not reopen its port after the template's check");
      }
      if (run_->exit) return DeadError();
    }
    // Free page reporting hands back what boot freed after ~2 s; a template
    // without that garbage is smaller, and so is every copy of it.
    std::this_thread::sleep_for(kSettleTime);
    HULL_CHECK_OK(Qmp("stop", nullptr, deadline), "");
    HULL_CHECK_OK(Qmp("migrate-set-capabilities", IgnoreSharedCapability(), deadline), "");
    const std::string socket_path = state_dir() + "/migrate.sock";
    HULL_TRY(UniqueFd listener, ListenUnix(socket_path, 1), "");
    Result<std::string> stream = MakeError(ErrorCode::kInternal, "no migration stream");
    std::thread reader =
        SpawnThread("vm-save", [&] { stream = ReadStream(listener.get(), deadline); });
    Status started = Qmp("migrate", {{"uri", "unix:" + socket_path}}, deadline);
    Status migrated = started ? WaitForMigration(deadline) : started;
    if (!migrated) ::shutdown(listener.get(), SHUT_RDWR);  // unblocks a reader still waiting
    reader.join();
    HULL_CHECK_OK(migrated, "save the device state");
    if (!stream) return std::move(stream).error().Wrap("save the device state");
    return WriteFile(state_path, *stream, 0600);
  }

 private:
  static constexpr std::chrono::milliseconds kSettleTime{2500};
  static constexpr size_t kMaxStateBytes = 256 << 20;

  static nlohmann::json IgnoreSharedCapability() {
    return {{"capabilities",
             nlohmann::json::array({{{"capability", "x-ignore-shared"}, {"state", true}}})}};
  }

  Status Qmp(std::string_view command, const nlohmann::json& arguments,
             Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    auto result = ExecuteQmp(command, arguments, std::max(left, milliseconds(1)));
    if (!result) return Unexpected{std::move(result).error()};
    return Ok();
  }

  // Polls query-migrate until the migration (either way) completed.
  Status WaitForMigration(Clock::time_point deadline) {
    while (true) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      auto info = ExecuteQmp("query-migrate", nullptr, std::max(left, milliseconds(1)));
      if (!info) {
        // QEMU exits when an incoming stream does not load: say why.
        // (The monitor thread reaps QEMU and records why it ended.)
        std::unique_lock lock(run_->mu);
        if (run_->changed.wait_for(lock, milliseconds(1000),
                                   [&] { return run_->exit.has_value(); })) {
          return MakeError(ErrorCode::kFailedPrecondition,
                           "migration failed: " + run_->exit->reason);
        }
        return Unexpected{std::move(info).error()};
      }
      std::string status = info->is_object() ? info->value("status", "") : "";
      if (status == "completed") return Ok();
      if (status == "failed" || status == "cancelled") {
        std::string why = info->is_object() ? info->value("error-desc", "") : "";
        return MakeError(ErrorCode::kFailedPrecondition,
                         "migration " + status + (why.empty() ? "" : ": " + why));
      }
      if (Clock::now() > deadline) {
        return MakeError(ErrorCode::kDeadlineExceeded,
                         "migration still `" + status + "` at the deadline");
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
  }

  // Accepts QEMU's one connection on `listener` and reads it to the end.
  static Result<std::string> ReadStream(int listener, Clock::time_point deadline) {
    pollfd ready{listener, POLLIN, 0};
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (RetryEintr(
            [&] { return ::poll(&ready, 1, static_cast<int>(std::max<int64_t>(left, 0))); }) <= 0) {
      return MakeError(ErrorCode::kDeadlineExceeded, "QEMU did not connect to save its state");
    }
    HULL_TRY(UniqueFd connection, AcceptConnection(listener), "");
    std::string data;
    char buffer[1 << 16];
    while (true) {
      pollfd readable{connection.get(), POLLIN, 0};
      left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (RetryEintr([&] {
            return ::poll(&readable, 1, static_cast<int>(std::max<int64_t>(left, 0)));
          }) <= 0) {
        return MakeError(ErrorCode::kDeadlineExceeded, "QEMU's state stream did not end in time");
      }
      ssize_t n = RetryEintr([&] { return ::read(connection.get(), buffer, sizeof buffer); });
      if (n < 0 && errno == EAGAIN) continue;
      if (n < 0) return ErrnoError("read QEMU's state stream");
      if (n == 0) return data;
      if (data.size() + n > kMaxStateBytes) {
        return MakeError(ErrorCode::kResourceExhausted, "QEMU's state stream is too large");
      }
      data.append(buffer, n);
    }
  }

  // QMP `quit`, then SIGKILL; reaps QEMU and stops its virtiofsd.
  void EndVm() override {
    if (std::shared_ptr<QmpClient> qmp = qmp_client(); running() && qmp) {
      if (auto quit = qmp->Quit(milliseconds(2000)); !quit) {
        HULL_LOG_DEBUG("VM {}: QMP quit: {}", id(), quit.error().ToString());
      }
      std::unique_lock lock(run_->mu);
      run_->changed.wait_for(lock, milliseconds(3000), [&] { return run_->exit.has_value(); });
    }
    if (running()) {
      HULL_LOG_WARN("VM {}: QEMU did not exit, killing it", id());
      (void)child_.Signal(SIGKILL);
    }
    if (!JoinMonitor()) {
      // Attach never ran (or failed early): reap here.
      auto status = child_.reaped() ? *child_.exit_status() : child_.Terminate(milliseconds(0));
      std::lock_guard lock(run_->mu);
      run_->RecordExit(id(), VmExit{status, status.ToString(), true});
    }
    std::shared_ptr<QmpClient> qmp;
    {
      std::lock_guard lock(qmp_mu_);
      qmp = std::move(qmp_);
    }
    // Another thread's ExecuteQmp may still hold the client, and the last
    // holder closes it: make sure no event reaches this VM from then on.
    if (qmp) qmp->SetEventHandler(nullptr);
    qmp.reset();
    // QEMU is gone, so virtiofsd has lost its only client and is exiting by
    // itself; Stop makes sure, and removes its socket.
    if (virtiofsd_) {
      ExitStatus status = virtiofsd_->Stop(milliseconds(2000));
      HULL_LOG_DEBUG("VM {}: virtiofsd {}", id(), status.ToString());
    }
  }

  std::shared_ptr<QmpClient> qmp_client() {
    std::lock_guard lock(qmp_mu_);
    return qmp_;
  }

  // "virtiofsd was killed by signal 9 (SIGKILL)", or "virtiofsd exited with
  // code 1: <its last log line>" (its error message, when it exits on one).
  std::string DescribeVirtiofsdExit(const ExitStatus& status) const {
    if (status.signal != 0) return "virtiofsd was " + status.ToString();
    std::string why = "virtiofsd " + status.ToString();
    std::string log = virtiofsd_->LogTail(500);
    if (auto newline = log.rfind('\n'); newline != std::string::npos) log = log.substr(newline + 1);
    if (!log.empty()) why += ": " + log;
    return why;
  }

  std::string qmp_socket_path() const { return state_dir() + "/qmp.sock"; }
  std::string qemu_log_path() const { return state_dir() + "/qemu.log"; }

  // Waits for QEMU to exit (or for Stop), then records why it did. Also
  // watches virtiofsd: one that dies under a running VM is reported.
  // Also copies the guest's console into its capped log.
  void Monitor() {
    pollfd fds[3] = {{child_.pidfd(), POLLIN, 0},
                     {virtiofsd_ ? virtiofsd_->pidfd() : -1, POLLIN, 0},
                     {console_.get(), POLLIN, 0}};
    while (true) {
      if (RetryEintr([&] { return ::poll(fds, 3, -1); }) < 0) continue;
      if (fds[2].revents != 0 && !CopyConsole()) fds[2].fd = -1;
      if (fds[0].revents != 0) break;
      if (fds[1].revents != 0) {
        fds[1].fd = -1;  // poll ignores negative fds
        OnVirtiofsdExit();
      }
    }
    if (fds[2].fd >= 0) CopyConsole();  // the last words
    auto status = child_.Wait();
    ExitStatus process = status ? *status : ExitStatus{0, SIGKILL};
    std::lock_guard lock(run_->mu);
    const std::string& shutdown = run_->shutdown_reason;
    VmExit exit{process, "", run_->stop_requested};
    if (shutdown == "guest-shutdown") {
      exit.reason = "the guest powered off";
    } else if (shutdown == "guest-reset" || shutdown == "guest-panic") {
      exit.reason = "the guest rebooted or panicked (see " + console_log_path() + ")";
    } else if (shutdown == "host-qmp-quit") {
      exit.reason = "QEMU quit on request";
    } else if (process.signal != 0) {
      exit.reason = "QEMU was " + process.ToString();
    } else {
      exit.reason = "QEMU " + process.ToString();
      std::string log = Tail(qemu_log_path(), 500);
      if (!log.empty()) exit.reason += ": " + log;
    }
    run_->RecordExit(id(), std::move(exit));
  }

  // virtiofsd exited. It does so by itself when QEMU exits, so give QEMU a
  // moment: only a virtiofsd that died under a still-running VM is news.
  // That VM is stopped: its containers' root filesystems are gone, and a
  // guest whose file system requests are never answered hangs every process
  // (and every call of its agent) that touches them. The VM's death is how
  // the runtime above learns that its containers ended.
  void OnVirtiofsdExit() {
    std::optional<ExitStatus> status = virtiofsd_->Reap();
    if (!status) return;
    pollfd qemu{child_.pidfd(), POLLIN, 0};
    if (RetryEintr([&] { return ::poll(&qemu, 1, 500); }) > 0) return;
    std::string why = DescribeVirtiofsdExit(*status);
    {
      std::lock_guard lock(run_->mu);
      if (run_->stop_requested) {
        HULL_LOG_DEBUG("VM {}: {}", id(), why);
        return;
      }
    }
    Abort(why + " while the VM ran, so hull stopped the VM");
  }

  void KillHypervisor() override { (void)child_.Signal(SIGKILL); }

  // Copies what the console socket holds into the log; false once it ended
  // (QEMU closed it) or the log cannot be written.
  bool CopyConsole() {
    char buffer[1 << 16];
    while (true) {
      ssize_t n = RetryEintr([&] { return ::read(console_.get(), buffer, sizeof buffer); });
      if (n < 0 && errno == EAGAIN) return true;
      if (n <= 0) return false;
      if (!console_log_) continue;  // nowhere to write: drained, so QEMU never blocks
      if (auto appended = console_log_->Append({buffer, static_cast<size_t>(n)}); !appended) {
        HULL_LOG_WARN("VM {}: the guest console is no longer logged: {}", id(),
                      appended.error().ToString());
        console_log_.reset();
      }
    }
  }

  Child child_;
  // Touched by the monitor thread (Reap) until it is joined, then by EndVm.
  std::optional<Virtiofsd> virtiofsd_;
  // The console's host end and its log: the monitor thread's alone.
  UniqueFd console_;
  std::optional<ConsoleLog> console_log_;

  std::mutex qmp_mu_;
  std::shared_ptr<QmpClient> qmp_;  // guarded by qmp_mu_
};

class QemuHypervisor final : public Hypervisor {
 public:
  std::string_view name() const override { return "qemu"; }
  TapHandover tap_handover() const override { return TapHandover::kFdInNetns; }
  bool supports_templates() const override { return true; }

  Result<HypervisorProbe> Probe(const ProbeTarget& target) override {
    if (!IsExecutable(target.hypervisor_path)) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       target.hypervisor_path + " is missing (apt-get install qemu-system-x86)");
    }
    auto version = ProgramVersion(target.hypervisor_path);
    if (!version) return std::move(version).error();
    return HypervisorProbe{*version};
  }

  Result<std::unique_ptr<Vm>> Launch(const VmConfig& config) override {
    if (!config.clone_of.empty()) return Clone(config);
    HULL_TRY(auto vm, Start(config, {}), "");
    return std::unique_ptr<Vm>(std::move(vm));
  }

  Status SaveTemplate(const VmConfig& config, const std::string& dir,
                      const std::function<Status(Vm&)>& ready) override {
    const std::string what = "save template VM `" + config.id + "`";
    if (std::string why = TemplateIneligibility(config); !why.empty()) {
      return MakeError(ErrorCode::kFailedPrecondition, what + ": " + why);
    }
    if (!config.shared_dir.empty() || config.share_dir || !config.network.netns_path.empty() ||
        !config.clone_of.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       what + ": a template has no shared directory, network or template");
    }
    const std::string memory = dir + "/memory";
    {
      UniqueFd file(::open(memory.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      if (!file || ::ftruncate(file.get(), static_cast<off_t>(config.memory_mib << 20)) < 0) {
        return ErrnoError(what + ": create " + memory);
      }
    }
    HULL_TRY(auto vm, Start(config, {.start = VmStart::kTemplate, .memory_path = memory}), what);
    HULL_CHECK_OK(ready(*vm), what);
    HULL_CHECK_OK(vm->SaveTo(dir + "/state", Clock::now() + kTemplateStepTimeout), what);
    vm->Stop(milliseconds(0));
    // QEMU is gone: its pages the guest only zeroed need not be copied into
    // every clone.
    UniqueFd file(::open(memory.c_str(), O_RDWR | O_CLOEXEC));
    if (!file) return ErrnoError(what + ": open " + memory);
    // Only saves space: a filesystem that cannot punch holes still has a
    // valid template.
    if (auto punched = PunchZeroPages(file.get()); punched) {
      HULL_LOG_INFO("template VM `{}`: {} MiB of zero pages left out of its RAM file", config.id,
                    *punched >> 20);
    } else {
      HULL_LOG_WARN("template VM `{}`: zero pages stay in {}: {}", config.id, memory,
                    punched.error().ToString());
    }
    return Ok();
  }

 private:
  // An error that says the template is unusable (kDataLoss): the caller
  // drops the template. Other errors of a clone's start are not its fault.
  static Unexpected TemplateError(const std::string& what, const Error& error) {
    return Unexpected{Error(ErrorCode::kDataLoss, what + ": " + error.ToString())};
  }
  static Unexpected TemplateError(const std::string& what, const Unexpected& error) {
    return TemplateError(what, error.error);
  }

  // How long one step of a template's save or a clone's restore may take.
  static constexpr std::chrono::seconds kTemplateStepTimeout{60};

  struct StartMode {
    VmStart start = VmStart::kBoot;
    std::string memory_path;    // kTemplate, kClone: guest RAM's file
    std::vector<int> pass_fds;  // kClone: the RAM copy and the state file
  };

  // A clone: copies the template's RAM into a memfd of its own (QEMU maps
  // it shared, so virtiofsd can too), starts QEMU on it waiting for its
  // device state, then restores, plugs in and resumes.
  Result<std::unique_ptr<Vm>> Clone(const VmConfig& config) {
    const std::string what = "launch VM `" + config.id + "` from template " + config.clone_of;
    if (std::string why = TemplateIneligibility(config); !why.empty()) {
      return MakeError(ErrorCode::kFailedPrecondition, what + ": " + why);
    }
    // Both files from one build of the template: through one directory fd,
    // whatever replaces the directory meanwhile.
    UniqueFd dir(::open(config.clone_of.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    if (!dir) return TemplateError(what, ErrnoError("open " + config.clone_of));
    UniqueFd memory(::openat(dir.get(), "memory", O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    UniqueFd state(::openat(dir.get(), "state", O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!memory || !state) {
      return TemplateError(what, ErrnoError("open the template's files in " + config.clone_of));
    }
    auto ram = CopyTemplateMemory(memory.get(), config.memory_mib);
    if (!ram) {
      if (ram.error().code() == ErrorCode::kDataLoss) return TemplateError(what, ram.error());
      return std::move(ram).error().Wrap(what);
    }
    StartMode mode{.start = VmStart::kClone,
                   .memory_path = "/proc/self/fd/" + std::to_string(ram->get()),
                   .pass_fds = {ram->get(), state.get()}};
    HULL_TRY(auto vm, Start(config, mode), what);
    ram->reset();  // QEMU holds the RAM now
    if (auto restored = vm->Restore(state.get(), Clock::now() + kTemplateStepTimeout); !restored) {
      // The state did not load: the template's fault. Anything later (a
      // device that would not plug, a QMP timeout under load) is not.
      if (restored.error().code() == ErrorCode::kDataLoss) {
        return TemplateError(what, restored.error());
      }
      return std::move(restored).error().Wrap(what);
    }
    return std::unique_ptr<Vm>(std::move(vm));
  }

  Result<std::unique_ptr<QemuVm>> Start(const VmConfig& config, const StartMode& mode) {
    HULL_TRY(std::string state_dir, CreateVmStateDir(config), "launch VM `" + config.id + "`");
    ScopeExit remove_dir([&] { (void)RemoveTree(state_dir); });

    QemuLaunchPlan plan;
    plan.qemu_path = config.hypervisor_path;
    plan.name = "hull-" + config.id;
    plan.machine = config.machine;
    plan.accel = config.accel;
    plan.vcpus = config.vcpus;
    plan.memory_mib = config.memory_mib;
    plan.kernel = config.kernel;
    plan.initrd = config.initrd;
    plan.kernel_cmdline = VmKernelCmdline(config, guest::kRootDevicePmem);
    if (!config.root_image.empty()) {
      HULL_TRY(plan.root_image_bytes, RootImageBytes(config.root_image),
               "launch VM `" + config.id + "`");
      plan.root_image = config.root_image;
    }
    plan.qmp_socket = state_dir + "/qmp.sock";
    // The console is the guest's to write: the host reads it (the monitor
    // thread) and keeps a capped log, instead of QEMU growing a file.
    int console_pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, console_pair) < 0) {
      return ErrnoError("launch VM `" + config.id + "`: a socket pair for the console");
    }
    UniqueFd console_host(console_pair[0]);
    UniqueFd console_qemu(console_pair[1]);
    if (::fcntl(console_host.get(), F_SETFL, O_NONBLOCK) < 0) {
      return ErrnoError("launch VM `" + config.id + "`: make the console socket non-blocking");
    }
    plan.console_fd = console_qemu.get();
    HULL_TRY(ConsoleLog console_log,
             ConsoleLog::Open(state_dir + "/console.log", config.console_log_max_bytes),
             "launch VM `" + config.id + "`");
    plan.transport = config.transport;
    plan.agent_socket = state_dir + "/agent.sock";
    plan.seccomp_sandbox = config.seccomp_sandbox;
    plan.free_page_reporting = config.free_page_reporting;
    plan.tcg_tb_size_mib = config.tcg_tb_size_mib;
    plan.start = mode.start;
    plan.memory_path = mode.memory_path;
    // virtiofsd first: it must listen before QEMU connects to it. A failure
    // from here on stops it (and removes its socket) as `virtiofsd` unwinds.
    // The pod's host cgroup, for virtiofsd and QEMU alike.
    std::vector<std::string> cgroup_procs;
    for (const auto& dir : config.host_cgroup_dirs) cgroup_procs.push_back(dir + "/cgroup.procs");
    std::optional<Virtiofsd> virtiofsd;
    std::string shared_dir = config.shared_dir;
    if (config.share_dir) {
      shared_dir = state_dir + "/shared";
      if (::mkdir(shared_dir.c_str(), 0755) < 0) {
        return ErrnoError("launch VM `" + config.id + "`: create " + shared_dir);
      }
    }
    if (!shared_dir.empty()) {
      VirtiofsdOptions options;
      options.binary = config.virtiofsd_path;
      options.shared_dir = shared_dir;
      options.socket_path = state_dir + "/virtiofsd.sock";
      options.log_path = state_dir + "/virtiofsd.log";
      options.cache = config.virtiofs_cache;
      options.sandbox = config.virtiofsd_sandbox;
      options.extra_args = config.virtiofsd_args;
      options.cgroup_procs = cgroup_procs;  // its memory and CPU are the pod's cost too
      if (config.share_dir) options.share_root_bytes = kShareRootBytes;
      HULL_TRY(Virtiofsd started, Virtiofsd::Start(options), "launch VM `" + config.id + "`");
      virtiofsd.emplace(std::move(started));
      plan.virtiofs_socket = options.socket_path;
      plan.virtiofs_tag = kSharedFsTag;
    }
    UniqueFd vhost;
    if (config.transport == TransportKind::kVsock) {
      HULL_TRY(auto reserved, ReserveVsockCid(), "launch VM `" + config.id + "`");
      vhost = std::move(reserved.first);
      plan.vsock_cid = reserved.second;
      plan.vhost_fd = vhost.get();
    }

    if (!config.network.netns_path.empty()) {
      if (config.network.tap_fd < 0 || config.network.mac_address.size() != 17 ||
          config.network.mac_address.find(',') != std::string::npos) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "launch VM `" + config.id + "`: the pod network needs a tap fd and a MAC");
      }
      plan.tap_fd = config.network.tap_fd;
      plan.mac_address = config.network.mac_address;
    }
    SpawnOptions spawn;
    spawn.argv = BuildQemuArgv(plan);
    // QEMU lives in the pod's netns, as its tap does.
    spawn.netns_path = config.network.netns_path;
    spawn.cgroup_procs = cgroup_procs;
    if (plan.tap_fd >= 0) spawn.pass_fds.push_back(plan.tap_fd);
    spawn.stdout_path = state_dir + "/qemu.log";
    spawn.stderr_path = state_dir + "/qemu.log";
    if (vhost) spawn.pass_fds.push_back(vhost.get());
    spawn.pass_fds.push_back(console_qemu.get());
    spawn.pass_fds.insert(spawn.pass_fds.end(), mode.pass_fds.begin(), mode.pass_fds.end());
    HULL_LOG_DEBUG("VM {}: starting {}", config.id, [&] {
      std::string line;
      for (const auto& a : spawn.argv) line += (line.empty() ? "" : " ") + a;
      return line;
    }());
    auto launched_at = Clock::now();
    HULL_TRY(Child child, Child::Spawn(spawn), "launch VM `" + config.id + "`");
    vhost.reset();  // QEMU holds its own copy now
    console_qemu.reset();

    auto vm = std::make_unique<QemuVm>(config, state_dir, std::move(child), launched_at,
                                       plan.vsock_cid, std::move(virtiofsd),
                                       std::move(console_host), std::move(console_log));
    remove_dir.Dismiss();  // the VM owns the directory from here on
    HULL_CHECK_OK(vm->Attach(Clock::now() + std::chrono::seconds(10)),
                  "launch VM `" + config.id + "`");
    return vm;
  }
};

}  // namespace

std::unique_ptr<Hypervisor> MakeQemuHypervisor() { return std::make_unique<QemuHypervisor>(); }

Result<nlohmann::json> ExecuteQmp(Vm& vm, std::string_view command, const nlohmann::json& arguments,
                                  milliseconds timeout) {
  auto* qemu_vm = dynamic_cast<QemuVm*>(&vm);
  if (qemu_vm == nullptr) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "VM `" + vm.id() + "` is not run by the QEMU backend");
  }
  return qemu_vm->ExecuteQmp(command, arguments, timeout);
}

}  // namespace hull::qemu
