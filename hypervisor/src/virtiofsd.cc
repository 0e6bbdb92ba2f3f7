#include "hull/hypervisor/virtiofsd.h"

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <thread>

#include "hull/core/log.h"
#include "hull/core/sys.h"
#include "hull/core/syscall.h"
#include "hull/core/transport.h"

namespace hull {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Arguments hull owns: passing them through virtiofsd_args would detach
// virtiofsd from the socket, directory or process hull supervises.
constexpr std::string_view kManagedArgs[] = {"--fd", "--socket-path", "--daemonize", "source="};

std::string Tail(const std::string& path, size_t max_bytes) {
  auto text = ReadFile(path, 16 << 20);
  if (!text || text->empty()) return "";
  std::string_view view = *text;
  if (view.size() > max_bytes) {
    view = view.substr(view.size() - max_bytes);
    // Start at a line boundary when there is one.
    if (auto newline = view.find('\n'); newline != std::string_view::npos)
      view = view.substr(newline + 1);
  }
  while (!view.empty() && (view.back() == '\n' || view.back() == '\r')) view.remove_suffix(1);
  return std::string(view);
}

Status ValidateOptions(const VirtiofsdOptions& options) {
  auto invalid = [](std::string message) {
    return MakeError(ErrorCode::kInvalidArgument, std::move(message));
  };
  if (!IsExecutable(options.binary)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "virtiofsd binary `" + options.binary +
                         "` is missing or not executable (install qemu-system-common, or set "
                         "[hypervisor] virtiofsd)");
  }
  const std::string& dir = options.shared_dir;
  if (dir.empty() || dir[0] != '/')
    return invalid("shared directory `" + dir + "` is not an absolute path");
  // virtiofsd reads it from "-o source=<dir>", where a comma ends the option.
  if (dir.find_first_of(",\\\n") != std::string::npos) {
    return invalid("shared directory `" + dir + "` contains a comma, backslash or newline");
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) < 0) return ErrnoError("shared directory `" + dir + "`");
  if (!S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "shared directory `" + dir + "` is not a directory");
  }
  if (options.socket_path.empty() || options.socket_path[0] != '/') {
    return invalid("virtiofsd socket path `" + options.socket_path + "` is not an absolute path");
  }
  if (options.log_path.empty()) return invalid("virtiofsd log path is empty");
  for (const auto& arg : options.extra_args) {
    for (std::string_view managed : kManagedArgs) {
      if (arg.starts_with(managed) ||
          (managed == "source=" && arg.find(",source=") != std::string::npos)) {
        return invalid("virtiofsd argument `" + arg + "` is managed by hull");
      }
    }
  }
  return Ok();
}

// Whether virtiofsd is blocked in accept() on `listen_fd`: the point where it
// waits for QEMU. Read from /proc/<pid>/syscall ("<nr> <arg0> ..." while the
// thread is in a system call), so it does not depend on virtiofsd's log level.
bool BlockedInAccept(pid_t pid, int listen_fd) {
  auto text = ReadFile("/proc/" + std::to_string(pid) + "/syscall", 4096);
  if (!text) return false;
  std::istringstream fields(*text);
  long number = -1;
  std::string arg0;
  if (!(fields >> number >> arg0)) return false;
  bool accepting = false;
#ifdef SYS_accept
  accepting = accepting || number == SYS_accept;
#endif
#ifdef SYS_accept4
  accepting = accepting || number == SYS_accept4;
#endif
  return accepting && std::strtol(arg0.c_str(), nullptr, 16) == listen_fd;
}

