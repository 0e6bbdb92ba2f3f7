#include "hull/hypervisor/hypervisor.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "hull/core/syscall.h"
#include "hull/hypervisor/accel.h"
#include "hull/hypervisor/kernel_cmdline.h"
#include "hull/hypervisor/virtiofsd.h"
#include "libvirt/domain_xml.h"
#include "qemu/qemu_argv.h"
#include "src/console_log.h"
#include "testlib.h"

namespace hull {
namespace {

using testlib::ExpectGolden;
using testlib::HasCode;

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
  plan.console_fd = 6;
  plan.transport = transport;
  plan.agent_socket = "/run/hull/pod1/agent.sock";
  if (transport == TransportKind::kVsock) {
    plan.vsock_cid = 1234;
    plan.vhost_fd = 7;
  }
  return plan;
}

TEST(QemuArgvTest, PodNetworkOnATap) {
  qemu::QemuLaunchPlan plan = Plan(TransportKind::kSerial, Accel::kTcg);
  plan.tap_fd = 7;
  plan.mac_address = "2e:1f:19:87:6c:16";
  ExpectGolden("qemu_argv_serial_tcg_pod_net.txt", OnePerLine(qemu::BuildQemuArgv(plan)));
}

TEST(QemuArgvTest, GuestRootIsAReadOnlySharedPmemDevice) {
  qemu::QemuLaunchPlan plan = Plan(TransportKind::kSerial, Accel::kTcg);
  plan.root_image = "/usr/share/hull/guest/root.erofs";
  plan.root_image_bytes = 116u << 20;
  plan.kernel_cmdline = BuildKernelCmdline({TransportKind::kSerial, "info", false, "", "pmem0"});
  ExpectGolden("qemu_argv_serial_tcg_root.txt", OnePerLine(qemu::BuildQemuArgv(plan)));
}

TEST(QemuArgvTest, SerialTcg) {
  ExpectGolden("qemu_argv_serial_tcg.txt",
               OnePerLine(qemu::BuildQemuArgv(Plan(TransportKind::kSerial, Accel::kTcg))));
}
TEST(QemuArgvTest, SerialKvm) {
  ExpectGolden("qemu_argv_serial_kvm.txt",
               OnePerLine(qemu::BuildQemuArgv(Plan(TransportKind::kSerial, Accel::kKvm))));
}
TEST(QemuArgvTest, VsockTcg) {
  ExpectGolden("qemu_argv_vsock_tcg.txt",
               OnePerLine(qemu::BuildQemuArgv(Plan(TransportKind::kVsock, Accel::kTcg))));
}
TEST(QemuArgvTest, VsockKvm) {
  ExpectGolden("qemu_argv_vsock_kvm.txt",
               OnePerLine(qemu::BuildQemuArgv(Plan(TransportKind::kVsock, Accel::kKvm))));
}

TEST(QemuArgvTest, SerialTcgWithSharedDir) {
  auto plan = Plan(TransportKind::kSerial, Accel::kTcg);
  plan.virtiofs_socket = "/run/hull/pod1/virtiofsd.sock";
  plan.virtiofs_tag = kSharedFsTag;
  ExpectGolden("qemu_argv_serial_tcg_shared_dir.txt", OnePerLine(qemu::BuildQemuArgv(plan)));
}

TEST(QemuArgvTest, NoVirtioFsDeviceWithoutSharedDir) {
  auto argv = qemu::BuildQemuArgv(Plan(TransportKind::kSerial, Accel::kTcg));
  for (const auto& arg : argv) EXPECT_EQ(arg.find("vhost-user-fs"), std::string::npos) << arg;
}

TEST(QemuArgvTest, SandboxCanBeTurnedOff) {
  auto plan = Plan(TransportKind::kSerial, Accel::kTcg);
  plan.seccomp_sandbox = false;
  auto argv = qemu::BuildQemuArgv(plan);
  EXPECT_EQ(std::find(argv.begin(), argv.end(), "-sandbox"), argv.end());
}

TEST(QemuArgvTest, FreePageReportingCanBeTurnedOff) {
  auto plan = Plan(TransportKind::kSerial, Accel::kTcg);
  plan.free_page_reporting = false;
  for (const auto& arg : qemu::BuildQemuArgv(plan))
    EXPECT_EQ(arg.find("balloon"), std::string::npos) << arg;
}

TEST(QemuArgvTest, TcgTranslationCacheSizeOnlyWhenSetAndOnlyForTcg) {
  auto plan = Plan(TransportKind::kSerial, Accel::kTcg);
  auto accel_of = [](const std::vector<std::string>& argv) {
    auto it = std::find(argv.begin(), argv.end(), "-accel");
    return it != argv.end() && it + 1 != argv.end() ? *(it + 1) : std::string();
  };
  EXPECT_EQ(accel_of(qemu::BuildQemuArgv(plan)), "tcg,thread=multi");
  plan.tcg_tb_size_mib = 32;
  EXPECT_EQ(accel_of(qemu::BuildQemuArgv(plan)), "tcg,thread=multi,tb-size=32");
  plan.accel = Accel::kKvm;
  EXPECT_EQ(accel_of(qemu::BuildQemuArgv(plan)).find("tb-size"), std::string::npos);
}

TEST(KernelCmdlineTest, CarriesTheAgentSettings) {
  std::string cmdline = BuildKernelCmdline({TransportKind::kVsock, "debug", true, "foo=bar"});
  EXPECT_EQ(cmdline,
            "console=ttyS0 debug panic=-1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd "
            "cryptomgr.notests net.ifnames=0 no_timer_check hull.transport=vsock hull.log=debug "
            "hull.debug=1 foo=bar");
  EXPECT_NE(BuildKernelCmdline({}).find(" quiet "), std::string::npos);
  EXPECT_EQ(BuildKernelCmdline({}).find("hull.root"), std::string::npos);
  EXPECT_THAT(BuildKernelCmdline({.root_device = "vda"}), ::testing::EndsWith(" hull.root=vda"));
}

TEST(RootImageTest, NoneBesideTheInitrdOrAsConfigured) {
  testlib::TempDir dir("root-image");
  const std::string initrd = dir.Sub("initrd.img");
  EXPECT_EQ(ResolveRootImage("", initrd), "") << "no root.erofs beside the initrd: none";
  ASSERT_TRUE(WriteFile(dir.Sub("root.erofs"), ""));
  EXPECT_EQ(ResolveRootImage("", initrd), dir.Sub("root.erofs"));
  EXPECT_EQ(ResolveRootImage("none", initrd), "");
  EXPECT_EQ(ResolveRootImage("/srv/other.erofs", initrd), "/srv/other.erofs");
}

TEST(RootImageTest, OnlyAFilePaddedTo2MiBIsARootImage) {
  testlib::TempDir dir("root-image");
  const std::string image = dir.Sub("root.erofs");
  EXPECT_THAT(RootImageBytes(image), HasCode(ErrorCode::kNotFound));
  ASSERT_TRUE(WriteFile(image, ""));
  EXPECT_THAT(RootImageBytes(image), HasCode(ErrorCode::kFailedPrecondition));
  ASSERT_EQ(::truncate(image.c_str(), (2 << 20) + 4096), 0);
  auto unaligned = RootImageBytes(image);
  EXPECT_THAT(unaligned, HasCode(ErrorCode::kFailedPrecondition));
  EXPECT_THAT(unaligned.error().ToString(), ::testing::HasSubstr(image));
  ASSERT_EQ(::truncate(image.c_str(), 4 << 20), 0);
  auto bytes = RootImageBytes(image);
  ASSERT_TRUE(bytes) << bytes.error().ToString();
  EXPECT_EQ(*bytes, 4u << 20);
  EXPECT_THAT(RootImageBytes(dir.path()), HasCode(ErrorCode::kFailedPrecondition));
  EXPECT_THAT(RootImageBytes("root.erofs"), HasCode(ErrorCode::kInvalidArgument));
  EXPECT_THAT(RootImageBytes(dir.Sub("a,share=off")), HasCode(ErrorCode::kInvalidArgument));
}

TEST(RootImageTest, TheConfigurationTakesNoneOrAnAbsolutePath) {
  for (const char* good : {"", "none", "/usr/share/hull/guest/root.erofs"}) {
    EXPECT_TRUE(ParseConfig(std::string("[hypervisor]\nroot_image = \"") + good + "\"\n", "t"))
        << good;
  }
  for (const char* bad : {"root.erofs", "/srv/a,b.erofs", "None"}) {
    auto parsed = ParseConfig(std::string("[hypervisor]\nroot_image = \"") + bad + "\"\n", "t");
    EXPECT_THAT(parsed, HasCode(ErrorCode::kInvalidArgument)) << bad;
  }
}

TEST(RootImageTest, TheKernelCommandLineNamesTheRootOnlyWhenThereIsOne) {
  VmConfig config;
  EXPECT_EQ(VmKernelCmdline(config, "pmem0").find("hull.root"), std::string::npos);
  config.root_image = "/usr/share/hull/guest/root.erofs";
  EXPECT_THAT(VmKernelCmdline(config, "pmem0"), ::testing::HasSubstr(" hull.root=pmem0"));
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
  EXPECT_NE(vm.error().ToString().find("guest kernel `/nonexistent/vmlinuz` not found"),
            std::string::npos)
      << vm.error().ToString();
  EXPECT_FALSE(PathExists(run_dir + "/bad"));

  config.id = "../escape";
  vm = (*hypervisor)->Launch(config);
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code(), ErrorCode::kInvalidArgument);

