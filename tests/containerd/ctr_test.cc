// The containerd suite: `ctr` drives a private containerd, and every case runs
// twice, with runc (io.containerd.runc.v2, the baseline) and with hull
// (io.containerd.hull.v2, one microVM per container). Whatever runc does here,
// hull must do too, and neither may leave a process, mount or state file behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <regex>
#include <sstream>
#include <thread>

#include "bundle.h"
#include "containerd_env.h"
#include "hull/core/syscall.h"
#include "libvirt_env.h"
#include "testlib.h"

namespace hull::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kImage[] = "docker.io/hull-test/busybox:latest";
constexpr char kRuncBinary[] = "/usr/sbin/runc";
constexpr char kHullShim[] = "containerd-shim-hull-v2";
constexpr char kVirtiofsdPath[] = "/usr/lib/qemu/virtiofsd";

struct Runtime {
  const char* name;  // the test-name suffix
  const char* type;  // ctr --runtime
  bool is_hull;
};
constexpr Runtime kRunc{"runc", "io.containerd.runc.v2", false};
constexpr Runtime kHull{"hull", "io.containerd.hull.v2", true};

void PrintTo(const Runtime& runtime, std::ostream* os) { *os << runtime.type; }

// Where containerd-shim-hull-v2 and its guest/ are: HULL_TEST_BIN_DIR, else this
// build tree's bin/.
std::string BinDir() {
  const char* dir = std::getenv("HULL_TEST_BIN_DIR");
  return dir != nullptr && *dir != '\0' ? dir : HULL_BIN_DIR;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

class CtrTest : public ::testing::TestWithParam<Runtime> {
 protected:
  void SetUp() override {
    HULL_REQUIRE_ROOT("containerd mounts snapshots and runs shims");
    if (!IsExecutable(kContainerd) || !IsExecutable(kCtr)) {
      GTEST_SKIP() << "containerd is not installed (" << kContainerd << ", " << kCtr << ")";
    }
    if (!PathExists(HULL_TEST_IMAGE_ARCHIVE)) {
      GTEST_SKIP() << "test image " << HULL_TEST_IMAGE_ARCHIVE
                   << " not built (busybox-static missing at build time?)";
    }
    if (runtime().is_hull) {
      std::string shim = BinDir() + "/" + kHullShim;
      if (!IsExecutable(shim))
        GTEST_SKIP() << "containerd-shim-hull-v2 not built (looked for " << shim << ")";
      HULL_REQUIRE_QEMU();
      if (!PathExists(BinDir() + "/../guest/initrd.img")) {
        GTEST_SKIP() << "guest image not built (" << BinDir() << "/../guest/initrd.img)";
      }
    } else if (!IsExecutable(kRuncBinary)) {
      GTEST_SKIP() << "runc is not installed (" << kRuncBinary << ")";
    }
    auto started = PrivateContainerd::Start({.bin_dir = BinDir()});
    ASSERT_TRUE(started) << started.error().ToString();
    env_ = std::move(*started);
    auto imported = env_->ImportImage(HULL_TEST_IMAGE_ARCHIVE);
    ASSERT_TRUE(imported) << imported.error().ToString();
  }

  void TearDown() override {
    if (!env_) return;
    // A case that failed may have stopped before its own cleanup; its
    // leftovers would only repeat the failure, so they are checked only after
    // a case that got through (the destructor removes them either way).
    if (!HasFailure()) {
      std::string leftovers = env_->WaitForNoLeftovers(seconds(10));
      EXPECT_EQ(leftovers, "") << runtime().name << " left this behind after the case";
    }
    if (HasFailure()) {
      std::cerr << "--- containerd log (tail) of " << env_->dir() << " ---\n"
                << env_->LogTail(50) << "\n";
    }
    env_.reset();
  }

  const Runtime& runtime() const { return GetParam(); }
  std::string Id(const std::string& name) const { return env_->Id(name); }

  // ctr run --runtime <runtime> FLAGS IMAGE ID CMD...
  CommandResult Run(const std::vector<std::string>& flags, const std::string& id,
                    const std::vector<std::string>& cmd, const std::string& stdin_data = "",
                    const std::string& image = kImage) {
    std::vector<std::string> args = {"run", "--runtime", runtime().type};
    args.insert(args.end(), flags.begin(), flags.end());
    args.push_back(image);
    args.push_back(id);
    args.insert(args.end(), cmd.begin(), cmd.end());
    return env_->Ctr(args, stdin_data);
  }

  CommandResult Exec(const std::string& id, const std::string& exec_id,
                     const std::vector<std::string>& cmd) {
    std::vector<std::string> args = {"task", "exec", "--exec-id", Id(exec_id), id};
    args.insert(args.end(), cmd.begin(), cmd.end());
    return env_->Ctr(args);
  }

  bool WaitForStatus(const std::string& id, const std::string& status,
                     milliseconds timeout = seconds(20)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (env_->TaskStatus(id) == status) return true;
      std::this_thread::sleep_for(milliseconds(100));
    }
    return false;
  }

  // ctr run -d, then RUNNING.
  void StartDetached(const std::string& id, const std::vector<std::string>& cmd) {
    CommandResult r = Run({"-d"}, id, cmd);
    ASSERT_EQ(r.code, 0) << "ctr run -d " << id << ": " << r.Describe();
    ASSERT_EQ(env_->TaskStatus(id), "RUNNING");
  }

  // Polls an exec until `test -e PATH` succeeds inside the container.
  void WaitForFileInContainer(const std::string& id, const std::string& path) {
    for (int i = 0; i < 300; ++i) {  // a VM boots under TCG in seconds
      if (Exec(id, "ready-" + std::to_string(i), {"test", "-e", path}).code == 0) return;
      std::this_thread::sleep_for(milliseconds(100));
    }
    FAIL() << path << " never appeared in " << id;
  }

  // SIGKILL, STOPPED, task rm, container rm: each step must succeed.
  void RemoveTask(const std::string& id) {
    CommandResult kill = env_->Ctr({"task", "kill", "-s", "SIGKILL", id});
    EXPECT_EQ(kill.code, 0) << "ctr task kill " << id << ": " << kill.Describe();
    EXPECT_TRUE(WaitForStatus(id, "STOPPED"))
        << id << " is " << env_->TaskStatus(id) << " after SIGKILL";
    CommandResult rm = env_->Ctr({"task", "rm", id});
    EXPECT_EQ(rm.code, 0) << "ctr task rm " << id << ": " << rm.Describe();
    CommandResult crm = env_->Ctr({"containers", "rm", id});
    EXPECT_EQ(crm.code, 0) << "ctr containers rm " << id << ": " << crm.Describe();
  }

  void ExpectNoContainers() {
    CommandResult ls = env_->Ctr({"containers", "ls", "-q"});
    EXPECT_EQ(ls.code, 0) << ls.Describe();
    EXPECT_EQ(ls.out, "") << "containers left in containerd's metadata";
    CommandResult tasks = env_->Ctr({"task", "ls", "-q"});
    EXPECT_EQ(tasks.out, "") << "tasks left in containerd";
  }

  // The first process whose command line starts with `binary` and names a
  // path under this containerd's hull run dir; 0 if none.
  pid_t HullProcess(const std::string& binary) const {
    auto pids = testlib::ProcessesWithArgument(env_->hull_run_dir() + "/", binary);
    return pids.empty() ? 0 : pids.front();
  }

  // A task whose VM died: STOPPED, then `task rm` and `containers rm` work.
  void ExpectStoppedAndRemovable(const std::string& id) {
    EXPECT_TRUE(WaitForStatus(id, "STOPPED", seconds(60))) << id << " is " << env_->TaskStatus(id);
    CommandResult rm = env_->Ctr({"task", "rm", id});
    EXPECT_EQ(rm.code, 0) << rm.Describe();
    CommandResult crm = env_->Ctr({"containers", "rm", id});
    EXPECT_EQ(crm.code, 0) << crm.Describe();
    ExpectNoContainers();
  }

  std::unique_ptr<PrivateContainerd> env_;
};

