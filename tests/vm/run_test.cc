// `hullctl run` end to end, and differential tests against runc: the same
// bundle, built here from Debian's busybox-static, must behave the same.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "bundle.h"
#include "hull/core/process.h"
#include "hull/core/syscall.h"
#include "testlib.h"

namespace hull {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kRunc[] = "/usr/sbin/runc";

using Outcome = testlib::CommandOutcome;

class RunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HULL_REQUIRE_ROOT("mounts the bundle into the VM's shared directory");
    HULL_REQUIRE_QEMU();
    if (!IsExecutable(testing::kBusybox))
      GTEST_SKIP() << "busybox-static is not installed (/bin/busybox)";
    ASSERT_TRUE(PathExists(std::string(HULL_GUEST_DIR) + "/initrd.img")) << "guest image missing";
    scratch_ = ::testing::TempDir() + "/hull-run-" + RandomHex(4);
    ASSERT_TRUE(MakeDirs(scratch_ + "/run"));
    config_ = scratch_ + "/config.toml";
    ASSERT_TRUE(WriteFile(config_, "[runtime]\nrun_dir = \"" + scratch_ +
                                       "/run\"\n"
                                       "[hypervisor]\ntemplate_dir = \"" +
                                       testlib::SharedTemplateDir() +
                                       "\"\n"
                                       "kernel = \"" +
                                       HULL_GUEST_DIR +
                                       "/vmlinuz\"\n"
                                       "initrd = \"" +
                                       HULL_GUEST_DIR + "/initrd.img\"\n"));
  }

  void TearDown() override {
    if (scratch_.empty()) return;
    EXPECT_TRUE(RunDirEmpty()) << "hullctl run left state behind";
    // No VM, virtiofsd or mount of this test may outlive it: their command
    // lines and mount points all name the run directory.
    std::string run_dir = scratch_ + "/run";
    auto mountinfo = ReadFile("/proc/self/mountinfo", 16 << 20);
    ASSERT_TRUE(mountinfo);
    EXPECT_EQ(mountinfo->find(run_dir), std::string::npos)
        << "a mount under " << run_dir << " was left behind";
    EXPECT_FALSE(ProcessMentions(run_dir)) << "a qemu or virtiofsd of this test still runs";
    (void)RemoveTree(scratch_);
  }

  static bool ProcessMentions(const std::string& needle) {
    DIR* proc = opendir("/proc");
    if (proc == nullptr) return false;
    bool found = false;
    while (dirent* e = readdir(proc)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      auto cmdline = ReadFile(std::string("/proc/") + e->d_name + "/cmdline", 1 << 16);
      if (cmdline && cmdline->find(needle) != std::string::npos) found = true;
    }
    closedir(proc);
    return found;
  }

  bool RunDirEmpty() {
    DIR* dir = opendir((scratch_ + "/run").c_str());
    if (dir == nullptr) return true;
    int entries = 0;
    while (dirent* e = readdir(dir)) entries += e->d_name[0] != '.';
    closedir(dir);
    return entries == 0;
  }

  std::string Bundle(const oci::Spec& spec) {
    std::string bundle = scratch_ + "/bundle-" + RandomHex(3);
    auto made = testing::MakeBundle(bundle, spec);
    EXPECT_TRUE(made) << made.error().ToString();
    return bundle;
  }

  // Runs a command with stdin from `stdin_path` (or /dev/null); `during`
  // runs while it does, and may read its stdout so far at running_out_.
  Outcome Run(std::vector<std::string> argv, const std::string& stdin_path = "/dev/null",
              std::function<void(pid_t)> during = nullptr) {
    running_out_ = scratch_ + "/out-" + RandomHex(3);
    Outcome outcome = testlib::RunCommand(
        std::move(argv),
        {.stdin_path = stdin_path, .stdout_path = running_out_, .while_running = during});
    ::unlink(running_out_.c_str());
    return outcome;
  }

  Outcome Hull(const std::string& bundle, std::vector<std::string> extra = {},
               const std::string& stdin_path = "/dev/null",
               std::function<void(pid_t)> during = nullptr) {
    std::vector<std::string> argv = {HULL_HULLCTL, "--config", config_, "run", "--bundle", bundle};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return Run(argv, stdin_path, during);
  }

  Outcome Runc(const std::string& bundle,
               std::function<void(const std::string& id)> during = nullptr) {
    if (!IsExecutable(kRunc)) return {};
    std::string id = "diff-" + RandomHex(4);
    std::vector<std::string> argv = {kRunc,  "--root", scratch_ + "/runc-root", "run", "--bundle",
                                     bundle, id};
    return Run(argv, "/dev/null",
               during ? [&](pid_t) { during(id); } : std::function<void(pid_t)>());
  }

  void RequireRunc() {
    if (!IsExecutable(kRunc))
      GTEST_SKIP() << "runc is not installed: the differential tests compare against it";
  }

  std::string scratch_;
  std::string config_;
  std::string running_out_;  // stdout file of the command Run() is running
};

