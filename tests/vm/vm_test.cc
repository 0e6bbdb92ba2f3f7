// VM tests: real QEMU (TCG here, KVM where the host has it) booting the real
// guest image with hull-agent as PID 1.
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include <gtest/gtest.h>

#include "agent_client.h"
#include "hull/core/process.h"
#include "hull/core/syscall.h"
#include "hull/hypervisor/hypervisor.h"

namespace hull {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kQemu[] = "/usr/bin/qemu-system-x86_64";

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
    if (cmdline->find(needle) != std::string::npos && cmdline->find("vm_tests") == std::string::npos) {
      found = true;
      break;
    }
  }
  closedir(proc);
  return found;
}

class VmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!IsExecutable(kQemu)) GTEST_SKIP() << "QEMU is not installed (" << kQemu << ")";
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

  std::unique_ptr<AgentClient> ConnectAgent(Vm& vm, seconds timeout = seconds(90)) {
    auto client = AgentClient::Connect([&vm](Clock::time_point d) { return vm.ConnectAgent(d); },
                                       Clock::now() + timeout);
    EXPECT_TRUE(client) << client.error().ToString() << "\n--- console ---\n"
                        << ReadFile(vm.console_log_path()).value_or("");
    return client ? std::move(*client) : nullptr;
  }

  void ExpectNothingLeft(const std::string& id, pid_t pid) {
    EXPECT_FALSE(PathExists(run_dir_ + "/" + id)) << "state dir left behind";
    EXPECT_NE(::kill(pid, 0), 0) << "qemu process " << pid << " still exists";
    EXPECT_FALSE(ProcessWithArgumentExists("hull-" + id + ",")) << "a qemu for " << id << " still runs";
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

  auto details = client->GetGuestDetails(seconds(10));
  ASSERT_TRUE(details) << details.error().ToString();
  EXPECT_EQ(details->transport(), "serial");
  EXPECT_EQ(details->online_cpus(), 1u);
  // MemTotal is the RAM minus what the kernel keeps for itself.
  EXPECT_GT(details->memory_total_bytes(), 300ull << 20);
  EXPECT_LE(details->memory_total_bytes(), 384ull << 20);
  EXPECT_EQ(details->cgroup_mode(), "v2");
  EXPECT_NE(details->kernel_release().find("cloud-amd64"), std::string::npos);
  std::vector<std::string> modules(details->loaded_modules().begin(), details->loaded_modules().end());
  EXPECT_NE(std::find(modules.begin(), modules.end(), "virtio_console"), modules.end());
  const auto& startup = details->startup();
  EXPECT_GT(startup.agent_start_us(), 0u);
  EXPECT_GE(startup.listening_us(), startup.agent_start_us());
  EXPECT_GE(startup.first_request_us(), startup.listening_us());
  auto console = ReadFile((*vm)->console_log_path());
  ASSERT_TRUE(console);
  EXPECT_NE(console->find("hull-agent"), std::string::npos) << "agent logs go to the console";

  // The guest powers itself off when asked.
  (*vm)->ExpectExit();
  ASSERT_TRUE(client->Shutdown(false, seconds(10)));
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
  auto details = client->GetGuestDetails(seconds(10));
  ASSERT_TRUE(details);
  EXPECT_EQ(details->transport(), "vsock");
  (*vm)->Stop(seconds(0));
}

