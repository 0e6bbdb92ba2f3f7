#include <signal.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "commands.h"
#include "hull/core/log.h"
#include "hull/core/syscall.h"
#include "hull/core/thread.h"
#include "hull/hypervisor/hypervisor.h"
#include "hull/sandbox/grpc_agent.h"
#include "hull/sandbox/sandbox.h"

namespace hull::hullctl {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Stops the VM if hullctl gets SIGINT or SIGTERM, so an interrupted ping
// leaves nothing behind. Signals are blocked in every thread and taken by
// one waiter thread.
class InterruptGuard {
 public:
  InterruptGuard() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    waiter_ = SpawnThread("signals", [this, set] {
      int sig = 0;
      sigwait(&set, &sig);
      std::lock_guard lock(mu_);
      if (sig == SIGUSR1) return;  // our own wake-up at destruction
      interrupted_ = sig;
      if (vm_ != nullptr) vm_->Stop(milliseconds(0));
    });
  }
  ~InterruptGuard() {
    {
      std::lock_guard lock(mu_);
      vm_ = nullptr;
    }
    pthread_kill(waiter_.native_handle(), SIGUSR1);
    waiter_.join();
  }
  void Watch(Vm* vm) {
    std::lock_guard lock(mu_);
    vm_ = vm;
  }
  int interrupted() {
    std::lock_guard lock(mu_);
    return interrupted_;
  }

 private:
  std::mutex mu_;
  Vm* vm_ = nullptr;
  int interrupted_ = 0;
  std::thread waiter_;
};

std::string ConsoleTail(const Vm& vm) {
  auto text = ReadFile(vm.console_log_path(), 16 << 20);
  if (!text) return "";
  std::string_view view = *text;
  if (view.size() > 3000) view = view.substr(view.size() - 3000);
  return std::string(view);
}

}  // namespace

