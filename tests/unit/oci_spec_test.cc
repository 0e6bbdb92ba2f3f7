// Tests for the OCI runtime spec model: the config.json that runc 1.1.5
// writes, every validation rule with its message, wrong types everywhere, the
// bare process and resources objects, DefaultSpec and the serialiser.

#include "hull/core/oci_spec.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "hull/core/process.h"

namespace hull::oci {
namespace {

using nlohmann::json;

constexpr char kRuncPath[] = "/usr/sbin/runc";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string RuncFixture() {
  return ReadFile(std::string(HULL_FIXTURES_DIR) + "/runc-spec-config.json");
}

// A spec that sets every field the model knows, with values away from the
// defaults, as containerd's CRI plugin would write them.
constexpr std::string_view kFullSpec = R"json({
  "ociVersion": "1.1.0",
  "process": {
    "terminal": true,
    "consoleSize": {"height": 24, "width": 80},
    "user": {"uid": 1000, "gid": 1000, "umask": 18, "additionalGids": [5, 4294967295]},
    "args": ["/bin/server", "--port", "8080"],
    "env": ["PATH=/usr/bin:/bin", "EMPTY=", "A=b=c"],
    "cwd": "/srv",
    "capabilities": {
      "bounding": ["CAP_CHOWN", "CAP_CHECKPOINT_RESTORE"],
      "effective": ["CAP_NET_RAW"],
      "inheritable": ["CAP_SYS_ADMIN"],
      "permitted": ["CAP_NET_RAW", "CAP_BPF"],
      "ambient": ["CAP_PERFMON"]
    },
    "rlimits": [
      {"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1024},
      {"type": "RLIMIT_CORE", "hard": 18446744073709551615, "soft": 0}
    ],
    "noNewPrivileges": true,
    "oomScoreAdj": -999,
    "apparmorProfile": "cri-containerd.apparmor.d",
    "selinuxLabel": "system_u:system_r:container_t:s0"
  },
  "root": {"path": "/run/containerd/rootfs", "readonly": false},
  "hostname": "web-0",
  "domainname": "example.internal",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/etc/hosts", "source": "/var/lib/pod/hosts", "options": ["rbind", "rprivate", "ro"]},
    {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind"]}
  ],
  "annotations": {"io.kubernetes.cri.sandbox-id": "abc123", "io.kubernetes.cri.container-type": "container"},
  "linux": {
    "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    "gidMappings": [{"containerID": 0, "hostID": 200000, "size": 65536}],
    "sysctl": {"net.ipv4.ip_unprivileged_port_start": "0", "net/ipv4/conf/eth0.1/forwarding": "1"},
    "resources": {
      "devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
        {"allow": true, "type": "b", "major": -1, "minor": -1, "access": "m"}
      ],
      "memory": {"limit": 536870912, "reservation": 268435456, "swap": -1, "kernel": -1,
                 "swappiness": 60, "disableOOMKiller": false},
      "cpu": {"shares": 512, "quota": 50000, "period": 100000, "realtimeRuntime": 950000,
              "realtimePeriod": 1000000, "cpus": "0-1", "mems": "0", "idle": 1},
      "pids": {"limit": 4096},
      "blockIO": {
        "weight": 500, "leafWeight": 300,
        "weightDevice": [{"major": 8, "minor": 0, "weight": 700, "leafWeight": 200}, {"major": 8, "minor": 16}],
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
        "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2097152}],
        "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 1000}],
        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 500}]
      },
      "unified": {"memory.high": "400000000", "io.weight": "default 100"}
    },
    "cgroupsPath": "/kubepods/besteffort/pod123/abc",
    "namespaces": [
      {"type": "pid"}, {"type": "network", "path": "/var/run/netns/cni-1234"}, {"type": "ipc"},
      {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}, {"type": "user"}, {"type": "time"}
    ],
    "devices": [
      {"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0},
      {"type": "c", "path": "/dev/tty", "major": 5},
      {"type": "p", "path": "/dev/pipe"}
    ],
    "seccomp": {
      "defaultAction": "SCMP_ACT_ERRNO",
      "defaultErrnoRet": 1,
      "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
      "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
      "syscalls": [
        {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                  {"index": 5, "value": 4294967295, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
      ]
    },
    "rootfsPropagation": "rslave",
    "maskedPaths": ["/proc/kcore", "/sys/firmware"],
    "readonlyPaths": ["/proc/sys"],
    "mountLabel": "system_u:object_r:container_file_t:s0"
  }
})json";

json Document(std::string_view text) { return json::parse(text); }

std::string ErrorOf(const Result<Spec>& result) {
  return result ? std::string("(parsed)") : result.error().ToString();
}

// ---------------------------------------------------------------------------------
// The config.json of `runc spec`

TEST(OciSpecRuncFixture, ParsesWithExpectedValues) {
  std::string text = RuncFixture();
  ASSERT_FALSE(text.empty()) << "missing fixture " << HULL_FIXTURES_DIR;
  auto spec = ParseOciSpec(text);
  ASSERT_TRUE(spec) << spec.error().ToString();

  EXPECT_EQ(spec->oci_version, "1.0.2-dev");
  ASSERT_TRUE(spec->process.has_value());
  const Process& process = *spec->process;
  EXPECT_TRUE(process.terminal);
  EXPECT_EQ(process.user.uid, 0u);
  EXPECT_EQ(process.user.gid, 0u);
  EXPECT_EQ(process.args, std::vector<std::string>{"sh"});
  EXPECT_EQ(process.env, (std::vector<std::string>{
                             "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                             "TERM=xterm"}));
  EXPECT_EQ(process.cwd, "/");
  ASSERT_TRUE(process.capabilities.has_value());
  const std::vector<std::string> caps = {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"};
  EXPECT_EQ(process.capabilities->bounding, caps);
  EXPECT_EQ(process.capabilities->effective, caps);
  EXPECT_EQ(process.capabilities->permitted, caps);
  EXPECT_EQ(process.capabilities->ambient, caps);
  EXPECT_TRUE(process.capabilities->inheritable.empty());
  ASSERT_EQ(process.rlimits.size(), 1u);
  EXPECT_EQ(process.rlimits[0], (Rlimit{.type = "RLIMIT_NOFILE", .hard = 1024, .soft = 1024}));
  EXPECT_TRUE(process.no_new_privileges);
  EXPECT_FALSE(process.oom_score_adj.has_value());

  EXPECT_EQ(spec->root.path, "rootfs");
  EXPECT_TRUE(spec->root.readonly);
  EXPECT_EQ(spec->hostname, "runc");
  ASSERT_EQ(spec->mounts.size(), 7u);
  EXPECT_EQ(spec->mounts[0],
            (Mount{.destination = "/proc", .type = "proc", .source = "proc", .options = {}}));
  EXPECT_EQ(spec->mounts[2].destination, "/dev/pts");
  EXPECT_EQ(spec->mounts[2].options,
            (std::vector<std::string>{"nosuid", "noexec", "newinstance", "ptmxmode=0666",
                                      "mode=0620", "gid=5"}));
  EXPECT_EQ(spec->mounts[6].destination, "/sys/fs/cgroup");
  EXPECT_EQ(spec->mounts[6].type, "cgroup");

  ASSERT_TRUE(spec->linux.has_value());
  const Linux& linux = *spec->linux;
  ASSERT_TRUE(linux.resources.has_value());
  ASSERT_EQ(linux.resources->devices.size(), 1u);
  EXPECT_FALSE(linux.resources->devices[0].allow);
  EXPECT_EQ(linux.resources->devices[0].access, "rwm");
  EXPECT_EQ(linux.resources->devices[0].type, "");
  EXPECT_FALSE(linux.resources->memory.has_value());
  std::vector<std::string> namespace_types;
  for (const auto& ns : linux.namespaces) {
    namespace_types.push_back(ns.type);
    EXPECT_EQ(ns.path, "");
  }
  EXPECT_EQ(namespace_types, (std::vector<std::string>{"pid", "network", "ipc", "uts", "mount"}));
  EXPECT_EQ(linux.masked_paths.size(), 10u);
  EXPECT_EQ(linux.masked_paths.front(), "/proc/acpi");
  EXPECT_EQ(linux.masked_paths.back(), "/proc/scsi");
  EXPECT_EQ(linux.readonly_paths, (std::vector<std::string>{"/proc/bus", "/proc/fs", "/proc/irq",
                                                            "/proc/sys", "/proc/sysrq-trigger"}));
  EXPECT_FALSE(linux.seccomp.has_value());
  EXPECT_TRUE(spec->annotations.empty());
}

TEST(OciSpecRuncFixture, EqualsDefaultSpecButForTheHostname) {
  auto parsed = ParseOciSpec(RuncFixture());
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  Spec expected = DefaultSpec({"sh"}, /*terminal=*/true);
  EXPECT_EQ(expected.hostname, "hull");
  expected.hostname = "runc";
  EXPECT_EQ(*parsed, expected);
}

// The fixture was written by Debian's runc 1.1.5; this checks the runc on this
// machine, whatever its version, still writes something we parse.
TEST(OciSpecRuncFixture, RealRuncSpecParses) {
  if (::access(kRuncPath, X_OK) != 0) {
    GTEST_SKIP() << kRuncPath
                 << " is not installed (Debian package `runc`); the fixture test covers its output";
  }
  char dir_template[] = "/tmp/hull-oci-runc-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  std::string dir = dir_template;

  SpawnOptions options;
  options.argv = {kRuncPath, "spec", "--bundle", dir};
  auto child = Child::Spawn(options);
  ASSERT_TRUE(child) << child.error().ToString();
  auto status = child->Wait();
  ASSERT_TRUE(status) << status.error().ToString();
  std::string text = ReadFile(dir + "/config.json");
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(status->success()) << "runc spec: " << status->ToString();

  auto spec = ParseOciSpec(text);
  ASSERT_TRUE(spec) << spec.error().ToString();
  ASSERT_TRUE(spec->process.has_value());
  EXPECT_EQ(spec->process->args, std::vector<std::string>{"sh"});
  EXPECT_EQ(spec->root.path, "rootfs");
  EXPECT_FALSE(spec->mounts.empty());
  EXPECT_TRUE(spec->linux.has_value());
}

// ---------------------------------------------------------------------------------
// A spec with every field

TEST(OciSpecFull, ParsesEveryField) {
  auto spec = ParseOciSpec(kFullSpec);
  ASSERT_TRUE(spec) << spec.error().ToString();
  EXPECT_EQ(spec->oci_version, "1.1.0");

  const Process& process = *spec->process;
  ASSERT_TRUE(process.console_size.has_value());
  EXPECT_EQ(process.console_size->height, 24u);
  EXPECT_EQ(process.console_size->width, 80u);
  EXPECT_EQ(process.user.uid, 1000u);
  EXPECT_EQ(process.user.umask, 18u);
  EXPECT_EQ(process.user.additional_gids, (std::vector<uint32_t>{5, 4294967295u}));
  EXPECT_EQ(process.env[2], "A=b=c");
  EXPECT_EQ(process.cwd, "/srv");
  EXPECT_EQ(process.capabilities->bounding.back(), "CAP_CHECKPOINT_RESTORE");
  EXPECT_EQ(process.capabilities->inheritable, std::vector<std::string>{"CAP_SYS_ADMIN"});
  EXPECT_EQ(process.rlimits[1].hard, UINT64_MAX);
  EXPECT_EQ(process.oom_score_adj, -999);
  EXPECT_EQ(process.apparmor_profile, "cri-containerd.apparmor.d");
  EXPECT_EQ(process.selinux_label, "system_u:system_r:container_t:s0");

  EXPECT_EQ(spec->root.path, "/run/containerd/rootfs");
  EXPECT_FALSE(spec->root.readonly);
  EXPECT_EQ(spec->domainname, "example.internal");
  EXPECT_EQ(spec->mounts[1].type, "");  // a bind through its options
  EXPECT_EQ(spec->mounts[1].options, (std::vector<std::string>{"rbind", "rprivate", "ro"}));
  EXPECT_EQ(spec->annotations.at("io.kubernetes.cri.sandbox-id"), "abc123");

  const Linux& linux = *spec->linux;
  EXPECT_EQ(linux.uid_mappings[0],
            (IdMapping{.container_id = 0, .host_id = 100000, .size = 65536}));
  EXPECT_EQ(linux.gid_mappings[0].host_id, 200000u);
  EXPECT_EQ(linux.sysctl.at("net/ipv4/conf/eth0.1/forwarding"), "1");
  const Resources& resources = *linux.resources;
  EXPECT_EQ(resources.devices[1].major, 1);
  EXPECT_EQ(resources.devices[1].minor, 3);
  EXPECT_FALSE(resources.devices[0].major.has_value());
  EXPECT_EQ(resources.memory->limit, 536870912);
  EXPECT_EQ(resources.memory->swap, -1);
  EXPECT_EQ(resources.memory->swappiness, 60u);
  EXPECT_EQ(resources.memory->disable_oom_killer, false);
  EXPECT_EQ(resources.cpu->quota, 50000);
  EXPECT_EQ(resources.cpu->cpus, "0-1");
  EXPECT_EQ(resources.cpu->idle, 1);
  EXPECT_EQ(resources.pids->limit, 4096);
  EXPECT_EQ(resources.block_io->weight, 500);
  EXPECT_EQ(resources.block_io->weight_device[0].leaf_weight, 200);
  EXPECT_FALSE(resources.block_io->weight_device[1].weight.has_value());
  EXPECT_EQ(resources.block_io->throttle_write_iops_device[0].rate, 500u);
  EXPECT_EQ(resources.unified.at("io.weight"), "default 100");
  EXPECT_EQ(linux.cgroups_path, "/kubepods/besteffort/pod123/abc");
  EXPECT_EQ(linux.namespaces.size(), 8u);
  EXPECT_EQ(linux.namespaces[1].path, "/var/run/netns/cni-1234");
  EXPECT_EQ(linux.devices[0].file_mode, 438u);
  EXPECT_EQ(linux.devices[1].minor, 0);  // Go leaves out a zero minor
  EXPECT_FALSE(linux.devices[1].uid.has_value());
  EXPECT_EQ(linux.devices[2].type, "p");
  const Seccomp& seccomp = *linux.seccomp;
  EXPECT_EQ(seccomp.default_action, "SCMP_ACT_ERRNO");
  EXPECT_EQ(seccomp.default_errno_ret, 1u);
  EXPECT_EQ(seccomp.architectures.size(), 3u);
  EXPECT_EQ(seccomp.flags, std::vector<std::string>{"SECCOMP_FILTER_FLAG_SPEC_ALLOW"});
  EXPECT_EQ(
      seccomp.syscalls[1].args[1],
      (SeccompArg{.index = 5, .value = 4294967295u, .value_two = 8, .op = "SCMP_CMP_MASKED_EQ"}));
  EXPECT_EQ(seccomp.syscalls[2].errno_ret, 38u);
  EXPECT_EQ(linux.rootfs_propagation, "rslave");
  EXPECT_EQ(linux.mount_label, "system_u:object_r:container_file_t:s0");
}

TEST(OciSpecFull, UnknownFieldsAreIgnored) {
  json document = Document(kFullSpec);
  document["hooks"] = {{"prestart", json::array({{{"path", "/bin/true"}}})}};
  document["process"]["ioPriority"] = {{"class", "IOPRIO_CLASS_RT"}};
  document["process"]["user"]["username"] = "web";
  document["linux"]["intelRdt"] = {{"closID", "x"}};
  document["linux"]["resources"]["hugepageLimits"] =
      json::array({{{"pageSize", "2MB"}, {"limit", 0}}});
  document["mounts"][0]["uidMappings"] = json::array();
  document["vm"] = {{"kernel", {{"path", "/vmlinuz"}}}};
  auto with_extras = ParseOciSpec(document.dump());
  ASSERT_TRUE(with_extras) << with_extras.error().ToString();
  auto plain = ParseOciSpec(kFullSpec);
  ASSERT_TRUE(plain);
  EXPECT_EQ(*with_extras, *plain);
}

TEST(OciSpecFull, NullMeansAbsent) {
  json document = Document(kFullSpec);
  document["process"] = nullptr;
  document["linux"]["seccomp"] = nullptr;
  document["linux"]["resources"]["memory"]["limit"] = nullptr;
  document["mounts"] = nullptr;
  document["hostname"] = nullptr;
  auto spec = ParseOciSpec(document.dump());
  ASSERT_TRUE(spec) << spec.error().ToString();
  EXPECT_FALSE(spec->process.has_value());
  EXPECT_FALSE(spec->linux->seccomp.has_value());
  EXPECT_FALSE(spec->linux->resources->memory->limit.has_value());
  EXPECT_TRUE(spec->mounts.empty());
  EXPECT_EQ(spec->hostname, "");
}

TEST(OciSpecFull, MinimalSpecNeedsOnlyVersionAndRoot) {
  auto spec = ParseOciSpec(R"({"ociVersion": "1.0.0", "root": {"path": "rootfs"}})");
  ASSERT_TRUE(spec) << spec.error().ToString();
  EXPECT_FALSE(spec->process.has_value());
  EXPECT_FALSE(spec->linux.has_value());
  EXPECT_TRUE(spec->mounts.empty());
}

TEST(OciSpecFull, ProcessWithoutCwdKeepsSlash) {
  auto spec =
      ParseOciSpec(R"({"ociVersion": "1.0.0", "root": {"path": "r"}, "process": {"args": ["a"]}})");
  ASSERT_TRUE(spec) << spec.error().ToString();
  EXPECT_EQ(spec->process->cwd, "/");
}

// ---------------------------------------------------------------------------------
// ociVersion

TEST(OciSpecVersion, AcceptsOneZeroToOneTwo) {
  for (const char* version : {"1.0.0", "1.0.2", "1.0.2-dev", "1.0.0-rc5", "1.1.0", "1.1.0-rc.1",
                              "1.2.0", "1.2.1", "1.0.10", "1.2.0+dev"}) {
    json document = {{"ociVersion", version}, {"root", {{"path", "rootfs"}}}};
    auto spec = ParseOciSpec(document.dump());
    EXPECT_TRUE(spec) << version << ": " << ErrorOf(spec);
  }
}

TEST(OciSpecVersion, RejectsOthers) {
  for (const char* version : {"2.0.0", "1.3.0", "0.6.0", "1.10.0", "1.0", "1", "", "1.0.x",
                              "1.0.0-", "v1.0.0", "1.0.0 ", "11.0.0"}) {
    json document = {{"ociVersion", version}, {"root", {{"path", "rootfs"}}}};
    auto spec = ParseOciSpec(document.dump());
    ASSERT_FALSE(spec) << version;
    EXPECT_EQ(spec.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(spec.error().ToString(), "ociVersion `" + std::string(version) +
                                           "` is not supported (hull supports 1.0 to 1.2)");
  }
}

TEST(OciSpecVersion, TheExampleMessage) {
  auto spec = ParseOciSpec(R"({"ociVersion": "2.0.0", "root": {"path": "rootfs"}})");
  ASSERT_FALSE(spec);
  EXPECT_EQ(spec.error().message(),
            "ociVersion `2.0.0` is not supported (hull supports 1.0 to 1.2)");
}

TEST(OciSpecVersion, IsRequiredAndAString) {
  EXPECT_EQ(ErrorOf(ParseOciSpec(R"({"root": {"path": "rootfs"}})")), "ociVersion: is required");
  EXPECT_EQ(ErrorOf(ParseOciSpec(R"({"ociVersion": 1.0, "root": {"path": "rootfs"}})")),
            "ociVersion: expected a string");
}

// ---------------------------------------------------------------------------------
// Validation: each rule, its message

// One edit of the full spec and the error it must give.
struct BadSpecCase {
  const char* name;
  const char* pointer;  // JSON pointer of the member to replace ("" = leave as is)
  json value;           // its new value; a discarded value removes the member
  std::string message;
};

void PrintTo(const BadSpecCase& c, std::ostream* out) { *out << c.name; }

class OciSpecValidation : public ::testing::TestWithParam<BadSpecCase> {};

json Remove() { return json(json::value_t::discarded); }

TEST_P(OciSpecValidation, RejectsWithMessage) {
  const BadSpecCase& c = GetParam();
  json document = Document(kFullSpec);
  json::json_pointer pointer(c.pointer);
  if (c.value.is_discarded()) {
    document[pointer.parent_pointer()].erase(pointer.back());
  } else if (pointer.back() == "-") {
    document[pointer.parent_pointer()].push_back(c.value);
  } else {
    document[pointer] = c.value;
  }
  auto spec = ParseOciSpec(document.dump());
  ASSERT_FALSE(spec) << "accepted: " << document[pointer.parent_pointer()].dump();
  EXPECT_EQ(spec.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(spec.error().ToString(), c.message);
}

const std::string kLongName(65, 'h');

INSTANTIATE_TEST_SUITE_P(
    Rules, OciSpecValidation,
    ::testing::Values(
        BadSpecCase{"ArgsEmpty", "/process/args", json::array(), "process.args: must not be empty"},
        BadSpecCase{"ArgsAbsent", "/process/args", Remove(), "process.args: must not be empty"},
        BadSpecCase{"CwdRelative", "/process/cwd", "srv", "process.cwd: must be an absolute path"},
        BadSpecCase{"CwdEmpty", "/process/cwd", "", "process.cwd: must be an absolute path"},
        BadSpecCase{"EnvWithoutEquals", "/process/env/1", "TERM",
                    "process.env[1]: `TERM` is not KEY=value"},
        BadSpecCase{"EnvEmptyName", "/process/env/0", "=x",
                    "process.env[0]: `=x` has an empty variable name"},
        BadSpecCase{"ArgWithNul", "/process/args/1", std::string("a\0b", 3),
                    "process.args[1]: must not contain a NUL byte"},
        BadSpecCase{"UidNegative", "/process/user/uid", -1,
                    "process.user.uid: -1 is out of range (0 to 4294967295)"},
        BadSpecCase{"UidTooLarge", "/process/user/uid", 4294967296LL,
                    "process.user.uid: 4294967296 is out of range (0 to 4294967295)"},
        BadSpecCase{"UidFloat", "/process/user/uid", 1000.0,
                    "process.user.uid: expected an integer"},
        BadSpecCase{"UidString", "/process/user/uid", "1000",
                    "process.user.uid: expected an integer"},
        BadSpecCase{"GidInArray", "/process/user/additionalGids/1", -5,
                    "process.user.additionalGids[1]: -5 is out of range (0 to 4294967295)"},
        BadSpecCase{"ConsoleSizeNegative", "/process/consoleSize/width", -80,
                    "process.consoleSize.width: -80 is out of range (0 to 4294967295)"},
        BadSpecCase{"CapabilityUnknown", "/process/capabilities/bounding/1", "CAP_FOO",
                    "process.capabilities.bounding[1]: unknown capability `CAP_FOO`"},
        BadSpecCase{"CapabilityCase", "/process/capabilities/ambient/0", "cap_perfmon",
                    "process.capabilities.ambient[0]: unknown capability `cap_perfmon`"},
        BadSpecCase{"CapabilityWithoutPrefix", "/process/capabilities/effective/0", "NET_RAW",
                    "process.capabilities.effective[0]: unknown capability `NET_RAW`"},
        BadSpecCase{"RlimitUnknown", "/process/rlimits/0/type", "RLIMIT_FOO",
                    "process.rlimits[0].type: unknown rlimit `RLIMIT_FOO`"},
        BadSpecCase{"RlimitTypeAbsent", "/process/rlimits/1/type", Remove(),
                    "process.rlimits[1].type: is required"},
        BadSpecCase{"DeviceTypeAbsent", "/linux/devices/2/type", Remove(),
                    "linux.devices[2].type: is required"},
        BadSpecCase{"SeccompOpAbsent", "/linux/seccomp/syscalls/1/args/1/op", Remove(),
                    "linux.seccomp.syscalls[1].args[1].op: is required"},
        BadSpecCase{"RlimitDuplicate", "/process/rlimits/-",
                    json{{"type", "RLIMIT_NOFILE"}, {"hard", 1}, {"soft", 1}},
                    "process.rlimits[2].type: duplicate rlimit `RLIMIT_NOFILE`"},
        BadSpecCase{"RlimitSoftAboveHard", "/process/rlimits/0/soft", 2000000,
                    "process.rlimits[0]: soft limit 2000000 exceeds hard limit 1048576"},
        BadSpecCase{"RlimitHardNegative", "/process/rlimits/0/hard", -1,
                    "process.rlimits[0].hard: -1 is out of range (0 to 18446744073709551615)"},
        BadSpecCase{"OomScoreAdjTooLow", "/process/oomScoreAdj", -1001,
                    "process.oomScoreAdj: -1001 is out of range (-1000 to 1000)"},
        BadSpecCase{"OomScoreAdjBeyondInt", "/process/oomScoreAdj", 4294967296LL,
                    "process.oomScoreAdj: 4294967296 is out of range (-2147483648 to 2147483647)"},
        BadSpecCase{"RootAbsent", "/root", Remove(), "root: is required"},
        BadSpecCase{"RootPathEmpty", "/root/path", "", "root.path: must not be empty"},
        BadSpecCase{"RootPathAbsent", "/root/path", Remove(), "root.path: must not be empty"},
        BadSpecCase{"MountRelative", "/mounts/2/destination", "data",
                    "mounts[2].destination: must be an absolute path"},
        BadSpecCase{"MountDestinationAbsent", "/mounts/2/destination", Remove(),
                    "mounts[2].destination: must be an absolute path"},
        BadSpecCase{"HostnameSlash", "/hostname", "web/0", "hostname: must not contain '/'"},
        BadSpecCase{"HostnameTooLong", "/hostname", kLongName,
                    "hostname: is 65 characters long (at most 64)"},
        BadSpecCase{"DomainnameSlash", "/domainname", "a/b", "domainname: must not contain '/'"},
        BadSpecCase{"NamespaceUnknown", "/linux/namespaces/0/type", "pids",
                    "linux.namespaces[0].type: unknown namespace type `pids`"},
        BadSpecCase{"NamespaceTypeAbsent", "/linux/namespaces/0/type", Remove(),
                    "linux.namespaces[0].type: is required"},
        BadSpecCase{"NamespaceDuplicate", "/linux/namespaces/-", json{{"type", "ipc"}},
                    "linux.namespaces[8].type: duplicate namespace `ipc`"},
        BadSpecCase{"NamespacePathRelative", "/linux/namespaces/1/path", "netns/x",
                    "linux.namespaces[1].path: must be an absolute path"},
        BadSpecCase{"IdMappingNegative", "/linux/uidMappings/0/hostID", -1,
                    "linux.uidMappings[0].hostID: -1 is out of range (0 to 4294967295)"},
        BadSpecCase{"DeviceTypeUnknown", "/linux/devices/0/type", "x",
                    "linux.devices[0].type: unknown device type `x` (expected c, b, u or p)"},
        BadSpecCase{"DevicePathRelative", "/linux/devices/0/path", "dev/fuse",
                    "linux.devices[0].path: must be an absolute path"},
        BadSpecCase{"DeviceUidNegative", "/linux/devices/0/uid", -1,
                    "linux.devices[0].uid: -1 is out of range (0 to 4294967295)"},
        BadSpecCase{
            "DeviceRuleType", "/linux/resources/devices/1/type", "u",
            "linux.resources.devices[1].type: unknown device type `u` (expected a, c or b)"},
        BadSpecCase{"DeviceRuleAccess", "/linux/resources/devices/1/access", "rwx",
                    "linux.resources.devices[1].access: `rwx` is not a combination of r, w and m"},
        BadSpecCase{"MemoryLimitString", "/linux/resources/memory/limit", "512M",
                    "linux.resources.memory.limit: expected an integer"},
        BadSpecCase{"MemoryLimitFloat", "/linux/resources/memory/limit", 1.5,
                    "linux.resources.memory.limit: expected an integer"},
        BadSpecCase{"MemoryLimitBelowMinusOne", "/linux/resources/memory/limit", -2,
                    "linux.resources.memory.limit: -2 is neither a byte count nor -1 (unlimited)"},
        BadSpecCase{"MemoryLimitTooLarge", "/linux/resources/memory/limit", 9223372036854775808ULL,
                    "linux.resources.memory.limit: 9223372036854775808 is out of range "
                    "(-9223372036854775808 to 9223372036854775807)"},
        BadSpecCase{"MemorySwapBelowMinusOne", "/linux/resources/memory/swap", -3,
                    "linux.resources.memory.swap: -3 is neither a byte count nor -1 (unlimited)"},
        BadSpecCase{"CpuSharesNegative", "/linux/resources/cpu/shares", -1,
                    "linux.resources.cpu.shares: -1 is out of range (0 to 18446744073709551615)"},
        BadSpecCase{"BlkioWeightTooLarge", "/linux/resources/blockIO/weight", 65536,
                    "linux.resources.blockIO.weight: 65536 is out of range (0 to 65535)"},
        BadSpecCase{"BlkioDeviceRate", "/linux/resources/blockIO/throttleReadBpsDevice/0/rate",
                    "fast",
                    "linux.resources.blockIO.throttleReadBpsDevice[0].rate: expected an integer"},
        BadSpecCase{"PidsLimitBool", "/linux/resources/pids/limit", true,
                    "linux.resources.pids.limit: expected an integer"},
        BadSpecCase{"UnifiedKeyEscapes", "/linux/resources/unified/..~1memory.max", "1",
                    "linux.resources.unified: invalid cgroup file name `../memory.max`"},
        BadSpecCase{"UnifiedValueNumber", "/linux/resources/unified/memory.high", 1,
                    "linux.resources.unified.memory.high: expected a string"},
        BadSpecCase{"SeccompDefaultAction", "/linux/seccomp/defaultAction", "SCMP_ACT_FOO",
                    "linux.seccomp.defaultAction: unknown seccomp action `SCMP_ACT_FOO`"},
        BadSpecCase{"SeccompDefaultActionAbsent", "/linux/seccomp/defaultAction", Remove(),
                    "linux.seccomp.defaultAction: is required"},
        BadSpecCase{"SeccompAction", "/linux/seccomp/syscalls/2/action", "SCMP_ACT_allow",
                    "linux.seccomp.syscalls[2].action: unknown seccomp action `SCMP_ACT_allow`"},
        BadSpecCase{
            "SeccompOp", "/linux/seccomp/syscalls/1/args/0/op", "SCMP_CMP_FOO",
            "linux.seccomp.syscalls[1].args[0].op: unknown seccomp operator `SCMP_CMP_FOO`"},
        BadSpecCase{"SeccompArgIndex", "/linux/seccomp/syscalls/1/args/1/index", 6,
                    "linux.seccomp.syscalls[1].args[1].index: 6 is out of range (0 to 5)"},
        BadSpecCase{"SeccompErrnoNegative", "/linux/seccomp/syscalls/2/errnoRet", -1,
                    "linux.seccomp.syscalls[2].errnoRet: -1 is out of range (0 to 4294967295)"},
        BadSpecCase{"SeccompNames", "/linux/seccomp/syscalls/0/names", "read",
                    "linux.seccomp.syscalls[0].names: expected an array"},
        BadSpecCase{"RootfsPropagation", "/linux/rootfsPropagation", "bogus",
                    "linux.rootfsPropagation: unknown propagation `bogus`"},
        BadSpecCase{"MaskedPathRelative", "/linux/maskedPaths/1", "sys/firmware",
                    "linux.maskedPaths[1]: must be an absolute path"},
        BadSpecCase{"ReadonlyPathRelative", "/linux/readonlyPaths/0", "proc/sys",
                    "linux.readonlyPaths[0]: must be an absolute path"},
        BadSpecCase{"SysctlEscapes", "/linux/sysctl/..~1..~1etc~1passwd", "x",
                    "linux.sysctl: invalid sysctl name `../../etc/passwd`"},
        BadSpecCase{"SysctlEmptyComponent", "/linux/sysctl/net..ipv4", "1",
                    "linux.sysctl: invalid sysctl name `net..ipv4`"},
        BadSpecCase{"ProcessNotObject", "/process", "sh", "process: expected an object"},
        BadSpecCase{"MountsNotArray", "/mounts", json::object(), "mounts: expected an array"},
        BadSpecCase{"MountNotObject", "/mounts/0", "/proc", "mounts[0]: expected an object"},
        BadSpecCase{"ArgsNotArray", "/process/args", "sh", "process.args: expected an array"},
        BadSpecCase{"ArgNotString", "/process/args/0", 1, "process.args[0]: expected a string"},
        BadSpecCase{"TerminalString", "/process/terminal", "true",
                    "process.terminal: expected a boolean"},
        BadSpecCase{"ReadonlyNumber", "/root/readonly", 1, "root.readonly: expected a boolean"},
        BadSpecCase{"AnnotationNumber", "/annotations/io.kubernetes.cri.sandbox-id", 7,
                    "annotations.io.kubernetes.cri.sandbox-id: expected a string"},
        BadSpecCase{"LinuxNotObject", "/linux", json::array(), "linux: expected an object"},
        BadSpecCase{"CapabilitiesNotObject", "/process/capabilities", json::array({"CAP_KILL"}),
                    "process.capabilities: expected an object"},
        BadSpecCase{"DisableOomKillerNumber", "/linux/resources/memory/disableOOMKiller", 0,
                    "linux.resources.memory.disableOOMKiller: expected a boolean"}),
    [](const ::testing::TestParamInfo<BadSpecCase>& info) { return std::string(info.param.name); });

TEST(OciSpecValidationLimits, HostnameOfSixtyFourCharactersIsFine) {
  json document = Document(kFullSpec);
  document["hostname"] = std::string(64, 'h');
  EXPECT_TRUE(ParseOciSpec(document.dump()));
}

TEST(OciSpecValidationLimits, IntegerBoundsAreAccepted) {
  json document = Document(kFullSpec);
  document["process"]["user"]["uid"] = 4294967295u;
  document["process"]["oomScoreAdj"] = 1000;
  document["linux"]["resources"]["memory"]["limit"] = -1;
  document["linux"]["resources"]["memory"]["reservation"] = 9223372036854775807LL;
  document["linux"]["resources"]["cpu"]["quota"] = -1;
  document["linux"]["resources"]["blockIO"]["weight"] = 65535;
  document["linux"]["seccomp"]["syscalls"][1]["args"][1]["value"] = 18446744073709551615ULL;
  auto spec = ParseOciSpec(document.dump());
  ASSERT_TRUE(spec) << spec.error().ToString();
  EXPECT_EQ(spec->process->user.uid, 4294967295u);
  EXPECT_EQ(spec->linux->resources->memory->limit, -1);
  EXPECT_EQ(spec->linux->resources->memory->reservation, INT64_MAX);
  EXPECT_EQ(spec->linux->seccomp->syscalls[1].args[1].value, UINT64_MAX);
}

TEST(OciSpecValidationLimits, IntegersBeyondUint64AreNotIntegers) {
  // JSON numbers past 2^64 arrive as doubles.
  std::string text = Document(kFullSpec).dump();
  std::string needle = "\"limit\":536870912";
  ASSERT_NE(text.find(needle), std::string::npos);
  text.replace(text.find(needle), needle.size(), "\"limit\":100000000000000000000000");
  EXPECT_EQ(ErrorOf(ParseOciSpec(text)), "linux.resources.memory.limit: expected an integer");
}

TEST(OciSpecValidationLimits, EchoedValuesAreShortenedAndEscaped) {
  json document = Document(kFullSpec);
  document["process"]["capabilities"]["bounding"][0] = "CAP_\n" + std::string(200, 'X');
  auto spec = ParseOciSpec(document.dump());
  ASSERT_FALSE(spec);
  EXPECT_EQ(spec.error().message(),
            "process.capabilities.bounding[0]: unknown capability `CAP_\\x0a" +
                std::string(59, 'X') + "...`");
}

TEST(OciSpecSyntax, InvalidJsonSaysWhere) {
  auto spec = ParseOciSpec("{\"ociVersion\": \"1.0.2\",\n \"root\": {\"path\": rootfs}}");
  ASSERT_FALSE(spec);
  EXPECT_EQ(spec.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(
      spec.error().message().rfind("config.json: invalid JSON: parse error at line 2, column ", 0),
      0u)
      << spec.error().message();
}

TEST(OciSpecSyntax, EmptyAndNonObjectDocuments) {
  for (std::string_view text : {"", " ", "{", "{}}", "\xff", "[1,2"}) {
    auto spec = ParseOciSpec(text);
    ASSERT_FALSE(spec) << text;
    EXPECT_EQ(spec.error().message().rfind("config.json: invalid JSON", 0), 0u)
        << spec.error().message();
  }
  for (std::string_view text : {"[]", "null", "1", "\"x\"", "true"}) {
    EXPECT_EQ(ErrorOf(ParseOciSpec(text)), "config.json: expected an object") << text;
  }
  EXPECT_EQ(ErrorOf(ParseOciSpec("{}")), "ociVersion: is required");
}

TEST(OciSpecSyntax, InvalidUtf8IsRejected) {
  auto spec = ParseOciSpec("{\"ociVersion\": \"1.0.2\", \"root\": {\"path\": \"\xc3\x28\"}}");
  ASSERT_FALSE(spec);
  EXPECT_EQ(spec.error().message().rfind("config.json: invalid JSON", 0), 0u)
      << spec.error().message();
}

// ---------------------------------------------------------------------------------
// Wrong types everywhere: whatever replaces any value, no crash, no exception,
// and a rejection names the replaced member or one below it.

void CollectPointers(const json& value, const json::json_pointer& here,
                     std::vector<json::json_pointer>& out) {
  out.push_back(here);
  if (value.is_object()) {
    for (const auto& [key, member] : value.items()) CollectPointers(member, here / key, out);
  } else if (value.is_array()) {
    for (size_t i = 0; i < value.size(); ++i) CollectPointers(value[i], here / i, out);
  }
}

TEST(OciSpecWrongTypes, NoValueAnywhereCrashes) {
  json document = Document(kFullSpec);
  std::vector<json::json_pointer> pointers;
  CollectPointers(document, json::json_pointer(), pointers);
  ASSERT_GT(pointers.size(), 200u);

  // One of each JSON type, plus integers at the edges of the field types.
  const std::vector<json> replacements = {nullptr,
                                          true,
                                          -1,
                                          4294967296LL,
                                          18446744073709551615ULL,
                                          0.5,
                                          "x",
                                          json::array({1, "a", nullptr}),
                                          json{{"type", 1}}};
  size_t accepted = 0;
  size_t rejected = 0;
  for (const auto& pointer : pointers) {
    const json saved = document[pointer];
    for (const json& replacement : replacements) {
      document[pointer] = replacement;
      std::string text = document.dump();
      document[pointer] = saved;
      Result<Spec> spec = ParseOciSpec(text);
      if (spec) {
        ++accepted;
        // What parses must serialise and parse back to the same values.
        auto again = ParseOciSpec(SerializeOciSpec(*spec));
        ASSERT_TRUE(again) << pointer.to_string() << " = " << replacement.dump() << ": "
                           << again.error().ToString();
        EXPECT_EQ(*again, *spec) << pointer.to_string() << " = " << replacement.dump();
      } else {
        ++rejected;
        EXPECT_EQ(spec.error().code(), ErrorCode::kInvalidArgument);
        EXPECT_FALSE(spec.error().message().empty());
      }
    }
  }
  EXPECT_GT(accepted, 0u);
  EXPECT_GT(rejected, accepted);
}

// ---------------------------------------------------------------------------------
// ParseOciProcess, ParseOciResources

TEST(OciProcess, ParsesABareProcess) {
  auto process = ParseOciProcess(R"({
      "terminal": false, "user": {"uid": 33, "gid": 33, "additionalGids": [4]},
      "args": ["/bin/sh", "-c", "echo hi"], "env": ["HOME=/var/www"], "cwd": "/var/www",
      "capabilities": {"bounding": ["CAP_KILL"]}, "rlimits": [{"type": "RLIMIT_NPROC", "hard": 64, "soft": 32}],
      "noNewPrivileges": true, "oomScoreAdj": 500})");
  ASSERT_TRUE(process) << process.error().ToString();
  EXPECT_EQ(process->user.uid, 33u);
  EXPECT_EQ(process->user.additional_gids, std::vector<uint32_t>{4});
  EXPECT_EQ(process->args.size(), 3u);
  EXPECT_EQ(process->cwd, "/var/www");
  EXPECT_EQ(process->capabilities->bounding, std::vector<std::string>{"CAP_KILL"});
  EXPECT_EQ(process->rlimits[0].type, "RLIMIT_NPROC");
  EXPECT_EQ(process->oom_score_adj, 500);
}

TEST(OciProcess, SharesTheSpecRules) {
  EXPECT_EQ(ParseOciProcess(R"({"args": []})").error().ToString(),
            "process.args: must not be empty");
  EXPECT_EQ(ParseOciProcess(R"({"args": ["sh"], "cwd": "tmp"})").error().ToString(),
            "process.cwd: must be an absolute path");
  EXPECT_EQ(ParseOciProcess(R"({"args": ["sh"], "env": ["X"]})").error().ToString(),
            "process.env[0]: `X` is not KEY=value");
  EXPECT_EQ(ParseOciProcess(R"({"args": ["sh"], "user": {"uid": "0"}})").error().ToString(),
            "process.user.uid: expected an integer");
  EXPECT_EQ(ParseOciProcess(R"(["sh"])").error().ToString(), "process: expected an object");
  EXPECT_EQ(ParseOciProcess("nope").error().message().rfind("process: invalid JSON", 0), 0u);
}

TEST(OciProcess, MatchesTheProcessOfASpec) {
  auto spec = ParseOciSpec(kFullSpec);
  ASSERT_TRUE(spec);
  auto process = ParseOciProcess(Document(kFullSpec)["process"].dump());
  ASSERT_TRUE(process) << process.error().ToString();
  EXPECT_EQ(*process, *spec->process);
}

TEST(OciResources, ParsesABareResourcesObject) {
  auto resources = ParseOciResources(R"({
      "memory": {"limit": 1073741824, "swap": -1},
      "cpu": {"quota": -1, "period": 100000, "cpus": "1"},
      "pids": {"limit": -1},
      "unified": {"memory.oom.group": "1"}})");
  ASSERT_TRUE(resources) << resources.error().ToString();
  EXPECT_EQ(resources->memory->limit, 1073741824);
  EXPECT_EQ(resources->memory->swap, -1);
  EXPECT_FALSE(resources->memory->reservation.has_value());
  EXPECT_EQ(resources->cpu->quota, -1);
  EXPECT_EQ(resources->cpu->period, 100000u);
  EXPECT_EQ(resources->pids->limit, -1);
  EXPECT_FALSE(resources->block_io.has_value());
  EXPECT_EQ(resources->unified.at("memory.oom.group"), "1");
}

TEST(OciResources, SharesTheSpecRules) {
  EXPECT_EQ(ParseOciResources(R"({"memory": {"limit": "1G"}})").error().ToString(),
            "linux.resources.memory.limit: expected an integer");
  EXPECT_EQ(ParseOciResources(R"({"memory": {"limit": 1e9}})").error().ToString(),
            "linux.resources.memory.limit: expected an integer");
  EXPECT_EQ(
      ParseOciResources(R"({"devices": [{"allow": true, "access": "x"}]})").error().ToString(),
      "linux.resources.devices[0].access: `x` is not a combination of r, w and m");
  EXPECT_EQ(ParseOciResources(R"({"unified": {"../x": "1"}})").error().ToString(),
            "linux.resources.unified: invalid cgroup file name `../x`");
  EXPECT_EQ(ParseOciResources("[]").error().ToString(), "linux.resources: expected an object");
  EXPECT_TRUE(ParseOciResources("{}"));
}

TEST(OciResources, MatchesTheResourcesOfASpec) {
  auto spec = ParseOciSpec(kFullSpec);
  ASSERT_TRUE(spec);
  auto resources = ParseOciResources(Document(kFullSpec)["linux"]["resources"].dump());
  ASSERT_TRUE(resources) << resources.error().ToString();
  EXPECT_EQ(*resources, *spec->linux->resources);
}

// ---------------------------------------------------------------------------------
// DefaultSpec and SerializeOciSpec

TEST(OciDefaultSpec, TakesArgsAndTerminal) {
  Spec spec = DefaultSpec({"/bin/echo", "hi"}, /*terminal=*/false);
  EXPECT_EQ(spec.process->args, (std::vector<std::string>{"/bin/echo", "hi"}));
  EXPECT_FALSE(spec.process->terminal);
  EXPECT_EQ(spec.hostname, "hull");
  EXPECT_EQ(DefaultSpec({}, true).process->args, std::vector<std::string>{"sh"});
}

TEST(OciSerialize, DefaultSpecRoundTrips) {
  for (bool terminal : {false, true}) {
    Spec spec = DefaultSpec({"/bin/sh", "-c", "exit 3"}, terminal);
    std::string text = SerializeOciSpec(spec);
    auto parsed = ParseOciSpec(text);
    ASSERT_TRUE(parsed) << parsed.error().ToString() << "\n" << text;
    EXPECT_EQ(*parsed, spec);
  }
}

TEST(OciSerialize, DefaultSpecWritesWhatRuncWrites) {
  Spec spec = DefaultSpec({"sh"}, true);
  spec.hostname = "runc";
  EXPECT_EQ(json::parse(SerializeOciSpec(spec)), json::parse(RuncFixture()));
}

TEST(OciSerialize, FullSpecRoundTrips) {
  auto spec = ParseOciSpec(kFullSpec);
  ASSERT_TRUE(spec);
  std::string text = SerializeOciSpec(*spec);
  auto again = ParseOciSpec(text);
  ASSERT_TRUE(again) << again.error().ToString() << "\n" << text;
  EXPECT_EQ(*again, *spec);
}

TEST(OciSerialize, UsesTheSpecFieldNamesAndLeavesOutWhatIsUnset) {
  Spec spec;
  spec.oci_version = "1.0.2";
  spec.root.path = "rootfs";
  json minimal = json::parse(SerializeOciSpec(spec));
  EXPECT_EQ(minimal, (json{{"ociVersion", "1.0.2"}, {"root", {{"path", "rootfs"}}}}));

  auto full = ParseOciSpec(kFullSpec);
  ASSERT_TRUE(full);
  json written = json::parse(SerializeOciSpec(*full));
  EXPECT_EQ(written["process"]["consoleSize"], (json{{"height", 24}, {"width", 80}}));
  EXPECT_EQ(written["process"]["oomScoreAdj"], -999);
  EXPECT_EQ(written["linux"]["resources"]["memory"]["disableOOMKiller"], false);
  EXPECT_EQ(written["linux"]["resources"]["blockIO"]["throttleReadIOPSDevice"][0]["rate"], 1000);
  EXPECT_EQ(written["linux"]["uidMappings"][0]["containerID"], 0);
  EXPECT_EQ(written["linux"]["seccomp"]["syscalls"][1]["args"][1]["valueTwo"], 8);
  EXPECT_FALSE(written["linux"]["seccomp"]["syscalls"][1]["args"][0].contains("valueTwo"));
  EXPECT_FALSE(written["linux"]["devices"][1].contains("minor"));
  EXPECT_FALSE(written["mounts"][1].contains("type"));
  EXPECT_FALSE(written["root"].contains("readonly"));
  EXPECT_EQ(written["linux"]["rootfsPropagation"], "rslave");
}

TEST(OciSerialize, PresentButEmptyOptionalsStayPresent) {
  Spec spec = DefaultSpec({"sh"}, false);
  spec.process->capabilities = Capabilities{};  // present, empty: no capabilities at all
  spec.linux->resources->memory = MemoryResources{};
  spec.linux->seccomp = Seccomp{.default_action = "SCMP_ACT_ALLOW"};
  auto parsed = ParseOciSpec(SerializeOciSpec(spec));
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  EXPECT_EQ(*parsed, spec);
  EXPECT_TRUE(parsed->process->capabilities.has_value());
}

TEST(OciSerialize, InvalidUtf8DoesNotThrow) {
  Spec spec = DefaultSpec({"echo", "\xff\xfe"}, false);
  std::string text;
  ASSERT_NO_THROW(text = SerializeOciSpec(spec));
  auto parsed = ParseOciSpec(text);
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  EXPECT_EQ(parsed->process->args[1], "\xef\xbf\xbd\xef\xbf\xbd");  // U+FFFD twice
}

// ---------------------------------------------------------------------------------
// Name tables

TEST(OciNames, Capabilities) {
  EXPECT_EQ(CapabilityNumber("CAP_CHOWN"), 0);
  EXPECT_EQ(CapabilityNumber("CAP_NET_BIND_SERVICE"), 10);
  EXPECT_EQ(CapabilityNumber("CAP_SYS_ADMIN"), 21);
  EXPECT_EQ(CapabilityNumber("CAP_AUDIT_READ"), 37);
  EXPECT_EQ(CapabilityNumber("CAP_CHECKPOINT_RESTORE"), 40);
  EXPECT_EQ(CapabilityNumber("cap_chown"), std::nullopt);
  EXPECT_EQ(CapabilityNumber("CHOWN"), std::nullopt);
  EXPECT_EQ(CapabilityNumber(""), std::nullopt);
}

TEST(OciNames, Rlimits) {
  EXPECT_EQ(RlimitResource("RLIMIT_AS"), RLIMIT_AS);
  EXPECT_EQ(RlimitResource("RLIMIT_NOFILE"), RLIMIT_NOFILE);
  EXPECT_EQ(RlimitResource("RLIMIT_RTTIME"), RLIMIT_RTTIME);
  EXPECT_EQ(RlimitResource("RLIMIT_STACK"), RLIMIT_STACK);
  EXPECT_EQ(RlimitResource("rlimit_nofile"), std::nullopt);
  EXPECT_EQ(RlimitResource("NOFILE"), std::nullopt);
}

}  // namespace
}  // namespace hull::oci
