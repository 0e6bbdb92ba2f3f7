#include "qemu/qemu_hypervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "hull/core/ids.h"
#include "hull/core/log.h"
#include "hull/core/syscall.h"
#include "hull/hypervisor/kernel_cmdline.h"
#include "qemu/qemu_argv.h"
#include "qemu/qmp.h"

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

Status ValidateVmConfig(const VmConfig& config) {
  HULL_CHECK_OK(ValidateId("sandbox", config.id), "VM config");
  auto bad = [](std::string message) { return MakeError(ErrorCode::kInvalidArgument, std::move(message)); };
  if (!IsExecutable(config.hypervisor_path)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "hypervisor binary `" + config.hypervisor_path + "` is missing or not executable");
  }
  if (config.kernel.empty() || !PathExists(config.kernel)) {
    return MakeError(ErrorCode::kFailedPrecondition, "guest kernel `" + config.kernel + "` not found");
  }
  if (config.initrd.empty() || !PathExists(config.initrd)) {
    return MakeError(ErrorCode::kFailedPrecondition, "guest initrd `" + config.initrd + "` not found");
  }
  if (config.vcpus < 1 || config.vcpus > 255) {
    return bad("vcpus must be between 1 and 255, got " + std::to_string(config.vcpus));
  }
  if (config.memory_mib < 64 || config.memory_mib > (1u << 20)) {
    return bad("memory must be between 64 MiB and 1 TiB, got " + std::to_string(config.memory_mib) + " MiB");
  }
  if (config.run_dir.empty() || config.run_dir[0] != '/') return bad("run dir must be an absolute path");
  for (const std::string* field : {&config.machine, &config.extra_kernel_params, &config.agent_log_level}) {
    for (char c : *field) {
      if (c == '\n' || c == '\0' || c == ',') {
        if (c == ',' && field == &config.extra_kernel_params) continue;
        return bad("VM setting `" + *field + "` contains a forbidden character");
      }
    }
  }
  return Ok();
}

