#include "agent_server.h"

#include <grpcpp/server_builder.h>
#include <grpcpp/server_posix.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <thread>

#include "convert.h"
#include "guest_details.h"
#include "guest_init.h"
#include "hull/core/ids.h"
#include "hull/core/log.h"
#include "hull/core/oci_spec.h"
#include "hull/core/syscall.h"
#include "hull/core/thread.h"
#include "network.h"
#include "sandbox.h"

namespace hull::agent {

namespace v1 = ::hull::agent::v1;

namespace {

void NoteRequest(AgentState* state) {
  uint64_t expected = 0;
  state->first_request_us.compare_exchange_strong(expected, BootTimeMicros());
}

}  // namespace

class AgentServer::HealthService final : public v1::Health::Service {
 public:
  explicit HealthService(AgentState* state) : state_(state) {}

  grpc::Status Check(grpc::ServerContext*, const v1::CheckRequest*,
                     v1::CheckResponse* response) override {
    NoteRequest(state_);
    response->set_status(v1::CheckResponse::SERVING);
    return grpc::Status::OK;
  }

  grpc::Status Version(grpc::ServerContext*, const v1::VersionRequest*,
                       v1::VersionResponse* response) override {
    NoteRequest(state_);
    response->set_agent_version(std::string(kAgentVersion));
    response->set_api_version(kApiVersion);
    return grpc::Status::OK;
  }

 private:
  AgentState* state_;
};

class AgentServer::AgentService final : public v1::Agent::Service {
 public:
  AgentService(AgentState* state, engine::Engine* engine, std::function<void()> on_shutdown)
      : state_(state), engine_(engine), on_shutdown_(std::move(on_shutdown)) {
    engine_->SetOomHandler([this](const std::string& id) { PublishOom(id); });
  }

  ~AgentService() override {
    engine_->SetOomHandler(nullptr);
    if (shutdown_thread_.joinable()) shutdown_thread_.join();
  }

  // --- guest ---------------------------------------------------------------

  grpc::Status GetGuestDetails(grpc::ServerContext*, const v1::GetGuestDetailsRequest*,
                               v1::GetGuestDetailsResponse* response) override {
    NoteRequest(state_);
    FillGuestDetails(*state_, response);
    return grpc::Status::OK;
  }

  grpc::Status Shutdown(grpc::ServerContext*, const v1::ShutdownRequest* request,
                        v1::ShutdownResponse* response) override {
    NoteRequest(state_);
    if (!request->force() && !engine_->ContainerIds().empty()) {
      return ToGrpc(Error(ErrorCode::kFailedPrecondition,
                          "shutdown: containers still exist (remove them first, or force)"));
    }
    // Synced before the reply: a host that ends the VM on it loses nothing.
    ::sync();
    response->set_synced(true);
    ScheduleShutdown();
    return grpc::Status::OK;
  }

  // --- sandbox ---------------------------------------------------------------

  grpc::Status CreateSandbox(grpc::ServerContext*, const v1::CreateSandboxRequest* request,
                             v1::CreateSandboxResponse*) override {
    NoteRequest(state_);
    std::lock_guard lock(sandbox_mu_);
    if (auto id = ValidateId("sandbox", request->sandbox_id()); !id) return ToGrpc(id.error());
    if (!sandbox_id_.empty()) {
      return ToGrpc(Error(ErrorCode::kAlreadyExists,
                          "sandbox `" + sandbox_id_ + "` already exists in this VM"));
    }
    // First, before anything can use them: a clone's RNG and clock are the
    // template's until now.
    if (auto seeded = ReseedRandom(request->entropy()); !seeded) {
      return ToGrpc(std::move(seeded).error().Wrap("create sandbox"));
    }
    if (auto set = SetRealtimeClock(request->realtime_ns()); !set) {
      return ToGrpc(std::move(set).error().Wrap("create sandbox"));
    }
    if (!request->hostname().empty()) {
      if (request->hostname().size() > 64 || request->hostname().find('/') != std::string::npos) {
        return ToGrpc(Error(ErrorCode::kInvalidArgument,
                            "hostname `" + request->hostname() + "` is invalid"));
      }
      if (::sethostname(request->hostname().data(), request->hostname().size()) < 0) {
        return ToGrpc(Error::FromErrno(errno, "set the sandbox hostname"));
      }
    }
    std::vector<std::string> mounted;
    for (const auto& storage : request->storages()) {
      if (auto status = MountStorage(storage); !status) {
        for (const auto& point : mounted) (void)UnmountStorage(point);
        return ToGrpc(std::move(status).error().Wrap("create sandbox"));
      }
      mounted.push_back(storage.mount_point());
    }
    sandbox_id_ = request->sandbox_id();
    storages_ = std::move(mounted);
    HULL_LOG_INFO("sandbox {} created ({} storages)", sandbox_id_, storages_.size());
    return grpc::Status::OK;
  }

