// Copying a process's stdio between host fds and the agent's streams, written
// once for everything on the host (the shim's FIFOs, hullctl's terminal, the
// tests).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string_view>
#include <thread>

#include "hull/core/error.h"
#include "hull/core/fd.h"
#include "hull/sandbox/agent_api.h"

namespace hull::sandbox {

// Copies what `process` writes on `stream` into `sink` until the stream ends
// (the process and every holder of its output closed it) or `cancellation`
// fires. Once `sink` returns false (its reader is gone, its disk is full) the
// rest is read and dropped, so the process is never held up by it. Returns how
// the stream ended: OK after the last byte, kCancelled, or the error.
Status PumpOutput(AgentApi& agent, const ProcessRef& process, OutputStream stream,
                  Cancellation& cancellation, const std::function<bool(std::string_view)>& sink);

// Copies a host fd into a process's stdin on a thread of its own, until the
// fd's EOF, Close or Abort; then closes the process's stdin (it sees EOF).
class StdinPump {
 public:
  // `fd` is borrowed and must outlive the pump.
  static Result<std::unique_ptr<StdinPump>> Start(AgentApi& agent, ProcessRef process, int fd);
  ~StdinPump();  // Abort()
  StdinPump(const StdinPump&) = delete;
  StdinPump& operator=(const StdinPump&) = delete;

  // Passes on what the fd holds now (the client wrote everything before it
  // asked), then closes the process's stdin.
  void Close();
  // Stops at once (what is still in the fd is not passed on) and joins.
  void Abort();

 private:
  StdinPump() = default;
  void Run(AgentApi& agent, ProcessRef process);

  int fd_ = -1;
  UniqueFd close_event_;  // eventfd: Close or Abort
  std::atomic<bool> abort_{false};
  Cancellation cancellation_;
  std::thread thread_;
};

}  // namespace hull::sandbox