// Picks a free guest CID by asking vhost-vsock to take it: the kernel refuses
// one that another VM holds, so the probe and the reservation are one step.
Result<std::pair<UniqueFd, uint32_t>> ReserveVsockCid() {
  UniqueFd fd(::open("/dev/vhost-vsock", O_RDWR | O_CLOEXEC));
  if (!fd) return ErrnoError("open /dev/vhost-vsock (the vsock transport needs the vhost_vsock module)");
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

class QemuVm final : public Vm {
 public:
  QemuVm(VmConfig config, std::string state_dir, Child child, Clock::time_point launched_at, uint32_t cid)
      : config_(std::move(config)),
        state_dir_(std::move(state_dir)),
        child_(std::move(child)),
        launched_at_(launched_at),
        vsock_cid_(cid),
        wake_(::eventfd(0, EFD_CLOEXEC)) {}

  ~QemuVm() override {
    if (!stopped_) Stop(milliseconds(0));
  }

  // Connects QMP and starts watching the process. On error the caller drops
  // the VM, whose destructor kills QEMU and removes the state directory.
  Status Attach(Clock::time_point deadline) {
    while (true) {
      auto exited = child_.WaitFor(milliseconds(0));
      if (exited && *exited) {
        std::string why = "QEMU " + (*exited)->ToString();
        std::string log = Tail(qemu_log_path());
        if (!log.empty()) why += ": " + log;
        return MakeError(ErrorCode::kFailedPrecondition, why);
      }
      auto qmp = QmpClient::Connect(qmp_socket_path(), milliseconds(200));
      if (qmp) {
        qmp_ = std::move(*qmp);
        break;
      }
      if (Clock::now() > deadline) return std::move(qmp).error().Wrap("connect to QMP");
    }
    qmp_->SetEventHandler([this](const QmpEvent& event) { OnEvent(event); });
    monitor_ = std::thread([this] { Monitor(); });
    return Ok();
  }

  const std::string& id() const override { return config_.id; }
  const std::string& state_dir() const override { return state_dir_; }
  std::string console_log_path() const override { return state_dir_ + "/console.log"; }
  pid_t pid() const override { return child_.pid(); }
  Clock::time_point launched_at() const override { return launched_at_; }

  Result<UniqueFd> ConnectAgent(Clock::time_point deadline) override {
    if (config_.transport == TransportKind::kSerial) {
      // Connect only once the guest has opened its end: bytes sent before
      // that would sit in QEMU's socket and confuse the next connection.
      // After a host connection ends, the agent closes and reopens its port;
      // wait for that reopen too, or the new connection could be spliced
      // onto the agent's previous session before it noticed the old one end.
      std::unique_lock lock(mu_);
      auto ready = [&] { return (agent_port_open_ && agent_port_opens_ > agent_port_opens_used_) || exit_; };
      if (!changed_.wait_until(lock, deadline, ready)) {
        return MakeError(ErrorCode::kDeadlineExceeded,
                         "the guest agent did not open its virtio-serial port in time");
      }
      if (exit_) return DeadError();
      agent_port_opens_used_ = agent_port_opens_;
      lock.unlock();
      return ConnectUnix(agent_socket_path());
    }
    while (true) {
      auto fd = ConnectVsock(vsock_cid_, kAgentVsockPort);
      if (fd) return fd;
      std::unique_lock lock(mu_);
      if (exit_) return DeadError();
      if (Clock::now() + milliseconds(50) > deadline) return std::move(fd).error().Wrap("connect to the agent");
      changed_.wait_for(lock, milliseconds(50));
    }
  }

  bool running() override {
    std::lock_guard lock(mu_);
    return !exit_.has_value();
  }

  std::optional<VmExit> exit() override {
    std::lock_guard lock(mu_);
    return exit_;
  }

  Result<std::optional<VmExit>> WaitForExit(milliseconds timeout) override {
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, timeout, [&] { return exit_.has_value(); });
    return exit_;
  }

  void ExpectExit() override {
    std::lock_guard lock(mu_);
    stop_requested_ = true;
  }

  VmExit Stop(milliseconds grace) override {
    std::unique_lock stop_lock(stop_mu_);
    if (stopped_) return exit_.value_or(VmExit{});
    {
      std::unique_lock lock(mu_);
      stop_requested_ = true;
      changed_.wait_for(lock, grace, [&] { return exit_.has_value(); });
    }
    if (running() && qmp_) {
      if (auto quit = qmp_->Quit(milliseconds(2000)); !quit) {
        HULL_LOG_DEBUG("VM {}: QMP quit: {}", config_.id, quit.error().ToString());
      }
      std::unique_lock lock(mu_);
      changed_.wait_for(lock, milliseconds(3000), [&] { return exit_.has_value(); });
    }
    if (running()) {
      HULL_LOG_WARN("VM {}: QEMU did not exit, killing it", config_.id);
      (void)child_.Signal(SIGKILL);
    }
    if (monitor_.joinable()) {
      monitor_.join();
    } else {
      // Attach never ran (or failed early): reap here.
      auto status = child_.reaped() ? *child_.exit_status() : child_.Terminate(milliseconds(0));
      std::lock_guard lock(mu_);
      if (!exit_) exit_ = VmExit{status, status.ToString(), true};
    }
    qmp_.reset();
    if (auto removed = RemoveTree(state_dir_); !removed) {
      HULL_LOG_WARN("VM {}: {}", config_.id, removed.error().ToString());
    }
    stopped_ = true;
    std::lock_guard lock(mu_);
    return *exit_;
  }

 private:
  std::string qmp_socket_path() const { return state_dir_ + "/qmp.sock"; }
  std::string agent_socket_path() const { return state_dir_ + "/agent.sock"; }
  std::string qemu_log_path() const { return state_dir_ + "/qemu.log"; }

  Unexpected DeadError() const {
    return MakeError(ErrorCode::kUnavailable, "VM `" + config_.id + "` is not running: " + exit_->reason);
  }

  void OnEvent(const QmpEvent& event) {
    std::lock_guard lock(mu_);
    if (event.name == "VSERPORT_CHANGE" && event.data.is_object()) {
      auto id = event.data.find("id");
      auto open = event.data.find("open");
      if (id != event.data.end() && id->is_string() && *id == kAgentPortId && open != event.data.end() &&
          open->is_boolean()) {
        agent_port_open_ = open->get<bool>();
        if (agent_port_open_) ++agent_port_opens_;
      }
    } else if (event.name == "SHUTDOWN" && event.data.is_object()) {
      auto reason = event.data.find("reason");
      if (reason != event.data.end() && reason->is_string()) shutdown_reason_ = reason->get<std::string>();
    }
    changed_.notify_all();
  }

  // Waits for QEMU to exit (or for Stop), then records why it did.
  void Monitor() {
    pollfd fds[1] = {{child_.pidfd(), POLLIN, 0}};
    while (RetryEintr([&] { return ::poll(fds, 1, -1); }) < 0) {
    }
    auto status = child_.Wait();
    ExitStatus process = status ? *status : ExitStatus{0, SIGKILL};
    std::lock_guard lock(mu_);
    VmExit exit{process, "", stop_requested_};
    if (shutdown_reason_ == "guest-shutdown") {
      exit.reason = "the guest powered off";
    } else if (shutdown_reason_ == "guest-reset" || shutdown_reason_ == "guest-panic") {
      exit.reason = "the guest rebooted or panicked (see " + console_log_path() + ")";
    } else if (shutdown_reason_ == "host-qmp-quit") {
      exit.reason = "QEMU quit on request";
    } else if (process.signal != 0) {
      exit.reason = "QEMU was " + process.ToString();
    } else {
      exit.reason = "QEMU " + process.ToString();
      std::string log = Tail(qemu_log_path(), 500);
      if (!log.empty()) exit.reason += ": " + log;
    }
    if (stop_requested_) {
      HULL_LOG_DEBUG("VM {} stopped: {}", config_.id, exit.reason);
    } else {
      HULL_LOG_WARN("VM {} stopped unexpectedly: {}", config_.id, exit.reason);
    }
    exit_ = exit;
    agent_port_open_ = false;
    changed_.notify_all();
  }

  VmConfig config_;
  std::string state_dir_;
  Child child_;
  Clock::time_point launched_at_;
  uint32_t vsock_cid_;
  UniqueFd wake_;
  std::unique_ptr<QmpClient> qmp_;
  std::thread monitor_;

  std::mutex stop_mu_;
  bool stopped_ = false;

  std::mutex mu_;
  std::condition_variable changed_;
  bool agent_port_open_ = false;
  uint64_t agent_port_opens_ = 0;       // how often the guest opened the port
  uint64_t agent_port_opens_used_ = 0;  // the open the last connection used
  bool stop_requested_ = false;
  std::string shutdown_reason_;
  std::optional<VmExit> exit_;
};

