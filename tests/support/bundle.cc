#include "bundle.h"

#include <sys/stat.h>
#include <unistd.h>

#include <sstream>

#include "hull/core/process.h"
#include "hull/core/syscall.h"

namespace hull::testing {

Status MakeBusyboxRootfs(const std::string& rootfs) {
  if (!IsExecutable(kBusybox)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "busybox-static is not installed (/bin/busybox)");
  }
  for (const char* dir :
       {"/bin", "/etc", "/tmp", "/proc", "/sys", "/dev", "/root", "/home", "/var"}) {
    HULL_CHECK_OK(MakeDirs(rootfs + dir, 0755), "make rootfs");
  }
  ::chmod((rootfs + "/tmp").c_str(), 01777);
  HULL_TRY(std::string binary, ReadFile(kBusybox, 64 << 20), "copy busybox");
  HULL_CHECK_OK(WriteFile(rootfs + "/bin/busybox", binary, 0755), "copy busybox");
  // The applet list, from busybox itself.
  std::string list_path = rootfs + "/.applets";
  auto child = Child::Spawn({.argv = {kBusybox, "--list"}, .stdout_path = list_path});
  if (!child) return std::move(child).error().Wrap("list busybox applets");
  (void)child->Wait();
  HULL_TRY(std::string applets, ReadFile(list_path), "list busybox applets");
  ::unlink(list_path.c_str());
  std::istringstream names(applets);
  std::string name;
  while (std::getline(names, name)) {
    if (name.empty() || name == "busybox") continue;
    std::string link = rootfs + "/bin/" + name;
    if (::symlink("busybox", link.c_str()) < 0 && errno != EEXIST)
      return ErrnoError("symlink " + link);
  }
  HULL_CHECK_OK(
      WriteFile(
          rootfs + "/etc/passwd",
          "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
      "write passwd");
  HULL_CHECK_OK(WriteFile(rootfs + "/etc/group", "root:x:0:\nnogroup:x:65534:\n"), "write group");
  return Ok();
}

Status MakeBundle(const std::string& bundle, const oci::Spec& spec) {
  HULL_CHECK_OK(MakeDirs(bundle, 0755), "make bundle");
  if (!PathExists(bundle + "/rootfs/bin/busybox"))
    HULL_CHECK_OK(MakeBusyboxRootfs(bundle + "/rootfs"), "make bundle");
  HULL_CHECK_OK(WriteFile(bundle + "/config.json", oci::SerializeOciSpec(spec)),
                "write config.json");
  return Ok();
}

oci::Spec TestSpec(std::vector<std::string> args) {
  oci::Spec spec = oci::DefaultSpec(std::move(args), false);
  spec.hostname = "hull";
  spec.root.readonly = false;
  return spec;
}

}  // namespace hull::testing
