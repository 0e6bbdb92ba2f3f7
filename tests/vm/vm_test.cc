// VM tests: real QEMU (TCG here, KVM where the host has it) booting the real
// guest image with hull-agent as PID 1.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "hull/core/process.h"
#include "hull/core/syscall.h"
#include "hull/hypervisor/hypervisor.h"
#include "hull/hypervisor/virtiofsd.h"
#include "hull/sandbox/grpc_agent.h"
#include "qemu/qemu_hypervisor.h"
#include "testlib.h"

namespace hull {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testlib::ProcessesWithArgument;

// Is any process running whose command line contains `needle`?
bool ProcessWithArgumentExists(const std::string& needle) {
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return false;
  bool found = false;
  while (dirent* e = readdir(proc)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    auto cmdline = ReadFile(std::string("/proc/") + e->d_name + "/cmdline", 1 << 16);
    if (!cmdline) continue;
    std::replace(cmdline->begin(), cmdline->end(), '\0', ' ');
    if (cmdline->find(needle) != std::string::npos &&
        cmdline->find("vm_tests") == std::string::npos) {
      found = true;
      break;
    }
  }
  closedir(proc);
  return found;
}

// The parent process of `pid`, or -1.
pid_t ParentOf(pid_t pid) {
  auto stat = ReadFile("/proc/" + std::to_string(pid) + "/stat", 4096);
  if (!stat) return -1;
  // "pid (comm) state ppid ...": comm may contain spaces, so start after ')'.
  std::istringstream rest(stat->substr(stat->rfind(')') + 1));
  std::string state;
  pid_t ppid = -1;
  rest >> state >> ppid;
  return ppid;
}

// Mount points at or below `dir` in this process's mount namespace.
std::vector<std::string> MountsUnder(const std::string& dir) {
  std::vector<std::string> mounts;
  char* resolved = ::realpath(dir.c_str(), nullptr);
  if (resolved == nullptr) return mounts;
  std::string root = resolved;
  std::free(resolved);
  std::istringstream lines(ReadFile("/proc/self/mountinfo").value_or(""));
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string skip, path;
    fields >> skip >> skip >> skip >> skip >> path;
    if (path == root || path.starts_with(root + "/")) mounts.push_back(path);
  }
  return mounts;
}

class VmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HULL_REQUIRE_QEMU();
    ASSERT_TRUE(PathExists(std::string(HULL_GUEST_DIR) + "/vmlinuz"))
        << "guest image missing: build it with `cmake --build build --target guest-image`";
    run_dir_ = ::testing::TempDir() + "/hull-vm-" + RandomHex(4);
    auto hypervisor = MakeHypervisor("qemu");
    ASSERT_TRUE(hypervisor);
    hypervisor_ = std::move(*hypervisor);
  }

  void TearDown() override {
    if (!run_dir_.empty()) (void)RemoveTree(run_dir_);
  }

  VmConfig BaseConfig(TransportKind transport = TransportKind::kSerial) {
    Config config;
    config.run_dir = run_dir_;
    config.hypervisor.kernel = std::string(HULL_GUEST_DIR) + "/vmlinuz";
    config.hypervisor.initrd = std::string(HULL_GUEST_DIR) + "/initrd.img";
    config.agent.transport = std::string(TransportName(transport));
    auto vm = VmConfigFromConfig(config, "t" + RandomHex(5));
    EXPECT_TRUE(vm) << vm.error().ToString();
    return *vm;
  }

  std::unique_ptr<sandbox::GrpcAgent> ConnectAgent(Vm& vm, seconds timeout = seconds(90)) {
    auto client = sandbox::GrpcAgent::Connect(
        [&vm](Clock::time_point d) { return vm.ConnectAgent(d); }, Clock::now() + timeout);
    EXPECT_TRUE(client) << client.error().ToString() << "\n--- console ---\n"
                        << ReadFile(vm.console_log_path()).value_or("");
    return client ? std::move(*client) : nullptr;
  }

  void ExpectNothingLeft(const std::string& id, pid_t pid) {
    EXPECT_FALSE(PathExists(run_dir_ + "/" + id)) << "state dir left behind";
    EXPECT_NE(::kill(pid, 0), 0) << "qemu process " << pid << " still exists";
    EXPECT_FALSE(ProcessWithArgumentExists("hull-" + id + ","))
        << "a qemu for " << id << " still runs";
  }

  std::string run_dir_;
  std::unique_ptr<Hypervisor> hypervisor_;
};

