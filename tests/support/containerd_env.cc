#include "containerd_env.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <sstream>
#include <thread>

#include "hull/core/syscall.h"
#include "testlib.h"

extern char** environ;

namespace hull::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr char kRuncStateRoot[] = "/run/containerd/runc/default";
constexpr char kRunc[] = "/usr/sbin/runc";
constexpr char kCtrFifoRoot[] = "/run/containerd/fifo";

int ShellCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Execs argv in a prepared child; only async-signal-safe calls from here on.
[[noreturn]] void ExecChild(char** argv, char** envp) {
  ::execve(argv[0], argv, envp);
  static const char kMsg[] = "exec failed\n";
  (void)!::write(2, kMsg, sizeof(kMsg) - 1);
  ::_exit(127);
}

// Reads what is available on a non-blocking fd; returns false at EOF or error.
bool Drain(int fd, std::string& into) {
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n > 0) {
      into.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    return false;  // EOF, or EIO on a pty whose slave side is gone
  }
}

std::string Cut(const std::string& s, size_t max = 4000) {
  if (s.size() <= max) return s;
  return "[... " + std::to_string(s.size() - max) + " bytes cut ...]" + s.substr(s.size() - max);
}

std::string ReadLink(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return names;
  while (dirent* e = ::readdir(dir)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
      names.emplace_back(e->d_name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

bool CanConnect(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

// "\040" and friends in /proc/self/mountinfo.
std::string UnescapeMountField(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      out.push_back(static_cast<char>(std::stoi(field.substr(i + 1, 3), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

struct MountEntry {
  std::string mount_point;
  std::string line;
};

std::vector<MountEntry> MountsMentioning(const std::string& needle) {
  std::vector<MountEntry> mounts;
  auto info = ReadFile("/proc/self/mountinfo", 64 << 20);
  if (!info) return mounts;
  std::istringstream lines(*info);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find(needle) == std::string::npos) continue;
    std::istringstream fields(line);
    std::string id, parent, dev, root, mount_point;
    fields >> id >> parent >> dev >> root >> mount_point;
    mounts.push_back({UnescapeMountField(mount_point), line});
  }
  return mounts;
}

// ctr's FIFO dirs holding <id>-stdin|stdout|stderr of an id ending in -<tag>.
std::vector<std::string> TaggedFifoDirs(const std::string& tag) {
  std::vector<std::string> dirs;
  for (const std::string& dir : ListDir(kCtrFifoRoot)) {
    for (const std::string& fifo : ListDir(std::string(kCtrFifoRoot) + "/" + dir)) {
      if (fifo.find("-" + tag + "-std") != std::string::npos) {
        dirs.push_back(std::string(kCtrFifoRoot) + "/" + dir);
        break;
      }
    }
  }
  return dirs;
}

}  // namespace

std::string CommandResult::Describe() const {
  std::string s = "exit " + std::to_string(code) + (timed_out ? " [timed out]" : "");
  s += "\n--- stdout ---\n" + Cut(out) + "\n--- stderr ---\n" + Cut(err);
  return s;
}

CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& stdin_data,
                         milliseconds timeout, const std::vector<std::string>& env) {
  CommandResult result;
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) < 0 || ::pipe2(out, O_CLOEXEC) < 0 || ::pipe2(err, O_CLOEXEC) < 0) {
    result.err = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  std::vector<std::string> args = argv, envs = env;
  std::vector<char*> c_argv = CStrings(args), c_env = CStrings(envs);
  char** envp = env.empty() ? environ : c_env.data();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ExecChild(c_argv.data(), envp);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  UniqueFd stdin_fd(in[1]), stdout_fd(out[0]), stderr_fd(err[0]);
  if (pid < 0) {
    result.err = std::string("fork: ") + std::strerror(errno);
    return result;
  }
  ::setpgid(pid, pid);  // also from here, so the kill below cannot miss the group
  for (int fd : {stdin_fd.get(), stdout_fd.get(), stderr_fd.get()}) (void)SetNonBlocking(fd);
  ::signal(SIGPIPE, SIG_IGN);

  size_t written = 0;
  if (stdin_data.empty()) stdin_fd.reset();
  auto deadline = Clock::now() + timeout;
  std::optional<Clock::time_point> exited_at;
  int status = 0;
  bool reaped = false;
  while (true) {
    if (!reaped && ::waitpid(pid, &status, WNOHANG) == pid) {
      reaped = true;
      exited_at = Clock::now();
    }
    bool streams_open = stdout_fd.valid() || stderr_fd.valid();
    // Done when the child is gone and its output drained; a grandchild that
    // keeps the pipes open gets two seconds, not the whole timeout.
    if (reaped && (!streams_open || Clock::now() - *exited_at > std::chrono::seconds(2))) break;
    if (!reaped && Clock::now() > deadline) {
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      result.timed_out = true;
      ::waitpid(pid, &status, 0);
      reaped = true;
      exited_at = Clock::now();
      continue;
    }
    std::vector<pollfd> fds;
    if (stdout_fd) fds.push_back({stdout_fd.get(), POLLIN, 0});
    if (stderr_fd) fds.push_back({stderr_fd.get(), POLLIN, 0});
    if (stdin_fd) fds.push_back({stdin_fd.get(), POLLOUT, 0});
    ::poll(fds.data(), fds.size(), 50);
    for (const pollfd& p : fds) {
      if (p.revents == 0) continue;
      if (p.fd == stdout_fd.get() && !Drain(stdout_fd.get(), result.out)) stdout_fd.reset();
      if (p.fd == stderr_fd.get() && !Drain(stderr_fd.get(), result.err)) stderr_fd.reset();
      if (p.fd == stdin_fd.get()) {
        ssize_t n = ::write(stdin_fd.get(), stdin_data.data() + written,
                            std::min<size_t>(stdin_data.size() - written, 65536));
        if (n > 0) written += static_cast<size_t>(n);
        if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == stdin_data.size())
          stdin_fd.reset();
      }
    }
  }
  ::kill(-pid, SIGKILL);  // nothing of it may outlive the call
  result.code = ShellCode(status);
  return result;
}

CommandResult RunCommandOnPty(const std::vector<std::string>& argv, milliseconds timeout) {
  CommandResult result;
  std::vector<std::string> args = argv;
  std::vector<char*> c_argv = CStrings(args);
  int master = -1;
  winsize size{};
  size.ws_row = 24;
  size.ws_col = 80;
  pid_t pid = ::forkpty(&master, nullptr, nullptr, &size);
  if (pid == 0) ExecChild(c_argv.data(), environ);
  if (pid < 0) {
    result.err = std::string("forkpty: ") + std::strerror(errno);
    return result;
  }
  UniqueFd master_fd(master);
  (void)SetNonBlocking(master);
  (void)SetCloexec(master);
  auto deadline = Clock::now() + timeout;
  int status = 0;
  bool reaped = false;
  std::optional<Clock::time_point> exited_at;
  while (true) {
    if (!reaped && ::waitpid(pid, &status, WNOHANG) == pid) {
      reaped = true;
      exited_at = Clock::now();
    }
    if (reaped && (!master_fd || Clock::now() - *exited_at > std::chrono::seconds(2))) break;
    if (!reaped && Clock::now() > deadline) {
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      result.timed_out = true;
      continue;
    }
    if (master_fd) {
      pollfd p{master_fd.get(), POLLIN, 0};
      ::poll(&p, 1, 50);
      if (p.revents != 0 && !Drain(master_fd.get(), result.out)) master_fd.reset();
    } else {
      std::this_thread::sleep_for(milliseconds(20));
    }
  }
  result.code = ShellCode(status);
  return result;
}

// --- PrivateContainerd ---------------------------------------------------------

PrivateContainerd::PrivateContainerd(std::string dir, Options options)
    : dir_(std::move(dir)), options_(std::move(options)), tag_(RandomHex(3)) {}

Result<std::unique_ptr<PrivateContainerd>> PrivateContainerd::Start(const Options& options) {
  // Short on purpose: containerd puts sockets and bundle paths under it.
  char tmpl[] = "/tmp/hctr.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return ErrnoError("mkdtemp /tmp/hctr.XXXXXX");
  std::unique_ptr<PrivateContainerd> env(new PrivateContainerd(tmpl, options));
  const std::string& d = env->dir_;
  std::string config =
      "version = 2\n"
      "root = \"" +
      d +
      "/root\"\n"
      "state = \"" +
      d +
      "/state\"\n"
      "[grpc]\n  address = \"" +
      d +
      "/c.sock\"\n"
      "[ttrpc]\n  address = \"" +
      d +
      "/c.sock.ttrpc\"\n"
      "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"" +
      d + "/opt\"\n";
  if (!options.cri) {
    // CRI is not under test then and wants CNI, oom_score_adj and a pause
    // image; ctr needs none of it.
    config.insert(config.find("[grpc]"), "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n");
  } else {
    // A /24 of this instance's own, picked from its tag, and a bridge named
    // for it: several instances (and a leftover of a crashed one) never meet.
    unsigned tag = std::stoul(env->tag_, nullptr, 16);
    env->subnet_ =
        "10." + std::to_string(100 + tag % 100) + "." + std::to_string(tag / 100 % 250) + ".0/24";
    if (options.dual_stack)
      env->subnet6_ = "fd00:" + env->tag_.substr(0, 4) + ":" + env->tag_.substr(4) + "::/64";
    const std::string cri = "[plugins.\"io.containerd.grpc.v1.cri\"";
    config += cri +
              "]\n"
              "  sandbox_image = \"" +
              options.sandbox_image +
              "\"\n"
              "  restrict_oom_score_adj = true\n"
              "  stream_server_address = \"127.0.0.1\"\n"
              "  stream_server_port = \"0\"\n" +
              cri +
              ".containerd]\n"
              "  default_runtime_name = \"runc\"\n" +
              cri +
              ".containerd.runtimes.runc]\n"
              "  runtime_type = \"io.containerd.runc.v2\"\n" +
              cri +
              ".containerd.runtimes.hull]\n"
              "  runtime_type = \"io.containerd.hull.v2\"\n" +
              cri +
              ".containerd.runtimes.hull.options]\n"
              "  ConfigPath = \"" +
              env->hull_config() + "\"\n" + cri +
              ".cni]\n"
              "  bin_dir = \"/usr/lib/cni\"\n"
              "  conf_dir = \"" +
              d + "/cni\"\n";
    for (const auto& handler : options.hull_handlers) {
      config += cri + ".containerd.runtimes." + handler +
                "]\n"
                "  runtime_type = \"io.containerd.hull.v2\"\n" +
                cri + ".containerd.runtimes." + handler +
                ".options]\n"
                "  ConfigPath = \"" +
                env->handler_config(handler) + "\"\n";
    }
    std::string cni =
        "{\n"
        "  \"cniVersion\": \"0.4.0\",\n"
        "  \"name\": \"hull-test-" +
        env->tag_ +
        "\",\n"
        "  \"plugins\": [\n"
        "    {\"type\": \"bridge\", \"bridge\": \"" +
        env->bridge() +
        "\", \"isGateway\": true, \"ipMasq\": false,\n"
        "     \"hairpinMode\": true,\n"
        "     \"ipam\": {\"type\": \"host-local\", \"dataDir\": \"" +
        d + "/ipam\", \"ranges\": [[{\"subnet\": \"" + env->subnet_ + "\"}]" +
        (env->subnet6_.empty() ? "" : ", [{\"subnet\": \"" + env->subnet6_ + "\"}]") +
        "], \"routes\": [{\"dst\": \"0.0.0.0/0\"}" +
        (env->subnet6_.empty() ? "" : ", {\"dst\": \"::/0\"}") +
        "]}},\n"
        "    {\"type\": \"portmap\", \"capabilities\": {\"portMappings\": true}}\n"
        "  ]\n"
        "}\n";
    HULL_CHECK_OK(MakeDirs(d + "/cni", 0755), "make CNI conf dir");
    HULL_CHECK_OK(WriteFile(d + "/cni/10-hull-test.conflist", cni), "write CNI config");
  }
  HULL_CHECK_OK(WriteFile(d + "/config.toml", config), "write containerd config");
  HULL_CHECK_OK(WriteFile(env->hull_config(), "[runtime]\nrun_dir = \"" + env->hull_run_dir() +
                                                  "\"\n[hypervisor]\ntemplate_dir = \"" +
                                                  testlib::SharedTemplateDir() + "\"\n"),
                "write hull config");
  HULL_CHECK_OK(MakeDirs(env->hull_run_dir(), 0700), "make hull run dir");
  HULL_CHECK_OK(env->Launch(), "start containerd");
  return env;
}

Status PrivateContainerd::Launch() {
  std::vector<std::string> argv = {kContainerd, "--config", dir_ + "/config.toml", "--log-level",
                                   options_.log_level};
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view var(*e);
    if (var.starts_with("PATH=") || var.starts_with("HULL_CONFIG=")) continue;
    env.emplace_back(var);
  }
  const char* path = ::getenv("PATH");
  env.push_back("PATH=" + (options_.bin_dir.empty() ? "" : options_.bin_dir + ":") +
                (path != nullptr ? path : "/usr/sbin:/usr/bin:/sbin:/bin"));
  env.push_back("HULL_CONFIG=" + hull_config());
  std::vector<char*> c_argv = CStrings(argv), c_env = CStrings(env);
  std::string log = dir_ + "/containerd.log";
  UniqueFd log_fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!log_fd || !null_fd) return ErrnoError("open " + log);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();  // no terminal signals from the test's session
    // A crashed test binary must not leave containerd behind; its shims are
    // caught by the leftover checks of the next run.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    ::dup2(null_fd.get(), 0);
    ::dup2(log_fd.get(), 1);
    ::dup2(log_fd.get(), 2);
    ExecChild(c_argv.data(), c_env.data());
  }
  if (pid < 0) return ErrnoError("fork");
  pid_ = pid;
  auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return MakeError(
          ErrorCode::kUnavailable,
          "containerd exited with " + std::to_string(ShellCode(status)) + "; log:\n" + LogTail());
    }
    if (CanConnect(socket())) {
      CommandResult version = Ctr({"version"}, "", std::chrono::seconds(10));
      if (version.code == 0) return Ok();
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  return MakeError(ErrorCode::kDeadlineExceeded,
                   "containerd did not answer within 30 s; log:\n" + LogTail());
}