  EXPECT_FALSE(MakeHypervisor("firecracker"));
  (void)RemoveTree(run_dir);
}

// --- virtiofsd ---------------------------------------------------------------

TEST(VirtiofsdTest, ArgvPassesTheSocketAsAnFdAndOptionsInOrder) {
  VirtiofsdOptions options;
  options.shared_dir = "/run/hull/pod1/shared";
  options.socket_path = "/run/hull/pod1/virtiofsd.sock";
  options.log_path = "/run/hull/pod1/virtiofsd.log";
  options.extra_args = {"-o", "xattr", "--thread-pool-size=1"};
  EXPECT_EQ(BuildVirtiofsdArgv(options, 3),
            (std::vector<std::string>{"/usr/lib/qemu/virtiofsd", "--fd=3", "-o",
                                      "source=/run/hull/pod1/shared", "-o", "cache=auto", "-o",
                                      "sandbox=namespace", "-o", "modcaps=-mknod:-setfcap", "-o",
                                      "xattr", "--thread-pool-size=1"}));
  options.cache = VirtiofsCache::kNone;
  options.sandbox = VirtiofsdSandbox::kChroot;
  options.extra_args.clear();
  auto argv = BuildVirtiofsdArgv(options, 7);
  EXPECT_EQ(argv[1], "--fd=7");
  EXPECT_EQ(argv[5], "cache=none");
  EXPECT_EQ(argv[7], "sandbox=chroot");
  EXPECT_EQ(argv.size(), 10u);
}

