#include "hull/sandbox/grpc_agent.h"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel_posix.h>

#include <algorithm>

#include "agent_wire.h"
#include "hull/agent/v1/agent.grpc.pb.h"
#include "hull/core/log.h"
#include "hull/proto/grpc_error.h"

namespace hull::sandbox {

namespace v1 = agent::v1;
using std::chrono::milliseconds;

// --- helpers ------------------------------------------------------------------------

struct GrpcAgent::Stubs {
  explicit Stubs(const std::shared_ptr<grpc::Channel>& channel)
      : health(v1::Health::NewStub(channel)), agent(v1::Agent::NewStub(channel)) {}
  std::unique_ptr<v1::Health::Stub> health;
  std::unique_ptr<v1::Agent::Stub> agent;
};

namespace {

// A deadline missed names the call and the deadline; other errors keep the
// agent's code and message.
Error CallError(const grpc::Status& status, std::string_view call, milliseconds deadline) {
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    auto ms = deadline.count();
    std::string limit =
        ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
    return Error(ErrorCode::kDeadlineExceeded,
                 "agent call " + std::string(call) + ": deadline of " + limit + " exceeded");
  }
  return ErrorFromGrpc(status, "agent call " + std::string(call));
}

// One unary call of `stub` with its deadline.
template <typename Stub, typename Request, typename Response>
Result<Response> Call(Stub& stub,
                      grpc::Status (Stub::*rpc)(grpc::ClientContext*, const Request&, Response*),
                      std::string_view name, milliseconds timeout, const Request& request) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  Response response;
  grpc::Status status = (stub.*rpc)(&context, request, &response);
  if (!status.ok()) return Unexpected{CallError(status, name, timeout)};
  return response;
}

// A call whose answer carries nothing.
template <typename Response>
Status Done(Result<Response> result) {
  if (!result) return Unexpected{std::move(result).error()};
  return Ok();
}

template <typename Request>
Request ForContainer(const std::string& container_id) {
  Request request;
  request.set_container_id(container_id);
  return request;
}

template <typename Request>
Request ForProcess(const ProcessRef& process) {
  Request request;
  request.set_container_id(process.container_id);
  request.set_exec_id(process.exec_id);
  return request;
}

// Ties a ClientContext to a Cancellation for as long as it lives.
class CancelLink {
 public:
  CancelLink(Cancellation& cancellation, grpc::ClientContext& context)
      : cancellation_(cancellation),
        id_(cancellation.OnCancel([&context] { context.TryCancel(); })) {}
  ~CancelLink() { cancellation_.Forget(id_); }
  CancelLink(const CancelLink&) = delete;
  CancelLink& operator=(const CancelLink&) = delete;

 private:
  Cancellation& cancellation_;
  uint64_t id_;
};

// --- streams ----------------------------------------------------------------------

// A server stream of `Wire` messages, read as `Item`s.
template <typename Wire, typename Item>
class StreamReader final : public AgentStream<Item> {
 public:
  using Convert = void (*)(Wire& wire, Item* item);
  template <typename Request>
  StreamReader(v1::Agent::Stub& stub,
               std::unique_ptr<grpc::ClientReader<Wire>> (v1::Agent::Stub::*rpc)(
                   grpc::ClientContext*, const Request&),
               const Request& request, Cancellation& cancellation, std::string_view name,
               Convert convert)
      : link_(cancellation, context_), name_(name), convert_(convert) {
    reader_ = (stub.*rpc)(&context_, request);
  }
  bool Next(Item* item) override {
    if (!reader_->Read(&wire_)) return false;
    convert_(wire_, item);
    return true;
  }
  Status Finish() override {
    auto status = reader_->Finish();
    if (!status.ok()) return Unexpected{ErrorFromGrpc(status, "agent call " + name_)};
    return Ok();
  }

 private:
  grpc::ClientContext context_;
  CancelLink link_;
  std::string name_;
  Convert convert_;
  std::unique_ptr<grpc::ClientReader<Wire>> reader_;
  Wire wire_;
};

