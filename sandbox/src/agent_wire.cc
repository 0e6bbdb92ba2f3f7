#include "agent_wire.h"

namespace hull::sandbox {

namespace v1 = agent::v1;

v1::ProcessIo ToWire(const StdioSetup& stdio) {
  v1::ProcessIo io;
  io.set_terminal(stdio.terminal);
  io.set_stdin(stdio.stdin);
  io.set_stdout(stdio.stdout);
  io.set_stderr(stdio.stderr);
  if (stdio.tty_size.rows != 0 || stdio.tty_size.columns != 0) {
    io.mutable_tty_size()->set_rows(stdio.tty_size.rows);
    io.mutable_tty_size()->set_columns(stdio.tty_size.columns);
  }
  return io;
}

v1::Storage ToWire(const GuestStorage& storage) {
  v1::Storage out;
  out.set_driver(storage.driver);
  out.set_source(storage.source);
  out.set_fstype(storage.fstype);
  for (const auto& option : storage.options) out.add_options(option);
  out.set_mount_point(storage.mount_point);
  return out;
}

v1::IpAddress ToWire(const IpAddress& address) {
  v1::IpAddress out;
  switch (address.family) {
    case IpAddress::Family::kIpv4:
      out.set_family(v1::IpAddress::IPV4);
      break;
    case IpAddress::Family::kIpv6:
      out.set_family(v1::IpAddress::IPV6);
      break;
    case IpAddress::Family::kUnspecified:
      break;
  }
  out.set_address(address.address);
  out.set_prefix_length(address.prefix_length);
  return out;
}

IpAddress FromWire(const v1::IpAddress& address) {
  IpAddress out;
  out.family = address.family() == v1::IpAddress::IPV4   ? IpAddress::Family::kIpv4
               : address.family() == v1::IpAddress::IPV6 ? IpAddress::Family::kIpv6
                                                         : IpAddress::Family::kUnspecified;
  out.address = address.address();
  out.prefix_length = address.prefix_length();
  return out;
}

v1::Route ToWire(const Route& route) {
  v1::Route out;
  out.set_destination(route.destination);
  out.set_gateway(route.gateway);
  out.set_device(route.device);
  out.set_source(route.source);
  out.set_scope(route.scope);
  out.set_family(route.family);
  return out;
}

Route FromWire(const v1::Route& route) {
  return Route{.destination = route.destination(),
               .gateway = route.gateway(),
               .device = route.device(),
               .source = route.source(),
               .scope = route.scope(),
               .family = route.family()};
}

NetInterface FromWire(const v1::Interface& interface) {
  NetInterface out;
  out.name = interface.name();
  out.mac_address = interface.mac_address();
  out.mtu = interface.mtu();
  out.up = interface.up();
  for (int i = 0; i < interface.addresses_size() && i < kMaxListEntries; ++i) {
    out.addresses.push_back(FromWire(interface.addresses(i)));
  }
  return out;
}

std::vector<Route> FromWire(const google::protobuf::RepeatedPtrField<v1::Route>& routes) {
  std::vector<Route> out;
  for (int i = 0; i < routes.size() && i < kMaxListEntries; ++i) out.push_back(FromWire(routes[i]));
  return out;
}

ContainerStats FromWire(const v1::StatsContainerResponse& stats) {
  ContainerStats out;
  const auto& cpu = stats.cpu();
  out.cpu = {cpu.usage_usec(), cpu.user_usec(),    cpu.system_usec(),
             cpu.nr_periods(), cpu.nr_throttled(), cpu.throttled_usec()};
  const auto& memory = stats.memory();
  out.memory.usage_bytes = memory.usage_bytes();
  out.memory.limit_bytes = memory.limit_bytes();
  out.memory.swap_usage_bytes = memory.swap_usage_bytes();
  out.memory.anon_bytes = memory.anon_bytes();
  out.memory.file_bytes = memory.file_bytes();
  out.memory.oom_events = memory.oom_events();
  out.memory.oom_kill_events = memory.oom_kill_events();
  for (const auto& [key, value] : memory.stat()) {
    if (out.memory.stat.size() >= static_cast<size_t>(kMaxListEntries)) break;
    if (key.size() <= 64) out.memory.stat.emplace(key, value);
  }
  out.pids = {stats.pids().current(), stats.pids().limit()};
  for (int i = 0; i < stats.io().devices_size() && i < kMaxListEntries; ++i) {
    const auto& device = stats.io().devices(i);
    out.io.push_back({device.major(), device.minor(), device.read_bytes(), device.write_bytes(),
                      device.read_ios(), device.write_ios()});
  }
  return out;
}

ProcessExit FromWire(const v1::WaitProcessResponse& response) {
  ProcessExit exit;
  int32_t code = response.exit_status();
  exit.exit_status = code >= 0 && code <= 255 ? static_cast<uint32_t>(code) : 255;
  exit.signal = response.signal() <= 64 ? response.signal() : 0;
  exit.oom_killed = response.oom_killed();
  exit.exited_at = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(response.exited_at_ns())));
  return exit;
}

v1::OutputStream ToWire(OutputStream stream) {
  return stream == OutputStream::kStdout ? v1::STDOUT : v1::STDERR;
}

GuestDetails FromWire(const v1::GetGuestDetailsResponse& response) {
  GuestDetails out;
  out.kernel_release = response.kernel_release();
  out.kernel_version = response.kernel_version();
  out.machine = response.machine();
  out.online_cpus = response.online_cpus();
  out.memory_total_bytes = response.memory_total_bytes();
  out.memory_available_bytes = response.memory_available_bytes();
  out.agent_version = response.agent_version();
  out.transport = response.transport();
  out.cgroup_mode = response.cgroup_mode();
  for (int i = 0; i < response.loaded_modules_size() && i < kMaxListEntries; ++i) {
    out.loaded_modules.push_back(response.loaded_modules(i));
  }
  const auto& startup = response.startup();
  out.agent_start_us = startup.agent_start_us();
  out.mounts_done_us = startup.mounts_done_us();
  out.modules_done_us = startup.modules_done_us();
  out.network_done_us = startup.network_done_us();
  out.listening_us = startup.listening_us();
  out.first_request_us = startup.first_request_us();
  return out;
}

}  // namespace hull::sandbox
