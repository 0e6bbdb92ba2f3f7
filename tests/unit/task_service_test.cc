// containerd.task.v2.Task, every RPC and the awkward orders, over the real
// sandbox library with a fake hypervisor and a scripted agent: no VM, no
// root, no containerd.
#include "task_service.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <future>
#include <thread>

#include "containerd/cgroups/v2/metrics.pb.h"
#include "containerd/events/task.pb.h"
#include "containerd/runc/v1/process_details.pb.h"
#include "fake_agent.h"
#include "fake_clock.h"
#include "fake_vm.h"
#include "hull/core/ids.h"
#include "hull/core/oci_spec.h"
#include "hull/core/syscall.h"

namespace hull::shim {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::FakeAgent;
namespace events = ::containerd::events;
namespace types = ::containerd::v1::types;

constexpr char kProcessTypeUrl[] = "types.containerd.io/opencontainers/runtime-spec/1/Process";
// Long enough for anything that is going to happen; tests never wait this
// long unless they fail.
constexpr milliseconds kPatience = seconds(20);

// The events the service publishes, by type name, in order.
class RecordingEvents final : public EventSink {
 public:
  void Publish(const google::protobuf::Message& event) override {
    std::lock_guard lock(mu_);
    names_.push_back(event.GetDescriptor()->name());
    if (auto* exit = dynamic_cast<const events::TaskExit*>(&event)) exits_.push_back(*exit);
    if (auto* oom = dynamic_cast<const events::TaskOOM*>(&event)) ooms_.push_back(*oom);
    changed_.notify_all();
  }
  std::vector<std::string> names() {
    std::lock_guard lock(mu_);
    return names_;
  }
  std::vector<events::TaskExit> exits() {
    std::lock_guard lock(mu_);
    return exits_;
  }
  std::vector<events::TaskOOM> ooms() {
    std::lock_guard lock(mu_);
    return ooms_;
  }
  bool WaitFor(const std::string& name, int count = 1) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(
        lock, kPatience, [&] { return std::count(names_.begin(), names_.end(), name) >= count; });
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<std::string> names_;
  std::vector<events::TaskExit> exits_;
  std::vector<events::TaskOOM> ooms_;
};

class TaskServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "/hull-task-" + RandomHex(6);
    ASSERT_TRUE(MakeDirs(root_ + "/run"));
    Config config;
    config.run_dir = root_ + "/run";
    config.host_cgroup_required = false;  // no real cgroups from unit tests
    config.agent.call_timeout_seconds = 1;
    config.agent.create_timeout_seconds = 1;
    config.hypervisor.stop_grace_seconds = 0;
    TaskServiceOptions options{config, "pod1", root_ + "/run/pod1", {}, &clock_};
    ASSERT_TRUE(MakeDirs(options.state_dir));
    options.sandbox_deps.hypervisor = hypervisor_;
    options.sandbox_deps.host_cgroup_root = root_;
    options.sandbox_deps.connect_agent =
        [this](Vm&, auto,
               const sandbox::AgentTimeouts&) -> Result<std::unique_ptr<sandbox::AgentApi>> {
      if (connect_error_) return Unexpected{*connect_error_};
      return std::unique_ptr<sandbox::AgentApi>(new testing::SharedFakeAgent(agent_));
    };
    options.sandbox_deps.make_share = [this](const std::string&) {
      return std::make_unique<testing::RecordingShare>(shares_);
    };
    service_ = std::make_unique<TaskService>(options, events_, [this] { shutdowns_++; });
  }

  void TearDown() override {
    service_.reset();
    (void)RemoveTree(root_);
  }

  // A bundle whose spec runs `args` over a rootfs directory of its own.
  std::string MakeBundle(const std::string& id, std::vector<std::string> args = {"sh"}) {
    std::string bundle = root_ + "/bundles/" + id;
    EXPECT_TRUE(MakeDirs(bundle + "/rootfs"));
    oci::Spec spec = oci::DefaultSpec(std::move(args), false);
    EXPECT_TRUE(WriteFile(bundle + "/config.json", oci::SerializeOciSpec(spec)));
    return bundle;
  }

  Result<task::CreateTaskResponse> Create(const std::string& id, const std::string& stdout = "") {
    task::CreateTaskRequest request;
    request.set_id(id);
    request.set_bundle(MakeBundle(id));
    request.set_stdout(stdout);
    return service_->Create(context_, request);
  }
  Result<task::StartResponse> Start(const std::string& id, const std::string& exec_id = "") {
    task::StartRequest request;
    request.set_id(id);
    request.set_exec_id(exec_id);
    return service_->Start(context_, request);
  }
  Result<task::StateResponse> State(const std::string& id, const std::string& exec_id = "") {
    task::StateRequest request;
    request.set_id(id);
    request.set_exec_id(exec_id);
    return service_->State(context_, request);
  }
  Result<task::WaitResponse> Wait(const std::string& id, const std::string& exec_id = "") {
    task::WaitRequest request;
    request.set_id(id);
    request.set_exec_id(exec_id);
    return service_->Wait(context_, request);
  }
  Result<Empty> Kill(const std::string& id, uint32_t signal, const std::string& exec_id = "") {
    task::KillRequest request;
    request.set_id(id);
    request.set_exec_id(exec_id);
    request.set_signal(signal);
    return service_->Kill(context_, request);
  }
  Result<task::DeleteResponse> Delete(const std::string& id, const std::string& exec_id = "") {
    task::DeleteRequest request;
    request.set_id(id);
    request.set_exec_id(exec_id);
    return service_->Delete(context_, request);
  }
  Result<Empty> Exec(const std::string& id, const std::string& exec_id) {
    task::ExecProcessRequest request;
    request.set_id(id);
    request.set_exec_id(exec_id);
    request.mutable_spec()->set_type_url(kProcessTypeUrl);
    request.mutable_spec()->set_value(R"({"args": ["true"], "cwd": "/"})");
    return service_->Exec(context_, request);
  }
  // Waits until the state of the process is `status`.
  bool WaitForStatus(const std::string& id, types::Status status, const std::string& exec_id = "") {
    auto until = std::chrono::steady_clock::now() + kPatience;
    while (std::chrono::steady_clock::now() < until) {
      auto state = State(id, exec_id);
      if (state && state->status() == status) return true;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return false;
  }
  // Nothing of the sandbox is left: no VM running, no share, no state dir.
  void ExpectNothingLeft() {
    for (const auto& vm : hypervisor_->launched()) {
      EXPECT_FALSE(vm->running) << vm->config.id << " still runs";
      EXPECT_TRUE(vm->stopped) << vm->config.id << " was never stopped";
    }
    std::lock_guard lock(shares_->mu);
    EXPECT_TRUE(shares_->shares.empty()) << shares_->shares.begin()->first << " still shared";
    EXPECT_FALSE(PathExists(root_ + "/run/pod1/vm")) << "the VM's state dir is left";
  }

  // Waits for `call`, moving the clock past the deadline of whatever waits
  // on it meanwhile: the hung agent calls, then the service's own waits.
  template <typename T>
  T Drive(std::future<T>& call) {
    while (call.wait_for(milliseconds(1)) != std::future_status::ready) {
      if (clock_.waiters() > 0) clock_.Advance(seconds(2));
    }
    return call.get();
  }

  std::string root_;
  testing::FakeClock clock_;
  std::shared_ptr<testing::FakeHypervisor> hypervisor_ =
      std::make_shared<testing::FakeHypervisor>();
  std::shared_ptr<FakeAgent> agent_ =
      std::make_shared<FakeAgent>(sandbox::AgentTimeouts{seconds(1), seconds(1)}, clock_);
  std::shared_ptr<testing::ShareRecord> shares_ = std::make_shared<testing::ShareRecord>();
  std::optional<Error> connect_error_;
  RecordingEvents events_;
  std::atomic<int> shutdowns_{0};
  ttrpc::CallContext context_;
  std::unique_ptr<TaskService> service_;
};

