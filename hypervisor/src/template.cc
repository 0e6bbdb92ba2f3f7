#include "hull/hypervisor/template.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "hull/core/guest_contract.h"
#include "hull/core/ids.h"
#include "hull/core/log.h"
#include "hull/core/syscall.h"
#include "hull/core/text.h"
#include "hull/hypervisor/kernel_cmdline.h"

namespace hull {

namespace {

constexpr size_t kMaxKeyBytes = 64 << 10;

// "path size mtime-ns inode": changes whenever the file is rewritten.
Result<std::string> FileIdentity(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) < 0) return ErrnoError("stat " + path);
  return path + " " + std::to_string(st.st_size) + " " +
         std::to_string(static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec) +
         " " + std::to_string(st.st_ino);
}

bool IsRegularFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* entry = ::readdir(d)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// Moves `path` out of the way under a name nobody looks up, then deletes it:
// a reader sees the template whole or not at all.
void RemoveAside(const std::string& path, const std::string& why) {
  std::string aside = path + ".gone-" + std::to_string(::getpid());
  if (::rename(path.c_str(), aside.c_str()) < 0) {
    if (errno != ENOENT) HULL_LOG_WARN("template {}: {}: {}", path, why, std::strerror(errno));
    return;
  }
  if (auto removed = RemoveTree(aside); !removed) {
    HULL_LOG_WARN("template {}: {}", path, removed.error().ToString());
  }
}

// An exclusive, non-blocking flock on <root>/<name>.lock; an invalid fd if
// another process holds it. The lock file may be unlinked by a remover
// between our open and our flock: a lock on an unlinked file excludes
// nobody, so check that the path still names it, and retry.
Result<UniqueFd> TryLock(const std::string& root, const std::string& name) {
  std::string path = root + "/" + name + ".lock";
  for (int attempt = 0; attempt < 16; ++attempt) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return ErrnoError("open " + path);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) < 0) {
      if (errno == EWOULDBLOCK) return UniqueFd();
      return ErrnoError("lock " + path);
    }
    struct stat held {
    }, named{};
    if (::fstat(fd.get(), &held) == 0 && ::stat(path.c_str(), &named) == 0 &&
        held.st_ino == named.st_ino && held.st_dev == named.st_dev) {
      return fd;
    }
  }
  return MakeError(ErrorCode::kAborted, "lock " + path + ": the file kept disappearing");
}

// Whether `entry` is a name the store made: <name>, <name>.lock,
// <name>.new-<pid>, <name>.gone-<pid>, <name>.failed or template-<name>, with
// <name> 16 hex digits. Nothing else in the directory is ever touched.
bool IsStoreEntry(const std::string& entry, std::string* name) {
  std::string_view rest = entry;
  if (rest.starts_with("template-")) rest.remove_prefix(9);
  if (rest.size() < 16) return false;
  for (char c : rest.substr(0, 16)) {
    if (!std::isxdigit(static_cast<unsigned char>(c)) ||
        std::isupper(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  std::string_view suffix = rest.substr(16);
  bool ok = suffix.empty() || suffix == ".lock" || suffix == ".failed" ||
            suffix.starts_with(".new-") || suffix.starts_with(".gone-");
  if (entry.starts_with("template-") && !suffix.empty()) ok = false;
  if (ok && name != nullptr) *name = std::string(rest.substr(0, 16));
  return ok;
}

// Which build of a template `dir` holds (a random id each build writes:
// inode numbers are reused once a directory is gone).
std::string BuildId(const std::string& dir) { return ReadFile(dir + "/build", 64).value_or(""); }

// Whether every file a key names (hypervisor, kernel, initrd, root image) is still the
// file it was when the key was made.
bool AssetsUnchanged(const std::string& key) {
  for (const auto& line : SplitLines(key)) {
    for (const char* name : {"hypervisor=", "kernel=", "initrd=", "root_image="}) {
      if (!line.starts_with(name)) continue;
      std::string_view identity = std::string_view(line).substr(std::strlen(name));
      // "path size mtime inode": the path is everything before the last three fields.
      size_t cut = identity.size();
      for (int field = 0; field < 3 && cut != std::string_view::npos; ++field) {
        cut = identity.rfind(' ', cut - 1);
      }
      if (cut == std::string_view::npos) return false;
      auto now = FileIdentity(std::string(identity.substr(0, cut)));
      if (!now || *now != identity) return false;
    }
  }
  return true;
}

}  // namespace

std::string TemplateRoot(const Config& config) {
  return config.hypervisor.template_dir.empty() ? config.run_dir + "/.templates"
                                                : config.hypervisor.template_dir;
}

std::string TemplateIneligibility(const VmConfig& config) {
  if (config.machine != "q35") {
    return "machine `" + config.machine + "` has no PCIe root ports to plug a clone's devices into";
  }
  if (config.transport != TransportKind::kSerial) {
    return "the " + std::string(TransportName(config.transport)) +
           " transport is not restored from templates (only serial is)";
  }
  return "";
}

Result<uint64_t> PunchZeroPages(int fd) {
  constexpr size_t kPage = 4096;
  constexpr size_t kChunk = 256 * kPage;
  static const char kZeroPage[kPage] = {};
  struct stat st {};
  if (::fstat(fd, &st) < 0) return ErrnoError("stat");
  const off_t size = st.st_size;
  std::vector<char> buffer(kChunk);
  uint64_t punched = 0;
  off_t run_start = -1;  // the zero pages not yet punched: [run_start, run_end)
  off_t run_end = -1;
  auto punch = [&]() -> Status {
    if (run_start < 0) return Ok();
    if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, run_start,
                    run_end - run_start) < 0) {
      return ErrnoError("punch a hole");
    }
    punched += static_cast<uint64_t>(run_end - run_start);
    run_start = run_end = -1;
    return Ok();
  };
  off_t offset = 0;
  while (offset < size) {
    off_t data = ::lseek(fd, offset, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;
      return ErrnoError("seek data");
    }
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return ErrnoError("seek hole");
    for (off_t at = data; at < hole;) {
      const size_t want = static_cast<size_t>(std::min<off_t>(kChunk, hole - at));
      ssize_t n = RetryEintr([&] { return ::pread(fd, buffer.data(), want, at); });
      if (n < 0) return ErrnoError("read");
      if (n == 0) break;
      for (ssize_t page = 0; page < n; page += kPage) {
        const size_t len = std::min<size_t>(kPage, static_cast<size_t>(n - page));
        const off_t page_at = at + page;
        if (len == kPage && std::memcmp(buffer.data() + page, kZeroPage, kPage) == 0) {
          if (run_start >= 0 && run_end == page_at) {
            run_end += kPage;
          } else {
            HULL_CHECK_OK(punch(), "drop zero pages");
            run_start = page_at;
            run_end = page_at + kPage;
          }
        }
      }
      at += n;
    }
    offset = hole;
  }
  HULL_CHECK_OK(punch(), "drop zero pages");
  return punched;
}