TEST_P(CtrTest, RunRmPrintsOutput) {
  CommandResult r = Run({"--rm"}, Id("echo"), {"echo", "hello"});
  EXPECT_EQ(r.code, 0) << r.Describe();
  EXPECT_EQ(r.out, "hello\n") << r.Describe();
  ExpectNoContainers();
}

TEST_P(CtrTest, ExitCodesPropagate) {
  // The container's init ignores SIGKILL sent from inside its own pid
  // namespace, so the signal death is a child's and sh hands its 137 on; init
  // dying of a signal is KillDeliversSigtermAndSigkill's business.
  const std::vector<std::pair<int, std::vector<std::string>>> cases = {
      {0, {"true"}},
      {3, {"sh", "-c", "exit 3"}},
      {137, {"sh", "-c", "sh -c 'kill -9 $$'; exit $?"}},
  };
  for (const auto& [code, cmd] : cases) {
    CommandResult r = Run({"--rm"}, Id("exit" + std::to_string(code)), cmd);
    EXPECT_EQ(r.code, code) << cmd.back() << ": " << r.Describe();
  }
  ExpectNoContainers();
}

TEST_P(CtrTest, ExecWithoutAndWithTty) {
  std::string id = Id("exec");
  ASSERT_NO_FATAL_FAILURE(StartDetached(id, {"sleep", "1000"}));

  CommandResult plain = Exec(id, "plain", {"sh", "-c", "echo out; echo err >&2; exit 4"});
  EXPECT_EQ(plain.code, 4) << plain.Describe();
  EXPECT_EQ(plain.out, "out\n") << plain.Describe();
  EXPECT_EQ(plain.err, "err\n") << plain.Describe();
  // `ctr task exec --exec-id` with the id of an exec that has ended: the
  // id is free again (containerd deleted the process, so does the guest).
  for (int round = 0; round < 2; ++round) {
    CommandResult again = Exec(id, "plain", {"sh", "-c", "echo again"});
    // runc's shim can lose a short exec's output under load (seen twice on
    // 2 busy cores, never alone); it is the reference, not what is tested
    // here, so it gets a second try. hull must deliver it the first time.
    if (!runtime().is_hull && again.code == 0 && again.out.empty()) {
      again = Exec(id, "plain", {"sh", "-c", "echo again"});
    }
    EXPECT_EQ(again.code, 0) << "round " << round << ": " << again.Describe();
    EXPECT_EQ(again.out, "again\n") << again.Describe();
  }

  // A program that is not there: a clear error, and ctr is not left waiting.
  CommandResult missing = Exec(id, "missing", {"/no-such-program"});
  EXPECT_NE(missing.code, 0) << missing.Describe();
  EXPECT_TRUE(Contains(missing.err, "no-such-program")) << missing.Describe();

  // ctr -t wants a terminal on its stdin: run it on a pty of our own.
  CommandResult tty =
      env_->CtrOnPty({"task", "exec", "-t", "--exec-id", Id("tty"), id, "sh", "-c", "tty; exit 5"});
  EXPECT_EQ(tty.code, 5) << tty.Describe();
  EXPECT_TRUE(std::regex_search(tty.out, std::regex("/dev/pts/[0-9]+"))) << tty.Describe();

  ASSERT_NO_FATAL_FAILURE(RemoveTask(id));
}