TEST_F(VmTest, BootsAndAnswersOverSerial) {
  VmConfig config = BaseConfig();
  config.memory_mib = 384;
  auto vm = hypervisor_->Launch(config);
  ASSERT_TRUE(vm) << vm.error().ToString();
  auto client = ConnectAgent(**vm);
  ASSERT_NE(client, nullptr);

  auto details = client->GetGuestDetails();
  ASSERT_TRUE(details) << details.error().ToString();
  EXPECT_EQ(details->transport, "serial");
  EXPECT_EQ(details->online_cpus, 1u);
  // MemTotal is the RAM minus what the kernel keeps for itself.
  EXPECT_GT(details->memory_total_bytes, 300ull << 20);
  EXPECT_LE(details->memory_total_bytes, 384ull << 20);
  EXPECT_EQ(details->cgroup_mode, "v2");
  EXPECT_NE(details->kernel_release.find("cloud-amd64"), std::string::npos);
  const std::vector<std::string>& modules = details->loaded_modules;
  EXPECT_NE(std::find(modules.begin(), modules.end(), "virtio_console"), modules.end());
  const sandbox::GuestDetails& startup = *details;
  EXPECT_GT(startup.agent_start_us, 0u);
  EXPECT_GE(startup.listening_us, startup.agent_start_us);
  EXPECT_GE(startup.first_request_us, startup.listening_us);
  auto console = ReadFile((*vm)->console_log_path());
  ASSERT_TRUE(console);
  EXPECT_NE(console->find("hull-agent"), std::string::npos) << "agent logs go to the console";

  // The guest powers itself off when asked.
  (*vm)->ExpectExit();
  ASSERT_TRUE(client->Shutdown(false));
  auto exited = (*vm)->WaitForExit(seconds(30));
  ASSERT_TRUE(exited);
  ASSERT_TRUE(exited->has_value()) << "the guest did not power off";
  EXPECT_EQ((*exited)->reason, "the guest powered off");
  EXPECT_TRUE((*exited)->process.success());
  EXPECT_TRUE((*exited)->expected);
  pid_t pid = (*vm)->pid();
  std::string id = (*vm)->id();
  (*vm)->Stop(seconds(1));
  ExpectNothingLeft(id, pid);
}

TEST_F(VmTest, BootsAndAnswersOverVsock) {
  if (!PathExists("/dev/vhost-vsock")) {
    GTEST_SKIP() << "/dev/vhost-vsock is missing (the host kernel has no vhost_vsock): "
                    "the vsock transport cannot run here";
  }
  auto vm = hypervisor_->Launch(BaseConfig(TransportKind::kVsock));
  ASSERT_TRUE(vm) << vm.error().ToString();
  auto client = ConnectAgent(**vm);
  ASSERT_NE(client, nullptr);
  auto details = client->GetGuestDetails();
  ASSERT_TRUE(details);
  EXPECT_EQ(details->transport, "vsock");
  (*vm)->Stop(seconds(0));
}

TEST_F(VmTest, AgentServesTheNextConnectionAfterTheHostDisconnects) {
  auto vm = hypervisor_->Launch(BaseConfig());
  ASSERT_TRUE(vm) << vm.error().ToString();
  for (int round = 0; round < 3; ++round) {
    auto client = ConnectAgent(**vm);
    ASSERT_NE(client, nullptr) << "round " << round;
    auto check = client->Check();
    ASSERT_TRUE(check) << "round " << round << ": " << check.error().ToString();
    EXPECT_TRUE(*check) << "the agent is not serving";
    // Dropping the client closes the connection mid-life, as a crashed shim would.
  }
  EXPECT_TRUE((*vm)->running());
  pid_t pid = (*vm)->pid();
  std::string id = (*vm)->id();
  (*vm)->Stop(seconds(0));
  ExpectNothingLeft(id, pid);
}

TEST_F(VmTest, VmKilledFromOutsideIsReported) {
  auto vm = hypervisor_->Launch(BaseConfig());
  ASSERT_TRUE(vm) << vm.error().ToString();
  auto client = ConnectAgent(**vm);
  ASSERT_NE(client, nullptr);
  pid_t pid = (*vm)->pid();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);

  auto exited = (*vm)->WaitForExit(seconds(10));
  ASSERT_TRUE(exited);
  ASSERT_TRUE(exited->has_value()) << "hull did not notice the VM died";
  EXPECT_FALSE((*exited)->expected);
  EXPECT_EQ((*exited)->process.signal, SIGKILL);
  EXPECT_NE((*exited)->reason.find("SIGKILL"), std::string::npos) << (*exited)->reason;
  EXPECT_FALSE((*vm)->running());

  auto fd = (*vm)->ConnectAgent(Clock::now() + seconds(5));
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(fd.error().ToString().find("is not running"), std::string::npos);
  auto check = client->Check();
  EXPECT_FALSE(check);

  std::string id = (*vm)->id();
  (*vm)->Stop(seconds(0));
  ExpectNothingLeft(id, pid);
}