Result<std::string> TemplateKey(const VmConfig& config) {
  std::string key = "format=1\n";
  for (const auto& [name, path] :
       {std::pair<const char*, const std::string*>{"hypervisor", &config.hypervisor_path},
        {"kernel", &config.kernel},
        {"initrd", &config.initrd},
        {"root_image", &config.root_image}}) {
    if (path->empty()) continue;  // no root image
    HULL_TRY(std::string identity, FileIdentity(*path), "template key");
    key += std::string(name) + "=" + identity + "\n";
  }
  if (config.accel == Accel::kKvm) {
    // `-cpu host`: the guest sees this host's CPU features, and a restore on
    // a CPU without one of them crashes the guest. TCG's `max` is QEMU's own.
    auto cpuinfo = ReadFile("/proc/cpuinfo", 4 << 20);
    std::string flags;
    if (cpuinfo) {
      for (auto line : SplitLines(*cpuinfo)) {
        if (line.starts_with("flags")) {
          flags = std::string(line);
          break;
        }
      }
    }
    key += "host_cpu=" + TemplateName(flags) + "\n";
  }
  key += "machine=" + config.machine + "\n";
  key += "accel=" + std::string(AccelName(config.accel)) + "\n";
  key += "vcpus=" + std::to_string(config.vcpus) + "\n";
  key += "memory_mib=" + std::to_string(config.memory_mib) + "\n";
  key += "transport=" + std::string(TransportName(config.transport)) + "\n";
  key += "cmdline=" + VmKernelCmdline(config, guest::kRootDevicePmem) + "\n";
  key += "seccomp_sandbox=" + std::to_string(config.seccomp_sandbox) + "\n";
  key += "free_page_reporting=" + std::to_string(config.free_page_reporting) + "\n";
  return key;
}

