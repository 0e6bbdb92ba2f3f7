#include "hull/proto/grpc_error.h"

#include <string>

namespace hull {

Error ErrorFromGrpc(const grpc::Status& status, std::string_view rpc) {
  auto code = static_cast<ErrorCode>(static_cast<int>(status.error_code()));
  return Error(code, std::string(rpc) + ": " + std::string(ErrorCodeName(code)) +
                         (status.error_message().empty() ? "" : ": " + status.error_message()));
}

}  // namespace hull
