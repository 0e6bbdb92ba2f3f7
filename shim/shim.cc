#include "shim.h"

#include <dirent.h>
#include <fcntl.h>
#include <google/protobuf/any.pb.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "containerd/runtimeoptions/v1/api.pb.h"
#include "containerd/task/v2/shim.pb.h"
#include "events.h"
#include "hull/core/config.h"
#include "hull/core/ids.h"
#include "hull/core/log.h"
#include "hull/core/oci_spec.h"
#include "hull/core/syscall.h"
#include "hull/core/thread.h"
#include "hull/core/transport.h"
#include "hull/sandbox/orphans.h"
#include "mounts.h"
#include "task_service.h"
#include "ttrpc/ttrpc.h"

namespace hull::shim {

namespace {

constexpr char kSandboxIdAnnotation[] = "io.kubernetes.cri.sandbox-id";
constexpr char kOptionsTypeUrl[] = "runtimeoptions.v1.Options";
// The listening socket `start` hands to `serve`.
constexpr int kListenerFd = 3;

std::string BundleDir(const ShimFlags& flags) {
  if (!flags.bundle.empty()) return flags.bundle;
  std::error_code ec;
  return std::filesystem::current_path(ec).string();
}

int Fail(const Error& error) {
  // start: containerd shows this text in its error ("start failed: ...").
  std::fprintf(stderr, "containerd-shim-hull-v2: %s\n", error.ToString().c_str());
  return 1;
}

struct SandboxPaths {
  std::string sandbox_id;
  std::string state_dir;
  std::string socket;
};

Result<SandboxPaths> ResolveSandbox(const Config& config, const std::string& bundle,
                                    const std::string& id) {
  SandboxPaths paths;
  HULL_TRY(paths.sandbox_id, SandboxIdForBundle(bundle, id), "");
  paths.state_dir = config.run_dir + "/" + paths.sandbox_id;
  paths.socket = paths.state_dir + "/" + kShimSocketName;
  if (paths.socket.size() > kSocketPathLimit) {
    return MakeError(ErrorCode::kInvalidArgument, "the shim socket path `" + paths.socket +
                                                      "` is longer than " +
                                                      std::to_string(kSocketPathLimit) +
                                                      " bytes: choose a shorter runtime.run_dir");
  }
  return paths;
}

Status WriteBundleFiles(const std::string& bundle, const SandboxPaths& paths) {
  // containerd reads `address` verbatim: no newline.
  HULL_CHECK_OK(WriteFile(bundle + "/address", "unix://" + paths.socket, 0644),
                "write the bundle's address file");
  HULL_CHECK_OK(WriteFile(bundle + "/" + kBundleSandboxFile, paths.state_dir, 0644),
                "write the bundle's sandbox file");
  return Ok();
}

}  // namespace

Result<std::string> SandboxIdForBundle(const std::string& bundle, const std::string& container_id) {
  HULL_CHECK_OK(ValidateId("container", container_id), "");
  HULL_TRY(std::string text, ReadFile(bundle + "/config.json", 16 << 20),
           "read the bundle's config.json");
  HULL_TRY(oci::Spec spec, oci::ParseOciSpec(text), bundle + "/config.json");
  std::string sandbox_id = container_id;
  if (auto it = spec.annotations.find(kSandboxIdAnnotation); it != spec.annotations.end())
    sandbox_id = it->second;
  HULL_CHECK_OK(ValidateId("sandbox", sandbox_id), "");
  return sandbox_id;
}

Result<std::string> ConfigPathFromOptions(std::string_view any_bytes) {
  if (any_bytes.empty()) return std::string();
  google::protobuf::Any any;
  if (!any.ParseFromArray(any_bytes.data(), static_cast<int>(any_bytes.size()))) {
    return MakeError(ErrorCode::kInvalidArgument, "runtime options: not a protobuf Any");
  }
  std::string_view type = any.type_url();
  if (type.ends_with(kOptionsTypeUrl) &&
      (type.size() == std::strlen(kOptionsTypeUrl) ||
       type[type.size() - std::strlen(kOptionsTypeUrl) - 1] == '/')) {
    ::runtimeoptions::v1::Options options;
    if (!options.ParseFromString(any.value())) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "runtime options: runtimeoptions.v1.Options does not parse");
    }
    return options.config_path();
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "runtime options of type `" + any.type_url() +
                       "`: hull takes runtimeoptions.v1.Options (ConfigPath)");
}

// --- start ---------------------------------------------------------------------------