TEST_F(VmTest, BadConfigFailsClearlyAndLeavesNothing) {
  VmConfig missing_kernel = BaseConfig();
  missing_kernel.kernel = run_dir_ + "/no-such-vmlinuz";
  auto vm = hypervisor_->Launch(missing_kernel);
  ASSERT_FALSE(vm);
  EXPECT_NE(vm.error().ToString().find("guest kernel `" + missing_kernel.kernel + "` not found"),
            std::string::npos)
      << vm.error().ToString();
  EXPECT_FALSE(PathExists(run_dir_ + "/" + missing_kernel.id));

  VmConfig tiny = BaseConfig();
  tiny.memory_mib = 16;
  vm = hypervisor_->Launch(tiny);
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(vm.error().ToString().find("memory must be between 64 MiB"), std::string::npos);
  EXPECT_FALSE(PathExists(run_dir_ + "/" + tiny.id));

  // QEMU itself refuses: its own message reaches the user, and no process
  // or socket is left.
  VmConfig bad_machine = BaseConfig();
  bad_machine.machine = "no-such-machine";
  vm = hypervisor_->Launch(bad_machine);
  ASSERT_FALSE(vm);
  EXPECT_NE(vm.error().ToString().find(
                "QEMU exited with code 1: qemu-system-x86_64: unsupported machine type"),
            std::string::npos)
      << vm.error().ToString();
  EXPECT_FALSE(PathExists(run_dir_ + "/" + bad_machine.id));
  EXPECT_FALSE(ProcessWithArgumentExists("hull-" + bad_machine.id + ","));

  // Two VMs cannot share an id.
  VmConfig first = BaseConfig();
  auto running = hypervisor_->Launch(first);
  ASSERT_TRUE(running) << running.error().ToString();
  auto duplicate = hypervisor_->Launch(first);
  ASSERT_FALSE(duplicate);
  EXPECT_EQ(duplicate.error().code(), ErrorCode::kAlreadyExists);
  (*running)->Stop(seconds(0));
}

// --- virtio-fs ---------------------------------------------------------------------

constexpr char kVirtiofsd[] = "/usr/lib/qemu/virtiofsd";

class VirtioFsVmTest : public VmTest {
 protected:
  void SetUp() override {
    VmTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (!IsExecutable(kVirtiofsd))
      GTEST_SKIP() << "virtiofsd is not installed (" << kVirtiofsd << ")";
    HULL_REQUIRE_ROOT("virtiofsd's namespace sandbox");
    shared_dir_ = run_dir_ + "/shared";
    ASSERT_TRUE(MakeDirs(shared_dir_));
    ASSERT_TRUE(WriteFile(shared_dir_ + "/from-host.txt", "host data\n"));
  }

  VmConfig SharedConfig() {
    VmConfig config = BaseConfig();
    config.shared_dir = shared_dir_;
    config.virtiofsd_path = kVirtiofsd;
    return config;
  }

  // virtiofsd's command line names the directory it serves.
  std::string VirtiofsdNeedle() const { return "source=" + shared_dir_ + " "; }

  void ExpectNoVirtiofsd() {
    // The sandbox worker exits on its parent's SIGTERM; give it a moment to be reaped by init.
    for (int i = 0; i < 100 && !ProcessesWithArgument(VirtiofsdNeedle()).empty(); ++i) {
      std::this_thread::sleep_for(milliseconds(20));
    }
    EXPECT_TRUE(ProcessesWithArgument(VirtiofsdNeedle()).empty())
        << "a virtiofsd still serves " << shared_dir_;
  }

  // The "filename" query-chardev reports for the chardev `label` ("" if none).
  std::string ChardevFilename(Vm& vm, const std::string& label) {
    auto chardevs = qemu::ExecuteQmp(vm, "query-chardev");
    EXPECT_TRUE(chardevs) << chardevs.error().ToString();
    if (!chardevs) return "";
    for (const auto& chardev : *chardevs) {
      if (chardev.value("label", "") == label) return chardev.value("filename", "");
    }
    ADD_FAILURE() << "no chardev `" << label << "` in " << chardevs->dump();
    return "";
  }

  std::string shared_dir_;
};

