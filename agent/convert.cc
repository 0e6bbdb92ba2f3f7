#include "convert.h"

#include <time.h>

#include <algorithm>

namespace hull::agent {

grpc::Status ToGrpc(const Error& error) {
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(error.code())),
                      error.ToString());
}

grpc::Status ToGrpc(const Status& status) {
  return status ? grpc::Status::OK : ToGrpc(status.error());
}

void FillStats(const engine::CgroupStats& stats, v1::StatsContainerResponse* response) {
  auto* cpu = response->mutable_cpu();
  cpu->set_usage_usec(stats.cpu.usage_usec);
  cpu->set_user_usec(stats.cpu.user_usec);
  cpu->set_system_usec(stats.cpu.system_usec);
  cpu->set_nr_periods(stats.cpu.nr_periods);
  cpu->set_nr_throttled(stats.cpu.nr_throttled);
  cpu->set_throttled_usec(stats.cpu.throttled_usec);
  auto* memory = response->mutable_memory();
  memory->set_usage_bytes(stats.memory.current);
  memory->set_limit_bytes(stats.memory.max);
  memory->set_swap_usage_bytes(stats.memory.swap_current);
  memory->set_anon_bytes(stats.memory.anon);
  memory->set_file_bytes(stats.memory.file);
  memory->set_oom_events(stats.memory.oom);
  memory->set_oom_kill_events(stats.memory.oom_kill);
  for (const auto& [key, value] : stats.memory.stat) (*memory->mutable_stat())[key] = value;
  response->mutable_pids()->set_current(stats.pids.current);
  response->mutable_pids()->set_limit(stats.pids.max);
  for (const auto& device : stats.io) {
    auto* out = response->mutable_io()->add_devices();
    out->set_major(device.major);
    out->set_minor(device.minor);
    out->set_read_bytes(device.rbytes);
    out->set_write_bytes(device.wbytes);
    out->set_read_ios(device.rios);
    out->set_write_ios(device.wios);
  }
  response->set_timestamp_ns(RealtimeNanos());
}

engine::IoRequest IoRequestFromProto(const v1::ProcessIo& io) {
  engine::IoRequest out;
  out.terminal = io.terminal();
  out.stdin = io.stdin();
  out.stdout = io.stdout();
  out.stderr = io.stderr();
  out.rows = static_cast<uint16_t>(std::min<uint32_t>(io.tty_size().rows(), 65535));
  out.columns = static_cast<uint16_t>(std::min<uint32_t>(io.tty_size().columns(), 65535));
  return out;
}

uint64_t RealtimeNanos() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace hull::agent
