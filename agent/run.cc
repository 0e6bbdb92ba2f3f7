#include "run.h"

#include <linux/magic.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "agent_server.h"
#include "guest_init.h"
#include "hull/core/log.h"
#include "hull/core/syscall.h"
#include "hull/core/thread.h"
#include "options.h"

namespace hull::agent {
namespace {

constexpr char kModuleList[] = "/lib/modules/hull-modules.list";
// Where the tmpfs that becomes the root is filled, on the initramfs.
constexpr char kNewRootStaging[] = "/newroot";
[[noreturn]] void FailAsInit(const Error& error) {
  HULL_LOG_ERROR("fatal: {}", error.ToString());
  fprintf(stderr, "hull-agent: fatal: %s\n", error.ToString().c_str());
  (void)PowerOff();
  _exit(1);
}

// The port appears once virtio_console has probed the device, which may lag
// the module load by a little.
Result<std::string> WaitForSerialPort() {
  for (int attempt = 0;; ++attempt) {
    auto path = FindVirtioPort(kAgentSerialPortName);
    if (path || attempt >= 200) return path;
    usleep(10 * 1000);
  }
}

// The kernel starts /init on its initial rootfs, which pivot_root(2) refuses
// to move, and leaving it as the root of every container's mount namespace
// would put the agent's files and mounts under each container. So the first
// run moves the root onto a tmpfs and execs /init again from there: the exec
// also drops the last mappings of the deleted initramfs files, freeing them.
void SwitchRootAndReexec(const std::string& executable, uint64_t start_us) {
  Status switched = SwitchRootOffInitramfs(kNewRootStaging);
  if (!switched) FailAsInit(std::move(switched).error().Wrap("move the root off the initramfs"));
  std::string flag = std::string(kSwitchedRootFlag) + std::to_string(start_us);
  std::string program = executable;
  char* args[] = {program.data(), flag.data(), nullptr};
  ::execv(program.c_str(), args);
  FailAsInit(Error::FromErrno(errno, "exec `" + executable + "` on the new root"));
}

}  // namespace

void RunAsInit(const InitOptions& init) {
  const uint64_t started_us = BootTimeMicros();
  // Before anything else: nothing may be mounted or running on the old root.
  // The root decides, not the flag, which only carries the start time.
  auto initramfs = RootIsInitramfs();
  if (!initramfs) FailAsInit(std::move(initramfs).error().Wrap("inspect the root"));
  if (*initramfs) SwitchRootAndReexec(init.executable, started_us);
  const std::optional<uint64_t> first_start_us = init.switched_root_start_us;

  AgentState state;
  state.agent_start_us = first_start_us.value_or(started_us);
  // Every thread inherits this mask, so only the reaper sees SIGCHLD.
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &chld, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Status mounted = MountBaseFilesystems();
  state.mounts_done_us = BootTimeMicros();
  auto cmdline = ReadFile("/proc/cmdline", 1 << 16);
  auto options = cmdline ? ParseKernelCmdline(*cmdline) : Result<AgentOptions>(cmdline.error());
  (void)InitLogging("hull-agent", options ? options->log_level : "info");
  if (!mounted) FailAsInit(mounted.error());
  if (!options) FailAsInit(options.error());
  HULL_LOG_INFO("hull-agent {} starting as init, transport {}", kAgentVersion,
                TransportName(options->transport));
  if (struct statfs root{}; ::statfs("/", &root) == 0 && root.f_type == EROFS_SUPER_MAGIC_V1) {
    HULL_LOG_INFO("running on the shared read-only guest root (erofs, mounted by hull-init)");
  }
  if (first_start_us) {
    HULL_LOG_INFO("root moved off the initramfs onto a tmpfs in {} ms",
                  (started_us - state.agent_start_us) / 1000);
  }

  auto modules = LoadModules(kModuleList);
  if (!modules) FailAsInit(modules.error());
  state.loaded_modules = *modules;
  state.modules_done_us = BootTimeMicros();
  if (auto up = SetLinkUp("lo"); !up) HULL_LOG_WARN("{}", up.error().ToString());
  state.network_done_us = BootTimeMicros();

  std::unique_ptr<AgentListener> listener;
  state.transport = std::string(TransportName(options->transport));
  if (options->transport == TransportKind::kSerial) {
    auto port = WaitForSerialPort();
    if (!port) FailAsInit(port.error());
    listener = MakeSerialPortListener(*port);
  } else {
    auto fd = ListenVsock(options->vsock_port);
    if (!fd) FailAsInit(fd.error());
    listener = MakeVsockListener(std::move(*fd));
  }

  AgentServer server(&state, engine::EngineOptions{}, [] {
    HULL_LOG_INFO("powering off");
    if (auto off = PowerOff(); !off) HULL_LOG_ERROR("{}", off.error().ToString());
  });
  if (auto started = server.Start(); !started) FailAsInit(started.error());
  state.listening_us = BootTimeMicros();
  HULL_LOG_INFO("serving after {} ms of boot ({} ms in the agent)", state.listening_us / 1000,
                (state.listening_us - state.agent_start_us) / 1000);
  std::thread serve = SpawnThread("agent-serve", [&] { server.Serve(*listener); });
  serve.detach();  // PID 1 never returns; the thread lives as long as the VM
  RunReaper([&server](pid_t pid, int status) { server.engine().OnChildExit(pid, status); });
}

int RunAsProcess(const ProcessOptions& options) {
  if (auto logging = InitLogging("hull-agent", options.log_level); !logging) {
    fprintf(stderr, "hull-agent: %s\n", logging.error().ToString().c_str());
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  // Outside a VM the agent is not PID 1: become the reaper of what it starts
  // (exec'd processes are reparented to it), and reap on one thread with
  // SIGCHLD blocked everywhere, as in the guest.
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &chld, nullptr);
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  auto fd = ListenUnix(options.listen_unix);
  if (!fd) {
    fprintf(stderr, "hull-agent: %s\n", fd.error().ToString().c_str());
    return 1;
  }
  auto listener = MakeSocketListener(std::move(*fd));
  AgentState state;
  state.transport = "unix";
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  engine::EngineOptions engine_options;
  if (!options.cgroup_root.empty()) engine_options.cgroup_root = options.cgroup_root;
  AgentServer server(&state, engine_options, [&] {
    std::lock_guard lock(mu);
    stop = true;
    cv.notify_all();
  });
  if (auto started = server.Start(); !started) {
    fprintf(stderr, "hull-agent: %s\n", started.error().ToString().c_str());
    return 1;
  }
  std::thread serve = SpawnThread("agent-serve", [&] { server.Serve(*listener); });
  std::thread reaper = SpawnThread("agent-reaper", [&server] {
    RunReaper([&server](pid_t pid, int status) { server.engine().OnChildExit(pid, status); });
  });
  reaper.detach();  // blocked in sigwaitinfo until the process exits
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return stop; });
  }
  listener->Interrupt();
  serve.join();
  server.Stop();
  ::unlink(options.listen_unix.c_str());
  return 0;
}

}  // namespace hull::agent
