// hull-bench-pod: Kubernetes pods through containerd's CRI plugin, hull next
// to runc on the same private containerd (tests/support/containerd_env: its
// own root, state, sockets and CNI bridge; the system's is not touched).
//  1. latency: RunPodSandbox until the pod's container is RUNNING (create +
//     start included), median of N, runtimes interleaved;
//  2. memory: K idle pods (a `sleep` container each) at once; the PSS of
//     every process under the pods' shims (shim, QEMU and virtiofsd for
//     hull; shim, pause and the container for runc), per pod.
//     Idle pods also run as hull with hypervisor.free_page_reporting off,
//     the baseline for what free page reporting saves.
// Prints a table with hull / runc ratios.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "containerd_env.h"
#include "cri_client.h"
#include "hull/core/log.h"
#include "hull/core/syscall.h"

namespace cri = runtime::v1;
using Stub = cri::RuntimeService::Stub;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr char kImage[] = "docker.io/hull-test/busybox:latest";

struct Bench {
  hull::testing::PrivateContainerd* env;
  hull::CriClient* cri;
  int counter = 0;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "hull-bench-pod: %s\n", what.c_str());
  std::exit(1);
}

cri::PodSandboxConfig PodConfig(Bench& bench, const std::string& handler) {
  std::string name = handler + "-" + std::to_string(bench.counter++);
  cri::PodSandboxConfig config;
  config.mutable_metadata()->set_name(name);
  config.mutable_metadata()->set_namespace_("bench");
  config.mutable_metadata()->set_uid(name + "-" + hull::RandomHex(4));
  config.set_hostname(name);
  config.set_log_directory(bench.env->dir() + "/pods/" + name);
  (void)hull::MakeDirs(config.log_directory(), 0755);
  return config;
}

// Runs a pod with one sleeping container; returns the pod id once RUNNING.
std::string RunPod(Bench& bench, const std::string& handler) {
  cri::RunPodSandboxRequest run;
  *run.mutable_config() = PodConfig(bench, handler);
  run.set_runtime_handler(handler);
  auto pod = bench.cri->Call(&Stub::RunPodSandbox, run, "RunPodSandbox");
  if (!pod) Die(pod.error().ToString());
  cri::CreateContainerRequest create;
  create.set_pod_sandbox_id(pod->pod_sandbox_id());
  create.mutable_config()->mutable_metadata()->set_name("sleep");
  create.mutable_config()->mutable_image()->set_image(kImage);
  create.mutable_config()->add_args("sleep");
  create.mutable_config()->add_args("3600");
  create.mutable_config()->set_log_path("sleep.log");
  *create.mutable_sandbox_config() = run.config();
  auto created = bench.cri->Call(&Stub::CreateContainer, create, "CreateContainer");
  if (!created) Die(created.error().ToString());
  cri::StartContainerRequest start;
  start.set_container_id(created->container_id());
  if (auto started = bench.cri->Call(&Stub::StartContainer, start, "StartContainer"); !started) {
    Die(started.error().ToString());
  }
  return pod->pod_sandbox_id();
}

void RemovePod(Bench& bench, const std::string& pod) {
  cri::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(pod);
  (void)bench.cri->Call(&Stub::StopPodSandbox, stop, "StopPodSandbox");
  cri::RemovePodSandboxRequest remove;
  remove.set_pod_sandbox_id(pod);
  (void)bench.cri->Call(&Stub::RemovePodSandbox, remove, "RemovePodSandbox");
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// pid -> parent pid, for every process.
std::map<pid_t, pid_t> ParentsOfAll() {
  std::map<pid_t, pid_t> parents;
  DIR* proc = ::opendir("/proc");
  while (proc != nullptr && (errno = 0, true)) {
    dirent* e = ::readdir(proc);
    if (e == nullptr) break;
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    auto stat = hull::ReadFile(std::string("/proc/") + e->d_name + "/stat", 4096);
    if (!stat) continue;
    auto close = stat->rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat->substr(close + 2));
    char state = 0;
    long ppid = 0;
    rest >> state >> ppid;
    parents[static_cast<pid_t>(pid)] = static_cast<pid_t>(ppid);
  }
  if (proc != nullptr) ::closedir(proc);
  return parents;
}

uint64_t PssKib(pid_t pid) {
  auto rollup = hull::ReadFile("/proc/" + std::to_string(pid) + "/smaps_rollup", 1 << 16);
  if (!rollup) return 0;
  auto at = rollup->find("\nPss:");
  return at == std::string::npos ? 0 : std::strtoull(rollup->c_str() + at + 5, nullptr, 10);
}

