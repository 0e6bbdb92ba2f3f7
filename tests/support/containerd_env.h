// A private containerd for tests: its own root, state, sockets and config in a
// temp dir, driven through `ctr`, with checks for anything a test leaves behind.
//
// Nothing here touches the system containerd (/run/containerd/containerd.sock,
// /var/lib/containerd). Two things containerd and ctr put outside the temp dir
// are accounted for: runc's state (/run/containerd/runc/<ns>/<id>) and ctr's
// FIFOs (/run/containerd/fifo/<random>/<id>-stdout...). Containers and execs
// named through Id() carry a per-instance tag, so leftovers of this instance can
// be told apart from anyone else's.
//
// What counts as a leftover was calibrated against runc: after `ctr task rm` and
// `ctr containers rm`, containerd 1.6.20 with runc leaves no mount under the temp
// dir (the overlay snapshotter mounts only the task's rootfs, and unmounts it on
// delete) and no process besides containerd itself, so nothing is exempt.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "hull/core/error.h"

namespace hull::testing {

inline constexpr char kContainerd[] = "/usr/bin/containerd";
inline constexpr char kCtr[] = "/usr/bin/ctr";

struct CommandResult {
  int code = -1;           // exit code, 128+signal for a signal death, -1 if it never ran
  std::string out;         // stdout (for a pty run: everything the terminal showed)
  std::string err;         // stderr
  bool timed_out = false;  // killed because it overran its timeout

  // "exit 3 [timed out]\n--- stdout ---\n...\n--- stderr ---\n..." (long output cut).
  std::string Describe() const;
};

// Runs argv (argv[0] an absolute path) in a new process group with `stdin_data`
// on stdin (then EOF), capturing stdout and stderr concurrently, so neither side
// can block the other. On timeout the whole process group is SIGKILLed.
// `env` replaces the environment when non-empty.
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& stdin_data,
                         std::chrono::milliseconds timeout,
                         const std::vector<std::string>& env = {});

// Runs argv with a new pty (80x24) as its controlling terminal and stdio; `out`
// is everything written to the terminal. Nothing is typed into it.
CommandResult RunCommandOnPty(const std::vector<std::string>& argv,
                              std::chrono::milliseconds timeout);

class PrivateContainerd {
 public:
  struct Options {
    // Prepended to containerd's PATH, so it finds containerd-shim-hull-v2 there.
    std::string bin_dir;
    // containerd --log-level; "debug" also makes containerd pass -debug to shims
    // and copy their log FIFO into its own log.
    std::string log_level = "debug";
    // With the CRI plugin (off by default: ctr needs none of it): runtime
    // handlers `runc`, `hull` (the shim with hull.toml as ConfigPath) and
    // each of `hull_handlers` (ConfigPath handler_config(name), which the
    // caller writes), a
    // CNI bridge of this instance's own (Debian's containernetworking-plugins
    // in /usr/lib/cni), and `sandbox_image` as the pods' pause image. The
    // namespace for ctr becomes k8s.io, CRI's.
    bool cri = false;
    std::vector<std::string> hull_handlers = {"hull-libvirt"};
    // With CRI: the CNI bridge hands out an IPv6 /64 too (pod_subnet6()).
    bool dual_stack = false;
    std::string sandbox_image = "docker.io/hull-test/pause:latest";
  };

  // Creates the temp dir (short, under /tmp: socket paths must stay < 108 bytes),
  // writes config.toml and hull.toml, starts containerd and waits until it answers.
  static Result<std::unique_ptr<PrivateContainerd>> Start(const Options& options);

  // Removes every task and container (through ctr), stops containerd, kills any
  // process still naming the temp dir, unmounts what is left under it and
  // removes it.
  ~PrivateContainerd();
  PrivateContainerd(const PrivateContainerd&) = delete;
  PrivateContainerd& operator=(const PrivateContainerd&) = delete;

  const std::string& dir() const { return dir_; }
  std::string socket() const { return dir_ + "/c.sock"; }
  // The run_dir of hull.toml ($HULL_CONFIG): all of hull's host state.
  std::string hull_run_dir() const { return dir_ + "/hull"; }
  std::string hull_config() const { return dir_ + "/hull.toml"; }
  // The ConfigPath of CRI runtime handler `name` (Options::hull_handlers).
  std::string handler_config(const std::string& name) const { return dir_ + "/" + name + ".toml"; }
  // ctr's namespace: "default", or "k8s.io" with CRI.
  std::string ns() const { return options_.cri ? "k8s.io" : "default"; }
  // With CRI: the CNI bridge device and its /24 (10.<a>.<b>.0/24).
  std::string bridge() const { return "hbr" + tag_; }
  const std::string& pod_subnet() const { return subnet_; }
  const std::string& pod_subnet6() const { return subnet6_; }
  pid_t pid() const { return pid_; }
  // A container id unique to this instance: "<name>-<tag>".
  std::string Id(const std::string& name) const { return name + "-" + tag_; }

  // `ctr --address <sock> -n <default|k8s.io> ARGS...`; ctr is killed after `timeout`.
  CommandResult Ctr(const std::vector<std::string>& args, const std::string& stdin_data = "",
                    std::chrono::milliseconds timeout = std::chrono::seconds(120));
  // The same, with ctr on a pty (for -t).
  CommandResult CtrOnPty(const std::vector<std::string>& args,
                         std::chrono::milliseconds timeout = std::chrono::seconds(120));
  Status ImportImage(const std::string& archive);
  // The STATUS column of `ctr task ls` for `id` (RUNNING, PAUSED, STOPPED, ...),
  // or "" when there is no such task.
  std::string TaskStatus(const std::string& id);

  // The shim process serving task `id` (its argv has `containerd-shim-` and
  // `-id <id>`), or 0.
  pid_t ShimPid(const std::string& id) const;

  // SIGKILL, as a crash: shims and containers live on.
  void Kill();
  // Starts containerd again with the same dirs and config.
  Status Restart();
  // SIGTERM, then SIGKILL after 10 s.
  Status Stop();
  bool running() const { return pid_ > 0; }

  // The last `lines` lines of containerd's log (with the shims' logs in debug).
  std::string LogTail(size_t lines = 60) const;

  // Leftover checks. Each returns one human-readable line per leftover.
  // Processes other than containerd whose cmdline or cwd names the temp dir
  // (shims, qemu, virtiofsd, runc), or that run in a cgroup of a tagged container.
  std::vector<std::string> LeftoverProcesses() const;
  // Mounts (in our mount namespace) whose mount point or source/options name the temp dir.
  std::vector<std::string> LeftoverMounts() const;
  // Entries under hull_run_dir(), task bundles in containerd's state dir, and
  // runc state dirs and ctr FIFOs of tagged ids.
  std::vector<std::string> LeftoverState() const;
  // Polls all three until they are empty or `timeout` passes (a shim takes a
  // moment to exit after the last delete). Returns "" when clean, else a report.
  std::string WaitForNoLeftovers(
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

 private:
  PrivateContainerd(std::string dir, Options options);
  Status Launch();
  void RemoveAllTasks();

  std::string dir_;
  Options options_;
  std::string tag_;
  std::string subnet_;
  std::string subnet6_;
  pid_t pid_ = -1;
};

}  // namespace hull::testing
