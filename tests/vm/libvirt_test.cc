// The libvirt backend end to end: a private libvirtd (tests/support/
// private-libvirtd), real QEMU under it, the real guest image. The same
// checks as for the QEMU backend: the agent answers, a container's output
// and exit code come back, a VM killed from outside is reported, and nothing
// is left behind: no domain, process, mount, socket or run directory.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "bundle.h"
#include "hull/core/config.h"
#include "hull/core/syscall.h"
#include "hull/hypervisor/hypervisor.h"
#include "hull/sandbox/grpc_agent.h"
#include "libvirt_env.h"
#include "testlib.h"

namespace hull {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

using Outcome = testlib::CommandOutcome;

class LibvirtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HULL_REQUIRE_ROOT("starts a libvirt daemon, mounts the shared directory");
    HULL_REQUIRE_QEMU();
    if (!IsExecutable("/usr/sbin/libvirtd"))
      GTEST_SKIP() << "libvirtd is not installed (libvirt-daemon-system)";
    if (!IsExecutable(testing::kBusybox))
      GTEST_SKIP() << "busybox-static is not installed (/bin/busybox)";
    ASSERT_TRUE(PathExists(std::string(HULL_GUEST_DIR) + "/initrd.img")) << "guest image missing";
    scratch_ = ::testing::TempDir() + "/hull-libvirt-" + RandomHex(4);
    run_dir_ = scratch_ + "/run";
    ASSERT_TRUE(MakeDirs(run_dir_));
    auto daemon =
        testing::PrivateLibvirtd::Start(scratch_ + "/libvirt", run_dir_, HULL_LIBVIRT_CACHE);
    if (!daemon && daemon.error().code() == ErrorCode::kUnavailable)
      GTEST_SKIP() << daemon.error().ToString();
    ASSERT_TRUE(daemon) << daemon.error().ToString();
    libvirtd_ = std::move(*daemon);
    config_path_ = scratch_ + "/config.toml";
    ASSERT_TRUE(WriteFile(config_path_, "[runtime]\nrun_dir = \"" + run_dir_ +
                                            "\"\n"
                                            "[hypervisor]\nbackend = \"libvirt\"\n"
                                            "libvirt_uri = \"" +
                                            libvirtd_->uri() +
                                            "\"\n"
                                            "kernel = \"" +
                                            HULL_GUEST_DIR +
                                            "/vmlinuz\"\n"
                                            "initrd = \"" +
                                            HULL_GUEST_DIR + "/initrd.img\"\n"));
  }

  void TearDown() override {
    if (scratch_.empty()) return;
    if (libvirtd_) {
      EXPECT_TRUE(libvirtd_->Domains().empty()) << "a libvirt domain was left behind";
      EXPECT_TRUE(RunDirEmpty()) << "state was left in " << run_dir_;
      auto mountinfo = ReadFile("/proc/self/mountinfo", 16 << 20);
      ASSERT_TRUE(mountinfo);
      EXPECT_EQ(mountinfo->find(run_dir_ + "/"), std::string::npos)
          << "a mount under " << run_dir_ << " was left";
      EXPECT_FALSE(ProcessMentions(run_dir_)) << "a qemu or virtiofsd of this test still runs";
      if (HasFailure())
        std::fprintf(stderr, "--- libvirtd ---\n%s\n", libvirtd_->LogTail().c_str());
      libvirtd_.reset();
    }
    (void)RemoveTree(scratch_);
  }

  Config LoadTestConfig() {
    auto config = LoadConfig(config_path_);
    EXPECT_TRUE(config) << config.error().ToString();
    return config ? *config : Config{};
  }

  // A libvirt VM with a shared directory (and so a virtiofsd libvirt starts).
  void LaunchSharing(VmConfig& config, std::unique_ptr<Vm>& vm) {
    auto hypervisor = MakeHypervisor("libvirt");
    ASSERT_TRUE(hypervisor);
    config.share_dir = true;
    auto launched = (*hypervisor)->Launch(config);
    ASSERT_TRUE(launched) << launched.error().ToString() << "\n"
                          << libvirtd_->LogTail("hull-" + config.id);
    vm = std::move(*launched);
  }

  VmConfig TestVmConfig() {
    auto vm = VmConfigFromConfig(LoadTestConfig(), "lv" + RandomHex(5));
    EXPECT_TRUE(vm) << vm.error().ToString();
    return vm ? *vm : VmConfig{};
  }

  static bool ProcessMentions(const std::string& needle) {
    DIR* proc = ::opendir("/proc");
    if (proc == nullptr) return false;
    bool found = false;
    while (dirent* e = ::readdir(proc)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      auto cmdline = ReadFile(std::string("/proc/") + e->d_name + "/cmdline", 1 << 16);
      if (cmdline && cmdline->find(needle) != std::string::npos) found = true;
    }
    ::closedir(proc);
    return found;
  }

  bool RunDirEmpty() {
    DIR* dir = ::opendir(run_dir_.c_str());
    if (dir == nullptr) return true;
    bool empty = true;
    while (dirent* e = ::readdir(dir)) {
      if (std::string_view(e->d_name) != "." && std::string_view(e->d_name) != "..") empty = false;
    }
    ::closedir(dir);
    return empty;
  }

  // Runs hullctl with this test's configuration: exit code, stdout and
  // stderr together in `out`.
  Outcome Hullctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {HULL_HULLCTL, "--config", config_path_};
    argv.insert(argv.end(), args.begin(), args.end());
    return testlib::RunCommand(std::move(argv), {.merge_stderr = true});
  }

  std::string scratch_;
  std::string run_dir_;
  std::string config_path_;
  std::unique_ptr<testing::PrivateLibvirtd> libvirtd_;
};