TEST(VirtiofsdTest, CacheAndSandboxNamesRoundTrip) {
  for (auto cache : {VirtiofsCache::kAuto, VirtiofsCache::kAlways, VirtiofsCache::kNone}) {
    EXPECT_EQ(*ParseVirtiofsCache(VirtiofsCacheName(cache)), cache);
  }
  auto never = ParseVirtiofsCache("never");
  ASSERT_FALSE(never);
  EXPECT_NE(never.error().ToString().find("expected auto, always or none"), std::string::npos);
  for (auto sandbox : {VirtiofsdSandbox::kNamespace, VirtiofsdSandbox::kChroot}) {
    EXPECT_EQ(*ParseVirtiofsdSandbox(VirtiofsdSandboxName(sandbox)), sandbox);
  }
  EXPECT_FALSE(ParseVirtiofsdSandbox("none"));
}

// Fake virtiofsd binaries (shell scripts) drive the failure paths without
// root or QEMU; tests/vm runs the real one.
class VirtiofsdStartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/hull-virtiofsd-" + RandomHex(4);
    ASSERT_TRUE(MakeDirs(dir_ + "/shared"));
    options_.shared_dir = dir_ + "/shared";
    options_.socket_path = dir_ + "/virtiofsd.sock";
    options_.log_path = dir_ + "/virtiofsd.log";
    // The namespace sandbox's bind mount needs root; tests/vm covers it.
    options_.sandbox = VirtiofsdSandbox::kChroot;
  }
  void TearDown() override { (void)RemoveTree(dir_); }

  std::string FakeBinary(const std::string& script) {
    std::string path = dir_ + "/fake-virtiofsd-" + RandomHex(3);
    EXPECT_TRUE(WriteFile(path, "#!/bin/sh\n" + script + "\n", 0755));
    return path;
  }

  Error StartFails() {
    auto started = Virtiofsd::Start(options_);
    EXPECT_FALSE(started);
    EXPECT_FALSE(PathExists(options_.socket_path)) << "socket left behind";
    return started ? Error(ErrorCode::kOk, "") : started.error();
  }

  std::string dir_;
  VirtiofsdOptions options_;
};

