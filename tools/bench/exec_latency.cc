// hull-bench-exec: exec round-trip latency inside one hull sandbox.
// Boots a VM, starts a sleeping busybox container from --rootfs, then times
// N round trips of ExecProcess(`true`) + WaitProcess, and prints JSON:
//   {"runs": N, "median_ms": ..., "min_ms": ..., "max_ms": ...}
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "hull/core/log.h"
#include "hull/core/oci_spec.h"
#include "hull/core/syscall.h"
#include "hull/sandbox/sandbox.h"

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
  auto session = hull::sandbox::Sandbox::Open(*config, id);
  if (!session) {
    std::fprintf(stderr, "%s\n", session.error().ToString().c_str());
    return 1;
  }
  hull::oci::Spec spec = hull::oci::DefaultSpec({"sleep", "600"}, false);
  spec.root.readonly = false;
  if (auto created = (*session)->CreateContainer(id, hull::oci::SerializeOciSpec(spec), rootfs, {});
      !created) {
    std::fprintf(stderr, "%s\n", created.error().ToString().c_str());
    return 1;
  }
  auto& agent = (*session)->agent();
  if (auto started = agent.StartContainer(id); !started) {
    std::fprintf(stderr, "start: %s\n", started.error().ToString().c_str());
    return 1;
  }
  hull::oci::Process process = *spec.process;
  process.args = {"true"};
  hull::sandbox::Cancellation never;
  std::vector<double> samples;
  for (int i = 0; i < runs; ++i) {
    hull::sandbox::ProcessRef exec{id, "e" + std::to_string(i)};
    auto begin = std::chrono::steady_clock::now();
    if (auto pid = agent.ExecProcess({exec, hull::oci::SerializeOciProcess(process), {}}); !pid) {
      std::fprintf(stderr, "exec: %s\n", pid.error().ToString().c_str());
      return 1;
    }
    auto waited = agent.WaitProcess(exec, never);
    if (!waited || waited->exit_status != 0) {
      std::fprintf(stderr, "wait: %s (exit %u)\n",
                   waited ? "ok" : waited.error().ToString().c_str(),
                   waited ? waited->exit_status : 255u);
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
