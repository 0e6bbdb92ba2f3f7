// gRPC status → hull::Error, for every client of a gRPC API (the agent's,
// containerd's CRI). hull's ErrorCode uses google.rpc.Code numbering, so the
// code carries over unchanged.
#pragma once

#include <grpcpp/support/status.h>

#include <string_view>

#include "hull/core/error.h"

namespace hull {

// Maps a gRPC status onto a hull::Error: same code, message prefixed by the
// RPC, e.g. "StartContainer: NOT_FOUND: no container `web`".
Error ErrorFromGrpc(const grpc::Status& status, std::string_view rpc);

}  // namespace hull