TEST_F(VirtioFsVmTest, SharedDirGetsAVhostUserFsDeviceServedByVirtiofsd) {
  auto vm = hypervisor_->Launch(SharedConfig());
  ASSERT_TRUE(vm) << vm.error().ToString();
  auto client = ConnectAgent(**vm);
  ASSERT_NE(client, nullptr);
  auto check = client->Check();
  ASSERT_TRUE(check) << check.error().ToString();
  EXPECT_TRUE(*check) << "the agent is not serving";

  const std::string socket = (*vm)->state_dir() + "/virtiofsd.sock";
  struct stat st {};
  ASSERT_EQ(::stat(socket.c_str(), &st), 0) << socket;
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // QEMU's side: the chardev is connected to virtiofsd's socket (QEMU names a
  // connected unix client by its unnamed local end, "unix:"; a dropped one is
  // "disconnected:unix:<path>")...
  EXPECT_EQ(ChardevFilename(**vm, "virtiofs"), "unix:");

  // ...and the virtio-fs PCI device (vendor 0x1af4, device 0x105a) carries the tag.
  auto pci = qemu::ExecuteQmp(**vm, "query-pci");
  ASSERT_TRUE(pci) << pci.error().ToString();
  bool device_found = false;
  for (const auto& bus : *pci) {
    for (const auto& device : bus.value("devices", nlohmann::json::array())) {
      if (device.value("qdev_id", "") != "shared-fs") continue;
      device_found = true;
      EXPECT_EQ(device["id"].value("vendor", 0), 0x1af4) << device.dump();
      EXPECT_EQ(device["id"].value("device", 0), 0x105a) << device.dump();
    }
  }
  EXPECT_TRUE(device_found) << pci->dump();
  auto tag = qemu::ExecuteQmp(**vm, "qom-get",
                              {{"path", "/machine/peripheral/shared-fs"}, {"property", "tag"}});
  ASSERT_TRUE(tag) << tag.error().ToString();
  EXPECT_EQ(*tag, kSharedFsTag);

  // virtiofsd's side: it runs, and QEMU's connection reached it.
  EXPECT_FALSE(ProcessesWithArgument(VirtiofsdNeedle()).empty());
  auto log = ReadFile((*vm)->state_dir() + "/virtiofsd.log");
  ASSERT_TRUE(log);
  EXPECT_NE(log->find("Received vhost-user socket connection"), std::string::npos) << *log;

  pid_t pid = (*vm)->pid();
  std::string id = (*vm)->id();
  auto exit = (*vm)->Stop(seconds(0));
  EXPECT_TRUE(exit.expected);
  ExpectNothingLeft(id, pid);
  ExpectNoVirtiofsd();
  EXPECT_FALSE(PathExists(socket));
  EXPECT_TRUE(MountsUnder(run_dir_).empty()) << "the share's bind mount was left behind";
  // The shared directory is the caller's: Stop leaves it and its contents alone.
  EXPECT_EQ(ReadFile(shared_dir_ + "/from-host.txt").value_or(""), "host data\n");
  EXPECT_FALSE(qemu::ExecuteQmp(**vm, "query-status"));
}

TEST_F(VirtioFsVmTest, MissingSharedDirFailsLaunchAndLeavesNothing) {
  VmConfig config = SharedConfig();
  config.shared_dir = run_dir_ + "/no-such-dir";
  auto vm = hypervisor_->Launch(config);
  ASSERT_FALSE(vm);
  EXPECT_NE(vm.error().ToString().find("shared directory `" + config.shared_dir + "`: ENOENT"),
            std::string::npos)
      << vm.error().ToString();
  EXPECT_FALSE(PathExists(run_dir_ + "/" + config.id)) << "state dir left behind";
  EXPECT_FALSE(ProcessWithArgumentExists("hull-" + config.id + ","));
  EXPECT_TRUE(ProcessesWithArgument("source=" + config.shared_dir).empty());
  EXPECT_TRUE(MountsUnder(run_dir_).empty()) << "a bind mount was left behind";
}

TEST_F(VirtioFsVmTest, MissingVirtiofsdBinaryIsNamed) {
  VmConfig config = SharedConfig();
  config.virtiofsd_path = run_dir_ + "/no-such-virtiofsd";
  auto vm = hypervisor_->Launch(config);
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(
      vm.error().ToString().find("virtiofsd binary `" + config.virtiofsd_path + "` is missing"),
      std::string::npos)
      << vm.error().ToString();
  EXPECT_FALSE(PathExists(run_dir_ + "/" + config.id));
  EXPECT_FALSE(ProcessWithArgumentExists("hull-" + config.id + ","));
  EXPECT_TRUE(MountsUnder(run_dir_).empty()) << "a bind mount was left behind";
}

TEST_F(VirtioFsVmTest, VirtiofsdRefusingItsArgumentsFailsLaunchWithItsMessage) {
  VmConfig config = SharedConfig();
  config.virtiofsd_args = {"-o", "no_such_option"};
  auto vm = hypervisor_->Launch(config);
  ASSERT_FALSE(vm);
  EXPECT_NE(vm.error().ToString().find("virtiofsd exited with code 1 before it was ready"),
            std::string::npos)
      << vm.error().ToString();
  EXPECT_NE(vm.error().ToString().find("no_such_option"), std::string::npos)
      << vm.error().ToString();
  EXPECT_FALSE(PathExists(run_dir_ + "/" + config.id));
  EXPECT_FALSE(ProcessWithArgumentExists("hull-" + config.id + ","));
  ExpectNoVirtiofsd();
  EXPECT_TRUE(MountsUnder(run_dir_).empty()) << "a bind mount was left behind";
}

