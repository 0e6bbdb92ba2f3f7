// VM templates with real QEMU: sandboxes cloned from a pre-booted template run
// containers as booted ones do, each clone is its own machine (RNG, hostname),
// the template survives its clones unchanged, and whatever goes wrong with a
// template (a new guest image, a corrupt file) costs a cold boot, never a
// failed sandbox. Each case has a template directory of its own.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <thread>

#include "bundle.h"
#include "hull/core/ids.h"
#include "hull/core/syscall.h"
#include "hull/hypervisor/template.h"
#include "sandbox_vm.h"
#include "testlib.h"

namespace hull {
namespace {

namespace v1 = agent::v1;
using std::chrono::seconds;
using testing::SandboxVm;

class TemplateVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HULL_REQUIRE_ROOT("sandboxes mount their root filesystems");
    HULL_REQUIRE_QEMU();
    HULL_REQUIRE_BINARY(testing::kBusybox, "busybox-static");
    if (!PathExists(std::string(HULL_GUEST_DIR) + "/initrd.img")) {
      GTEST_SKIP() << "no guest image in " << HULL_GUEST_DIR << " (build target guest-image)";
    }
    initrd_ = std::string(HULL_GUEST_DIR) + "/initrd.img";
    ASSERT_THAT(MakeDirs(dir_.Sub("run"), 0700), testlib::IsOk());
  }

  Result<std::unique_ptr<SandboxVm>> Boot() {
    return SandboxVm::Boot({.guest_dir = HULL_GUEST_DIR,
                            .run_dir = dir_.Sub("run"),
                            .initrd = initrd_,
                            .template_dir = templates()});
  }
  std::string templates() const { return dir_.Sub("templates"); }
  std::vector<std::string> TemplateNames() const { return TemplateStore(templates()).List(); }

  // Runs `script` in a busybox container of `vm` and returns what it printed.
  // Without a UTS namespace of its own the container sees the VM's hostname.
  static std::string Run(SandboxVm& vm, const std::string& script) {
    const std::string id = "c" + RandomHex(4);
    oci::Spec spec = testing::TestSpec({"sh", "-c", script});
    std::erase_if(spec.linux->namespaces, [](const oci::Namespace& n) { return n.type == "uts"; });
    spec.hostname.clear();
    v1::ProcessIo io;
    io.set_stdout(true);
    auto created = vm.CreateContainer(id, spec, io);
    EXPECT_TRUE(created.ok()) << created.error_message();
    if (!created.ok()) return "";
    testing::OutputReader out(vm.api(), id, "", sandbox::OutputStream::kStdout);
    EXPECT_TRUE(vm.StartContainer(id).ok());
    EXPECT_TRUE(out.WaitForEnd(seconds(60))) << out.text();
    v1::WaitProcessResponse exited;
    EXPECT_TRUE(vm.Wait(id, "", &exited).ok());
    EXPECT_EQ(exited.exit_status(), 0) << out.text() << "\n" << vm.Console();
    (void)vm.RemoveContainer(id, true);
    return out.text();
  }

  testlib::TempDir dir_{"template-vm"};
  std::string initrd_;
};

TEST_F(TemplateVmTest, TheFirstSandboxBootsAndLeavesATemplateBehind) {
  {
    auto vm = Boot();
    ASSERT_THAT(vm, testlib::IsOk());
    EXPECT_FALSE((*vm)->from_template()) << "nobody waits for a template to be built";
    EXPECT_EQ(Run(**vm, "echo booted"), "booted\n");
  }  // closing it waits for the template it is building
  EXPECT_EQ(TemplateNames().size(), 1u);
  auto vm = Boot();
  ASSERT_THAT(vm, testlib::IsOk());
  EXPECT_TRUE((*vm)->from_template());
}

TEST_F(TemplateVmTest, ClonesRunContainersAndEachIsItsOwnMachine) {
  { ASSERT_THAT(Boot(), testlib::IsOk()); }  // builds the template
  auto first = Boot();
  ASSERT_THAT(first, testlib::IsOk());
  auto second = Boot();
  ASSERT_THAT(second, testlib::IsOk());
  EXPECT_TRUE((*first)->from_template());
  EXPECT_TRUE((*second)->from_template());
  EXPECT_EQ(TemplateNames().size(), 1u);

  // The same template underneath, yet different random bytes and names.
  const std::string script = "head -c 16 /dev/urandom | od -An -tx1; hostname";
  std::string a = Run(**first, script);
  std::string b = Run(**second, script);
  ASSERT_THAT(a, ::testing::EndsWith((*first)->sandbox_id() + "\n"));
  ASSERT_THAT(b, ::testing::EndsWith((*second)->sandbox_id() + "\n"));
  std::string random_a = a.substr(0, a.find('\n'));
  std::string random_b = b.substr(0, b.find('\n'));
  EXPECT_EQ(random_a.size(), 48u) << a;
  EXPECT_NE(random_a, random_b) << "two clones drew the same random bytes";
  // The shared directory (the container's root) was plugged in after the
  // restore: a file written in the guest is on the host.
  Run(**first, "echo from-clone > /from-clone");
  bool found = false;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_.Sub("run"))) {
    if (entry.path().filename() == "from-clone") found = true;
  }
  EXPECT_TRUE(found) << "the clone's write did not reach the host";
}

