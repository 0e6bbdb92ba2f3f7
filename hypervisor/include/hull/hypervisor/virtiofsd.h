// virtiofsd supervision: one virtio-fs daemon per VM, serving one host
// directory to the guest over a vhost-user socket. See docs/design/virtio-fs.md.
//
// hull targets the C virtiofsd of QEMU 7.2 (Debian: /usr/lib/qemu/virtiofsd in
// qemu-system-common). Facts about it that shape this class:
//  - It serves exactly one vhost-user connection: it accepts once, closes its
//    listening socket, and exits (code 0) when that connection closes, i.e.
//    when QEMU exits. Connecting to "check" the socket would use it up.
//  - Given --socket-path it writes a pid file under /run/virtiofsd/ that it
//    never removes. hull therefore binds and listens on the socket itself and
//    hands it over with --fd=N: the socket accepts (into the backlog) before
//    virtiofsd even runs, so QEMU never races it, and nothing is left outside
//    the VM's state directory.
//  - With -o sandbox=namespace (its default) it forks after QEMU connects: the
//    worker runs in new mount/pid/net namespaces, pivoted into the shared
//    directory, and gets SIGTERM when the process hull started dies. Its
//    mounts are slave copies of hull's taken at that moment, so for mounts
//    made under the shared directory later to reach the guest, hull makes the
//    directory a shared mount (a bind onto itself) for virtiofsd's lifetime.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hull/core/error.h"
#include "hull/core/process.h"

namespace hull {

inline constexpr char kDefaultVirtiofsdPath[] = "/usr/lib/qemu/virtiofsd";

// virtiofsd's -o cache=: how long the guest may trust what it cached.
enum class VirtiofsCache {
  kAuto,    // metadata and dentries cached for 1 s; file data until the file changes
  kAlways,  // cached for a day: fastest, blind to changes made on the host
  kNone,    // nothing cached, direct I/O: always coherent, slowest
};
std::string_view VirtiofsCacheName(VirtiofsCache cache);  // "auto", "always", "none"
Result<VirtiofsCache> ParseVirtiofsCache(std::string_view name);

// virtiofsd's -o sandbox=: how it confines itself to the shared directory.
enum class VirtiofsdSandbox {
  kNamespace,  // new mount/pid/net namespaces + pivot_root (needs root / CAP_SYS_ADMIN)
  kChroot,     // chroot(2) only: for hosts where hull itself runs in a container
};
std::string_view VirtiofsdSandboxName(VirtiofsdSandbox sandbox);  // "namespace", "chroot"
Result<VirtiofsdSandbox> ParseVirtiofsdSandbox(std::string_view name);

struct VirtiofsdOptions {
  std::string binary = kDefaultVirtiofsdPath;
  std::string shared_dir;   // absolute path of an existing directory: all the guest can reach
  std::string socket_path;  // vhost-user socket hull creates: <state_dir>/virtiofsd.sock
  std::string log_path;     // virtiofsd's stdout and stderr: <state_dir>/virtiofsd.log
  VirtiofsCache cache = VirtiofsCache::kAuto;
  VirtiofsdSandbox sandbox = VirtiofsdSandbox::kNamespace;
  std::vector<std::string> extra_args;  // appended last, e.g. {"-o", "xattr"}
  // cgroup.procs files it starts in (the pod's host cgroup, with its QEMU).
  std::vector<std::string> cgroup_procs;
  // How long virtiofsd gets to reach the point where it waits for QEMU.
  std::chrono::milliseconds startup_timeout{5000};
  // Non-zero when hull made `shared_dir` for this VM (empty): a tmpfs of this
  // size is mounted on it (see SharedMount), bounding what the guest can
  // write at the share's top level -- everything else there is a bind.
  uint64_t share_root_bytes = 0;
};

// The size of the share's root when hull owns it: room for the directories
// the binds hang on, nothing more.
inline constexpr uint64_t kShareRootBytes = 4 << 20;

// A directory bind-mounted onto itself as a shared mount in a peer group of
// its own, for as long as the object lives. virtiofsd's namespace sandbox
// copies the mounts it sees once, when QEMU connects, and makes its copies
// slaves: mounts made under the shared directory later (a container's root
// filesystem for a VM that is already running) reach it only if the directory
// is a shared mount, and the host's / often is not (it is private inside
// containers). Move-only; destroying it detaches the bind, and with it what
// was mounted through it.
class SharedMount {
 public:
  enum class Propagation {
    // A peer group of its own: virtiofsd runs in hull's mount namespace.
    kOwnPeerGroup,
    // Stays in the peer group the bind inherits from its parent mount, so it
    // also reaches mount namespaces that are slaves of hull's (a libvirtd in
    // its own namespace, which starts virtiofsd there).
    kInherit,
  };
  // With `tmpfs_bytes` non-zero, `dir` (empty, hull's own) gets a new tmpfs
  // of that size instead of a bind of itself: what the guest writes there
  // lands in bounded memory, not in the filesystem below (the host's /run).
  // Either mount is nosuid,nodev.
  static Result<SharedMount> Bind(const std::string& dir,
                                  Propagation propagation = Propagation::kOwnPeerGroup,
                                  uint64_t tmpfs_bytes = 0);