TEST_F(LibvirtTest, CheckReportsLibvirtReachable) {
  Outcome check = Hullctl({"check"});
  EXPECT_NE(check.out.find("ok    libvirt        libvirt "), std::string::npos) << check.out;
  EXPECT_NE(check.out.find(libvirtd_->uri()), std::string::npos) << check.out;
}

TEST_F(LibvirtTest, UnreachableLibvirtIsAClearErrorAndLeavesNothing) {
  VmConfig config = TestVmConfig();
  config.libvirt_uri = "qemu:///system?socket=" + scratch_ + "/no-such.sock";
  auto hypervisor = MakeHypervisor("libvirt");
  ASSERT_TRUE(hypervisor);
  auto vm = (*hypervisor)->Launch(config);
  ASSERT_FALSE(vm);
  EXPECT_NE(vm.error().ToString().find("connect to libvirt at `" + config.libvirt_uri + "`"),
            std::string::npos)
      << vm.error().ToString();
  EXPECT_FALSE(PathExists(run_dir_ + "/" + config.id));
}

TEST_F(LibvirtTest, PingReachesTheAgent) {
  Outcome ping = Hullctl({"vm", "ping", "--hypervisor", "libvirt", "--json"});
  ASSERT_EQ(ping.code, 0) << ping.out;
  auto json = nlohmann::json::parse(ping.out.substr(ping.out.find('{')), nullptr, false);
  ASSERT_TRUE(json.is_object()) << ping.out;
  EXPECT_EQ(json.value("transport", ""), "serial") << ping.out;
  EXPECT_GT(json.value("ready_ms", 0), 0) << ping.out;
}

TEST_F(LibvirtTest, RunShowsOutputExitCodeAndWritesThroughVirtiofs) {
  std::string rootfs = scratch_ + "/rootfs";
  ASSERT_TRUE(testing::MakeBusyboxRootfs(rootfs));
  Outcome run = Hullctl({"run", "--hypervisor", "libvirt", "--rootfs", rootfs, "--", "/bin/sh",
                         "-c", "echo hello through libvirt; echo written > /from-guest; exit 3"});
  EXPECT_EQ(run.code, 3) << run.out;
  EXPECT_NE(run.out.find("hello through libvirt"), std::string::npos) << run.out;
  EXPECT_EQ(ReadFile(rootfs + "/from-guest").value_or(""), "written\n");
}

