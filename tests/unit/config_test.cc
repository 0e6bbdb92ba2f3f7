#include "hull/core/config.h"

#include <gtest/gtest.h>

#include "hull/core/syscall.h"

namespace hull {
namespace {

TEST(ConfigTest, EmptyDocumentGivesDefaults) {
  auto config = ParseConfig("", "test.toml");
  ASSERT_TRUE(config) << config.error().ToString();
  EXPECT_EQ(config->hypervisor.memory_mib, 512u);
  EXPECT_EQ(config->hypervisor.accel, "auto");
  EXPECT_EQ(config->agent.transport, "auto");
  EXPECT_EQ(config->run_dir, "/run/hull");
  EXPECT_EQ(config->hypervisor.virtiofsd, "/usr/lib/qemu/virtiofsd");
  EXPECT_EQ(config->hypervisor.virtiofs_cache, "auto");
  EXPECT_EQ(config->hypervisor.virtiofsd_sandbox, "namespace");
  EXPECT_TRUE(config->hypervisor.virtiofsd_args.empty());
  EXPECT_EQ(config->hypervisor.backend, "qemu");
  EXPECT_EQ(config->hypervisor.libvirt_uri, "qemu:///system");
}

TEST(ConfigTest, LibvirtBackendAndUri) {
  auto config = ParseConfig(
      "[hypervisor]\nbackend = \"libvirt\"\nlibvirt_uri = \"qemu:///session\"\n", "t.toml");
  ASSERT_TRUE(config) << config.error().ToString();
  EXPECT_EQ(config->hypervisor.backend, "libvirt");
  EXPECT_EQ(config->hypervisor.libvirt_uri, "qemu:///session");
}

TEST(ConfigTest, ReadsEveryKnownKey) {
  auto config = ParseConfig(R"(
[runtime]
run_dir = "/tmp/hull"
log_level = "debug"
[hypervisor]
backend = "qemu"
path = "/opt/qemu"
kernel = "/k"
initrd = "/i"
machine = "pc"
accel = "tcg"
vcpus = 4
memory_mib = 2048
seccomp_sandbox = false
free_page_reporting = false
tcg_tb_size_mib = 32
kernel_params = "foo=1"
stop_grace_seconds = 2
console_log_max_kib = 256
virtiofsd = "/opt/virtiofsd"
virtiofs_cache = "none"
virtiofsd_sandbox = "chroot"
virtiofsd_args = ["-o", "xattr"]
[agent]
transport = "serial"
log_level = "warn"
debug = true
boot_timeout_seconds = 30
)",
                            "t.toml");
  ASSERT_TRUE(config) << config.error().ToString();
  EXPECT_EQ(config->run_dir, "/tmp/hull");
  EXPECT_EQ(config->hypervisor.path, "/opt/qemu");
  EXPECT_EQ(config->hypervisor.vcpus, 4u);
  EXPECT_EQ(config->hypervisor.memory_mib, 2048u);
  EXPECT_FALSE(config->hypervisor.seccomp_sandbox);
  EXPECT_FALSE(config->hypervisor.free_page_reporting);
  EXPECT_EQ(config->hypervisor.tcg_tb_size_mib, 32u);
  EXPECT_EQ(config->hypervisor.stop_grace_seconds, 2u);
  EXPECT_EQ(config->hypervisor.console_log_max_kib, 256u);
  EXPECT_EQ(config->hypervisor.virtiofsd, "/opt/virtiofsd");
  EXPECT_EQ(config->hypervisor.virtiofs_cache, "none");
  EXPECT_EQ(config->hypervisor.virtiofsd_sandbox, "chroot");
  EXPECT_EQ(config->hypervisor.virtiofsd_args, (std::vector<std::string>{"-o", "xattr"}));
  EXPECT_EQ(config->agent.transport, "serial");
  EXPECT_TRUE(config->agent.debug);
  EXPECT_EQ(config->agent.boot_timeout_seconds, 30u);
}

TEST(ConfigTest, ErrorsNameTheKey) {
  struct Case {
    const char* toml;
    const char* expected;
  } cases[] = {
      {"[hypervisor]\nmemory_mib = \"lots\"", "hypervisor.memory_mib: expected an integer"},
      {"[hypervisor]\nmemory_mib = 1", "hypervisor.memory_mib: must be between 64"},
      {"[hypervisor]\nvcpus = 0", "hypervisor.vcpus: must be between 1"},
      {"[hypervisor]\naccel = \"hvf\"", "hypervisor.accel: `hvf` is not one of: auto, kvm, tcg"},
      {"[agent]\ntransport = \"tcp\"", "agent.transport: `tcp` is not one of"},
      {"[agent]\nlog_level = \"loud\"", "agent.log_level: unknown log level `loud`"},
      {"[hypervisor]\nmemroy_mib = 512", "unknown key `hypervisor.memroy_mib`"},
      {"[runtime]\nrun_dir = \"relative\"", "runtime.run_dir: must be an absolute path"},
      {"hypervisor = 3", "`hypervisor` must be a table"},
      {"[hypervisor]\nvirtiofs_cache = \"never\"",
       "hypervisor.virtiofs_cache: `never` is not one of: auto, always, none"},
      {"[hypervisor]\nvirtiofsd_sandbox = \"none\"",
       "hypervisor.virtiofsd_sandbox: `none` is not one of"},
      {"[hypervisor]\nvirtiofsd = \"virtiofsd\"", "hypervisor.virtiofsd: must be an absolute path"},
      {"[hypervisor]\nvirtiofsd_args = \"-o xattr\"",
       "hypervisor.virtiofsd_args: expected an array of strings"},
      {"[hypervisor]\nvirtiofsd_args = [\"-o\", 1]",
       "hypervisor.virtiofsd_args: expected an array of strings"},
      {"[hypervisor]\nvirtiofsd_args = [\"\"]",
       "hypervisor.virtiofsd_args: arguments must be non-empty"},
      {"[hypervisor\n", "t.toml: "},
      {"[hypervisor]\nbackend = \"xen\"", "hypervisor.backend: `xen` is not one of: qemu, libvirt"},
      {"[hypervisor]\nlibvirt_uri = \"\"", "hypervisor.libvirt_uri: must not be empty"},
      {"[hypervisor]\nbackend = \"libvirt\"\nvirtiofsd_args = [\"-o\", \"xattr\"]",
       "hypervisor.virtiofsd_args: is not supported with backend = \"libvirt\""},
  };
  for (const auto& c : cases) {
    auto config = ParseConfig(c.toml, "t.toml");
    ASSERT_FALSE(config) << c.toml;
    EXPECT_EQ(config.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(config.error().ToString().find(c.expected), std::string::npos)
        << "got: " << config.error().ToString() << "\nwanted: " << c.expected;
  }
}

TEST(ConfigTest, LoadConfigPrefersExplicitPathThenEnvironment) {
  std::string path = ::testing::TempDir() + "/hull-config-" + RandomHex(4) + ".toml";
  ASSERT_TRUE(WriteFile(path, "[hypervisor]\nvcpus = 3\n"));
  auto config = LoadConfig(path);
  ASSERT_TRUE(config) << config.error().ToString();
  EXPECT_EQ(config->hypervisor.vcpus, 3u);
  EXPECT_EQ(config->source, path);

  ::setenv("HULL_CONFIG", path.c_str(), 1);
  auto from_env = LoadConfig();
  ::unsetenv("HULL_CONFIG");
  ASSERT_TRUE(from_env);
  EXPECT_EQ(from_env->hypervisor.vcpus, 3u);

  auto missing = LoadConfig("/nonexistent/hull.toml");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().ToString().find("/nonexistent/hull.toml"), std::string::npos);
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace hull
