// The agent moves its root off the initramfs at boot (as switch_root does),
// so that containers get pivot_root and nothing of the agent under their
// root. Real VMs with the real guest image, plus the copy and delete steps
// on the host, in temp dirs.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "bundle.h"
#include "guest_init.h"
#include "hull/core/process.h"
#include "hull/core/syscall.h"
#include "hull/hypervisor/hypervisor.h"
#include "hull/sandbox/grpc_agent.h"
#include "testlib.h"

namespace hull {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

using Outcome = testlib::CommandOutcome;

// One line of /proc/<pid>/mountinfo: the fields the assertions need.
struct MountInfoLine {
  std::string mount_point;
  std::string fstype;
  std::string source;
};

std::vector<MountInfoLine> ParseMountInfo(const std::string& text) {
  std::vector<MountInfoLine> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string field;
    MountInfoLine parsed;
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    for (int i = 0; i < 5 && fields >> field; ++i) {
      if (i == 4) parsed.mount_point = field;
    }
    while (fields >> field && field != "-") {
    }
    fields >> parsed.fstype >> parsed.source;
    lines.push_back(parsed);
  }
  return lines;
}

// --- the switch's copy and delete, on the host ------------------------------

class RootCopyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/hull-root-copy-" + RandomHex(4);
    ASSERT_TRUE(MakeDirs(dir_ + "/from"));
    ASSERT_TRUE(MakeDirs(dir_ + "/to"));
  }
  void TearDown() override {
    if (mounted_) ::umount2((dir_ + "/from/mnt").c_str(), MNT_DETACH);
    (void)RemoveTree(dir_);
  }
  UniqueFd Open(const std::string& path) {
    return UniqueFd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  mode_t Mode(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    return st.st_mode;
  }
  // Needs root: a tmpfs on from/mnt, standing for /proc and friends.
  void MountOnFromMnt() {
    HULL_REQUIRE_ROOT("mounts a tmpfs");
    ASSERT_TRUE(MakeDirs(dir_ + "/from/mnt"));
    ASSERT_EQ(::mount("tmpfs", (dir_ + "/from/mnt").c_str(), "tmpfs", 0, nullptr), 0);
    mounted_ = true;
    ASSERT_TRUE(WriteFile(dir_ + "/from/mnt/hidden", "on another filesystem"));
  }

  std::string dir_;
  bool mounted_ = false;
};

TEST_F(RootCopyTest, CopiesFilesDirectoriesSymlinksAndNodesWithTheirModes) {
  const std::string from = dir_ + "/from";
  const std::string to = dir_ + "/to";
  ASSERT_TRUE(MakeDirs(from + "/lib/deep"));
  ASSERT_TRUE(WriteFile(from + "/init", std::string(300000, 'x'), 0755));
  ASSERT_TRUE(WriteFile(from + "/lib/deep/libc.so.6", "elf", 0644));
  ASSERT_TRUE(WriteFile(from + "/empty", "", 0600));
  ASSERT_EQ(::symlink("deep/libc.so.6", (from + "/lib/libc.so").c_str()), 0);
  ASSERT_TRUE(MakeDirs(from + "/tmp"));
  ASSERT_EQ(::chmod((from + "/tmp").c_str(), 01777), 0);
  ASSERT_TRUE(MakeDirs(from + "/root"));
  ASSERT_EQ(::chmod((from + "/root").c_str(), 0500), 0);  // read-only: filled before its mode
  ASSERT_TRUE(WriteFile(from + "/root/.profile", "x", 0644));
  ASSERT_EQ(::mkfifo((from + "/fifo").c_str(), 0640), 0);

  {
    UniqueFd from_fd = Open(from);
    UniqueFd to_fd = Open(to);
    Status copied = agent::CopyFilesystemTree(from_fd.get(), to_fd.get());
    ASSERT_TRUE(copied) << copied.error().ToString();
  }
  EXPECT_EQ(ReadFile(to + "/init").value_or(""), std::string(300000, 'x'));
  EXPECT_EQ(Mode(to + "/init"), S_IFREG | 0755);
  EXPECT_EQ(ReadFile(to + "/lib/deep/libc.so.6").value_or(""), "elf");
  EXPECT_EQ(Mode(to + "/empty"), S_IFREG | 0600);
  EXPECT_EQ(ReadFile(to + "/empty").value_or("missing"), "");
  char link[64] = {};
  ASSERT_GT(::readlink((to + "/lib/libc.so").c_str(), link, sizeof link - 1), 0);
  EXPECT_STREQ(link, "deep/libc.so.6");
  EXPECT_EQ(Mode(to + "/tmp"), S_IFDIR | 01777);
  EXPECT_EQ(Mode(to + "/root"), S_IFDIR | 0500);
  EXPECT_EQ(ReadFile(to + "/root/.profile").value_or(""), "x");
  EXPECT_EQ(Mode(to + "/fifo"), S_IFIFO | 0640);
  ::chmod((from + "/root").c_str(), 0700);
  ::chmod((to + "/root").c_str(), 0700);
}

