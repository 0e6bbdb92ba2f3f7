// A client of the Kubernetes CRI API (runtime.v1) over containerd's gRPC
// socket: what kubelet calls, for the CRI tests and the pod benchmark.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "cri/runtime/v1/api.grpc.pb.h"
#include "hull/core/error.h"
#include "hull/proto/grpc_error.h"

namespace hull {

class CriClient {
 public:
  // Connects to containerd's gRPC socket (a path) and waits up to `timeout`
  // for the CRI plugin to answer Version.
  static Result<std::unique_ptr<CriClient>> Connect(const std::string& socket_path,
                                                    std::chrono::milliseconds timeout);

  runtime::v1::RuntimeService::Stub& runtime() { return *runtime_; }
  runtime::v1::ImageService::Stub& images() { return *images_; }

  // One unary call with a deadline; a gRPC failure becomes an Error that
  // names the RPC. Usage:
  //   auto pod = cri.Call(&Stub::RunPodSandbox, request, "RunPodSandbox");
  template <typename Stub, typename Request, typename Response>
  Result<Response> Call(grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                                     Response*),
                        const Request& request, std::string_view name,
                        std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout);
    Response response;
    grpc::Status status = (StubFor<Stub>().*method)(&context, request, &response);
    if (!status.ok()) return Unexpected{ErrorFromGrpc(status, name)};
    return response;
  }

 private:
  explicit CriClient(std::shared_ptr<grpc::Channel> channel);

  template <typename Stub>
  Stub& StubFor() {
    if constexpr (std::is_same_v<Stub, runtime::v1::ImageService::Stub>) {
      return *images_;
    } else {
      return *runtime_;
    }
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<runtime::v1::RuntimeService::Stub> runtime_;
  std::unique_ptr<runtime::v1::ImageService::Stub> images_;
};

}  // namespace hull