// --- the ordinary life ------------------------------------------------------------

TEST_F(TaskServiceTest, CreateStartExitWaitDeleteInContainerdsOrder) {
  auto created = Create("c1");
  ASSERT_TRUE(created) << created.error().ToString();
  EXPECT_EQ(created->pid(), static_cast<uint32_t>(::getpid())) << "the task pid is the shim's";
  ASSERT_EQ(hypervisor_->launched().size(), 1u) << "the first Create boots the VM";
  {
    std::lock_guard lock(shares_->mu);
    ASSERT_EQ(shares_->shares.count("c1"), 1u) << "the rootfs is shared with the guest";
  }
  auto state = State("c1");
  ASSERT_TRUE(state);
  EXPECT_EQ(state->status(), types::CREATED);
  EXPECT_EQ(state->exited_at().seconds(), -62135596800) << "Go's zero time while it lives";

  ASSERT_TRUE(Start("c1"));
  EXPECT_EQ(State("c1")->status(), types::RUNNING);
  agent_->Exit({"c1", ""}, 3);
  auto waited = Wait("c1");
  ASSERT_TRUE(waited) << waited.error().ToString();
  EXPECT_EQ(waited->exit_status(), 3u);
  EXPECT_EQ(State("c1")->status(), types::STOPPED);

  auto deleted = Delete("c1");
  ASSERT_TRUE(deleted) << deleted.error().ToString();
  EXPECT_EQ(deleted->exit_status(), 3u);
  EXPECT_EQ(events_.names(),
            (std::vector<std::string>{"TaskCreate", "TaskStart", "TaskExit", "TaskDelete"}));
  EXPECT_EQ(service_->container_count(), 0u);
  ExpectNothingLeft();
  EXPECT_EQ(agent_->CallCount("Shutdown"), 1) << "the last Delete powers the guest off";

  ASSERT_TRUE(service_->Shutdown(context_, {}));
  EXPECT_EQ(shutdowns_, 1) << "nothing left to serve: the shim goes";
}

