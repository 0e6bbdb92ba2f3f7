#include "fake_agent.h"

#include <signal.h>

#include <algorithm>

namespace hull::testing {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr size_t kStreamIndex(sandbox::OutputStream stream) {
  return stream == sandbox::OutputStream::kStdout ? 0 : 1;
}

Error Gone() { return Error(ErrorCode::kUnavailable, "agent connection closed"); }

// Wakes the agent's waiters when `cancellation` fires, for as long as it lives.
class WakeOnCancel {
 public:
  WakeOnCancel(sandbox::Cancellation* cancellation, std::mutex& mu, std::condition_variable& cv)
      : cancellation_(cancellation) {
    if (cancellation_ == nullptr) return;
    id_ = cancellation_->OnCancel([&mu, &cv] {
      { std::lock_guard lock(mu); }
      cv.notify_all();
    });
  }
  ~WakeOnCancel() {
    if (cancellation_ != nullptr) cancellation_->Forget(id_);
  }

 private:
  sandbox::Cancellation* cancellation_;
  uint64_t id_ = 0;
};

}  // namespace

FakeAgent::~FakeAgent() { Die(); }

// --- scripting -------------------------------------------------------------------

void FakeAgent::Fail(const std::string& call, Error error, int times) {
  std::lock_guard lock(mu_);
  scripts_[call] = Script{.error = std::move(error), .times = times};
}

void FakeAgent::Hang(const std::string& call) {
  std::lock_guard lock(mu_);
  scripts_[call] = Script{.hang = true};
}

void FakeAgent::Delay(const std::string& call, milliseconds delay) {
  std::lock_guard lock(mu_);
  scripts_[call] = Script{.delay = delay};
}

void FakeAgent::Heal(const std::string& call) {
  {
    std::lock_guard lock(mu_);
    scripts_.erase(call);
  }
  changed_.notify_all();
}

void FakeAgent::Exit(const sandbox::ProcessRef& ref, uint32_t status) {
  {
    std::lock_guard lock(mu_);
    if (auto* process = Find(ref)) ExitLocked(*process, status);
  }
  changed_.notify_all();
}

void FakeAgent::Write(const sandbox::ProcessRef& ref, sandbox::OutputStream stream,
                      const std::string& data) {
  {
    std::lock_guard lock(mu_);
    if (auto* process = Find(ref)) process->output[kStreamIndex(stream)] += data;
  }
  changed_.notify_all();
}

std::string FakeAgent::StdinOf(const sandbox::ProcessRef& ref) {
  std::lock_guard lock(mu_);
  auto* process = Find(ref);
  return process ? process->stdin_data : "";
}

bool FakeAgent::StdinClosed(const sandbox::ProcessRef& ref) {
  std::lock_guard lock(mu_);
  auto* process = Find(ref);
  return process && process->stdin_closed;
}

void FakeAgent::EmitOom(const std::string& container_id) {
  {
    std::lock_guard lock(mu_);
    ooms_.push_back(container_id);
    ++oom_count_;
  }
  changed_.notify_all();
}

void FakeAgent::Die() {
  {
    std::lock_guard lock(mu_);
    dead_ = true;
  }
  changed_.notify_all();
}

std::vector<std::string> FakeAgent::calls() {
  std::lock_guard lock(mu_);
  return calls_;
}

int FakeAgent::CallCount(const std::string& call) {
  std::lock_guard lock(mu_);
  return static_cast<int>(std::count(calls_.begin(), calls_.end(), call));
}

std::set<std::string> FakeAgent::containers() {
  std::lock_guard lock(mu_);
  std::set<std::string> ids;
  for (const auto& [id, container] : containers_) ids.insert(id);
  return ids;
}

bool FakeAgent::WaitForCall(const std::string& call, int count, milliseconds timeout) {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, timeout,
                           [&] { return std::count(calls_.begin(), calls_.end(), call) >= count; });
}

// --- plumbing ------------------------------------------------------------------------

FakeAgent::Process* FakeAgent::Find(const sandbox::ProcessRef& ref) {
  auto container = containers_.find(ref.container_id);
  if (container == containers_.end()) return nullptr;
  auto process = container->second.processes.find(ref.exec_id);
  return process == container->second.processes.end() ? nullptr : &process->second;
}

void FakeAgent::ExitLocked(Process& process, uint32_t status) {
  if (!process.exit_status) process.exit_status = status;
}