TEST_P(CtrTest, KillDeliversSigtermAndSigkill) {
  // In the foreground, `ctr run` exits with the container's status: the
  // status containerd's Wait reports.
  struct Case {
    std::string name;
    std::vector<std::string> kill_flags;
    int expected;
  };
  for (const Case& c : {Case{"term", {}, 42}, Case{"kill", {"-s", "SIGKILL"}, 137}}) {
    std::string id = Id(c.name);
    CommandResult run;
    std::thread runner([&] {
      run = Run(
          {"--rm"}, id,
          {"sh", "-c", "trap 'exit 42' TERM; touch /tmp/ready; while true; do sleep 0.1; done"});
    });
    WaitForFileInContainer(id, "/tmp/ready");
    std::vector<std::string> args = {"task", "kill"};
    args.insert(args.end(), c.kill_flags.begin(), c.kill_flags.end());
    args.push_back(id);
    CommandResult kill = env_->Ctr(args);
    EXPECT_EQ(kill.code, 0) << kill.Describe();
    if (kill.code != 0) (void)env_->Ctr({"task", "kill", "-s", "SIGKILL", id});
    runner.join();
    EXPECT_EQ(run.code, c.expected)
        << "ctr task kill " << (c.kill_flags.empty() ? "(SIGTERM)" : "-s SIGKILL") << ": "
        << run.Describe();
  }
  ExpectNoContainers();
}

TEST_P(CtrTest, PauseAndResume) {
  std::string id = Id("pause");
  ASSERT_NO_FATAL_FAILURE(StartDetached(id, {"sleep", "1000"}));
  CommandResult pause = env_->Ctr({"task", "pause", id});
  ASSERT_EQ(pause.code, 0) << pause.Describe();
  EXPECT_EQ(env_->TaskStatus(id), "PAUSED");
  CommandResult resume = env_->Ctr({"task", "resume", id});
  ASSERT_EQ(resume.code, 0) << resume.Describe();
  EXPECT_EQ(env_->TaskStatus(id), "RUNNING");
  CommandResult still = Exec(id, "after", {"echo", "still here"});
  EXPECT_EQ(still.code, 0) << still.Describe();
  EXPECT_EQ(still.out, "still here\n");
  ASSERT_NO_FATAL_FAILURE(RemoveTask(id));
}

TEST_P(CtrTest, MetricsShowMemoryAndCpu) {
  std::string id = Id("metrics");
  ASSERT_NO_FATAL_FAILURE(StartDetached(id, {"sleep", "1000"}));
  CommandResult metrics = env_->Ctr({"task", "metrics", id});
  EXPECT_EQ(metrics.code, 0) << metrics.Describe();
  // cgroup v1 (this host's runc) prints memory.usage_in_bytes and
  // cpuacct.usage; cgroup v2 (hull's guest) memory.usage and cpu.usage_usec.
  EXPECT_TRUE(std::regex_search(metrics.out, std::regex("(^|\n)memory\\.[a-z_.]+ +[0-9]+")))
      << metrics.Describe();
  EXPECT_TRUE(std::regex_search(metrics.out, std::regex("(^|\n)cpu[a-z]*\\.usage[a-z_]* +[0-9]+")))
      << metrics.Describe();
  EXPECT_TRUE(Contains(metrics.out, "pids.current")) << metrics.Describe();
  ASSERT_NO_FATAL_FAILURE(RemoveTask(id));
}

TEST_P(CtrTest, PsListsThePids) {
  std::string id = Id("ps");
  ASSERT_NO_FATAL_FAILURE(StartDetached(id, {"sh", "-c", "sleep 1000 & sleep 1000"}));
  // sh forks its first sleep a moment after Start returns: poll briefly.
  CommandResult ps;
  int pids = 0;
  for (int attempt = 0; attempt < 50 && pids < 2; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(milliseconds(200));
    ps = env_->Ctr({"task", "ps", id});
    ASSERT_EQ(ps.code, 0) << ps.Describe();
    std::istringstream lines(ps.out);
    std::string line;
    std::getline(lines, line);
    ASSERT_TRUE(line.starts_with("PID")) << ps.Describe();
    pids = 0;
    while (std::getline(lines, line)) pids += std::regex_search(line, std::regex("^[0-9]+ "));
  }
  EXPECT_GE(pids, 2) << "sh and two sleeps, or two sleeps when sh execs the last one: "
                     << ps.Describe();
  ASSERT_NO_FATAL_FAILURE(RemoveTask(id));
}