  grpc::Status DestroySandbox(grpc::ServerContext*, const v1::DestroySandboxRequest* request,
                              v1::DestroySandboxResponse*) override {
    NoteRequest(state_);
    std::lock_guard lock(sandbox_mu_);
    if (request->sandbox_id() != sandbox_id_) {
      return ToGrpc(
          Error(ErrorCode::kNotFound, "sandbox `" + request->sandbox_id() + "` does not exist"));
    }
    for (const auto& id : engine_->ContainerIds())
      (void)engine_->Remove(id, true, std::chrono::seconds(5));
    for (auto it = storages_.rbegin(); it != storages_.rend(); ++it) (void)UnmountStorage(*it);
    storages_.clear();
    sandbox_id_.clear();
    if (request->power_off()) ScheduleShutdown();
    return grpc::Status::OK;
  }

  // --- containers --------------------------------------------------------------

  grpc::Status CreateContainer(grpc::ServerContext*, const v1::CreateContainerRequest* request,
                               v1::CreateContainerResponse* response) override {
    NoteRequest(state_);
    const std::string what = "create container `" + request->container_id() + "`";
    auto spec = oci::ParseOciSpec(request->oci_spec_json());
    if (!spec) return ToGrpc(std::move(spec).error().Wrap(what + ": config.json"));
    if (auto path = ValidateGuestPath("rootfs_path", request->rootfs_path(), kStorageRoot); !path) {
      return ToGrpc(std::move(path).error().Wrap(what));
    }
    for (const auto& storage : request->storages()) {
      if (auto status = MountStorage(storage); !status)
        return ToGrpc(std::move(status).error().Wrap(what));
    }
    if (auto created = engine_->Create(request->container_id(), *spec, request->rootfs_path(),
                                       IoRequestFromProto(request->io()));
        !created) {
      return ToGrpc(created.error());
    }
    if (auto pid = engine_->Pid(request->container_id(), ""); pid)
      response->set_init_pid(static_cast<uint32_t>(*pid));
    return grpc::Status::OK;
  }

  grpc::Status StartContainer(grpc::ServerContext*, const v1::StartContainerRequest* request,
                              v1::StartContainerResponse*) override {
    NoteRequest(state_);
    return ToGrpc(engine_->Start(request->container_id()));
  }

  grpc::Status RemoveContainer(grpc::ServerContext*, const v1::RemoveContainerRequest* request,
                               v1::RemoveContainerResponse*) override {
    NoteRequest(state_);
    auto timeout =
        std::chrono::seconds(request->timeout_seconds() == 0 ? 10 : request->timeout_seconds());
    return ToGrpc(engine_->Remove(request->container_id(), request->force(), timeout));
  }

  grpc::Status UpdateContainer(grpc::ServerContext*, const v1::UpdateContainerRequest* request,
                               v1::UpdateContainerResponse*) override {
    NoteRequest(state_);
    auto resources = oci::ParseOciResources(request->linux_resources_json());
    if (!resources) return ToGrpc(std::move(resources).error().Wrap("update container"));
    return ToGrpc(engine_->Update(request->container_id(), *resources));
  }

  grpc::Status StatsContainer(grpc::ServerContext*, const v1::StatsContainerRequest* request,
                              v1::StatsContainerResponse* response) override {
    NoteRequest(state_);
    auto stats = engine_->Stats(request->container_id());
    if (!stats) return ToGrpc(stats.error());
    FillStats(*stats, response);
    return grpc::Status::OK;
  }

  grpc::Status PauseContainer(grpc::ServerContext*, const v1::PauseContainerRequest* request,
                              v1::PauseContainerResponse*) override {
    NoteRequest(state_);
    return ToGrpc(engine_->Pause(request->container_id()));
  }