// One bundle, many facts: identity, hostname, capabilities, limits, cwd,
// environment, PID 1, read-only root and masked paths, as runc shows them.
TEST_F(RunTest, BehavesLikeRuncForTheDefaultSpec) {
  RequireRunc();
  oci::Spec spec =
      testing::TestSpec({"sh", "-c",
                         "id; hostname; grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; "
                         "ulimit -n; pwd; env | sort; tr '\\0' ' ' < /proc/1/cmdline; echo; "
                         "touch /rootfs-write 2>/dev/null; echo root-write=$?; "
                         "echo timer_list=$(wc -c < /proc/timer_list)"});
  spec.root.readonly = true;
  std::string bundle = Bundle(spec);
  Outcome runc = Runc(bundle);
  Outcome hull = Hull(bundle);
  ASSERT_EQ(runc.code, 0) << runc.err;
  ASSERT_EQ(hull.code, 0) << hull.err;
  EXPECT_EQ(hull.out, runc.out) << "--- runc stderr ---\n"
                                << runc.err << "--- hull stderr ---\n"
                                << hull.err;
  EXPECT_NE(hull.out.find("uid=0(root) gid=0(root)"), std::string::npos) << hull.out;
  EXPECT_NE(hull.out.find("\nhull\n"), std::string::npos);
  EXPECT_NE(hull.out.find("sh -c id; hostname"), std::string::npos) << "init is PID 1";
  EXPECT_NE(hull.out.find("root-write=1"), std::string::npos) << "a read-only root refuses writes";
  EXPECT_NE(hull.out.find("timer_list=0"), std::string::npos) << "a masked path reads empty";
  EXPECT_NE(hull.out.find("NoNewPrivs:\t1"), std::string::npos);
}

TEST_F(RunTest, ExitCodePropagates) {
  RequireRunc();
  std::string bundle = Bundle(testing::TestSpec({"sh", "-c", "echo bye; exit 42"}));
  Outcome runc = Runc(bundle);
  Outcome hull = Hull(bundle);
  EXPECT_EQ(runc.code, 42);
  EXPECT_EQ(hull.code, 42) << hull.err;
  EXPECT_EQ(hull.out, "bye\n");
}

