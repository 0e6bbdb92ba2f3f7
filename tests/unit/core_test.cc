#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "hull/core/error.h"
#include "hull/core/ids.h"
#include "hull/core/process.h"
#include "hull/core/syscall.h"

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

}  // namespace
}  // namespace hull