TEST_F(VirtiofsdStartTest, MissingBinaryIsNamed) {
  options_.binary = dir_ + "/no-such-virtiofsd";
  Error error = StartFails();
  EXPECT_EQ(error.code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(error.ToString().find("virtiofsd binary `" + options_.binary + "` is missing"),
            std::string::npos)
      << error.ToString();
}

TEST_F(VirtiofsdStartTest, SharedDirMustBeAnExistingAbsoluteDirectory) {
  options_.binary = FakeBinary("exit 0");
  options_.shared_dir = dir_ + "/missing";
  Error missing = StartFails();
  EXPECT_EQ(missing.code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.ToString().find("shared directory `" + options_.shared_dir + "`"),
            std::string::npos)
      << missing.ToString();

  options_.shared_dir = "relative/dir";
  EXPECT_NE(StartFails().ToString().find("`relative/dir` is not an absolute path"),
            std::string::npos);

  options_.shared_dir = options_.binary;
  EXPECT_NE(StartFails().ToString().find("is not a directory"), std::string::npos);

  ASSERT_TRUE(MakeDirs(dir_ + "/a,b"));
  options_.shared_dir = dir_ + "/a,b";
  EXPECT_NE(StartFails().ToString().find("contains a comma"), std::string::npos);
}

TEST_F(VirtiofsdStartTest, ArgumentsHullManagesAreRefused) {
  options_.binary = FakeBinary("exit 0");
  for (std::vector<std::string> args : {std::vector<std::string>{"--socket-path=/tmp/x"},
                                        {"--fd=9"},
                                        {"--daemonize"},
                                        {"-o", "source=/"},
                                        {"-o", "xattr,source=/"}}) {
    options_.extra_args = args;
    Error error = StartFails();
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(error.ToString().find("is managed by hull"), std::string::npos) << error.ToString();
  }
}

TEST_F(VirtiofsdStartTest, EarlyExitReportsTheLogTail) {
  options_.binary = FakeBinary("echo 'fuse: unknown option(s): `-o bogus'\'' >&2; exit 1");
  Error error = StartFails();
  EXPECT_EQ(error.code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(error.ToString().find(
                "virtiofsd exited with code 1 before it was ready: fuse: unknown option(s)"),
            std::string::npos)
      << error.ToString();
}

TEST_F(VirtiofsdStartTest, HangingStartupTimesOutAndIsKilled) {
  options_.binary = FakeBinary("echo starting; exec sleep 30");
  options_.startup_timeout = std::chrono::milliseconds(300);
  // The fake sleeps 30 s: an error other than the startup deadline (its exit,
  // much later) would read "exited ... before it was ready".
  Error error = StartFails();
  EXPECT_EQ(error.code(), ErrorCode::kDeadlineExceeded);
  EXPECT_NE(error.ToString().find("did not start listening within 300 ms"), std::string::npos)
      << error.ToString();
  EXPECT_NE(error.ToString().find("starting"), std::string::npos) << error.ToString();
}

TEST_F(VirtiofsdStartTest, ExistingSocketPathIsNotTakenOver) {
  options_.binary = FakeBinary("exit 0");
  ASSERT_TRUE(WriteFile(options_.socket_path, "someone else's"));
  auto started = Virtiofsd::Start(options_);
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().ToString().find("bind `" + options_.socket_path + "`"),
            std::string::npos)
      << started.error().ToString();
}

TEST(HypervisorTest, LaunchWithAMissingSharedDirFailsAndLeavesNothing) {
  std::string run_dir = ::testing::TempDir() + "/hull-run-" + RandomHex(4);
  auto hypervisor = MakeHypervisor("qemu");
  ASSERT_TRUE(hypervisor);
  VmConfig config;
  config.id = "shared";
  config.run_dir = run_dir;
  config.hypervisor_path = "/bin/true";
  config.kernel = "/etc/hostname";
  config.initrd = "/etc/hostname";
  config.shared_dir = run_dir + "/no-such-dir";
  auto vm = (*hypervisor)->Launch(config);
  ASSERT_FALSE(vm);
  EXPECT_NE(vm.error().ToString().find("shared directory `" + config.shared_dir + "`"),
            std::string::npos)
      << vm.error().ToString();
  EXPECT_FALSE(PathExists(run_dir + "/shared"));

  config.share_dir = true;  // and a shared_dir as well
  vm = (*hypervisor)->Launch(config);
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(vm.error().ToString().find("share_dir and shared_dir exclude each other"),
            std::string::npos)
      << vm.error().ToString();
  (void)RemoveTree(run_dir);
}

TEST(HypervisorTest, VmConfigCarriesTheVirtiofsdSettings) {
  Config config;
  config.hypervisor.accel = "tcg";
  config.hypervisor.virtiofsd = "/opt/virtiofsd";
  config.hypervisor.virtiofs_cache = "always";
  config.hypervisor.virtiofsd_sandbox = "chroot";
  config.hypervisor.virtiofsd_args = {"-o", "xattr"};
  auto vm = VmConfigFromConfig(config, "pod1");
  ASSERT_TRUE(vm) << vm.error().ToString();
  EXPECT_EQ(vm->virtiofsd_path, "/opt/virtiofsd");
  EXPECT_EQ(vm->virtiofs_cache, VirtiofsCache::kAlways);
  EXPECT_EQ(vm->virtiofsd_sandbox, VirtiofsdSandbox::kChroot);
  EXPECT_EQ(vm->virtiofsd_args, (std::vector<std::string>{"-o", "xattr"}));
  EXPECT_TRUE(vm->shared_dir.empty()) << "what to share is the caller's choice";
}

TEST(HypervisorTest, VmConfigCarriesTheMemorySettings) {
  Config config;
  config.hypervisor.accel = "tcg";
  auto defaults = VmConfigFromConfig(config, "pod1");
  ASSERT_TRUE(defaults) << defaults.error().ToString();
  EXPECT_TRUE(defaults->free_page_reporting);
  EXPECT_EQ(defaults->tcg_tb_size_mib, 0u);
  config.hypervisor.free_page_reporting = false;
  config.hypervisor.tcg_tb_size_mib = 32;
  auto set = VmConfigFromConfig(config, "pod1");
  ASSERT_TRUE(set) << set.error().ToString();
  EXPECT_FALSE(set->free_page_reporting);
  EXPECT_EQ(set->tcg_tb_size_mib, 32u);
}

// --- the libvirt domain XML -------------------------------------------------------

libvirt::DomainPlan DomainPlan(TransportKind transport, Accel accel) {
  libvirt::DomainPlan plan;
  plan.name = "hull-pod1";
  plan.uuid = "6f1c2a3e-9d4b-4c8a-a1e2-3b4c5d6e7f80";
  plan.accel = accel;
  plan.vcpus = 2;
  plan.memory_mib = 512;
  plan.kernel = "/usr/share/hull/guest/vmlinuz";
  plan.initrd = "/usr/share/hull/guest/initrd.img";
  plan.kernel_cmdline = BuildKernelCmdline({transport, "info", false, ""});
  plan.console_log = "/run/hull/pod1/console.log";
  plan.transport = transport;
  plan.agent_socket = "/run/hull/pod1/agent.sock";
  return plan;
}

// libvirt's own schema. Without virt-xml-validate the calling test is marked
// skipped (after its golden-file checks ran): the schema check did not happen.
void ExpectValidDomainXml(const std::string& xml) {
  HULL_REQUIRE_BINARY("/usr/bin/virt-xml-validate", "libvirt-clients");
  testlib::TempDir dir("domain-xml");
  ASSERT_TRUE(WriteFile(dir.Sub("domain.xml"), xml));
  auto validate = testlib::RunCommand(
      {"/usr/bin/virt-xml-validate", dir.Sub("domain.xml"), "domain"}, {.merge_stderr = true});
  EXPECT_EQ(validate.code, 0) << "libvirt's schema rejects:\n" << xml << "\n" << validate.out;
}

TEST(DomainXmlTest, MatchesGoldenFilesAndLibvirtsSchema) {
  struct Case {
    const char* golden;
    TransportKind transport;
    Accel accel;
  } cases[] = {
      {"libvirt_domain_serial_tcg.xml", TransportKind::kSerial, Accel::kTcg},
      {"libvirt_domain_serial_kvm.xml", TransportKind::kSerial, Accel::kKvm},
      {"libvirt_domain_vsock_tcg.xml", TransportKind::kVsock, Accel::kTcg},
      {"libvirt_domain_vsock_kvm.xml", TransportKind::kVsock, Accel::kKvm},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.golden);
    std::string xml = libvirt::BuildDomainXml(DomainPlan(c.transport, c.accel));
    ExpectGolden(c.golden, xml);
    ExpectValidDomainXml(xml);
  }
}

