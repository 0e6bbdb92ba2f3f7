// engine/security.h: each privileged test forks a child that applies a plan
// and reports what it sees (errnos, ids, /proc/self/status) through a pipe;
// the parent asserts. The compile/plan tests need no privileges.
#include "engine/security.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "hull/core/fd.h"
#include "hull/core/syscall.h"
#include "testlib.h"

namespace hull::engine {
namespace {

#define SKIP_UNLESS_ROOT() \
  HULL_REQUIRE_ROOT("applies capabilities, rlimits, user and seccomp in forked children")

// ---- child harness ------------------------------------------------------------

struct ChildResult {
  int wait_status = 0;
  std::string output;
  // "key=value" lines written by the child and "Key:\tvalue" lines of
  // /proc/<pid>/status (or of a program's output), values trimmed.
  std::map<std::string, std::string> values;

  bool exited_ok() const { return WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0; }
  std::string Get(const std::string& key) const {
    auto it = values.find(key);
    return it == values.end() ? "<missing " + key + ">" : it->second;
  }
};

std::string Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

std::map<std::string, std::string> ParseLines(std::string_view text) {
  std::map<std::string, std::string> values;
  while (!text.empty()) {
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    size_t colon = line.find(":\t");
    size_t equals = line.find('=');
    if (colon != std::string_view::npos && (equals == std::string_view::npos || colon < equals)) {
      values[std::string(line.substr(0, colon))] = Trim(line.substr(colon + 2));
    } else if (equals != std::string_view::npos) {
      values[std::string(line.substr(0, equals))] = Trim(line.substr(equals + 1));
    }
  }
  return values;
}

// Forks; the child runs body(out_fd) and _exits with its return value. Output
// written to out_fd is collected. The child may also exec with out_fd as its
// stdout.
ChildResult RunInChild(const std::function<int(int out_fd)>& body) {
  ChildResult result;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return result;
  }
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  pid_t pid = ::fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    return result;
  }
  if (pid == 0) {
    ::close(fds[0]);
    ::_exit(body(fds[1]));
  }
  write_end.reset();
  auto output = ReadAll(read_end.get());
  EXPECT_TRUE(output.has_value());
  if (output) result.output = *output;
  EXPECT_EQ(RetryEintr([&] { return ::waitpid(pid, &result.wait_status, 0); }), pid);
  result.values = ParseLines(result.output);
  return result;
}

// Child-side reporting helpers.
void Report(int fd, const char* key, long value) {
  char line[128];
  int n = std::snprintf(line, sizeof line, "%s=%ld\n", key, value);
  (void)!::write(fd, line, static_cast<size_t>(n));
}

void ReportText(int fd, const char* key, const char* value) {
  char line[256];
  int n = std::snprintf(line, sizeof line, "%s=%s\n", key, value);
  (void)!::write(fd, line, static_cast<size_t>(n));
}

// Copies a file (e.g. /proc/self/status) into the report.
void ReportFile(int fd, const char* path) {
  int in = ::open(path, O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    Report(fd, "open_errno", errno);
    return;
  }
  char buf[4096];
  ssize_t n;
  while ((n = ::read(in, buf, sizeof buf)) > 0) (void)!::write(fd, buf, static_cast<size_t>(n));
  ::close(in);
}

// Runs a syscall and reports errno (0 on success).
void ReportErrno(int fd, const char* key, long rc) { Report(fd, key, rc < 0 ? errno : 0); }

// Replaces the child with `/bin/cat files...` writing to out_fd.
int ExecCat(int out_fd, const char* file1, const char* file2 = nullptr) {
  if (::dup2(out_fd, STDOUT_FILENO) < 0) return 120;
  const char* argv[] = {"/bin/cat", file1, file2, nullptr};
  char* const envp[] = {nullptr};
  ::execve("/bin/cat", const_cast<char* const*>(argv), envp);
  return 121;
}

std::string Hex16(uint64_t mask) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(mask));
  return buf;
}

constexpr uint64_t Bit(int cap) { return uint64_t{1} << cap; }

// ---- spec builders ------------------------------------------------------------

oci::SeccompSyscall Rule(std::vector<std::string> names, std::string action,
                         std::optional<uint32_t> errno_ret = std::nullopt,
                         std::vector<oci::SeccompArg> args = {}) {
  oci::SeccompSyscall rule;
  rule.names = std::move(names);
  rule.action = std::move(action);
  rule.errno_ret = errno_ret;
  rule.args = std::move(args);
  return rule;
}

oci::SeccompArg Arg(uint32_t index, std::string op, uint64_t value, uint64_t value_two = 0) {
  oci::SeccompArg arg;
  arg.index = index;
  arg.op = std::move(op);
  arg.value = value;
  arg.value_two = value_two;
  return arg;
}

