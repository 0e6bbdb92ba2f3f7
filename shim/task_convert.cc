#include "task_convert.h"

#include "containerd/runc/v1/process_details.pb.h"

namespace hull::shim {

namespace types = ::containerd::v1::types;
namespace cgroups = ::io::containerd::cgroups::v2;

namespace {

constexpr char kProcessTypeUrl[] = "types.containerd.io/opencontainers/runtime-spec/1/Process";
constexpr char kResourcesTypeUrl[] =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

}  // namespace

types::Status TaskStatus(ProcessState state, bool paused) {
  switch (state) {
    case ProcessState::kCreated:
      return types::CREATED;
    case ProcessState::kRunning:
      return paused ? types::PAUSED : types::RUNNING;
    case ProcessState::kStopped:
      return types::STOPPED;
  }
  return types::UNKNOWN;
}

void SetZeroTime(google::protobuf::Timestamp* out) {
  out->set_seconds(-62135596800);
  out->set_nanos(0);
}

StdioPaths StdioOf(const task::CreateTaskRequest& request) {
  return {request.stdin(), request.stdout(), request.stderr(), request.terminal()};
}

StdioPaths StdioOf(const task::ExecProcessRequest& request) {
  return {request.stdin(), request.stdout(), request.stderr(), request.terminal()};
}

std::vector<HostMount> RootfsMounts(const task::CreateTaskRequest& request) {
  std::vector<HostMount> mounts;
  for (const auto& mount : request.rootfs()) {
    mounts.push_back(
        {mount.type(), mount.source(), {mount.options().begin(), mount.options().end()}});
  }
  return mounts;
}

Result<std::string> ExecProcessJson(const google::protobuf::Any& spec) {
  if (spec.type_url() != kProcessTypeUrl) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the spec is `" + spec.type_url() + "`, expected " + kProcessTypeUrl);
  }
  return spec.value();
}

Result<std::string> ResourcesJson(const google::protobuf::Any& resources) {
  if (resources.type_url() != kResourcesTypeUrl) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "resources are `" + resources.type_url() + "`, expected " + kResourcesTypeUrl);
  }
  return resources.value();
}

cgroups::Metrics ToMetrics(const sandbox::ContainerStats& stats) {
  cgroups::Metrics metrics;
  metrics.mutable_pids()->set_current(stats.pids.current);
  metrics.mutable_pids()->set_limit(stats.pids.limit);
  auto* cpu = metrics.mutable_cpu();
  cpu->set_usage_usec(stats.cpu.usage_usec);
  cpu->set_user_usec(stats.cpu.user_usec);
  cpu->set_system_usec(stats.cpu.system_usec);
  cpu->set_nr_periods(stats.cpu.nr_periods);
  cpu->set_nr_throttled(stats.cpu.nr_throttled);
  cpu->set_throttled_usec(stats.cpu.throttled_usec);
  auto* memory = metrics.mutable_memory();
  memory->set_usage(stats.memory.usage_bytes);
  memory->set_usage_limit(stats.memory.limit_bytes);
  memory->set_swap_usage(stats.memory.swap_usage_bytes);
  memory->set_anon(stats.memory.anon_bytes);
  memory->set_file(stats.memory.file_bytes);
  auto stat = [&](const char* key) -> uint64_t {
    auto it = stats.memory.stat.find(key);
    return it == stats.memory.stat.end() ? 0 : it->second;
  };
  memory->set_kernel_stack(stat("kernel_stack"));
  memory->set_slab(stat("slab"));
  memory->set_sock(stat("sock"));
  memory->set_shmem(stat("shmem"));
  memory->set_file_mapped(stat("file_mapped"));
  memory->set_file_dirty(stat("file_dirty"));
  memory->set_file_writeback(stat("file_writeback"));
  memory->set_inactive_anon(stat("inactive_anon"));
  memory->set_active_anon(stat("active_anon"));
  memory->set_inactive_file(stat("inactive_file"));
  memory->set_active_file(stat("active_file"));
  memory->set_unevictable(stat("unevictable"));
  memory->set_pgfault(stat("pgfault"));
  memory->set_pgmajfault(stat("pgmajfault"));
  metrics.mutable_memory_events()->set_oom(stats.memory.oom_events);
  metrics.mutable_memory_events()->set_oom_kill(stats.memory.oom_kill_events);
  for (const auto& device : stats.io) {
    auto* entry = metrics.mutable_io()->add_usage();
    entry->set_major(device.major);
    entry->set_minor(device.minor);
    entry->set_rbytes(device.read_bytes);
    entry->set_wbytes(device.write_bytes);
    entry->set_rios(device.read_ios);
    entry->set_wios(device.write_ios);
  }
  return metrics;
}

task::StatsResponse ToStatsResponse(const sandbox::ContainerStats& stats) {
  task::StatsResponse response;
  response.mutable_stats()->set_type_url("io.containerd.cgroups.v2.Metrics");
  response.mutable_stats()->set_value(ToMetrics(stats).SerializeAsString());
  return response;
}

task::PidsResponse ToPidsResponse(const std::vector<uint32_t>& pids,
                                  const std::map<uint32_t, std::string>& exec_ids) {
  task::PidsResponse response;
  for (uint32_t pid : pids) {
    auto* info = response.add_processes();
    info->set_pid(pid);
    if (auto it = exec_ids.find(pid); it != exec_ids.end()) {
      ::containerd::runc::v1::ProcessDetails details;
      details.set_exec_id(it->second);
      info->mutable_info()->set_type_url("containerd.runc.v1.ProcessDetails");
      info->mutable_info()->set_value(details.SerializeAsString());
    }
  }
  return response;
}

std::string ProcessLabel(const std::string& id, const std::string& exec_id) {
  return exec_id.empty() ? "container `" + id + "`" : "process `" + exec_id + "`";
}

Status ValidateSignal(uint32_t signal) {
  if (signal == 0 || signal > 64) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "signal " + std::to_string(signal) + " is invalid");
  }
  return Ok();
}

}  // namespace hull::shim