TEST(DomainXmlTest, SharedDirectoryAndTapMatchGoldenFile) {
  libvirt::DomainPlan plan = DomainPlan(TransportKind::kSerial, Accel::kTcg);
  plan.shared_dir = "/run/hull/pod1/shared";
  plan.shared_tag = kSharedFsTag;
  plan.virtiofs_cache = VirtiofsCache::kNone;
  plan.tap_device = "tap0_hull";
  plan.mac_address = "02:42:ac:11:00:02";
  std::string xml = libvirt::BuildDomainXml(plan);
  ExpectGolden("libvirt_domain_serial_tcg_shared_dir_tap.xml", xml);
  ExpectValidDomainXml(xml);
  // Without them: neither a filesystem nor an interface.
  std::string bare = libvirt::BuildDomainXml(DomainPlan(TransportKind::kSerial, Accel::kTcg));
  EXPECT_EQ(bare.find("<filesystem"), std::string::npos);
  EXPECT_EQ(bare.find("<interface"), std::string::npos);
}

TEST(DomainXmlTest, GuestRootIsAReadOnlyVirtioDisk) {
  libvirt::DomainPlan plan = DomainPlan(TransportKind::kSerial, Accel::kTcg);
  plan.root_image = "/usr/share/hull/guest/root.erofs";
  plan.kernel_cmdline = BuildKernelCmdline({TransportKind::kSerial, "info", false, "", "vda"});
  std::string xml = libvirt::BuildDomainXml(plan);
  ExpectGolden("libvirt_domain_serial_tcg_root.xml", xml);
  ExpectValidDomainXml(xml);
  EXPECT_EQ(libvirt::BuildDomainXml(DomainPlan(TransportKind::kSerial, Accel::kTcg)).find("<disk"),
            std::string::npos);
}

