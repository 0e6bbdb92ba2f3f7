// The container engine in a real guest, driven through the agent API as the
// shim drives it: exec, pause/resume, stats, OOM, signals, terminals, flow
// control, removal and stdin -- what `hullctl run` does not exercise.
//
// One VM per test suite run (under ctest: per test); each test makes its own
// containers and removes them.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <iostream>
#include <sstream>
#include <thread>

#include "bundle.h"
#include "hull/core/syscall.h"
#include "sandbox_vm.h"
#include "testlib.h"

namespace hull {
namespace {

namespace v1 = agent::v1;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::SandboxVm;

std::string Describe(const grpc::Status& status) {
  return std::to_string(static_cast<int>(status.error_code())) + ": " + status.error_message();
}

// An RPC's status must be OK; the failure names the call and the status.
#define HULL_RPC_OK_IMPL(check, expr)                                      \
  do {                                                                     \
    grpc::Status hull_status_ = (expr);                                    \
    check(hull_status_.ok()) << #expr << " -> " << Describe(hull_status_); \
  } while (0)
#define ASSERT_RPC_OK(expr) HULL_RPC_OK_IMPL(ASSERT_TRUE, expr)
#define EXPECT_RPC_OK(expr) HULL_RPC_OK_IMPL(EXPECT_TRUE, expr)

v1::ProcessIo Io(bool stdin, bool stdout, bool stderr) {
  v1::ProcessIo io;
  io.set_stdin(stdin);
  io.set_stdout(stdout);
  io.set_stderr(stderr);
  return io;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

// Polls `condition` every 50 ms until it holds or `timeout` passes.
template <typename F>
bool Eventually(F condition, milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return true;
}

class EngineVmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One boot for the suite: the reason is kept and each test skips with it.
    skip_reason_ = testlib::MissingRoot("virtiofsd shares the container root filesystems");
    if (skip_reason_.empty()) skip_reason_ = testlib::MissingQemu();
    if (skip_reason_.empty())
      skip_reason_ = testlib::MissingBinary(testing::kBusybox, "busybox-static");
    if (!skip_reason_.empty()) return;
    run_dir_ = ::testing::TempDir() + "/hull-engine-" + RandomHex(4);
    if (auto made = MakeDirs(run_dir_); !made) {
      boot_error_ = made.error().ToString();
      return;
    }
    auto vm = SandboxVm::Boot({.guest_dir = HULL_GUEST_DIR, .run_dir = run_dir_});
    if (!vm) {
      boot_error_ = vm.error().ToString();
      return;
    }
    vm_ = std::move(*vm).release();
  }

  static void TearDownTestSuite() {
    delete vm_;
    vm_ = nullptr;
    if (!run_dir_.empty()) (void)RemoveTree(run_dir_);
  }

  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_NE(vm_, nullptr) << boot_error_;
  }

  void TearDown() override {
    if (vm_ == nullptr) return;
    for (const auto& id : containers_) {
      auto status = vm_->RemoveContainer(id, true);
      EXPECT_TRUE(status.ok() || status.error_code() == grpc::StatusCode::NOT_FOUND)
          << "remove " << id << ": " << Describe(status);
    }
    if (HasFailure()) {
      std::string console = vm_->Console();
      if (console.size() > 6000) console = "..." + console.substr(console.size() - 6000);
      std::cerr << "--- guest console (tail) ---\n" << console << "\n";
    }
  }

  // A fresh container id, removed (force) after the test.
  std::string NewId(const std::string& prefix) {
    std::string id = prefix + "-" + RandomHex(3);
    containers_.push_back(id);
    return id;
  }

  SandboxVm& vm() { return *vm_; }

  static inline SandboxVm* vm_ = nullptr;
  static inline std::string run_dir_;
  static inline std::string skip_reason_;
  static inline std::string boot_error_;
  std::vector<std::string> containers_;
};

// --- exec --------------------------------------------------------------------------