TEST_F(RootCopyTest, CopySkipsMountPoints) {
  MountOnFromMnt();
  if (HasFatalFailure() || IsSkipped()) return;
  ASSERT_TRUE(WriteFile(dir_ + "/from/kept", "kept"));
  UniqueFd from_fd = Open(dir_ + "/from");
  UniqueFd to_fd = Open(dir_ + "/to");
  ASSERT_TRUE(agent::CopyFilesystemTree(from_fd.get(), to_fd.get()));
  EXPECT_EQ(ReadFile(dir_ + "/to/kept").value_or(""), "kept");
  EXPECT_FALSE(PathExists(dir_ + "/to/mnt")) << "a mount point is not part of the tree";
}

TEST_F(RootCopyTest, CopyRefusesToOverwrite) {
  ASSERT_TRUE(WriteFile(dir_ + "/from/file", "new"));
  ASSERT_TRUE(WriteFile(dir_ + "/to/file", "old"));
  UniqueFd from_fd = Open(dir_ + "/from");
  UniqueFd to_fd = Open(dir_ + "/to");
  Status copied = agent::CopyFilesystemTree(from_fd.get(), to_fd.get());
  ASSERT_FALSE(copied);
  EXPECT_EQ(copied.error().sys_errno(), EEXIST);
  EXPECT_NE(copied.error().ToString().find("`file`"), std::string::npos)
      << copied.error().ToString();
  EXPECT_EQ(ReadFile(dir_ + "/to/file").value_or(""), "old");
}

TEST_F(RootCopyTest, DeleteEmptiesTheDirectoryButNotMountsOrItself) {
  MountOnFromMnt();
  if (HasFatalFailure() || IsSkipped()) return;
  const std::string from = dir_ + "/from";
  ASSERT_TRUE(MakeDirs(from + "/lib/deep"));
  ASSERT_TRUE(WriteFile(from + "/lib/deep/libc.so.6", "elf"));
  ASSERT_EQ(::symlink("/nonexistent", (from + "/dangling").c_str()), 0);
  ASSERT_TRUE(WriteFile(from + "/init", "agent"));
  UniqueFd from_fd = Open(from);
  Status deleted = agent::DeleteFilesystemContents(from_fd.get());
  ASSERT_TRUE(deleted) << deleted.error().ToString();
  EXPECT_TRUE(PathExists(from)) << "the directory itself stays";
  EXPECT_FALSE(PathExists(from + "/lib"));
  EXPECT_FALSE(PathExists(from + "/init"));
  struct stat st {};
  EXPECT_NE(::lstat((from + "/dangling").c_str(), &st), 0);
  EXPECT_EQ(ReadFile(from + "/mnt/hidden").value_or(""), "on another filesystem")
      << "what is mounted under it is left alone";
}