TEST_P(CtrTest, StdinIsPipedIntoRun) {
  std::string data = "line one\nline two\n";
  for (int i = 0; data.size() < (256 << 10); ++i) data += "stdin block " + std::to_string(i) + "\n";
  CommandResult r = Run({"--rm"}, Id("stdin"), {"cat"}, data);
  EXPECT_EQ(r.code, 0) << r.err;
  // runc's shim sometimes drops the end of a --rm task's output under load
  // (a prefix arrives); runc is the reference here, hull is held to all of it.
  if (!runtime().is_hull && r.out.size() < data.size() && data.starts_with(r.out)) {
    std::fprintf(stderr, "runc delivered %zu of %zu bytes (its own race)\n", r.out.size(),
                 data.size());
    return;
  }
  EXPECT_EQ(r.out.size(), data.size());
  EXPECT_TRUE(r.out == data) << "cat did not echo stdin intact; first 200 bytes: "
                             << r.out.substr(0, 200);
  ExpectNoContainers();
}

TEST_P(CtrTest, TenMebibytesOfOutputArriveIntact) {
  // Random bytes, checksummed in the container and again here: loss,
  // duplication and reordering all show. (A shell-generated pattern would be
  // as good a check but takes 30 s to produce under TCG; this takes ~5.)
  constexpr size_t kSize = 10 << 20;
  CommandResult r = Run(
      {"--rm"}, Id("bulk"),
      {"sh", "-c",
       "head -c 10485760 /dev/urandom > /tmp/blob && sha256sum /tmp/blob >&2 && cat /tmp/blob"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.size(), kSize) << "output lost or duplicated";
  ASSERT_GE(r.err.size(), 64u) << r.err;
  CommandResult host_sum = RunCommand({"/usr/bin/sha256sum"}, r.out, seconds(60));
  ASSERT_EQ(host_sum.code, 0) << host_sum.Describe();
  EXPECT_EQ(host_sum.out.substr(0, 64), r.err.substr(0, 64))
      << "the bytes that arrived are not the bytes written";
  ExpectNoContainers();
}

TEST_P(CtrTest, TwoContainersRunAtOnce) {
  std::string a = Id("a"), b = Id("b");
  ASSERT_NO_FATAL_FAILURE(StartDetached(a, {"sleep", "1000"}));
  ASSERT_NO_FATAL_FAILURE(StartDetached(b, {"sleep", "1000"}));
  CommandResult in_a = Exec(a, "boot", {"cat", "/proc/sys/kernel/random/boot_id"});
  CommandResult in_b = Exec(b, "boot", {"cat", "/proc/sys/kernel/random/boot_id"});
  EXPECT_EQ(in_a.code, 0) << in_a.Describe();
  EXPECT_EQ(in_b.code, 0) << in_b.Describe();
  EXPECT_EQ(in_a.out.size(), 37u) << in_a.Describe();
  // The leftover checks must see what a running container holds, or their
  // silence after each case would mean nothing.
  int shims = 0, vms = 0;
  for (const std::string& p : env_->LeftoverProcesses()) {
    shims += Contains(p, "containerd-shim-");
    vms += Contains(p, "qemu-system");
  }
  EXPECT_GE(shims, runtime().is_hull ? 1 : 2) << "the process check does not see the shims";
  if (runtime().is_hull) {
    EXPECT_GE(vms, 2) << "the process check does not see both VMs";
    EXPECT_GE(env_->LeftoverState().size(), 2u)
        << "nothing of either sandbox in " << env_->hull_run_dir();
  }
  if (runtime().is_hull) {
    EXPECT_NE(in_a.out, in_b.out)
        << "hull runs each container in a VM of its own: two kernels, two boot ids";
  } else {
    EXPECT_EQ(in_a.out, in_b.out) << "runc containers share the host kernel";
  }
  ASSERT_NO_FATAL_FAILURE(RemoveTask(a));
  ASSERT_NO_FATAL_FAILURE(RemoveTask(b));
}

TEST_P(CtrTest, BindMountsHonourReadOnlyAndReadWrite) {
  std::string ro = env_->dir() + "/bind-ro", rw = env_->dir() + "/bind-rw";
  ASSERT_TRUE(MakeDirs(ro));
  ASSERT_TRUE(MakeDirs(rw));
  ASSERT_TRUE(WriteFile(ro + "/in.txt", "from the host\n"));
  ASSERT_TRUE(WriteFile(rw + "/host.txt", "host file on rw\n"));
  CommandResult r =
      Run({"--rm", "--mount", "type=bind,src=" + ro + ",dst=/ro,options=rbind:ro", "--mount",
           "type=bind,src=" + rw + ",dst=/rw,options=rbind:rw"},
          Id("bind"),
          {"sh", "-c",
           "cat /ro/in.txt; cat /rw/host.txt; "
           "if echo x > /ro/new; then echo ro-write-succeeded; else echo ro-write-refused; fi; "
           "echo from the container > /rw/out.txt && echo rw-write-ok"});
  EXPECT_EQ(r.code, 0) << r.Describe();
  EXPECT_EQ(r.out, "from the host\nhost file on rw\nro-write-refused\nrw-write-ok\n")
      << r.Describe();
  EXPECT_FALSE(PathExists(ro + "/new"));
  EXPECT_EQ(ReadFile(rw + "/out.txt").value_or("(missing)"), "from the container\n")
      << "a write to a rw bind must land on the host";
  ExpectNoContainers();
}

TEST_P(CtrTest, RunWithRootfsDirectory) {
  std::string rootfs = env_->dir() + "/rootfs";
  auto made = MakeBusyboxRootfs(rootfs);
  ASSERT_TRUE(made) << made.error().ToString();
  CommandResult r = Run(
      {"--rm", "--rootfs"}, Id("rootfs"),
      // No image config, so no PATH in the environment: the
      // shell by path (busybox ash has a default PATH).
      {"/bin/sh", "-c", "echo rootfs-ok; ls /bin/busybox; echo written > /written"}, "", rootfs);
  EXPECT_EQ(r.code, 0) << r.Describe();
  EXPECT_EQ(r.out, "rootfs-ok\n/bin/busybox\n") << r.Describe();
  EXPECT_EQ(ReadFile(rootfs + "/written").value_or("(missing)"), "written\n")
      << "writes land in the rootfs dir";
  ExpectNoContainers();
}

TEST_P(CtrTest, ContainerdRestartKeepsTheTask) {
  std::string id = Id("restart");
  ASSERT_NO_FATAL_FAILURE(StartDetached(id, {"sleep", "1000"}));
  env_->Kill();
  auto restarted = env_->Restart();
  ASSERT_TRUE(restarted) << restarted.error().ToString();
  EXPECT_TRUE(WaitForStatus(id, "RUNNING"))
      << "after the restart " << id << " is \"" << env_->TaskStatus(id) << "\"";
  CommandResult exec = Exec(id, "after-restart", {"echo", "reconnected"});
  EXPECT_EQ(exec.code, 0) << exec.Describe();
  EXPECT_EQ(exec.out, "reconnected\n");
  ASSERT_NO_FATAL_FAILURE(RemoveTask(id));
}

// containerd killed while a `ctr run -d` is creating the task (its VM is
// starting: a clone, and a cold boot, which leaves the create in flight for
// seconds) and started again: the reloaded shim answers for the task, which
// ctr sees and deletes, and then nothing is left. (runc's shim does not: the
// task is lost to ctr and the shim lives on.)
TEST_P(CtrTest, ContainerdRestartDuringCreateLeavesATaskThatCleansUp) {
  if (!runtime().is_hull) GTEST_SKIP() << "hull only: runc's shim leaks here (seen)";
  std::string cold_config = env_->dir() + "/cold-hull.toml";
  ASSERT_TRUE(
      WriteFile(cold_config, ReadFile(env_->hull_config()).value_or("") + "template = false\n"));
  for (const std::string& config : {env_->hull_config(), cold_config}) {
    std::string id = Id(config == cold_config ? "restart-cold" : "restart-clone");
    SCOPED_TRACE(id);
    CommandResult run;
    std::thread runner([&] {
      run = Run({"-d", "--runtime-config-path", config}, id, {"sleep", "1000"});
    });
    bool came = false;  // the moment: the task's VM is starting
    for (int i = 0; i < 2000 && !came; ++i) {
      came = HullProcess(testlib::kQemuPath) != 0;
      if (!came) std::this_thread::sleep_for(milliseconds(5));
    }
    env_->Kill();
    runner.join();
    ASSERT_TRUE(came) << "the VM never started: " << run.Describe();
    auto restarted = env_->Restart();
    ASSERT_TRUE(restarted) << restarted.error().ToString();
    // The task is there: created (or still being created).
    std::string status;
    for (int i = 0; i < 300; ++i) {
      status = env_->TaskStatus(id);
      if (status == "CREATED") break;
      std::this_thread::sleep_for(milliseconds(100));
    }
    EXPECT_EQ(status, "CREATED");
    CommandResult rm = env_->Ctr({"task", "rm", "-f", id});
    EXPECT_EQ(rm.code, 0) << rm.Describe();
    CommandResult crm = env_->Ctr({"containers", "rm", id});
    EXPECT_EQ(crm.code, 0) << crm.Describe();
    ExpectNoContainers();
    EXPECT_EQ(env_->WaitForNoLeftovers(seconds(10)), "");
  }
}

TEST_P(CtrTest, BrokenCommandOrImageFailsClearly) {
  CommandResult missing_program = Run({"--rm"}, Id("noexec"), {"/no-such-program"});
  EXPECT_NE(missing_program.code, 0) << missing_program.Describe();
  EXPECT_TRUE(Contains(missing_program.err, "no-such-program")) << missing_program.Describe();
  EXPECT_TRUE(Contains(Lower(missing_program.err), "no such file")) << missing_program.Describe();

  CommandResult missing_image =
      Run({"--rm"}, Id("noimage"), {"true"}, "", "docker.io/hull-test/missing:latest");
  EXPECT_NE(missing_image.code, 0) << missing_image.Describe();
  EXPECT_TRUE(Contains(missing_image.err, "not found")) << missing_image.Describe();
  ExpectNoContainers();
}

TEST_P(CtrTest, BadRuntimeConfigNamesTheKey) {
  if (!runtime().is_hull) GTEST_SKIP() << "hull only: the file is hull's config, runc reads none";
  std::string config = env_->dir() + "/bad-hull.toml";
  // run_dir keeps any state of the failed start inside this test's dir.
  ASSERT_TRUE(WriteFile(config, "[runtime]\nrun_dir = \"" + env_->hull_run_dir() +
                                    "\"\n"
                                    "[hypervisor]\nvcpus = \"two\"\n"));
  CommandResult r = Run({"--rm", "--runtime-config-path", config}, Id("badcfg"), {"true"});
  EXPECT_NE(r.code, 0) << r.Describe();
  EXPECT_TRUE(Contains(r.err, "hypervisor.vcpus")) << r.Describe();
  ExpectNoContainers();
}

// The shim with backend = "libvirt" in its config: the same container, its
// VM a transient domain of a private libvirtd. Run, exec, exit code, and the
// domain gone afterwards.
TEST_P(CtrTest, LibvirtBackendByConfig) {
  if (!runtime().is_hull) GTEST_SKIP() << "hull only: the backend is hull's config";
  if (!IsExecutable("/usr/sbin/libvirtd"))
    GTEST_SKIP() << "libvirtd is not installed (libvirt-daemon-system)";
  auto libvirtd = testing::PrivateLibvirtd::Start(env_->dir() + "/libvirt", env_->hull_run_dir(),
                                                  HULL_LIBVIRT_CACHE);
  if (!libvirtd && libvirtd.error().code() == ErrorCode::kUnavailable)
    GTEST_SKIP() << libvirtd.error().ToString();
  ASSERT_TRUE(libvirtd) << libvirtd.error().ToString();
  std::string config = env_->dir() + "/libvirt-hull.toml";
  ASSERT_TRUE(WriteFile(config, "[runtime]\nrun_dir = \"" + env_->hull_run_dir() +
                                    "\"\n"
                                    "[hypervisor]\nbackend = \"libvirt\"\nlibvirt_uri = \"" +
                                    (*libvirtd)->uri() + "\"\n"));
  std::string id = Id("lv");
  CommandResult run = Run({"-d", "--runtime-config-path", config}, id, {"sh", "-c", "sleep 600"});
  ASSERT_EQ(run.code, 0) << run.Describe() << "\n" << (*libvirtd)->LogTail();
  EXPECT_EQ((*libvirtd)->Domains().size(), 1u);
  CommandResult exec = Exec(id, "lvexec", {"sh", "-c", "echo via libvirt; exit 4"});
  EXPECT_EQ(exec.code, 4) << exec.Describe();
  EXPECT_TRUE(Contains(exec.out, "via libvirt")) << exec.Describe();
  RemoveTask(id);
  EXPECT_TRUE((*libvirtd)->Domains().empty()) << "the pod's domain outlived its last container";
}

// The shim dies (SIGKILL): containerd runs `<shim> delete`, which must take
// down what the shim left (for hull: its VM, virtiofsd, mounts and run_dir).
TEST_P(CtrTest, KilledShimIsCleanedUpByDelete) {
  std::string id = Id("shimkill");
  ASSERT_NO_FATAL_FAILURE(StartDetached(id, {"sleep", "1000"}));
  pid_t shim = env_->ShimPid(id);
  ASSERT_NE(shim, 0) << "no shim process for " << id;
  ASSERT_EQ(::kill(shim, SIGKILL), 0);
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    gone = !Contains(env_->Ctr({"task", "ls", "-q"}).out, id);
  }
  EXPECT_TRUE(gone) << "containerd still lists the task of the killed shim";
  CommandResult crm = env_->Ctr({"containers", "rm", id});
  EXPECT_EQ(crm.code, 0) << crm.Describe();
  ExpectNoContainers();
  // `ctr run -d` made FIFOs that only `ctr task delete` would remove; with the
  // task gone underneath it (runc and hull alike) they are the client's to
  // clean, not a runtime's leftover.
  std::error_code ec;
  for (const auto& dir : std::filesystem::directory_iterator("/run/containerd/fifo", ec)) {
    if (PathExists(dir.path().string() + "/" + id + "-stdout"))
      std::filesystem::remove_all(dir.path(), ec);
  }
}