TEST_F(LibvirtTest, VmKilledFromOutsideIsReportedAndCleanedUp) {
  VmConfig config = TestVmConfig();
  std::unique_ptr<Vm> vm;
  ASSERT_NO_FATAL_FAILURE(LaunchSharing(config, vm));
  auto client = sandbox::GrpcAgent::Connect(
      [&](Clock::time_point d) { return vm->ConnectAgent(d); }, Clock::now() + seconds(90));
  ASSERT_TRUE(client) << client.error().ToString() << "\n"
                      << ReadFile(vm->console_log_path()).value_or("");
  EXPECT_EQ(libvirtd_->Domains(), std::vector<std::string>{"hull-" + config.id});

  pid_t pid = vm->pid();
  ASSERT_GT(pid, 0) << "QEMU's pid was not found";
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  auto exited = vm->WaitForExit(seconds(20));
  ASSERT_TRUE(exited);
  ASSERT_TRUE(exited->has_value()) << "hull did not notice the VM died";
  EXPECT_FALSE((*exited)->expected);
  EXPECT_FALSE((*exited)->process.success());
  EXPECT_NE((*exited)->reason.find("QEMU died"), std::string::npos) << (*exited)->reason;
  auto fd = vm->ConnectAgent(Clock::now() + seconds(5));
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().code(), ErrorCode::kUnavailable);

  std::string state_dir = vm->state_dir();
  VmExit stopped = vm->Stop(seconds(0));
  EXPECT_FALSE(stopped.expected);
  EXPECT_FALSE(PathExists(state_dir));
  EXPECT_TRUE(libvirtd_->Domains().empty());
}

TEST_F(LibvirtTest, StopDestroysTheDomainAndItsVirtiofsd) {
  VmConfig config = TestVmConfig();
  std::unique_ptr<Vm> vm;
  ASSERT_NO_FATAL_FAILURE(LaunchSharing(config, vm));
  EXPECT_TRUE(vm->running());
  EXPECT_TRUE(ProcessMentions(vm->shared_dir()))
      << "libvirt started no virtiofsd for the shared directory";
  VmExit stopped = vm->Stop(seconds(0));
  EXPECT_TRUE(stopped.expected);
  EXPECT_TRUE(stopped.process.success());
  EXPECT_FALSE(vm->running());
}

// A process that dies without stopping its VM takes the domain with it
// (autodestroy), as PR_SET_PDEATHSIG does for the QEMU backend.
TEST_F(LibvirtTest, DomainDiesWithTheProcessThatCreatedIt) {
  VmConfig config = TestVmConfig();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  // Forked before this process touches libvirt: the child starts its own
  // event loop thread.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    auto hypervisor = MakeHypervisor("libvirt");
    auto vm = hypervisor ? (*hypervisor)->Launch(config)
                         : Result<std::unique_ptr<Vm>>(hypervisor.error());
    char status = vm ? 'y' : 'n';
    (void)!::write(ready[1], &status, 1);
    if (!vm) ::_exit(1);
    while (true) ::pause();  // killed below, VM still running
  }
  ::close(ready[1]);
  char status = 0;
  ASSERT_EQ(::read(ready[0], &status, 1), 1);
  ::close(ready[0]);
  ASSERT_EQ(status, 'y') << libvirtd_->LogTail("hull-" + config.id);
  EXPECT_EQ(libvirtd_->Domains(), std::vector<std::string>{"hull-" + config.id});
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  bool gone = false;
  for (int i = 0; i < 150 && !gone; ++i) {
    gone = libvirtd_->Domains().empty() && !ProcessMentions(run_dir_);
    if (!gone) ::usleep(100 * 1000);
  }
  EXPECT_TRUE(gone) << "the domain outlived the process that created it";
  // The state directory is the dead process's to remove; it could not.
  (void)RemoveTree(run_dir_ + "/" + config.id);
}

}  // namespace
}  // namespace hull
