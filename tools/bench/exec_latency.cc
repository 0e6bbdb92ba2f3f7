// hull-bench-exec: exec round-trip latency inside one hull sandbox.
// Boots a VM, starts a sleeping busybox container from --rootfs, then times
// N round trips of ExecProcess(`true`) + WaitProcess, and prints JSON:
//   {"runs": N, "median_ms": ..., "min_ms": ..., "max_ms": ...}
#include <grpcpp/client_context.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "hull/core/log.h"
#include "hull/core/oci_spec.h"
#include "hull/core/syscall.h"
#include "session.h"

namespace v1 = hull::agent::v1;

int main(int argc, char** argv) {
  std::string config_path, rootfs;
  int runs = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--config") config_path = argv[i + 1];
    if (flag == "--rootfs") rootfs = argv[i + 1];
    if (flag == "--runs") runs = std::max(1, std::atoi(argv[i + 1]));
  }
  if (rootfs.empty()) {
    std::fprintf(stderr, "usage: hull-bench-exec --rootfs DIR [--config FILE] [--runs N]\n");
    return 2;
  }
  (void)hull::InitLogging("hull-bench-exec", "warn");
  auto config = hull::LoadConfig(config_path);
  if (!config) {
    std::fprintf(stderr, "%s\n", config.error().ToString().c_str());
    return 1;
  }
  std::string id = "bench-" + hull::RandomHex(4);
  auto session = hull::Session::Open(*config, id);
  if (!session) {
    std::fprintf(stderr, "%s\n", session.error().ToString().c_str());
    return 1;
  }
  hull::oci::Spec spec = hull::oci::DefaultSpec({"sleep", "600"}, false);
  spec.root.readonly = false;
  if (auto created = (*session)->CreateContainer(id, hull::oci::SerializeOciSpec(spec), rootfs,
                                                 v1::ProcessIo());
      !created) {
    std::fprintf(stderr, "%s\n", created.error().ToString().c_str());
    return 1;
  }
  auto& agent = (*session)->client().agent();
  {
    grpc::ClientContext context;
    v1::StartContainerRequest request;
    request.set_container_id(id);
    v1::StartContainerResponse response;
    if (auto status = agent.StartContainer(&context, request, &response); !status.ok()) {
      std::fprintf(stderr, "start: %s\n", status.error_message().c_str());
      return 1;
    }
  }
  hull::oci::Process process = *spec.process;
  process.args = {"true"};
  std::vector<double> samples;
  for (int i = 0; i < runs; ++i) {
    std::string exec_id = "e" + std::to_string(i);
    auto begin = std::chrono::steady_clock::now();
    grpc::ClientContext exec_context;
    v1::ExecProcessRequest exec;
    exec.set_container_id(id);
    exec.set_exec_id(exec_id);
    exec.set_oci_process_json(hull::oci::SerializeOciProcess(process));
    v1::ExecProcessResponse exec_response;
    if (auto status = agent.ExecProcess(&exec_context, exec, &exec_response); !status.ok()) {
      std::fprintf(stderr, "exec: %s\n", status.error_message().c_str());
      return 1;
    }
    grpc::ClientContext wait_context;
    v1::WaitProcessRequest wait;
    wait.set_container_id(id);
    wait.set_exec_id(exec_id);
    v1::WaitProcessResponse waited;
    if (auto status = agent.WaitProcess(&wait_context, wait, &waited);
        !status.ok() || waited.exit_status() != 0) {
      std::fprintf(stderr, "wait: %s (exit %d)\n", status.error_message().c_str(),
                   waited.exit_status());
      return 1;
    }
    samples.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin)
            .count());
  }
  (*session)->Close();
  std::sort(samples.begin(), samples.end());
  double median = samples.size() % 2
                      ? samples[samples.size() / 2]
                      : (samples[samples.size() / 2 - 1] + samples[samples.size() / 2]) / 2;
  std::printf("{\"runs\": %d, \"median_ms\": %.2f, \"min_ms\": %.2f, \"max_ms\": %.2f}\n", runs,
              median, samples.front(), samples.back());
  return 0;
}
