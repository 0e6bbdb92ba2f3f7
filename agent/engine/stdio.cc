// A process's stdio in the engine: pipes or a pty made before the clone,
// stdin writes, terminal resizes and the output drain that ends only when
// the process's output is complete (an exit is reported after its output).
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "hull/core/sys.h"
#include "hull/core/syscall.h"

namespace hull::engine {

// A pty from the container's own devpts instance (its /dev/pts/ptmx, resolved
// inside the root of `init_pid`), so that ttyname() in the container names
// it as runc's exec terminals are named. Fails when the container has no
// devpts of its own; the caller then takes one from the agent's.
namespace {

Result<std::pair<UniqueFd, UniqueFd>> OpenContainerPty(pid_t init_pid) {
  UniqueFd root(::open(("/proc/" + std::to_string(init_pid) + "/root").c_str(),
                       O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return ErrnoError("open the container's root");
  HULL_TRY(UniqueFd master, sys::SafeOpen(root.get(), "dev/pts/ptmx", O_RDWR | O_NOCTTY),
           "open the container's /dev/pts/ptmx");
  int unlock = 0;
  if (::ioctl(master.get(), TIOCSPTLCK, &unlock) < 0) return ErrnoError("unlock the pty");
  UniqueFd slave(::ioctl(master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!slave) return ErrnoError("open the pty's peer");
  return std::make_pair(std::move(master), std::move(slave));
}

}  // namespace

Result<std::shared_ptr<Engine::Process>> Engine::MakeProcess(const std::string& exec_id,
                                                             const IoRequest& io, ChildStdio* stdio,
                                                             std::vector<UniqueFd>* child_ends,
                                                             pid_t pty_from_pid) {
  auto process = std::make_shared<Process>();
  process->exec_id = exec_id;
  process->terminal = io.terminal;
  if (io.terminal) {
    int master = -1, slave = -1;
    winsize size{io.rows, io.columns, 0, 0};
    if (auto pty = pty_from_pid > 0
                       ? OpenContainerPty(pty_from_pid)
                       : Result<std::pair<UniqueFd, UniqueFd>>(MakeError(ErrorCode::kNotFound, ""));
        pty) {
      master = pty->first.release();
      slave = pty->second.release();
      if (io.rows > 0) (void)::ioctl(slave, TIOCSWINSZ, &size);
    } else if (::openpty(&master, &slave, nullptr, nullptr, io.rows > 0 ? &size : nullptr) < 0) {
      return ErrnoError("open a pty");
    }
    process->pty_master.reset(master);
    (void)SetCloexec(master);
    (void)SetCloexec(slave);
    stdio->pty_slave = slave;
    child_ends->emplace_back(slave);
    process->capture[0] = true;
    process->drained[1] = true;  // a terminal has one output stream
    return process;
  }
  auto make_pipe = [&](UniqueFd* parent_end, int* child_fd, bool parent_reads) -> Status {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0) return ErrnoError("pipe2");
    parent_end->reset(parent_reads ? fds[0] : fds[1]);
    *child_fd = parent_reads ? fds[1] : fds[0];
    child_ends->emplace_back(*child_fd);
    return Ok();
  };
  if (io.stdin) HULL_CHECK_OK(make_pipe(&process->stdin_write, &stdio->stdin_fd, false), "stdin");
  if (io.stdout) HULL_CHECK_OK(make_pipe(&process->stdout_read, &stdio->stdout_fd, true), "stdout");
  if (io.stderr) HULL_CHECK_OK(make_pipe(&process->stderr_read, &stdio->stderr_fd, true), "stderr");
  process->capture[0] = io.stdout;
  process->capture[1] = io.stderr;
  process->drained[0] = !io.stdout;
  process->drained[1] = !io.stderr;
  return process;
}

Status Engine::WriteStdin(const std::string& id, const std::string& exec_id,
                          std::string_view data) {
  HULL_TRY(auto process, FindProcess(id, exec_id), "write stdin");
  int fd = process->terminal ? process->pty_master.get() : process->stdin_write.get();
  if (fd < 0)
    return MakeError(ErrorCode::kFailedPrecondition,
                     process->description + ": stdin is closed or was not opened");
  // A blocking write: a process that does not read its stdin slows the writer.
  auto written = WriteAll(fd, data);
  if (!written) {
    if (written.error().sys_errno() == EPIPE) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       process->description + ": stdin reader has gone");
    }
    return std::move(written).error().Wrap(process->description + ": write stdin");
  }
  return Ok();
}

Status Engine::CloseStdin(const std::string& id, const std::string& exec_id) {
  HULL_TRY(auto process, FindProcess(id, exec_id), "close stdin");
  if (process->terminal) {
    // A terminal has no separate stdin to close: send end-of-file (^D).
    if (process->pty_master) (void)WriteAll(process->pty_master.get(), "\x04");
    return Ok();
  }
  process->stdin_write.reset();
  return Ok();
}

Status Engine::ResizeTty(const std::string& id, const std::string& exec_id, uint16_t rows,
                         uint16_t columns) {
  HULL_TRY(auto process, FindProcess(id, exec_id), "resize tty");
  if (!process->terminal)
    return MakeError(ErrorCode::kFailedPrecondition, process->description + " has no terminal");
  winsize size{rows, columns, 0, 0};
  if (::ioctl(process->pty_master.get(), TIOCSWINSZ, &size) < 0) return ErrnoError("resize tty");
  return Ok();
}

Status Engine::ReadOutput(const std::string& id, const std::string& exec_id, OutputStream stream,
                          const std::function<bool(std::string_view)>& sink) {
  HULL_TRY(auto process, FindProcess(id, exec_id), "read output");
  int s = stream == OutputStream::kStdout ? 0 : 1;
  int fd;
  {
    std::lock_guard lock(mu_);
    if (process->drained[s])
      return Ok();  // not captured, a terminal's stderr, or already at its end
    if (process->reading[s]) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       process->description + ": the stream already has a reader");
    }
    process->reading[s] = true;
    fd = process->OutputFd(stream);
  }
  auto finish = [&](bool drained) {
    std::lock_guard lock(mu_);
    process->reading[s] = false;
    if (drained) process->drained[s] = true;
    changed_.notify_all();
  };
  std::vector<char> buffer(64 * 1024);
  auto last_data = Clock::now();
  while (true) {
    pollfd p{fd, POLLIN, 0};
    int rc = RetryEintr([&] { return ::poll(&p, 1, 100); });
    if (rc < 0) {
      finish(true);
      return ErrnoError("poll output");
    }
    if (rc == 0) {
      std::lock_guard lock(mu_);
      bool exited = process->exit.has_value();
      auto quiet = options_.drain_quiet;
      if (exited && PipeEmpty(fd) && Clock::now() - last_data > quiet &&
          Clock::now() - process->exited_at > quiet) {
        process->reading[s] = false;
        process->drained[s] = true;
        changed_.notify_all();
        return Ok();
      }
      continue;
    }
    ssize_t n = RetryEintr([&] { return ::read(fd, buffer.data(), buffer.size()); });
    if (n == 0 || (n < 0 && errno == EIO)) {  // EIO: the pty's last slave closed
      finish(true);
      return Ok();
    }
    if (n < 0) {
      if (errno == EAGAIN) continue;
      finish(true);
      return ErrnoError("read output");
    }
    last_data = Clock::now();
    if (!sink(std::string_view(buffer.data(), static_cast<size_t>(n)))) {
      finish(false);  // the reader went away; another may continue
      return MakeError(ErrorCode::kCancelled, "output reader went away");
    }
  }
}

}  // namespace hull::engine