// --- the guest ------------------------------------------------------------------

class GuestRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HULL_REQUIRE_QEMU();
    ASSERT_TRUE(PathExists(std::string(HULL_GUEST_DIR) + "/initrd.img"))
        << "guest image missing: build it with `cmake --build build --target guest-image`";
    scratch_ = ::testing::TempDir() + "/hull-guest-root-" + RandomHex(4);
    ASSERT_TRUE(MakeDirs(scratch_ + "/run"));
  }

  void TearDown() override {
    if (!scratch_.empty()) (void)RemoveTree(scratch_);
  }

  Config BaseConfig() {
    Config config;
    config.run_dir = scratch_ + "/run";
    config.hypervisor.kernel = std::string(HULL_GUEST_DIR) + "/vmlinuz";
    config.hypervisor.initrd = std::string(HULL_GUEST_DIR) + "/initrd.img";
    return config;
  }

  // `hullctl run` needs root: it mounts the rootfs into the VM's shared
  // directory.
  void RequireHullctlRun() {
    HULL_REQUIRE_ROOT("hullctl run mounts into the shared dir");
    if (!IsExecutable(testing::kBusybox)) GTEST_SKIP() << "busybox-static is not installed";
    const std::string guest = HULL_GUEST_DIR;
    std::string config_path = scratch_ + "/config.toml";
    std::string config = "[runtime]\nrun_dir = \"" + scratch_ + "/run\"\n";
    config += "[hypervisor]\ntemplate_dir = \"" + testlib::SharedTemplateDir() + "\"\n";
    config += "kernel = \"" + guest + "/vmlinuz\"\n";
    config += "initrd = \"" + guest + "/initrd.img\"\n";
    ASSERT_TRUE(WriteFile(config_path, config));
    hullctl_config_ = config_path;
  }

  Outcome Hullctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {HULL_HULLCTL, "--config", hullctl_config_};
    argv.insert(argv.end(), args.begin(), args.end());
    return testlib::RunCommand(std::move(argv));
  }

  std::string scratch_;
  std::string hullctl_config_;
};

TEST_F(GuestRootTest, AgentRunsOnTheSharedRootWithStartupTimedFromItsExec) {
  auto hypervisor = MakeHypervisor("qemu");
  ASSERT_TRUE(hypervisor);
  auto vm_config = VmConfigFromConfig(BaseConfig(), "g" + RandomHex(5));
  ASSERT_TRUE(vm_config) << vm_config.error().ToString();
  auto vm = (*hypervisor)->Launch(*vm_config);
  ASSERT_TRUE(vm) << vm.error().ToString();
  auto client = sandbox::GrpcAgent::Connect(
      [&vm](Clock::time_point d) { return (*vm)->ConnectAgent(d); }, Clock::now() + seconds(90));
  std::string console_path = (*vm)->console_log_path();
  ASSERT_TRUE(client) << client.error().ToString() << "\n--- console ---\n"
                      << ReadFile(console_path).value_or("");

  auto details = (*client)->GetGuestDetails();
  ASSERT_TRUE(details) << details.error().ToString();
  // The modules were loaded from the shared root.
  const std::vector<std::string>& modules = details->loaded_modules;
  EXPECT_NE(std::find(modules.begin(), modules.end(), "virtio_console"), modules.end());
  // agent_start is the agent's exec by hull-init, on the shared root.
  const sandbox::GuestDetails& startup = *details;
  EXPECT_GT(startup.agent_start_us, 0u);
  EXPECT_GT(startup.mounts_done_us, startup.agent_start_us);
  EXPECT_GE(startup.modules_done_us, startup.mounts_done_us);
  EXPECT_GE(startup.network_done_us, startup.modules_done_us);
  EXPECT_GE(startup.listening_us, startup.network_done_us);
  EXPECT_GE(startup.first_request_us, startup.listening_us);
  EXPECT_GT(details->memory_available_bytes, 0u);
  std::cout << "agent start " << startup.agent_start_us / 1000 << " ms, mounts done "
            << startup.mounts_done_us / 1000 << " ms, listening " << startup.listening_us / 1000
            << " ms; MemTotal " << details->memory_total_bytes << ", MemAvailable "
            << details->memory_available_bytes << "\n";
  RecordProperty("memory_available_bytes", std::to_string(details->memory_available_bytes));

  // hull-init mounted the shared root and the agent runs on it: no copy
  // of the initramfs, and nothing fatal on the way.
  std::string console = ReadFile(console_path).value_or("");
  EXPECT_NE(console.find("running on the shared read-only guest root"), std::string::npos)
      << console;
  EXPECT_EQ(console.find("root moved off the initramfs"), std::string::npos) << console;
  EXPECT_EQ(console.find("fatal"), std::string::npos) << console;
  (*vm)->Stop(seconds(0));
}

