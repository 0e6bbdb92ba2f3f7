// hull-agent: PID 1 of a hull guest. Sets the guest up, then serves the agent
// API on the transport named by the kernel command line.
//
// Outside a VM (for tests) it runs as an ordinary process:
//   hull-agent --listen-unix PATH [--log-level LEVEL]
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <charconv>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <string_view>
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
// Passed to /init when it is exec'd again on the new root, with the boot
// time (CLOCK_BOOTTIME us) at which the first run started: the start-up
// timings count from there.
constexpr std::string_view kSwitchedRootFlag = "--switched-root=";

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

// The boot time carried by --switched-root; nullopt without the flag (or
// with a malformed one).
std::optional<uint64_t> SwitchedRootStart(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (!arg.starts_with(kSwitchedRootFlag)) continue;
    arg.remove_prefix(kSwitchedRootFlag.size());
    uint64_t start_us = 0;
    auto [end, error] = std::from_chars(arg.data(), arg.data() + arg.size(), start_us);
    if (error == std::errc() && end == arg.data() + arg.size()) return start_us;
  }
  return std::nullopt;
}

// The kernel starts /init on its initial rootfs, which pivot_root(2) refuses
// to move, and leaving it as the root of every container's mount namespace
// would put the agent's files and mounts under each container. So the first
// run moves the root onto a tmpfs and execs /init again from there: the exec
// also drops the last mappings of the deleted initramfs files, freeing them.
void SwitchRootAndReexec(char** argv, uint64_t start_us) {
  Status switched = SwitchRootOffInitramfs(kNewRootStaging);
  if (!switched) FailAsInit(std::move(switched).error().Wrap("move the root off the initramfs"));
  std::string flag = std::string(kSwitchedRootFlag) + std::to_string(start_us);
  char* args[] = {argv[0], flag.data(), nullptr};
  ::execv(argv[0], args);
  FailAsInit(Error::FromErrno(errno, std::string("exec `") + argv[0] + "` on the new root"));
}

int RunAsInit(int argc, char** argv) {
  const uint64_t started_us = BootTimeMicros();
  // Before anything else: nothing may be mounted or running on the old root.
  // The root decides, not the flag, which only carries the start time.
  auto initramfs = RootIsInitramfs();
  if (!initramfs) FailAsInit(std::move(initramfs).error().Wrap("inspect the root"));
  if (*initramfs) SwitchRootAndReexec(argv, started_us);
  std::optional<uint64_t> first_start_us = SwitchedRootStart(argc, argv);

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
    listener = MakeSocketListener(std::move(*fd));
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

int RunAsProcess(int argc, char** argv) {
  std::string unix_path;
  std::string level;
  std::string cgroup_root;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--listen-unix" && i + 1 < argc) {
      unix_path = argv[++i];
    } else if (arg == "--cgroup-root" && i + 1 < argc) {
      cgroup_root = argv[++i];
    } else if (arg == "--log-level" && i + 1 < argc) {
      level = argv[++i];
    } else {
      fprintf(stderr,
              "usage: hull-agent --listen-unix PATH [--cgroup-root DIR] [--log-level LEVEL]\n"
              "  (as PID 1 in a guest it takes its options from the kernel command line)\n");
      return 2;
    }
  }
  if (unix_path.empty()) {
    fprintf(stderr, "hull-agent: --listen-unix PATH is required outside a guest\n");
    return 2;
  }
  if (auto logging = InitLogging("hull-agent", level); !logging) {
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
  auto fd = ListenUnix(unix_path);
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
  if (!cgroup_root.empty()) engine_options.cgroup_root = cgroup_root;
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
  ::unlink(unix_path.c_str());
  return 0;
}

}  // namespace
}  // namespace hull::agent

int main(int argc, char** argv) {
  if (getpid() == 1) return hull::agent::RunAsInit(argc, argv);
  return hull::agent::RunAsProcess(argc, argv);
}