// The VM is killed from outside (hull only): the container's processes are
// reported as exited (255), and the task can be deleted with nothing left.
TEST_P(CtrTest, KilledVmIsReportedAsAnExit) {
  if (!runtime().is_hull) GTEST_SKIP() << "hull only: runc has no VM";
  std::string id = Id("vmkill");
  ASSERT_NO_FATAL_FAILURE(StartDetached(id, {"sleep", "1000"}));
  pid_t qemu = HullProcess(testlib::kQemuPath);
  ASSERT_NE(qemu, 0) << "no QEMU under " << env_->hull_run_dir();
  ASSERT_EQ(::kill(qemu, SIGKILL), 0);
  ASSERT_NO_FATAL_FAILURE(ExpectStoppedAndRemovable(id));
}

// A ctr task's QEMU and virtiofsd run in a host cgroup of hull's,
// <host_cgroup_parent>/<id>, bounded to the guest's RAM plus the configured
// overhead (512 + 384 MiB by default, and under TCG QEMU's translation cache)
// and 1024 tasks; it goes with the task.
TEST_P(CtrTest, VmRunsInABoundedHostCgroup) {
  if (!runtime().is_hull) GTEST_SKIP() << "hull only: runc's limits are the container's own";
  std::string id = Id("bounded");
  ASSERT_NO_FATAL_FAILURE(StartDetached(id, {"sleep", "1000"}));
  std::string memory_dir, pids_dir;
  for (const std::string& binary : {std::string(testlib::kQemuPath), std::string(kVirtiofsdPath)}) {
    pid_t pid = HullProcess(binary);
    ASSERT_NE(pid, 0) << "no " << binary << " under " << env_->hull_run_dir();
    std::istringstream lines(
        ReadFile("/proc/" + std::to_string(pid) + "/cgroup", 1 << 16).value_or(""));
    for (std::string line; std::getline(lines, line);) {
      // "N:memory:/hull/<id>" (v1) or "0::/hull/<id>" (v2)
      std::string controllers = line.substr(line.find(':') + 1);
      std::string path = controllers.substr(controllers.find(':') + 1);
      controllers = controllers.substr(0, controllers.find(':'));
      if (controllers == "memory") memory_dir = "/sys/fs/cgroup/memory" + path;
      if (controllers == "pids") pids_dir = "/sys/fs/cgroup/pids" + path;
      if (controllers.empty() && memory_dir.empty() &&
          PathExists("/sys/fs/cgroup" + path + "/memory.max")) {
        memory_dir = pids_dir = "/sys/fs/cgroup" + path;
      }
    }
    EXPECT_EQ(memory_dir, memory_dir.substr(0, memory_dir.rfind('/')) + "/" + id)
        << binary << " is not in the task's host cgroup";
  }
  std::string memory_limit = ReadFile(memory_dir + "/memory.limit_in_bytes", 64)
                                 .value_or(ReadFile(memory_dir + "/memory.max", 64).value_or(""));
  // Under TCG QEMU's 1 GiB translation cache counts too.
  const bool tcg = !testlib::ProcessesWithArgument(" -accel tcg", testlib::kQemuPath).empty();
  const int tcg_cache_mib = tcg ? 1024 : 0;
  EXPECT_EQ(memory_limit, std::to_string((512 + 384 + tcg_cache_mib) << 20) + "\n");
  EXPECT_EQ(ReadFile(pids_dir + "/pids.max", 64).value_or(""), "1024\n");
  ASSERT_NO_FATAL_FAILURE(RemoveTask(id));
  EXPECT_FALSE(PathExists(memory_dir)) << "the host cgroup outlived the task";
}

