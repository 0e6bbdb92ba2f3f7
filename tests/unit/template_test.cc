// VM templates without a VM: the template and clone command lines, the key
// a template is found by, and the store's lifecycle (build once under a lock,
// replace what is stale or broken, remove what is not kept).
#include "hull/hypervisor/template.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "hull/core/config.h"
#include "hull/core/syscall.h"
#include "hull/hypervisor/kernel_cmdline.h"
#include "qemu/qemu_argv.h"
#include "testlib.h"

namespace hull {
namespace {

using testlib::HasCode;
using testlib::IsOk;
using testlib::TempDir;

// An argv against tests/golden/<name>, one argument per line.
void ExpectGolden(const std::string& name, const std::vector<std::string>& argv) {
  std::string actual;
  for (const auto& arg : argv) actual += arg + "\n";
  testlib::ExpectGolden(name, actual);
}

qemu::QemuLaunchPlan Plan(qemu::VmStart start) {
  qemu::QemuLaunchPlan plan;
  plan.qemu_path = "/usr/bin/qemu-system-x86_64";
  plan.name = "hull-pod1";
  plan.memory_mib = 512;
  plan.start = start;
  plan.kernel = "/usr/share/hull/guest/vmlinuz";
  plan.initrd = "/usr/share/hull/guest/initrd.img";
  plan.kernel_cmdline = BuildKernelCmdline({TransportKind::kSerial, "info", false, ""});
  plan.qmp_socket = "/run/hull/pod1/qmp.sock";
  plan.console_fd = 6;
  plan.agent_socket = "/run/hull/pod1/agent.sock";
  return plan;
}

// The -device options of an argv, in order.
std::vector<std::string> Devices(const std::vector<std::string>& argv) {
  std::vector<std::string> devices;
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == "-device") devices.push_back(argv[i + 1]);
  }
  return devices;
}

TEST(TemplateArgvTest, TemplateMapsItsRamFileAndHasEmptyRootPorts) {
  qemu::QemuLaunchPlan plan = Plan(qemu::VmStart::kTemplate);
  plan.memory_path = "/run/hull/.templates/0123456789abcdef.new-42/memory";
  ExpectGolden("qemu_argv_template.txt", qemu::BuildQemuArgv(plan));
}

TEST(TemplateArgvTest, CloneWaitsForItsStateAndLeavesItsDevicesToQmp) {
  qemu::QemuLaunchPlan plan = Plan(qemu::VmStart::kClone);
  plan.memory_path = "/proc/self/fd/9";
  plan.virtiofs_socket = "/run/hull/pod1/virtiofsd.sock";
  plan.virtiofs_tag = kSharedFsTag;
  plan.tap_fd = 7;
  plan.mac_address = "2e:1f:19:87:6c:16";
  auto argv = qemu::BuildQemuArgv(plan);
  ExpectGolden("qemu_argv_clone.txt", argv);
  // The backends are there; the devices come through device_add.
  EXPECT_THAT(argv, ::testing::Contains(::testing::HasSubstr("socket,id=virtiofs,")));
  EXPECT_THAT(argv, ::testing::Contains("tap,id=pod-netdev,fd=7"));
  for (const auto& device : Devices(argv)) {
    EXPECT_THAT(device, ::testing::Not(::testing::HasSubstr("vhost-user-fs")));
    EXPECT_THAT(device, ::testing::Not(::testing::HasSubstr("virtio-net")));
  }
  EXPECT_EQ(argv.back(), "defer");
  // Its kernel is in the RAM it restores: QEMU keeps no copy of the files.
  EXPECT_THAT(argv, ::testing::Not(::testing::Contains("-kernel")));
  EXPECT_THAT(argv, ::testing::Not(::testing::Contains("-initrd")));
}