// Processes virtiofsd forked (its namespace-sandbox worker), as pidfds that
// stay valid after the parent is gone and the worker is reparented.
std::vector<UniqueFd> OpenWorkerPidfds(pid_t parent) {
  auto children_of = [parent] {
    std::vector<pid_t> pids;
    std::string task_dir = "/proc/" + std::to_string(parent) + "/task";
    DIR* tasks = ::opendir(task_dir.c_str());
    if (tasks == nullptr) return pids;
    while (dirent* task = ::readdir(tasks)) {
      if (task->d_name[0] == '.') continue;
      auto list = ReadFile(task_dir + "/" + task->d_name + "/children", 1 << 16);
      if (!list) continue;
      std::istringstream in(*list);
      for (pid_t pid; in >> pid;) pids.push_back(pid);
    }
    ::closedir(tasks);
    return pids;
  };
  std::vector<std::pair<pid_t, UniqueFd>> opened;
  for (pid_t pid : children_of()) {
    UniqueFd fd(sys::PidfdOpen(pid));
    if (fd) opened.emplace_back(pid, std::move(fd));
  }
  // A pid read above may have been reaped and reused before pidfd_open; one
  // that is still listed as a child afterwards is the process we opened.
  std::vector<pid_t> still = children_of();
  std::vector<UniqueFd> workers;
  for (auto& [pid, fd] : opened) {
    if (std::find(still.begin(), still.end(), pid) != still.end()) workers.push_back(std::move(fd));
  }
  return workers;
}

bool PidfdExited(int pidfd, milliseconds timeout) {
  pollfd p{pidfd, POLLIN, 0};
  return RetryEintr([&] { return ::poll(&p, 1, static_cast<int>(timeout.count())); }) != 0;
}

}  // namespace

std::string_view VirtiofsCacheName(VirtiofsCache cache) {
  switch (cache) {
    case VirtiofsCache::kAuto:
      return "auto";
    case VirtiofsCache::kAlways:
      return "always";
    case VirtiofsCache::kNone:
      return "none";
  }
  return "auto";
}

Result<VirtiofsCache> ParseVirtiofsCache(std::string_view name) {
  for (auto cache : {VirtiofsCache::kAuto, VirtiofsCache::kAlways, VirtiofsCache::kNone}) {
    if (name == VirtiofsCacheName(cache)) return cache;
  }
  return MakeError(
      ErrorCode::kInvalidArgument,
      "unknown virtio-fs cache mode `" + std::string(name) + "` (expected auto, always or none)");
}

std::string_view VirtiofsdSandboxName(VirtiofsdSandbox sandbox) {
  return sandbox == VirtiofsdSandbox::kChroot ? "chroot" : "namespace";
}

Result<VirtiofsdSandbox> ParseVirtiofsdSandbox(std::string_view name) {
  for (auto sandbox : {VirtiofsdSandbox::kNamespace, VirtiofsdSandbox::kChroot}) {
    if (name == VirtiofsdSandboxName(sandbox)) return sandbox;
  }
  return MakeError(ErrorCode::kInvalidArgument, "unknown virtiofsd sandbox `" + std::string(name) +
                                                    "` (expected namespace or chroot)");
}

std::vector<std::string> BuildVirtiofsdArgv(const VirtiofsdOptions& options, int listen_fd) {
  std::vector<std::string> argv = {
      options.binary,
      "--fd=" + std::to_string(listen_fd),
      "-o",
      "source=" + options.shared_dir,
      "-o",
      "cache=" + std::string(VirtiofsCacheName(options.cache)),
      "-o",
      "sandbox=" + std::string(VirtiofsdSandboxName(options.sandbox)),
      // Capabilities a guest has no business using through the share: making
      // device nodes, and setting file capabilities on host files.
      "-o",
      "modcaps=-mknod:-setfcap",
  };
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  return argv;
}