// virtiofsd's death is the VM's: a guest whose shared directory no longer
// answers hangs every process that touches a container's root filesystem.
TEST_F(VirtioFsVmTest, VirtiofsdDyingUnderARunningVmStopsTheVm) {
  auto vm = hypervisor_->Launch(SharedConfig());
  ASSERT_TRUE(vm) << vm.error().ToString();
  auto client = ConnectAgent(**vm);
  ASSERT_NE(client, nullptr);
  pid_t pid = (*vm)->pid();

  // The virtiofsd hull started (its sandbox worker is that process's child).
  pid_t virtiofsd = -1;
  for (pid_t child : ProcessesWithArgument(VirtiofsdNeedle())) {
    if (ParentOf(child) == ::getpid()) virtiofsd = child;
  }
  ASSERT_GT(virtiofsd, 0) << "no virtiofsd child of this test process";
  ASSERT_EQ(::kill(virtiofsd, SIGKILL), 0);

  auto exited = (*vm)->WaitForExit(seconds(60));
  ASSERT_TRUE(exited) << exited.error().ToString();
  ASSERT_TRUE(exited->has_value()) << "the VM still runs without its virtiofsd";
  EXPECT_FALSE((*exited)->expected);
  EXPECT_FALSE((*vm)->running());
  EXPECT_EQ((*exited)->reason,
            "virtiofsd was killed by signal 9 (SIGKILL) while the VM ran, so hull stopped the VM");

  std::string id = (*vm)->id();
  (*vm)->Stop(seconds(0));
  ExpectNothingLeft(id, pid);
  ExpectNoVirtiofsd();
}

TEST_F(VirtioFsVmTest, ShareDirCreatesTheSharedDirInTheStateDir) {
  VmConfig config = BaseConfig();
  config.share_dir = true;
  auto vm = hypervisor_->Launch(config);
  ASSERT_TRUE(vm) << vm.error().ToString();
  const std::string shared = (*vm)->state_dir() + "/shared";
  EXPECT_EQ((*vm)->shared_dir(), shared);
  struct stat st {};
  ASSERT_EQ(::stat(shared.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  EXPECT_FALSE(ProcessesWithArgument("source=" + shared + " ").empty());
  EXPECT_EQ(ChardevFilename(**vm, "virtiofs"), "unix:");
  pid_t pid = (*vm)->pid();
  (*vm)->Stop(seconds(0));
  ExpectNothingLeft(config.id, pid);
  EXPECT_TRUE(ProcessesWithArgument("source=" + shared + " ").empty());
  EXPECT_TRUE(MountsUnder(run_dir_).empty());

  // Without a shared dir there is no device and no virtiofsd.
  auto plain = hypervisor_->Launch(BaseConfig());
  ASSERT_TRUE(plain) << plain.error().ToString();
  EXPECT_EQ((*plain)->shared_dir(), "");
  EXPECT_FALSE(PathExists((*plain)->state_dir() + "/virtiofsd.sock"));
  auto chardevs = qemu::ExecuteQmp(**plain, "query-chardev");
  ASSERT_TRUE(chardevs) << chardevs.error().ToString();
  EXPECT_EQ(chardevs->dump().find("virtiofs"), std::string::npos) << chardevs->dump();
  (*plain)->Stop(seconds(0));
}

TEST_F(VirtioFsVmTest, StopNeverDeletesThroughAMountLeftInTheStateDir) {
  // Root filesystems bind-mounted from the same filesystem, which RemoveTree
  // alone would not see as mount points and would empty: one into the share
  // (detached with virtiofsd's bind mount), one elsewhere in the state dir
  // (the state dir is left rather than deleted through it).
  const std::string rootfs = run_dir_ + "/rootfs";
  ASSERT_TRUE(MakeDirs(rootfs));
  ASSERT_TRUE(WriteFile(rootfs + "/precious", "keep me\n"));
  VmConfig config = BaseConfig();
  config.share_dir = true;
  auto vm = hypervisor_->Launch(config);
  ASSERT_TRUE(vm) << vm.error().ToString();
  const std::string state_dir = (*vm)->state_dir();
  const std::string in_share = (*vm)->shared_dir() + "/rootfs";
  const std::string elsewhere = state_dir + "/elsewhere";
  ASSERT_TRUE(MakeDirs(in_share));
  ASSERT_TRUE(MakeDirs(elsewhere));
  ASSERT_EQ(::mount(rootfs.c_str(), in_share.c_str(), nullptr, MS_BIND, nullptr), 0)
      << std::strerror(errno);
  ASSERT_EQ(::mount(rootfs.c_str(), elsewhere.c_str(), nullptr, MS_BIND, nullptr), 0)
      << std::strerror(errno);
  (*vm)->Stop(seconds(0));
  EXPECT_EQ(ReadFile(rootfs + "/precious").value_or(""), "keep me\n");
  EXPECT_TRUE(PathExists(state_dir)) << "the state dir is left while something is mounted in it";
  auto mounts = MountsUnder(state_dir);
  ASSERT_EQ(mounts.size(), 1u) << "only the mount outside the share is left";
  EXPECT_TRUE(mounts[0].ends_with("/elsewhere")) << mounts[0];
  EXPECT_FALSE(ProcessWithArgumentExists("hull-" + config.id + ","));
  ExpectNoVirtiofsd();
  ASSERT_EQ(::umount2(elsewhere.c_str(), MNT_DETACH), 0) << std::strerror(errno);
  EXPECT_TRUE(RemoveTree(state_dir));
  EXPECT_EQ(ReadFile(rootfs + "/precious").value_or(""), "keep me\n");
}

TEST_F(VirtioFsVmTest, ShareDirAndSharedDirExcludeEachOther) {
  VmConfig config = SharedConfig();
  config.share_dir = true;
  auto vm = hypervisor_->Launch(config);
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(vm.error().ToString().find("share_dir and shared_dir exclude each other"),
            std::string::npos)
      << vm.error().ToString();
  EXPECT_FALSE(PathExists(run_dir_ + "/" + config.id));
}

// Virtiofsd on its own, without QEMU: the lifecycle hull relies on.
class VirtiofsdProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!IsExecutable(kVirtiofsd))
      GTEST_SKIP() << "virtiofsd is not installed (" << kVirtiofsd << ")";
    HULL_REQUIRE_ROOT("virtiofsd's namespace sandbox");
    dir_ = ::testing::TempDir() + "/hull-virtiofsd-" + RandomHex(4);
    ASSERT_TRUE(MakeDirs(dir_ + "/shared"));
    options_.binary = kVirtiofsd;
    options_.shared_dir = dir_ + "/shared";
    options_.socket_path = dir_ + "/virtiofsd.sock";
    options_.log_path = dir_ + "/virtiofsd.log";
  }
  void TearDown() override {
    if (!dir_.empty()) (void)RemoveTree(dir_);
  }

  std::string dir_;
  VirtiofsdOptions options_;
};