int RunStart(const ShimFlags& flags_in) {
  ShimFlags flags = flags_in;
  std::string bundle = BundleDir(flags);
  auto options = ReadAll(0, 1 << 20);
  if (!options) return Fail(options.error().Wrap("read the runtime options"));
  auto config_path = ConfigPathFromOptions(*options);
  if (!config_path) return Fail(config_path.error());
  if (!config_path->empty()) flags.config_path = *config_path;
  auto config = LoadConfig(flags.config_path);
  if (!config) return Fail(config.error());
  auto paths = ResolveSandbox(*config, bundle, flags.id);
  if (!paths) return Fail(paths.error());
  if (auto made = MakeDirs(config->run_dir, 0711); !made)
    return Fail(made.error().Wrap("runtime.run_dir"));
  if (::mkdir(paths->state_dir.c_str(), 0700) < 0 && errno != EEXIST) {
    return Fail(Error::FromErrno(errno, "create the sandbox directory `" + paths->state_dir + "`"));
  }
  // Two starts for one pod take turns.
  UniqueFd lock(
      ::open((paths->state_dir + "/start.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock || ::flock(lock.get(), LOCK_EX) < 0)
    return Fail(Error::FromErrno(errno, "lock the sandbox directory"));

  std::string address = "unix://" + paths->socket;
  // The pod's shim is already up: share it.
  if (auto existing = ConnectUnix(paths->socket); existing) {
    if (auto written = WriteBundleFiles(bundle, *paths); !written) return Fail(written.error());
    std::fputs(address.c_str(), stdout);
    return 0;
  }
  ::unlink(paths->socket.c_str());
  auto listener = ListenUnix(paths->socket);
  if (!listener) return Fail(listener.error().Wrap("listen on the shim socket"));
  ::chmod(paths->socket.c_str(), 0600);

  // argv[0] is the binary's real path, so `ps` and pkill name the server.
  std::error_code ec;
  std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec || self.empty()) self = "/proc/self/exe";
  std::vector<std::string> args = ServeArgs(self, flags);
  if (flags.bundle.empty()) {
    args.insert(args.end() - 1, {"-bundle", bundle});
  }
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  int report[2];
  if (::pipe2(report, O_CLOEXEC) < 0) return Fail(Error::FromErrno(errno, "pipe2"));
  UniqueFd report_read(report[0]), report_write(report[1]);
  UniqueFd null_fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
  pid_t pid = ::fork();
  if (pid < 0) return Fail(Error::FromErrno(errno, "fork the shim server"));
  if (pid == 0) {
    // The server must not hold containerd's pipe (it waits for EOF on it),
    // and must outlive containerd: a session of its own.
    ::setsid();
    if (::dup2(listener->get(), kListenerFd) < 0 || ::dup2(null_fd.get(), 0) < 0 ||
        ::dup2(null_fd.get(), 1) < 0 || ::dup2(null_fd.get(), 2) < 0) {
      int err = errno;
      [[maybe_unused]] auto n = ::write(report_write.get(), &err, sizeof err);
      ::_exit(127);
    }
    ::execv(argv[0], argv.data());
    int err = errno;
    [[maybe_unused]] auto n = ::write(report_write.get(), &err, sizeof err);
    ::_exit(127);
  }
  report_write.reset();
  int child_errno = 0;
  ssize_t n =
      RetryEintr([&] { return ::read(report_read.get(), &child_errno, sizeof child_errno); });
  if (n > 0) {
    ::waitpid(pid, nullptr, 0);
    ::unlink(paths->socket.c_str());
    return Fail(Error::FromErrno(child_errno, "start the shim server"));
  }
  if (auto written = WriteBundleFiles(bundle, *paths); !written) return Fail(written.error());
  std::fputs(address.c_str(), stdout);
  return 0;
}

// --- delete --------------------------------------------------------------------------

int RunDelete(const ShimFlags& flags) {
  std::string bundle = BundleDir(flags);
  (void)InitLogging("containerd-shim-hull-v2", "warn");
  // Everything here is idempotent: containerd runs `delete` after every
  // normal delete too, when there is nothing left to do.
  if (auto unmounted = UnmountAll(bundle + "/rootfs"); !unmounted) {
    std::fprintf(stderr, "%s\n", unmounted.error().ToString().c_str());
  }
  auto state_dir = ReadFile(bundle + "/" + kBundleSandboxFile, 4096);
  if (state_dir && !state_dir->empty() && (*state_dir)[0] == '/' &&
      state_dir->find("/../") == std::string::npos &&
      ValidateId("sandbox", std::filesystem::path(*state_dir).filename().string()) &&
      PathExists(*state_dir)) {
    const std::string& dir = *state_dir;
    if (auto alive = ConnectUnix(dir + "/" + kShimSocketName); !alive) {
      // The shim is gone: its VM, virtiofsd and mounts are orphans.
      for (const auto& problem : sandbox::RemoveOrphanedSandbox(dir))
        std::fprintf(stderr, "%s\n", problem.c_str());
    }
  }
  ::containerd::task::v2::DeleteResponse response;
  response.set_exit_status(128 + SIGKILL);
  SetTimestamp(response.mutable_exited_at(), std::chrono::system_clock::now());
  std::string bytes = response.SerializeAsString();
  std::fwrite(bytes.data(), 1, bytes.size(), stdout);
  return 0;
}

// --- serve ---------------------------------------------------------------------------

int RunServe(const ShimFlags& flags) {
  std::string bundle = BundleDir(flags);
  // dup2 in `start` cleared close-on-exec: the listener must not leak into
  // QEMU or virtiofsd (they would keep a dead shim's socket connectable).
  if (auto cloexec = SetCloexec(kListenerFd); !cloexec) {
    std::fprintf(stderr, "containerd-shim-hull-v2: serve needs the listening socket as fd 3\n");
    return 1;
  }
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  sigaddset(&signals, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // containerd copies <bundle>/log (a FIFO it holds open) into its own log.
  if (UniqueFd log(::open((bundle + "/log").c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC)); log) {
    (void)SetNonBlocking(log.get(), false);
    ::dup2(log.get(), 2);
  }
  auto config = LoadConfig(flags.config_path);
  (void)InitLogging("containerd-shim-hull-v2",
                    flags.debug ? "debug" : (config ? config->log_level : std::string("info")));
  if (!config) {
    HULL_LOG_ERROR("{}", config.error().ToString());
    return 1;
  }
  auto paths = ResolveSandbox(*config, bundle, flags.id);
  if (!paths) {
    HULL_LOG_ERROR("{}", paths.error().ToString());
    return 1;
  }
  HULL_LOG_INFO("shim for sandbox {} serving on {} (pid {})", paths->sandbox_id, paths->socket,
                ::getpid());

  const char* ttrpc_address = std::getenv("TTRPC_ADDRESS");
  int exit_code = 0;
  {
    EventPublisher events(ttrpc_address != nullptr ? ttrpc_address : "", flags.namespace_name);
    ttrpc::Server server;
    std::mutex mu;
    std::condition_variable cv;
    bool stop = false;
    auto request_stop = [&] {
      {
        std::lock_guard lock(mu);
        stop = true;
      }
      cv.notify_all();
    };
    TaskServiceOptions options{*config, paths->sandbox_id, paths->state_dir};
    {
      TaskService service(options, events, request_stop);
      service.Register(server);
      std::thread serving = SpawnThread("ttrpc-serve", [&] {
        if (auto served = server.Serve(UniqueFd(kListenerFd)); !served) {
          HULL_LOG_ERROR("ttrpc server: {}", served.error().ToString());
          exit_code = 1;
        }
        request_stop();
      });
      // Signals: SIGTERM/SIGINT stop the shim (and its VM); SIGCHLD reaps
      // orphans we became the subreaper of.
      std::thread signal_thread = SpawnThread("signals", [&] {
        while (true) {
          int sig = 0;
          sigwait(&signals, &sig);
          if (sig == SIGCHLD) {
            // Children owned by a Child handle are reaped through their
            // pidfds; only re-parented orphans are collected here.
            continue;
          }
          if (sig == SIGUSR1) return;
          HULL_LOG_INFO("signal {}: shutting down", sig);
          request_stop();
        }
      });
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return stop; });
      }
      server.Shutdown();
      serving.join();
      pthread_kill(signal_thread.native_handle(), SIGUSR1);
      signal_thread.join();
      if (service.container_count() > 0)
        HULL_LOG_WARN("stopping with {} containers left", service.container_count());
    }
    events.Flush(std::chrono::seconds(5));
  }
  ::unlink(paths->socket.c_str());
  ::unlink((paths->state_dir + "/start.lock").c_str());
  if (MountPointsUnder(paths->state_dir).empty()) {
    (void)RemoveTree(paths->state_dir);
  } else {
    HULL_LOG_WARN("{} still has mounts; left in place", paths->state_dir);
  }
  HULL_LOG_INFO("shim for sandbox {} exits", paths->sandbox_id);
  return exit_code;
}

}  // namespace hull::shim