// The container's mount table as it sees it: its rootfs (virtiofs) alone on
// "/", and no `rootfs` (the initramfs) anywhere.
TEST_F(GuestRootTest, ContainerHasItsRootfsAloneOnSlash) {
  RequireHullctlRun();
  if (HasFatalFailure() || IsSkipped()) return;
  std::string rootfs = scratch_ + "/rootfs";
  ASSERT_TRUE(testing::MakeBusyboxRootfs(rootfs));
  Outcome run = Hullctl({"run", "--rootfs", rootfs, "--", "cat", "/proc/self/mountinfo"});
  ASSERT_EQ(run.code, 0) << run.err;
  std::vector<MountInfoLine> mounts = ParseMountInfo(run.out);
  ASSERT_FALSE(mounts.empty()) << run.out;
  int on_slash = 0;
  for (const auto& mount : mounts) {
    if (mount.mount_point == "/") {
      ++on_slash;
      EXPECT_EQ(mount.fstype, "virtiofs") << run.out;
    }
    EXPECT_NE(mount.fstype, "rootfs") << run.out;
  }
  EXPECT_EQ(on_slash, 1) << run.out;
}

// The decisive check. The mountinfo above looks the same whether the engine
// used pivot_root or MS_MOVE+chroot: mounts outside a process's root are
// not listed. A privileged container that detaches its root and re-enters
// its mount namespace lands at the bottom of the namespace's mount tree:
// with MS_MOVE+chroot that was the agent's initramfs (with /init and the
// agent's /dev and /run); after pivot_root on a switched root it is the
// kernel's rootfs, emptied by the switch.
TEST_F(GuestRootTest, PrivilegedContainerFindsNothingUnderItsRoot) {
  RequireHullctlRun();
  if (HasFatalFailure() || IsSkipped()) return;
  ASSERT_TRUE(IsExecutable(HULL_GUEST_ROOT_PROBE));
  std::string bundle = scratch_ + "/bundle";
  oci::Spec spec = testing::TestSpec({"/bin/guest-root-probe"});
  ASSERT_TRUE(spec.process && spec.process->capabilities);
  for (auto* set : {&spec.process->capabilities->bounding, &spec.process->capabilities->effective,
                    &spec.process->capabilities->permitted}) {
    set->push_back("CAP_SYS_ADMIN");
    set->push_back("CAP_SYS_CHROOT");
  }
  ASSERT_TRUE(testing::MakeBundle(bundle, spec));
  auto probe = ReadFile(HULL_GUEST_ROOT_PROBE);
  ASSERT_TRUE(probe);
  ASSERT_TRUE(WriteFile(bundle + "/rootfs/bin/guest-root-probe", *probe, 0755));

  Outcome run = Hullctl({"run", "--bundle", bundle});
  ASSERT_EQ(run.code, 0) << run.out << run.err;
  EXPECT_EQ(run.out, "") << "the container reached files outside its root";
}

}  // namespace
}  // namespace hull
