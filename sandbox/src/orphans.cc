#include "hull/sandbox/orphans.h"

#include <dirent.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "hull/core/syscall.h"
#include "hull/sandbox/host_cgroup.h"
#include "hull/sandbox/pod_network.h"

namespace hull::sandbox {

std::vector<pid_t> HelpersOf(const std::string& dir) {
  std::vector<pid_t> pids;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* entry = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || pid == ::getpid()) continue;
    auto cmdline = ReadFile("/proc/" + std::string(entry->d_name) + "/cmdline", 1 << 20);
    if (!cmdline) continue;
    std::replace(cmdline->begin(), cmdline->end(), '\0', ' ');
    if (cmdline->find(dir + "/") == std::string::npos) continue;
    std::error_code ec;
    std::string exe =
        std::filesystem::read_symlink("/proc/" + std::string(entry->d_name) + "/exe", ec)
            .filename()
            .string();
    if (exe.starts_with("qemu-system") || exe.starts_with("virtiofsd"))
      pids.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(proc);
  return pids;
}

std::vector<std::string> RemoveOrphanedSandbox(const std::string& dir) {
  std::vector<std::string> problems;
  for (pid_t pid : HelpersOf(dir)) ::kill(pid, SIGKILL);
  std::vector<std::string> mounts = MountPointsUnder(dir);
  std::reverse(mounts.begin(), mounts.end());  // deepest first
  for (const auto& mount : mounts) {
    if (::umount2(mount.c_str(), MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
      problems.push_back(Error::FromErrno(errno, "unmount " + mount).ToString());
    }
  }
  // A pod's tap for libvirt, if the crash left it in the host's netns.
  if (auto tap = ReadFile(dir + "/" + kHostTapRecord, 64); tap && IsHostTapName(*tap)) {
    if (auto removed = RemoveHostTap(*tap); !removed)
      problems.push_back(removed.error().ToString());
  }
  // The pod's host cgroup: removed once the killed QEMU has left it.
  if (auto cgroup = HostCgroup::FromRecord(dir + "/" + kHostCgroupRecord); cgroup) {
    cgroup->Remove();
  } else if (cgroup.error().code() != ErrorCode::kNotFound) {
    problems.push_back(cgroup.error().ToString());
  }
  if (auto removed = RemoveTree(dir); !removed) problems.push_back(removed.error().ToString());
  return problems;
}

}  // namespace hull::sandbox
