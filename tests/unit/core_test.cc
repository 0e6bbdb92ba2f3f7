#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "hull/core/error.h"
#include "hull/core/ids.h"
#include "hull/core/mountinfo.h"
#include "hull/core/process.h"
#include "hull/core/sys.h"
#include "hull/core/syscall.h"
#include "hull/core/thread.h"

namespace hull {
namespace {

TEST(ErrorTest, FormatsContextFramesOutermostFirstWithErrno) {
  Error error =
      Error::FromErrno(ENOENT, "overlay").Wrap("mount rootfs").Wrap("create container `web`");
  EXPECT_EQ(error.ToString(),
            "create container `web`: mount rootfs: overlay: ENOENT (No such file or directory)");
  EXPECT_EQ(error.code(), ErrorCode::kNotFound);
  EXPECT_EQ(error.sys_errno(), ENOENT);
}

TEST(ErrorTest, WithoutErrnoPrintsOnlyTheMessage) {
  Error error(ErrorCode::kInvalidArgument, "bad memory size");
  EXPECT_EQ(error.ToString(), "bad memory size");
  EXPECT_EQ(ErrorCodeName(error.code()), "INVALID_ARGUMENT");
}

TEST(ErrorTest, CodesMatchGrpcNumbering) {
  EXPECT_EQ(static_cast<int>(ErrorCode::kNotFound), 5);
  EXPECT_EQ(static_cast<int>(ErrorCode::kUnimplemented), 12);
  EXPECT_EQ(static_cast<int>(ErrorCode::kUnavailable), 14);
  EXPECT_EQ(ErrorCodeFromErrno(EEXIST), ErrorCode::kAlreadyExists);
  EXPECT_EQ(ErrorCodeFromErrno(EACCES), ErrorCode::kPermissionDenied);
  EXPECT_EQ(ErrorCodeFromErrno(ECONNREFUSED), ErrorCode::kUnavailable);
  EXPECT_EQ(ErrorCodeFromErrno(ETIMEDOUT), ErrorCode::kDeadlineExceeded);
}

Result<int> Half(int n) {
  if (n % 2 != 0) return MakeError(ErrorCode::kInvalidArgument, std::to_string(n) + " is odd");
  return n / 2;
}

Result<int> Quarter(int n) {
  HULL_TRY(int half, Half(n), "first half");
  HULL_TRY(int quarter, Half(half), "second half");
  return quarter;
}

TEST(ResultTest, TryPropagatesWithContext) {
  ASSERT_TRUE(Quarter(8));
  EXPECT_EQ(*Quarter(8), 2);
  auto odd = Quarter(6);
  ASSERT_FALSE(odd);
  EXPECT_EQ(odd.error().ToString(), "second half: 3 is odd");
}

TEST(IdsTest, AcceptsContainerdStyleIds) {
  EXPECT_TRUE(ValidateId("container", "web"));
  EXPECT_TRUE(ValidateId("container", "a1b2-c3.d4_e5"));
  EXPECT_TRUE(ValidateId("sandbox", std::string(64, 'f')));
}

TEST(IdsTest, RejectsIdsThatCouldEscapeAPath) {
  for (const char* bad : {"", "..", ".", "a/b", "../x", "-a", "a-", "a..b", "a b", "a\nb", "ä"}) {
    auto status = ValidateId("container", bad);
    ASSERT_FALSE(status) << "accepted `" << bad << "`";
    EXPECT_EQ(status.error().code(), ErrorCode::kInvalidArgument);
  }
  EXPECT_FALSE(ValidateId("container", std::string(kMaxIdLength + 1, 'a')));
}

TEST(ProcessTest, ReportsExitCodeAndSignal) {
  auto exit3 = Child::Spawn({.argv = {"/bin/sh", "-c", "exit 3"}});
  ASSERT_TRUE(exit3) << exit3.error().ToString();
  auto status = exit3->Wait();
  ASSERT_TRUE(status);
  EXPECT_EQ(status->code, 3);
  EXPECT_EQ(status->ShellCode(), 3);

  auto sleeper = Child::Spawn({.argv = {"/bin/sleep", "30"}});
  ASSERT_TRUE(sleeper);
  auto early = sleeper->WaitFor(std::chrono::milliseconds(10));
  ASSERT_TRUE(early);
  EXPECT_FALSE(early->has_value());
  ExitStatus killed = sleeper->Terminate(std::chrono::milliseconds(2000));
  EXPECT_EQ(killed.signal, SIGTERM);
  EXPECT_EQ(killed.ShellCode(), 143);
  EXPECT_EQ(killed.ToString(), "killed by signal 15 (SIGTERM)");
}

TEST(ProcessTest, MissingProgramIsAnErrorNotADeadChild) {
  auto child = Child::Spawn({.argv = {"/nonexistent/qemu"}});
  ASSERT_FALSE(child);
  EXPECT_EQ(child.error().sys_errno(), ENOENT);
  EXPECT_NE(child.error().ToString().find("/nonexistent/qemu"), std::string::npos);
}

TEST(ProcessTest, DestroyingAChildKillsIt) {
  pid_t pid;
  {
    auto child = Child::Spawn({.argv = {"/bin/sleep", "30"}});
    ASSERT_TRUE(child);
    pid = child->pid();
  }
  EXPECT_EQ(::kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST(SyscallTest, RemoveTreeRemovesNestedDirectories) {
  std::string root = ::testing::TempDir() + "/hull-rm-" + RandomHex(4);
  ASSERT_TRUE(MakeDirs(root + "/a/b/c"));
  ASSERT_TRUE(WriteFile(root + "/a/b/c/file", "x"));
  ASSERT_EQ(::symlink("/etc", (root + "/a/link").c_str()), 0);
  ASSERT_TRUE(RemoveTree(root));
  EXPECT_FALSE(PathExists(root));
  EXPECT_TRUE(PathExists("/etc/hostname") ||
              PathExists("/etc/passwd"));  // the link was not followed
}

TEST(MountInfoTest, ParsesFieldsUnescapesPathsAndSkipsMalformedLines) {
  auto entries = ParseMountInfo(
      "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
      "not a mountinfo line\n"
      "36 35 98:0 /mnt1 /mnt\\040two rw,noatime shared:1 master:2 - ext3 /dev/root rw\n"
      "37 35 0:5 / /no-separator rw shared:3\n"
      "38 36 0:6 /a\\134b /x rw - tmpfs tmpfs rw");
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].id, 22);
  EXPECT_EQ(entries[0].parent, 1);
  EXPECT_EQ(entries[0].mount_point, "/proc");
  EXPECT_EQ(entries[0].fstype, "proc");
  EXPECT_FALSE(entries[0].shared);
  EXPECT_EQ(entries[1].root, "/mnt1");
  EXPECT_EQ(entries[1].mount_point, "/mnt two");
  EXPECT_EQ(entries[1].fstype, "ext3");
  EXPECT_TRUE(entries[1].shared);
  EXPECT_EQ(entries[2].root, "/a\\b");
  EXPECT_EQ(entries[2].fstype, "tmpfs");
}

TEST(MountInfoTest, MountPointsUnderListsTheProcMount) {
  auto mounts = MountPointsUnder("/proc");
  ASSERT_FALSE(mounts.empty());
  EXPECT_EQ(mounts.front(), "/proc");
}

// A tree whose links try to leave `root`:
//   <base>/outside/secret         what must never be reached
//   <base>/root/etc/passwd        "inside"
//   <base>/root/absolute -> /etc/passwd
//   <base>/root/dotdot   -> ../../../../../../etc/passwd
//   <base>/root/escape   -> ../outside
class SafeOpenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = ::testing::TempDir() + "/hull-safeopen-" + RandomHex(4);
    root_path_ = base_ + "/root";
    ASSERT_TRUE(MakeDirs(base_ + "/outside"));
    ASSERT_TRUE(WriteFile(base_ + "/outside/secret", "outside"));
    ASSERT_TRUE(MakeDirs(root_path_ + "/etc"));
    ASSERT_TRUE(WriteFile(root_path_ + "/etc/passwd", "inside"));
    ASSERT_EQ(::symlink("/etc/passwd", (root_path_ + "/absolute").c_str()), 0);
    ASSERT_EQ(::symlink("../../../../../../etc/passwd", (root_path_ + "/dotdot").c_str()), 0);
    ASSERT_EQ(::symlink("../outside", (root_path_ + "/escape").c_str()), 0);
    root_.reset(::open(root_path_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_);
  }
  void TearDown() override { ASSERT_TRUE(RemoveTree(base_)); }

