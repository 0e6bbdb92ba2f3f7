#include "sandbox_vm.h"

#include <grpcpp/channel.h>

#include <nlohmann/json.hpp>

#include "bundle.h"
#include "hull/core/config.h"
#include "hull/core/syscall.h"
#include "hull/sandbox/grpc_agent.h"
#include "hull/sandbox/io_pump.h"

namespace hull::testing {

namespace v1 = agent::v1;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

constexpr milliseconds kRpcTimeout = seconds(30);

}  // namespace

std::unique_ptr<grpc::ClientContext> ContextWithTimeout(milliseconds timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

std::string ProcessJson(const oci::Process& process) {
  // The spec serialiser is the one place that knows the field names.
  oci::Spec spec = oci::DefaultSpec({"sh"}, false);
  spec.process = process;
  auto json = nlohmann::json::parse(oci::SerializeOciSpec(spec));
  return json.at("process").dump();
}

Result<std::unique_ptr<SandboxVm>> SandboxVm::Boot(const SandboxVmOptions& options) {
  Config config;
  config.run_dir = options.run_dir;
  config.hypervisor.kernel = options.guest_dir + "/vmlinuz";
  config.hypervisor.initrd =
      options.initrd.empty() ? options.guest_dir + "/initrd.img" : options.initrd;
  config.hypervisor.root_image =
      options.root_image.empty() ? options.guest_dir + "/root.erofs" : options.root_image;
  config.hypervisor.memory_mib = options.memory_mib;
  config.agent.log_level = options.agent_log_level;
  config.agent.boot_timeout_seconds = 90;
  config.hypervisor.template_enabled = options.from_template;
  config.hypervisor.template_dir = options.template_dir;
  std::unique_ptr<SandboxVm> sandbox(new SandboxVm());
  sandbox->sandbox_id_ = "e" + RandomHex(5);
  sandbox->rootfs_parent_ = options.run_dir + "/rootfs-" + sandbox->sandbox_id_;
  HULL_TRY(sandbox->session_, sandbox::Sandbox::Open(config, sandbox->sandbox_id_),
           "boot a sandbox VM");
  auto* grpc_agent = dynamic_cast<sandbox::GrpcAgent*>(&sandbox->session_->unwatched_agent());
  if (grpc_agent == nullptr) return MakeError(ErrorCode::kInternal, "the agent is not gRPC");
  sandbox->stub_ = v1::Agent::NewStub(grpc_agent->channel());
  return sandbox;
}

SandboxVm::~SandboxVm() {
  if (!session_) return;
  // Whatever a test left: force-removed, as a shim's cleanup would.
  v1::DestroySandboxRequest request;
  request.set_sandbox_id(sandbox_id_);
  v1::DestroySandboxResponse response;
  (void)agent().DestroySandbox(ContextWithTimeout(seconds(30)).get(), request, &response);
  session_->Close();
  (void)RemoveTree(rootfs_parent_);
}

std::string SandboxVm::Console() const {
  if (!session_) return "";
  return ReadFile(session_->vm().console_log_path(), 1 << 20).value_or("(no console log)");
}

std::string SandboxVm::HostRootfs(const std::string& id) const { return rootfs_parent_ + "/" + id; }

std::string SandboxVm::GuestRootfs(const std::string& id) const {
  auto it = guest_rootfs_.find(id);
  return it == guest_rootfs_.end() ? "" : it->second;
}

Status SandboxVm::MakeRootfs(const std::string& id) {
  if (!PathExists(HostRootfs(id) + "/bin/busybox")) {
    HULL_CHECK_OK(MakeBusyboxRootfs(HostRootfs(id)), "");
  }
  if (guest_rootfs_.count(id) != 0) return Ok();
  HULL_TRY(guest_rootfs_[id], session_->SharePath(id, HostRootfs(id), false), "");
  return Ok();
}

grpc::Status SandboxVm::CreateContainer(const std::string& id, const oci::Spec& spec,
                                        const v1::ProcessIo& io) {
  if (auto made = MakeRootfs(id); !made)
    return grpc::Status(grpc::StatusCode::INTERNAL, made.error().ToString());
  v1::CreateContainerRequest request;
  request.set_container_id(id);
  request.set_oci_spec_json(oci::SerializeOciSpec(spec));
  request.set_rootfs_path(GuestRootfs(id));
  *request.mutable_io() = io;
  v1::CreateContainerResponse response;
  return agent().CreateContainer(ContextWithTimeout(kRpcTimeout).get(), request, &response);
}

grpc::Status SandboxVm::StartContainer(const std::string& id) {
  v1::StartContainerRequest request;
  request.set_container_id(id);
  v1::StartContainerResponse response;
  return agent().StartContainer(ContextWithTimeout(kRpcTimeout).get(), request, &response);
}

grpc::Status SandboxVm::RunContainer(const std::string& id, const oci::Spec& spec,
                                     const v1::ProcessIo& io) {
  auto created = CreateContainer(id, spec, io);
  if (!created.ok()) return created;
  return StartContainer(id);
}

grpc::Status SandboxVm::RemoveContainer(const std::string& id, bool force) {
  v1::RemoveContainerRequest request;
  request.set_container_id(id);
  request.set_force(force);
  v1::RemoveContainerResponse response;
  return agent().RemoveContainer(ContextWithTimeout(kRpcTimeout).get(), request, &response);
}

grpc::Status SandboxVm::Exec(const std::string& id, const std::string& exec_id,
                             const oci::Spec& spec, std::vector<std::string> args,
                             const v1::ProcessIo& io, std::optional<std::vector<std::string>> env) {
  oci::Process process = spec.process.value_or(oci::Process{});
  process.args = std::move(args);
  process.terminal = io.terminal();
  if (env) process.env = std::move(*env);
  v1::ExecProcessRequest request;
  request.set_container_id(id);
  request.set_exec_id(exec_id);
  request.set_oci_process_json(ProcessJson(process));
  *request.mutable_io() = io;
  v1::ExecProcessResponse response;
  return agent().ExecProcess(ContextWithTimeout(kRpcTimeout).get(), request, &response);
}

grpc::Status SandboxVm::Wait(const std::string& id, const std::string& exec_id,
                             v1::WaitProcessResponse* response, milliseconds timeout) {
  v1::WaitProcessRequest request;
  request.set_container_id(id);
  request.set_exec_id(exec_id);
  return agent().WaitProcess(ContextWithTimeout(timeout).get(), request, response);
}

grpc::Status SandboxVm::Signal(const std::string& id, const std::string& exec_id, int signal,
                               bool all) {
  v1::SignalProcessRequest request;
  request.set_container_id(id);
  request.set_exec_id(exec_id);
  request.set_signal(static_cast<uint32_t>(signal));
  request.set_all(all);
  v1::SignalProcessResponse response;
  return agent().SignalProcess(ContextWithTimeout(kRpcTimeout).get(), request, &response);
}

grpc::Status SandboxVm::WriteStdin(const std::string& id, const std::string& exec_id,
                                   const std::string& data, bool close) {
  auto context = ContextWithTimeout(kRpcTimeout);
  v1::WriteStdinResponse response;
  auto writer = agent().WriteStdin(context.get(), &response);
  v1::WriteStdinRequest chunk;
  chunk.set_container_id(id);
  chunk.set_exec_id(exec_id);
  chunk.set_data(data);
  chunk.set_close(close);
  writer->Write(chunk);
  writer->WritesDone();
  return writer->Finish();
}

// --- OutputReader ------------------------------------------------------------------

OutputReader::OutputReader(sandbox::AgentApi& agent, const std::string& container_id,
                           const std::string& exec_id, sandbox::OutputStream stream) {
  thread_ =
      std::thread([this, &agent, process = sandbox::ProcessRef{container_id, exec_id}, stream] {
        auto ended = sandbox::PumpOutput(agent, process, stream, cancellation_,
                                         [this](std::string_view data) {
                                           std::lock_guard lock(mu_);
                                           text_ += data;
                                           changed_.notify_all();
                                           return true;
                                         });
        std::lock_guard lock(mu_);
        status_ = std::move(ended);
        ended_ = true;
        changed_.notify_all();
      });
}

OutputReader::~OutputReader() {
  cancellation_.Cancel();
  thread_.join();
}

bool OutputReader::WaitFor(const std::string& needle, milliseconds timeout) {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, timeout, [&] {
    return text_.find(needle) != std::string::npos || ended_;
  }) && text_.find(needle) != std::string::npos;
}

bool OutputReader::WaitForEnd(milliseconds timeout) {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, timeout, [&] { return ended_; });
}

std::string OutputReader::text() {
  std::lock_guard lock(mu_);
  return text_;
}

Status OutputReader::status() {
  std::lock_guard lock(mu_);
  return status_;
}

}  // namespace hull::testing