class StdinWriter final : public StdinStream {
 public:
  StdinWriter(v1::Agent::Stub& stub, const ProcessRef& process, Cancellation& cancellation)
      : link_(cancellation, context_) {
    writer_ = stub.WriteStdin(&context_, &response_);
    // The first message names the process, even with nothing to send.
    v1::WriteStdinRequest first;
    first.set_container_id(process.container_id);
    first.set_exec_id(process.exec_id);
    open_ = writer_->Write(first);
  }
  ~StdinWriter() override { (void)Close(); }
  bool Write(std::string_view data) override {
    if (!open_ || closed_) return false;
    // The agent takes at most 1 MiB per message.
    constexpr size_t kMaxChunk = 1 << 20;
    while (!data.empty()) {
      v1::WriteStdinRequest chunk;
      size_t n = std::min(data.size(), kMaxChunk);
      chunk.set_data(data.data(), n);
      if (!writer_->Write(chunk)) return open_ = false;
      data.remove_prefix(n);
    }
    return true;
  }
  Status Close() override {
    if (closed_) return Ok();
    closed_ = true;
    v1::WriteStdinRequest last;
    last.set_close(true);
    if (open_) writer_->Write(last);
    writer_->WritesDone();
    auto status = writer_->Finish();
    if (!status.ok()) return Unexpected{ErrorFromGrpc(status, "agent call WriteStdin")};
    return Ok();
  }

 private:
  grpc::ClientContext context_;
  CancelLink link_;
  v1::WriteStdinResponse response_;
  std::unique_ptr<grpc::ClientWriter<v1::WriteStdinRequest>> writer_;
  bool open_ = false;
  bool closed_ = false;
};

std::shared_ptr<grpc::Channel> ChannelOnFd(UniqueFd fd) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  // A large receive window: the transport is slow to round-trip under
  // emulation, and a 64 KiB window caps output streams at window/RTT.
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8 << 20);
  return grpc::CreateCustomInsecureChannelFromFd("hull-agent", fd.release(), args);
}

}  // namespace

// --- connection -----------------------------------------------------------------------

GrpcAgent::GrpcAgent(std::shared_ptr<grpc::Channel> channel, AgentTimeouts timeouts)
    : channel_(std::move(channel)),
      stubs_(std::make_unique<Stubs>(channel_)),
      timeouts_(timeouts) {}

GrpcAgent::~GrpcAgent() = default;

std::shared_ptr<grpc::Channel> GrpcAgent::channel() const { return channel_; }

std::unique_ptr<GrpcAgent> GrpcAgent::FromFd(UniqueFd fd, AgentTimeouts timeouts) {
  return std::unique_ptr<GrpcAgent>(new GrpcAgent(ChannelOnFd(std::move(fd)), timeouts));
}

Result<std::unique_ptr<GrpcAgent>> GrpcAgent::Connect(const Dialer& dial,
                                                      Clock::time_point deadline,
                                                      AgentTimeouts timeouts) {
  Error last(ErrorCode::kDeadlineExceeded, "no attempt made");
  while (Clock::now() < deadline) {
    auto fd = dial(deadline);
    // The dialer does its own waiting; its failure (a dead VM, a deadline)
    // does not get better by dialling again.
    if (!fd) return std::move(fd).error().Wrap("connect to the agent");
    auto agent = FromFd(std::move(*fd), timeouts);
    auto remaining = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    auto check = agent->CheckWithin(std::clamp(remaining, milliseconds(1), milliseconds(30000)));
    if (check && *check) return agent;
    last = check ? Error(ErrorCode::kUnavailable, "agent is not serving yet")
                 : std::move(check).error();
    HULL_LOG_DEBUG("agent not ready: {}", last.ToString());
  }
  return Unexpected{std::move(last).Wrap("connect to the agent (deadline passed)")};
}

Result<bool> GrpcAgent::CheckWithin(milliseconds timeout) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  context.set_wait_for_ready(true);
  v1::CheckResponse response;
  auto status = stubs_->health->Check(&context, v1::CheckRequest(), &response);
  if (!status.ok()) return Unexpected{CallError(status, "Health.Check", timeout)};
  return response.status() == v1::CheckResponse::SERVING;
}

// --- calls ---------------------------------------------------------------------------

Result<bool> GrpcAgent::Check() { return CheckWithin(timeouts_.call); }

Result<AgentVersion> GrpcAgent::Version() {
  HULL_TRY(auto response,
           Call(*stubs_->health, &v1::Health::Stub::Version, "Health.Version", timeouts_.call,
                v1::VersionRequest()),
           "");
  return AgentVersion{response.agent_version(), response.api_version(), response.git_commit()};
}

Result<GuestDetails> GrpcAgent::GetGuestDetails() {
  HULL_TRY(auto response,
           Call(*stubs_->agent, &v1::Agent::Stub::GetGuestDetails, "GetGuestDetails",
                timeouts_.call, v1::GetGuestDetailsRequest()),
           "");
  return FromWire(response);
}

Result<bool> GrpcAgent::Shutdown(bool force) {
  v1::ShutdownRequest request;
  request.set_force(force);
  auto done = Call(*stubs_->agent, &v1::Agent::Stub::Shutdown, "Shutdown", timeouts_.call, request);
  if (done) return done->synced();  // an older agent answers unsynced
  if (done.error().code() == ErrorCode::kUnavailable) return false;
  return Unexpected{std::move(done).error()};
}