Status FakeAgent::Enter(std::unique_lock<std::mutex>& lock, const std::string& call,
                        milliseconds deadline, sandbox::Cancellation* cancellation) {
  calls_.push_back(call);
  changed_.notify_all();
  if (dead_) return Unexpected{Gone()};
  auto it = scripts_.find(call);
  if (it == scripts_.end()) return Ok();
  Script& script = it->second;
  if (script.error) {
    Error error = *script.error;
    if (script.times > 0 && --script.times == 0) scripts_.erase(it);
    return Unexpected{std::move(error)};
  }
  if (script.delay.count() > 0) {
    auto until = SteadyClock::now() + script.delay;
    changed_.wait_until(lock, until, [&] { return dead_; });
    if (dead_) return Unexpected{Gone()};
    return Ok();
  }
  if (script.hang) {
    // As gRPC would: the call ends when its deadline passes (a long-lived
    // call has none), the caller cancels, the connection drops, or the
    // test heals it.
    auto healed = [&] { return scripts_.count(call) == 0; };
    auto cancelled = [&] { return cancellation != nullptr && cancellation->cancelled(); };
    auto over = [&] { return dead_ || healed() || cancelled(); };
    if (deadline.count() == 0) {
      changed_.wait(lock, over);
    } else if (!clock_.WaitUntil(changed_, lock, clock_.Now() + deadline, over)) {
      return MakeError(ErrorCode::kDeadlineExceeded, "agent call " + call + ": deadline of " +
                                                         std::to_string(deadline.count()) +
                                                         " ms exceeded");
    }
    if (dead_) return Unexpected{Gone()};
    if (cancelled()) return MakeError(ErrorCode::kCancelled, "agent call " + call + ": cancelled");
  }
  return Ok();
}

Status FakeAgent::WaitLocked(std::unique_lock<std::mutex>& lock,
                             sandbox::Cancellation& cancellation, const std::function<bool()>& done,
                             const std::string& call) {
  changed_.wait(lock, [&] { return done() || dead_ || cancellation.cancelled(); });
  if (done()) return Ok();
  if (dead_) return Unexpected{Gone()};
  return MakeError(ErrorCode::kCancelled, "agent call " + call + ": cancelled");
}

#define HULL_FAKE_ENTER(call, deadline)                                         \
  std::unique_lock lock(mu_);                                                   \
  if (auto entered = Enter(lock, call, deadline); !entered) return Unexpected { \
      std::move(entered).error()                                                \
    }

// --- AgentApi ---------------------------------------------------------------------

Result<bool> FakeAgent::Check() {
  HULL_FAKE_ENTER("Check", timeouts_.call);
  return true;
}

Result<sandbox::AgentVersion> FakeAgent::Version() {
  HULL_FAKE_ENTER("Version", timeouts_.call);
  return sandbox::AgentVersion{"fake", 1, ""};
}

Result<sandbox::GuestDetails> FakeAgent::GetGuestDetails() {
  HULL_FAKE_ENTER("GetGuestDetails", timeouts_.call);
  return sandbox::GuestDetails{.kernel_release = "fake", .online_cpus = 1};
}

Result<bool> FakeAgent::Shutdown(bool force) {
  {
    HULL_FAKE_ENTER("Shutdown", timeouts_.call);
    bool running = false;
    for (auto& [id, container] : containers_) {
      for (auto& [exec_id, process] : container.processes) {
        running = running || (process.started && !process.exit_status);
      }
    }
    if (running && !force) {
      return MakeError(ErrorCode::kFailedPrecondition, "agent call Shutdown: containers run");
    }
    // The guest powers off: everything goes with it.
    dead_ = true;
  }
  changed_.notify_all();
  return true;
}

Status FakeAgent::CreateSandbox(const sandbox::SandboxSetup& setup) {
  HULL_FAKE_ENTER("CreateSandbox", timeouts_.call);
  sandbox_setups_.push_back(setup);
  return Ok();
}

std::vector<sandbox::SandboxSetup> FakeAgent::sandbox_setups() {
  std::lock_guard lock(mu_);
  return sandbox_setups_;
}

Status FakeAgent::DestroySandbox(const std::string&, bool) {
  HULL_FAKE_ENTER("DestroySandbox", timeouts_.call);
  containers_.clear();
  return Ok();
}

