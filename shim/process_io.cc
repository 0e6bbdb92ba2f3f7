#include "process_io.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include <vector>

#include "hull/core/log.h"
#include "hull/core/syscall.h"
#include "hull/core/thread.h"

namespace hull::shim {

namespace {

constexpr std::string_view kFileScheme = "file://";

Result<UniqueFd> OpenOutput(const std::string& uri) {
  if (uri.starts_with(kFileScheme)) {
    std::string path = uri.substr(kFileScheme.size());
    if (path.empty() || path[0] != '/') {
      return MakeError(ErrorCode::kInvalidArgument,
                       "log URI `" + uri + "`: the path must be absolute");
    }
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
    if (!fd) return ErrnoError("open the log file `" + path + "`");
    return fd;
  }
  if (uri.find("://") != std::string::npos) {
    return MakeError(ErrorCode::kUnimplemented,
                     "stdio `" + uri + "`: only FIFO paths and file:// URIs are supported");
  }
  struct stat st {};
  if (::stat(uri.c_str(), &st) < 0) return ErrnoError("stdio FIFO `" + uri + "`");
  // Read-write: open never blocks on a FIFO, and writes do not fail with
  // EPIPE while the client is away.
  UniqueFd fd(::open(uri.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) return ErrnoError("open the stdio FIFO `" + uri + "`");
  return fd;
}

}  // namespace

Result<std::unique_ptr<ProcessIo>> ProcessIo::Open(const StdioPaths& paths) {
  std::unique_ptr<ProcessIo> io(new ProcessIo());
  io->paths_ = paths;
  if (!paths.stdin.empty()) {
    if (paths.stdin.find("://") != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "stdin `" + paths.stdin + "` must be a FIFO path");
    }
    io->stdin_fd_.reset(::open(paths.stdin.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!io->stdin_fd_) return ErrnoError("open the stdin FIFO `" + paths.stdin + "`");
  }
  if (!paths.stdout.empty()) {
    HULL_TRY(UniqueFd fd, OpenOutput(paths.stdout), "stdout");
    io->stdout_fd_ = std::make_shared<UniqueFd>(std::move(fd));
  }
  if (!paths.stderr.empty() && !paths.terminal) {
    if (paths.stderr == paths.stdout) {
      io->stderr_fd_ = io->stdout_fd_;  // one log file for both
    } else {
      HULL_TRY(UniqueFd fd, OpenOutput(paths.stderr), "stderr");
      io->stderr_fd_ = std::make_shared<UniqueFd>(std::move(fd));
    }
  }
  io->wake_output_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!io->wake_output_) return ErrnoError("eventfd");
  // Output FIFOs are written without blocking: the pump waits in poll, where
  // DropWhenFull can wake it.
  for (auto* out : {&io->stdout_fd_, &io->stderr_fd_}) {
    if (*out) (void)SetNonBlocking((*out)->get());
  }
  return io;
}

sandbox::StdioSetup ProcessIo::AgentIo() const {
  return sandbox::StdioSetup{.terminal = paths_.terminal,
                             .stdin = stdin_fd_.valid(),
                             .stdout = stdout_fd_ != nullptr,
                             .stderr = stderr_fd_ != nullptr};
}

void ProcessIo::Start(sandbox::AgentApi& agent, const sandbox::ProcessRef& process) {
  if (stdout_fd_) {
    stdout_thread_ = SpawnThread("io-stdout", [this, &agent, process, out = stdout_fd_] {
      CopyOutput(agent, process, sandbox::OutputStream::kStdout, out);
    });
  }
  if (stderr_fd_) {
    stderr_thread_ = SpawnThread("io-stderr", [this, &agent, process, out = stderr_fd_] {
      CopyOutput(agent, process, sandbox::OutputStream::kStderr, out);
    });
  }
  if (stdin_fd_) {
    auto pump = sandbox::StdinPump::Start(agent, process, stdin_fd_.get());
    if (pump) {
      stdin_pump_ = std::move(*pump);
    } else {
      HULL_LOG_WARN("{} {}: stdin: {}", process.container_id, process.exec_id,
                    pump.error().ToString());
    }
  }
}

void ProcessIo::CopyOutput(sandbox::AgentApi& agent, sandbox::ProcessRef process,
                           sandbox::OutputStream stream, std::shared_ptr<UniqueFd> out) {
  auto ended =
      sandbox::PumpOutput(agent, process, stream, cancel_output_, [&](std::string_view data) {
        // A write error (the log file's disk is full) drops output rather than
        // stalling the process.
        if (WriteOutput(out->get(), data)) return true;
        HULL_LOG_WARN("{} {}: output lost: {}", process.container_id, process.exec_id,
                      strerror(errno));
        return false;
      });
  if (!ended && ended.error().code() != ErrorCode::kCancelled) {
    HULL_LOG_WARN("{} {}: output stream: {}", process.container_id, process.exec_id,
                  ended.error().ToString());
  }
}

bool ProcessIo::WriteOutput(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      // A full FIFO nobody reads (ctr run -d) must not keep a killed
      // process from being reported: once it is being killed, what does not
      // fit is dropped.
      if (drop_when_full_) return true;
      pollfd fds[2] = {{fd, POLLOUT, 0}, {wake_output_.get(), POLLIN, 0}};
      if (RetryEintr([&] { return ::poll(fds, 2, -1); }) < 0) return false;
      continue;
    }
    return false;
  }
  return true;
}

void ProcessIo::DropWhenFull() {
  drop_when_full_ = true;
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_output_.get(), &one, sizeof one);
}

void ProcessIo::WaitOutput() {
  if (stdout_thread_.joinable()) stdout_thread_.join();
  if (stderr_thread_.joinable()) stderr_thread_.join();
  std::lock_guard lock(mu_);
  if (!output_done_) {
    output_done_ = true;
    stdout_fd_.reset();
    stderr_fd_.reset();
  }
}

void ProcessIo::CloseStdin() {
  if (stdin_pump_) stdin_pump_->Close();
}

void ProcessIo::Stop() {
  DropWhenFull();
  if (stdin_pump_) stdin_pump_->Abort();
  // By now the output was delivered (the waiter waited for it) or nobody
  // waits for it any more: a stream the agent holds open must not hold us.
  cancel_output_.Cancel();
  WaitOutput();
}

ProcessIo::~ProcessIo() { Stop(); }

}  // namespace hull::shim