  SharedMount(SharedMount&& other) noexcept;
  SharedMount& operator=(SharedMount&& other) noexcept;
  SharedMount(const SharedMount&) = delete;
  SharedMount& operator=(const SharedMount&) = delete;
  ~SharedMount();

  const std::string& dir() const { return dir_; }
  // Detaches the bind now (a warning if that fails); idempotent.
  void Release();

 private:
  explicit SharedMount(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;  // "" once released or moved from
};

// The virtiofsd command line for `options` when the listening socket is
// inherited as `listen_fd`. Pure; checked by unit tests.
std::vector<std::string> BuildVirtiofsdArgv(const VirtiofsdOptions& options, int listen_fd);

// One running virtiofsd. Move-only; destroying it stops it (Stop with a short
// grace), so a virtiofsd never outlives its owner by accident. Not
// thread-safe: one owner drives it (the VM's monitor thread may only poll
// pidfd() and call Reap()).
class Virtiofsd {
 public:
  // Validates `options` (shared_dir absolute and a directory, binary
  // executable, socket path free); with the namespace sandbox, bind-mounts
  // shared_dir onto itself (recursively) as a shared mount in a peer group of
  // its own, so later mounts under it propagate to virtiofsd; creates and
  // listens on the socket, spawns virtiofsd with it, and waits until virtiofsd
  // waits for QEMU's connection.
  // Errors name what is wrong: the directory, the binary, or virtiofsd's own
  // last log lines when it exits or hangs during startup. On error nothing is
  // left: no process, no socket (the log file stays for the caller to read or
  // remove with its directory).
  static Result<Virtiofsd> Start(const VirtiofsdOptions& options);

  Virtiofsd(Virtiofsd&& other) noexcept;
  Virtiofsd& operator=(Virtiofsd&& other) noexcept;
  Virtiofsd(const Virtiofsd&) = delete;
  Virtiofsd& operator=(const Virtiofsd&) = delete;
  ~Virtiofsd();

  pid_t pid() const { return child_.pid(); }
  // Readable once the virtiofsd process has exited (for poll loops).
  int pidfd() const { return child_.pidfd(); }
  const VirtiofsdOptions& options() const { return options_; }

  // Reaps virtiofsd if it has exited; nullopt while it runs.
  std::optional<ExitStatus> Reap();

  // The end of virtiofsd's log, for error messages ("" if empty).
  std::string LogTail(size_t max_bytes = 2000) const;

  // Stops virtiofsd: waits up to `grace` for it to exit by itself (it does
  // once QEMU has disconnected), then SIGTERM, up to `grace` more, SIGKILL.
  // Also ends its namespace-sandbox worker, always reaps, removes the socket,
  // and detaches the shared directory's bind mount (MNT_DETACH: with whatever
  // was mounted through it). Idempotent: later calls return the same status.
  ExitStatus Stop(std::chrono::milliseconds grace);

 private:
  Virtiofsd(VirtiofsdOptions options, Child child, std::optional<SharedMount> mount)
      : options_(std::move(options)),
        child_(std::move(child)),
        active_(true),
        mount_(std::move(mount)) {}

  VirtiofsdOptions options_;
  Child child_;
  bool active_ = false;               // false once moved from or stopped
  std::optional<SharedMount> mount_;  // the namespace sandbox's bind of shared_dir
  std::optional<ExitStatus> stopped_status_;
};

}  // namespace hull