TEST_F(VirtiofsdProcessTest, StartsListeningAndStopsCleanly) {
  auto virtiofsd = Virtiofsd::Start(options_);
  ASSERT_TRUE(virtiofsd) << virtiofsd.error().ToString();
  EXPECT_TRUE(PathExists(options_.socket_path));
  EXPECT_EQ(::kill(virtiofsd->pid(), 0), 0);
  EXPECT_FALSE(virtiofsd->Reap());
  // With --fd, virtiofsd writes no pid file of its own under /run/virtiofsd.
  std::string mangled = options_.socket_path;
  std::replace(mangled.begin(), mangled.end(), '/', '.');
  EXPECT_FALSE(PathExists("/run/virtiofsd/" + mangled + ".pid"));

  EXPECT_EQ(MountsUnder(options_.shared_dir).size(), 1u) << "the shared dir is a mount of its own";
  pid_t pid = virtiofsd->pid();
  // SIGTERM interrupts its accept(), and it exits (code 1) by itself: no SIGKILL needed.
  ExitStatus status = virtiofsd->Stop(seconds(2));
  EXPECT_EQ(status.signal, 0) << status.ToString();
  EXPECT_FALSE(PathExists(options_.socket_path));
  EXPECT_NE(::kill(pid, 0), 0);
  EXPECT_TRUE(MountsUnder(dir_).empty());
  // Idempotent.
  EXPECT_EQ(virtiofsd->Stop(seconds(2)).ToString(), status.ToString());
}

TEST_F(VirtiofsdProcessTest, ReadinessDoesNotDependOnItsLogLevel) {
  // At log_level=err virtiofsd does not announce that it waits for QEMU;
  // hull sees it blocked in accept() instead.
  options_.extra_args = {"-o", "log_level=err"};
  // Readiness read from the log would never come: Start would fail at its
  // startup_timeout instead of succeeding.
  auto virtiofsd = Virtiofsd::Start(options_);
  ASSERT_TRUE(virtiofsd) << virtiofsd.error().ToString();
  EXPECT_EQ(ReadFile(options_.log_path).value_or("?").find("Waiting for vhost-user"),
            std::string::npos);
}