TEST(DomainXmlTest, DefaultVirtiofsCacheIsLeftToVirtiofsd) {
  libvirt::DomainPlan plan = DomainPlan(TransportKind::kSerial, Accel::kTcg);
  plan.shared_dir = "/srv/share";
  plan.shared_tag = kSharedFsTag;
  std::string xml = libvirt::BuildDomainXml(plan);
  EXPECT_EQ(xml.find("<cache"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<sandbox mode='namespace'/>"), std::string::npos) << xml;
  plan.virtiofs_cache = VirtiofsCache::kAlways;
  plan.virtiofsd_sandbox = VirtiofsdSandbox::kChroot;
  xml = libvirt::BuildDomainXml(plan);
  EXPECT_NE(xml.find("<cache mode='always'/>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<sandbox mode='chroot'/>"), std::string::npos) << xml;
}

TEST(DomainXmlTest, WithoutFreePageReportingThereIsNoBalloon) {
  libvirt::DomainPlan plan = DomainPlan(TransportKind::kSerial, Accel::kTcg);
  plan.free_page_reporting = false;
  std::string xml = libvirt::BuildDomainXml(plan);
  EXPECT_NE(xml.find("<memballoon model='none'/>"), std::string::npos) << xml;
  EXPECT_EQ(xml.find("freePageReporting"), std::string::npos) << xml;
}

TEST(DomainXmlTest, TcgTranslationCacheSize) {
  libvirt::DomainPlan plan = DomainPlan(TransportKind::kSerial, Accel::kTcg);
  EXPECT_EQ(libvirt::BuildDomainXml(plan).find("<tcg>"), std::string::npos);
  plan.tcg_tb_size_mib = 32;
  std::string xml = libvirt::BuildDomainXml(plan);
  EXPECT_NE(xml.find("<tcg>\n      <tb-cache unit='MiB'>32</tb-cache>\n    </tcg>"),
            std::string::npos)
      << xml;
  ExpectValidDomainXml(xml);
  plan.accel = Accel::kKvm;
  EXPECT_EQ(libvirt::BuildDomainXml(plan).find("<tcg>"), std::string::npos);
}

TEST(DomainXmlTest, TextAndAttributesAreEscaped) {
  EXPECT_EQ(libvirt::XmlEscape("a<b>&'\"c"), "a&lt;b&gt;&amp;&apos;&quot;c");
  libvirt::DomainPlan plan = DomainPlan(TransportKind::kSerial, Accel::kTcg);
  plan.kernel_cmdline = "console=ttyS0 x='</cmdline><devices>'";
  plan.console_log = "/run/hull/it's/console.log";
  std::string xml = libvirt::BuildDomainXml(plan);
  EXPECT_NE(
      xml.find("<cmdline>console=ttyS0 x=&apos;&lt;/cmdline&gt;&lt;devices&gt;&apos;</cmdline>"),
      std::string::npos)
      << xml;
  EXPECT_NE(xml.find("path='/run/hull/it&apos;s/console.log'"), std::string::npos) << xml;
  ExpectValidDomainXml(xml);
}

TEST(HypervisorTest, LibvirtIsABackend) {
  auto hypervisor = MakeHypervisor("libvirt");
  ASSERT_TRUE(hypervisor) << hypervisor.error().ToString();
  EXPECT_EQ((*hypervisor)->name(), "libvirt");
  auto unknown = MakeHypervisor("xen");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().ToString().find("expected qemu or libvirt"), std::string::npos);
}

TEST(HypervisorTest, LibvirtRefusesVirtiofsdArgsItCannotPass) {
  Config config;
  config.run_dir = ::testing::TempDir() + "/hull-lv-" + RandomHex(4);
  auto vm = VmConfigFromConfig(config, "lvargs");
  ASSERT_TRUE(vm);
  vm->virtiofsd_args = {"-o", "xattr"};
  auto hypervisor = MakeHypervisor("libvirt");
  ASSERT_TRUE(hypervisor);
  auto launched = (*hypervisor)->Launch(*vm);
  ASSERT_FALSE(launched);
  EXPECT_EQ(launched.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(launched.error().ToString().find("virtiofsd_args are not supported"),
            std::string::npos);
  EXPECT_FALSE(PathExists(config.run_dir + "/lvargs"));
}

// --- Hypervisor::Probe: what hullctl check reports ---------------------------

class HypervisorProbeTest : public ::testing::Test {
 protected:
  // An executable shell script standing in for the QEMU binary.
  std::string FakeQemu(const std::string& script) {
    std::string path = dir_.Sub("qemu-system-x86_64");
    EXPECT_TRUE(WriteFile(path, "#!/bin/sh\n" + script + "\n", 0755));
    return path;
  }
  Result<HypervisorProbe> Probe(std::string_view backend, const ProbeTarget& target) {
    auto hypervisor = MakeHypervisor(backend);
    if (!hypervisor) return std::move(hypervisor).error();
    return (*hypervisor)->Probe(target);
  }

  testlib::TempDir dir_{"probe"};
};

TEST_F(HypervisorProbeTest, QemuAnswersWithTheFirstLineOfItsVersion) {
  std::string qemu = FakeQemu("echo 'QEMU emulator version 7.2.0 (test)'; echo 'Copyright'");
  auto probe = Probe("qemu", {.hypervisor_path = qemu});
  ASSERT_THAT(probe, testlib::IsOk());
  EXPECT_EQ(probe->version, "QEMU emulator version 7.2.0 (test)");
}

TEST_F(HypervisorProbeTest, QemuMissingOrFailingSaysWhy) {
  auto missing = Probe("qemu", {.hypervisor_path = dir_.Sub("absent")});
  EXPECT_THAT(missing, testlib::HasCode(ErrorCode::kFailedPrecondition));
  EXPECT_NE(missing.error().ToString().find("is missing (apt-get install qemu-system-x86)"),
            std::string::npos)
      << missing.error().ToString();

  auto failing = Probe("qemu", {.hypervisor_path = FakeQemu("exit 3")});
  EXPECT_THAT(failing, testlib::HasCode(ErrorCode::kFailedPrecondition));
  EXPECT_NE(failing.error().ToString().find("--version` failed: exited with code 3"),
            std::string::npos)
      << failing.error().ToString();
}

TEST_F(HypervisorProbeTest, UnreachableLibvirtSaysWhereAndWhy) {
  const std::string uri = "qemu:///system?socket=" + dir_.Sub("no-libvirt-sock");
  auto probe = Probe("libvirt", {.libvirt_uri = uri});
  EXPECT_THAT(probe, testlib::HasCode(ErrorCode::kUnavailable));
  EXPECT_NE(probe.error().ToString().find("connect to libvirt at `" + uri + "`"), std::string::npos)
      << probe.error().ToString();
}

}  // namespace
}  // namespace hull

