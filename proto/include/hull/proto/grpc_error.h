// gRPC status <-> hull::Error, for every gRPC client on the host (the agent's,
// the tests' CRI client). ErrorCode uses google.rpc.Code's numbering.
#pragma once

#include <grpcpp/support/status.h>

#include <string_view>

#include "hull/core/error.h"

namespace hull {

// Same code; the message is prefixed by the RPC ("Agent.StartContainer: NOT_FOUND: ...").
Error ErrorFromGrpc(const grpc::Status& status, std::string_view rpc);

}  // namespace hull
