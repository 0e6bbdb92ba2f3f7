#include "agent_server.h"

#include <grpcpp/server_builder.h>
#include <grpcpp/server_posix.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "guest_init.h"
#include "hull/core/log.h"
#include "hull/core/syscall.h"

namespace hull::agent {

namespace v1 = ::hull::agent::v1;

namespace {

void NoteRequest(AgentState* state) {
  uint64_t expected = 0;
  state->first_request_us.compare_exchange_strong(expected, BootTimeMicros());
}

// Reads "MemTotal:  123 kB" style values from /proc/meminfo.
uint64_t MeminfoBytes(const std::string& meminfo, std::string_view key) {
  size_t pos = meminfo.find(std::string(key) + ":");
  if (pos == std::string::npos) return 0;
  std::istringstream in(meminfo.substr(pos + key.size() + 1));
  uint64_t kib = 0;
  in >> kib;
  return kib * 1024;
}

std::string CgroupMode() {
  struct statfs fs {};
  if (::statfs("/sys/fs/cgroup", &fs) == 0 && fs.f_type == 0x63677270 /* CGROUP2_SUPER_MAGIC */) {
    return "v2";
  }
  return "none";
}

grpc::Status Unimplemented(std::string_view rpc) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      std::string(rpc) + " is not implemented by this hull-agent (" +
                          std::string(kAgentVersion) + ")");
}

}  // namespace

class AgentServer::HealthService final : public v1::Health::Service {
 public:
  explicit HealthService(AgentState* state) : state_(state) {}

  grpc::Status Check(grpc::ServerContext*, const v1::CheckRequest*, v1::CheckResponse* response) override {
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
  AgentService(AgentState* state, std::function<void()> on_shutdown)
      : state_(state), on_shutdown_(std::move(on_shutdown)) {}

  ~AgentService() override {
    if (shutdown_thread_.joinable()) shutdown_thread_.join();
  }

  grpc::Status GetGuestDetails(grpc::ServerContext*, const v1::GetGuestDetailsRequest*,
                               v1::GetGuestDetailsResponse* response) override {
    NoteRequest(state_);
    utsname uts{};
    ::uname(&uts);
    response->set_kernel_release(uts.release);
    response->set_kernel_version(uts.version);
    response->set_machine(uts.machine);
    response->set_online_cpus(static_cast<uint32_t>(::sysconf(_SC_NPROCESSORS_ONLN)));
    auto meminfo = ReadFile("/proc/meminfo", 1 << 20);
    if (meminfo) {
      response->set_memory_total_bytes(MeminfoBytes(*meminfo, "MemTotal"));
      response->set_memory_available_bytes(MeminfoBytes(*meminfo, "MemAvailable"));
    }
    response->set_agent_version(std::string(kAgentVersion));
    response->set_transport(state_->transport);
    response->set_cgroup_mode(CgroupMode());
    for (const auto& module : state_->loaded_modules) response->add_loaded_modules(module);
    auto* startup = response->mutable_startup();
    startup->set_agent_start_us(state_->agent_start_us);
    startup->set_mounts_done_us(state_->mounts_done_us);
    startup->set_modules_done_us(state_->modules_done_us);
    startup->set_network_done_us(state_->network_done_us);
    startup->set_listening_us(state_->listening_us);
    startup->set_first_request_us(state_->first_request_us.load());
    return grpc::Status::OK;
  }

  grpc::Status Shutdown(grpc::ServerContext*, const v1::ShutdownRequest*, v1::ShutdownResponse*) override {
    NoteRequest(state_);
    std::lock_guard lock(mu_);
    if (!shutdown_thread_.joinable()) {
      HULL_LOG_INFO("shutdown requested");
      // Answer first, then act: give the reply a moment to reach the host.
      shutdown_thread_ = std::thread([this] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        on_shutdown_();
      });
    }
    return grpc::Status::OK;
  }

  // Everything below belongs to later stages of hull; until then these RPCs
  // answer UNIMPLEMENTED, never a fake success.
#define HULL_UNIMPLEMENTED_UNARY(Name)                                                    \
  grpc::Status Name(grpc::ServerContext*, const v1::Name##Request*, v1::Name##Response*) override { \
    NoteRequest(state_);                                                                  \
    return Unimplemented(#Name);                                                          \
  }
  HULL_UNIMPLEMENTED_UNARY(CreateSandbox)
  HULL_UNIMPLEMENTED_UNARY(DestroySandbox)
  HULL_UNIMPLEMENTED_UNARY(CreateContainer)
  HULL_UNIMPLEMENTED_UNARY(StartContainer)
  HULL_UNIMPLEMENTED_UNARY(RemoveContainer)
  HULL_UNIMPLEMENTED_UNARY(UpdateContainer)
  HULL_UNIMPLEMENTED_UNARY(StatsContainer)
  HULL_UNIMPLEMENTED_UNARY(PauseContainer)
  HULL_UNIMPLEMENTED_UNARY(ResumeContainer)
  HULL_UNIMPLEMENTED_UNARY(ListProcesses)
  HULL_UNIMPLEMENTED_UNARY(ExecProcess)
  HULL_UNIMPLEMENTED_UNARY(SignalProcess)
  HULL_UNIMPLEMENTED_UNARY(WaitProcess)
  HULL_UNIMPLEMENTED_UNARY(ResizeTty)
  HULL_UNIMPLEMENTED_UNARY(UpdateRoutes)
  HULL_UNIMPLEMENTED_UNARY(ListInterfaces)
  HULL_UNIMPLEMENTED_UNARY(ListRoutes)
#undef HULL_UNIMPLEMENTED_UNARY

  grpc::Status UpdateInterface(grpc::ServerContext*, const v1::UpdateInterfaceRequest*,
                               v1::Interface*) override {
    NoteRequest(state_);
    return Unimplemented("UpdateInterface");
  }
  grpc::Status WriteStdin(grpc::ServerContext*, grpc::ServerReader<v1::WriteStdinRequest>*,
                          v1::WriteStdinResponse*) override {
    NoteRequest(state_);
    return Unimplemented("WriteStdin");
  }
  grpc::Status ReadOutput(grpc::ServerContext*, const v1::ReadOutputRequest*,
                          grpc::ServerWriter<v1::OutputChunk>*) override {
    NoteRequest(state_);
    return Unimplemented("ReadOutput");
  }
  grpc::Status OomEvents(grpc::ServerContext*, const v1::OomEventsRequest*,
                         grpc::ServerWriter<v1::OomEvent>*) override {
    NoteRequest(state_);
    return Unimplemented("OomEvents");
  }

 private:
  AgentState* state_;
  std::function<void()> on_shutdown_;
  std::mutex mu_;
  std::thread shutdown_thread_;
};

AgentServer::AgentServer(AgentState* state, std::function<void()> on_shutdown)
    : state_(state),
      health_(std::make_unique<HealthService>(state)),
      agent_(std::make_unique<AgentService>(state, std::move(on_shutdown))) {}

AgentServer::~AgentServer() { Stop(); }

Status AgentServer::Start() {
  grpc::ServerBuilder builder;
  builder.RegisterService(health_.get());
  builder.RegisterService(agent_.get());
  // Detect a vanished peer: the serial transport has no connection-level
  // signal of its own when the host side is killed mid-call.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
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
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_.reset();
  }
}

}  // namespace hull::agent