// virtiofsd serves the container's root filesystem: its death is the VM's,
// and the task ends as if the VM had been killed. Every cleanup step works
// and nothing is left (TearDown's leftover check).
TEST_P(CtrTest, KilledVirtiofsdEndsTheTask) {
  if (!runtime().is_hull) GTEST_SKIP() << "hull only: runc has no virtiofsd";
  std::string id = Id("fskill");
  ASSERT_NO_FATAL_FAILURE(StartDetached(id, {"sleep", "1000"}));
  pid_t virtiofsd = HullProcess(kVirtiofsdPath);
  ASSERT_NE(virtiofsd, 0) << "no virtiofsd under " << env_->hull_run_dir();
  ASSERT_EQ(::kill(virtiofsd, SIGKILL), 0);
  ASSERT_NO_FATAL_FAILURE(ExpectStoppedAndRemovable(id));
  // An exec now is refused at once: the task is stopped.
  CommandResult exec = Exec(id, "late", {"true"});
  EXPECT_NE(exec.code, 0) << exec.Describe();
}

// virtiofsd killed while the VM starts (as soon as QEMU and virtiofsd both
// run) and while the container is being created in the guest (its root
// filesystem is shared), for a clone and for a cold boot: `ctr run -d`
// returns -- with the task created and then stopped, or with an error naming
// virtiofsd -- and cleanup leaves nothing.
TEST_P(CtrTest, VirtiofsdKilledDuringCreateNeitherHangsNorLeaks) {
  if (!runtime().is_hull) GTEST_SKIP() << "hull only: runc has no virtiofsd";
  std::string cold_config = env_->dir() + "/cold-hull.toml";
  ASSERT_TRUE(
      WriteFile(cold_config, ReadFile(env_->hull_config()).value_or("") + "template = false\n"));
  for (const std::string& config : {env_->hull_config(), cold_config})
    for (bool at_create : {false, true}) {
      std::string id = Id(std::string(config == cold_config ? "cold" : "clone") +
                          (at_create ? "-create" : "-boot"));
      SCOPED_TRACE(id);
      auto moment_came = [&] {
        if (at_create)
          return PathExists(env_->hull_run_dir() + "/" + id + "/vm/shared/" + id + "/rootfs");
        return HullProcess(testlib::kQemuPath) != 0;
      };
      std::atomic<bool> done{false};
      std::atomic<pid_t> killed{0};
      std::thread killer([&] {
        while (!done && killed == 0) {
          pid_t virtiofsd = HullProcess(kVirtiofsdPath);
          if (virtiofsd != 0 && moment_came() && ::kill(virtiofsd, SIGKILL) == 0) {
            killed = virtiofsd;
          }
          std::this_thread::sleep_for(milliseconds(5));
        }
      });
      CommandResult run = Run({"-d", "--runtime-config-path", config}, id, {"sleep", "1000"});
      done = true;
      killer.join();
      ASSERT_NE(killed, 0) << "the moment never came: " << run.Describe();
      pid_t serving = HullProcess(kVirtiofsdPath);
      if (run.code == 0 && serving != 0 && serving != killed) {
        // The kill hit a clone that then failed to start, and a booted VM with
        // a virtiofsd of its own took over: the task runs.
        std::cerr << id << ": the VM was replaced\n";
        EXPECT_EQ(Exec(id, "alive", {"true"}).code, 0);
        ASSERT_NO_FATAL_FAILURE(RemoveTask(id));
        ExpectNoContainers();
      } else if (run.code == 0) {
        // Created before the kill took effect: the task ends by itself.
        std::cerr << id << ": created, then stopped\n";
        ASSERT_NO_FATAL_FAILURE(ExpectStoppedAndRemovable(id));
      } else {
        EXPECT_TRUE(Contains(run.err, "virtiofsd")) << run.Describe();
        std::cerr << id << ": ctr run failed: " << run.err << "\n";
        (void)env_->Ctr({"task", "rm", "-f", id});
        CommandResult crm = env_->Ctr({"containers", "rm", id});
        EXPECT_EQ(crm.code, 0) << crm.Describe();
        ExpectNoContainers();
      }
      EXPECT_EQ(env_->WaitForNoLeftovers(seconds(10)), "");
    }
}