Result<uint32_t> FakeAgent::CreateContainer(const sandbox::ContainerSetup& setup) {
  HULL_FAKE_ENTER("CreateContainer", timeouts_.create);
  if (containers_.count(setup.container_id) != 0) {
    return MakeError(ErrorCode::kAlreadyExists,
                     "agent call CreateContainer: `" + setup.container_id + "` exists");
  }
  Process init;
  init.pid = next_pid_++;
  containers_[setup.container_id].processes.emplace("", init);
  changed_.notify_all();
  return init.pid;
}

Status FakeAgent::StartContainer(const std::string& container_id) {
  std::unique_lock lock(mu_);
  auto entered = Enter(lock, "StartContainer", timeouts_.call);
  auto* init = Find({container_id, ""});
  if (!entered) {
    // As in the guest: an init that cannot start is gone.
    if (init != nullptr && !dead_) ExitLocked(*init, 255);
    changed_.notify_all();
    return entered;
  }
  if (init == nullptr) return MakeError(ErrorCode::kNotFound, "agent call StartContainer");
  if (init->started) return MakeError(ErrorCode::kFailedPrecondition, "already started");
  init->started = true;
  changed_.notify_all();
  return Ok();
}

Status FakeAgent::RemoveContainer(const std::string& container_id, bool force) {
  {
    HULL_FAKE_ENTER("RemoveContainer", timeouts_.call);
    auto it = containers_.find(container_id);
    if (it == containers_.end()) {
      return MakeError(ErrorCode::kNotFound, "agent call RemoveContainer: no such container");
    }
    for (auto& [exec_id, process] : it->second.processes) {
      if (!process.exit_status && process.started && !force) {
        return MakeError(ErrorCode::kFailedPrecondition, "agent call RemoveContainer: it runs");
      }
      ExitLocked(process, 128 + SIGKILL);
    }
    containers_.erase(it);
  }
  changed_.notify_all();
  return Ok();
}

Status FakeAgent::UpdateContainer(const std::string& container_id, const std::string&) {
  HULL_FAKE_ENTER("UpdateContainer", timeouts_.call);
  if (containers_.count(container_id) == 0) return MakeError(ErrorCode::kNotFound, "no container");
  return Ok();
}

Result<sandbox::ContainerStats> FakeAgent::StatsContainer(const std::string& container_id) {
  HULL_FAKE_ENTER("StatsContainer", timeouts_.call);
  if (containers_.count(container_id) == 0) return MakeError(ErrorCode::kNotFound, "no container");
  sandbox::ContainerStats stats;
  stats.cpu.usage_usec = 1234;
  stats.memory.usage_bytes = 4 << 20;
  stats.memory.stat["slab"] = 4096;
  stats.pids = {3, 100};
  stats.io.push_back({8, 0, 1, 2, 3, 4});
  return stats;
}

Status FakeAgent::PauseContainer(const std::string& container_id) {
  HULL_FAKE_ENTER("PauseContainer", timeouts_.call);
  auto it = containers_.find(container_id);
  if (it == containers_.end()) return MakeError(ErrorCode::kNotFound, "no container");
  it->second.paused = true;
  return Ok();
}

Status FakeAgent::ResumeContainer(const std::string& container_id) {
  HULL_FAKE_ENTER("ResumeContainer", timeouts_.call);
  auto it = containers_.find(container_id);
  if (it == containers_.end()) return MakeError(ErrorCode::kNotFound, "no container");
  it->second.paused = false;
  return Ok();
}

Result<std::vector<uint32_t>> FakeAgent::ListProcesses(const std::string& container_id) {
  HULL_FAKE_ENTER("ListProcesses", timeouts_.call);
  auto it = containers_.find(container_id);
  if (it == containers_.end()) return MakeError(ErrorCode::kNotFound, "no container");
  std::vector<uint32_t> pids;
  for (const auto& [exec_id, process] : it->second.processes) {
    if (process.started && !process.exit_status) pids.push_back(process.pid);
  }
  return pids;
}

