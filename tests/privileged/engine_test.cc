// The container engine on the host, as root: the same code the agent runs in
// the guest, against a busybox bundle in a temp dir and a private cgroup2
// mount (this host may use cgroup v1 for its controllers; the cgroup core
// still works: procs, freeze, kill).
#include "engine/engine.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "bundle.h"
#include "hull/core/syscall.h"
#include "testlib.h"

namespace hull::engine {
namespace {

using std::chrono::milliseconds;

// Reaps every child of the test process and hands exits to the engine under
// test, as PID 1's reaper does in the guest.
std::atomic<Engine*> g_engine{nullptr};

void StartReaper() {
  static std::once_flag once;
  std::call_once(once, [] {
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    std::thread([] {
      while (true) {
        int status = 0;
        pid_t pid = ::waitpid(-1, &status, WNOHANG | __WALL);
        if (pid > 0) {
          if (Engine* engine = g_engine.load()) engine->OnChildExit(pid, status);
          continue;
        }
        std::this_thread::sleep_for(milliseconds(5));
      }
    }).detach();
  });
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HULL_REQUIRE_ROOT("runs containers: namespaces, mounts, cgroups");
    if (!IsExecutable(testing::kBusybox)) GTEST_SKIP() << "busybox-static is not installed";
    StartReaper();
    scratch_ = ::testing::TempDir() + "/hull-engine-" + RandomHex(4);
    ASSERT_TRUE(MakeDirs(scratch_ + "/cgroup"));
    ASSERT_EQ(::mount("none", (scratch_ + "/cgroup").c_str(), "cgroup2", 0, nullptr), 0)
        << strerror(errno);
    mounted_ = true;
    ASSERT_TRUE(testing::MakeBusyboxRootfs(scratch_ + "/rootfs"));
    EngineOptions options;
    options.cgroup_root = scratch_ + "/cgroup";
    options.cgroup_parent = "hull-test-" + RandomHex(4);
    cgroup_dir_ = options.cgroup_root + "/" + options.cgroup_parent;
    engine_ = std::make_unique<Engine>(options);
    g_engine = engine_.get();
  }

  void TearDown() override {
    if (engine_) {
      for (const auto& id : engine_->ContainerIds())
        EXPECT_TRUE(engine_->Remove(id, true, milliseconds(5000)));
      g_engine = nullptr;
      engine_.reset();
    }
    if (!cgroup_dir_.empty()) ::rmdir(cgroup_dir_.c_str());
    if (mounted_) ::umount2((scratch_ + "/cgroup").c_str(), MNT_DETACH);
    if (!scratch_.empty()) (void)RemoveTree(scratch_);
  }

  // runc's default spec without its cgroup mount (a v1 host cannot give
  // the container a cgroup2 view), running `args`.
  oci::Spec Spec(std::vector<std::string> args) {
    oci::Spec spec = testing::TestSpec(std::move(args));
    std::erase_if(spec.mounts,
                  [](const oci::Mount& m) { return m.type == "cgroup" || m.type == "cgroup2"; });
    return spec;
  }

  std::string ReadAllOutput(const std::string& id, const std::string& exec_id,
                            OutputStream stream) {
    std::string out;
    auto status = engine_->ReadOutput(id, exec_id, stream, [&](std::string_view data) {
      out.append(data);
      return true;
    });
    EXPECT_TRUE(status) << status.error().ToString();
    return out;
  }

  std::string rootfs() { return scratch_ + "/rootfs"; }