namespace hull {
namespace {

// The console log holds at most two files of the cap, whatever the guest
// writes: the newest bytes in console.log, the ones before in console.log.1.
TEST(ConsoleLogTest, RotatesOnceAtTheCap) {
  testlib::TempDir dir;
  const std::string path = dir.path() + "/console.log";
  auto log = ConsoleLog::Open(path, 10);
  ASSERT_TRUE(log) << log.error().ToString();
  ASSERT_TRUE(log->Append("0123456"));
  EXPECT_EQ(ReadFile(path).value_or(""), "0123456");
  EXPECT_FALSE(PathExists(path + ".1"));
  ASSERT_TRUE(log->Append("789abcdefghijklmnopqrstuvwxyz"));
  EXPECT_EQ(ReadFile(path + ".1").value_or(""), "klmnopqrst");
  EXPECT_EQ(ReadFile(path).value_or(""), "uvwxyz");
  ASSERT_TRUE(log->Append(std::string(1000, 'x')));
  EXPECT_EQ(ReadFile(path).value_or(""), std::string(6, 'x'));  // 4 + 99 x 10 + 6
  EXPECT_EQ(ReadFile(path + ".1").value_or(""), std::string(10, 'x'));
}

TEST(ConsoleLogTest, AZeroCapIsRefused) {
  testlib::TempDir dir;
  auto log = ConsoleLog::Open(dir.path() + "/console.log", 0);
  ASSERT_FALSE(log);
  EXPECT_EQ(log.error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace hull