  grpc::Status ResumeContainer(grpc::ServerContext*, const v1::ResumeContainerRequest* request,
                               v1::ResumeContainerResponse*) override {
    NoteRequest(state_);
    return ToGrpc(engine_->Resume(request->container_id()));
  }

  grpc::Status ListProcesses(grpc::ServerContext*, const v1::ListProcessesRequest* request,
                             v1::ListProcessesResponse* response) override {
    NoteRequest(state_);
    auto pids = engine_->Pids(request->container_id());
    if (!pids) return ToGrpc(pids.error());
    for (pid_t pid : *pids) response->add_pids(static_cast<uint32_t>(pid));
    return grpc::Status::OK;
  }

  // --- processes ---------------------------------------------------------------

  grpc::Status ExecProcess(grpc::ServerContext*, const v1::ExecProcessRequest* request,
                           v1::ExecProcessResponse* response) override {
    NoteRequest(state_);
    auto process = oci::ParseOciProcess(request->oci_process_json());
    if (!process) return ToGrpc(std::move(process).error().Wrap("exec: process"));
    auto status = engine_->Exec(request->container_id(), request->exec_id(), *process,
                                IoRequestFromProto(request->io()));
    if (auto pid = engine_->Pid(request->container_id(), request->exec_id()); pid && *pid > 0) {
      response->set_pid(static_cast<uint32_t>(*pid));
    }
    return ToGrpc(status);
  }

  grpc::Status SignalProcess(grpc::ServerContext*, const v1::SignalProcessRequest* request,
                             v1::SignalProcessResponse*) override {
    NoteRequest(state_);
    return ToGrpc(engine_->Signal(request->container_id(), request->exec_id(),
                                  static_cast<int>(request->signal()), request->all()));
  }

  grpc::Status WaitProcess(grpc::ServerContext*, const v1::WaitProcessRequest* request,
                           v1::WaitProcessResponse* response) override {
    NoteRequest(state_);
    auto result = engine_->Wait(request->container_id(), request->exec_id());
    if (!result) return ToGrpc(result.error());
    response->set_exit_status(result->status.ShellCode());
    response->set_signal(static_cast<uint32_t>(result->status.signal));
    response->set_oom_killed(result->oom_killed);
    response->set_exited_at_ns(result->exited_at_ns);
    return grpc::Status::OK;
  }

  grpc::Status RemoveProcess(grpc::ServerContext*, const v1::RemoveProcessRequest* request,
                             v1::RemoveProcessResponse*) override {
    NoteRequest(state_);
    return ToGrpc(engine_->RemoveExec(request->container_id(), request->exec_id()));
  }

  grpc::Status ResizeTty(grpc::ServerContext*, const v1::ResizeTtyRequest* request,
                         v1::ResizeTtyResponse*) override {
    NoteRequest(state_);
    if (request->size().rows() > 65535 || request->size().columns() > 65535) {
      return ToGrpc(Error(ErrorCode::kInvalidArgument, "tty size out of range"));
    }
    return ToGrpc(engine_->ResizeTty(request->container_id(), request->exec_id(),
                                     static_cast<uint16_t>(request->size().rows()),
                                     static_cast<uint16_t>(request->size().columns())));
  }

  // --- IO ------------------------------------------------------------------

  grpc::Status WriteStdin(grpc::ServerContext*, grpc::ServerReader<v1::WriteStdinRequest>* reader,
                          v1::WriteStdinResponse* response) override {
    NoteRequest(state_);
    v1::WriteStdinRequest chunk;
    std::string container_id, exec_id;
    bool first = true, closed = false;
    uint64_t written = 0;
    while (reader->Read(&chunk)) {
      if (first) {
        container_id = chunk.container_id();
        exec_id = chunk.exec_id();
        first = false;
      }
      if (chunk.data().size() > (1u << 20))
        return ToGrpc(Error(ErrorCode::kInvalidArgument, "stdin chunk over 1 MiB"));
      if (!chunk.data().empty()) {
        if (auto status = engine_->WriteStdin(container_id, exec_id, chunk.data()); !status)
          return ToGrpc(status.error());
        written += chunk.data().size();
      }
      if (chunk.close()) {
        closed = true;
        break;
      }
    }
    if (first)
      return ToGrpc(Error(ErrorCode::kInvalidArgument, "WriteStdin: the stream named no process"));
    (void)closed;  // the end of the stream closes stdin either way
    response->set_bytes_written(written);
    return ToGrpc(engine_->CloseStdin(container_id, exec_id));
  }