  std::string scratch_;
  std::string cgroup_dir_;
  bool mounted_ = false;
  std::unique_ptr<Engine> engine_;
};

IoRequest Captured() { return {.terminal = false, .stdin = true, .stdout = true, .stderr = true}; }

TEST_F(EngineTest, CreateStartReadWaitLikeRunc) {
  ASSERT_TRUE(engine_->Create("c1", Spec({"sh", "-c", "echo out; echo err >&2; hostname; exit 3"}),
                              rootfs(), Captured()));
  EXPECT_EQ(*engine_->State("c1"), ContainerState::kCreated);
  ASSERT_TRUE(engine_->Start("c1"));
  std::string err;
  std::thread err_reader([&] { err = ReadAllOutput("c1", "", OutputStream::kStderr); });
  std::string out = ReadAllOutput("c1", "", OutputStream::kStdout);
  err_reader.join();
  auto waited = engine_->Wait("c1", "");
  ASSERT_TRUE(waited) << waited.error().ToString();
  EXPECT_EQ(waited->status.ShellCode(), 3);
  EXPECT_EQ(out, "out\nhull\n");
  EXPECT_EQ(err, "err\n");
  EXPECT_EQ(*engine_->State("c1"), ContainerState::kStopped);
  EXPECT_TRUE(engine_->Remove("c1", false, milliseconds(2000)));
  EXPECT_FALSE(PathExists(cgroup_dir_ + "/c1")) << "the container's cgroup is removed";
}

TEST_F(EngineTest, MissingCommandFailsStartAndExits127) {
  ASSERT_TRUE(engine_->Create("c2", Spec({"no-such-command"}), rootfs(), {}));
  auto started = engine_->Start("c2");
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(started.error().ToString().find(
                "exec: \"no-such-command\": executable file not found in $PATH"),
            std::string::npos)
      << started.error().ToString();
  auto waited = engine_->Wait("c2", "");
  ASSERT_TRUE(waited);
  EXPECT_EQ(waited->status.ShellCode(), 127);
}

TEST_F(EngineTest, ExecJoinsTheContainer) {
  oci::Spec spec = Spec({"sleep", "600"});
  spec.hostname = "inside";
  ASSERT_TRUE(engine_->Create("c3", spec, rootfs(), {}));
  ASSERT_TRUE(engine_->Start("c3"));
  oci::Process process = *spec.process;
  process.args = {"sh", "-c", "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $HOME"};
  ASSERT_TRUE(engine_->Exec("c3", "e1", process, {.stdout = true}));
  std::string out = ReadAllOutput("c3", "e1", OutputStream::kStdout);
  auto waited = engine_->Wait("c3", "e1");
  ASSERT_TRUE(waited);
  EXPECT_EQ(waited->status.ShellCode(), 0);
  // Same uts and pid namespace as the init: its hostname, and PID 1 is `sleep 600`.
  EXPECT_EQ(out, "inside\nsleep 600 \n/root\n");
  auto duplicate = engine_->Exec("c3", "e1", process, {});
  ASSERT_FALSE(duplicate);
  EXPECT_EQ(duplicate.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_TRUE(engine_->Signal("c3", "", SIGKILL, false));
  auto init = engine_->Wait("c3", "");
  ASSERT_TRUE(init);
  EXPECT_EQ(init->status.ShellCode(), 137);
  auto gone = engine_->Signal("c3", "", SIGTERM, false);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code(), ErrorCode::kNotFound);
}

// kubelet's exec probes run an exec every few seconds for the life of a
// pod: a finished exec must not keep its record, id or pipes.
TEST_F(EngineTest, RemovedExecFreesItsIdAndPipes) {
  oci::Spec spec = Spec({"sleep", "600"});
  ASSERT_TRUE(engine_->Create("c5", spec, rootfs(), {}));
  ASSERT_TRUE(engine_->Start("c5"));
  oci::Process process = *spec.process;
  process.args = {"sleep", "600"};
  ASSERT_TRUE(engine_->Exec("c5", "long", process, Captured()));
  auto running = engine_->RemoveExec("c5", "long");
  ASSERT_FALSE(running);
  EXPECT_EQ(running.error().code(), ErrorCode::kFailedPrecondition) << running.error().ToString();
  EXPECT_TRUE(engine_->Signal("c5", "long", SIGKILL, false));
  ASSERT_TRUE(engine_->Wait("c5", "long"));
  ASSERT_TRUE(engine_->RemoveExec("c5", "long"));

  auto open_fds = [] {
    size_t n = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
      ++n;
    return n;
  };
  size_t before = open_fds();
  process.args = {"echo", "probe"};
  for (int i = 0; i < 20; ++i) {
    // The same exec id every time: free again once removed.
    ASSERT_TRUE(engine_->Exec("c5", "probe", process, {.stdin = true, .stdout = true}))
        << "round " << i;
    EXPECT_EQ(ReadAllOutput("c5", "probe", OutputStream::kStdout), "probe\n");
    auto waited = engine_->Wait("c5", "probe");
    ASSERT_TRUE(waited);
    EXPECT_EQ(waited->status.ShellCode(), 0);
    ASSERT_TRUE(engine_->RemoveExec("c5", "probe"));
  }
  EXPECT_EQ(open_fds(), before) << "the removed execs' pipes stay open";
  auto gone = engine_->Wait("c5", "probe");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code(), ErrorCode::kNotFound);
  auto init = engine_->RemoveExec("c5", "");
  ASSERT_FALSE(init);
  EXPECT_EQ(init.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(engine_->Remove("c5", true, milliseconds(5000)));
}

TEST_F(EngineTest, StdinReachesTheProcessAndClosesWithEof) {
  ASSERT_TRUE(engine_->Create("c4", Spec({"sh", "-c", "cat; echo done"}), rootfs(), Captured()));
  ASSERT_TRUE(engine_->Start("c4"));
  std::string out;
  std::thread reader([&] { out = ReadAllOutput("c4", "", OutputStream::kStdout); });
  ASSERT_TRUE(engine_->WriteStdin("c4", "", "hello through stdin\n"));
  ASSERT_TRUE(engine_->CloseStdin("c4", ""));
  auto waited = engine_->Wait("c4", "");
  reader.join();
  ASSERT_TRUE(waited);
  EXPECT_EQ(waited->status.ShellCode(), 0);
  EXPECT_EQ(out, "hello through stdin\ndone\n");
}

TEST_F(EngineTest, PauseFreezesAndResumeContinues) {
  ASSERT_TRUE(engine_->Create(
      "c5",
      Spec({"sh", "-c",
            "i=0; while true; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; done"}),
      rootfs(), {}));
  ASSERT_TRUE(engine_->Start("c5"));
  std::string counter = rootfs() + "/tmp/n";
  // Poll with a generous deadline instead of a fixed sleep: on a loaded
  // machine the container may not run for a while, and that is no failure.
  auto counter_moves_from = [&](const std::string& from) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      std::string now = ReadFile(counter).value_or("");
      if (!now.empty() && now != from) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  };
  ASSERT_TRUE(counter_moves_from("")) << "the counter never started";
  ASSERT_TRUE(engine_->Pause("c5"));
  EXPECT_EQ(*engine_->State("c5"), ContainerState::kPaused);
  std::string frozen = ReadFile(counter).value_or("");
  ASSERT_FALSE(frozen.empty());
  // Frozen means frozen: no wait is long enough to prove it, but a moving
  // counter after this one disproves it.
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(ReadFile(counter).value_or(""), frozen) << "the counter moved while paused";
  ASSERT_TRUE(engine_->Resume("c5"));
  EXPECT_TRUE(counter_moves_from(frozen)) << "the counter did not move after resume";
  auto pids = engine_->Pids("c5");
  ASSERT_TRUE(pids);
  EXPECT_GE(pids->size(), 1u);
  auto running = engine_->Remove("c5", false, milliseconds(1000));
  ASSERT_FALSE(running);
  EXPECT_EQ(running.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(engine_->Remove("c5", true, milliseconds(5000)));
  EXPECT_FALSE(engine_->State("c5"));
}

TEST_F(EngineTest, BadInputIsRefusedWithoutLeftovers) {
  auto bad_id = engine_->Create("../x", Spec({"true"}), rootfs(), {});
  ASSERT_FALSE(bad_id);
  EXPECT_EQ(bad_id.error().code(), ErrorCode::kInvalidArgument);
  oci::Spec user_ns = Spec({"true"});
  user_ns.linux->namespaces.push_back({"user", ""});
  auto refused = engine_->Create("c6", user_ns, rootfs(), {});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kUnimplemented);
  auto missing_rootfs = engine_->Create("c7", Spec({"true"}), scratch_ + "/nope", {});
  ASSERT_FALSE(missing_rootfs);
  EXPECT_FALSE(PathExists(cgroup_dir_ + "/c7"));
  EXPECT_TRUE(engine_->ContainerIds().empty());
}

}  // namespace
}  // namespace hull::engine
