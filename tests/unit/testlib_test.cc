// The shared test helpers do what their names say (tests/testlib/testlib.h).
#include "testlib.h"

#include <signal.h>

#include "hull/core/syscall.h"

namespace hull::testlib {
namespace {

using ::testing::Not;

TEST(TestlibMatchersTest, IsOkTellsValuesFromErrors) {
  Result<int> value = 3;
  Result<int> error = MakeError(ErrorCode::kNotFound, "no such thing");
  Status ok = Ok();
  EXPECT_THAT(value, IsOk());
  EXPECT_THAT(ok, IsOk());
  EXPECT_THAT(error, Not(IsOk()));
}

TEST(TestlibMatchersTest, HasCodeMatchesOnlyThatCode) {
  Status not_found = MakeError(ErrorCode::kNotFound, "no such thing");
  EXPECT_THAT(not_found, HasCode(ErrorCode::kNotFound));
  EXPECT_THAT(not_found, Not(HasCode(ErrorCode::kInternal)));
  EXPECT_THAT(Status(Ok()), Not(HasCode(ErrorCode::kNotFound)));
  EXPECT_EQ(::testing::DescribeMatcher<Status>(HasCode(ErrorCode::kNotFound)),
            "is an error with code NOT_FOUND");
}

TEST(TestlibTempDirTest, CreatesAPrivateDirectoryAndRemovesItWithItsContents) {
  std::string path;
  {
    TempDir dir("testlib");
    path = dir.path();
    ASSERT_FALSE(path.empty());
    EXPECT_NE(path.find("/hull-testlib."), std::string::npos) << path;
    ASSERT_TRUE(MakeDirs(dir.Sub("a/b")));
    ASSERT_TRUE(WriteFile(dir.Sub("a/b/file"), "x"));
    EXPECT_TRUE(PathExists(path + "/a/b/file"));
  }
  EXPECT_FALSE(PathExists(path));
}

TEST(TestlibRunCommandTest, ReportsExitCodeAndBothStreams) {
  auto outcome = RunCommand({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(outcome.code, 3);
  EXPECT_EQ(outcome.status.code, 3);
  EXPECT_EQ(outcome.out, "out\n");
  EXPECT_EQ(outcome.err, "err\n");
}

TEST(TestlibRunCommandTest, MergesStderrAndReadsStdinWhenAsked) {
  TempDir dir;
  ASSERT_TRUE(WriteFile(dir.Sub("in"), "piped\n"));
  auto outcome = RunCommand({"/bin/sh", "-c", "cat; echo err >&2"},
                            {.stdin_path = dir.Sub("in"), .merge_stderr = true});
  EXPECT_EQ(outcome.code, 0);
  EXPECT_EQ(outcome.out, "piped\nerr\n");
  EXPECT_EQ(outcome.err, "");
}

TEST(TestlibRunCommandTest, ReportsASignalAndAMissingProgram) {
  auto killed =
      RunCommand({"/bin/sleep", "60"}, {.while_running = [](pid_t pid) { ::kill(pid, SIGTERM); }});
  EXPECT_EQ(killed.status.signal, SIGTERM);
  EXPECT_EQ(killed.code, 128 + SIGTERM);
  EXPECT_EQ(RunCommand({"/nonexistent/program"}).code, 127);
}

TEST(TestlibSkipTest, ReasonsNameWhatIsMissing) {
  EXPECT_EQ(MissingBinary("/bin/sh"), "");
  EXPECT_EQ(MissingBinary("/nonexistent/tool", "tool-pkg"),
            "/nonexistent/tool is not installed (apt-get install tool-pkg)");
  EXPECT_EQ(MissingRoot("mounts").empty(), ::geteuid() == 0);
  EXPECT_EQ(MissingQemu().empty(), IsExecutable(kQemuPath));
}

TEST(TestlibPathsTest, PointIntoThisBuildAndSource) {
  EXPECT_TRUE(PathExists(SourceDir() + "/tests/testlib/testlib.h"));
  EXPECT_TRUE(PathExists(BuildDir() + "/CMakeCache.txt"));
  EXPECT_EQ(GuestDir(), BuildDir() + "/guest");
}

}  // namespace
}  // namespace hull::testlib