TEST_F(TemplateVmTest, TheTemplateIsByteIdenticalAfterItsClonesRanAndExited) {
  { ASSERT_THAT(Boot(), testlib::IsOk()); }  // builds it
  ASSERT_EQ(TemplateNames().size(), 1u);
  const std::string dir = templates() + "/" + TemplateNames()[0];
  auto memory = ReadFile(dir + "/memory", 1ull << 31);
  auto state = ReadFile(dir + "/state", 1 << 30);
  ASSERT_THAT(memory, testlib::IsOk());
  ASSERT_THAT(state, testlib::IsOk());
  for (int i = 0; i < 2; ++i) {
    auto vm = Boot();
    ASSERT_THAT(vm, testlib::IsOk());
    ASSERT_TRUE((*vm)->from_template());
    // Dirty memory, free it again (free page reporting discards it).
    Run(**vm, "dd if=/dev/urandom of=/tmp/fill bs=1M count=32 2>/dev/null; rm /tmp/fill; echo");
  }
  EXPECT_TRUE(ReadFile(dir + "/memory", 1ull << 31).value_or("") == *memory)
      << "a clone changed the template's RAM file";
  EXPECT_EQ(ReadFile(dir + "/state", 1 << 30).value_or(""), *state);
}

TEST_F(TemplateVmTest, ANewGuestImageGetsANewTemplateAndTheOldOneGoes) {
  // A guest image of our own, so it can be "rebuilt" (same bytes, new file).
  initrd_ = dir_.Sub("initrd.img");
  ASSERT_THAT(
      WriteFile(initrd_,
                ReadFile(std::string(HULL_GUEST_DIR) + "/initrd.img", 1 << 30).value_or("")),
      testlib::IsOk());
  { ASSERT_THAT(Boot(), testlib::IsOk()); }
  auto before = TemplateNames();
  ASSERT_EQ(before.size(), 1u);

  auto bytes = ReadFile(initrd_, 1 << 30);
  ASSERT_THAT(bytes, testlib::IsOk());
  ASSERT_THAT(WriteFile(initrd_ + ".new", *bytes), testlib::IsOk());
  ASSERT_EQ(::rename((initrd_ + ".new").c_str(), initrd_.c_str()), 0);
  {
    auto vm = Boot();
    ASSERT_THAT(vm, testlib::IsOk());
    EXPECT_FALSE((*vm)->from_template()) << "the old template is not this image's";
  }
  auto after = TemplateNames();
  ASSERT_EQ(after.size(), 1u) << "the stale template should be gone";
  EXPECT_NE(after[0], before[0]);
  auto vm = Boot();
  ASSERT_THAT(vm, testlib::IsOk());
  EXPECT_TRUE((*vm)->from_template());
}

TEST_F(TemplateVmTest, ACorruptTemplateCostsAColdBootAndIsRebuilt) {
  { ASSERT_THAT(Boot(), testlib::IsOk()); }
  ASSERT_EQ(TemplateNames().size(), 1u);
  const std::string dir = templates() + "/" + TemplateNames()[0];

  // Device state that is not a migration stream: the restore fails.
  ASSERT_THAT(WriteFile(dir + "/state", std::string(4096, 'x'), 0600), testlib::IsOk());
  {
    auto vm = Boot();
    ASSERT_THAT(vm, testlib::IsOk());
    EXPECT_FALSE((*vm)->from_template());
    EXPECT_EQ(Run(**vm, "echo cold"), "cold\n");
  }
  // That start removed the broken template and built it again.
  ASSERT_EQ(TemplateNames().size(), 1u);
  {
    auto vm = Boot();
    ASSERT_THAT(vm, testlib::IsOk());
    EXPECT_TRUE((*vm)->from_template());
  }
  // A RAM file of the wrong size (truncated): refused before QEMU starts.
  ASSERT_EQ(TemplateNames().size(), 1u);
  ASSERT_EQ(::truncate((templates() + "/" + TemplateNames()[0] + "/memory").c_str(), 4096), 0);
  auto vm = Boot();
  ASSERT_THAT(vm, testlib::IsOk());
  EXPECT_FALSE((*vm)->from_template());
  EXPECT_EQ(Run(**vm, "echo cold"), "cold\n");
}

TEST_F(TemplateVmTest, FiveSandboxesStartAtOnceFromOneTemplate) {
  { ASSERT_THAT(Boot(), testlib::IsOk()); }
  // Each on a thread of its own for its whole life: a VM dies with the
  // thread that started it (PR_SET_PDEATHSIG).
  struct Outcome {
    std::string error;
    bool from_template = false;
    std::string output;
  };
  std::vector<Outcome> outcomes(5);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < outcomes.size(); ++i) {
    threads.emplace_back([&, i] {
      auto vm = Boot();
      if (!vm) {
        outcomes[i].error = vm.error().ToString();
        return;
      }
      outcomes[i].from_template = (*vm)->from_template();
      outcomes[i].output = Run(**vm, "echo ok");
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& outcome : outcomes) {
    EXPECT_EQ(outcome.error, "");
    EXPECT_TRUE(outcome.from_template);
    EXPECT_EQ(outcome.output, "ok\n");
  }
  // Nothing is left but the template.
  auto left = std::filesystem::directory_iterator(dir_.Sub("run"));
  for (const auto& entry : left) ADD_FAILURE() << "left behind: " << entry.path();
  EXPECT_EQ(TemplateNames().size(), 1u);
}

}  // namespace
}  // namespace hull