  // The file's contents, or the errno of the failed open.
  std::string Read(const std::string& path, sys::SafeOpenOptions options) {
    auto fd = sys::SafeOpen(root_.get(), path, O_RDONLY, options);
    if (!fd) return "errno " + std::to_string(fd.error().sys_errno());
    return ReadAll(fd->get()).value_or("read failed");
  }

  std::string base_;
  std::string root_path_;
  UniqueFd root_;
};

constexpr sys::SafeOpenOptions kInRoot{.scope = sys::Scope::kInRoot};
constexpr sys::SafeOpenOptions kBeneath{.scope = sys::Scope::kBeneath};

TEST_F(SafeOpenTest, InRootResolvesEscapingSymlinksInsideTheRoot) {
  EXPECT_EQ(Read("absolute", kInRoot), "inside");
  EXPECT_EQ(Read("dotdot", kInRoot), "inside");
  EXPECT_EQ(Read("/etc/passwd", kInRoot), "inside");
  // ../outside from the root is <root>/outside, which does not exist.
  EXPECT_EQ(Read("escape/secret", kInRoot), "errno " + std::to_string(ENOENT));
  EXPECT_EQ(Read("../outside/secret", kInRoot), "errno " + std::to_string(ENOENT));
}

TEST_F(SafeOpenTest, BeneathRefusesEveryEscape) {
  EXPECT_EQ(Read("etc/passwd", kBeneath), "inside");
  const std::string exdev = "errno " + std::to_string(EXDEV);
  EXPECT_EQ(Read("absolute", kBeneath), exdev);
  EXPECT_EQ(Read("dotdot", kBeneath), exdev);
  EXPECT_EQ(Read("escape/secret", kBeneath), exdev);
  EXPECT_EQ(Read("../outside/secret", kBeneath), exdev);
  EXPECT_EQ(Read("/etc/passwd", kBeneath), exdev);
}

TEST_F(SafeOpenTest, NoSymlinksRefusesEvenAnInnocentLink) {
  ASSERT_EQ(::symlink("etc", (root_path_ + "/etc-link").c_str()), 0);
  EXPECT_EQ(Read("etc-link/passwd", kBeneath), "inside");
  EXPECT_EQ(Read("etc-link/passwd", {.scope = sys::Scope::kBeneath, .no_symlinks = true}),
            "errno " + std::to_string(ELOOP));
}

TEST_F(SafeOpenTest, MissingComponentIsNotFoundAndNamesThePath) {
  auto fd = sys::SafeOpen(root_.get(), "etc/missing/file", O_RDONLY);
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().sys_errno(), ENOENT);
  EXPECT_EQ(fd.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(fd.error().ToString().find("etc/missing/file"), std::string::npos)
      << fd.error().ToString();
}

TEST_F(SafeOpenTest, CreatesBeneathWithTheModeAndCloexec) {
  auto fd = sys::SafeOpen(root_.get(), "etc/new", O_WRONLY | O_CREAT | O_EXCL, kBeneath, 0600);
  ASSERT_TRUE(fd) << fd.error().ToString();
  EXPECT_EQ(::fcntl(fd->get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  struct stat st {};
  ASSERT_EQ(::stat((root_path_ + "/etc/new").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // O_CREAT through a link that leaves the root creates nothing outside.
  EXPECT_FALSE(sys::SafeOpen(root_.get(), "escape/planted", O_WRONLY | O_CREAT, kBeneath, 0600));
  EXPECT_FALSE(PathExists(base_ + "/outside/planted"));
}

TEST_F(SafeOpenTest, OpenDirBeneathCreatesEachLevelAndRefusesLinks) {
  auto dir = sys::OpenDirBeneath(root_.get(), "a/b/c", /*create=*/true);
  ASSERT_TRUE(dir) << dir.error().ToString();
  EXPECT_TRUE(PathExists(root_path_ + "/a/b/c"));
  auto file = sys::OpenBeneath(dir->get(), "f", O_WRONLY | O_CREAT, 0644);
  ASSERT_TRUE(file) << file.error().ToString();
  EXPECT_TRUE(PathExists(root_path_ + "/a/b/c/f"));

  EXPECT_FALSE(sys::OpenDirBeneath(root_.get(), "x/y", /*create=*/false));
  EXPECT_FALSE(PathExists(root_path_ + "/x"));
  // O_NOFOLLOW: the last name is the link itself, which is not a directory.
  auto at_link = sys::OpenDirBeneath(root_.get(), "escape", /*create=*/false);
  ASSERT_FALSE(at_link);
  EXPECT_EQ(at_link.error().sys_errno(), ENOTDIR);
  // One name at a time, so a link is always the last name of its lookup.
  auto through_link = sys::OpenDirBeneath(root_.get(), "escape/planted", /*create=*/true);
  ASSERT_FALSE(through_link);
  EXPECT_EQ(through_link.error().sys_errno(), ENOTDIR);
  EXPECT_FALSE(PathExists(base_ + "/outside/planted"));
}

std::string CurrentThreadName() {
  char name[32] = {};
  ::pthread_getname_np(::pthread_self(), name, sizeof name);
  return name;
}

TEST(SpawnThreadTest, NamesTheThreadBeforeTheFunctionRuns) {
  std::string seen;
  SpawnThread("oom-watcher", [&] { seen = CurrentThreadName(); }).join();
  EXPECT_EQ(seen, "oom-watcher");
}

TEST(SpawnThreadTest, CutsLongNamesToWhatTheKernelKeeps) {
  std::string seen;
  SpawnThread("a-thread-name-longer-than-fifteen", [&] { seen = CurrentThreadName(); }).join();
  EXPECT_EQ(seen, "a-thread-name-l");
  EXPECT_EQ(seen.size(), kMaxThreadNameLength);
}

// The layer is only one layer while nothing goes around it: in all product
// code, host and guest, raw syscall(2) lives in core/src/sys.cc and threads
// start in core/src/thread.cc. (The source tree is found next to tests/golden.)
TEST(SysLayerTest, NoRawSyscallsOrUnnamedThreadsOutsideTheLayer) {
  const std::filesystem::path root = std::filesystem::path(HULL_GOLDEN_DIR) / ".." / "..";
  const std::regex raw_syscall(R"(\bsyscall\s*\(\s*(SYS_|__NR_))");
  const std::regex raw_thread(R"(std::thread\s*\(|std::thread\s+\w+\s*[({])");
  size_t files = 0;
  for (const char* dir : {"core", "agent", "proto", "hypervisor", "sandbox", "shim", "tools"}) {
    for (const auto& entry : std::filesystem::recursive_directory_iterator(root / dir)) {
      const auto& path = entry.path();
      if (path.extension() != ".cc" && path.extension() != ".h") continue;
      ++files;
      std::ifstream in(path);
      std::stringstream text;
      text << in.rdbuf();
      const std::string name = path.filename().string();
      if (name != "sys.cc") {
        EXPECT_FALSE(std::regex_search(text.str(), raw_syscall))
            << path << " makes a raw syscall: add it to hull/core/sys.h";
      }
      if (name != "thread.cc" && name != "thread.h") {
        EXPECT_FALSE(std::regex_search(text.str(), raw_thread))
            << path << " starts a thread: use SpawnThread (hull/core/thread.h)";
      }
    }
  }
  EXPECT_GT(files, 50u) << "the source tree was not found under " << root;
}

}  // namespace
}  // namespace hull
