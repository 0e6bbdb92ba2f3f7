#include "testlib.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "hull/core/syscall.h"

namespace hull::testlib {

const std::string& BuildDir() {
  static const std::string dir = HULL_TESTLIB_BUILD_DIR;
  return dir;
}
std::string BinDir() { return BuildDir() + "/bin"; }
std::string GuestDir() { return BuildDir() + "/guest"; }
std::string SharedTemplateDir() { return BuildDir() + "/test-templates"; }
const std::string& SourceDir() {
  static const std::string dir = HULL_TESTLIB_SOURCE_DIR;
  return dir;
}

std::string MissingRoot(std::string_view why) {
  if (::geteuid() == 0) return "";
  return "needs root (" + std::string(why) + ")";
}

std::string MissingQemu() {
  if (IsExecutable(kQemuPath)) return "";
  return std::string("QEMU is not installed (") + kQemuPath + "; apt-get install qemu-system-x86)";
}

std::string MissingBinary(const std::string& path, std::string_view package) {
  if (IsExecutable(path)) return "";
  std::string reason = path + " is not installed";
  if (!package.empty()) reason += " (apt-get install " + std::string(package) + ")";
  return reason;
}

TempDir::TempDir(std::string_view prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/hull-" +
                      std::string(prefix) + ".XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << templ << ": " << std::strerror(errno);
    return;
  }
  path_ = templ;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  if (auto removed = RemoveTree(path_); !removed)
    ADD_FAILURE() << "remove " << path_ << ": " << removed.error().ToString();
}

std::string TempDir::Sub(std::string_view name) const { return path_ + "/" + std::string(name); }

CommandOutcome RunCommand(std::vector<std::string> argv, const RunOptions& options) {
  CommandOutcome outcome;
  if (argv.empty()) {
    ADD_FAILURE() << "RunCommand: empty argv";
    return outcome;
  }
  TempDir scratch("run");
  const std::string out = options.stdout_path.empty() ? scratch.Sub("stdout") : options.stdout_path;
  const std::string err = scratch.Sub("stderr");
  // Everything the child needs is prepared before fork: it only makes syscalls.
  std::vector<char*> raw;
  for (auto& arg : argv) raw.push_back(arg.data());
  raw.push_back(nullptr);
  const char* err_path = options.merge_stderr ? out.c_str() : err.c_str();
  pid_t pid = ::fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    return outcome;
  }
  if (pid == 0) {
    // Not O_CLOEXEC: an fd that lands on 0-2 must survive exec. Any above 2
    // is closed once duplicated.
    int in = ::open(options.stdin_path.c_str(), O_RDONLY);
    int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    int e =
        options.merge_stderr ? o : ::open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    if (in < 0 || o < 0 || e < 0 || ::dup2(in, 0) < 0 || ::dup2(o, 1) < 0 || ::dup2(e, 2) < 0)
      ::_exit(126);
    for (int fd : {in, o, e})
      if (fd > 2) ::close(fd);
    ::execv(raw[0], raw.data());
    ::_exit(127);
  }
  if (options.while_running) options.while_running(pid);
  int wait_status = 0;
  while (::waitpid(pid, &wait_status, 0) < 0) {
    if (errno != EINTR) {
      ADD_FAILURE() << "waitpid: " << std::strerror(errno);
      return outcome;
    }
  }
  outcome.status = ExitStatus::FromWaitStatus(wait_status);
  outcome.code = outcome.status.ShellCode();
  outcome.out = ReadFile(out).value_or("");
  if (!options.merge_stderr) outcome.err = ReadFile(err).value_or("");
  return outcome;
}

void ExpectGolden(const std::string& name, const std::string& actual) {
  std::string path = SourceDir() + "/tests/golden/" + name;
  if (const char* update = std::getenv("HULL_UPDATE_GOLDEN"); update != nullptr && *update == '1') {
    ASSERT_TRUE(WriteFile(path, actual));
    return;
  }
  auto expected = ReadFile(path);
  ASSERT_TRUE(expected) << "missing golden file " << path << " (run with HULL_UPDATE_GOLDEN=1)";
  EXPECT_EQ(actual, *expected) << "golden mismatch: " << path;
}

std::vector<pid_t> ProcessesWithArgument(std::string_view needle, std::string_view program) {
  std::vector<pid_t> pids;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
    std::string name = entry.path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto cmdline = ReadFile(entry.path().string() + "/cmdline", 1 << 20);
    if (!cmdline) continue;  // gone meanwhile
    std::replace(cmdline->begin(), cmdline->end(), '\0', ' ');
    if (cmdline->starts_with(program) && cmdline->find(needle) != std::string::npos) {
      pids.push_back(static_cast<pid_t>(std::stoi(name)));
    }
  }
  return pids;
}

}  // namespace hull::testlib