Status GrpcAgent::CreateSandbox(const SandboxSetup& setup) {
  v1::CreateSandboxRequest request;
  request.set_sandbox_id(setup.sandbox_id);
  request.set_hostname(setup.hostname);
  request.set_entropy(setup.entropy);
  request.set_realtime_ns(setup.realtime_ns);
  for (const auto& storage : setup.storages) *request.add_storages() = ToWire(storage);
  return Done(Call(*stubs_->agent, &v1::Agent::Stub::CreateSandbox, "CreateSandbox", timeouts_.call,
                   request));
}

Status GrpcAgent::DestroySandbox(const std::string& sandbox_id, bool power_off) {
  v1::DestroySandboxRequest request;
  request.set_sandbox_id(sandbox_id);
  request.set_power_off(power_off);
  return Done(Call(*stubs_->agent, &v1::Agent::Stub::DestroySandbox, "DestroySandbox",
                   timeouts_.call, request));
}

Result<uint32_t> GrpcAgent::CreateContainer(const ContainerSetup& setup) {
  auto request = ForContainer<v1::CreateContainerRequest>(setup.container_id);
  request.set_oci_spec_json(setup.oci_spec_json);
  request.set_rootfs_path(setup.rootfs_path);
  *request.mutable_io() = ToWire(setup.stdio);
  HULL_TRY(auto response,
           Call(*stubs_->agent, &v1::Agent::Stub::CreateContainer, "CreateContainer",
                timeouts_.create, request),
           "");
  return response.init_pid();
}

Status GrpcAgent::StartContainer(const std::string& container_id) {
  return Done(Call(*stubs_->agent, &v1::Agent::Stub::StartContainer, "StartContainer",
                   timeouts_.call, ForContainer<v1::StartContainerRequest>(container_id)));
}

Status GrpcAgent::PauseContainer(const std::string& container_id) {
  return Done(Call(*stubs_->agent, &v1::Agent::Stub::PauseContainer, "PauseContainer",
                   timeouts_.call, ForContainer<v1::PauseContainerRequest>(container_id)));
}

Status GrpcAgent::ResumeContainer(const std::string& container_id) {
  return Done(Call(*stubs_->agent, &v1::Agent::Stub::ResumeContainer, "ResumeContainer",
                   timeouts_.call, ForContainer<v1::ResumeContainerRequest>(container_id)));
}

Status GrpcAgent::RemoveContainer(const std::string& container_id, bool force) {
  auto request = ForContainer<v1::RemoveContainerRequest>(container_id);
  request.set_force(force);
  return Done(Call(*stubs_->agent, &v1::Agent::Stub::RemoveContainer, "RemoveContainer",
                   timeouts_.call, request));
}

Status GrpcAgent::UpdateContainer(const std::string& container_id,
                                  const std::string& linux_resources_json) {
  auto request = ForContainer<v1::UpdateContainerRequest>(container_id);
  request.set_linux_resources_json(linux_resources_json);
  return Done(Call(*stubs_->agent, &v1::Agent::Stub::UpdateContainer, "UpdateContainer",
                   timeouts_.call, request));
}

Result<ContainerStats> GrpcAgent::StatsContainer(const std::string& container_id) {
  HULL_TRY(auto response,
           Call(*stubs_->agent, &v1::Agent::Stub::StatsContainer, "StatsContainer", timeouts_.call,
                ForContainer<v1::StatsContainerRequest>(container_id)),
           "");
  return FromWire(response);
}

Result<std::vector<uint32_t>> GrpcAgent::ListProcesses(const std::string& container_id) {
  HULL_TRY(auto response,
           Call(*stubs_->agent, &v1::Agent::Stub::ListProcesses, "ListProcesses", timeouts_.call,
                ForContainer<v1::ListProcessesRequest>(container_id)),
           "");
  size_t count = std::min(static_cast<size_t>(response.pids_size()), kMaxPids);
  return std::vector<uint32_t>(response.pids().begin(), response.pids().begin() + count);
}

Result<uint32_t> GrpcAgent::ExecProcess(const ExecSetup& setup) {
  auto request = ForProcess<v1::ExecProcessRequest>(setup.process);
  request.set_oci_process_json(setup.oci_process_json);
  *request.mutable_io() = ToWire(setup.stdio);
  HULL_TRY(
      auto response,
      Call(*stubs_->agent, &v1::Agent::Stub::ExecProcess, "ExecProcess", timeouts_.call, request),
      "");
  return response.pid();
}