class QemuHypervisor final : public Hypervisor {
 public:
  std::string_view name() const override { return "qemu"; }

  Result<std::unique_ptr<Vm>> Launch(const VmConfig& config) override {
    HULL_CHECK_OK(ValidateVmConfig(config), "launch VM");
    HULL_CHECK_OK(MakeDirs(config.run_dir, 0711), "launch VM `" + config.id + "`");
    std::string state_dir = config.run_dir + "/" + config.id;
    if (::mkdir(state_dir.c_str(), 0700) < 0) {
      if (errno == EEXIST) {
        return MakeError(ErrorCode::kAlreadyExists,
                         "launch VM `" + config.id + "`: state directory " + state_dir + " already exists");
      }
      return ErrnoError("launch VM `" + config.id + "`: create " + state_dir);
    }
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
    plan.kernel_cmdline = BuildKernelCmdline({config.transport, config.agent_log_level,
                                              config.agent_debug, config.extra_kernel_params});
    plan.qmp_socket = state_dir + "/qmp.sock";
    plan.console_log = state_dir + "/console.log";
    plan.transport = config.transport;
    plan.agent_socket = state_dir + "/agent.sock";
    plan.seccomp_sandbox = config.seccomp_sandbox;
    UniqueFd vhost;
    if (config.transport == TransportKind::kVsock) {
      HULL_TRY(auto reserved, ReserveVsockCid(), "launch VM `" + config.id + "`");
      vhost = std::move(reserved.first);
      plan.vsock_cid = reserved.second;
      plan.vhost_fd = vhost.get();
    }

    SpawnOptions spawn;
    spawn.argv = BuildQemuArgv(plan);
    spawn.stdout_path = state_dir + "/qemu.log";
    spawn.stderr_path = state_dir + "/qemu.log";
    if (vhost) spawn.pass_fds.push_back(vhost.get());
    HULL_LOG_DEBUG("VM {}: starting {}", config.id, [&] {
      std::string line;
      for (const auto& a : spawn.argv) line += (line.empty() ? "" : " ") + a;
      return line;
    }());
    auto launched_at = Clock::now();
    HULL_TRY(Child child, Child::Spawn(spawn), "launch VM `" + config.id + "`");
    vhost.reset();  // QEMU holds its own copy now

    auto vm = std::make_unique<QemuVm>(config, state_dir, std::move(child), launched_at, plan.vsock_cid);
    remove_dir.Dismiss();  // the VM owns the directory from here on
    HULL_CHECK_OK(vm->Attach(Clock::now() + std::chrono::seconds(10)), "launch VM `" + config.id + "`");
    return std::unique_ptr<Vm>(std::move(vm));
  }
};

}  // namespace

std::unique_ptr<Hypervisor> MakeQemuHypervisor() { return std::make_unique<QemuHypervisor>(); }

}  // namespace hull::qemu