TEST_F(RunTest, SigkillGives137) {
  RequireRunc();
  std::string bundle = Bundle(testing::TestSpec({"sh", "-c", "echo started; sleep 600"}));
  Outcome runc = Runc(bundle, [&](const std::string& id) {
    for (int i = 0; i < 100; ++i) {
      std::this_thread::sleep_for(milliseconds(100));
      auto killer =
          Child::Spawn({.argv = {kRunc, "--root", scratch_ + "/runc-root", "kill", id, "KILL"}});
      if (killer && killer->Wait()->success()) return;
    }
  });
  // hullctl forwards the first SIGTERM (PID 1 ignores it, as under runc) and
  // turns a second interrupt into SIGKILL.
  Outcome hull = Hull(bundle, {}, "/dev/null", [&](pid_t pid) {
    // Signal only once the container runs: before that, two SIGTERMs
    // pending during the boot are one, and a kill before the start loses
    // the output. Then repeat the pair until it exits.
    for (int i = 0; i < 1200 && ReadFile(running_out_).value_or("") != "started\n"; ++i) {
      std::this_thread::sleep_for(milliseconds(100));
    }
    for (int i = 0; i < 30; ++i) {
      ::kill(pid, SIGTERM);
      std::this_thread::sleep_for(milliseconds(500));
      ::kill(pid, SIGTERM);
      siginfo_t info{};
      for (int j = 0; j < 20; ++j) {
        std::this_thread::sleep_for(milliseconds(100));
        info.si_pid = 0;
        int rc = ::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT);
        if ((rc == 0 && info.si_pid == pid) || (rc < 0 && errno == ECHILD))
          return;  // exited, or reaped
      }
    }
  });
  EXPECT_EQ(runc.code, 137);
  EXPECT_EQ(hull.code, 137) << hull.err;
  EXPECT_EQ(hull.out, "started\n");
}

TEST_F(RunTest, SeccompRuleReturnsItsErrno) {
  RequireRunc();
  oci::Spec spec = testing::TestSpec(
      {"sh", "-c", "mkdir /tmp/denied; echo mkdir=$?; grep Seccomp: /proc/self/status"});
  oci::Seccomp seccomp;
  seccomp.default_action = "SCMP_ACT_ALLOW";
  seccomp.architectures = {"SCMP_ARCH_X86_64"};
  oci::SeccompSyscall rule;
  rule.names = {"mkdir", "mkdirat"};
  rule.action = "SCMP_ACT_ERRNO";
  rule.errno_ret = 13;  // EACCES
  seccomp.syscalls.push_back(rule);
  spec.linux->seccomp = seccomp;
  std::string bundle = Bundle(spec);
  Outcome runc = Runc(bundle);
  Outcome hull = Hull(bundle);
  EXPECT_EQ(hull.code, 0) << hull.err;
  EXPECT_EQ(hull.out, runc.out);
  EXPECT_EQ(hull.err, runc.err);
  EXPECT_NE(hull.err.find("Permission denied"), std::string::npos) << hull.err;
  EXPECT_NE(hull.out.find("mkdir=1"), std::string::npos);
  EXPECT_NE(hull.out.find("Seccomp:\t2"), std::string::npos);
}

TEST_F(RunTest, MemoryLimitIsTheSpecLimit) {
  RequireRunc();
  oci::Spec spec = testing::TestSpec({"sh", "-c",
                                      "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat "
                                      "/sys/fs/cgroup/memory/memory.limit_in_bytes"});
  oci::Resources resources;
  oci::MemoryResources memory;
  memory.limit = 64ll << 20;
  resources.memory = memory;
  spec.linux->resources = resources;
  // With a cgroup namespace the container's cgroup is the root of what it
  // mounts at /sys/fs/cgroup (as Docker sets it up on cgroup v2).
  spec.linux->namespaces.push_back({"cgroup", ""});
  std::string bundle = Bundle(spec);
  Outcome runc = Runc(bundle);
  Outcome hull = Hull(bundle);
  EXPECT_EQ(runc.out, "67108864\n") << runc.err;
  EXPECT_EQ(hull.out, "67108864\n") << hull.err;
}

TEST_F(RunTest, MissingCommandExits127WithRuncsMessage) {
  std::string bundle = Bundle(testing::TestSpec({"no-such-command"}));
  Outcome hull = Hull(bundle);
  EXPECT_EQ(hull.code, 127);
  EXPECT_NE(hull.err.find("exec: \"no-such-command\": executable file not found in $PATH"),
            std::string::npos)
      << hull.err;
}

// --- IO -----------------------------------------------------------------------