TEST_F(TaskServiceTest, WaitBeforeStartReturnsOnceTheProcessExits) {
  ASSERT_TRUE(Create("c1"));
  auto waiting = std::async(std::launch::async, [&] { return Wait("c1"); });
  EXPECT_EQ(waiting.wait_for(milliseconds(50)), std::future_status::timeout)
      << "Wait must not return before the process ran";
  ASSERT_TRUE(Start("c1"));
  agent_->Exit({"c1", ""}, 0);
  auto waited = waiting.get();
  ASSERT_TRUE(waited) << waited.error().ToString();
  EXPECT_EQ(waited->exit_status(), 0u);
}

TEST_F(TaskServiceTest, OutputReachesTheLogBeforeTheExitIsReported) {
  std::string log = root_ + "/c1.log";
  ASSERT_TRUE(Create("c1", "file://" + log));
  ASSERT_TRUE(Start("c1"));
  agent_->Write({"c1", ""}, sandbox::OutputStream::kStdout, "hello ");
  agent_->Write({"c1", ""}, sandbox::OutputStream::kStdout, "world\n");
  agent_->Exit({"c1", ""}, 0);
  ASSERT_TRUE(Wait("c1"));
  EXPECT_EQ(ReadFile(log).value_or(""), "hello world\n");
}

TEST_F(TaskServiceTest, TwoContainersShareOneVm) {
  ASSERT_TRUE(Create("a"));
  ASSERT_TRUE(Create("b"));
  EXPECT_EQ(hypervisor_->launched().size(), 1u);
  ASSERT_TRUE(Delete("a"));
  EXPECT_TRUE(hypervisor_->launched()[0]->running) << "b still needs the VM";
  ASSERT_TRUE(Delete("b"));
  ExpectNothingLeft();
}

// --- errors a caller can cause ------------------------------------------------------