Result<SharedMount> SharedMount::Bind(const std::string& dir, Propagation propagation,
                                      uint64_t tmpfs_bytes) {
  const char* path = dir.c_str();
  // Nothing the guest makes in the share is a device or a setuid file here.
  if (tmpfs_bytes != 0) {
    const std::string options =
        "size=" + std::to_string(tmpfs_bytes) + ",nr_inodes=16384,mode=0755";
    if (::mount("hull-share", path, "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) < 0) {
      return ErrnoError("mount a " + std::to_string(tmpfs_bytes >> 10) +
                        " KiB tmpfs on shared directory `" + dir + "`");
    }
  } else if (::mount(path, path, nullptr, MS_BIND | MS_REC, nullptr) < 0) {
    return ErrnoError("bind-mount shared directory `" + dir + "` onto itself");
  }
  SharedMount mount(dir);
  if (tmpfs_bytes == 0 &&
      ::mount(nullptr, path, nullptr, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV, nullptr) < 0) {
    return ErrnoError("make shared directory `" + dir + "` nosuid,nodev");
  }
  // kOwnPeerGroup: private first, so that on a host whose / is shared the
  // bind does not join /'s peer group and echo mounts back into /.
  if ((propagation == Propagation::kOwnPeerGroup &&
       ::mount(nullptr, path, nullptr, MS_PRIVATE | MS_REC, nullptr) < 0) ||
      ::mount(nullptr, path, nullptr, MS_SHARED | MS_REC, nullptr) < 0) {
    return ErrnoError("make shared directory `" + dir + "` a shared mount");
  }
  return mount;
}

SharedMount::SharedMount(SharedMount&& other) noexcept : dir_(std::exchange(other.dir_, "")) {}

SharedMount& SharedMount::operator=(SharedMount&& other) noexcept {
  if (this != &other) {
    Release();
    dir_ = std::exchange(other.dir_, "");
  }
  return *this;
}

SharedMount::~SharedMount() { Release(); }

void SharedMount::Release() {
  if (dir_.empty()) return;
  // Detaching takes along whatever is still mounted through the bind (on the
  // host, the originals of mounts that existed before Bind stay).
  if (::umount2(dir_.c_str(), MNT_DETACH) < 0) {
    HULL_LOG_WARN("unmount shared directory {}: {}", dir_, std::strerror(errno));
  }
  dir_.clear();
}

Result<Virtiofsd> Virtiofsd::Start(const VirtiofsdOptions& options) {
  const std::string context = "start virtiofsd for `" + options.shared_dir + "`";
  HULL_CHECK_OK(ValidateOptions(options), context);

  // The namespace sandbox copies hull's mounts once, when QEMU connects, and
  // makes its copies slaves: see SharedMount.
  std::optional<SharedMount> mount;
  if (options.sandbox == VirtiofsdSandbox::kNamespace || options.share_root_bytes != 0) {
    HULL_TRY(SharedMount bound,
             SharedMount::Bind(options.shared_dir, SharedMount::Propagation::kOwnPeerGroup,
                               options.share_root_bytes),
             context);
    mount.emplace(std::move(bound));
  }

  // Bound and listening before virtiofsd runs: QEMU's connect lands in the
  // backlog however slowly virtiofsd starts.
  HULL_TRY(UniqueFd listener, ListenUnix(options.socket_path, 1), context);
  ScopeExit remove_socket([&] { ::unlink(options.socket_path.c_str()); });
  if (::chmod(options.socket_path.c_str(), 0600) < 0) {
    return ErrnoError("chmod `" + options.socket_path + "`").error.Wrap(context);
  }

  SpawnOptions spawn;
  spawn.argv = BuildVirtiofsdArgv(options, listener.get());
  spawn.stdout_path = options.log_path;
  spawn.stderr_path = options.log_path;
  spawn.pass_fds = {listener.get()};
  spawn.kill_with_parent = true;
  spawn.cgroup_procs = options.cgroup_procs;
  // Only what virtiofsd writes from now on counts as its announcement.
  struct stat log_before {};
  const size_t log_start =
      ::stat(options.log_path.c_str(), &log_before) == 0 ? log_before.st_size : 0;
  HULL_TRY(Child child, Child::Spawn(spawn), context);
  const int listen_fd = listener.get();
  // virtiofsd holds the only copy now: if it dies, QEMU's connect is refused
  // instead of waiting in a backlog nobody will accept from.
  listener.reset();

  auto describe_exit = [&](const ExitStatus& status) {
    std::string why = "virtiofsd " + status.ToString() + " before it was ready";
    std::string log = Tail(options.log_path, 2000);
    if (!log.empty()) why += ": " + log;
    return why;
  };
  const auto deadline = Clock::now() + options.startup_timeout;
  while (true) {
    auto exited = child.WaitFor(milliseconds(10));
    if (!exited) return std::move(exited).error().Wrap(context);
    if (*exited)
      return MakeError(ErrorCode::kFailedPrecondition, describe_exit(**exited)).error.Wrap(context);
    if (BlockedInAccept(child.pid(), listen_fd)) break;
    // Where /proc/<pid>/syscall is not readable, virtiofsd's own announcement
    // (printed at its default log level) says the same.
    if (auto log = ReadFile(options.log_path, 1 << 20);
        log &&
        log->find("Waiting for vhost-user socket connection", log_start) != std::string::npos) {
      break;
    }
    if (Clock::now() > deadline) {
      ExitStatus status = child.Terminate(milliseconds(500));
      std::string why = "virtiofsd did not start listening within " +
                        std::to_string(options.startup_timeout.count()) + " ms (then " +
                        status.ToString() + ")";
      std::string log = Tail(options.log_path, 2000);
      if (!log.empty()) why += ": " + log;
      return MakeError(ErrorCode::kDeadlineExceeded, why).error.Wrap(context);
    }
  }
  remove_socket.Dismiss();
  HULL_LOG_DEBUG("virtiofsd {} serves {} on {}", child.pid(), options.shared_dir,
                 options.socket_path);
  return Virtiofsd(options, std::move(child), std::move(mount));
}

Virtiofsd::Virtiofsd(Virtiofsd&& other) noexcept
    : options_(std::move(other.options_)),
      child_(std::move(other.child_)),
      active_(std::exchange(other.active_, false)),
      mount_(std::move(other.mount_)),
      stopped_status_(other.stopped_status_) {}

Virtiofsd& Virtiofsd::operator=(Virtiofsd&& other) noexcept {
  if (this != &other) {
    if (active_) Stop(milliseconds(1000));
    options_ = std::move(other.options_);
    child_ = std::move(other.child_);
    active_ = std::exchange(other.active_, false);
    mount_ = std::move(other.mount_);
    stopped_status_ = other.stopped_status_;
  }
  return *this;
}

Virtiofsd::~Virtiofsd() {
  if (active_) Stop(milliseconds(1000));
}

std::optional<ExitStatus> Virtiofsd::Reap() {
  if (child_.reaped()) return child_.exit_status();
  auto exited = child_.WaitFor(milliseconds(0));
  if (!exited) return std::nullopt;
  return *exited;
}

std::string Virtiofsd::LogTail(size_t max_bytes) const {
  return Tail(options_.log_path, max_bytes);
}

ExitStatus Virtiofsd::Stop(milliseconds grace) {
  if (!active_) return stopped_status_.value_or(ExitStatus{});
  std::vector<UniqueFd> workers;
  if (!Reap()) workers = OpenWorkerPidfds(child_.pid());
  // The parent exits on SIGTERM; its sandbox worker gets SIGTERM from the
  // kernel (PR_SET_PDEATHSIG) when it does.
  ExitStatus status = child_.Terminate(grace);
  auto deadline = Clock::now() + grace;
  for (const UniqueFd& worker : workers) {
    auto left = std::max(milliseconds(0),
                         std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
    if (!PidfdExited(worker.get(), left)) {
      HULL_LOG_WARN("virtiofsd worker of {} ignored SIGTERM, killing it", child_.pid());
      (void)sys::PidfdSendSignal(worker.get(), SIGKILL);
      PidfdExited(worker.get(), milliseconds(1000));
    }
  }
  if (::unlink(options_.socket_path.c_str()) < 0 && errno != ENOENT) {
    HULL_LOG_WARN("remove virtiofsd socket {}: {}", options_.socket_path, std::strerror(errno));
  }
  // Detaching takes along whatever is still mounted through the bind (on the
  // host, the originals of mounts that existed before Start stay).
  mount_.reset();
  active_ = false;
  stopped_status_ = status;
  return status;
}

}  // namespace hull