CommandResult PrivateContainerd::Ctr(const std::vector<std::string>& args,
                                     const std::string& stdin_data, milliseconds timeout) {
  std::vector<std::string> argv = {kCtr, "--address", socket(), "-n", ns()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, stdin_data, timeout);
}

CommandResult PrivateContainerd::CtrOnPty(const std::vector<std::string>& args,
                                          milliseconds timeout) {
  std::vector<std::string> argv = {kCtr, "--address", socket(), "-n", ns()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommandOnPty(argv, timeout);
}

Status PrivateContainerd::ImportImage(const std::string& archive) {
  CommandResult r = Ctr({"images", "import", archive}, "", std::chrono::seconds(120));
  if (r.code != 0)
    return MakeError(ErrorCode::kInternal, "ctr images import " + archive + ": " + r.Describe());
  return Ok();
}

void PrivateContainerd::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

Status PrivateContainerd::Restart() {
  if (pid_ > 0) return MakeError(ErrorCode::kFailedPrecondition, "containerd is still running");
  return Launch();
}

Status PrivateContainerd::Stop() {
  if (pid_ <= 0) return Ok();
  ::kill(pid_, SIGTERM);
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Ok();
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  Kill();
  return MakeError(ErrorCode::kDeadlineExceeded, "containerd ignored SIGTERM for 10 s");
}

std::string PrivateContainerd::LogTail(size_t lines) const {
  auto log = ReadFile(dir_ + "/containerd.log", 256 << 20);
  if (!log) return "(no containerd log)";
  size_t pos = log->size();
  for (size_t n = 0; n <= lines && pos > 0; ++n) {
    size_t nl = log->rfind('\n', pos - 1);
    if (nl == std::string::npos) {
      pos = 0;
      break;
    }
    pos = nl;
  }
  return log->substr(pos);
}

std::string PrivateContainerd::TaskStatus(const std::string& id) {
  CommandResult ls = Ctr({"task", "ls"}, "", std::chrono::seconds(20));
  std::istringstream lines(ls.out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string task, pid, status;
    fields >> task >> pid >> status;
    if (task == id) return status;
  }
  return "";
}

void PrivateContainerd::RemoveAllTasks() {
  CommandResult tasks = Ctr({"task", "ls", "-q"}, "", std::chrono::seconds(20));
  std::istringstream ids(tasks.out);
  std::string id;
  while (std::getline(ids, id)) {
    if (id.empty()) continue;
    (void)Ctr({"task", "resume", id}, "", std::chrono::seconds(10));
    (void)Ctr({"task", "kill", "-a", "-s", "SIGKILL", id}, "", std::chrono::seconds(20));
    for (int i = 0; i < 100; ++i) {
      std::string status = TaskStatus(id);
      if (status.empty() || status == "STOPPED") break;
      std::this_thread::sleep_for(milliseconds(100));
    }
    (void)Ctr({"task", "rm", "-f", id}, "", std::chrono::seconds(30));
  }
  CommandResult containers = Ctr({"containers", "ls", "-q"}, "", std::chrono::seconds(20));
  std::istringstream cids(containers.out);
  while (std::getline(cids, id)) {
    if (!id.empty()) (void)Ctr({"containers", "rm", id}, "", std::chrono::seconds(30));
  }
}

PrivateContainerd::~PrivateContainerd() {
  if (pid_ <= 0 && PathExists(dir_ + "/config.toml"))
    (void)Launch();  // killed by the test: clean through it
  if (pid_ > 0) RemoveAllTasks();
  (void)Stop();
  // Whatever still runs (a shim that ignored Shutdown, a VM, a container whose
  // shim died) is killed; runc's state of our containers goes with it.
  for (int round = 0; round < 3; ++round) {
    bool any = false;
    for (const std::string& leftover : LeftoverProcesses()) {
      ::kill(std::stoi(leftover), SIGKILL);
      any = true;
    }
    if (!any) break;
    std::this_thread::sleep_for(milliseconds(200));
  }
  for (const std::string& name : ListDir(kRuncStateRoot)) {
    if (name.ends_with("-" + tag_)) {
      (void)RunCommand({kRunc, "--root", kRuncStateRoot, "delete", "-f", name}, "",
                       std::chrono::seconds(10));
    }
  }
  for (const std::string& fifo_dir : TaggedFifoDirs(tag_)) (void)RemoveTree(fifo_dir);
  // CNI's bridge outlives its pods by design; this instance's goes with it.
  if (options_.cri)
    (void)RunCommand({"/usr/sbin/ip", "link", "del", bridge()}, "", std::chrono::seconds(10));
  std::vector<MountEntry> mounts = MountsMentioning(dir_);
  std::sort(mounts.begin(), mounts.end(), [](const MountEntry& a, const MountEntry& b) {
    return a.mount_point.size() > b.mount_point.size();
  });
  for (const MountEntry& m : mounts) {
    if (m.mount_point.starts_with(dir_ + "/")) ::umount2(m.mount_point.c_str(), MNT_DETACH);
  }
  if (!RemoveTree(dir_)) {
    (void)RunCommand({"/bin/rm", "-rf", "--one-file-system", dir_}, "", std::chrono::seconds(60));
  }
}

pid_t PrivateContainerd::ShimPid(const std::string& id) const {
  for (const std::string& name : ListDir("/proc")) {
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = ReadFile("/proc/" + name + "/cmdline", 1 << 16).value_or("");
    if (cmdline.find("containerd-shim-") != std::string::npos &&
        cmdline.find(std::string("-id") + '\0' + id + '\0') != std::string::npos) {
      return static_cast<pid_t>(std::stoi(name));
    }
  }
  return 0;
}

std::vector<std::string> PrivateContainerd::LeftoverProcesses() const {
  std::vector<std::string> found;
  std::string tag_suffix = "-" + tag_;
  pid_t self = ::getpid();
  for (const std::string& name : ListDir("/proc")) {
    if (name.empty() || name[0] < '0' || name[0] > '9') continue;
    pid_t pid = std::stoi(name);
    if (pid == self || pid == pid_) continue;
    std::string proc = "/proc/" + name;
    std::string cmdline = ReadFile(proc + "/cmdline", 1 << 16).value_or("");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    std::string cwd = ReadLink(proc + "/cwd");
    std::string cgroup = ReadFile(proc + "/cgroup", 1 << 16).value_or("");
    bool names_dir = cmdline.find(dir_) != std::string::npos || cwd.starts_with(dir_ + "/");
    bool in_container = cgroup.find(tag_suffix + "\n") != std::string::npos ||
                        cgroup.find(tag_suffix + "/") != std::string::npos;
    if (names_dir || in_container) {
      found.push_back(name + " " + (cmdline.empty() ? "(no cmdline)" : cmdline.substr(0, 300)) +
                      (cwd.empty() ? "" : " [cwd " + cwd + "]"));
    }
  }
  return found;
}

std::vector<std::string> PrivateContainerd::LeftoverMounts() const {
  std::vector<std::string> found;
  for (const MountEntry& m : MountsMentioning(dir_)) found.push_back(m.line);
  return found;
}

std::vector<std::string> PrivateContainerd::LeftoverState() const {
  std::vector<std::string> found;
  // VM templates stay by design (`hullctl gc --templates` removes them).
  for (const std::string& name : ListDir(hull_run_dir())) {
    if (name != ".templates") found.push_back(hull_run_dir() + "/" + name);
  }
  for (const std::string& name : ListDir(kRuncStateRoot)) {
    if (name.ends_with("-" + tag_)) found.push_back(std::string(kRuncStateRoot) + "/" + name);
  }
  for (const std::string& fifo_dir : TaggedFifoDirs(tag_))
    found.push_back(fifo_dir + " (ctr FIFOs)");
  std::string bundles = dir_ + "/state/io.containerd.runtime.v2.task/" + ns();
  for (const std::string& name : ListDir(bundles))
    found.push_back(bundles + "/" + name + " (task bundle)");
  return found;
}

std::string PrivateContainerd::WaitForNoLeftovers(milliseconds timeout) const {
  auto deadline = Clock::now() + timeout;
  while (true) {
    std::vector<std::string> processes = LeftoverProcesses();
    std::vector<std::string> mounts = LeftoverMounts();
    std::vector<std::string> state = LeftoverState();
    if (processes.empty() && mounts.empty() && state.empty()) return "";
    if (Clock::now() > deadline) {
      std::string report;
      for (const auto& p : processes) report += "process: " + p + "\n";
      for (const auto& m : mounts) report += "mount: " + m + "\n";
      for (const auto& s : state) report += "state: " + s + "\n";
      return report;
    }
    std::this_thread::sleep_for(milliseconds(200));
  }
}

}  // namespace hull::testing