TEST_F(RunTest, TenMebibytesWrittenJustBeforeExitArriveWhole) {
  std::string bundle = Bundle(testing::TestSpec(
      {"sh", "-c",
       "head -c 10485760 /dev/urandom > /tmp/data; sha256sum /tmp/data >&2; cat /tmp/data"}));
  Outcome hull = Hull(bundle);
  ASSERT_EQ(hull.code, 0) << hull.err;
  ASSERT_EQ(hull.out.size(), 10485760u);
  std::string copy = scratch_ + "/copy";
  ASSERT_TRUE(WriteFile(copy, hull.out));
  Outcome local = Run({"/usr/bin/sha256sum", copy});
  // stderr carries only the guest's checksum: the streams stay separate.
  EXPECT_EQ(hull.err.substr(0, 64), local.out.substr(0, 64));
  EXPECT_NE(hull.err.find("/tmp/data"), std::string::npos);
}

TEST_F(RunTest, StdinRoundTripsThroughCat) {
  std::string input = scratch_ + "/input";
  Outcome made = Run({"/usr/bin/head", "-c", "10485760", "/dev/urandom"});
  ASSERT_TRUE(WriteFile(input, made.out));
  std::string bundle = Bundle(testing::TestSpec({"cat"}));
  Outcome hull = Hull(bundle, {}, input);
  ASSERT_EQ(hull.code, 0) << hull.err;
  EXPECT_EQ(hull.out.size(), made.out.size());
  EXPECT_TRUE(hull.out == made.out) << "stdin did not round-trip";
}

TEST_F(RunTest, RootfsAndCommandFromTheCommandLine) {
  std::string rootfs = scratch_ + "/plain-rootfs";
  ASSERT_TRUE(testing::MakeBusyboxRootfs(rootfs));
  Outcome hull = Run({HULL_HULLCTL, "--config", config_, "run", "--rootfs", rootfs, "--", "sh",
                      "-c", "echo written > /from-guest; cat /proc/1/cmdline | tr '\\0' ' '"});
  ASSERT_EQ(hull.code, 0) << hull.err;
  EXPECT_EQ(hull.out, "sh -c echo written > /from-guest; cat /proc/1/cmdline | tr '\\0' ' ' ");
  // Writes by the container land in the host directory (virtio-fs).
  EXPECT_EQ(ReadFile(rootfs + "/from-guest").value_or(""), "written\n");
}

// hypervisor.free_page_reporting (on by default): the guest has bound the
// balloon driver to the device, so it reports freed memory to the host.
TEST_F(RunTest, GuestBindsTheFreePageReportingBalloon) {
  std::string rootfs = scratch_ + "/balloon-rootfs";
  ASSERT_TRUE(testing::MakeBusyboxRootfs(rootfs));
  Outcome hull = Run({HULL_HULLCTL, "--config", config_, "run", "--rootfs", rootfs, "--", "sh",
                      "-c", "ls /sys/bus/virtio/drivers/virtio_balloon/ | grep -c '^virtio[0-9]'"});
  ASSERT_EQ(hull.code, 0) << hull.out << hull.err;
  EXPECT_EQ(hull.out, "1\n");
}