TEST_F(TaskServiceTest, BadRequestsFailClearlyAndLeaveNothing) {
  task::CreateTaskRequest request;
  request.set_id("../etc");
  request.set_bundle(root_);
  auto bad_id = service_->Create(context_, request);
  ASSERT_FALSE(bad_id);
  EXPECT_EQ(bad_id.error().code(), ErrorCode::kInvalidArgument);
  request.set_id("c1");
  request.set_bundle("relative/bundle");
  EXPECT_EQ(service_->Create(context_, request).error().code(), ErrorCode::kInvalidArgument);
  request.set_bundle(root_ + "/no-such-bundle");
  EXPECT_FALSE(service_->Create(context_, request));
  EXPECT_TRUE(hypervisor_->launched().empty()) << "no VM for a request that cannot work";

  ASSERT_TRUE(Create("c1"));
  EXPECT_EQ(Create("c1").error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(State("nope").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(Kill("c1", 0).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(Kill("c1", 65).error().code(), ErrorCode::kInvalidArgument);
  ASSERT_TRUE(Start("c1"));
  auto twice = Start("c1");
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code(), ErrorCode::kFailedPrecondition);
  auto checkpoint = service_->Checkpoint(context_, [] {
    task::CheckpointTaskRequest r;
    r.set_id("c1");
    return r;
  }());
  EXPECT_EQ(checkpoint.error().code(), ErrorCode::kUnimplemented);
  task::ResizePtyRequest resize;
  resize.set_id("c1");
  EXPECT_EQ(service_->ResizePty(context_, resize).error().code(), ErrorCode::kFailedPrecondition)
      << "no terminal, nothing to resize";
}

TEST_F(TaskServiceTest, KillOfAnExitedProcessIsNotFound) {
  ASSERT_TRUE(Create("c1"));
  ASSERT_TRUE(Start("c1"));
  ASSERT_TRUE(Kill("c1", SIGTERM));
  ASSERT_TRUE(Wait("c1"));
  EXPECT_EQ(State("c1")->exit_status(), 128u + SIGTERM);
  auto again = Kill("c1", SIGKILL);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kNotFound) << "containerd tolerates only NOT_FOUND";
}

TEST_F(TaskServiceTest, DeleteWhileAnExecRunsIsRefusedThenWorks) {
  ASSERT_TRUE(Create("c1"));
  ASSERT_TRUE(Start("c1"));
  ASSERT_TRUE(Exec("c1", "e1"));
  EXPECT_EQ(Exec("c1", "e1").error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(Kill("c1", SIGTERM, "e1").error().code(), ErrorCode::kFailedPrecondition)
      << "an exec not started cannot be signalled";
  ASSERT_TRUE(Start("c1", "e1"));
  EXPECT_EQ(State("c1", "e1")->status(), types::RUNNING);
  EXPECT_EQ(Delete("c1", "e1").error().code(), ErrorCode::kFailedPrecondition);
  agent_->Exit({"c1", "e1"}, 4);
  auto waited = Wait("c1", "e1");
  ASSERT_TRUE(waited);
  EXPECT_EQ(waited->exit_status(), 4u);
  ASSERT_TRUE(Delete("c1", "e1"));
  EXPECT_EQ(agent_->CallCount("RemoveProcess"), 1) << "the guest forgets the exec";
  ASSERT_TRUE(Exec("c1", "e1")) << "the exec id is free again";
  ASSERT_TRUE(Start("c1", "e1"));

  // The init goes, the exec lives on: the container cannot go yet.
  agent_->Exit({"c1", ""}, 0);
  ASSERT_TRUE(WaitForStatus("c1", types::STOPPED));
  auto refused = Delete("c1");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(refused.error().ToString().find("`e1` still runs"), std::string::npos);
  agent_->Exit({"c1", "e1"}, 0);
  ASSERT_TRUE(Wait("c1", "e1"));
  ASSERT_TRUE(Delete("c1", "e1"));
  ASSERT_TRUE(Delete("c1"));
  ExpectNothingLeft();
}

TEST_F(TaskServiceTest, ExecChecksItsSpecAndTheContainerState) {
  ASSERT_TRUE(Create("c1"));
  EXPECT_EQ(Exec("c1", "e1").error().code(), ErrorCode::kFailedPrecondition)
      << "the container is not running yet";
  ASSERT_TRUE(Start("c1"));
  task::ExecProcessRequest request;
  request.set_id("c1");
  request.set_exec_id("e2");
  request.mutable_spec()->set_type_url("something/else");
  EXPECT_EQ(service_->Exec(context_, request).error().code(), ErrorCode::kInvalidArgument);
  request.set_exec_id("bad/id");
  EXPECT_EQ(service_->Exec(context_, request).error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(TaskServiceTest, AFailedExecStartReportsTheProcessStopped) {
  ASSERT_TRUE(Create("c1"));
  ASSERT_TRUE(Start("c1"));
  ASSERT_TRUE(Exec("c1", "e1"));
  agent_->Fail("ExecProcess", Error(ErrorCode::kNotFound, "no such file: `nope`"), 1);
  auto started = Start("c1", "e1");
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().ToString().find("`nope`"), std::string::npos);
  EXPECT_EQ(State("c1", "e1")->status(), types::STOPPED);
  EXPECT_EQ(Wait("c1", "e1")->exit_status(), 255u) << "runc's status for an exec that never ran";
  ASSERT_TRUE(Delete("c1", "e1"));
}

TEST_F(TaskServiceTest, AFailedInitStartLeavesTheTaskStoppedForCtrRunRm) {
  ASSERT_TRUE(Create("c1"));
  agent_->Fail("StartContainer", Error(ErrorCode::kInvalidArgument, "exec: `nope` not found"), 1);
  auto started = Start("c1");
  ASSERT_FALSE(started);
  EXPECT_EQ(State("c1")->status(), types::STOPPED) << "containerd refuses to delete a created task";
  ASSERT_TRUE(Delete("c1"));
  ExpectNothingLeft();
}

// --- every other RPC ---------------------------------------------------------------

TEST_F(TaskServiceTest, PidsPauseResumeUpdateStatsConnect) {
  ASSERT_TRUE(Create("c1"));
  ASSERT_TRUE(Start("c1"));
  ASSERT_TRUE(Exec("c1", "e1"));
  ASSERT_TRUE(Start("c1", "e1"));

  task::PidsRequest pids_request;
  pids_request.set_id("c1");
  auto pids = service_->Pids(context_, pids_request);
  ASSERT_TRUE(pids) << pids.error().ToString();
  ASSERT_EQ(pids->processes_size(), 2);
  int with_exec_id = 0;
  for (const auto& process : pids->processes()) {
    if (!process.info().value().empty()) {
      ::containerd::runc::v1::ProcessDetails details;
      ASSERT_TRUE(details.ParseFromString(process.info().value()));
      EXPECT_EQ(details.exec_id(), "e1");
      ++with_exec_id;
    }
  }
  EXPECT_EQ(with_exec_id, 1);

  task::PauseRequest pause;
  pause.set_id("c1");
  ASSERT_TRUE(service_->Pause(context_, pause));
  EXPECT_EQ(State("c1")->status(), types::PAUSED);
  task::ResumeRequest resume;
  resume.set_id("c1");
  ASSERT_TRUE(service_->Resume(context_, resume));
  EXPECT_EQ(State("c1")->status(), types::RUNNING);

  task::UpdateTaskRequest update;
  update.set_id("c1");
  update.mutable_resources()->set_type_url("wrong");
  EXPECT_EQ(service_->Update(context_, update).error().code(), ErrorCode::kInvalidArgument);
  update.mutable_resources()->set_type_url(
      "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources");
  update.mutable_resources()->set_value(R"({"pids": {"limit": 10}})");
  ASSERT_TRUE(service_->Update(context_, update));
  EXPECT_EQ(agent_->CallCount("UpdateContainer"), 1);

  task::StatsRequest stats_request;
  stats_request.set_id("c1");
  auto stats = service_->Stats(context_, stats_request);
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_EQ(stats->stats().type_url(), "io.containerd.cgroups.v2.Metrics");
  ::io::containerd::cgroups::v2::Metrics metrics;
  ASSERT_TRUE(metrics.ParseFromString(stats->stats().value()));
  EXPECT_EQ(metrics.cpu().usage_usec(), 1234u);
  EXPECT_EQ(metrics.memory().slab(), 4096u);

  task::ConnectRequest connect;
  connect.set_id("c1");
  auto connected = service_->Connect(context_, connect);
  ASSERT_TRUE(connected);
  EXPECT_EQ(connected->task_pid(), static_cast<uint32_t>(::getpid()));
  connect.set_id("nope");
  EXPECT_EQ(service_->Connect(context_, connect)->task_pid(), 0u);

  task::CloseIORequest close;
  close.set_id("c1");
  close.set_stdin(true);
  EXPECT_TRUE(service_->CloseIO(context_, close));
  EXPECT_EQ(events_.names()[2], "TaskExecAdded");
}

TEST_F(TaskServiceTest, OomKillsOfKnownContainersBecomeEventsOthersAreIgnored) {
  ASSERT_TRUE(Create("c1"));
  ASSERT_TRUE(agent_->WaitForCall("OomEvents", 1, kPatience));
  agent_->EmitOom("not-a-container");  // the guest may say anything
  agent_->EmitOom("c1");
  ASSERT_TRUE(events_.WaitFor("TaskOOM"));
  ASSERT_EQ(events_.ooms().size(), 1u);
  EXPECT_EQ(events_.ooms()[0].container_id(), "c1");
}

// --- a guest that hangs, lies or dies -----------------------------------------------

TEST_F(TaskServiceTest, AnAgentHangingOnCreateFailsByTheDeadlineAndLeavesNothing) {
  agent_->Hang("CreateContainer");
  auto creating = std::async(std::launch::async, [&] { return Create("c1"); });
  auto created = Drive(creating);
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code(), ErrorCode::kDeadlineExceeded);
  EXPECT_NE(created.error().ToString().find("CreateContainer"), std::string::npos)
      << created.error().ToString();
  EXPECT_EQ(service_->container_count(), 0u);
  EXPECT_EQ(State("c1").error().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(hypervisor_->launched()[0]->aborted) << "a guest past a deadline is ended";
  ExpectNothingLeft();
  ASSERT_TRUE(service_->Shutdown(context_, {}));
  EXPECT_EQ(shutdowns_, 1);
}

TEST_F(TaskServiceTest, ShutdownWhileACreateIsHalfDoneWaitsForItThenGoes) {
  agent_->Hang("CreateContainer");
  auto creating = std::async(std::launch::async, [&] { return Create("c1"); });
  ASSERT_TRUE(agent_->WaitForCall("CreateContainer", 1, kPatience));
  ASSERT_TRUE(service_->Shutdown(context_, {}));
  EXPECT_EQ(shutdowns_, 0) << "a container is on its way: the shim stays";
  EXPECT_FALSE(Drive(creating));
  ExpectNothingLeft();
  EXPECT_EQ(shutdowns_, 1) << "the create failed: nothing will ask again, so the shim goes";
  ASSERT_TRUE(service_->Shutdown(context_, {}));
  EXPECT_EQ(shutdowns_, 1);
}

// A containerd restarted while it was creating a task asks about that task,
// and deletes it, before the Create it sent earlier is over: the shim
// answers once the Create ended, never "not found" for a container it then
// goes on to make.
TEST_F(TaskServiceTest, ADeleteDuringItsCreateWaitsForTheCreateThenDeletes) {
  agent_->Hang("CreateContainer");
  auto creating = std::async(std::launch::async, [&] { return Create("c1"); });
  ASSERT_TRUE(agent_->WaitForCall("CreateContainer", 1, kPatience));
  auto deleting = std::async(std::launch::async, [&] { return Delete("c1"); });
  // Both wait on the clock: the hung create, and the delete for it.
  for (int i = 0; i < 10000 && clock_.waiters() < 2; ++i) {
    if (deleting.wait_for(milliseconds(1)) == std::future_status::ready) break;
  }
  ASSERT_EQ(deleting.wait_for(milliseconds(0)), std::future_status::timeout)
      << "the delete did not wait for the create";
  agent_->Heal("CreateContainer");
  ASSERT_TRUE(creating.get());
  auto deleted = deleting.get();
  ASSERT_TRUE(deleted) << deleted.error().ToString();
  EXPECT_EQ(agent_->containers().size(), 0u);
  ExpectNothingLeft();
}

TEST_F(TaskServiceTest, AnAgentThatDiesMidStreamReportsEachExitOnce) {
  std::string log = root_ + "/c1.log";
  ASSERT_TRUE(Create("c1", "file://" + log));
  ASSERT_TRUE(Start("c1"));
  ASSERT_TRUE(Exec("c1", "e1"));
  ASSERT_TRUE(Start("c1", "e1"));
  agent_->Write({"c1", ""}, sandbox::OutputStream::kStdout, "partial");
  agent_->Die();
  auto waited = Wait("c1");
  ASSERT_TRUE(waited);
  EXPECT_EQ(waited->exit_status(), 255u) << "an exit nobody reported is 255";
  ASSERT_TRUE(Wait("c1", "e1"));
  ASSERT_TRUE(events_.WaitFor("TaskExit", 2));
  auto exits = events_.exits();
  ASSERT_EQ(exits.size(), 2u) << "one exit per process";
  // Kill after the death: the process is gone, as containerd expects.
  EXPECT_EQ(Kill("c1", SIGKILL).error().code(), ErrorCode::kNotFound);
  ASSERT_TRUE(Delete("c1", "e1"));
  ASSERT_TRUE(Delete("c1"));
  EXPECT_EQ(events_.exits().size(), 2u) << "no second report on delete";
  ExpectNothingLeft();
}

TEST_F(TaskServiceTest, AnAgentThatAnswersLateButInTimeIsFine) {
  agent_->Delay("CreateContainer", milliseconds(300));
  agent_->Delay("StartContainer", milliseconds(300));
  ASSERT_TRUE(Create("c1"));
  ASSERT_TRUE(Start("c1"));
  EXPECT_EQ(State("c1")->status(), types::RUNNING);
}

TEST_F(TaskServiceTest, AHungWaitDoesNotHoldDeleteOfACreatedContainer) {
  ASSERT_TRUE(Create("c1"));
  agent_->Hang("RemoveContainer");
  // The guest never answers RemoveContainer and never reports the exit.
  auto deleting = std::async(std::launch::async, [&] { return Delete("c1"); });
  auto deleted = Drive(deleting);
  ASSERT_TRUE(deleted) << deleted.error().ToString();
  EXPECT_EQ(deleted->exit_status(), 255u);
  ExpectNothingLeft();
}

TEST_F(TaskServiceTest, AVmThatCannotBootFailsCreateAndLeavesNothing) {
  connect_error_ = Error(ErrorCode::kDeadlineExceeded, "the agent never answered");
  auto created = Create("c1");
  ASSERT_FALSE(created);
  EXPECT_NE(created.error().ToString().find("never answered"), std::string::npos);
  ASSERT_EQ(hypervisor_->launched().size(), 1u);
  ExpectNothingLeft();
  connect_error_.reset();
  ASSERT_TRUE(Create("c1")) << "the next Create boots a fresh VM";
  EXPECT_EQ(hypervisor_->launched().size(), 2u);
}

TEST_F(TaskServiceTest, AVmThatDiesFailsLaterCallsClearly) {
  ASSERT_TRUE(Create("c1"));
  ASSERT_TRUE(Start("c1"));
  hypervisor_->launched()[0]->running = false;
  agent_->Die();
  ASSERT_TRUE(WaitForStatus("c1", types::STOPPED));
  EXPECT_EQ(Kill("c1", SIGKILL).error().code(), ErrorCode::kNotFound);
  task::StatsRequest stats;
  stats.set_id("c1");
  auto failed = service_->Stats(context_, stats);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code(), ErrorCode::kUnavailable);
  ASSERT_TRUE(Delete("c1"));
  ExpectNothingLeft();
}

}  // namespace
}  // namespace hull::shim