Status GrpcAgent::SignalProcess(const ProcessRef& process, uint32_t signal, bool all) {
  auto request = ForProcess<v1::SignalProcessRequest>(process);
  request.set_signal(signal);
  request.set_all(all);
  return Done(Call(*stubs_->agent, &v1::Agent::Stub::SignalProcess, "SignalProcess", timeouts_.call,
                   request));
}

Result<ProcessExit> GrpcAgent::WaitProcess(const ProcessRef& process, Cancellation& cancellation) {
  grpc::ClientContext context;
  CancelLink link(cancellation, context);
  auto request = ForProcess<v1::WaitProcessRequest>(process);
  v1::WaitProcessResponse response;
  auto status = stubs_->agent->WaitProcess(&context, request, &response);
  if (!status.ok()) return Unexpected{ErrorFromGrpc(status, "agent call WaitProcess")};
  return FromWire(response);
}

Status GrpcAgent::RemoveProcess(const ProcessRef& process) {
  return Done(Call(*stubs_->agent, &v1::Agent::Stub::RemoveProcess, "RemoveProcess", timeouts_.call,
                   ForProcess<v1::RemoveProcessRequest>(process)));
}

Status GrpcAgent::ResizeTty(const ProcessRef& process, TtySize size) {
  auto request = ForProcess<v1::ResizeTtyRequest>(process);
  request.mutable_size()->set_rows(size.rows);
  request.mutable_size()->set_columns(size.columns);
  return Done(
      Call(*stubs_->agent, &v1::Agent::Stub::ResizeTty, "ResizeTty", timeouts_.call, request));
}

std::unique_ptr<AgentStream<std::string>> GrpcAgent::ReadOutput(const ProcessRef& process,
                                                                OutputStream stream,
                                                                Cancellation& cancellation) {
  auto request = ForProcess<v1::ReadOutputRequest>(process);
  request.set_stream(ToWire(stream));
  return std::make_unique<StreamReader<v1::OutputChunk, std::string>>(
      *stubs_->agent, &v1::Agent::Stub::ReadOutput, request, cancellation, "ReadOutput",
      [](v1::OutputChunk& chunk, std::string* data) { *data = std::move(*chunk.mutable_data()); });
}

std::unique_ptr<StdinStream> GrpcAgent::WriteStdin(const ProcessRef& process,
                                                   Cancellation& cancellation) {
  return std::make_unique<StdinWriter>(*stubs_->agent, process, cancellation);
}

std::unique_ptr<AgentStream<OomEvent>> GrpcAgent::OomEvents(Cancellation& cancellation) {
  return std::make_unique<StreamReader<v1::OomEvent, OomEvent>>(
      *stubs_->agent, &v1::Agent::Stub::OomEvents, v1::OomEventsRequest(), cancellation,
      "OomEvents",
      [](v1::OomEvent& wire, OomEvent* event) { event->container_id = wire.container_id(); });
}

Result<NetInterface> GrpcAgent::UpdateInterface(const NetInterface& interface) {
  v1::UpdateInterfaceRequest request;
  auto* wire = request.mutable_interface();
  wire->set_name(interface.name);
  wire->set_mac_address(interface.mac_address);
  wire->set_mtu(interface.mtu);
  wire->set_up(interface.up);
  for (const auto& address : interface.addresses) *wire->add_addresses() = ToWire(address);
  HULL_TRY(auto response,
           Call(*stubs_->agent, &v1::Agent::Stub::UpdateInterface, "UpdateInterface",
                timeouts_.call, request),
           "");
  return FromWire(response);
}

Result<std::vector<Route>> GrpcAgent::UpdateRoutes(const std::vector<Route>& routes) {
  v1::UpdateRoutesRequest request;
  for (const auto& route : routes) *request.add_routes() = ToWire(route);
  HULL_TRY(
      auto response,
      Call(*stubs_->agent, &v1::Agent::Stub::UpdateRoutes, "UpdateRoutes", timeouts_.call, request),
      "");
  return FromWire(response.routes());
}

Result<std::vector<NetInterface>> GrpcAgent::ListInterfaces() {
  HULL_TRY(auto response,
           Call(*stubs_->agent, &v1::Agent::Stub::ListInterfaces, "ListInterfaces", timeouts_.call,
                v1::ListInterfacesRequest()),
           "");
  std::vector<NetInterface> out;
  for (int i = 0; i < response.interfaces_size() && i < kMaxListEntries; ++i) {
    out.push_back(FromWire(response.interfaces(i)));
  }
  return out;
}

Result<std::vector<Route>> GrpcAgent::ListRoutes() {
  HULL_TRY(auto response,
           Call(*stubs_->agent, &v1::Agent::Stub::ListRoutes, "ListRoutes", timeouts_.call,
                v1::ListRoutesRequest()),
           "");
  return FromWire(response.routes());
}

}  // namespace hull::sandbox
