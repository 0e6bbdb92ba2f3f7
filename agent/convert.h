// The agent's RPC edge: hull errors become gRPC statuses, and the engine's
// types become wire messages (and back) here, once, so the handlers stay
// validate -> act -> map.
#pragma once

#include <grpcpp/support/status.h>

#include <cstdint>

#include "engine/cgroup.h"
#include "engine/engine.h"
#include "hull/agent/v1/agent.pb.h"
#include "hull/core/error.h"

namespace hull::agent {

// hull's error codes are gRPC's codes; the message is the whole context chain.
grpc::Status ToGrpc(const Error& error);
grpc::Status ToGrpc(const Status& status);

// The cgroup's statistics, stamped with the current wall-clock time.
void FillStats(const engine::CgroupStats& stats, v1::StatsContainerResponse* response);

// Which stdio streams a process gets, and its terminal size (clamped to 16 bits).
engine::IoRequest IoRequestFromProto(const v1::ProcessIo& io);

// CLOCK_REALTIME in nanoseconds: the timestamps the host shows to users.
uint64_t RealtimeNanos();

}  // namespace hull::agent