TEST_F(VmTest, AgentServesTheNextConnectionAfterTheHostDisconnects) {
  auto vm = hypervisor_->Launch(BaseConfig());
  ASSERT_TRUE(vm) << vm.error().ToString();
  for (int round = 0; round < 3; ++round) {
    auto client = ConnectAgent(**vm);
    ASSERT_NE(client, nullptr) << "round " << round;
    auto check = client->Check(seconds(10));
    ASSERT_TRUE(check) << "round " << round << ": " << check.error().ToString();
    EXPECT_EQ(check->status(), agent::v1::CheckResponse::SERVING);
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
  auto check = client->Check(seconds(2));
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
  EXPECT_NE(vm.error().ToString().find("guest kernel `" + missing_kernel.kernel + "` not found"), std::string::npos)
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
  EXPECT_NE(vm.error().ToString().find("QEMU exited with code 1: qemu-system-x86_64: unsupported machine type"),
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

// --- hullctl, end to end --------------------------------------------------------

struct CommandResult {
  ExitStatus status;
  std::string out;
  std::string err;
};

CommandResult RunCommand(std::vector<std::string> argv, const std::string& scratch,
                         std::function<void(Child&)> while_running = nullptr) {
  std::string out = scratch + "/stdout", err = scratch + "/stderr";
  ::unlink(out.c_str());
  ::unlink(err.c_str());
  auto child = Child::Spawn({.argv = std::move(argv), .stdout_path = out, .stderr_path = err});
  EXPECT_TRUE(child) << child.error().ToString();
  if (!child) return {};
  if (while_running) while_running(*child);
  auto status = child->Wait();
  return {status.value_or(ExitStatus{}), ReadFile(out).value_or(""), ReadFile(err).value_or("")};
}

class HullctlTest : public VmTest {
 protected:
  void SetUp() override {
    VmTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_TRUE(MakeDirs(run_dir_));
    config_path_ = run_dir_ + "/config.toml";
    ASSERT_TRUE(WriteFile(config_path_, "[runtime]\nrun_dir = \"" + run_dir_ + "/run\"\n"
                                        "[hypervisor]\nkernel = \"" + HULL_GUEST_DIR + "/vmlinuz\"\n"
                                        "initrd = \"" + HULL_GUEST_DIR + "/initrd.img\"\n"));
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
  auto result = RunCommand({HULL_HULLCTL, "--config", config_path_, "vm", "ping", "--json", "--memory", "256",
                            "--cpus", "2", "--transport", "serial", "--accel", "tcg"},
                           run_dir_);
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
  auto result = RunCommand({HULL_HULLCTL, "--config", config_path_, "vm", "ping"}, run_dir_, [&](Child& child) {
    // Wait for the VM to exist, then interrupt hullctl mid-boot.
    for (int i = 0; i < 200 && RunDirEmpty(); ++i) std::this_thread::sleep_for(milliseconds(20));
    std::this_thread::sleep_for(milliseconds(300));
    ASSERT_TRUE(child.Signal(SIGTERM));
  });
  EXPECT_EQ(result.status.ShellCode(), 128 + SIGTERM) << result.err;
  EXPECT_NE(result.err.find("interrupted"), std::string::npos) << result.err;
  EXPECT_TRUE(RunDirEmpty());
  EXPECT_FALSE(ProcessWithArgumentExists("hull-ping-"));
}

TEST_F(HullctlTest, VmPingWithBadInputFailsClearly) {
  auto missing = RunCommand({HULL_HULLCTL, "--config", config_path_, "vm", "ping", "--kernel", "/nonexistent/vmlinuz"},
                            run_dir_);
  EXPECT_EQ(missing.status.ShellCode(), 1);
  EXPECT_NE(missing.err.find("guest kernel `/nonexistent/vmlinuz` not found"), std::string::npos) << missing.err;
  EXPECT_TRUE(RunDirEmpty());

  auto memory = RunCommand({HULL_HULLCTL, "--config", config_path_, "vm", "ping", "--memory", "12"}, run_dir_);
  EXPECT_NE(memory.status.ShellCode(), 0);
  EXPECT_NE(memory.err.find("--memory"), std::string::npos) << memory.err;

  ASSERT_TRUE(WriteFile(run_dir_ + "/bad.toml", "[hypervisor]\nmemory_mib = \"big\"\n"));
  auto bad_config = RunCommand({HULL_HULLCTL, "--config", run_dir_ + "/bad.toml", "vm", "ping"}, run_dir_);
  EXPECT_EQ(bad_config.status.ShellCode(), 1);
  EXPECT_NE(bad_config.err.find("hypervisor.memory_mib: expected an integer"), std::string::npos) << bad_config.err;
}

TEST_F(HullctlTest, CheckPassesHereAndFailsWithoutGuestAssets) {
  auto ok = RunCommand({HULL_HULLCTL, "--config", config_path_, "check"}, run_dir_);
  EXPECT_EQ(ok.status.ShellCode(), 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("accelerator"), std::string::npos);
  EXPECT_NE(ok.out.find("hull can run here"), std::string::npos);

  ASSERT_TRUE(WriteFile(run_dir_ + "/nokernel.toml", "[hypervisor]\nkernel = \"/nonexistent/vmlinuz\"\n"));
  auto bad = RunCommand({HULL_HULLCTL, "--config", run_dir_ + "/nokernel.toml", "check"}, run_dir_);
  EXPECT_EQ(bad.status.ShellCode(), 1);
  EXPECT_NE(bad.out.find("FAIL  guest kernel"), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace hull