  grpc::Status ReadOutput(grpc::ServerContext* context, const v1::ReadOutputRequest* request,
                          grpc::ServerWriter<v1::OutputChunk>* writer) override {
    NoteRequest(state_);
    if (request->stream() != v1::STDOUT && request->stream() != v1::STDERR) {
      return ToGrpc(
          Error(ErrorCode::kInvalidArgument, "ReadOutput: stream must be STDOUT or STDERR"));
    }
    auto stream = request->stream() == v1::STDOUT ? engine::OutputStream::kStdout
                                                  : engine::OutputStream::kStderr;
    v1::OutputChunk chunk;
    // Write blocks while HTTP/2 flow control holds the client's window shut:
    // the pipe then fills and the process blocks, so nothing is dropped.
    auto status = engine_->ReadOutput(request->container_id(), request->exec_id(), stream,
                                      [&](std::string_view data) {
                                        if (context->IsCancelled()) return false;
                                        chunk.set_data(data.data(), data.size());
                                        return writer->Write(chunk);
                                      });
    return ToGrpc(status);
  }

  // --- events ----------------------------------------------------------------

  grpc::Status OomEvents(grpc::ServerContext* context, const v1::OomEventsRequest*,
                         grpc::ServerWriter<v1::OomEvent>* writer) override {
    NoteRequest(state_);
    auto subscriber = std::make_shared<OomSubscriber>();
    {
      std::lock_guard lock(oom_mu_);
      oom_subscribers_.push_back(subscriber);
    }
    ScopeExit unsubscribe([&] {
      std::lock_guard lock(oom_mu_);
      std::erase(oom_subscribers_, subscriber);
    });
    std::unique_lock lock(oom_mu_);
    while (!context->IsCancelled() && !stopping_) {
      oom_changed_.wait_for(lock, std::chrono::milliseconds(200),
                            [&] { return !subscriber->pending.empty(); });
      while (!subscriber->pending.empty()) {
        v1::OomEvent event = std::move(subscriber->pending.front());
        subscriber->pending.pop_front();
        lock.unlock();
        bool ok = writer->Write(event);
        lock.lock();
        if (!ok) return grpc::Status::OK;
      }
    }
    return grpc::Status::OK;
  }

  // --- network: the pod's interface, as the host read it off CNI's --------------
  grpc::Status UpdateInterface(grpc::ServerContext*, const v1::UpdateInterfaceRequest* request,
                               v1::Interface* response) override {
    NoteRequest(state_);
    const v1::Interface& wanted = request->interface();
    GuestInterface interface;
    interface.mac_address = wanted.mac_address();
    interface.mtu = wanted.mtu();
    interface.up = wanted.up();
    for (const auto& address : wanted.addresses()) {
      interface.addresses.push_back(
          {address.family() == v1::IpAddress::IPV6, address.address(), address.prefix_length()});
    }
    auto name = ConfigureInterface(interface);
    if (!name) return ToGrpc(name.error());
    *response = wanted;
    response->set_name(*name);
    return grpc::Status::OK;
  }
  grpc::Status UpdateRoutes(grpc::ServerContext*, const v1::UpdateRoutesRequest* request,
                            v1::UpdateRoutesResponse* response) override {
    NoteRequest(state_);
    std::vector<GuestRoute> routes;
    for (const auto& route : request->routes()) {
      routes.push_back({route.family() == AF_INET6, route.destination(), route.gateway(),
                        route.device(), route.scope()});
    }
    if (auto added = AddRoutes(routes); !added) return ToGrpc(added.error());
    *response->mutable_routes() = request->routes();
    return grpc::Status::OK;
  }
  grpc::Status ListInterfaces(grpc::ServerContext*, const v1::ListInterfacesRequest*,
                              v1::ListInterfacesResponse* response) override {
    NoteRequest(state_);
    auto listed = agent::ListInterfaces();
    if (!listed) return ToGrpc(listed.error());
    for (const auto& each : *listed) {
      v1::Interface* interface = response->add_interfaces();
      interface->set_name(each.name);
      interface->set_mac_address(each.mac_address);
      interface->set_mtu(each.mtu);
      interface->set_up(each.up);
      for (const auto& address : each.addresses) {
        v1::IpAddress* added = interface->add_addresses();
        added->set_family(address.ipv6 ? v1::IpAddress::IPV6 : v1::IpAddress::IPV4);
        added->set_address(address.address);
        added->set_prefix_length(address.prefix_length);
      }
    }
    return grpc::Status::OK;
  }
  grpc::Status ListRoutes(grpc::ServerContext*, const v1::ListRoutesRequest*,
                          v1::ListRoutesResponse* response) override {
    NoteRequest(state_);
    auto listed = agent::ListRoutes();
    if (!listed) return ToGrpc(listed.error());
    for (const auto& each : *listed) {
      v1::Route* route = response->add_routes();
      route->set_destination(each.destination);
      route->set_gateway(each.gateway);
      route->set_device(each.device);
      route->set_source(each.source);
      route->set_scope(each.scope);
      route->set_family(each.ipv6 ? AF_INET6 : AF_INET);
    }
    return grpc::Status::OK;
  }