oci::Seccomp Profile(std::string default_action, std::vector<oci::SeccompSyscall> syscalls) {
  oci::Seccomp seccomp;
  seccomp.default_action = std::move(default_action);
  seccomp.architectures = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"};
  seccomp.syscalls = std::move(syscalls);
  return seccomp;
}

SeccompProgram MustCompile(const oci::Seccomp& spec) {
  auto program = CompileSeccomp(spec);
  EXPECT_TRUE(program.has_value()) << program.error().ToString();
  return program ? *program : SeccompProgram{};
}

oci::Capabilities AllSets(std::vector<std::string> names) {
  oci::Capabilities caps;
  caps.bounding = caps.effective = caps.permitted = caps.inheritable = caps.ambient = names;
  return caps;
}

// The process section `runc spec` writes (runc 1.1.2+ lists no inheritable
// capabilities since CVE-2022-29162).
oci::Process RuncDefaultProcess() {
  oci::Process process;
  process.args = {"sh"};
  oci::Capabilities caps;
  std::vector<std::string> names = {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"};
  caps.bounding = caps.effective = caps.permitted = caps.ambient = names;
  process.capabilities = caps;
  process.rlimits = {oci::Rlimit{"RLIMIT_NOFILE", 1024, 1024}};
  process.no_new_privileges = true;
  return process;
}

// ---- seccomp: compiling (no privileges needed) ------------------------------------

TEST(CompileSeccomp, UnknownActionNamesTheEntry) {
  auto spec = Profile("SCMP_ACT_ALLOW",
                      {Rule({"mkdir"}, "SCMP_ACT_ERRNO"), Rule({"rmdir"}, "SCMP_ACT_BOGUS")});
  auto program = CompileSeccomp(spec);
  ASSERT_FALSE(program.has_value());
  EXPECT_EQ(program.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(
      program.error().ToString().find("linux.seccomp.syscalls[1]: unknown action `SCMP_ACT_BOGUS`"),
      std::string::npos)
      << program.error().ToString();
}

TEST(CompileSeccomp, UnknownDefaultActionIsAnError) {
  auto program = CompileSeccomp(Profile("SCMP_ACT_NOPE", {}));
  ASSERT_FALSE(program.has_value());
  EXPECT_NE(program.error().ToString().find("linux.seccomp.defaultAction: unknown action"),
            std::string::npos)
      << program.error().ToString();
}

TEST(CompileSeccomp, NotifyIsUnimplemented) {
  auto program = CompileSeccomp(Profile("SCMP_ACT_ALLOW", {Rule({"mkdir"}, "SCMP_ACT_NOTIFY")}));
  ASSERT_FALSE(program.has_value());
  EXPECT_EQ(program.error().code(), ErrorCode::kUnimplemented);
  EXPECT_NE(program.error().ToString().find("linux.seccomp.syscalls[0]: action SCMP_ACT_NOTIFY"),
            std::string::npos)
      << program.error().ToString();
}

TEST(CompileSeccomp, BadEntriesAreNamed) {
  struct Case {
    oci::Seccomp spec;
    std::string expected;
  };
  oci::Seccomp bad_arch = Profile("SCMP_ACT_ALLOW", {});
  bad_arch.architectures.push_back("SCMP_ARCH_VAX");
  oci::Seccomp bad_flag = Profile("SCMP_ACT_ALLOW", {});
  bad_flag.flags = {"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_BOGUS"};
  Case cases[] = {
      {bad_arch, "linux.seccomp.architectures[3]: unknown architecture `SCMP_ARCH_VAX`"},
      {bad_flag, "linux.seccomp.flags[1]: unknown flag `SECCOMP_FILTER_FLAG_BOGUS`"},
      {Profile("SCMP_ACT_ALLOW",
               {Rule({"socket"}, "SCMP_ACT_ERRNO", std::nullopt, {Arg(0, "SCMP_CMP_ALMOST", 1)})}),
       "linux.seccomp.syscalls[0].args[0]: unknown operator `SCMP_CMP_ALMOST`"},
      {Profile("SCMP_ACT_ALLOW",
               {Rule({"socket"}, "SCMP_ACT_ERRNO", std::nullopt, {Arg(6, "SCMP_CMP_EQ", 1)})}),
       "linux.seccomp.syscalls[0].args[0]: index 6 is out of range"},
      {Profile("SCMP_ACT_ERRNO", {Rule({"read"}, "SCMP_ACT_ALLOW", EPERM)}),
       "linux.seccomp.syscalls[0]: errnoRet is not supported with action `SCMP_ACT_ALLOW`"},
      {Profile("SCMP_ACT_ALLOW", {Rule({}, "SCMP_ACT_ERRNO")}),
       "linux.seccomp.syscalls[0]: names must not be empty"},
  };
  for (const Case& c : cases) {
    auto program = CompileSeccomp(c.spec);
    ASSERT_FALSE(program.has_value()) << c.expected;
    EXPECT_EQ(program.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(program.error().ToString().find(c.expected), std::string::npos)
        << program.error().ToString();
  }
}

TEST(CompileSeccomp, FlagsBecomeFilterFlags) {
  auto spec = Profile("SCMP_ACT_ALLOW", {Rule({"mkdir"}, "SCMP_ACT_ERRNO")});
  spec.flags = {"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                "SECCOMP_FILTER_FLAG_TSYNC"};
  SeccompProgram program = MustCompile(spec);
  EXPECT_EQ(program.flags,
            SECCOMP_FILTER_FLAG_LOG | SECCOMP_FILTER_FLAG_SPEC_ALLOW | SECCOMP_FILTER_FLAG_TSYNC);
  EXPECT_FALSE(program.empty());
}

TEST(CompileSeccomp, UnknownSyscallNamesAreSkipped) {
  auto program = CompileSeccomp(Profile(
      "SCMP_ACT_ALLOW", {Rule({"hull_no_such_syscall", "mkdir"}, "SCMP_ACT_ERRNO", EACCES)}));
  ASSERT_TRUE(program.has_value()) << program.error().ToString();
  EXPECT_FALSE(program->empty());
}

TEST(CompileSeccomp, RulesRepeatingTheDefaultActionAreSkipped) {
  // libseccomp alone refuses these (EACCES); runc drops them.
  auto program = CompileSeccomp(Profile("SCMP_ACT_ALLOW", {Rule({"read"}, "SCMP_ACT_ALLOW")}));
  ASSERT_TRUE(program.has_value()) << program.error().ToString();
}

TEST(InstallSeccomp, EmptyProgramIsANoOp) { EXPECT_EQ(InstallSeccomp(SeccompProgram{}), 0); }

// ---- seccomp: enforced in a child ---------------------------------------------------

TEST(SeccompEnforced, DefaultAllowDeniesListedSyscallWithErrnoRet) {
  SKIP_UNLESS_ROOT();
  // The unknown name is skipped; the other rules still apply.
  SeccompProgram program = MustCompile(
      Profile("SCMP_ACT_ALLOW",
              {Rule({"hull_no_such_syscall", "mkdir", "mkdirat"}, "SCMP_ACT_ERRNO", EACCES)}));
  char dir[] = "/tmp/hull-security-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::string target = std::string(dir) + "/denied";
  ChildResult child = RunInChild([&](int out) {
    Report(out, "install", InstallSeccomp(program));
    ReportErrno(out, "mkdir", ::mkdir(target.c_str(), 0755));
    ReportErrno(out, "mkdirat", ::syscall(SYS_mkdirat, AT_FDCWD, target.c_str(), 0755));
    ReportErrno(out, "getpid", ::syscall(SYS_getpid));
    ReportFile(out, "/proc/self/status");  // open and read still work
    return 0;
  });
  EXPECT_TRUE(child.exited_ok()) << child.wait_status;
  EXPECT_EQ(child.Get("install"), "0");
  EXPECT_EQ(child.Get("mkdir"), std::to_string(EACCES));
  EXPECT_EQ(child.Get("mkdirat"), std::to_string(EACCES));
  EXPECT_EQ(child.Get("getpid"), "0");
  EXPECT_EQ(child.Get("Seccomp"), "2");
  EXPECT_FALSE(PathExists(target));
  ::rmdir(dir);
}

TEST(SeccompEnforced, DefaultErrnoWithAllowList) {
  SKIP_UNLESS_ROOT();
  SeccompProgram program = MustCompile(Profile(
      "SCMP_ACT_ERRNO", {Rule({"write", "exit", "exit_group", "getpid"}, "SCMP_ACT_ALLOW")}));
  ChildResult child = RunInChild([&](int out) {
    long pid_before = ::syscall(SYS_getpid);
    Report(out, "install", InstallSeccomp(program));
    long pid_after = ::syscall(SYS_getpid);
    Report(out, "getpid_same", pid_after == pid_before);
    ReportErrno(out, "getppid", ::syscall(SYS_getppid));
    ReportErrno(out, "open", ::syscall(SYS_openat, AT_FDCWD, "/proc/self/status", O_RDONLY));
    return 0;
  });
  EXPECT_TRUE(child.exited_ok()) << child.wait_status;
  EXPECT_EQ(child.Get("install"), "0");
  EXPECT_EQ(child.Get("getpid_same"), "1");
  EXPECT_EQ(child.Get("getppid"), std::to_string(EPERM));  // errnoRet defaults to EPERM
  EXPECT_EQ(child.Get("open"), std::to_string(EPERM));
}

TEST(SeccompEnforced, DefaultErrnoRetIsUsed) {
  SKIP_UNLESS_ROOT();
  auto spec = Profile("SCMP_ACT_ERRNO", {Rule({"write", "exit", "exit_group"}, "SCMP_ACT_ALLOW")});
  spec.default_errno_ret = ENOSYS;
  SeccompProgram program = MustCompile(spec);
  ChildResult child = RunInChild([&](int out) {
    Report(out, "install", InstallSeccomp(program));
    ReportErrno(out, "getppid", ::syscall(SYS_getppid));
    return 0;
  });
  EXPECT_TRUE(child.exited_ok()) << child.wait_status;
  EXPECT_EQ(child.Get("getppid"), std::to_string(ENOSYS));
}

TEST(SeccompEnforced, ArgumentConditionDeniesOnlyMatchingCalls) {
  SKIP_UNLESS_ROOT();
  SeccompProgram program = MustCompile(Profile(
      "SCMP_ACT_ALLOW",
      {Rule({"socket"}, "SCMP_ACT_ERRNO", EAFNOSUPPORT, {Arg(0, "SCMP_CMP_EQ", AF_INET)})}));
  ChildResult child = RunInChild([&](int out) {
    Report(out, "install", InstallSeccomp(program));
    ReportErrno(out, "inet", ::socket(AF_INET, SOCK_STREAM, 0));
    ReportErrno(out, "inet6", ::socket(AF_INET6, SOCK_STREAM, 0));
    ReportErrno(out, "unix", ::socket(AF_UNIX, SOCK_STREAM, 0));
    return 0;
  });
  EXPECT_TRUE(child.exited_ok()) << child.wait_status;
  EXPECT_EQ(child.Get("inet"), std::to_string(EAFNOSUPPORT));
  EXPECT_NE(child.Get("inet6"), std::to_string(EAFNOSUPPORT));
  EXPECT_EQ(child.Get("unix"), "0");
}

TEST(SeccompEnforced, ConditionsOnTheSameArgumentAreOred) {
  SKIP_UNLESS_ROOT();
  SeccompProgram program = MustCompile(Profile(
      "SCMP_ACT_ALLOW", {Rule({"socket"}, "SCMP_ACT_ERRNO", EAFNOSUPPORT,
                              {Arg(0, "SCMP_CMP_EQ", AF_INET), Arg(0, "SCMP_CMP_EQ", AF_INET6)})}));
  ChildResult child = RunInChild([&](int out) {
    Report(out, "install", InstallSeccomp(program));
    ReportErrno(out, "inet", ::socket(AF_INET, SOCK_STREAM, 0));
    ReportErrno(out, "inet6", ::socket(AF_INET6, SOCK_STREAM, 0));
    ReportErrno(out, "unix", ::socket(AF_UNIX, SOCK_STREAM, 0));
    return 0;
  });
  EXPECT_TRUE(child.exited_ok()) << child.wait_status;
  EXPECT_EQ(child.Get("inet"), std::to_string(EAFNOSUPPORT));
  EXPECT_EQ(child.Get("inet6"), std::to_string(EAFNOSUPPORT));
  EXPECT_EQ(child.Get("unix"), "0");
}

TEST(SeccompEnforced, ConditionsOnDifferentArgumentsAreAnded) {
  SKIP_UNLESS_ROOT();
  SeccompProgram program = MustCompile(Profile(
      "SCMP_ACT_ALLOW", {Rule({"socket"}, "SCMP_ACT_ERRNO", EPROTONOSUPPORT,
                              {Arg(0, "SCMP_CMP_EQ", AF_UNIX),
                               // Masked: match SOCK_DGRAM whatever SOCK_CLOEXEC/NONBLOCK say.
                               Arg(1, "SCMP_CMP_MASKED_EQ", 0xf, SOCK_DGRAM)})}));
  ChildResult child = RunInChild([&](int out) {
    Report(out, "install", InstallSeccomp(program));
    ReportErrno(out, "unix_dgram", ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ReportErrno(out, "unix_stream", ::socket(AF_UNIX, SOCK_STREAM, 0));
    ReportErrno(out, "inet_dgram", ::socket(AF_INET, SOCK_DGRAM, 0));
    return 0;
  });
  EXPECT_TRUE(child.exited_ok()) << child.wait_status;
  EXPECT_EQ(child.Get("unix_dgram"), std::to_string(EPROTONOSUPPORT));
  EXPECT_EQ(child.Get("unix_stream"), "0");
  EXPECT_NE(child.Get("inet_dgram"), std::to_string(EPROTONOSUPPORT));
}

// ---- capabilities -------------------------------------------------------------------

TEST(PlanCapabilities, AbsentMeansNoCapabilities) {
  auto plan = PlanCapabilities(std::nullopt);
  ASSERT_TRUE(plan.has_value()) << plan.error().ToString();
  EXPECT_EQ(plan->bounding | plan->effective | plan->permitted | plan->inheritable | plan->ambient,
            0u);
  auto last_cap = ReadFile("/proc/sys/kernel/cap_last_cap");
  ASSERT_TRUE(last_cap.has_value());
  EXPECT_EQ(plan->last_cap, std::stoi(*last_cap));
}

TEST(PlanCapabilities, NamesBecomeBits) {
  oci::Capabilities caps;
  caps.bounding = {"CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"};
  caps.permitted = {"CAP_KILL", "CAP_CHOWN"};
  caps.effective = {"CAP_KILL"};
  caps.inheritable = {"CAP_CHOWN"};
  caps.ambient = {"CAP_CHOWN"};
  auto plan = PlanCapabilities(caps);
  ASSERT_TRUE(plan.has_value()) << plan.error().ToString();
  EXPECT_EQ(plan->bounding, Bit(CAP_KILL) | Bit(CAP_NET_BIND_SERVICE) | Bit(CAP_SYS_ADMIN));
  EXPECT_EQ(plan->permitted, Bit(CAP_KILL) | Bit(CAP_CHOWN));
  EXPECT_EQ(plan->effective, Bit(CAP_KILL));
  EXPECT_EQ(plan->inheritable, Bit(CAP_CHOWN));
  EXPECT_EQ(plan->ambient, Bit(CAP_CHOWN));
}

TEST(PlanCapabilities, UnknownNameIsAnError) {
  oci::Capabilities caps;
  caps.permitted = {"CAP_KILL", "CAP_BOGUS"};
  auto plan = PlanCapabilities(caps);
  ASSERT_FALSE(plan.has_value());
  EXPECT_EQ(plan.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(plan.error().ToString().find(
                "process.capabilities.permitted[1]: unknown capability `CAP_BOGUS`"),
            std::string::npos)
      << plan.error().ToString();
}

TEST(PlanCapabilities, EffectiveOutsidePermittedIsAnError) {
  oci::Capabilities caps;
  caps.permitted = {"CAP_KILL"};
  caps.effective = {"CAP_KILL", "CAP_CHOWN"};
  auto plan = PlanCapabilities(caps);
  ASSERT_FALSE(plan.has_value());
  EXPECT_NE(plan.error().ToString().find("process.capabilities.effective: CAP_CHOWN"),
            std::string::npos)
      << plan.error().ToString();
}

TEST(PlanCapabilities, UnraisableAmbientCapabilitiesAreDropped) {
  auto plan = PlanCapabilities(RuncDefaultProcess().capabilities);
  ASSERT_TRUE(plan.has_value()) << plan.error().ToString();
  EXPECT_EQ(plan->ambient, 0u);  // runc's default lists no inheritable capabilities
  EXPECT_EQ(plan->permitted, Bit(CAP_AUDIT_WRITE) | Bit(CAP_KILL) | Bit(CAP_NET_BIND_SERVICE));
}

TEST(CapabilitiesApplied, StatusShowsThePlannedSets) {
  SKIP_UNLESS_ROOT();
  auto plan = PlanCapabilities(AllSets({"CAP_KILL", "CAP_NET_BIND_SERVICE"}));
  ASSERT_TRUE(plan.has_value()) << plan.error().ToString();
  ChildResult child = RunInChild([&](int out) {
    Report(out, "bounding", DropBoundingSet(*plan));
    Report(out, "caps", ApplyCapabilities(*plan));
    ReportFile(out, "/proc/self/status");
    return 0;
  });
  EXPECT_TRUE(child.exited_ok()) << child.wait_status;
  EXPECT_EQ(child.Get("bounding"), "0");
  EXPECT_EQ(child.Get("caps"), "0");
  const std::string expected = Hex16(Bit(CAP_KILL) | Bit(CAP_NET_BIND_SERVICE));
  EXPECT_EQ(expected, "0000000000000420");
  EXPECT_EQ(child.Get("CapInh"), expected);
  EXPECT_EQ(child.Get("CapPrm"), expected);
  EXPECT_EQ(child.Get("CapEff"), expected);
  EXPECT_EQ(child.Get("CapBnd"), expected);
  EXPECT_EQ(child.Get("CapAmb"), expected);
}

TEST(CapabilitiesApplied, FailedStepIsReported) {
  SKIP_UNLESS_ROOT();
  // An inheritable capability outside the (already dropped) bounding set:
  // capset refuses it.
  oci::Capabilities caps;
  caps.bounding = {"CAP_KILL"};
  caps.inheritable = {"CAP_CHOWN"};
  oci::Process process;
  process.capabilities = caps;
  auto plan = PlanProcessSecurity(process, std::nullopt);
  ASSERT_TRUE(plan.has_value()) << plan.error().ToString();
  ChildResult child = RunInChild([&](int out) {
    const char* step = "none";
    Report(out, "rc", ApplyProcessSecurity(*plan, &step));
    ReportText(out, "step", step);
    return 0;
  });
  EXPECT_TRUE(child.exited_ok()) << child.wait_status;
  EXPECT_EQ(child.Get("rc"), std::to_string(EPERM));
  EXPECT_EQ(child.Get("step"), "capset");
}

// ---- user -------------------------------------------------------------------------------

TEST(UserApplied, IdsGroupsUmaskAndCapabilitiesAsPlanned) {
  SKIP_UNLESS_ROOT();
  oci::User user;
  user.uid = 65534;
  user.gid = 65534;
  user.additional_gids = {1, 2};
  user.umask = 027;
  UserPlan user_plan = PlanUser(user);
  auto caps = PlanCapabilities(AllSets({"CAP_KILL", "CAP_NET_BIND_SERVICE"}));
  ASSERT_TRUE(caps.has_value()) << caps.error().ToString();
  ChildResult child = RunInChild([&](int out) {
    Report(out, "bounding", DropBoundingSet(*caps));
    const char* step = "none";
    Report(out, "user", ApplyUser(user_plan, &step));
    ReportText(out, "user_step", step);
    Report(out, "caps", ApplyCapabilities(*caps, &step));
    ReportText(out, "caps_step", step);
    Report(out, "getuid", ::getuid());
    Report(out, "geteuid", ::geteuid());
    Report(out, "getgid", ::getgid());
    Report(out, "getegid", ::getegid());
    gid_t groups[8];
    int n = ::getgroups(8, groups);
    Report(out, "ngroups", n);
    for (int i = 0; i < n && i < 8; ++i) {
      char key[16];
      std::snprintf(key, sizeof key, "group%d", i);
      Report(out, key, groups[i]);
    }
    Report(out, "keepcaps", ::prctl(PR_GET_KEEPCAPS));
    ReportFile(out, "/proc/self/status");
    return 0;
  });
  EXPECT_TRUE(child.exited_ok()) << child.wait_status;
  EXPECT_EQ(child.Get("bounding"), "0");
  EXPECT_EQ(child.Get("user"), "0") << child.Get("user_step");
  EXPECT_EQ(child.Get("caps"), "0") << child.Get("caps_step");
  EXPECT_EQ(child.Get("getuid"), "65534");
  EXPECT_EQ(child.Get("geteuid"), "65534");
  EXPECT_EQ(child.Get("getgid"), "65534");
  EXPECT_EQ(child.Get("getegid"), "65534");
  EXPECT_EQ(child.Get("Uid"), "65534\t65534\t65534\t65534");
  EXPECT_EQ(child.Get("Gid"), "65534\t65534\t65534\t65534");
  EXPECT_EQ(child.Get("ngroups"), "2");
  EXPECT_EQ(child.Get("group0"), "1");
  EXPECT_EQ(child.Get("group1"), "2");
  EXPECT_EQ(child.Get("Umask"), "0027");
  EXPECT_EQ(child.Get("keepcaps"), "0");
  const std::string expected = Hex16(Bit(CAP_KILL) | Bit(CAP_NET_BIND_SERVICE));
  EXPECT_EQ(child.Get("CapPrm"), expected);
  EXPECT_EQ(child.Get("CapEff"), expected);
  EXPECT_EQ(child.Get("CapInh"), expected);
  EXPECT_EQ(child.Get("CapBnd"), expected);
  EXPECT_EQ(child.Get("CapAmb"), expected);
}

TEST(UserApplied, AmbientCapabilitiesSurviveExecAsNonRoot) {
  SKIP_UNLESS_ROOT();
  oci::Process process;
  process.user.uid = 65534;
  process.user.gid = 65534;
  oci::Capabilities caps;
  caps.bounding = {"CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"};
  caps.permitted = caps.effective = caps.inheritable = {"CAP_KILL", "CAP_NET_BIND_SERVICE"};
  caps.ambient = {"CAP_NET_BIND_SERVICE"};
  process.capabilities = caps;
  auto plan = PlanProcessSecurity(process, std::nullopt);
  ASSERT_TRUE(plan.has_value()) << plan.error().ToString();
  ChildResult child = RunInChild([&](int out) {
    const char* step = "none";
    if (int err = ApplyProcessSecurity(*plan, &step); err != 0) {
      Report(out, "rc", err);
      ReportText(out, "step", step);
      return 1;
    }
    return ExecCat(out, "/proc/self/status");
  });
  ASSERT_TRUE(child.exited_ok()) << child.output;
  // A non-root execve without file capabilities keeps exactly the ambient set.
  const std::string ambient = Hex16(Bit(CAP_NET_BIND_SERVICE));
  EXPECT_EQ(child.Get("CapAmb"), ambient);
  EXPECT_EQ(child.Get("CapPrm"), ambient);
  EXPECT_EQ(child.Get("CapEff"), ambient);
  EXPECT_EQ(child.Get("CapInh"), Hex16(Bit(CAP_KILL) | Bit(CAP_NET_BIND_SERVICE)));
  EXPECT_EQ(child.Get("CapBnd"), Hex16(Bit(CAP_KILL) | Bit(CAP_NET_BIND_SERVICE) | Bit(CAP_CHOWN)));
}

// ---- rlimits ----------------------------------------------------------------------------

TEST(PlanRlimits, BadEntriesAreNamed) {
  struct Case {
    std::vector<oci::Rlimit> rlimits;
    std::string expected;
  };
  Case cases[] = {
      {{{"RLIMIT_NOFILE", 10, 10}, {"RLIMIT_BOGUS", 1, 1}},
       "process.rlimits[1]: unknown type `RLIMIT_BOGUS`"},
      {{{"RLIMIT_NOFILE", 10, 10}, {"RLIMIT_NOFILE", 20, 20}},
       "process.rlimits[1]: duplicate type `RLIMIT_NOFILE`"},
      {{{"RLIMIT_CORE", 10, 20}}, "process.rlimits[0]: RLIMIT_CORE soft limit 20 is above"},
  };
  for (const Case& c : cases) {
    auto plan = PlanRlimits(c.rlimits);
    ASSERT_FALSE(plan.has_value()) << c.expected;
    EXPECT_EQ(plan.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(plan.error().ToString().find(c.expected), std::string::npos)
        << plan.error().ToString();
  }
}

TEST(PlanRlimits, InfinityStaysInfinity) {
  auto plan = PlanRlimits({{"RLIMIT_CORE", UINT64_MAX, UINT64_MAX}});
  ASSERT_TRUE(plan.has_value()) << plan.error().ToString();
  ASSERT_EQ(plan->size(), 1u);
  EXPECT_EQ((*plan)[0].resource, RLIMIT_CORE);
  EXPECT_EQ((*plan)[0].limit.rlim_cur, RLIM_INFINITY);
  EXPECT_EQ((*plan)[0].limit.rlim_max, RLIM_INFINITY);
}

TEST(RlimitsApplied, NofileIsSeenByGetrlimit) {
  SKIP_UNLESS_ROOT();
  auto plan = PlanRlimits({{"RLIMIT_NOFILE", 2048, 1024}});
  ASSERT_TRUE(plan.has_value()) << plan.error().ToString();
  ChildResult child = RunInChild([&](int out) {
    Report(out, "apply", ApplyRlimits(*plan));
    struct rlimit limit {};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    Report(out, "soft", static_cast<long>(limit.rlim_cur));
    Report(out, "hard", static_cast<long>(limit.rlim_max));
    return 0;
  });
  EXPECT_TRUE(child.exited_ok()) << child.wait_status;
  EXPECT_EQ(child.Get("apply"), "0");
  EXPECT_EQ(child.Get("soft"), "1024");
  EXPECT_EQ(child.Get("hard"), "2048");
}

// ---- no_new_privs ---------------------------------------------------------------------

TEST(NoNewPrivileges, StatusShowsIt) {
  SKIP_UNLESS_ROOT();
  ChildResult child = RunInChild([&](int out) {
    Report(out, "rc", SetNoNewPrivileges());
    ReportFile(out, "/proc/self/status");
    return 0;
  });
  EXPECT_TRUE(child.exited_ok()) << child.wait_status;
  EXPECT_EQ(child.Get("rc"), "0");
  EXPECT_EQ(child.Get("NoNewPrivs"), "1");
}

// ---- everything together ------------------------------------------------------------

TEST(ProcessSecurity, RuncDefaultProcessLooksAsUnderRunc) {
  SKIP_UNLESS_ROOT();
  auto plan = PlanProcessSecurity(RuncDefaultProcess(), std::nullopt);
  ASSERT_TRUE(plan.has_value()) << plan.error().ToString();
  EXPECT_TRUE(plan->seccomp.empty());
  ChildResult child = RunInChild([&](int out) {
    const char* step = "none";
    if (int err = ApplyProcessSecurity(*plan, &step); err != 0) {
      Report(out, "rc", err);
      ReportText(out, "step", step);
      return 1;
    }
    return ExecCat(out, "/proc/self/status", "/proc/self/limits");
  });
  ASSERT_TRUE(child.exited_ok()) << child.output;
  // What `cat /proc/self/status` prints in a `runc spec` container.
  const std::string caps = Hex16(Bit(CAP_AUDIT_WRITE) | Bit(CAP_KILL) | Bit(CAP_NET_BIND_SERVICE));
  EXPECT_EQ(caps, "0000000020000420");
  EXPECT_EQ(child.Get("CapInh"), "0000000000000000");
  EXPECT_EQ(child.Get("CapPrm"), caps);
  EXPECT_EQ(child.Get("CapEff"), caps);
  EXPECT_EQ(child.Get("CapBnd"), caps);
  EXPECT_EQ(child.Get("CapAmb"), "0000000000000000");
  EXPECT_EQ(child.Get("NoNewPrivs"), "1");
  EXPECT_EQ(child.Get("Seccomp"), "0");
  EXPECT_EQ(child.Get("Uid"), "0\t0\t0\t0");
  EXPECT_NE(child.output.find("Max open files            1024                 1024"),
            std::string::npos)
      << child.output;
}

// A filter installed without no_new_privs needs CAP_SYS_ADMIN, so it must be
// loaded before the user switch and the capability drop.
TEST(ProcessSecurity, SeccompWithoutNoNewPrivsIsInstalledWhilePrivileged) {
  SKIP_UNLESS_ROOT();
  oci::Process process = RuncDefaultProcess();
  process.no_new_privileges = false;
  process.user.uid = 65534;
  process.user.gid = 65534;
  auto plan = PlanProcessSecurity(
      process, Profile("SCMP_ACT_ALLOW", {Rule({"mkdir", "mkdirat"}, "SCMP_ACT_ERRNO")}));
  ASSERT_TRUE(plan.has_value()) << plan.error().ToString();
  ChildResult child = RunInChild([&](int out) {
    const char* step = "none";
    if (int err = ApplyProcessSecurity(*plan, &step); err != 0) {
      Report(out, "rc", err);
      ReportText(out, "step", step);
      return 1;
    }
    return ExecCat(out, "/proc/self/status");
  });
  ASSERT_TRUE(child.exited_ok()) << child.output;
  EXPECT_EQ(child.Get("Seccomp"), "2");
  EXPECT_EQ(child.Get("NoNewPrivs"), "0");
  EXPECT_EQ(child.Get("Uid"), "65534\t65534\t65534\t65534");
  // Non-root, no ambient capabilities: nothing survives the execve.
  EXPECT_EQ(child.Get("CapPrm"), "0000000000000000");
  EXPECT_EQ(child.Get("CapEff"), "0000000000000000");
  EXPECT_EQ(child.Get("CapBnd"), "0000000020000420");
}

TEST(ProcessSecurity, SeccompWithNoNewPrivsIsInstalledLast) {
  SKIP_UNLESS_ROOT();
  oci::Process process = RuncDefaultProcess();
  process.user.uid = 65534;
  process.user.gid = 65534;
  // Denies the syscalls of the steps before it: installing it any earlier
  // would make ApplyProcessSecurity fail.
  auto plan = PlanProcessSecurity(
      process, Profile("SCMP_ACT_ALLOW",
                       {Rule({"setresuid", "setresgid", "setgroups", "capset", "prlimit64"},
                             "SCMP_ACT_ERRNO", EACCES)}));
  ASSERT_TRUE(plan.has_value()) << plan.error().ToString();
  ChildResult child = RunInChild([&](int out) {
    const char* step = "none";
    if (int err = ApplyProcessSecurity(*plan, &step); err != 0) {
      Report(out, "rc", err);
      ReportText(out, "step", step);
      return 1;
    }
    return ExecCat(out, "/proc/self/status");
  });
  ASSERT_TRUE(child.exited_ok()) << child.output;
  EXPECT_EQ(child.Get("Seccomp"), "2");
  EXPECT_EQ(child.Get("NoNewPrivs"), "1");
  EXPECT_EQ(child.Get("Uid"), "65534\t65534\t65534\t65534");
}

}  // namespace
}  // namespace hull::engine
