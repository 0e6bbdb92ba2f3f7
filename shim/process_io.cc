#include "process_io.h"

#include <fcntl.h>
#include <grpcpp/client_context.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include <vector>

#include "hull/core/log.h"
#include "hull/core/syscall.h"

namespace hull::shim {

namespace v1 = agent::v1;

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
  io->stop_stdin_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  io->wake_output_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!io->stop_stdin_ || !io->wake_output_) return ErrnoError("eventfd");
  // Output FIFOs are written without blocking: the pump waits in poll, where
  // DropWhenFull can wake it.
  for (auto* out : {&io->stdout_fd_, &io->stderr_fd_}) {
    if (*out) (void)SetNonBlocking((*out)->get());
  }
  return io;
}

v1::ProcessIo ProcessIo::AgentIo() const {
  v1::ProcessIo io;
  io.set_terminal(paths_.terminal);
  io.set_stdin(stdin_fd_.valid());
  io.set_stdout(stdout_fd_ != nullptr);
  io.set_stderr(stderr_fd_ != nullptr);
  return io;
}

void ProcessIo::Start(AgentClient& client, const std::string& container_id,
                      const std::string& exec_id) {
  if (stdout_fd_) {
    stdout_thread_ = std::thread(&ProcessIo::PumpOutput, this, std::ref(client), container_id,
                                 exec_id, static_cast<int>(v1::STDOUT), stdout_fd_);
  }
  if (stderr_fd_) {
    stderr_thread_ = std::thread(&ProcessIo::PumpOutput, this, std::ref(client), container_id,
                                 exec_id, static_cast<int>(v1::STDERR), stderr_fd_);
  }
  if (stdin_fd_)
    stdin_thread_ =
        std::thread(&ProcessIo::PumpStdin, this, std::ref(client), container_id, exec_id);
}

void ProcessIo::PumpOutput(AgentClient& client, std::string container_id, std::string exec_id,
                           int stream, std::shared_ptr<UniqueFd> out) {
  grpc::ClientContext context;
  v1::ReadOutputRequest request;
  request.set_container_id(container_id);
  request.set_exec_id(exec_id);
  request.set_stream(static_cast<v1::OutputStream>(stream));
  auto reader = client.agent().ReadOutput(&context, request);
  v1::OutputChunk chunk;
  bool writable = true;
  while (reader->Read(&chunk)) {
    // A write error (the log file's disk is full) drops output rather than
    // stalling the process.
    if (writable && !WriteOutput(out->get(), chunk.data())) {
      HULL_LOG_WARN("{} {}: output lost: {}", container_id, exec_id, strerror(errno));
      writable = false;
    }
  }
  auto status = reader->Finish();
  if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
    HULL_LOG_WARN("{} {}: output stream: {}", container_id, exec_id, status.error_message());
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

void ProcessIo::PumpStdin(AgentClient& client, std::string container_id, std::string exec_id) {
  grpc::ClientContext context;
  v1::WriteStdinResponse response;
  auto writer = client.agent().WriteStdin(&context, &response);
  v1::WriteStdinRequest chunk;
  chunk.set_container_id(container_id);
  chunk.set_exec_id(exec_id);
  // The first message names the process even when there is nothing to send.
  writer->Write(chunk);
  chunk.clear_container_id();
  chunk.clear_exec_id();
  std::vector<char> buffer(64 * 1024);
  bool draining = false;
  while (!abort_) {
    if (!draining) {
      pollfd fds[2] = {{stdin_fd_.get(), POLLIN, 0}, {stop_stdin_.get(), POLLIN, 0}};
      if (RetryEintr([&] { return ::poll(fds, 2, -1); }) < 0) break;
      // CloseIO: the client wrote everything before asking, so what is still
      // in the FIFO belongs to the process; read it out, then close.
      draining = fds[1].revents != 0;
      if (abort_) break;
    }
    ssize_t n = RetryEintr([&] { return ::read(stdin_fd_.get(), buffer.data(), buffer.size()); });
    if (n < 0 && errno == EAGAIN) {
      if (draining) break;
      continue;
    }
    if (n <= 0) break;  // EOF: every writer closed the FIFO
    chunk.set_data(buffer.data(), static_cast<size_t>(n));
    if (!writer->Write(chunk)) break;
  }
  chunk.set_data("");
  chunk.set_close(true);
  writer->Write(chunk);
  writer->WritesDone();
  (void)writer->Finish();
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
  if (stop_stdin_) {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stop_stdin_.get(), &one, sizeof one);
  }
}

void ProcessIo::Stop() {
  abort_ = true;
  DropWhenFull();
  CloseStdin();
  if (stdin_thread_.joinable()) stdin_thread_.join();
  WaitOutput();
}

ProcessIo::~ProcessIo() { Stop(); }

}  // namespace hull::shim