// PSS of every shim of this containerd and everything under them.
uint64_t PodsPssKib(const std::string& dir) {
  std::map<pid_t, pid_t> parents = ParentsOfAll();
  std::set<pid_t> roots;
  for (const auto& [pid, parent] : parents) {
    auto cmdline = hull::ReadFile("/proc/" + std::to_string(pid) + "/cmdline", 1 << 16);
    if (cmdline && cmdline->find("containerd-shim") != std::string::npos &&
        cmdline->find(dir) != std::string::npos) {
      roots.insert(pid);
    }
  }
  uint64_t total = 0;
  for (const auto& [pid, parent] : parents) {
    for (pid_t p = pid; p > 1; p = parents.count(p) ? parents[p] : 0) {
      if (roots.count(p)) {
        total += PssKib(pid);
        break;
      }
    }
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 10;
  int idle = argc > 2 ? std::max(1, std::atoi(argv[2])) : 10;
  const char* bin_dir = std::getenv("HULL_BENCH_BIN_DIR");
  const char* images = std::getenv("HULL_BENCH_IMAGES");  // dir with the two test image archives
  if (bin_dir == nullptr || images == nullptr)
    Die("set HULL_BENCH_BIN_DIR and HULL_BENCH_IMAGES (tools/bench/pod does)");
  (void)hull::InitLogging("hull-bench-pod", "warn");
  auto started = hull::testing::PrivateContainerd::Start(
      {.bin_dir = bin_dir, .log_level = "info", .cri = true, .hull_handlers = {"hull-nofpr"}});
  if (!started) Die(started.error().ToString());
  auto& env = *started;
  // The baseline for free page reporting: the same hull with it off.
  if (auto written = hull::WriteFile(env->handler_config("hull-nofpr"),
                                     "[runtime]\nrun_dir = \"" + env->hull_run_dir() +
                                         "\"\n"
                                         "[hypervisor]\nfree_page_reporting = false\n");
      !written) {
    Die(written.error().ToString());
  }
  for (const char* archive : {"/hull-test-busybox.tar", "/hull-test-pause.tar"}) {
    if (auto imported = env->ImportImage(std::string(images) + archive); !imported)
      Die(imported.error().ToString());
  }
  auto client = hull::CriClient::Connect(env->socket(), 30s);
  if (!client) Die(client.error().ToString());
  Bench bench{env.get(), client->get()};

  std::map<std::string, std::vector<double>> latency;
  for (int i = 0; i < runs; ++i) {
    for (const std::string handler : {"runc", "hull"}) {
      auto t0 = Clock::now();
      std::string pod = RunPod(bench, handler);
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      latency[handler].push_back(ms);
      std::fprintf(stderr, "run %d/%d %s: %.0f ms\n", i + 1, runs, handler.c_str(), ms);
      RemovePod(bench, pod);
    }
  }

  std::map<std::string, double> per_pod_mib;
  for (const std::string handler : {"runc", "hull", "hull-nofpr"}) {
    std::vector<std::string> pods;
    for (int i = 0; i < idle; ++i) pods.push_back(RunPod(bench, handler));
    std::this_thread::sleep_for(3s);  // let the guests settle
    per_pod_mib[handler] = PodsPssKib(env->dir()) / 1024.0 / idle;
    std::fprintf(stderr, "%d idle %s pods: %.1f MiB each\n", idle, handler.c_str(),
                 per_pod_mib[handler]);
    for (const auto& pod : pods) RemovePod(bench, pod);
  }

  std::printf("\npod benchmark: %d interleaved runs, %d idle pods per runtime, %u host cores\n",
              runs, idle, std::thread::hardware_concurrency());
  std::printf("%-52s %10s %10s %8s\n", "measure", "runc", "hull", "ratio");
  double runc_ms = Median(latency["runc"]), hull_ms = Median(latency["hull"]);
  std::printf("%-52s %10.0f %10.0f %8.1f\n", "RunPodSandbox -> container running, median ms",
              runc_ms, hull_ms, hull_ms / runc_ms);
  std::printf("%-52s %10.1f %10.1f %8.1f\n", "host memory per idle pod (PSS), MiB",
              per_pod_mib["runc"], per_pod_mib["hull"], per_pod_mib["hull"] / per_pod_mib["runc"]);
  std::printf("%-52s %10.1f %10.1f %8.1f\n", "  the same, hull without free page reporting, MiB",
              per_pod_mib["runc"], per_pod_mib["hull-nofpr"],
              per_pod_mib["hull-nofpr"] / per_pod_mib["runc"]);
  std::printf(
      "free page reporting saves %.1f MiB per idle pod (%.0f%%)\n",
      per_pod_mib["hull-nofpr"] - per_pod_mib["hull"],
      100.0 * (per_pod_mib["hull-nofpr"] - per_pod_mib["hull"]) / per_pod_mib["hull-nofpr"]);
  return 0;
}