// The guest console is the guest's to write, and hull keeps its log on the
// host's /run: a container (root in its VM) that floods the serial console
// leaves at most twice hypervisor.console_log_max_kib on disk.
TEST_F(RunTest, AGuestFloodingItsConsoleStaysWithinTheLogCap) {
  ASSERT_TRUE(WriteFile(config_, ReadFile(config_).value_or("") + "console_log_max_kib = 64\n"));
  // A container as privileged as a CRI one may be: it can make the console's
  // device node (on its /dev, a tmpfs in the guest: virtiofsd makes none in
  // the share) and its device rules allow it.
  oci::Spec spec = testing::TestSpec(
      {"sh", "-c",
       "trap 'exit 143' TERM; mknod /dev/guest-console c 4 64 && "
       "head -c 1048576 /dev/zero | tr '\\0' x > /dev/guest-console && echo flooded && "
       "sleep 600 & wait"});
  ASSERT_TRUE(spec.process && spec.process->capabilities && spec.linux);
  for (auto* set : {&spec.process->capabilities->bounding, &spec.process->capabilities->effective,
                    &spec.process->capabilities->permitted}) {
    set->push_back("CAP_MKNOD");
  }
  if (!spec.linux->resources) spec.linux->resources.emplace();
  spec.linux->resources->devices.push_back(
      {.allow = true, .type = "c", .major = 4, .minor = 64, .access = "rwm"});
  std::string bundle = Bundle(spec);
  const std::string state = scratch_ + "/run/flood";
  uint64_t log_bytes = 0, rotated_bytes = 0;
  std::string rotated;
  Outcome flood = Hull(bundle, {"--name", "flood"}, "/dev/null", [&](pid_t pid) {
    for (int i = 0; i < 1200 && ReadFile(running_out_).value_or("") != "flooded\n"; ++i) {
      std::this_thread::sleep_for(milliseconds(100));
    }
    // The VM's state directory is somewhere under the run's.
    std::error_code error;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(state, error)) {
      if (entry.path().filename() == "console.log") log_bytes = entry.file_size();
      if (entry.path().filename() == "console.log.1") {
        rotated_bytes = entry.file_size();
        rotated = ReadFile(entry.path().string(), 1 << 20).value_or("");
      }
    }
    ::kill(pid, SIGTERM);
  });
  EXPECT_EQ(flood.code, 143) << flood.err;
  EXPECT_LE(log_bytes, 64u << 10);
  EXPECT_EQ(rotated_bytes, 64u << 10) << "the log was never rotated: " << flood.err;
  EXPECT_NE(rotated.find(std::string(32 << 10, 'x')), std::string::npos)
      << "the rotated log is not the guest's flood";
}

// SIGKILL of `hullctl run` itself: its QEMU and virtiofsd die with it, but the
// mounts and the state directory stay until `hullctl gc`, which removes
// them and leaves a live run alone.
TEST_F(RunTest, GcRemovesWhatAKilledHullctlLeftAndSparesALiveOne) {
  std::string rootfs = scratch_ + "/gc-rootfs";
  ASSERT_TRUE(testing::MakeBusyboxRootfs(rootfs));
  const std::string run_dir = scratch_ + "/run";
  auto wait_for_ready = [this] {
    for (int i = 0; i < 600; ++i) {
      if (ReadFile(running_out_).value_or("") == "ready\n") return true;
      std::this_thread::sleep_for(milliseconds(100));
    }
    return false;
  };
  auto command = [&](const std::string& name) {
    return std::vector<std::string>{
        HULL_HULLCTL, "--config", config_,  "run",
        "--rootfs",   rootfs,     "--name", name,
        "--",         "sh",       "-c",     "trap 'exit 143' TERM; echo ready; sleep 600 & wait"};
  };
  Outcome killed = Run(command("gc-dead"), "/dev/null", [&](pid_t pid) {
    ASSERT_TRUE(wait_for_ready()) << "the first run never started";
    ::kill(pid, SIGKILL);
  });
  ASSERT_EQ(killed.code, 137);
  ASSERT_TRUE(PathExists(run_dir + "/gc-dead"))
      << "nothing was left to collect: the test proves nothing";
  EXPECT_FALSE(MountPointsUnder(run_dir + "/gc-dead").empty())
      << "the killed run's mounts are gone already";

  Outcome live = Run(command("gc-live"), "/dev/null", [&](pid_t pid) {
    ASSERT_TRUE(wait_for_ready()) << "the second run never started";
    std::string live_out = running_out_;
    Outcome gc = Run({HULL_HULLCTL, "--config", config_, "gc"});
    running_out_ = live_out;
    EXPECT_EQ(gc.code, 0) << gc.err;
    EXPECT_EQ(gc.out, "removed gc-dead\n") << gc.err;
    EXPECT_FALSE(PathExists(run_dir + "/gc-dead"));
    EXPECT_FALSE(PathExists(run_dir + "/gc-dead.owner"));
    EXPECT_TRUE(PathExists(run_dir + "/gc-live")) << "gc removed a live run";
    ::kill(pid, SIGTERM);  // forwarded to the container, whose shell exits 143
  });
  EXPECT_EQ(live.code, 143) << live.err;
  // TearDown: no mount, process or entry of either run is left.
}