TEST_F(VirtiofsdProcessTest, MountsMadeUnderTheShareWhileItRunsReachItsSandbox) {
  auto virtiofsd = Virtiofsd::Start(options_);
  ASSERT_TRUE(virtiofsd) << virtiofsd.error().ToString();
  // A client makes virtiofsd enter its sandbox: from then on it has its own
  // mount namespace, rooted at the shared directory.
  auto client = ConnectUnix(options_.socket_path);
  ASSERT_TRUE(client) << client.error().ToString();
  pid_t worker = -1;
  for (int i = 0; i < 100 && worker < 0; ++i) {
    for (pid_t pid : ProcessesWithArgument("source=" + options_.shared_dir + " ")) {
      if (ParentOf(pid) == virtiofsd->pid()) worker = pid;
    }
    if (worker < 0) std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_GT(worker, 0) << "virtiofsd did not fork its sandbox worker";
  std::this_thread::sleep_for(milliseconds(200));  // let it finish pivot_root

  // A root filesystem mounted into the share afterwards, as the shim does for
  // each new container, is what the worker (and so the guest) sees.
  const std::string rootfs = dir_ + "/rootfs";
  ASSERT_TRUE(MakeDirs(rootfs));
  ASSERT_TRUE(WriteFile(rootfs + "/bin-sh", "a container's file\n"));
  const std::string target = options_.shared_dir + "/ctr/rootfs";
  ASSERT_TRUE(MakeDirs(target));
  ASSERT_EQ(::mount(rootfs.c_str(), target.c_str(), nullptr, MS_BIND, nullptr), 0)
      << std::strerror(errno);
  std::string through_worker = "/proc/" + std::to_string(worker) + "/root/ctr/rootfs/bin-sh";
  EXPECT_EQ(ReadFile(through_worker).value_or("<not visible>"), "a container's file\n");

  virtiofsd->Stop(seconds(2));
  // Stop detached the share's bind mount, and the container mount with it.
  EXPECT_TRUE(MountsUnder(dir_).empty());
  EXPECT_EQ(ReadFile(rootfs + "/bin-sh").value_or(""), "a container's file\n");
}

TEST_F(VirtiofsdProcessTest, ExitsByItselfWhenItsClientDisconnects) {
  auto virtiofsd = Virtiofsd::Start(options_);
  ASSERT_TRUE(virtiofsd) << virtiofsd.error().ToString();
  {
    // A client that connects and leaves, as QEMU does when it exits.
    auto client = ConnectUnix(options_.socket_path);
    ASSERT_TRUE(client) << client.error().ToString();
  }
  std::optional<ExitStatus> exited;
  for (int i = 0; i < 250 && !exited; ++i) {
    std::this_thread::sleep_for(milliseconds(20));
    exited = virtiofsd->Reap();
  }
  ASSERT_TRUE(exited) << "virtiofsd kept running after its client left";
  // Stopping a virtiofsd that is already gone just cleans up.
  ExitStatus status = virtiofsd->Stop(seconds(2));
  EXPECT_EQ(status.ToString(), exited->ToString());
  EXPECT_FALSE(PathExists(options_.socket_path));
  EXPECT_TRUE(ProcessesWithArgument("source=" + options_.shared_dir + " ").empty());
}

TEST_F(VirtiofsdProcessTest, DestructorStopsItAndItsSandboxWorker) {
  std::string needle = "source=" + options_.shared_dir + " ";
  UniqueFd client;  // stays connected past the Virtiofsd: only its destructor ends it
  {
    auto virtiofsd = Virtiofsd::Start(options_);
    ASSERT_TRUE(virtiofsd) << virtiofsd.error().ToString();
    // A connected client makes virtiofsd fork its namespace-sandbox worker.
    auto connected = ConnectUnix(options_.socket_path);
    ASSERT_TRUE(connected) << connected.error().ToString();
    client = std::move(*connected);
    for (int i = 0; i < 100 && ProcessesWithArgument(needle).size() < 2; ++i) {
      std::this_thread::sleep_for(milliseconds(20));
    }
    EXPECT_EQ(ProcessesWithArgument(needle).size(), 2u)
        << "expected virtiofsd and its sandbox worker";
  }
  for (int i = 0; i < 100 && !ProcessesWithArgument(needle).empty(); ++i) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_TRUE(ProcessesWithArgument(needle).empty());
  EXPECT_FALSE(PathExists(options_.socket_path));
}

// --- hullctl, end to end --------------------------------------------------------

// Runs hullctl (argv[0]) and waits; `while_running` gets its pid.
testlib::CommandOutcome RunCommand(std::vector<std::string> argv,
                                   std::function<void(pid_t)> while_running = nullptr) {
  return testlib::RunCommand(std::move(argv), {.while_running = std::move(while_running)});
}

class HullctlTest : public VmTest {
 protected:
  void SetUp() override {
    VmTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_TRUE(MakeDirs(run_dir_));
    config_path_ = run_dir_ + "/config.toml";
    ASSERT_TRUE(WriteFile(config_path_, "[runtime]\nrun_dir = \"" + run_dir_ +
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

  bool RunDirEmpty() {
    DIR* dir = opendir((run_dir_ + "/run").c_str());
    if (dir == nullptr) return true;
    int entries = 0;
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] != '.') ++entries;
    }
    closedir(dir);
    return entries == 0;
  }

  std::string config_path_;
};

TEST_F(HullctlTest, VmPingPrintsDetailsAndLeavesNothing) {
  auto result =
      RunCommand({HULL_HULLCTL, "--config", config_path_, "vm", "ping", "--json", "--memory", "256",
                  "--cpus", "2", "--transport", "serial", "--accel", "tcg"});
  ASSERT_EQ(result.status.ShellCode(), 0) << result.err;
  auto json = nlohmann::json::parse(result.out, nullptr, false);
  ASSERT_TRUE(json.is_object()) << result.out;
  EXPECT_EQ(json["transport"], "serial");
  EXPECT_EQ(json["accel"], "tcg");
  EXPECT_EQ(json["online_cpus"], 2);
  EXPECT_GT(json["ready_ms"].get<int64_t>(), 0);
  EXPECT_LE(json["memory_total_bytes"].get<uint64_t>(), 256ull << 20);
  EXPECT_TRUE(RunDirEmpty()) << "hullctl vm ping left state behind";
  EXPECT_FALSE(ProcessWithArgumentExists("hull-ping-"));
}

TEST_F(HullctlTest, VmPingInterruptedBySigtermStopsTheVm) {
  auto result = RunCommand({HULL_HULLCTL, "--config", config_path_, "vm", "ping"}, [&](pid_t pid) {
    // Wait for the VM to exist, then interrupt hullctl mid-boot.
    for (int i = 0; i < 200 && RunDirEmpty(); ++i) std::this_thread::sleep_for(milliseconds(20));
    std::this_thread::sleep_for(milliseconds(300));
    ASSERT_EQ(::kill(pid, SIGTERM), 0);
  });
  EXPECT_EQ(result.status.ShellCode(), 128 + SIGTERM) << result.err;
  EXPECT_NE(result.err.find("interrupted"), std::string::npos) << result.err;
  EXPECT_TRUE(RunDirEmpty());
  EXPECT_FALSE(ProcessWithArgumentExists("hull-ping-"));
}

TEST_F(HullctlTest, VmPingWithBadInputFailsClearly) {
  auto missing = RunCommand(
      {HULL_HULLCTL, "--config", config_path_, "vm", "ping", "--kernel", "/nonexistent/vmlinuz"});
  EXPECT_EQ(missing.status.ShellCode(), 1);
  EXPECT_NE(missing.err.find("guest kernel `/nonexistent/vmlinuz` not found"), std::string::npos)
      << missing.err;
  EXPECT_TRUE(RunDirEmpty());

  auto memory =
      RunCommand({HULL_HULLCTL, "--config", config_path_, "vm", "ping", "--memory", "12"});
  EXPECT_NE(memory.status.ShellCode(), 0);
  EXPECT_NE(memory.err.find("--memory"), std::string::npos) << memory.err;

  ASSERT_TRUE(WriteFile(run_dir_ + "/bad.toml", "[hypervisor]\nmemory_mib = \"big\"\n"));
  auto bad_config = RunCommand({HULL_HULLCTL, "--config", run_dir_ + "/bad.toml", "vm", "ping"});
  EXPECT_EQ(bad_config.status.ShellCode(), 1);
  EXPECT_NE(bad_config.err.find("hypervisor.memory_mib: expected an integer"), std::string::npos)
      << bad_config.err;
}

TEST_F(HullctlTest, CheckPassesHereAndFailsWithoutGuestAssets) {
  auto ok = RunCommand({HULL_HULLCTL, "--config", config_path_, "check"});
  EXPECT_EQ(ok.status.ShellCode(), 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("accelerator"), std::string::npos);
  EXPECT_NE(ok.out.find("ok    host limits"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("hull can run here"), std::string::npos);

  ASSERT_TRUE(
      WriteFile(run_dir_ + "/nokernel.toml", "[hypervisor]\nkernel = \"/nonexistent/vmlinuz\"\n"));
  auto bad = RunCommand({HULL_HULLCTL, "--config", run_dir_ + "/nokernel.toml", "check"});
  EXPECT_EQ(bad.status.ShellCode(), 1);
  EXPECT_NE(bad.out.find("FAIL  guest kernel"), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace hull