TEST(TemplateArgvTest, CloneHasTheTemplatesDevicesInTheTemplatesOrder) {
  // A restore fails unless both have the same devices at the same places.
  qemu::QemuLaunchPlan clone = Plan(qemu::VmStart::kClone);
  clone.virtiofs_socket = "/run/hull/pod1/virtiofsd.sock";
  clone.virtiofs_tag = kSharedFsTag;
  clone.tap_fd = 7;
  clone.mac_address = "2e:1f:19:87:6c:16";
  EXPECT_EQ(Devices(qemu::BuildQemuArgv(clone)),
            Devices(qemu::BuildQemuArgv(Plan(qemu::VmStart::kTemplate))));
}

TEST(TemplateArgvTest, TheGuestRootIsInTheTemplateAndMappedTheSameInItsClones) {
  // The root is shared memory: left out of the saved state, so a clone must
  // map the same file at the same place.
  auto with_root = [](qemu::VmStart start) {
    qemu::QemuLaunchPlan plan = Plan(start);
    plan.root_image = "/usr/share/hull/guest/root.erofs";
    plan.root_image_bytes = 120u << 20;
    plan.virtiofs_socket = "/run/hull/pod1/virtiofsd.sock";
    plan.virtiofs_tag = kSharedFsTag;
    return qemu::BuildQemuArgv(plan);
  };
  auto template_argv = with_root(qemu::VmStart::kTemplate);
  auto clone_argv = with_root(qemu::VmStart::kClone);
  EXPECT_EQ(Devices(clone_argv), Devices(template_argv));
  const std::string backend =
      "memory-backend-file,id=guest-root-mem,mem-path=/usr/share/hull/guest/root.erofs,"
      "size=125829120,share=on,readonly=on";
  EXPECT_THAT(template_argv, ::testing::Contains(backend));
  EXPECT_THAT(clone_argv, ::testing::Contains(backend));
  EXPECT_THAT(clone_argv, ::testing::Contains("512M,slots=1,maxmem=632M"));
  EXPECT_THAT(Devices(clone_argv),
              ::testing::Contains("virtio-pmem-pci,memdev=guest-root-mem,id=guest-root"));
}

TEST(TemplateArgvTest, APlainBootIsUnchanged) {
  qemu::QemuLaunchPlan plan = Plan(qemu::VmStart::kBoot);
  auto argv = qemu::BuildQemuArgv(plan);
  EXPECT_THAT(argv, ::testing::Contains(::testing::HasSubstr("memory-backend-memfd")));
  EXPECT_THAT(argv, ::testing::Not(::testing::Contains("-incoming")));
  for (const auto& device : Devices(argv)) {
    EXPECT_THAT(device, ::testing::Not(::testing::HasSubstr("pcie-root-port")));
  }
}

TEST(TemplateArgvTest, HotPluggedDevicesAreSpelledAsOnTheCommandLine) {
  qemu::QemuDevice fs = qemu::SharedFsDevice("hull-shared", qemu::kSharePortId);
  EXPECT_EQ(fs.ToOption(),
            "vhost-user-fs-pci,bus=hotplug-share,id=shared-fs,chardev=virtiofs,tag=hull-shared");
  EXPECT_EQ(fs.ToQmp(), (nlohmann::json{{"driver", "vhost-user-fs-pci"},
                                        {"bus", "hotplug-share"},
                                        {"id", "shared-fs"},
                                        {"chardev", "virtiofs"},
                                        {"tag", "hull-shared"}}));
  qemu::QemuDevice nic = qemu::PodNetDevice("2e:1f:19:87:6c:16", qemu::kNetPortId);
  EXPECT_EQ(nic.ToQmp()["bus"], "hotplug-net");
  EXPECT_EQ(nic.ToQmp()["mac"], "2e:1f:19:87:6c:16");
}

// --- keys -------------------------------------------------------------------

class TemplateKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_THAT(WriteFile(dir_.Sub("vmlinuz"), "kernel"), IsOk());
    ASSERT_THAT(WriteFile(dir_.Sub("initrd.img"), "initrd"), IsOk());
    config_.id = "pod1";
    config_.run_dir = dir_.Sub("run");
    config_.hypervisor_path = "/bin/sh";
    config_.kernel = dir_.Sub("vmlinuz");
    config_.initrd = dir_.Sub("initrd.img");
  }
  TempDir dir_{"template-key"};
  VmConfig config_;
};