// hullctl on a real terminal: --tty puts it in raw mode, passes the window
// size at start, and forwards a resize (SIGWINCH) to the container.
TEST_F(RunTest, TtySessionFollowsTheWindowSize) {
  std::string bundle = Bundle(testing::TestSpec({"sh", "-c", "stty size; read line; stty size"}));
  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  std::string slave_name = ::ptsname(master);
  winsize size{24, 80, 0, 0};
  ASSERT_EQ(::ioctl(master, TIOCSWINSZ, &size), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();
    int slave = ::open(slave_name.c_str(), O_RDWR);
    ::ioctl(slave, TIOCSCTTY, 0);
    ::dup2(slave, 0);
    ::dup2(slave, 1);
    ::dup2(slave, 2);
    std::vector<std::string> argv = {HULL_HULLCTL, "--config", config_, "run",
                                     "--tty",      "--bundle", bundle};
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(126);
  }
  std::string seen;
  auto read_until = [&](const std::string& needle, int seconds_left) {
    for (int i = 0; i < seconds_left * 10 && seen.find(needle) == std::string::npos; ++i) {
      pollfd p{master, POLLIN, 0};
      if (::poll(&p, 1, 100) > 0) {
        char buf[4096];
        ssize_t n = ::read(master, buf, sizeof buf);
        if (n > 0) seen.append(buf, static_cast<size_t>(n));
      }
    }
    return seen.find(needle) != std::string::npos;
  };
  EXPECT_TRUE(read_until("24 80", 60)) << seen;
  size = {40, 120, 0, 0};
  ASSERT_EQ(::ioctl(master, TIOCSWINSZ, &size), 0);  // the kernel sends hullctl SIGWINCH
  std::this_thread::sleep_for(seconds(1));
  ASSERT_EQ(::write(master, "\r", 1), 1);
  EXPECT_TRUE(read_until("40 120", 30)) << seen;
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_EQ(ExitStatus::FromWaitStatus(status).ShellCode(), 0) << seen;
  ::close(master);
}

// --- bad input ---------------------------------------------------------------------

TEST_F(RunTest, BadBundlesFailClearlyAndLeaveNothing) {
  std::string empty = scratch_ + "/empty-bundle";
  ASSERT_TRUE(MakeDirs(empty));
  Outcome missing = Hull(empty);
  EXPECT_EQ(missing.code, 125);
  EXPECT_NE(missing.err.find("config.json"), std::string::npos) << missing.err;

  ASSERT_TRUE(WriteFile(empty + "/config.json", "{ not json"));
  Outcome invalid = Hull(empty);
  EXPECT_EQ(invalid.code, 125);
  EXPECT_NE(invalid.err.find("config.json"), std::string::npos) << invalid.err;

  oci::Spec future = testing::TestSpec({"true"});
  future.oci_version = "2.0.0";
  std::string future_bundle = Bundle(future);
  Outcome version = Hull(future_bundle);
  EXPECT_EQ(version.code, 125);
  EXPECT_NE(version.err.find("ociVersion `2.0.0` is not supported"), std::string::npos)
      << version.err;

  oci::Spec no_rootfs = testing::TestSpec({"true"});
  no_rootfs.root.path = "missing-rootfs";
  Outcome rootfs = Hull(Bundle(no_rootfs));
  EXPECT_EQ(rootfs.code, 125);
  EXPECT_NE(rootfs.err.find("missing-rootfs"), std::string::npos) << rootfs.err;

  oci::Spec impossible = testing::TestSpec({"true"});
  oci::Resources resources;
  oci::CpuResources cpu;
  cpu.cpus = "63";  // the VM has one vCPU
  resources.cpu = cpu;
  impossible.linux->resources = resources;
  Outcome cpus = Hull(Bundle(impossible));
  EXPECT_EQ(cpus.code, 125);
  EXPECT_NE(cpus.err.find("cpuset.cpus"), std::string::npos) << cpus.err;
}

}  // namespace
}  // namespace hull
