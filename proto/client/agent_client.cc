#include "agent_client.h"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel_posix.h>

#include <algorithm>
#include <thread>

#include "hull/core/log.h"

namespace hull {

namespace v1 = agent::v1;
using std::chrono::milliseconds;

namespace {

void SetDeadline(grpc::ClientContext& context, milliseconds timeout) {
  context.set_deadline(std::chrono::system_clock::now() + timeout);
}

}  // namespace

AgentClient::AgentClient(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)),
      health_(v1::Health::NewStub(channel_)),
      agent_(v1::Agent::NewStub(channel_)) {}

Result<std::unique_ptr<AgentClient>> AgentClient::Connect(const Dialer& dial,
                                                          Clock::time_point deadline) {
  Error last(ErrorCode::kDeadlineExceeded, "no attempt made");
  while (Clock::now() < deadline) {
    auto fd = dial(deadline);
    // The dialer does its own waiting; its failure (a dead VM, a deadline)
    // does not get better by dialling again.
    if (!fd) return std::move(fd).error().Wrap("connect to the agent");
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(16 << 20);
    // A large receive window: the transport is slow to round-trip under
    // emulation, and a 64 KiB window caps output streams at window/RTT.
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8 << 20);
    auto channel = grpc::CreateCustomInsecureChannelFromFd("hull-agent", fd->release(), args);
    std::unique_ptr<AgentClient> client(new AgentClient(std::move(channel)));
    auto remaining = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    auto check = client->Check(std::clamp(remaining, milliseconds(1), milliseconds(30000)));
    if (check && check->status() == v1::CheckResponse::SERVING) return client;
    if (check) {
      last = Error(ErrorCode::kUnavailable, "agent is not serving yet");
    } else {
      last = std::move(check).error();
    }
    HULL_LOG_DEBUG("agent not ready: {}", last.ToString());
  }
  return Unexpected{std::move(last).Wrap("connect to the agent (deadline passed)")};
}

Result<v1::CheckResponse> AgentClient::Check(milliseconds timeout) {
  grpc::ClientContext context;
  SetDeadline(context, timeout);
  context.set_wait_for_ready(true);
  v1::CheckResponse response;
  auto status = health_->Check(&context, v1::CheckRequest(), &response);
  if (!status.ok()) return Unexpected{ErrorFromGrpc(status, "Health.Check")};
  return response;
}

Result<v1::VersionResponse> AgentClient::Version(milliseconds timeout) {
  grpc::ClientContext context;
  SetDeadline(context, timeout);
  v1::VersionResponse response;
  auto status = health_->Version(&context, v1::VersionRequest(), &response);
  if (!status.ok()) return Unexpected{ErrorFromGrpc(status, "Health.Version")};
  return response;
}

Result<v1::GetGuestDetailsResponse> AgentClient::GetGuestDetails(milliseconds timeout) {
  grpc::ClientContext context;
  SetDeadline(context, timeout);
  v1::GetGuestDetailsResponse response;
  auto status = agent_->GetGuestDetails(&context, v1::GetGuestDetailsRequest(), &response);
  if (!status.ok()) return Unexpected{ErrorFromGrpc(status, "Agent.GetGuestDetails")};
  return response;
}

Status AgentClient::Shutdown(bool force, milliseconds timeout) {
  grpc::ClientContext context;
  SetDeadline(context, timeout);
  v1::ShutdownRequest request;
  request.set_force(force);
  v1::ShutdownResponse response;
  auto status = agent_->Shutdown(&context, request, &response);
  if (status.ok() || status.error_code() == grpc::StatusCode::UNAVAILABLE) return Ok();
  return Unexpected{ErrorFromGrpc(status, "Agent.Shutdown")};
}

}  // namespace hull