TEST_F(TemplateKeyTest, SameShapeSameKeyWhateverTheSandbox) {
  auto a = TemplateKey(config_);
  ASSERT_THAT(a, IsOk());
  VmConfig other = config_;
  other.id = "pod2";
  other.share_dir = true;
  other.network.netns_path = "/var/run/netns/x";
  other.tcg_tb_size_mib = 64;
  EXPECT_EQ(*TemplateKey(other), *a);
  EXPECT_EQ(TemplateName(*a).size(), 16u);
  EXPECT_EQ(TemplateName(*a).find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST_F(TemplateKeyTest, ShapeAndAssetsChangeTheKey) {
  const std::string base = *TemplateKey(config_);
  auto changed = [&](auto edit) {
    VmConfig other = config_;
    edit(other);
    auto key = TemplateKey(other);
    return key && *key != base && TemplateName(*key) != TemplateName(base);
  };
  EXPECT_TRUE(changed([](VmConfig& c) { c.vcpus = 2; }));
  EXPECT_TRUE(changed([](VmConfig& c) { c.memory_mib = 256; }));
  EXPECT_TRUE(changed([](VmConfig& c) { c.accel = Accel::kKvm; }));
  EXPECT_TRUE(changed([](VmConfig& c) { c.extra_kernel_params = "loglevel=7"; }));
  EXPECT_TRUE(changed([](VmConfig& c) { c.agent_debug = true; }));
  EXPECT_TRUE(changed([](VmConfig& c) { c.free_page_reporting = false; }));
  ASSERT_THAT(WriteFile(dir_.Sub("root.erofs"), "root"), IsOk());
  EXPECT_TRUE(changed([&](VmConfig& c) { c.root_image = dir_.Sub("root.erofs"); }));
  // A rebuilt guest image is another file, even with the same bytes.
  ASSERT_THAT(WriteFile(dir_.Sub("initrd.new"), "initrd"), IsOk());
  ASSERT_EQ(::rename(dir_.Sub("initrd.new").c_str(), config_.initrd.c_str()), 0);
  EXPECT_NE(*TemplateKey(config_), base);
}

TEST_F(TemplateKeyTest, AMissingAssetIsAnError) {
  config_.initrd = dir_.Sub("nope");
  EXPECT_THAT(TemplateKey(config_), HasCode(ErrorCode::kNotFound));
}

TEST_F(TemplateKeyTest, OnlyQ35WithTheSerialTransportCanBeCloned) {
  EXPECT_EQ(TemplateIneligibility(config_), "");
  VmConfig pc = config_;
  pc.machine = "pc";
  EXPECT_THAT(TemplateIneligibility(pc), ::testing::HasSubstr("PCIe"));
  VmConfig vsock = config_;
  vsock.transport = TransportKind::kVsock;
  EXPECT_THAT(TemplateIneligibility(vsock), ::testing::HasSubstr("vsock"));
}

TEST(TemplateRootTest, DefaultsUnderTheRunDirUnderANoSandboxIdCanHave) {
  Config config;
  config.run_dir = "/run/x";
  EXPECT_EQ(TemplateRoot(config), "/run/x/.templates");
  config.hypervisor.template_dir = "/var/lib/hull/templates";
  EXPECT_EQ(TemplateRoot(config), "/var/lib/hull/templates");
}

TEST(TemplateConfigTest, KeysParseAndABadDirectoryIsRefused) {
  auto config = ParseConfig("[hypervisor]\ntemplate = false\ntemplate_dir = \"/srv/t\"\n", "t");
  ASSERT_THAT(config, IsOk());
  EXPECT_FALSE(config->hypervisor.template_enabled);
  EXPECT_EQ(config->hypervisor.template_dir, "/srv/t");
  EXPECT_TRUE(ParseConfig("", "t")->hypervisor.template_enabled);
  EXPECT_THAT(ParseConfig("[hypervisor]\ntemplate_dir = \"rel\"\n", "t"),
              HasCode(ErrorCode::kInvalidArgument));
  EXPECT_THAT(ParseConfig("[hypervisor]\ntemplate = \"yes\"\n", "t"),
              HasCode(ErrorCode::kInvalidArgument));
}

// --- the store ----------------------------------------------------------------

class TemplateStoreTest : public ::testing::Test {
 protected:
  // A save that writes what a hypervisor would, and counts its calls.
  std::function<Status(const std::string&)> Save() {
    return [this](const std::string& dir) -> Status {
      ++saves_;
      HULL_CHECK_OK(WriteFile(dir + "/memory", "ram"), "");
      return WriteFile(dir + "/state", "state");
    };
  }
  std::vector<std::string> Entries() {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(root_, ec)) {
      names.push_back(entry.path().filename());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  TempDir dir_{"template-store"};
  std::string root_ = dir_.Sub("templates");
  TemplateStore store_{root_};
  int saves_ = 0;
};

TEST_F(TemplateStoreTest, BuildsOnceThenFinds) {
  EXPECT_EQ(store_.Find("key-a"), std::nullopt);
  auto built = store_.Build("key-a", Save());
  ASSERT_THAT(built, IsOk());
  EXPECT_EQ(built->dir, root_ + "/" + TemplateName("key-a"));
  EXPECT_EQ(ReadFile(built->dir + "/key").value_or(""), "key-a");
  auto found = store_.Find("key-a");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->dir, built->dir);
  ASSERT_THAT(store_.Build("key-a", Save()), IsOk());
  EXPECT_EQ(saves_, 1);
  EXPECT_EQ(store_.List(), std::vector<std::string>{TemplateName("key-a")});
}

TEST_F(TemplateStoreTest, AnotherBuilderAtWorkMeansUnavailable) {
  ASSERT_THAT(MakeDirs(root_, 0700), IsOk());
  UniqueFd other(::open((root_ + "/" + TemplateName("key-a") + ".lock").c_str(),
                        O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(other);
  ASSERT_EQ(::flock(other.get(), LOCK_EX), 0);
  EXPECT_THAT(store_.Build("key-a", Save()), HasCode(ErrorCode::kUnavailable));
  EXPECT_EQ(saves_, 0);
  other.reset();
  EXPECT_THAT(store_.Build("key-a", Save()), IsOk());
}

TEST_F(TemplateStoreTest, AFailedSaveLeavesNothingToFind) {
  auto failing = [](const std::string& dir) -> Status {
    (void)WriteFile(dir + "/memory", "half");
    return MakeError(ErrorCode::kInternal, "QEMU died");
  };
  EXPECT_THAT(store_.Build("key-a", failing), HasCode(ErrorCode::kInternal));
  EXPECT_EQ(store_.Find("key-a"), std::nullopt);
  const std::string name = TemplateName("key-a");
  std::vector<std::string> expected = {name + ".failed", name + ".lock"};
  EXPECT_EQ(Entries(), expected);
}

TEST_F(TemplateStoreTest, AnIncompleteOrForeignDirectoryIsNotATemplateAndIsReplaced) {
  const std::string dir = root_ + "/" + TemplateName("key-a");
  ASSERT_THAT(MakeDirs(dir, 0700), IsOk());
  ASSERT_THAT(WriteFile(dir + "/key", "key-b"), IsOk());  // a hash collision, say
  ASSERT_THAT(WriteFile(dir + "/memory", "ram"), IsOk());
  ASSERT_THAT(WriteFile(dir + "/state", "state"), IsOk());
  EXPECT_EQ(store_.Find("key-a"), std::nullopt);
  ASSERT_THAT(WriteFile(dir + "/key", "key-a"), IsOk());
  ASSERT_EQ(::unlink((dir + "/state").c_str()), 0);
  EXPECT_EQ(store_.Find("key-a"), std::nullopt);
  ASSERT_THAT(store_.Build("key-a", Save()), IsOk());
  EXPECT_EQ(saves_, 1);
  EXPECT_TRUE(store_.Find("key-a"));
}

TEST_F(TemplateStoreTest, ABuilderThatDiedLeavesNothingInTheNextOnesWay) {
  const std::string name = TemplateName("key-a");
  ASSERT_THAT(MakeDirs(root_ + "/" + name + ".new-99999", 0700), IsOk());
  ASSERT_THAT(WriteFile(root_ + "/" + name + ".new-99999/memory", "half"), IsOk());
  ASSERT_THAT(MakeDirs(root_ + "/template-" + name, 0700), IsOk());  // its VM's state dir
  ASSERT_THAT(store_.Build("key-a",
                           [&](const std::string& dir) -> Status {
                             // The template VM's state directory must be free for this build's VM.
                             if (PathExists(root_ + "/template-" + name)) {
                               return MakeError(ErrorCode::kAlreadyExists,
                                                "state directory exists");
                             }
                             return Save()(dir);
                           }),
              IsOk());
  std::vector<std::string> expected = {name, name + ".lock"};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(Entries(), expected);
}

TEST_F(TemplateStoreTest, InvalidateRemovesTheTemplateItFoundAndNotALaterBuild) {
  auto built = store_.Build("key-a", Save());
  ASSERT_THAT(built, IsOk());
  auto found = store_.Find("key-a");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->build, built->build);
  EXPECT_EQ(found->build.size(), 16u);
  store_.Invalidate(*found);
  EXPECT_EQ(store_.Find("key-a"), std::nullopt);
  EXPECT_FALSE(PathExists(root_ + "/" + TemplateName("key-a")));
  // A sandbox that found the old build and fails late must not remove the
  // template another one has rebuilt since.
  auto rebuilt = store_.Build("key-a", Save());
  ASSERT_THAT(rebuilt, IsOk());
  EXPECT_EQ(saves_, 2);
  store_.Invalidate(*found);
  EXPECT_TRUE(store_.Find("key-a")) << "a stale reference removed a newer build";
}

TEST_F(TemplateStoreTest, NothingButTheStoresOwnNamesIsEverTouched) {
  // template_dir may be a directory with other things in it.
  ASSERT_THAT(MakeDirs(root_, 0755), IsOk());
  ASSERT_THAT(WriteFile(root_ + "/notes.txt", "mine"), IsOk());
  ASSERT_THAT(MakeDirs(root_ + "/other.d", 0755), IsOk());
  ASSERT_THAT(MakeDirs(root_ + "/template-x", 0755), IsOk());
  ASSERT_THAT(MakeDirs(root_ + "/0123456789ABCDEF", 0755), IsOk());  // not lower-case hex
  ASSERT_THAT(store_.Build("key-a", Save()), IsOk());
  store_.RemoveAllBut({});
  EXPECT_TRUE(PathExists(root_ + "/notes.txt"));
  EXPECT_TRUE(PathExists(root_ + "/other.d"));
  EXPECT_TRUE(PathExists(root_ + "/template-x"));
  EXPECT_TRUE(PathExists(root_ + "/0123456789ABCDEF"));
  EXPECT_FALSE(store_.Find("key-a"));
  struct stat st {};
  ASSERT_EQ(::stat(root_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u) << "an existing directory keeps its mode";
}

TEST_F(TemplateStoreTest, AFailedBuildIsRememberedUntilOneSucceeds) {
  auto failing = [](const std::string&) -> Status {
    return MakeError(ErrorCode::kInternal, "QEMU died");
  };
  EXPECT_FALSE(store_.RecentlyFailed("key-a", std::chrono::seconds(600)));
  EXPECT_THAT(store_.Build("key-a", failing), HasCode(ErrorCode::kInternal));
  EXPECT_TRUE(store_.RecentlyFailed("key-a", std::chrono::seconds(600)));
  EXPECT_FALSE(store_.RecentlyFailed("key-b", std::chrono::seconds(600)));
  ASSERT_THAT(store_.Build("key-a", Save()), IsOk());
  EXPECT_FALSE(store_.RecentlyFailed("key-a", std::chrono::seconds(600)));
}

TEST_F(TemplateStoreTest, RemoveAllButKeepsWhatIsKeptAndWhatABuilderHolds) {
  ASSERT_THAT(store_.Build("key-a", Save()), IsOk());
  ASSERT_THAT(store_.Build("key-b", Save()), IsOk());
  ASSERT_THAT(store_.Build("key-c", Save()), IsOk());
  const std::string a = TemplateName("key-a"), b = TemplateName("key-b"), c = TemplateName("key-c");
  // A dead builder's leftovers, and a live builder of c.
  ASSERT_THAT(MakeDirs(root_ + "/" + a + ".new-99999", 0700), IsOk());
  ASSERT_THAT(MakeDirs(root_ + "/template-" + b, 0700), IsOk());
  UniqueFd builder(::open((root_ + "/" + c + ".lock").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(builder);
  ASSERT_EQ(::flock(builder.get(), LOCK_EX), 0);

  auto removed = store_.RemoveAllBut({a});
  EXPECT_EQ(removed, std::vector<std::string>{b});
  EXPECT_TRUE(store_.Find("key-a"));
  EXPECT_FALSE(store_.Find("key-b"));
  EXPECT_TRUE(store_.Find("key-c")) << "a template whose builder holds the lock stays";
  std::vector<std::string> expected = {a, a + ".lock", c, c + ".lock"};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(Entries(), expected);
}

TEST_F(TemplateStoreTest, RemoveStaleTakesTemplatesOfChangedAssetsOnly) {
  ASSERT_THAT(WriteFile(dir_.Sub("vmlinuz"), "kernel"), IsOk());
  ASSERT_THAT(WriteFile(dir_.Sub("initrd.img"), "initrd"), IsOk());
  VmConfig config;
  config.hypervisor_path = "/bin/sh";
  config.kernel = dir_.Sub("vmlinuz");
  config.initrd = dir_.Sub("initrd.img");
  auto old_key = TemplateKey(config);
  ASSERT_THAT(old_key, IsOk());
  ASSERT_THAT(store_.Build(*old_key, Save()), IsOk());
  EXPECT_TRUE(store_.RemoveStale().empty());
  EXPECT_TRUE(store_.Find(*old_key));

  auto rebuild_initrd = [&](const std::string& bytes) {
    ASSERT_THAT(WriteFile(dir_.Sub("initrd.new"), bytes), IsOk());
    ASSERT_EQ(::rename(dir_.Sub("initrd.new").c_str(), config.initrd.c_str()), 0);
  };
  rebuild_initrd("initrd v2");
  EXPECT_EQ(store_.RemoveStale(), std::vector<std::string>{TemplateName(*old_key)});
  EXPECT_FALSE(store_.Find(*old_key));

  // So does a new root image.
  ASSERT_THAT(WriteFile(dir_.Sub("root.erofs"), "root"), IsOk());
  config.root_image = dir_.Sub("root.erofs");
  auto root_key = TemplateKey(config);
  ASSERT_THAT(root_key, IsOk());
  ASSERT_THAT(store_.Build(*root_key, Save()), IsOk());
  EXPECT_TRUE(store_.RemoveStale().empty());
  ASSERT_THAT(WriteFile(dir_.Sub("root.new"), "root v2"), IsOk());
  ASSERT_EQ(::rename(dir_.Sub("root.new").c_str(), config.root_image.c_str()), 0);
  EXPECT_EQ(store_.RemoveStale(), std::vector<std::string>{TemplateName(*root_key)});
  config.root_image.clear();

  // A build clears stale templates by itself: a new guest image replaces
  // the old one's template without anyone running gc.
  auto v2_key = TemplateKey(config);
  ASSERT_THAT(store_.Build(*v2_key, Save()), IsOk());
  rebuild_initrd("initrd v3");
  auto v3_key = TemplateKey(config);
  ASSERT_THAT(store_.Build(*v3_key, Save()), IsOk());
  EXPECT_FALSE(store_.Find(*v2_key));
  EXPECT_TRUE(store_.Find(*v3_key));
  EXPECT_EQ(store_.List().size(), 1u);
}

TEST_F(TemplateStoreTest, TheNumberOfTemplatesIsBounded) {
  for (size_t i = 0; i < TemplateStore::kMaxTemplates; ++i) {
    ASSERT_THAT(store_.Build("key-" + std::to_string(i), Save()), IsOk());
  }
  EXPECT_THAT(store_.Build("one-too-many", Save()), HasCode(ErrorCode::kResourceExhausted));
  EXPECT_THAT(store_.Build("key-0", Save()), IsOk()) << "an existing one is still found";
}

TEST(PunchZeroPagesTest, ZeroPagesBecomeHolesAndTheContentStaysTheSame) {
  TempDir dir("punch");
  const std::string path = dir.Sub("memory");
  // 16 pages: data, zero, zero, data, then a hole, then zero pages and a
  // short zero tail the size does not cover in whole pages.
  std::string bytes(16 * 4096, '\0');
  bytes[0] = 'a';
  bytes[3 * 4096 + 17] = 'b';
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::pwrite(fd.get(), bytes.data(), 4 * 4096, 0), 4 * 4096);
    ASSERT_EQ(::pwrite(fd.get(), bytes.data() + 8 * 4096, 8 * 4096, 8 * 4096), 8 * 4096);
    ASSERT_EQ(::ftruncate(fd.get(), 16 * 4096 + 100), 0);
  }
  bytes.resize(16 * 4096 + 100, '\0');
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd);
  auto punched = PunchZeroPages(fd.get());
  ASSERT_THAT(punched, IsOk());
  EXPECT_EQ(*punched, 10u * 4096) << "pages 1, 2 and 8-15";
  EXPECT_EQ(ReadFile(path, 1 << 20).value_or(""), bytes);
  // Only pages 0 and 3 hold data now.
  EXPECT_EQ(::lseek(fd.get(), 0, SEEK_DATA), 0);
  EXPECT_EQ(::lseek(fd.get(), 0, SEEK_HOLE), 4096);
  EXPECT_EQ(::lseek(fd.get(), 4096, SEEK_DATA), 3 * 4096);
  EXPECT_EQ(::lseek(fd.get(), 3 * 4096, SEEK_HOLE), 4 * 4096);
  off_t next = ::lseek(fd.get(), 4 * 4096, SEEK_DATA);
  EXPECT_TRUE(next < 0 || next >= 16 * 4096) << next;
  // Again: nothing left to punch.
  EXPECT_EQ(PunchZeroPages(fd.get()).value_or(1), 0u);
}

TEST(TemplateVmConfigTest, TheTemplateVmHasNothingOfTheSandbox) {
  VmConfig config;
  config.id = "pod1";
  config.share_dir = true;
  config.network.netns_path = "/var/run/netns/pod1";
  config.network.tap_fd = 7;
  config.host_cgroup_dirs = {"/sys/fs/cgroup/pod1"};
  config.clone_of = "/run/hull/.templates/x";
  VmConfig vm = TemplateVmConfig(config, "/run/hull/.templates", "0123456789abcdef");
  EXPECT_EQ(vm.id, "template-0123456789abcdef");
  EXPECT_EQ(vm.run_dir, "/run/hull/.templates");
  EXPECT_FALSE(vm.share_dir);
  EXPECT_TRUE(vm.network.netns_path.empty());
  EXPECT_TRUE(vm.host_cgroup_dirs.empty());
  EXPECT_TRUE(vm.clone_of.empty());
  // Its kernel zeroes what it frees, so its RAM file holds less.
  EXPECT_EQ(vm.extra_kernel_params, "init_on_free=1");
  config.extra_kernel_params = "loglevel=7";
  EXPECT_EQ(TemplateVmConfig(config, "/run/hull/.templates", "x").extra_kernel_params,
            "loglevel=7 init_on_free=1");
}

}  // namespace
}  // namespace hull