Result<uint32_t> FakeAgent::ExecProcess(const sandbox::ExecSetup& setup) {
  HULL_FAKE_ENTER("ExecProcess", timeouts_.call);
  auto* init = Find({setup.process.container_id, ""});
  if (init == nullptr) return MakeError(ErrorCode::kNotFound, "agent call ExecProcess");
  if (!init->started || init->exit_status) {
    return MakeError(ErrorCode::kFailedPrecondition, "agent call ExecProcess: not running");
  }
  auto& processes = containers_[setup.process.container_id].processes;
  if (processes.count(setup.process.exec_id) != 0) {
    return MakeError(ErrorCode::kAlreadyExists, "agent call ExecProcess: exec id in use");
  }
  Process exec;
  exec.pid = next_pid_++;
  exec.started = true;
  processes.emplace(setup.process.exec_id, exec);
  changed_.notify_all();
  return exec.pid;
}

Status FakeAgent::SignalProcess(const sandbox::ProcessRef& ref, uint32_t signal, bool all) {
  {
    HULL_FAKE_ENTER("SignalProcess", timeouts_.call);
    auto* process = Find(ref);
    if (process == nullptr || process->exit_status) {
      return MakeError(ErrorCode::kNotFound, "agent call SignalProcess: no such process");
    }
    if (signal == SIGKILL || signal == SIGTERM) {
      ExitLocked(*process, 128 + signal);
      // The init's death takes the container's other processes with it.
      if (ref.exec_id.empty() || all) {
        for (auto& [exec_id, each] : containers_[ref.container_id].processes) {
          ExitLocked(each, 128 + SIGKILL);
        }
      }
    }
  }
  changed_.notify_all();
  return Ok();
}

Result<sandbox::ProcessExit> FakeAgent::WaitProcess(const sandbox::ProcessRef& ref,
                                                    sandbox::Cancellation& cancellation) {
  WakeOnCancel wake(&cancellation, mu_, changed_);
  std::unique_lock lock(mu_);
  HULL_CHECK_OK(Enter(lock, "WaitProcess", milliseconds(0), &cancellation), "");
  if (Find(ref) == nullptr) return MakeError(ErrorCode::kNotFound, "agent call WaitProcess");
  HULL_CHECK_OK(WaitLocked(
                    lock, cancellation,
                    [&] {
                      auto* process = Find(ref);
                      return process == nullptr || process->exit_status.has_value();
                    },
                    "WaitProcess"),
                "");
  auto* process = Find(ref);
  sandbox::ProcessExit exit;
  // A container removed under the wait: its processes were killed.
  exit.exit_status = process ? *process->exit_status : 128 + SIGKILL;
  exit.exited_at = std::chrono::system_clock::now();
  return exit;
}

Status FakeAgent::RemoveProcess(const sandbox::ProcessRef& ref) {
  HULL_FAKE_ENTER("RemoveProcess", timeouts_.call);
  auto* process = Find(ref);
  if (process == nullptr || ref.exec_id.empty()) {
    return MakeError(ErrorCode::kNotFound, "agent call RemoveProcess: no such exec");
  }
  if (!process->exit_status) {
    return MakeError(ErrorCode::kFailedPrecondition, "agent call RemoveProcess: it runs");
  }
  containers_[ref.container_id].processes.erase(ref.exec_id);
  return Ok();
}

Status FakeAgent::ResizeTty(const sandbox::ProcessRef& ref, sandbox::TtySize) {
  HULL_FAKE_ENTER("ResizeTty", timeouts_.call);
  if (Find(ref) == nullptr) return MakeError(ErrorCode::kNotFound, "agent call ResizeTty");
  return Ok();
}

// --- streams ------------------------------------------------------------------------------

class FakeOutput final : public sandbox::AgentStream<std::string> {
 public:
  FakeOutput(FakeAgent& agent, sandbox::ProcessRef ref, size_t index,
             sandbox::Cancellation& cancellation)
      : agent_(agent),
        ref_(std::move(ref)),
        index_(index),
        cancellation_(cancellation),
        wake_(&cancellation, agent.mu_, agent.changed_) {
    std::unique_lock lock(agent_.mu_);
    ended_ = agent_.Enter(lock, "ReadOutput", milliseconds(0), &cancellation_);
  }
  bool Next(std::string* data) override {
    if (!ended_) return false;
    std::unique_lock lock(agent_.mu_);
    auto ready = [&] {
      auto* process = agent_.Find(ref_);
      return process == nullptr || process->output[index_].size() > offset_ ||
             process->exit_status.has_value();
    };
    ended_ = agent_.WaitLocked(lock, cancellation_, ready, "ReadOutput");
    if (!ended_) return false;
    auto* process = agent_.Find(ref_);
    if (process == nullptr || process->output[index_].size() == offset_) return false;
    *data = process->output[index_].substr(offset_);
    offset_ = process->output[index_].size();
    return true;
  }
  Status Finish() override { return ended_; }