int RunVmPing(const PingOptions& options) {
  InterruptGuard guard;

  auto fail = [](const Error& error) {
    std::fprintf(stderr, "hullctl vm ping: %s\n", error.ToString().c_str());
    return 1;
  };
  auto config = LoadConfig(options.config_path);
  if (!config) return fail(config.error());
  if (options.hypervisor) config->hypervisor.backend = *options.hypervisor;
  if (options.transport) config->agent.transport = *options.transport;
  if (options.accel) config->hypervisor.accel = *options.accel;
  if (options.memory_mib) config->hypervisor.memory_mib = *options.memory_mib;
  if (options.cpus) config->hypervisor.vcpus = *options.cpus;
  if (options.kernel) config->hypervisor.kernel = *options.kernel;
  if (options.initrd) config->hypervisor.initrd = *options.initrd;

  auto vm_config = VmConfigFromConfig(*config, "ping-" + RandomHex(6));
  if (!vm_config) return fail(vm_config.error());
  auto claim = RunClaim::Take(vm_config->run_dir, vm_config->id);  // outlives the VM below
  if (!claim) return fail(claim.error());
  auto hypervisor = MakeHypervisor(config->hypervisor.backend);
  if (!hypervisor) return fail(hypervisor.error());

  if (options.from_template) {
    auto found = sandbox::EnsureTemplate(*config, *vm_config, **hypervisor);
    if (!found) return fail(found.error());
    vm_config->clone_of = found->dir;
  }
  const auto launch_called = Clock::now();
  auto vm = (*hypervisor)->Launch(*vm_config);
  if (!vm) return fail(vm.error());
  guard.Watch(vm->get());
  auto finish = [&](int code) {
    guard.Watch(nullptr);
    if (options.keep_console) std::fputs(ConsoleTail(**vm).c_str(), stderr);
    (*vm)->Stop(milliseconds(config->hypervisor.stop_grace_seconds * 1000));
    if (int sig = guard.interrupted(); sig != 0) {
      std::fprintf(stderr, "hullctl vm ping: interrupted by signal %d; VM stopped\n", sig);
      return 128 + sig;
    }
    return code;
  };
  auto fail_with_console = [&](const Error& error) {
    std::string console = ConsoleTail(**vm);
    std::fprintf(stderr, "hullctl vm ping: %s\n", error.ToString().c_str());
    if (!console.empty() && guard.interrupted() == 0) {
      std::fprintf(stderr, "--- last guest console output ---\n%s\n---\n", console.c_str());
    }
    return finish(1);
  };

  auto deadline = (*vm)->launched_at() + std::chrono::seconds(config->agent.boot_timeout_seconds);
  if (options.until_poweroff) {
    (*vm)->ExpectExit();
    auto exited =
        (*vm)->WaitForExit(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
    if (!exited || !*exited) {
      return fail_with_console(
          Error(ErrorCode::kDeadlineExceeded, "the guest did not power off in time"));
    }
    auto elapsed =
        std::chrono::duration_cast<milliseconds>(Clock::now() - (*vm)->launched_at()).count();
    if (options.json) {
      std::printf("{\"id\": \"%s\", \"poweroff_ms\": %lld, \"reason\": %s}\n", (*vm)->id().c_str(),
                  static_cast<long long>(elapsed),
                  nlohmann::json((*exited)->reason).dump().c_str());
    } else {
      std::printf("powered off: %lld ms from QEMU launch (%s)\n", static_cast<long long>(elapsed),
                  (*exited)->reason.c_str());
    }
    return finish(0);
  }
  Vm* raw_vm = vm->get();
  auto client =
      sandbox::GrpcAgent::Connect([raw_vm](Clock::time_point d) { return raw_vm->ConnectAgent(d); },
                                  deadline, sandbox::AgentTimeoutsFromConfig(*config));
  if (!client) return fail_with_console(client.error());
  // From the Launch call: a clone copies its template's RAM before QEMU starts.
  auto ready = Clock::now() - launch_called;
  auto details = (*client)->GetGuestDetails();
  if (!details) return fail_with_console(details.error());

  auto ready_ms = std::chrono::duration_cast<milliseconds>(ready).count();
  const sandbox::GuestDetails& startup = *details;
  if (options.json) {
    nlohmann::json out = {
        {"id", (*vm)->id()},
        {"accel", std::string(AccelName(vm_config->accel))},
        {"transport", details->transport},
        {"ready_ms", ready_ms},
        {"from_template", options.from_template},
        {"kernel_release", details->kernel_release},
        {"machine", details->machine},
        {"online_cpus", details->online_cpus},
        {"memory_total_bytes", details->memory_total_bytes},
        {"agent_version", details->agent_version},
        {"cgroup_mode", details->cgroup_mode},
        {"loaded_modules", details->loaded_modules},
        {"startup_us",
         {{"agent_start", startup.agent_start_us},
          {"mounts_done", startup.mounts_done_us},
          {"modules_done", startup.modules_done_us},
          {"network_done", startup.network_done_us},
          {"listening", startup.listening_us},
          {"first_request", startup.first_request_us}}},
    };
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("guest:     Linux %s %s, %u vCPU, %llu MiB memory\n",
                details->kernel_release.c_str(), details->machine.c_str(), details->online_cpus,
                static_cast<unsigned long long>(details->memory_total_bytes >> 20));
    std::printf("agent:     hull-agent %s over %s, cgroup %s, %d kernel modules loaded\n",
                details->agent_version.c_str(), details->transport.c_str(),
                details->cgroup_mode.c_str(), static_cast<int>(details->loaded_modules.size()));
    std::printf(
        "in guest:  kernel start -> agent %.0f ms, agent start -> serving %.0f ms (modules %.0f "
        "ms)\n",
        startup.agent_start_us / 1000.0, (startup.listening_us - startup.agent_start_us) / 1000.0,
        (startup.modules_done_us - startup.mounts_done_us) / 1000.0);
    std::printf("ready:     %lld ms from QEMU launch to the agent's first answer (%s)\n",
                static_cast<long long>(ready_ms), std::string(AccelName(vm_config->accel)).c_str());
  }

  (*vm)->ExpectExit();
  auto shutdown = (*client)->Shutdown(false);
  if (!shutdown) return fail_with_console(shutdown.error());
  client->reset();
  // Synced and answered: no need to wait for the kernel's power-off (a
  // clone's never finishes on QEMU 7.2; see Sandbox::Close).
  if (*shutdown) {
    (*vm)->Stop(milliseconds(0));
    return finish(0);
  }
  auto exited = (*vm)->WaitForExit(milliseconds(config->hypervisor.stop_grace_seconds * 1000));
  if (exited && *exited) {
    HULL_LOG_DEBUG("VM {} stopped: {}", (*vm)->id(), (*exited)->reason);
  } else {
    std::fprintf(stderr,
                 "hullctl vm ping: the guest did not power off within %u s; stopping QEMU\n",
                 config->hypervisor.stop_grace_seconds);
  }
  return finish(0);
}

}  // namespace hull::hullctl
