// hull-bench-pod: Kubernetes pods through containerd's CRI plugin, hull next
// to runc on the same private containerd (tests/support/containerd_env: its
// own root, state, sockets and CNI bridge; the system's is not touched).
// hull runs twice: "hull" starts every VM from a template (the default),
// "hull-cold" boots each one (template = false).
//  1. latency: RunPodSandbox until the pod's container is RUNNING (create +
//     start included), median of N, runtimes interleaved; the template is
//     built by one warm-up pod first (its time is printed);
//  2. concurrency: 10 pods started at once, until all are RUNNING;
//  3. memory: K idle pods (a `sleep` container each) at once; the PSS of
//     every process under the pods' shims (shim, QEMU and virtiofsd for
//     hull; shim, pause and the container for runc), per pod, and the drop
//     in the host's MemAvailable per pod (what tmpfs or the page cache
//     holds counts there too). The template's RAM file is a fixed cost,
//     printed on its own and also spread over the K pods.
// Prints a table with ratios against runc.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
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
  std::atomic<int> counter = 0;
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

uint64_t MemAvailableKib() {
  auto meminfo = hull::ReadFile("/proc/meminfo", 1 << 16);
  if (!meminfo) return 0;
  auto at = meminfo->find("MemAvailable:");
  return at == std::string::npos ? 0 : std::strtoull(meminfo->c_str() + at + 13, nullptr, 10);
}