TEST_F(EngineVmTest, ExecRunsInTheContainersNamespacesCgroupAndHostname) {
  std::string id = NewId("exec");
  oci::Spec spec = testing::TestSpec({"sh", "-c", "echo $$ > /tmp/init; exec sleep 600"});
  spec.hostname = "box";
  spec.process->env.push_back("FOO=bar");
  ASSERT_RPC_OK(vm().RunContainer(id, spec, Io(false, false, false)));
  std::string init_file = vm().HostRootfs(id) + "/tmp/init";
  ASSERT_TRUE(Eventually([&] { return !ReadFile(init_file).value_or("").empty(); }, seconds(30)));
  EXPECT_EQ(ReadFile(init_file).value_or(""), "1\n") << "init is PID 1 of its pid namespace";

  // Exec processes get the environment the request gives (as runc exec).
  ASSERT_RPC_OK(
      vm().Exec(id, "e1", spec,
                {"sh", "-c",
                 "hostname; echo $FOO; for ns in 1/ns/pid self/ns/pid 1/ns/mnt self/ns/mnt; do "
                 "readlink /proc/$ns; done; cat /proc/self/cgroup; cat /proc/1/cgroup"},
                Io(false, true, true), spec.process->env));
  testing::OutputReader out(vm().api(), id, "e1", sandbox::OutputStream::kStdout);
  testing::OutputReader err(vm().api(), id, "e1", sandbox::OutputStream::kStderr);
  v1::WaitProcessResponse exited;
  ASSERT_RPC_OK(vm().Wait(id, "e1", &exited));
  EXPECT_EQ(exited.exit_status(), 0);
  ASSERT_TRUE(out.WaitForEnd(seconds(10)));
  ASSERT_TRUE(err.WaitForEnd(seconds(10)));
  EXPECT_TRUE(out.status()) << out.status().error().ToString();
  EXPECT_EQ(err.text(), "");

  auto lines = Lines(out.text());
  ASSERT_EQ(lines.size(), 8u) << out.text();
  EXPECT_EQ(lines[0], "box");
  EXPECT_EQ(lines[1], "bar");
  EXPECT_TRUE(lines[2].starts_with("pid:[")) << lines[2];
  EXPECT_EQ(lines[2], lines[3]) << "exec shares init's pid namespace";
  EXPECT_TRUE(lines[4].starts_with("mnt:[")) << lines[4];
  EXPECT_EQ(lines[4], lines[5]) << "exec shares init's mount namespace";
  EXPECT_EQ(lines[6], lines[7]) << "exec is in init's cgroup";
  EXPECT_NE(lines[6].find(id), std::string::npos) << "the container's own cgroup: " << lines[6];
}

