#include "cri_client.h"

#include <thread>

namespace hull {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

CriClient::CriClient(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)),
      runtime_(runtime::v1::RuntimeService::NewStub(channel_)),
      images_(runtime::v1::ImageService::NewStub(channel_)) {}

Result<std::unique_ptr<CriClient>> CriClient::Connect(const std::string& socket_path,
                                                      milliseconds timeout) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  auto channel =
      grpc::CreateCustomChannel("unix://" + socket_path, grpc::InsecureChannelCredentials(), args);
  std::unique_ptr<CriClient> client(new CriClient(std::move(channel)));
  const auto deadline = Clock::now() + timeout;
  while (true) {
    runtime::v1::VersionRequest request;
    request.set_version("v1");
    auto version = client->Call(&runtime::v1::RuntimeService::Stub::Version, request, "Version",
                                milliseconds(2000));
    if (version) return client;
    if (Clock::now() > deadline) {
      return Unexpected{std::move(version).error().Wrap("CRI at unix://" + socket_path)};
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
}

}  // namespace hull