  void StopStreams() {
    std::lock_guard lock(oom_mu_);
    stopping_ = true;
    oom_changed_.notify_all();
  }

 private:
  struct OomSubscriber {
    std::deque<v1::OomEvent> pending;
  };

  void PublishOom(const std::string& id) {
    v1::OomEvent event;
    event.set_container_id(id);
    event.set_timestamp_ns(RealtimeNanos());
    std::lock_guard lock(oom_mu_);
    for (auto& subscriber : oom_subscribers_) {
      if (subscriber->pending.size() < 1024) subscriber->pending.push_back(event);
    }
    oom_changed_.notify_all();
  }

  void ScheduleShutdown() {
    std::lock_guard lock(mu_);
    if (shutdown_thread_.joinable()) return;
    HULL_LOG_INFO("shutdown requested");
    // Answer first, then act: give the reply a moment to reach the host.
    shutdown_thread_ = SpawnThread("agent-shutdown", [this] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      on_shutdown_();
    });
  }

  AgentState* state_;
  engine::Engine* engine_;
  std::function<void()> on_shutdown_;
  std::mutex mu_;
  std::thread shutdown_thread_;

  std::mutex sandbox_mu_;
  std::string sandbox_id_;
  std::vector<std::string> storages_;

  std::mutex oom_mu_;
  std::condition_variable oom_changed_;
  std::vector<std::shared_ptr<OomSubscriber>> oom_subscribers_;
  bool stopping_ = false;
};

AgentServer::AgentServer(AgentState* state, engine::EngineOptions engine_options,
                         std::function<void()> on_shutdown)
    : state_(state),
      engine_(std::make_unique<engine::Engine>(std::move(engine_options))),
      health_(std::make_unique<HealthService>(state)),
      agent_(std::make_unique<AgentService>(state, engine_.get(), std::move(on_shutdown))) {}

AgentServer::~AgentServer() { Stop(); }

Status AgentServer::Start() {
  grpc::ServerBuilder builder;
  builder.RegisterService(health_.get());
  builder.RegisterService(agent_.get());
  // Detect a vanished peer: the serial transport has no connection-level
  // signal of its own when the host side is killed mid-call.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  // As on the host: a large receive window, so stdin streams are not capped
  // at 64 KiB per round trip of a slow transport.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8 << 20);
  server_ = builder.BuildAndStart();
  if (!server_) return MakeError(ErrorCode::kInternal, "start the gRPC server");
  return Ok();
}

void AgentServer::AddConnection(UniqueFd fd) {
  grpc::AddInsecureChannelFromFd(server_.get(), fd.release());
}

void AgentServer::Serve(AgentListener& listener) {
  while (true) {
    auto fd = listener.Accept();
    if (!fd) {
      if (fd.error().code() == ErrorCode::kCancelled) return;
      HULL_LOG_WARN("accept agent connection: {}", fd.error().ToString());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    HULL_LOG_DEBUG("host connected");
    AddConnection(std::move(*fd));
  }
}

void AgentServer::Stop() {
  if (agent_) agent_->StopStreams();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_.reset();
  }
}

}  // namespace hull::agent