// What the templates under `dir` hold (allocated blocks of their RAM files).
double TemplatesMib(const std::string& dir) {
  double total = 0;
  DIR* d = ::opendir(dir.c_str());
  while (d != nullptr) {
    dirent* e = ::readdir(d);
    if (e == nullptr) break;
    struct stat st {};
    if (::stat((dir + "/" + e->d_name + "/memory").c_str(), &st) == 0) {
      total += st.st_blocks * 512.0 / 1048576.0;
    }
  }
  if (d != nullptr) ::closedir(d);
  return total;
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
  constexpr int kConcurrent = 10;
  const char* bin_dir = std::getenv("HULL_BENCH_BIN_DIR");
  const char* images = std::getenv("HULL_BENCH_IMAGES");  // dir with the two test image archives
  if (bin_dir == nullptr || images == nullptr)
    Die("set HULL_BENCH_BIN_DIR and HULL_BENCH_IMAGES (tools/bench/pod does)");
  (void)hull::InitLogging("hull-bench-pod", "warn");
  auto started = hull::testing::PrivateContainerd::Start(
      {.bin_dir = bin_dir, .log_level = "info", .cri = true, .hull_handlers = {"hull-cold"}});
  if (!started) Die(started.error().ToString());
  auto& env = *started;
  // Templates of this run only, so the first pod builds one and its RAM
  // file can be measured.
  const std::string templates = env->dir() + "/templates";
  const std::string run_dir = "[runtime]\nrun_dir = \"" + env->hull_run_dir() + "\"\n";
  for (const auto& [path, hypervisor] :
       {std::pair{env->hull_config(), "template_dir = \"" + templates + "\"\n"},
        std::pair{env->handler_config("hull-cold"), std::string("template = false\n")}}) {
    if (auto written = hull::WriteFile(path, run_dir + "[hypervisor]\n" + hypervisor); !written) {
      Die(written.error().ToString());
    }
  }
  for (const char* archive : {"/hull-test-busybox.tar", "/hull-test-pause.tar"}) {
    if (auto imported = env->ImportImage(std::string(images) + archive); !imported)
      Die(imported.error().ToString());
  }
  auto client = hull::CriClient::Connect(env->socket(), 30s);
  if (!client) Die(client.error().ToString());
  Bench bench{env.get(), client->get()};
  const std::vector<std::string> runtimes = {"runc", "hull", "hull-cold"};
  auto ms_since = [](Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };

  // The first hull pod finds no template: it boots, then builds one in the
  // background (its removal waits for that build).
  auto t0 = Clock::now();
  std::string first_pod = RunPod(bench, "hull");
  double first_ms = ms_since(t0);
  t0 = Clock::now();
  RemovePod(bench, first_pod);
  double build_ms = ms_since(t0);
  std::fprintf(stderr,
               "first hull pod (boots): %.0f ms; its removal (waits for the template): %.0f ms\n",
               first_ms, build_ms);

  std::map<std::string, std::vector<double>> latency;
  for (int i = 0; i < runs; ++i) {
    for (const std::string& handler : runtimes) {
      t0 = Clock::now();
      std::string pod = RunPod(bench, handler);
      double ms = ms_since(t0);
      latency[handler].push_back(ms);
      std::fprintf(stderr, "run %d/%d %s: %.0f ms\n", i + 1, runs, handler.c_str(), ms);
      RemovePod(bench, pod);
    }
  }

  std::map<std::string, double> concurrent_ms;
  for (const std::string handler : {"runc", "hull"}) {
    std::vector<std::string> pods(kConcurrent);
    std::vector<std::thread> threads;
    t0 = Clock::now();
    for (int i = 0; i < kConcurrent; ++i) {
      threads.emplace_back([&, i] { pods[i] = RunPod(bench, handler); });
    }
    for (auto& thread : threads) thread.join();
    concurrent_ms[handler] = ms_since(t0);
    std::fprintf(stderr, "%d %s pods at once: %.0f ms\n", kConcurrent, handler.c_str(),
                 concurrent_ms[handler]);
    for (const auto& pod : pods) RemovePod(bench, pod);
  }

  std::map<std::string, double> pss_mib, available_mib;
  for (const std::string& handler : runtimes) {
    std::this_thread::sleep_for(2s);
    uint64_t before = MemAvailableKib();
    std::vector<std::string> pods;
    for (int i = 0; i < idle; ++i) pods.push_back(RunPod(bench, handler));
    std::this_thread::sleep_for(5s);  // let the guests settle (free page reporting)
    pss_mib[handler] = PodsPssKib(env->dir()) / 1024.0 / idle;
    uint64_t after = MemAvailableKib();
    available_mib[handler] = before > after ? (before - after) / 1024.0 / idle : 0;
    std::fprintf(stderr, "%d idle %s pods: %.1f MiB PSS, %.1f MiB of MemAvailable each\n", idle,
                 handler.c_str(), pss_mib[handler], available_mib[handler]);
    for (const auto& pod : pods) RemovePod(bench, pod);
  }
  const double template_mib = TemplatesMib(templates);

  std::printf(
      "\npod benchmark: %d interleaved runs, %d pods at once, %d idle pods per runtime, "
      "%u host cores\n",
      runs, kConcurrent, idle, std::thread::hardware_concurrency());
  std::printf("%-50s %9s %9s %9s %8s %8s\n", "measure", "runc", "hull", "hull-cold", "hull/runc",
              "cold/runc");
  auto row = [](const char* name, double runc, double hull, double cold, const char* format) {
    char cells[3][32];
    std::snprintf(cells[0], sizeof cells[0], format, runc);
    std::snprintf(cells[1], sizeof cells[1], format, hull);
    std::snprintf(cells[2], sizeof cells[2], format, cold);
    // A runc figure at the noise floor (MemAvailable moves by MiBs) has no ratio.
    if (runc < 0.5) {
      std::printf("%-50s %9s %9s %9s %8s %8s\n", name, cells[0], cells[1], cells[2], "-", "-");
      return;
    }
    std::printf("%-50s %9s %9s %9s %8.1f %8.1f\n", name, cells[0], cells[1], cells[2], hull / runc,
                cold / runc);
  };
  row("RunPodSandbox -> container running, median ms", Median(latency["runc"]),
      Median(latency["hull"]), Median(latency["hull-cold"]), "%.0f");
  std::printf("%-50s %9.0f %9.0f %9s %8.1f\n", "10 pods started at once, until all run, ms",
              concurrent_ms["runc"], concurrent_ms["hull"], "-",
              concurrent_ms["hull"] / concurrent_ms["runc"]);
  row("host memory per idle pod (PSS), MiB", pss_mib["runc"], pss_mib["hull"], pss_mib["hull-cold"],
      "%.1f");
  row("  the same, the template's RAM file spread over them", pss_mib["runc"],
      pss_mib["hull"] + template_mib / idle, pss_mib["hull-cold"], "%.1f");
  row("host MemAvailable drop per idle pod, MiB", available_mib["runc"], available_mib["hull"],
      available_mib["hull-cold"], "%.1f");
  std::printf(
      "the template: %.1f MiB of RAM file; the first hull pod booted in %.0f ms and its "
      "removal waited %.0f ms for the template build\n",
      template_mib, first_ms, build_ms);
  return 0;
}