TEST_F(EngineVmTest, ExecErrorsFollowRunc) {
  std::string id = NewId("execerr");
  oci::Spec spec = testing::TestSpec({"sleep", "600"});
  ASSERT_RPC_OK(vm().RunContainer(id, spec, Io(false, false, false)));

  // A missing binary: runc's message, NOT_FOUND, and the exec's exit is 127.
  auto missing = vm().Exec(id, "missing", spec, {"no-such-binary"}, Io(false, true, true));
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(missing);
  EXPECT_NE(
      missing.error_message().find("exec: \"no-such-binary\": executable file not found in $PATH"),
      std::string::npos)
      << missing.error_message();
  v1::WaitProcessResponse exited;
  ASSERT_RPC_OK(vm().Wait(id, "missing", &exited));
  EXPECT_EQ(exited.exit_status(), 127);

  // A taken exec id.
  ASSERT_RPC_OK(vm().Exec(id, "twice", spec, {"true"}, Io(false, false, false)));
  auto duplicate = vm().Exec(id, "twice", spec, {"true"}, Io(false, false, false));
  EXPECT_EQ(duplicate.error_code(), grpc::StatusCode::ALREADY_EXISTS) << Describe(duplicate);
  ASSERT_RPC_OK(vm().Wait(id, "twice", &exited));
  EXPECT_EQ(exited.exit_status(), 0);

  // A stopped container.
  std::string stopped = NewId("stopped");
  ASSERT_RPC_OK(vm().RunContainer(stopped, testing::TestSpec({"sh", "-c", "exit 3"}),
                                  Io(false, false, false)));
  ASSERT_RPC_OK(vm().Wait(stopped, "", &exited));
  EXPECT_EQ(exited.exit_status(), 3);
  auto late = vm().Exec(stopped, "late", spec, {"true"}, Io(false, false, false));
  EXPECT_EQ(late.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << Describe(late);
}

// --- pause / resume ------------------------------------------------------------------

TEST_F(EngineVmTest, PauseFreezesTheContainerAndResumeThawsIt) {
  std::string id = NewId("pause");
  oci::Spec spec = testing::TestSpec(
      {"sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done"});
  ASSERT_RPC_OK(vm().RunContainer(id, spec, Io(false, false, false)));
  // The rootfs is a host directory: the guest's writes land here at once.
  std::string counter_file = vm().HostRootfs(id) + "/tmp/counter";
  auto counter = [&] {
    // The shell truncates, then writes: an empty read is a torn sample.
    std::string text;
    for (int i = 0; i < 20 && text.empty(); ++i) {
      text = ReadFile(counter_file).value_or("");
      if (text.empty()) std::this_thread::sleep_for(milliseconds(20));
    }
    return text.empty() ? -1 : std::stoi(text);
  };
  ASSERT_TRUE(Eventually([&] { return counter() >= 3; }, seconds(30)))
      << "the counter never advanced";

  v1::PauseContainerRequest pause;
  pause.set_container_id(id);
  v1::PauseContainerResponse paused;
  ASSERT_RPC_OK(
      vm().agent().PauseContainer(testing::ContextWithTimeout(seconds(30)).get(), pause, &paused));
  std::string frozen_before = ReadFile(counter_file).value_or("");
  std::this_thread::sleep_for(seconds(2));
  std::string frozen_after = ReadFile(counter_file).value_or("");
  EXPECT_EQ(frozen_before, frozen_after) << "the counter advanced while paused";

  auto exec = vm().Exec(id, "while-paused", spec, {"cat", "/tmp/counter"}, Io(false, true, false));
  EXPECT_EQ(exec.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << Describe(exec);
  auto again =
      vm().agent().PauseContainer(testing::ContextWithTimeout(seconds(30)).get(), pause, &paused);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << Describe(again);

  int before = std::stoi(frozen_after.empty() ? "0" : frozen_after);
  v1::ResumeContainerRequest resume;
  resume.set_container_id(id);
  v1::ResumeContainerResponse resumed;
  ASSERT_RPC_OK(vm().agent().ResumeContainer(testing::ContextWithTimeout(seconds(30)).get(), resume,
                                             &resumed));
  EXPECT_TRUE(Eventually([&] { return counter() > before + 2; }, seconds(10)))
      << "the counter stayed at " << before;

  // Running again: exec works. (Its output must be read: WaitProcess
  // returns only once the output is delivered.)
  ASSERT_RPC_OK(
      vm().Exec(id, "after-resume", spec, {"cat", "/tmp/counter"}, Io(false, true, false)));
  testing::OutputReader out(vm().api(), id, "after-resume", sandbox::OutputStream::kStdout);
  v1::WaitProcessResponse exited;
  ASSERT_RPC_OK(vm().Wait(id, "after-resume", &exited));
  EXPECT_EQ(exited.exit_status(), 0);
  ASSERT_TRUE(out.WaitForEnd(seconds(10)));
  EXPECT_GT(std::atoi(out.text().c_str()), before) << out.text();
}

// --- stats -----------------------------------------------------------------------

TEST_F(EngineVmTest, StatsOfABusyContainer) {
  std::string id = NewId("stats");
  ASSERT_RPC_OK(vm().RunContainer(id, testing::TestSpec({"sh", "-c", "while true; do :; done"}),
                                  Io(false, false, false)));
  std::this_thread::sleep_for(seconds(1));
  v1::StatsContainerRequest request;
  request.set_container_id(id);
  v1::StatsContainerResponse stats;
  ASSERT_RPC_OK(
      vm().agent().StatsContainer(testing::ContextWithTimeout(seconds(30)).get(), request, &stats));
  EXPECT_GT(stats.cpu().usage_usec(), 0u);
  EXPECT_GT(stats.memory().usage_bytes(), 0u);
  EXPECT_GE(stats.pids().current(), 1u);
  EXPECT_GT(stats.timestamp_ns(), 0u);

  request.set_container_id("no-such-container");
  auto missing =
      vm().agent().StatsContainer(testing::ContextWithTimeout(seconds(30)).get(), request, &stats);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(missing);
}

TEST_F(EngineVmTest, UpdateChangesTheLimitsOfARunningContainer) {
  std::string id = NewId("update");
  ASSERT_RPC_OK(
      vm().RunContainer(id, testing::TestSpec({"sleep", "600"}), Io(false, false, false)));
  v1::UpdateContainerRequest update;
  update.set_container_id(id);
  update.set_linux_resources_json(R"({"pids": {"limit": 42}, "memory": {"limit": 100663296}})");
  v1::UpdateContainerResponse updated;
  ASSERT_RPC_OK(vm().agent().UpdateContainer(testing::ContextWithTimeout(seconds(30)).get(), update,
                                             &updated));
  v1::StatsContainerRequest request;
  request.set_container_id(id);
  v1::StatsContainerResponse stats;
  ASSERT_RPC_OK(
      vm().agent().StatsContainer(testing::ContextWithTimeout(seconds(30)).get(), request, &stats));
  EXPECT_EQ(stats.pids().limit(), 42u);
  EXPECT_EQ(stats.memory().limit_bytes(), 100663296u);

  update.set_linux_resources_json(R"({"pids": {"limit": "many"}})");
  auto bad = vm().agent().UpdateContainer(testing::ContextWithTimeout(seconds(30)).get(), update,
                                          &updated);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(bad);
  EXPECT_NE(bad.error_message().find("linux.resources.pids.limit"), std::string::npos)
      << Describe(bad);
}

// --- OOM ---------------------------------------------------------------------------

TEST_F(EngineVmTest, OomKillIsAnEventAndTheExitSaysSo) {
  std::string id = NewId("oom");
  oci::Spec spec = testing::TestSpec({"sh", "-c", "x=a; while true; do x=$x$x; done"});
  oci::Resources resources;
  oci::MemoryResources memory;
  memory.limit = 32ll << 20;
  resources.memory = memory;
  spec.linux->resources = resources;
  ASSERT_RPC_OK(vm().CreateContainer(id, spec, Io(false, false, false)));

  grpc::ClientContext events_context;
  auto events = vm().agent().OomEvents(&events_context, v1::OomEventsRequest());
  std::promise<std::string> first_event;
  std::thread events_thread([&] {
    v1::OomEvent event;
    bool delivered = false;
    while (events->Read(&event)) {
      if (!delivered && event.container_id() == id) {
        first_event.set_value(event.container_id());
        delivered = true;
      }
    }
    (void)events->Finish();
    if (!delivered) first_event.set_value("");
  });
  auto cancel_events = [&] {
    events_context.TryCancel();
    events_thread.join();
  };
  // The subscription is in place once the agent has the request; give it a moment.
  std::this_thread::sleep_for(milliseconds(300));

  ASSERT_RPC_OK(vm().StartContainer(id));
  // Waiting from the start, as a shim does: the exit must still say OOM.
  auto waited = std::async(std::launch::async, [&] {
    v1::WaitProcessResponse response;
    auto status = vm().Wait(id, "", &response, seconds(90));
    return std::make_pair(status, response);
  });
  auto event = first_event.get_future();
  bool got_event = event.wait_for(seconds(90)) == std::future_status::ready && event.get() == id;
  EXPECT_TRUE(got_event) << "no OOM event for " << id;
  auto [status, exited] = waited.get();
  cancel_events();
  ASSERT_RPC_OK(status);
  EXPECT_EQ(exited.exit_status(), 137);
  EXPECT_EQ(exited.signal(), static_cast<uint32_t>(SIGKILL));
  EXPECT_TRUE(exited.oom_killed());

  v1::StatsContainerRequest request;
  request.set_container_id(id);
  v1::StatsContainerResponse stats;
  ASSERT_RPC_OK(
      vm().agent().StatsContainer(testing::ContextWithTimeout(seconds(30)).get(), request, &stats));
  EXPECT_GE(stats.memory().oom_kill_events(), 1u);
  EXPECT_EQ(stats.memory().limit_bytes(), 32ull << 20);
}

// --- signals -----------------------------------------------------------------------

TEST_F(EngineVmTest, SignalReachesATrappingInitAndExitedProcessesAreNotFound) {
  std::string id = NewId("signal");
  oci::Spec spec = testing::TestSpec(
      {"sh", "-c",
       "trap \"echo got TERM; exit 7\" TERM; echo ready; while true; do sleep 0.1; done"});
  ASSERT_RPC_OK(vm().CreateContainer(id, spec, Io(false, true, true)));
  testing::OutputReader out(vm().api(), id, "", sandbox::OutputStream::kStdout);
  ASSERT_RPC_OK(vm().StartContainer(id));
  ASSERT_TRUE(out.WaitFor("ready\n", seconds(30))) << out.text();

  ASSERT_RPC_OK(vm().Signal(id, "", SIGTERM));
  v1::WaitProcessResponse exited;
  ASSERT_RPC_OK(vm().Wait(id, "", &exited));
  EXPECT_EQ(exited.exit_status(), 7);
  EXPECT_EQ(exited.signal(), 0u);
  ASSERT_TRUE(out.WaitForEnd(seconds(10)));
  EXPECT_EQ(out.text(), "ready\ngot TERM\n");

  auto late = vm().Signal(id, "", SIGTERM);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(late);
}

// --- terminal ----------------------------------------------------------------------

TEST_F(EngineVmTest, TerminalSizeAndResize) {
  std::string id = NewId("tty");
  oci::Spec spec = testing::TestSpec({"sh", "-c", "stty size; read line; stty size"});
  spec.process->terminal = true;
  v1::ProcessIo io = Io(true, true, false);
  io.set_terminal(true);
  io.mutable_tty_size()->set_rows(24);
  io.mutable_tty_size()->set_columns(80);
  ASSERT_RPC_OK(vm().CreateContainer(id, spec, io));
  testing::OutputReader out(vm().api(), id, "", sandbox::OutputStream::kStdout);
  testing::OutputReader err(vm().api(), id, "", sandbox::OutputStream::kStderr);
  ASSERT_RPC_OK(vm().StartContainer(id));
  ASSERT_TRUE(out.WaitFor("24 80\r\n", seconds(30))) << out.text();

  v1::ResizeTtyRequest resize;
  resize.set_container_id(id);
  resize.mutable_size()->set_rows(40);
  resize.mutable_size()->set_columns(120);
  v1::ResizeTtyResponse resized;
  ASSERT_RPC_OK(
      vm().agent().ResizeTty(testing::ContextWithTimeout(seconds(30)).get(), resize, &resized));
  ASSERT_RPC_OK(vm().WriteStdin(id, "", "\n", false));
  EXPECT_TRUE(out.WaitFor("40 120\r\n", seconds(30))) << out.text();

  v1::WaitProcessResponse exited;
  ASSERT_RPC_OK(vm().Wait(id, "", &exited));
  EXPECT_EQ(exited.exit_status(), 0);
  ASSERT_TRUE(out.WaitForEnd(seconds(10)));
  // A terminal has one output stream: stderr ends at once, empty.
  ASSERT_TRUE(err.WaitForEnd(seconds(10)));
  EXPECT_EQ(err.text(), "");
}

// --- flow control --------------------------------------------------------------------

TEST_F(EngineVmTest, StalledReaderBlocksTheWriterAndLosesNothing) {
  constexpr size_t kSize = 10u << 20;
  std::string id = NewId("stall");
  oci::Spec spec = testing::TestSpec(
      {"sh", "-c",
       "head -c " + std::to_string(kSize) + " /dev/urandom > /tmp/data && cat /tmp/data"});
  ASSERT_RPC_OK(vm().CreateContainer(id, spec, Io(false, true, false)));

  grpc::ClientContext context;
  v1::ReadOutputRequest request;
  request.set_container_id(id);
  request.set_stream(v1::STDOUT);
  auto reader = vm().agent().ReadOutput(&context, request);
  ASSERT_RPC_OK(vm().StartContainer(id));

  std::string received;
  v1::OutputChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk)) << "no output at all";
  received += chunk.data();

  std::atomic<bool> wait_returned{false};
  auto waited = std::async(std::launch::async, [&] {
    v1::WaitProcessResponse response;
    auto status = vm().Wait(id, "", &response, seconds(120));
    wait_returned = true;
    return std::make_pair(status, response);
  });
  std::this_thread::sleep_for(seconds(3));
  EXPECT_FALSE(wait_returned) << "WaitProcess returned while output was still unread";
  v1::ListProcessesRequest list;
  list.set_container_id(id);
  v1::ListProcessesResponse pids;
  ASSERT_RPC_OK(
      vm().agent().ListProcesses(testing::ContextWithTimeout(seconds(30)).get(), list, &pids));
  EXPECT_GT(pids.pids_size(), 0) << "the writer should be blocked, not finished";

  while (reader->Read(&chunk)) received += chunk.data();
  EXPECT_RPC_OK(reader->Finish());
  auto [status, exited] = waited.get();
  ASSERT_RPC_OK(status);
  EXPECT_EQ(exited.exit_status(), 0);
  ASSERT_EQ(received.size(), kSize);
  auto written = ReadFile(vm().HostRootfs(id) + "/tmp/data");
  ASSERT_TRUE(written);
  EXPECT_TRUE(received == *written) << "the bytes read differ from what the container wrote";
}