std::string TemplateName(std::string_view key) {
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a, 64 bit
  for (unsigned char c : key) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

std::optional<TemplateRef> TemplateStore::Find(const std::string& key) const {
  TemplateRef ref{key, TemplateName(key), ""};
  ref.dir = root_ + "/" + ref.name;
  auto stored = ReadFile(ref.dir + "/key", kMaxKeyBytes);
  if (!stored || *stored != key) return std::nullopt;
  if (!IsRegularFile(ref.dir + "/memory") || !IsRegularFile(ref.dir + "/state")) {
    return std::nullopt;
  }
  ref.build = BuildId(ref.dir);
  return ref;
}

Result<TemplateRef> TemplateStore::Build(
    const std::string& key, const std::function<Status(const std::string& dir)>& save) {
  const std::string name = TemplateName(key);
  const std::string what = "build template " + name;
  if (!PathExists(root_)) HULL_CHECK_OK(MakeDirs(root_, 0700), what);
  HULL_TRY(UniqueFd lock, TryLock(root_, name), what);
  if (!lock) {
    return MakeError(ErrorCode::kUnavailable, what + ": another process is building it");
  }
  if (auto ready = Find(key)) return *ready;
  // A new guest image or QEMU makes the templates of the old ones useless.
  for (const auto& stale : RemoveStale()) HULL_LOG_INFO("removed stale template {}", stale);
  if (List().size() >= kMaxTemplates) {
    return MakeError(ErrorCode::kResourceExhausted,
                     what + ": " + root_ + " holds " + std::to_string(kMaxTemplates) +
                         " templates already (`hullctl gc --templates` removes them)");
  }
  // Leftovers of a builder that died (we hold the lock: nobody else builds):
  // its staging directory and its template VM's state directory.
  for (const auto& entry : DirEntries(root_)) {
    if (entry.rfind(name + ".new-", 0) == 0 || entry == "template-" + name) {
      RemoveAside(root_ + "/" + entry, "leftover");
    }
  }
  const std::string staging = root_ + "/" + name + ".new-" + std::to_string(::getpid());
  if (::mkdir(staging.c_str(), 0700) < 0) return ErrnoError(what + ": create " + staging);
  ScopeExit remove_staging([&] { (void)RemoveTree(staging); });
  if (auto saved = save(staging); !saved) {
    // Remembered, so that sandboxes do not each boot another doomed build.
    (void)WriteFile(root_ + "/" + name + ".failed", saved.error().ToString(), 0600);
    return std::move(saved).error().Wrap(what);
  }
  const std::string build = RandomHex(8);
  HULL_CHECK_OK(WriteFile(staging + "/build", build, 0600), what);
  HULL_CHECK_OK(WriteFile(staging + "/key", key, 0600), what);
  const std::string final_dir = root_ + "/" + name;
  RemoveAside(final_dir, "replace");  // built from another key, or incomplete
  if (::rename(staging.c_str(), final_dir.c_str()) < 0) {
    return ErrnoError(what + ": rename " + staging + " to " + final_dir);
  }
  remove_staging.Dismiss();
  (void)::unlink((root_ + "/" + name + ".failed").c_str());
  return TemplateRef{key, name, final_dir, build};
}

void TemplateStore::Invalidate(const TemplateRef& ref) {
  // Under the builder's lock, and only the build `ref` names: a template
  // rebuilt since (after another sandbox's failure) is not this one.
  auto lock = TryLock(root_, ref.name);
  if (!lock || !*lock) return;  // a builder is replacing it anyway
  const std::string dir = root_ + "/" + ref.name;
  if (!ref.build.empty() && BuildId(dir) == ref.build) RemoveAside(dir, "invalidate");
}

bool TemplateStore::RecentlyFailed(const std::string& key, std::chrono::seconds within) const {
  struct stat st {};
  if (::stat((root_ + "/" + TemplateName(key) + ".failed").c_str(), &st) < 0) return false;
  auto age =
      std::chrono::system_clock::now() - std::chrono::system_clock::from_time_t(st.st_mtim.tv_sec);
  return age < within;
}

std::vector<std::string> TemplateStore::RemoveAllBut(const std::vector<std::string>& keep) {
  std::vector<std::string> removed;
  for (const auto& entry : DirEntries(root_)) {
    std::string name;
    if (!IsStoreEntry(entry, &name)) continue;  // not ours: never touched
    const bool kept = std::find(keep.begin(), keep.end(), name) != keep.end();
    if (kept && (entry == name || entry == name + ".lock")) continue;
    auto lock = TryLock(root_, name);
    if (!lock || !*lock) continue;  // a builder is at work on it
    if (entry == name + ".lock") {
      if (!kept) (void)::unlink((root_ + "/" + entry).c_str());
      continue;
    }
    RemoveAside(root_ + "/" + entry, "remove");
    if (entry == name) removed.push_back(name);
    if (!kept) (void)::unlink((root_ + "/" + name + ".lock").c_str());
  }
  return removed;
}

std::vector<std::string> TemplateStore::RemoveStale() {
  std::vector<std::string> keep;
  for (const auto& name : List()) {
    auto key = ReadFile(root_ + "/" + name + "/key", kMaxKeyBytes);
    if (key && TemplateName(*key) == name && AssetsUnchanged(*key)) keep.push_back(name);
  }
  return RemoveAllBut(keep);
}

std::vector<std::string> TemplateStore::List() const {
  std::vector<std::string> names;
  for (const auto& entry : DirEntries(root_)) {
    std::string name;
    if (IsStoreEntry(entry, &name) && name == entry &&
        IsRegularFile(root_ + "/" + entry + "/key")) {
      names.push_back(entry);
    }
  }
  return names;
}

VmConfig TemplateVmConfig(const VmConfig& config, const std::string& root,
                          const std::string& name) {
  VmConfig vm = config;
  vm.id = "template-" + name;
  vm.run_dir = root;
  vm.shared_dir.clear();
  vm.share_dir = false;
  vm.network = {};
  vm.host_cgroup_dirs.clear();
  vm.clone_of.clear();
  // Freed pages are zeroed when freed instead of when allocated (the kernel
  // skips init_on_alloc under init_on_free): the same work, moved, but what
  // boot used and freed is zero by the save and punched out of the RAM file
  // (PunchZeroPages), so every clone copies less. Only the template boots
  // with it (its clones inherit it): on a cold boot it would zero all of
  // guest RAM at start.
  vm.extra_kernel_params += vm.extra_kernel_params.empty() ? "" : " ";
  vm.extra_kernel_params += kTemplateKernelParams;
  return vm;
}

}  // namespace hull