 private:
  FakeAgent& agent_;
  sandbox::ProcessRef ref_;
  size_t index_;
  size_t offset_ = 0;
  sandbox::Cancellation& cancellation_;
  WakeOnCancel wake_;
  Status ended_;
};

class FakeOom final : public sandbox::AgentStream<sandbox::OomEvent> {
 public:
  FakeOom(FakeAgent& agent, sandbox::Cancellation& cancellation)
      : agent_(agent),
        cancellation_(cancellation),
        wake_(&cancellation, agent.mu_, agent.changed_) {
    std::unique_lock lock(agent_.mu_);
    seen_ = agent_.oom_count_;
    ended_ = agent_.Enter(lock, "OomEvents", milliseconds(0), &cancellation_);
  }
  bool Next(sandbox::OomEvent* event) override {
    if (!ended_) return false;
    std::unique_lock lock(agent_.mu_);
    ended_ = agent_.WaitLocked(
        lock, cancellation_, [&] { return agent_.oom_count_ > seen_; }, "OomEvents");
    if (!ended_) return false;
    size_t back = agent_.oom_count_ - seen_;
    event->container_id = agent_.ooms_[agent_.ooms_.size() - back];
    ++seen_;
    return true;
  }
  Status Finish() override { return ended_; }

 private:
  FakeAgent& agent_;
  sandbox::Cancellation& cancellation_;
  WakeOnCancel wake_;
  uint64_t seen_ = 0;
  Status ended_;
};

class FakeStdin final : public sandbox::StdinStream {
 public:
  FakeStdin(FakeAgent& agent, sandbox::ProcessRef ref) : agent_(agent), ref_(std::move(ref)) {
    std::unique_lock lock(agent_.mu_);
    open_ = agent_.Enter(lock, "WriteStdin", milliseconds(0));
  }
  bool Write(std::string_view data) override {
    std::lock_guard lock(agent_.mu_);
    auto* process = agent_.Find(ref_);
    if (!open_ || agent_.dead_ || process == nullptr) return false;
    process->stdin_data += data;
    return true;
  }
  Status Close() override {
    {
      std::lock_guard lock(agent_.mu_);
      if (auto* process = agent_.Find(ref_)) process->stdin_closed = true;
    }
    agent_.changed_.notify_all();
    return open_;
  }

 private:
  FakeAgent& agent_;
  sandbox::ProcessRef ref_;
  Status open_;
};

std::unique_ptr<sandbox::AgentStream<std::string>> FakeAgent::ReadOutput(
    const sandbox::ProcessRef& process, sandbox::OutputStream stream,
    sandbox::Cancellation& cancellation) {
  return std::make_unique<FakeOutput>(*this, process, kStreamIndex(stream), cancellation);
}

std::unique_ptr<sandbox::StdinStream> FakeAgent::WriteStdin(const sandbox::ProcessRef& process,
                                                            sandbox::Cancellation&) {
  return std::make_unique<FakeStdin>(*this, process);
}

std::unique_ptr<sandbox::AgentStream<sandbox::OomEvent>> FakeAgent::OomEvents(
    sandbox::Cancellation& cancellation) {
  return std::make_unique<FakeOom>(*this, cancellation);
}

// --- network ------------------------------------------------------------------------------

Result<sandbox::NetInterface> FakeAgent::UpdateInterface(const sandbox::NetInterface& interface) {
  HULL_FAKE_ENTER("UpdateInterface", timeouts_.call);
  sandbox::NetInterface configured = interface;
  configured.name = "eth0";
  return configured;
}

Result<std::vector<sandbox::Route>> FakeAgent::UpdateRoutes(
    const std::vector<sandbox::Route>& routes) {
  HULL_FAKE_ENTER("UpdateRoutes", timeouts_.call);
  return routes;
}

Result<std::vector<sandbox::NetInterface>> FakeAgent::ListInterfaces() {
  HULL_FAKE_ENTER("ListInterfaces", timeouts_.call);
  return std::vector<sandbox::NetInterface>{};
}

Result<std::vector<sandbox::Route>> FakeAgent::ListRoutes() {
  HULL_FAKE_ENTER("ListRoutes", timeouts_.call);
  return std::vector<sandbox::Route>{};
}

}  // namespace hull::testing
