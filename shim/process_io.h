// A process's stdio on the host, as containerd names it (CreateTaskRequest /
// ExecProcessRequest stdin, stdout, stderr, terminal), copied to and from the
// agent's IO streams.
//
// - A path is a FIFO the client created and already opened: stdout/stderr are
//   opened read-write (never blocks, and survives the reader going away and
//   coming back, as the runc shim's extra read handle does), stdin read-only
//   and non-blocking.
// - `file:///path` (ctr --log-uri): output appended to that file.
// - "" : no stream (the process gets /dev/null).
// The output write ends are closed once the agent's stream has delivered the
// last byte, so readers see EOF only after everything arrived.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "hull/core/error.h"
#include "hull/core/fd.h"
#include "hull/sandbox/agent_api.h"
#include "hull/sandbox/io_pump.h"

namespace hull::shim {

struct StdioPaths {
  std::string stdin;
  std::string stdout;
  std::string stderr;
  bool terminal = false;
};

class ProcessIo {
 public:
  // Opens the host ends; fails with a clear error (and opens nothing) when a
  // path cannot be used.
  static Result<std::unique_ptr<ProcessIo>> Open(const StdioPaths& paths);
  ~ProcessIo();  // Stop()
  ProcessIo(const ProcessIo&) = delete;
  ProcessIo& operator=(const ProcessIo&) = delete;

  // Which streams the agent should set up for the process.
  sandbox::StdioSetup AgentIo() const;

  // Starts copying between the host ends and `process` in the guest.
  // `agent` must outlive this object.
  void Start(sandbox::AgentApi& agent, const sandbox::ProcessRef& process);

  // Blocks until both output streams ended (the agent delivered everything,
  // or the connection failed), then closes the output write ends.
  void WaitOutput();

  // Closes the process's stdin (CloseIO) once what the FIFO still holds was
  // passed on.
  void CloseStdin();

  // From now on, output that does not fit a full FIFO is dropped instead of
  // waited for (the process is being killed; a FIFO nobody reads must not
  // hold up its exit).
  void DropWhenFull();

  // Ends every copy and joins the threads.
  void Stop();

 private:
  ProcessIo() = default;
  void CopyOutput(sandbox::AgentApi& agent, sandbox::ProcessRef process,
                  sandbox::OutputStream stream, std::shared_ptr<UniqueFd> out);
  bool WriteOutput(int fd, std::string_view data);

  StdioPaths paths_;
  UniqueFd stdin_fd_;
  std::shared_ptr<UniqueFd> stdout_fd_, stderr_fd_;
  std::unique_ptr<sandbox::StdinPump> stdin_pump_;
  sandbox::Cancellation cancel_output_;  // Stop(): ends the output streams
  UniqueFd wake_output_;                 // eventfd: wakes output pumps waiting for room
  std::atomic<bool> drop_when_full_{false};
  std::thread stdout_thread_, stderr_thread_;
  std::mutex mu_;
  bool output_done_ = false;
};

}  // namespace hull::shim
