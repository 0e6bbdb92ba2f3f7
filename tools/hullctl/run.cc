// hullctl run: one OCI bundle in a fresh microVM, stdio attached, the
// container's exit status as ours, and nothing left behind.
#include <fcntl.h>
#include <grpcpp/client_context.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <thread>

#include "agent_client.h"
#include "commands.h"
#include "hull/core/ids.h"
#include "hull/core/log.h"
#include "hull/core/oci_spec.h"
#include "hull/core/syscall.h"
#include "hull/hypervisor/hypervisor.h"
#include "session.h"

namespace hull::hullctl {

namespace v1 = agent::v1;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// The bundle to run, resolved on the host before anything is started.
struct Bundle {
  oci::Spec spec;
  std::string spec_json;
  std::string rootfs;  // absolute host path
};

Result<Bundle> LoadBundle(const RunOptions& options) {
  Bundle bundle;
  if (!options.bundle.empty() && !options.rootfs.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "give --bundle or --rootfs, not both");
  }
  if (!options.bundle.empty()) {
    std::string config_path = options.bundle + "/config.json";
    HULL_TRY(std::string text, ReadFile(config_path, 4 << 20), "read the bundle");
    HULL_TRY(bundle.spec, oci::ParseOciSpec(text), config_path);
    std::filesystem::path root = bundle.spec.root.path;
    if (root.is_relative()) root = std::filesystem::path(options.bundle) / root;
    bundle.rootfs = root.string();
  } else if (!options.rootfs.empty()) {
    bundle.spec = oci::DefaultSpec(
        options.args.empty() ? std::vector<std::string>{"sh"} : options.args, options.tty);
    // Like `docker run`, a bare root filesystem is writable.
    bundle.spec.root.readonly = false;
    bundle.rootfs = options.rootfs;
  } else {
    return MakeError(ErrorCode::kInvalidArgument,
                     "give --bundle DIR (config.json + rootfs) or --rootfs DIR");
  }
  if (!bundle.spec.process)
    return MakeError(ErrorCode::kInvalidArgument, "config.json: the spec has no process");
  if (!options.args.empty()) bundle.spec.process->args = options.args;
  if (options.tty) bundle.spec.process->terminal = true;
  std::error_code ec;
  auto absolute = std::filesystem::canonical(bundle.rootfs, ec);
  if (ec || !std::filesystem::is_directory(absolute)) {
    return MakeError(ErrorCode::kNotFound,
                     "root filesystem `" + bundle.rootfs + "` is not a directory");
  }
  bundle.rootfs = absolute.string();
  bundle.spec_json = oci::SerializeOciSpec(bundle.spec);
  return bundle;
}

// "512M", "1G", "256" (MiB) -> MiB.
Result<uint64_t> ParseMemory(const std::string& text) {
  if (text.empty()) return MakeError(ErrorCode::kInvalidArgument, "--memory: empty");
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0 || digits > 12)
    return MakeError(ErrorCode::kInvalidArgument, "--memory: `" + text + "` is not a size");
  uint64_t value = std::stoull(text.substr(0, digits));
  std::string unit = text.substr(digits);
  if (unit.empty() || unit == "M" || unit == "m" || unit == "MiB") return value;
  if (unit == "G" || unit == "g" || unit == "GiB") return value * 1024;
  return MakeError(ErrorCode::kInvalidArgument,
                   "--memory: unknown unit in `" + text + "` (use M or G)");
}

// Puts the host terminal in raw mode for a --tty session; restores it.
class RawTerminal {
 public:
  RawTerminal() {
    if (::isatty(0) && ::tcgetattr(0, &saved_) == 0) {
      termios raw = saved_;
      ::cfmakeraw(&raw);
      active_ = ::tcsetattr(0, TCSANOW, &raw) == 0;
    }
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(0, TCSANOW, &saved_);
  }

 private:
  termios saved_{};
  bool active_ = false;
};

std::optional<std::pair<uint16_t, uint16_t>> TerminalSize() {
  winsize size{};
  for (int fd : {0, 1}) {
    if (::ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_row > 0)
      return std::make_pair(size.ws_row, size.ws_col);
  }
  return std::nullopt;
}

// Copies one output stream of the container to a host fd.
void PumpOutput(AgentClient& client, const std::string& id, v1::OutputStream stream, int out_fd) {
  grpc::ClientContext context;
  v1::ReadOutputRequest request;
  request.set_container_id(id);
  request.set_stream(stream);
  auto reader = client.agent().ReadOutput(&context, request);
  v1::OutputChunk chunk;
  while (reader->Read(&chunk)) {
    if (!WriteAll(out_fd, chunk.data())) break;  // our reader went away; stop copying
  }
  auto status = reader->Finish();
  if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
    HULL_LOG_WARN("output stream: {}", status.error_message());
  }
}

}  // namespace

