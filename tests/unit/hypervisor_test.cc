#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "hull/core/syscall.h"
#include "hull/hypervisor/accel.h"
#include "hull/hypervisor/hypervisor.h"
#include "hull/hypervisor/kernel_cmdline.h"
#include "qemu/qemu_argv.h"

namespace hull {
namespace {

// Compares against tests/golden/<name>; HULL_UPDATE_GOLDEN=1 rewrites it.
void ExpectGolden(const std::string& name, const std::string& actual) {
  std::string path = std::string(HULL_GOLDEN_DIR) + "/" + name;
  if (const char* update = std::getenv("HULL_UPDATE_GOLDEN"); update != nullptr && *update == '1') {
    ASSERT_TRUE(WriteFile(path, actual));
    return;
  }
  auto expected = ReadFile(path);
  ASSERT_TRUE(expected) << "missing golden file " << path << " (run with HULL_UPDATE_GOLDEN=1)";
  EXPECT_EQ(actual, *expected) << "golden mismatch: " << path;
}

std::string OnePerLine(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& arg : argv) out += arg + "\n";
  return out;
}

qemu::QemuLaunchPlan Plan(TransportKind transport, Accel accel) {
  qemu::QemuLaunchPlan plan;
  plan.qemu_path = "/usr/bin/qemu-system-x86_64";
  plan.name = "hull-pod1";
  plan.accel = accel;
  plan.vcpus = 2;
  plan.memory_mib = 512;
  plan.kernel = "/usr/share/hull/guest/vmlinuz";
  plan.initrd = "/usr/share/hull/guest/initrd.img";
  plan.kernel_cmdline = BuildKernelCmdline({transport, "info", false, ""});
  plan.qmp_socket = "/run/hull/pod1/qmp.sock";
  plan.console_log = "/run/hull/pod1/console.log";
  plan.transport = transport;
  plan.agent_socket = "/run/hull/pod1/agent.sock";
  if (transport == TransportKind::kVsock) {
    plan.vsock_cid = 1234;
    plan.vhost_fd = 7;
  }
  return plan;
}

TEST(QemuArgvTest, SerialTcg) {
  ExpectGolden("qemu_argv_serial_tcg.txt", OnePerLine(qemu::BuildQemuArgv(Plan(TransportKind::kSerial, Accel::kTcg))));
}
TEST(QemuArgvTest, SerialKvm) {
  ExpectGolden("qemu_argv_serial_kvm.txt", OnePerLine(qemu::BuildQemuArgv(Plan(TransportKind::kSerial, Accel::kKvm))));
}
TEST(QemuArgvTest, VsockTcg) {
  ExpectGolden("qemu_argv_vsock_tcg.txt", OnePerLine(qemu::BuildQemuArgv(Plan(TransportKind::kVsock, Accel::kTcg))));
}
TEST(QemuArgvTest, VsockKvm) {
  ExpectGolden("qemu_argv_vsock_kvm.txt", OnePerLine(qemu::BuildQemuArgv(Plan(TransportKind::kVsock, Accel::kKvm))));
}

TEST(QemuArgvTest, SandboxCanBeTurnedOff) {
  auto plan = Plan(TransportKind::kSerial, Accel::kTcg);
  plan.seccomp_sandbox = false;
  auto argv = qemu::BuildQemuArgv(plan);
  EXPECT_EQ(std::find(argv.begin(), argv.end(), "-sandbox"), argv.end());
}

TEST(KernelCmdlineTest, CarriesTheAgentSettings) {
  std::string cmdline = BuildKernelCmdline({TransportKind::kVsock, "debug", true, "foo=bar"});
  EXPECT_EQ(cmdline,
            "console=ttyS0 debug panic=-1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd "
            "cryptomgr.notests net.ifnames=0 no_timer_check hull.transport=vsock hull.log=debug "
            "hull.debug=1 foo=bar");
  EXPECT_NE(BuildKernelCmdline({}).find(" quiet "), std::string::npos);
}

TEST(AccelTest, AutoPicksKvmOnlyWithHardwareVirtualisation) {
  auto kvm = DecideAccel("auto", {true, "", true});
  ASSERT_TRUE(kvm);
  EXPECT_EQ(kvm->accel, Accel::kKvm);

  // /dev/kvm without vmx/svm: a paravirtual nested KVM, slower than TCG.
  auto nested = DecideAccel("auto", {true, "", false});
  ASSERT_TRUE(nested);
  EXPECT_EQ(nested->accel, Accel::kTcg);
  EXPECT_NE(nested->reason.find("neither vmx nor svm"), std::string::npos);

  auto missing = DecideAccel("auto", {false, "/dev/kvm: No such file or directory", true});
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->accel, Accel::kTcg);
  EXPECT_NE(missing->reason.find("/dev/kvm: No such file"), std::string::npos);
}

TEST(AccelTest, ExplicitChoicesAreHonouredOrRefused) {
  EXPECT_EQ(DecideAccel("tcg", {true, "", true})->accel, Accel::kTcg);
  EXPECT_EQ(DecideAccel("kvm", {true, "", false})->accel, Accel::kKvm);
  auto refused = DecideAccel("kvm", {false, "/dev/kvm: Permission denied", false});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_FALSE(DecideAccel("hvf", {}));
}

TEST(HypervisorTest, LaunchRejectsBadConfigAndLeavesNothing) {
  std::string run_dir = ::testing::TempDir() + "/hull-run-" + RandomHex(4);
  auto hypervisor = MakeHypervisor("qemu");
  ASSERT_TRUE(hypervisor);
  VmConfig config;
  config.id = "bad";
  config.run_dir = run_dir;
  config.hypervisor_path = "/bin/true";
  config.kernel = "/nonexistent/vmlinuz";
  config.initrd = "/etc/hostname";
  auto vm = (*hypervisor)->Launch(config);
  ASSERT_FALSE(vm);
  EXPECT_NE(vm.error().ToString().find("guest kernel `/nonexistent/vmlinuz` not found"), std::string::npos)
      << vm.error().ToString();
  EXPECT_FALSE(PathExists(run_dir + "/bad"));

  config.id = "../escape";
  vm = (*hypervisor)->Launch(config);
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code(), ErrorCode::kInvalidArgument);

  EXPECT_FALSE(MakeHypervisor("firecracker"));
  (void)RemoveTree(run_dir);
}

}  // namespace
}  // namespace hull
