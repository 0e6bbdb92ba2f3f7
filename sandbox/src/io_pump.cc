#include "hull/sandbox/io_pump.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <vector>

#include "hull/core/syscall.h"
#include "hull/core/thread.h"

namespace hull::sandbox {

Status PumpOutput(AgentApi& agent, const ProcessRef& process, OutputStream stream,
                  Cancellation& cancellation, const std::function<bool(std::string_view)>& sink) {
  auto reader = agent.ReadOutput(process, stream, cancellation);
  std::string chunk;
  bool writable = true;
  while (reader->Next(&chunk)) {
    if (writable) writable = sink(chunk);
  }
  return reader->Finish();
}

Result<std::unique_ptr<StdinPump>> StdinPump::Start(AgentApi& agent, ProcessRef process, int fd) {
  std::unique_ptr<StdinPump> pump(new StdinPump());
  pump->fd_ = fd;
  pump->close_event_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!pump->close_event_) return ErrnoError("eventfd");
  pump->thread_ = SpawnThread("io-stdin", [raw = pump.get(), &agent, process = std::move(process)] {
    raw->Run(agent, process);
  });
  return pump;
}

void StdinPump::Run(AgentApi& agent, ProcessRef process) {
  auto writer = agent.WriteStdin(process, cancellation_);
  std::vector<char> buffer(64 * 1024);
  bool draining = false;
  while (!abort_) {
    // Once Close was asked, what the fd holds now belongs to the process:
    // it is passed on without waiting for more.
    pollfd fds[2] = {{fd_, POLLIN, 0}, {close_event_.get(), POLLIN, 0}};
    if (RetryEintr([&] { return ::poll(fds, draining ? 1 : 2, draining ? 0 : -1); }) < 0) break;
    if (abort_) break;
    if (!draining && fds[1].revents != 0) draining = true;
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
      if (draining) break;
      continue;
    }
    ssize_t n = RetryEintr([&] { return ::read(fd_, buffer.data(), buffer.size()); });
    if (n < 0 && errno == EAGAIN) continue;
    if (n <= 0) break;  // EOF: every writer closed it
    if (!writer->Write(std::string_view(buffer.data(), static_cast<size_t>(n)))) break;
  }
  (void)writer->Close();
}

void StdinPump::Close() {
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(close_event_.get(), &one, sizeof one);
}

void StdinPump::Abort() {
  abort_ = true;
  Close();
  // A Write blocked on the agent's window ends too.
  cancellation_.Cancel();
  if (thread_.joinable()) thread_.join();
}

StdinPump::~StdinPump() { Abort(); }

}  // namespace hull::sandbox