int RunContainer(const RunOptions& options) {
  // Signals are taken on one thread (sigwait) and forwarded to the container.
  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGUSR1}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto fail = [](const Error& error, int code = 125) {
    std::fprintf(stderr, "hullctl run: %s\n", error.ToString().c_str());
    return code;
  };
  auto config = LoadConfig(options.config_path);
  if (!config) return fail(config.error());
  if (options.hypervisor) config->hypervisor.backend = *options.hypervisor;
  if (!options.memory.empty()) {
    auto memory = ParseMemory(options.memory);
    if (!memory) return fail(memory.error());
    config->hypervisor.memory_mib = *memory;
  }
  if (options.cpus) config->hypervisor.vcpus = *options.cpus;
  auto bundle = LoadBundle(options);
  if (!bundle) return fail(bundle.error());
  std::string id = options.name.empty() ? "run-" + RandomHex(6) : options.name;
  if (auto valid = ValidateId("container", id); !valid) return fail(valid.error());

  auto claim = RunClaim::Take(config->run_dir, id);
  if (!claim) return fail(claim.error());
  auto opened = Session::Open(*config, id);
  if (!opened) return fail(opened.error());
  std::unique_ptr<Session> session = std::move(*opened);
  auto fail_session = [&](const Error& error, int code = 125) {
    session->Close();
    return fail(error, code);
  };
  bool terminal = bundle->spec.process->terminal;
  v1::ProcessIo io;
  io.set_terminal(terminal);
  io.set_stdin(true);
  io.set_stdout(true);
  io.set_stderr(!terminal);
  if (auto size = TerminalSize(); terminal && size) {
    io.mutable_tty_size()->set_rows(size->first);
    io.mutable_tty_size()->set_columns(size->second);
  }
  if (auto created = session->CreateContainer(id, bundle->spec_json, bundle->rootfs, io);
      !created) {
    return fail_session(created.error());
  }
  AgentClient* client = &session->client();

  std::optional<RawTerminal> raw;
  if (terminal) raw.emplace();
  std::thread stdout_pump([&] { PumpOutput(*client, id, v1::STDOUT, 1); });
  std::thread stderr_pump;
  if (!terminal) stderr_pump = std::thread([&] { PumpOutput(*client, id, v1::STDERR, 2); });

  // stdin: copied until EOF, then the container's stdin is closed.
  UniqueFd stop_stdin(::eventfd(0, EFD_CLOEXEC));
  std::thread stdin_pump([&] {
    grpc::ClientContext context;
    v1::WriteStdinResponse response;
    auto writer = client->agent().WriteStdin(&context, &response);
    v1::WriteStdinRequest chunk;
    chunk.set_container_id(id);
    std::vector<char> buffer(64 * 1024);
    while (true) {
      pollfd fds[2] = {{0, POLLIN, 0}, {stop_stdin.get(), POLLIN, 0}};
      if (RetryEintr([&] { return ::poll(fds, 2, -1); }) < 0 || fds[1].revents != 0) break;
      ssize_t n = RetryEintr([&] { return ::read(0, buffer.data(), buffer.size()); });
      if (n <= 0) break;
      chunk.set_data(buffer.data(), static_cast<size_t>(n));
      if (!writer->Write(chunk)) break;
      chunk.clear_container_id();
    }
    chunk.set_data("");
    chunk.set_close(true);
    writer->Write(chunk);
    writer->WritesDone();
    (void)writer->Finish();
  });

  // Forward signals; resize the tty on SIGWINCH.
  std::atomic<bool> done{false};
  std::atomic<int> interrupts{0};
  std::thread signal_thread([&] {
    while (true) {
      int sig = 0;
      sigwait(&signals, &sig);
      if (done) return;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + seconds(5));
      if (sig == SIGWINCH) {
        auto size = TerminalSize();
        if (!size || !terminal) continue;
        v1::ResizeTtyRequest request;
        request.set_container_id(id);
        request.mutable_size()->set_rows(size->first);
        request.mutable_size()->set_columns(size->second);
        v1::ResizeTtyResponse response;
        (void)client->agent().ResizeTty(&context, request, &response);
        continue;
      }
      if (sig == SIGUSR1) continue;
      // A second interrupt means: stop waiting, kill it.
      int count = ++interrupts;
      v1::SignalProcessRequest request;
      request.set_container_id(id);
      request.set_signal(count > 1 ? SIGKILL : static_cast<uint32_t>(sig));
      request.set_all(count > 1);
      v1::SignalProcessResponse response;
      (void)client->agent().SignalProcess(&context, request, &response);
    }
  });
  auto stop_signal_thread = [&] {
    done = true;
    pthread_kill(signal_thread.native_handle(), SIGUSR1);
    signal_thread.join();
  };

  int exit_code = 0;
  std::optional<Error> start_error;
  {
    grpc::ClientContext context;
    v1::StartContainerRequest request;
    request.set_container_id(id);
    v1::StartContainerResponse response;
    auto status = client->agent().StartContainer(&context, request, &response);
    if (!status.ok()) start_error = ErrorFromGrpc(status, "StartContainer");
  }
  {
    grpc::ClientContext context;
    v1::WaitProcessRequest request;
    request.set_container_id(id);
    v1::WaitProcessResponse response;
    auto status = client->agent().WaitProcess(&context, request, &response);
    if (status.ok()) {
      exit_code = response.exit_status();
    } else {
      start_error = start_error.value_or(ErrorFromGrpc(status, "WaitProcess"));
      exit_code = 125;
    }
  }
  stdout_pump.join();
  if (stderr_pump.joinable()) stderr_pump.join();
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(stop_stdin.get(), &one, sizeof one);
  stdin_pump.join();
  stop_signal_thread();
  raw.reset();
  if (start_error) std::fprintf(stderr, "hullctl run: %s\n", start_error->ToString().c_str());
  session->Close();
  return exit_code;
}

}  // namespace hull::hullctl
