// What hull's tests share: visible skips for what the machine may lack, a
// private temp directory, running a command, the build's paths, and gMock
// matchers for hull::Result. Link hull_testlib; include "testlib.h".
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "hull/core/error.h"
#include "hull/core/process.h"

namespace hull::testlib {

// --- paths ------------------------------------------------------------------

// The QEMU binary tests boot (Debian's qemu-system-x86).
inline constexpr char kQemuPath[] = "/usr/bin/qemu-system-x86_64";

// The build tree (CMAKE_BINARY_DIR), its bin/ and the guest image in it.
const std::string& BuildDir();
std::string BinDir();
std::string GuestDir();
// Where the tests' VM templates live ([hypervisor] template_dir): shared by
// every test of the build, as a cache of booted guests, so each fixture's
// private run_dir does not boot a template of its own. Templates are keyed
// by the guest image and VM shape, and builds are serialized, so sharing is
// safe; tests of the template lifecycle use a directory of their own.
std::string SharedTemplateDir();
// The source tree (PROJECT_SOURCE_DIR).
const std::string& SourceDir();

// --- what the machine may lack: a reason, or "" when it is there --------------

std::string MissingRoot(std::string_view why);
std::string MissingQemu();
std::string MissingBinary(const std::string& path, std::string_view package = "");

// Skips the current test, saying why, when the machine lacks what it needs.
// Macros, because GTEST_SKIP returns from the calling function: use them in a
// test body or in SetUp (then check IsSkipped() in a derived SetUp).
//   HULL_REQUIRE_ROOT("mounts a tmpfs");
//   HULL_REQUIRE_QEMU();
//   HULL_REQUIRE_BINARY("/usr/sbin/runc", "runc");
#define HULL_TESTLIB_SKIP_IF(reason_expr)                                        \
  do {                                                                           \
    if (std::string hull_skip_reason = (reason_expr); !hull_skip_reason.empty()) \
      GTEST_SKIP() << hull_skip_reason;                                          \
  } while (0)
#define HULL_REQUIRE_ROOT(why) HULL_TESTLIB_SKIP_IF(::hull::testlib::MissingRoot(why))
#define HULL_REQUIRE_QEMU() HULL_TESTLIB_SKIP_IF(::hull::testlib::MissingQemu())
#define HULL_REQUIRE_BINARY(...) HULL_TESTLIB_SKIP_IF(::hull::testlib::MissingBinary(__VA_ARGS__))

// --- a private temp directory -------------------------------------------------

// Creates <TMPDIR or /tmp>/hull-<prefix>.XXXXXX (0700) and removes it, with
// everything in it, when destroyed. A failure to create it fails the test.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string Sub(std::string_view name) const;

 private:
  std::string path_;
};

// --- running a command ---------------------------------------------------------

struct CommandOutcome {
  ExitStatus status;
  // The shell's convention: the exit code, or 128 + the signal.
  int code = -1;
  std::string out;
  std::string err;  // empty when merge_stderr
};

struct RunOptions {
  std::string stdin_path = "/dev/null";
  // Where stdout goes while the command runs (for while_running to watch);
  // "" = a private temp file. Read into `out` either way.
  std::string stdout_path;
  bool merge_stderr = false;  // stderr goes to `out`, interleaved
  // Called in the parent while the command runs, with its pid.
  std::function<void(pid_t)> while_running;
};

// Runs argv (argv[0] is a path, no PATH lookup) and waits for it. A command
// that cannot be started exits 127; a failure to set up fails the test.
CommandOutcome RunCommand(std::vector<std::string> argv, const RunOptions& options = {});

// Pids of the processes whose command line (its words joined by spaces)
// contains `needle`, and, when `program` is given, starts with it.
std::vector<pid_t> ProcessesWithArgument(std::string_view needle, std::string_view program = "");

// --- golden files ---------------------------------------------------------------

// Expects `actual` to equal tests/golden/<name>; with HULL_UPDATE_GOLDEN=1
// in the environment, rewrites the file instead.
void ExpectGolden(const std::string& name, const std::string& actual);

// --- matchers for hull::Result and hull::Status ---------------------------------

// EXPECT_THAT(result, IsOk());
MATCHER(IsOk, "is OK") {
  if (arg.has_value()) return true;
  *result_listener << "error: " << arg.error().ToString();
  return false;
}

// EXPECT_THAT(result, HasCode(ErrorCode::kNotFound));
MATCHER_P(HasCode, code,
          std::string(negation ? "is not" : "is") + " an error with code " +
              std::string(::hull::ErrorCodeName(code))) {
  if (arg.has_value()) {
    *result_listener << "is OK";
    return false;
  }
  *result_listener << "error: " << arg.error().ToString();
  return arg.error().code() == code;
}

}  // namespace hull::testlib