// `ctr events` sees the task's events in containerd's order, with real
// timestamps: create < start < exec-added < exec-started < exit(exec) <
// paused < resumed < exit(init) < delete.
TEST_P(CtrTest, EventsArriveInOrder) {
  std::string id = Id("events");
  CommandResult events;
  std::thread watcher([&] { events = env_->Ctr({"events"}, "", seconds(120)); });
  // `ctr events` subscribes asynchronously: give it a moment.
  std::this_thread::sleep_for(milliseconds(500));
  ASSERT_NO_FATAL_FAILURE(StartDetached(id, {"sleep", "1000"}));
  CommandResult exec = Exec(id, "ev", {"true"});
  EXPECT_EQ(exec.code, 0) << exec.Describe();
  EXPECT_EQ(env_->Ctr({"task", "pause", id}).code, 0);
  EXPECT_EQ(env_->Ctr({"task", "resume", id}).code, 0);
  ASSERT_NO_FATAL_FAILURE(RemoveTask(id));
  std::this_thread::sleep_for(seconds(1));
  // Stop the watcher: the `ctr ... events` process of this containerd.
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = ReadFile(entry.path().string() + "/cmdline", 1 << 16).value_or("");
    if (cmdline.starts_with(kCtr) && Contains(cmdline, env_->dir()) &&
        Contains(cmdline, std::string("events") + '\0')) {
      ::kill(std::stoi(name), SIGTERM);
    }
  }
  watcher.join();
  std::vector<std::string> topics;
  std::istringstream lines(events.out);
  for (std::string line; std::getline(lines, line);) {
    if (!Contains(line, id) || !Contains(line, " /tasks/")) continue;
    EXPECT_FALSE(Contains(line, "0001-01-01")) << "zero timestamp: " << line;
    std::string topic = line.substr(line.find(" /tasks/") + 1);
    topic = topic.substr(0, topic.find(' '));
    // The exec's own exit, told apart from init's by its id.
    if ((topic == "/tasks/exit" || topic == "/tasks/delete") && Contains(line, Id("ev")))
      topic += "(exec)";
    topics.push_back(topic);
  }
  std::vector<std::string> expected = {
      "/tasks/create",       "/tasks/start",      "/tasks/exec-added",
      "/tasks/exec-started", "/tasks/exit(exec)", "/tasks/paused",
      "/tasks/resumed",      "/tasks/exit",       "/tasks/delete"};
  // runc publishes no delete for an exec, hull does (a SHOULD): only the
  // order of the expected ones counts.
  std::vector<std::string> seen;
  for (const auto& topic : topics) {
    if (std::find(expected.begin(), expected.end(), topic) != expected.end()) seen.push_back(topic);
  }
  EXPECT_EQ(seen, expected) << events.out;
  ExpectNoContainers();
}

