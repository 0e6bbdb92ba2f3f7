// hullctl run: one OCI bundle in a fresh microVM, stdio attached, the
// container's exit status as ours, and nothing left behind.
#include <fcntl.h>
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

#include "commands.h"
#include "hull/core/ids.h"
#include "hull/core/log.h"
#include "hull/core/oci_spec.h"
#include "hull/core/syscall.h"
#include "hull/core/thread.h"
#include "hull/hypervisor/hypervisor.h"
#include "hull/sandbox/io_pump.h"
#include "hull/sandbox/sandbox.h"

namespace hull::hullctl {

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

}  // namespace

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

namespace {

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
  auto opened = sandbox::Sandbox::Open(*config, id);
  if (!opened) return fail(opened.error());
  std::unique_ptr<sandbox::Sandbox> session = std::move(*opened);
  auto fail_session = [&](const Error& error, int code = 125) {
    session->Close();
    return fail(error, code);
  };
  bool terminal = bundle->spec.process->terminal;
  sandbox::StdioSetup stdio{
      .terminal = terminal, .stdin = true, .stdout = true, .stderr = !terminal};
  if (auto size = TerminalSize(); terminal && size) stdio.tty_size = {size->first, size->second};
  if (auto created = session->CreateContainer(id, bundle->spec_json, bundle->rootfs, stdio);
      !created) {
    return fail_session(created.error());
  }
  sandbox::AgentApi& agent = session->agent();
  const sandbox::ProcessRef init{id, ""};

  std::optional<RawTerminal> raw;
  if (terminal) raw.emplace();
  sandbox::Cancellation cancel_output;
  auto copy_to = [&](sandbox::OutputStream stream, int fd) {
    return SpawnThread("output", [&, stream, fd] {
      // Once our reader is gone the rest is dropped; the container goes on.
      auto ended =
          sandbox::PumpOutput(agent, init, stream, cancel_output,
                              [fd](std::string_view data) { return !!WriteAll(fd, data); });
      if (!ended && ended.error().code() != ErrorCode::kCancelled) {
        HULL_LOG_WARN("output stream: {}", ended.error().ToString());
      }
    });
  };
  std::thread stdout_pump = copy_to(sandbox::OutputStream::kStdout, 1);
  std::thread stderr_pump;
  if (!terminal) stderr_pump = copy_to(sandbox::OutputStream::kStderr, 2);
  // stdin: copied until EOF, then the container's stdin is closed.
  auto stdin_pump = sandbox::StdinPump::Start(agent, init, 0);
  if (!stdin_pump) return fail_session(stdin_pump.error());

  // Forward signals; resize the tty on SIGWINCH.
  std::atomic<bool> done{false};
  std::atomic<int> interrupts{0};
  std::thread signal_thread = SpawnThread("signals", [&] {
    while (true) {
      int sig = 0;
      sigwait(&signals, &sig);
      if (done) return;
      if (sig == SIGWINCH) {
        auto size = TerminalSize();
        if (!size || !terminal) continue;
        (void)agent.ResizeTty(init, {size->first, size->second});
        continue;
      }
      if (sig == SIGUSR1) continue;
      // A second interrupt means: stop waiting, kill it.
      int count = ++interrupts;
      (void)agent.SignalProcess(init, count > 1 ? SIGKILL : static_cast<uint32_t>(sig), count > 1);
    }
  });
  auto stop_signal_thread = [&] {
    done = true;
    pthread_kill(signal_thread.native_handle(), SIGUSR1);
    signal_thread.join();
  };

  int exit_code = 0;
  std::optional<Error> start_error;
  if (auto started = agent.StartContainer(id); !started) start_error = started.error();
  sandbox::Cancellation never;
  if (auto waited = agent.WaitProcess(init, never); waited) {
    exit_code = static_cast<int>(waited->exit_status);
  } else {
    start_error = start_error.value_or(waited.error());
    exit_code = 125;
  }
  stdout_pump.join();
  if (stderr_pump.joinable()) stderr_pump.join();
  stdin_pump->reset();  // the container is gone: stop copying
  stop_signal_thread();
  raw.reset();
  if (start_error) std::fprintf(stderr, "hullctl run: %s\n", start_error->ToString().c_str());
  session->Close();
  return exit_code;
}

}  // namespace hull::hullctl
