// Internal to the engine (engine.cc, stdio.cc): what it keeps per container
// and per process. Callers use engine/engine.h.
#pragma once

#include <sys/ioctl.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "engine/cgroup.h"
#include "engine/engine.h"
#include "engine/launch.h"
#include "hull/core/fd.h"

namespace hull::engine {

using Clock = std::chrono::steady_clock;

struct Engine::Process {
  std::string container_id;
  std::string exec_id;
  std::string description;
  pid_t pid = -1;
  bool terminal = false;
  UniqueFd stdin_write;  // pipe write end (no terminal)
  UniqueFd pty_master;   // terminal: stdin and output
  UniqueFd stdout_read;
  UniqueFd stderr_read;
  bool capture[2] = {false, false};  // stdout, stderr
  bool drained[2] = {false, false};
  bool reading[2] = {false, false};
  std::optional<ExitStatus> exit;
  Clock::time_point exited_at;
  uint64_t exited_at_ns = 0;
  std::unique_ptr<LaunchPlan> plan;      // kept until the process runs
  std::unique_ptr<LaunchedChild> child;  // the create/start handshake

  int OutputFd(OutputStream stream) const {
    if (terminal) return stream == OutputStream::kStdout ? pty_master.get() : -1;
    return stream == OutputStream::kStdout ? stdout_read.get() : stderr_read.get();
  }
};

struct Engine::Container {
  std::string id;
  oci::Spec spec;
  ContainerState state = ContainerState::kCreated;
  std::shared_ptr<Process> init;
  std::map<std::string, std::shared_ptr<Process>> execs;
  std::string rootfs;
  std::optional<Cgroup> cgroup;
  bool oom_killed = false;
};

// The output side of a process is drained once its pipe hit EOF, or once the
// process is gone and the pipe has stayed empty for `quiet` (a leftover
// child may hold the write end forever).
inline bool PipeEmpty(int fd) {
  int pending = 0;
  return fd < 0 || (::ioctl(fd, FIONREAD, &pending) == 0 && pending == 0);
}

}  // namespace hull::engine
