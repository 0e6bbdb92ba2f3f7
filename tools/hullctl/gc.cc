// hullctl's claim on its VMs and `hullctl gc`. A `hullctl run` or `vm ping`
// holds an exclusive flock on <run_dir>/<id>.owner for as long as it lives;
// the kernel drops it when the process dies, however it dies. gc takes every
// owner file whose lock it can get: that VM's owner is gone, and what it
// left (a QEMU, virtiofsd, mounts, the state directory) is removed.
// Directories without an owner file (a shim's sandboxes) are not hullctl's
// and are never touched.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "commands.h"
#include "hull/core/ids.h"
#include "hull/core/syscall.h"
#include "hull/hypervisor/template.h"
#include "hull/sandbox/orphans.h"

namespace hull::hullctl {

namespace {

constexpr char kOwnerSuffix[] = ".owner";

// The fd still names the file at `path` (gc did not unlink it meanwhile).
bool StillLinked(int fd, const std::string& path) {
  struct stat by_fd {
  }, by_path{};
  return ::fstat(fd, &by_fd) == 0 && ::stat(path.c_str(), &by_path) == 0 &&
         by_fd.st_ino == by_path.st_ino && by_fd.st_dev == by_path.st_dev;
}

}  // namespace

Result<RunClaim> RunClaim::Take(const std::string& run_dir, const std::string& id) {
  const std::string what = "claim `" + id + "` in " + run_dir;
  HULL_CHECK_OK(MakeDirs(run_dir, 0711), what);
  const std::string path = run_dir + "/" + id + kOwnerSuffix;
  for (int attempt = 0; attempt < 10; ++attempt) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) return ErrnoError(what + ": open " + path);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) < 0) {
      if (errno == EWOULDBLOCK) {
        return MakeError(ErrorCode::kAlreadyExists, what + ": another hullctl uses that name");
      }
      return ErrnoError(what + ": lock " + path);
    }
    if (!StillLinked(fd.get(), path)) continue;  // gc removed it just now: take a fresh one
    if (PathExists(run_dir + "/" + id)) {
      // A dead run of the same name left its directory: gc's to remove.
      return MakeError(
          ErrorCode::kAlreadyExists,
          what + ": " + run_dir + "/" + id + " is left from an earlier run (run `hullctl gc`)");
    }
    return RunClaim(path, std::move(fd));
  }
  return MakeError(ErrorCode::kAborted, what + ": the owner file kept disappearing");
}

RunClaim::~RunClaim() {
  if (fd_) ::unlink(path_.c_str());  // the VM is gone: nothing left to collect
}

int RunGc(const GcOptions& options) {
  auto config = LoadConfig(options.config_path);
  if (!config) {
    std::fprintf(stderr, "hullctl gc: %s\n", config.error().ToString().c_str());
    return 2;
  }
  const std::string& run_dir = config->run_dir;
  std::error_code ec;
  int removed = 0, live = 0, failed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(run_dir, ec)) {
    std::string name = entry.path().filename();
    if (!name.ends_with(kOwnerSuffix)) continue;
    std::string id = name.substr(0, name.size() - std::strlen(kOwnerSuffix));
    if (!ValidateId("container", id)) continue;
    const std::string path = entry.path().string();
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) continue;
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) < 0) {
      ++live;  // its hullctl is alive
      continue;
    }
    if (!StillLinked(fd.get(), path)) continue;
    const std::string dir = run_dir + "/" + id;
    std::vector<std::string> problems;
    if (PathExists(dir)) problems = sandbox::RemoveOrphanedSandbox(dir);
    if (problems.empty()) {
      ::unlink(path.c_str());
      std::printf("removed %s\n", id.c_str());
      ++removed;
    } else {
      for (const auto& problem : problems)
        std::fprintf(stderr, "hullctl gc: %s: %s\n", id.c_str(), problem.c_str());
      ++failed;
    }
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    std::fprintf(stderr, "hullctl gc: list %s: %s\n", run_dir.c_str(), ec.message().c_str());
    return 1;
  }
  TemplateStore templates(TemplateRoot(*config));
  for (const auto& name :
       options.all_templates ? templates.RemoveAllBut({}) : templates.RemoveStale()) {
    std::printf("removed template %s\n", name.c_str());
    ++removed;
  }
  std::fprintf(stderr, "hullctl gc: %d removed, %d in use, %d failed\n", removed, live, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace hull::hullctl