// `ctr run --log-uri file:///PATH`: stdout and stderr land in the file.
TEST_P(CtrTest, FileLogUriCollectsBothStreams) {
  std::string id = Id("logfile");
  std::string log = env_->dir() + "/" + id + ".log";
  CommandResult r =
      Run({"--rm", "--log-uri", "file://" + log}, id, {"sh", "-c", "echo to-out; echo to-err >&2"});
  EXPECT_EQ(r.code, 0) << r.Describe();
  std::string text = ReadFile(log).value_or("");
  // runc's shim may still be copying into the log when ctr returns (seen on
  // a loaded machine: to-err missing); hull writes everything before it
  // reports the exit, so for hull the first read must have it all.
  for (int i = 0; i < 200 && !runtime().is_hull && !Contains(text, "to-err\n"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    text = ReadFile(log).value_or("");
  }
  EXPECT_TRUE(Contains(text, "to-out\n")) << text;
  if (!runtime().is_hull && !Contains(text, "to-err\n")) {
    // Seen under load: runc's shim exited without copying stderr at all.
    std::fprintf(stderr, "runc's shim lost stderr (its own race); log: %s\n", text.c_str());
  } else {
    EXPECT_TRUE(Contains(text, "to-err\n")) << text;
  }
  ExpectNoContainers();
}

INSTANTIATE_TEST_SUITE_P(Runtimes, CtrTest, ::testing::Values(kRunc, kHull),
                         [](const ::testing::TestParamInfo<Runtime>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace hull::testing