// --- remove ------------------------------------------------------------------------

TEST_F(EngineVmTest, RemoveOfARunningContainerNeedsForceAndFreesTheId) {
  std::string id = NewId("remove");
  std::string observer = NewId("observer");
  oci::Spec spec = testing::TestSpec({"sleep", "600"});
  ASSERT_RPC_OK(vm().RunContainer(id, spec, Io(false, false, false)));
  ASSERT_RPC_OK(vm().RunContainer(observer, spec, Io(false, false, false)));

  auto refused = vm().RemoveContainer(id, false);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << Describe(refused);
  ASSERT_RPC_OK(vm().RemoveContainer(id, true));

  v1::ListProcessesRequest list;
  list.set_container_id(id);
  v1::ListProcessesResponse pids;
  auto gone =
      vm().agent().ListProcesses(testing::ContextWithTimeout(seconds(30)).get(), list, &pids);
  EXPECT_EQ(gone.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(gone);
  // The cgroup directory went with it (the observer sees the guest's whole
  // cgroup tree: it has no cgroup namespace).
  ASSERT_RPC_OK(
      vm().Exec(observer, "ls", spec, {"ls", "/sys/fs/cgroup/hull"}, Io(false, true, false)));
  testing::OutputReader out(vm().api(), observer, "ls", sandbox::OutputStream::kStdout);
  v1::WaitProcessResponse exited;
  ASSERT_RPC_OK(vm().Wait(observer, "ls", &exited));
  ASSERT_TRUE(out.WaitForEnd(seconds(10)));
  auto entries = Lines(out.text());
  EXPECT_NE(std::find(entries.begin(), entries.end(), observer), entries.end()) << out.text();
  EXPECT_EQ(std::find(entries.begin(), entries.end(), id), entries.end()) << out.text();

  // The id is free again.
  ASSERT_RPC_OK(
      vm().RunContainer(id, testing::TestSpec({"sh", "-c", "exit 5"}), Io(false, false, false)));
  ASSERT_RPC_OK(vm().Wait(id, "", &exited));
  EXPECT_EQ(exited.exit_status(), 5);
  EXPECT_RPC_OK(vm().RemoveContainer(id, false));
}

// --- stdin -------------------------------------------------------------------------

TEST_F(EngineVmTest, ClosingStdinGivesTheProcessEof) {
  std::string id = NewId("stdin");
  ASSERT_RPC_OK(vm().CreateContainer(id, testing::TestSpec({"cat"}), Io(true, true, true)));
  testing::OutputReader out(vm().api(), id, "", sandbox::OutputStream::kStdout);
  ASSERT_RPC_OK(vm().StartContainer(id));
  ASSERT_RPC_OK(vm().WriteStdin(id, "", "abc", true));
  v1::WaitProcessResponse exited;
  ASSERT_RPC_OK(vm().Wait(id, "", &exited, seconds(30)));
  EXPECT_EQ(exited.exit_status(), 0);
  ASSERT_TRUE(out.WaitForEnd(seconds(10)));
  EXPECT_EQ(out.text(), "abc");
}

// A container created but not yet started waits before execve, holding
// whatever its clone copied from the agent: another process's stdin must
// still reach EOF when closed.
TEST_F(EngineVmTest, StdinEofIsNotHeldUpByAContainerWaitingToStart) {
  std::string id = NewId("stdin-first");
  ASSERT_RPC_OK(vm().CreateContainer(id, testing::TestSpec({"cat"}), Io(true, true, false)));
  testing::OutputReader out(vm().api(), id, "", sandbox::OutputStream::kStdout);
  ASSERT_RPC_OK(vm().StartContainer(id));
  std::string waiting = NewId("waiting");
  ASSERT_RPC_OK(
      vm().CreateContainer(waiting, testing::TestSpec({"true"}), Io(false, false, false)));

  ASSERT_RPC_OK(vm().WriteStdin(id, "", "abc", true));
  v1::WaitProcessResponse exited;
  ASSERT_RPC_OK(vm().Wait(id, "", &exited, seconds(15)));
  EXPECT_EQ(exited.exit_status(), 0);
  ASSERT_TRUE(out.WaitForEnd(seconds(10)));
  EXPECT_EQ(out.text(), "abc");
  EXPECT_RPC_OK(vm().RemoveContainer(waiting, false));
}

// Removing a container ends every process in it, and whoever waits for one
// of them hears about it.
// Without a pid namespace of its own (as in a pod sharing one), nothing
// orders the exits of init and its execs.
TEST_F(EngineVmTest, ForceRemoveEndsPendingWaitsForExecs) {
  std::string id = NewId("remove-exec");
  oci::Spec spec = testing::TestSpec({"sleep", "600"});
  std::erase_if(spec.linux->namespaces, [](const oci::Namespace& ns) { return ns.type == "pid"; });
  ASSERT_RPC_OK(vm().RunContainer(id, spec, Io(false, false, false)));
  constexpr int kExecs = 8;
  std::vector<std::future<std::pair<grpc::Status, v1::WaitProcessResponse>>> waits;
  for (int i = 0; i < kExecs; ++i) {
    std::string exec_id = "sleeper" + std::to_string(i);
    ASSERT_RPC_OK(vm().Exec(id, exec_id, spec, {"sleep", "600"}, Io(false, false, false)));
    waits.push_back(std::async(std::launch::async, [this, id, exec_id] {
      v1::WaitProcessResponse response;
      auto status = vm().Wait(id, exec_id, &response, seconds(30));
      return std::make_pair(status, response);
    }));
  }
  std::this_thread::sleep_for(milliseconds(300));  // the waits are in the agent
  ASSERT_RPC_OK(vm().RemoveContainer(id, true));
  for (int i = 0; i < kExecs; ++i) {
    ASSERT_EQ(waits[i].wait_for(seconds(15)), std::future_status::ready)
        << "WaitProcess of exec " << i << " hangs";
    auto [status, exited] = waits[i].get();
    ASSERT_RPC_OK(status);
    EXPECT_EQ(exited.exit_status(), 137);
  }
}

// --- network -----------------------------------------------------------------------

// What UpdateRoutes configured, ListRoutes reads back from the guest kernel;
// ListInterfaces shows the guest's loopback (this VM has no pod network).
TEST_F(EngineVmTest, NetworkListingShowsWhatWasConfigured) {
  grpc::ClientContext update_context;
  update_context.set_deadline(std::chrono::system_clock::now() + seconds(10));
  v1::UpdateRoutesRequest update;
  v1::Route* route = update.add_routes();
  route->set_destination("10.77.0.0/16");
  route->set_device("lo");
  route->set_scope(253);
  route->set_family(AF_INET);
  v1::UpdateRoutesResponse updated;
  ASSERT_RPC_OK(vm().agent().UpdateRoutes(&update_context, update, &updated));

  grpc::ClientContext routes_context;
  routes_context.set_deadline(std::chrono::system_clock::now() + seconds(10));
  v1::ListRoutesResponse routes;
  ASSERT_RPC_OK(vm().agent().ListRoutes(&routes_context, v1::ListRoutesRequest(), &routes));
  bool found = false;
  for (const auto& listed : routes.routes()) {
    found = found || (listed.destination() == "10.77.0.0/16" && listed.device() == "lo" &&
                      listed.scope() == 253u);
  }
  EXPECT_TRUE(found) << routes.DebugString();

  grpc::ClientContext interfaces_context;
  interfaces_context.set_deadline(std::chrono::system_clock::now() + seconds(10));
  v1::ListInterfacesResponse interfaces;
  ASSERT_RPC_OK(
      vm().agent().ListInterfaces(&interfaces_context, v1::ListInterfacesRequest(), &interfaces));
  bool lo_up = false;
  for (const auto& interface : interfaces.interfaces())
    lo_up = lo_up || (interface.name() == "lo" && interface.up());
  EXPECT_TRUE(lo_up) << interfaces.DebugString();
}

// A paused container can be force-removed; its processes do not linger frozen.
TEST_F(EngineVmTest, ForceRemoveOfAPausedContainer) {
  std::string id = NewId("remove-paused");
  ASSERT_RPC_OK(
      vm().RunContainer(id, testing::TestSpec({"sleep", "600"}), Io(false, false, false)));
  v1::PauseContainerRequest pause;
  pause.set_container_id(id);
  v1::PauseContainerResponse paused;
  ASSERT_RPC_OK(
      vm().agent().PauseContainer(testing::ContextWithTimeout(seconds(30)).get(), pause, &paused));
  auto refused = vm().RemoveContainer(id, false);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << Describe(refused);
  ASSERT_RPC_OK(vm().RemoveContainer(id, true));
  ASSERT_RPC_OK(vm().RunContainer(id, testing::TestSpec({"true"}), Io(false, false, false)));
  v1::WaitProcessResponse exited;
  ASSERT_RPC_OK(vm().Wait(id, "", &exited));
  EXPECT_EQ(exited.exit_status(), 0);
}

}  // namespace
}  // namespace hull
