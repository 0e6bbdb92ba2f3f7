// The root filesystem setup, for real: a busybox rootfs in a temp dir, the
// plan applied in a child with its own mount, pid, uts and ipc namespaces,
// then /bin/sh inside printing what it sees. Needs root and busybox-static.
#include "engine/rootfs.h"

#include <elf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "hull/core/fd.h"
#include "hull/core/syscall.h"
#include "testlib.h"

namespace hull::engine {
namespace {

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_TRUE(Contains(haystack, needle)) << "missing `" << (needle) << "` in:\n" << (haystack)

// The line of `output` starting with `key=`, without the key.
std::string Value(const std::string& output, const std::string& key) {
  size_t pos = 0;
  while (pos < output.size()) {
    size_t end = output.find('\n', pos);
    if (end == std::string::npos) end = output.size();
    std::string line = output.substr(pos, end - pos);
    if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
    pos = end + 1;
  }
  return "<no " + key + ">";
}

// A static busybox, or "" (a dynamic one cannot run in the bare rootfs).
std::string FindStaticBusybox() {
  for (const char* path : {"/bin/busybox", "/usr/bin/busybox"}) {
    auto image = ReadFile(path);
    if (!image || image->size() < sizeof(Elf64_Ehdr)) continue;
    Elf64_Ehdr header;
    std::memcpy(&header, image->data(), sizeof header);
    if (std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 || header.e_ident[EI_CLASS] != ELFCLASS64)
      continue;
    bool dynamic = false;
    for (unsigned i = 0; i < header.e_phnum; ++i) {
      size_t offset = header.e_phoff + static_cast<size_t>(i) * header.e_phentsize;
      if (offset + sizeof(Elf64_Phdr) > image->size()) break;
      Elf64_Phdr program;
      std::memcpy(&program, image->data() + offset, sizeof program);
      dynamic |= program.p_type == PT_INTERP;
    }
    if (!dynamic) return path;
  }
  return "";
}

oci::Spec RuncDefaultSpec() {
  oci::Spec spec;
  spec.oci_version = "1.0.2-dev";
  spec.root = {"rootfs", true};
  spec.process.emplace();
  spec.process->args = {"sh"};
  spec.mounts = {
      {"/proc", "proc", "proc", {}},
      {"/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}},
      {"/dev/pts",
       "devpts",
       "devpts",
       {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
      {"/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
      {"/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}},
      {"/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}},
      {"/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", "ro"}},
  };
  spec.linux.emplace();
  spec.linux->namespaces = {{"pid", ""}, {"network", ""}, {"ipc", ""}, {"uts", ""}, {"mount", ""}};
  spec.linux->masked_paths = {"/proc/acpi",        "/proc/asound",        "/proc/kcore",
                              "/proc/keys",        "/proc/latency_stats", "/proc/timer_list",
                              "/proc/timer_stats", "/proc/sched_debug",   "/sys/firmware",
                              "/proc/scsi"};
  spec.linux->readonly_paths = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                "/proc/sysrq-trigger"};
  return spec;
}

bool HostHasCgroup2() {
  struct statfs fs {};
  return ::statfs("/sys/fs/cgroup", &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC;
}

// The runc default spec as this host can run it: its "cgroup" mount needs
// cgroup v2 (the guest's), so it is dropped on a v1 host.
oci::Spec HostDefaultSpec() {
  oci::Spec spec = RuncDefaultSpec();
  if (!HostHasCgroup2()) spec.mounts.pop_back();
  return spec;
}

const RootfsStep* FindStep(const RootfsPlan& plan, RootfsStepKind kind,
                           const std::string& path = "") {
  for (const auto& step : plan.steps) {
    if (step.kind == kind && (path.empty() || step.target.path == path)) return &step;
  }
  return nullptr;
}

size_t StepIndex(const RootfsPlan& plan, RootfsStepKind kind) {
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    if (plan.steps[i].kind == kind) return i;
  }
  return plan.steps.size();
}

// ---------------------------------------------------------------------------
// Planning: no root needed.

TEST(MountOptionsTest, SplitsFlagsFromData) {
  auto options = ParseMountOptions({"nosuid", "strictatime", "mode=755", "size=65536k"});
  ASSERT_TRUE(options) << options.error().ToString();
  EXPECT_EQ(options->flags, static_cast<unsigned long>(MS_NOSUID | MS_STRICTATIME));
  EXPECT_EQ(options->data, "mode=755,size=65536k");
  EXPECT_TRUE(options->propagation.empty());
}

TEST(MountOptionsTest, ClearingOptionsAndPropagationAndRecursive) {
  auto options = ParseMountOptions(
      {"rbind", "ro", "nosuid", "suid", "rprivate", "rro", "noexec", "exec", "newinstance"});
  ASSERT_TRUE(options) << options.error().ToString();
  EXPECT_EQ(options->flags, static_cast<unsigned long>(MS_BIND | MS_REC | MS_RDONLY));
  ASSERT_EQ(options->propagation.size(), 1u);
  EXPECT_EQ(options->propagation[0], static_cast<unsigned long>(MS_PRIVATE | MS_REC));
  EXPECT_EQ(options->recursive_set, static_cast<uint64_t>(MOUNT_ATTR_RDONLY));
  EXPECT_EQ(options->data, "newinstance");  // unknown to the table: the filesystem's business
}

TEST(MountOptionsTest, RefusesWhatHullCannotHonour) {
  auto copy_up = ParseMountOptions({"tmpcopyup"});
  ASSERT_FALSE(copy_up);
  EXPECT_EQ(copy_up.error().code(), ErrorCode::kUnimplemented);
  EXPECT_FALSE(ParseMountOptions({"idmap"}));
}

class RootfsPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/hull-rootfs-plan.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    rootfs_ = dir_ + "/rootfs";
    ASSERT_EQ(::mkdir(rootfs_.c_str(), 0755), 0);
  }
  void TearDown() override {
    if (dir_.empty()) return;
    EXPECT_TRUE(RemoveTree(dir_));
  }
  std::string dir_;
  std::string rootfs_;
};

TEST_F(RootfsPlanTest, DefaultSpecFollowsRuncOrder) {
  auto plan = PlanRootfs(HostDefaultSpec(), rootfs_);
  ASSERT_TRUE(plan) << plan.error().ToString();
  ASSERT_FALSE(plan->steps.empty());
  EXPECT_EQ(plan->steps[0].kind, RootfsStepKind::kRootPropagation);
  EXPECT_EQ(plan->steps[0].flags, static_cast<unsigned long>(MS_SLAVE | MS_REC));  // runc's default

  const RootfsStep* dev = FindStep(*plan, RootfsStepKind::kMount, "/dev");
  ASSERT_NE(dev, nullptr);
  EXPECT_EQ(dev->fstype, "tmpfs");
  EXPECT_EQ(dev->flags, static_cast<unsigned long>(MS_NOSUID | MS_STRICTATIME));
  EXPECT_EQ(dev->data, "mode=755,size=65536k");
  EXPECT_EQ(dev->description, "mounts[1] (/dev): mount tmpfs");

  const RootfsStep* null = FindStep(*plan, RootfsStepKind::kDevice, "/dev/null");
  ASSERT_NE(null, nullptr);
  EXPECT_EQ(null->mode, static_cast<mode_t>(S_IFCHR | 0666));
  EXPECT_EQ(null->device, makedev(1, 3));
  const RootfsStep* ptmx = FindStep(*plan, RootfsStepKind::kSymlink, "/dev/ptmx");
  ASSERT_NE(ptmx, nullptr);
  EXPECT_EQ(ptmx->source, "pts/ptmx");
  EXPECT_TRUE(ptmx->replace);

  // Read-only root before the switch; readonly and masked paths after it,
  // in their own phase (sysctls go in between).
  EXPECT_LT(StepIndex(*plan, RootfsStepKind::kReadonlyRoot),
            StepIndex(*plan, RootfsStepKind::kPivotRoot));
  const RootfsStep* proc_sys = FindStep(*plan, RootfsStepKind::kReadonlyPath, "/proc/sys");
  ASSERT_NE(proc_sys, nullptr);
  EXPECT_EQ(proc_sys->phase, RootfsPhase::kProtectPaths);
  EXPECT_EQ(proc_sys->description, "linux.readonlyPaths[3] (/proc/sys): make read-only");
  EXPECT_NE(FindStep(*plan, RootfsStepKind::kMaskPath, "/proc/kcore"), nullptr);
}

TEST_F(RootfsPlanTest, MissingBindSourceNamesTheMount) {
  oci::Spec spec;
  spec.mounts = {{"/proc", "proc", "proc", {}}, {"/data", "bind", dir_ + "/missing", {"rbind"}}};
  auto plan = PlanRootfs(spec, rootfs_);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().ToString(),
            "mounts[1] (/data): source `" + dir_ + "/missing` does not exist");
}

TEST_F(RootfsPlanTest, CgroupMountNeedsCgroupV2) {
  auto plan = PlanRootfs(RuncDefaultSpec(), rootfs_);
  if (HostHasCgroup2()) {
    ASSERT_TRUE(plan) << plan.error().ToString();
    const RootfsStep* cgroup = FindStep(*plan, RootfsStepKind::kMount, "/sys/fs/cgroup");
    ASSERT_NE(cgroup, nullptr);
    EXPECT_EQ(cgroup->fstype, "cgroup2");
  } else {
    ASSERT_FALSE(plan);
    EXPECT_EQ(plan.error().code(), ErrorCode::kUnimplemented);
    EXPECT_CONTAINS(plan.error().ToString(), "mounts[6] (/sys/fs/cgroup)");
  }
}

TEST_F(RootfsPlanTest, RefusesMountsInsideProc) {
  oci::Spec spec;
  spec.mounts = {{"/proc", "proc", "proc", {}}, {"/proc/sys/kernel", "tmpfs", "tmpfs", {}}};
  auto plan = PlanRootfs(spec, rootfs_);
  ASSERT_FALSE(plan);
  EXPECT_CONTAINS(plan.error().ToString(),
                  "mounts[1] (/proc/sys/kernel): cannot mount inside /proc");

  ASSERT_TRUE(WriteFile(dir_ + "/cpuinfo", "fake\n"));
  spec.mounts[1] = {"/proc/cpuinfo", "bind", dir_ + "/cpuinfo", {"bind"}};  // lxcfs-style: allowed
  EXPECT_TRUE(PlanRootfs(spec, rootfs_));
}

TEST_F(RootfsPlanTest, CleansDestinations) {
  oci::Spec spec;
  spec.mounts = {{"../../tmp//x/./y/..", "tmpfs", "tmpfs", {}}, {"/..", "tmpfs", "tmpfs", {}}};
  auto plan = PlanRootfs(spec, rootfs_);
  ASSERT_FALSE(plan);  // the second one is the root itself
  EXPECT_CONTAINS(plan.error().ToString(),
                  "mounts[1] (/): cannot mount over the container's root directory");
  spec.mounts.pop_back();
  plan = PlanRootfs(spec, rootfs_);
  ASSERT_TRUE(plan) << plan.error().ToString();
  const RootfsStep* tmp = FindStep(*plan, RootfsStepKind::kMount, "/tmp/x");
  ASSERT_NE(tmp, nullptr);
  EXPECT_EQ(tmp->target.prefixes, (std::vector<std::string>{"tmp", "tmp/x"}));
}

// ---------------------------------------------------------------------------
// Applying: root, busybox, child namespaces.

struct RunResult {
  int exit_code = -1;
  std::string output;
  bool failed = false;  // ApplyRootfsPlan failed; `failure` says where
  RootfsFailure failure{};
};

// Runs between the two phases, in the child (like the engine's sysctls).
using BetweenPhases = int (*)();

RunResult RunInContainer(const RootfsPlan& plan, const std::string& script,
                         BetweenPhases between = nullptr) {
  RunResult result;
  int output[2];
  int report[2];
  if (::pipe2(output, O_CLOEXEC) != 0 || ::pipe2(report, O_CLOEXEC) != 0) return result;
  const char* argv[] = {"sh", "-c", script.c_str(), nullptr};
  const char* envp[] = {"PATH=/bin", nullptr};
  pid_t pid = ::fork();
  if (pid == 0) {
    // New namespaces for everything the plan touches; the pid namespace
    // takes effect for the next child, which is its pid 1.
    if (::unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC) != 0) ::_exit(120);
    pid_t init = ::fork();
    if (init < 0) ::_exit(121);
    if (init == 0) {
      ::dup2(output[1], 1);
      ::dup2(output[1], 2);
      RootfsFailure failure{};
      int err = ApplyRootfsPlan(plan, RootfsPhase::kSetup, &failure);
      if (err == 0 && between != nullptr && between() != 0) ::_exit(122);
      if (err == 0) err = ApplyRootfsPlan(plan, RootfsPhase::kProtectPaths, &failure);
      if (err != 0) {
        (void)!::write(report[1], &failure, sizeof failure);
        ::_exit(100);
      }
      ::execve("/bin/sh", const_cast<char**>(argv), const_cast<char**>(envp));
      ::_exit(127);
    }
    int status = 0;
    while (::waitpid(init, &status, 0) < 0 && errno == EINTR) {
    }
    ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }
  ::close(output[1]);
  ::close(report[1]);
  UniqueFd output_read(output[0]);
  UniqueFd report_read(report[0]);
  if (pid < 0) return result;
  result.output = ReadAll(output_read.get()).value_or(std::string());
  auto failure = ReadAll(report_read.get());
  if (failure && failure->size() == sizeof(RootfsFailure)) {
    result.failed = true;
    std::memcpy(&result.failure, failure->data(), sizeof(RootfsFailure));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

class RootfsApplyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HULL_REQUIRE_ROOT("mounts in child mount and pid namespaces");
    busybox_ = FindStaticBusybox();
    if (busybox_.empty()) GTEST_SKIP() << "needs a static busybox (apt-get install busybox-static)";
    char dir[] = "/tmp/hull-rootfs-test.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    auto mounts = ReadFile("/proc/self/mountinfo");
    ASSERT_TRUE(mounts);
    host_mounts_ = *mounts;
    rootfs_ = dir_ + "/rootfs";
    BuildRootfs(rootfs_);
  }

  void TearDown() override {
    if (dir_.empty()) return;
    // The child's namespace died with it: nothing may be left on the host.
    auto mounts = ReadFile("/proc/self/mountinfo");
    ASSERT_TRUE(mounts);
    EXPECT_EQ(*mounts, host_mounts_) << "the host mount table changed";
    auto removed = RemoveTree(dir_);
    EXPECT_TRUE(removed) << removed.error().ToString();
    EXPECT_FALSE(PathExists(dir_));
  }

  // /bin/busybox and its applets; nothing else (the mounts create /proc,
  // /dev, /sys, ...).
  void BuildRootfs(const std::string& rootfs) {
    ASSERT_TRUE(MakeDirs(rootfs + "/bin"));
    auto image = ReadFile(busybox_);
    ASSERT_TRUE(image);
    ASSERT_TRUE(WriteFile(rootfs + "/bin/busybox", *image, 0755));
    for (const char* applet :
         {"sh", "cat", "stat", "readlink", "touch", "wc", "grep", "ls", "cut", "mkdir", "awk"}) {
      ASSERT_EQ(::symlink("busybox", (rootfs + "/bin/" + applet).c_str()), 0) << applet;
    }
  }

  RootfsPlan Plan(const oci::Spec& spec, std::optional<std::string> console = std::nullopt,
                  RootfsOptions options = {}) {
    auto plan = PlanRootfs(spec, rootfs_, std::move(console), options);
    EXPECT_TRUE(plan) << plan.error().ToString();
    return plan ? std::move(plan).value() : RootfsPlan{};
  }

  std::string busybox_;
  std::string dir_;
  std::string rootfs_;
  std::string host_mounts_;
};

// What the default-spec tests look at, printed as key=value lines.
constexpr const char* kDefaultSpecProbe = R"sh(
mnt() { awk -v p="$1" '$5 == p { for (i = 7; $i != "-"; i++); r = $6 " " $(i + 1) } END { print r }' /proc/self/mountinfo; }
echo "comm=$(cat /proc/1/comm)"
echo "pid=$$"
stat -c 'null=%F %t:%T %a %u:%g' /dev/null
for d in zero full random urandom tty; do stat -c "$d=%t:%T %a" /dev/$d; done
echo "ptmx=$(readlink /dev/ptmx)"
echo "fd=$(readlink /dev/fd)"
echo "stdin=$(readlink /dev/stdin)"
echo "stderr=$(readlink /dev/stderr)"
stat -c 'dev_mode=%a' /dev
stat -c 'shm_mode=%a' /dev/shm
echo "root_write=$(touch /rootfile 2>&1)"
if touch /dev/newfile 2>/dev/null; then echo dev_write=ok; else echo dev_write=failed; fi
echo "timer_list_bytes=$(wc -c < /proc/timer_list)"
echo "acpi_entries=$(ls -A /proc/acpi | wc -l)"
echo "acpi_mount=$(mnt /proc/acpi)"
echo "sysctl_write=$( (echo hull > /proc/sys/kernel/domainname) 2>&1)"
echo "proc_sys=$(mnt /proc/sys)"
echo "sys=$(mnt /sys)"
echo "pts=$(mnt /dev/pts)"
echo "mqueue=$(mnt /dev/mqueue)"
echo "core=$(readlink /dev/core)"
)sh";

void ExpectDefaultSpecView(const RunResult& run) {
  const std::string& out = run.output;
  EXPECT_EQ(Value(out, "comm"), "sh");
  EXPECT_EQ(Value(out, "pid"), "1");
  EXPECT_EQ(Value(out, "null"), "character special file 1:3 666 0:0");
  EXPECT_EQ(Value(out, "zero"), "1:5 666");
  EXPECT_EQ(Value(out, "full"), "1:7 666");
  EXPECT_EQ(Value(out, "random"), "1:8 666");
  EXPECT_EQ(Value(out, "urandom"), "1:9 666");
  EXPECT_EQ(Value(out, "tty"), "5:0 666");
  EXPECT_EQ(Value(out, "ptmx"), "pts/ptmx");
  EXPECT_EQ(Value(out, "fd"), "/proc/self/fd");
  EXPECT_EQ(Value(out, "stdin"), "/proc/self/fd/0");
  EXPECT_EQ(Value(out, "stderr"), "/proc/self/fd/2");
  EXPECT_EQ(Value(out, "dev_mode"), "755");                            // tmpfs mode=755 applied
  EXPECT_EQ(Value(out, "shm_mode"), "1777");                           // and mode=1777
  EXPECT_CONTAINS(Value(out, "root_write"), "Read-only file system");  // EROFS
  EXPECT_EQ(Value(out, "dev_write"), "ok");                            // /dev stays writable
  EXPECT_EQ(Value(out, "timer_list_bytes"), "0");                      // masked file
  EXPECT_EQ(Value(out, "acpi_entries"), "0");                          // masked directory
  EXPECT_EQ(Value(out, "acpi_mount"), "ro,nosuid,nodev,noexec,relatime tmpfs");
  EXPECT_CONTAINS(Value(out, "sysctl_write"), "Read-only file system");
  EXPECT_EQ(Value(out, "proc_sys"), "ro,relatime proc");
  EXPECT_EQ(Value(out, "sys"), "ro,nosuid,nodev,noexec,relatime sysfs");
  EXPECT_EQ(Value(out, "pts"), "rw,nosuid,noexec,relatime devpts");
  EXPECT_EQ(Value(out, "mqueue"), "rw,nosuid,nodev,noexec,relatime mqueue");
  // runc links /dev/core only where the kernel has /proc/kcore.
  EXPECT_EQ(Value(out, "core"), ::access("/proc/kcore", F_OK) == 0 ? "/proc/kcore" : "");
}

TEST_F(RootfsApplyTest, RuncDefaultSpec) {
  RootfsPlan plan = Plan(HostDefaultSpec());
  RunResult run = RunInContainer(plan, kDefaultSpecProbe);
  ASSERT_FALSE(run.failed) << RootfsFailureError(plan, run.failure).ToString();
  ASSERT_EQ(run.exit_code, 0) << run.output;
  ExpectDefaultSpecView(run);
  // The image got the mount points; nothing else was written to it.
  EXPECT_TRUE(PathExists(rootfs_ + "/proc"));
  EXPECT_FALSE(PathExists(rootfs_ + "/rootfile"));
}

TEST_F(RootfsApplyTest, MoveRootFallback) {
  RootfsOptions options;
  options.root_switch = RootSwitch::kMoveRoot;
  RootfsPlan plan = Plan(HostDefaultSpec(), std::nullopt, options);
  ASSERT_NE(FindStep(plan, RootfsStepKind::kMoveRoot), nullptr);
  RunResult run = RunInContainer(plan, kDefaultSpecProbe);
  ASSERT_FALSE(run.failed) << RootfsFailureError(plan, run.failure).ToString();
  ASSERT_EQ(run.exit_code, 0) << run.output;
  ExpectDefaultSpecView(run);
}

TEST_F(RootfsApplyTest, SysctlsFitBetweenThePhases) {
  RootfsPlan plan = Plan(HostDefaultSpec());
  RunResult run = RunInContainer(plan, "echo \"domain=$(cat /proc/sys/kernel/domainname)\"", [] {
    UniqueFd fd(::open("/proc/sys/kernel/domainname", O_WRONLY | O_CLOEXEC));
    return fd && ::write(fd.get(), "hull-test", 9) == 9 ? 0 : 1;
  });
  ASSERT_FALSE(run.failed) << RootfsFailureError(plan, run.failure).ToString();
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(Value(run.output, "domain"), "hull-test");
}

TEST_F(RootfsApplyTest, SymlinksInTheImageCannotRedirectMountsToTheHost) {
  std::string name = "hull-rootfs-escape-" + RandomHex(4);
  ASSERT_FALSE(PathExists("/" + name));
  ASSERT_FALSE(PathExists("/" + name + "-relative"));
  ASSERT_EQ(::symlink("/", (rootfs_ + "/evil").c_str()), 0);
  ASSERT_EQ(::symlink("../../../../../../..", (rootfs_ + "/evil-relative").c_str()), 0);
  ASSERT_TRUE(WriteFile(dir_ + "/hostfile", "from the host\n"));

  oci::Spec spec;
  spec.mounts = {
      {"/proc", "proc", "proc", {}},
      {"/evil/" + name, "tmpfs", "tmpfs", {"mode=700"}},
      {"/evil-relative/" + name + "-relative", "tmpfs", "tmpfs", {}},
      {"/evil/" + name + "-file", "bind", dir_ + "/hostfile", {"bind", "ro"}},
  };
  RootfsPlan plan = Plan(spec);
  RunResult run =
      RunInContainer(plan, "echo \"mounts=$(grep -c ' /" + name + "' /proc/self/mountinfo)\"\n" +
                               "stat -c 'mode=%a' /" + name + "\n" + "cat /" + name + "-file\n");
  ASSERT_FALSE(run.failed) << RootfsFailureError(plan, run.failure).ToString();
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(Value(run.output, "mounts"), "3");
  EXPECT_EQ(Value(run.output, "mode"), "700");
  EXPECT_CONTAINS(run.output, "from the host");
  // Created inside the rootfs, nothing on the host.
  EXPECT_FALSE(PathExists("/" + name));
  EXPECT_FALSE(PathExists("/" + name + "-relative"));
  EXPECT_FALSE(PathExists("/" + name + "-file"));
  EXPECT_TRUE(PathExists(rootfs_ + "/" + name));
  EXPECT_TRUE(PathExists(rootfs_ + "/" + name + "-relative"));
  EXPECT_TRUE(PathExists(rootfs_ + "/" + name + "-file"));
}

TEST_F(RootfsApplyTest, SymlinkIntoProcIsRefusedAtMountTime) {
  // Lexically /data, really /proc/sys: runc's checkProcMount on the resolved path.
  ASSERT_EQ(::symlink("/proc/sys", (rootfs_ + "/data").c_str()), 0);
  oci::Spec spec;
  spec.mounts = {{"/proc", "proc", "proc", {}}, {"/data", "tmpfs", "tmpfs", {}}};
  RootfsPlan plan = Plan(spec);
  RunResult run = RunInContainer(plan, "true");
  ASSERT_TRUE(run.failed) << run.output;
  EXPECT_EQ(run.failure.err, EPERM);
  EXPECT_EQ(run.failure.stage, RootfsStage::kCheckProcfs);
  EXPECT_EQ(
      DescribeFailure(plan, run.failure),
      "mounts[1] (/data): mount tmpfs: the target resolves into procfs (refused, as runc does)");
}

TEST_F(RootfsApplyTest, BindMounts) {
  ASSERT_TRUE(MakeDirs(dir_ + "/shared"));
  ASSERT_TRUE(WriteFile(dir_ + "/shared/hello", "hello\n"));
  ASSERT_TRUE(WriteFile(dir_ + "/config", "key=value\n"));
  oci::Spec spec;
  spec.mounts = {
      {"/proc", "proc", "proc", {}},
      {"/data/ro", "bind", dir_ + "/shared", {"rbind", "ro", "nosuid"}},
      {"/data/rw", "", dir_ + "/shared", {"rbind"}},
      {"/data/rro", "", dir_ + "/shared", {"rbind", "rro"}},
      {"/etc/app/config", "bind", dir_ + "/config", {"bind", "ro"}},
  };
  RootfsPlan plan = Plan(spec);
  RunResult run = RunInContainer(plan, R"sh(
echo "ro_read=$(cat /data/ro/hello)"
echo "ro_write=$(touch /data/ro/new 2>&1)"
echo "ro_opts=$(awk '$5 == "/data/ro" { print $6 }' /proc/self/mountinfo)"
if touch /data/rw/new 2>/dev/null; then echo rw_write=ok; else echo rw_write=failed; fi
echo "rro_write=$(touch /data/rro/new2 2>&1)"
echo "config=$(cat /etc/app/config)"
echo "config_write=$( (echo x > /etc/app/config) 2>&1)"
)sh");
  ASSERT_FALSE(run.failed) << RootfsFailureError(plan, run.failure).ToString();
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(Value(run.output, "ro_read"), "hello");
  EXPECT_CONTAINS(Value(run.output, "ro_write"), "Read-only file system");
  EXPECT_EQ(Value(run.output, "ro_opts").rfind("ro,nosuid", 0), 0u) << Value(run.output, "ro_opts");
  EXPECT_EQ(Value(run.output, "rw_write"), "ok");
  EXPECT_CONTAINS(Value(run.output, "rro_write"), "Read-only file system");
  EXPECT_EQ(Value(run.output, "config"), "key=value");
  EXPECT_CONTAINS(Value(run.output, "config_write"), "Read-only file system");
  EXPECT_TRUE(PathExists(dir_ + "/shared/new"));  // the writable bind reached the host dir
  // A file bind gets an empty file as its mount point.
  struct stat st {};
  ASSERT_EQ(::stat((rootfs_ + "/etc/app/config").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_size, 0);
}

// runc mounts a read-only /dev writable, fills it, then remounts it.
TEST_F(RootfsApplyTest, ReadOnlyDevIsFilledFirst) {
  oci::Spec spec = HostDefaultSpec();
  spec.mounts[1].options.push_back("ro");
  RootfsPlan plan = Plan(spec);
  RunResult run = RunInContainer(plan, R"sh(
stat -c 'null=%t:%T' /dev/null
echo "dev_write=$(touch /dev/x 2>&1)"
echo "dev=$(awk '$5 == "/dev" { print $6 }' /proc/self/mountinfo)"
)sh");
  ASSERT_FALSE(run.failed) << RootfsFailureError(plan, run.failure).ToString();
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(Value(run.output, "null"), "1:3");
  EXPECT_CONTAINS(Value(run.output, "dev_write"), "Read-only file system");
  EXPECT_EQ(Value(run.output, "dev").rfind("ro,nosuid", 0), 0u) << run.output;
}

TEST_F(RootfsApplyTest, SpecDevices) {
  oci::Spec spec = HostDefaultSpec();
  spec.linux->devices = {
      {"c", "/dev/hull-null", 1, 3, 0640, 1000, 1001},
      {"p", "/dev/sub/fifo", 0, 0, 0600, std::nullopt, std::nullopt},
      {"c", "/dev/zero", 1, 5, 0600, std::nullopt, 5},  // replaces the default
  };
  RootfsPlan plan = Plan(spec);
  RunResult run = RunInContainer(plan, R"sh(
stat -c 'dev=%F %t:%T %a %u %g' /dev/hull-null
stat -c 'fifo=%F %a %u %g' /dev/sub/fifo
stat -c 'zero=%t:%T %a %u %g' /dev/zero
)sh");
  ASSERT_FALSE(run.failed) << RootfsFailureError(plan, run.failure).ToString();
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(Value(run.output, "dev"), "character special file 1:3 640 1000 1001");
  EXPECT_EQ(Value(run.output, "fifo"), "fifo 600 0 0");
  EXPECT_EQ(Value(run.output, "zero"), "1:5 600 0 5");
}

TEST_F(RootfsApplyTest, ConsoleIsThePtySlave) {
  UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  ASSERT_TRUE(master);
  ASSERT_EQ(::grantpt(master.get()), 0);
  ASSERT_EQ(::unlockpt(master.get()), 0);
  char name[64];
  ASSERT_EQ(::ptsname_r(master.get(), name, sizeof name), 0);
  struct stat pts {};
  ASSERT_EQ(::stat(name, &pts), 0);

  RootfsPlan plan = Plan(HostDefaultSpec(), std::string(name));
  RunResult run = RunInContainer(plan, "stat -c 'console=%t:%T' /dev/console");
  ASSERT_FALSE(run.failed) << RootfsFailureError(plan, run.failure).ToString();
  ASSERT_EQ(run.exit_code, 0) << run.output;
  char expected[32];
  std::snprintf(expected, sizeof expected, "%x:%x", major(pts.st_rdev), minor(pts.st_rdev));
  EXPECT_EQ(Value(run.output, "console"), expected);
}

TEST_F(RootfsApplyTest, VanishedBindSourceIsReportedWithTheMount) {
  ASSERT_TRUE(MakeDirs(dir_ + "/volume"));
  oci::Spec spec;
  spec.mounts = {{"/proc", "proc", "proc", {}}, {"/data", "bind", dir_ + "/volume", {"rbind"}}};
  RootfsPlan plan = Plan(spec);
  ASSERT_EQ(::rmdir((dir_ + "/volume").c_str()), 0);
  RunResult run = RunInContainer(plan, "true");
  ASSERT_TRUE(run.failed) << run.output;
  EXPECT_EQ(run.exit_code, 100);
  EXPECT_EQ(run.failure.err, ENOENT);
  EXPECT_EQ(run.failure.stage, RootfsStage::kMain);
  EXPECT_EQ(DescribeFailure(plan, run.failure), "mounts[1] (/data): bind `" + dir_ + "/volume`");
  EXPECT_EQ(RootfsFailureError(plan, run.failure).ToString(),
            "mounts[1] (/data): bind `" + dir_ + "/volume`: ENOENT (No such file or directory)");
}

// A rootfs on a shared mount: rslave (the default) keeps the container's
// mounts out of the host; rshared needs the holding mount made private
// (runc's rootfsParentMountPrivate) or pivot_root fails.
TEST_F(RootfsApplyTest, RootfsOnASharedMount) {
  std::string shared = dir_ + "/shared";
  ASSERT_TRUE(MakeDirs(shared));
  ASSERT_EQ(::mount("tmpfs", shared.c_str(), "tmpfs", 0, "size=64m"), 0);
  ScopeExit unmount([&] { ::umount2(shared.c_str(), MNT_DETACH); });
  ASSERT_EQ(::mount(nullptr, shared.c_str(), nullptr, MS_SHARED, nullptr), 0);
  std::string before = ReadFile("/proc/self/mountinfo").value_or("");
  rootfs_ = shared + "/rootfs";
  BuildRootfs(rootfs_);

  for (std::string propagation : {"", "rshared", "rprivate"}) {
    SCOPED_TRACE("rootfsPropagation=" + propagation);
    oci::Spec spec = HostDefaultSpec();
    spec.linux->rootfs_propagation = propagation;
    RootfsPlan plan = Plan(spec);
    RunResult run = RunInContainer(
        plan, "echo \"root=$(awk '$5 == \"/\" { print $7 }' /proc/self/mountinfo)\"");
    ASSERT_FALSE(run.failed) << RootfsFailureError(plan, run.failure).ToString();
    ASSERT_EQ(run.exit_code, 0) << run.output;
    std::string tag = Value(run.output, "root");
    if (propagation.empty()) {
      EXPECT_EQ(tag.rfind("master:", 0), 0u) << tag;  // a slave of the host's mount
    } else if (propagation == "rshared") {
      EXPECT_EQ(tag.rfind("shared:", 0), 0u) << tag;
    } else {
      EXPECT_EQ(tag, "-") << tag;
    }
    EXPECT_EQ(ReadFile("/proc/self/mountinfo").value_or(""), before)
        << "a mount leaked to the host";
  }
}

}  // namespace
}  // namespace hull::engine
