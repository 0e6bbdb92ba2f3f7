// Runs as a container's process in a hull VM (tests/vm/guest_root_test.cc)
// and shows what a privileged container finds underneath its root: with
// CAP_SYS_ADMIN it detaches its root mount, and with CAP_SYS_CHROOT it
// re-enters its own mount namespace, which sets its root to the root of the
// namespace's mount tree. Under the agent's old MS_MOVE+chroot fallback that
// was the initramfs, with the agent's /dev and /run still mounted on it.
//
// Prints "entry: NAME" for each entry of the directory it lands in, then
// exits 0. A failed call is printed and exits 1, so that an empty listing
// always means the escape ran and found nothing.
//
// Static, so that it runs in any rootfs.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>

static int Fail(const char* what) {
  printf("error: %s: %s\n", what, strerror(errno));
  return 1;
}

int main(void) {
  int own_namespace = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
  if (own_namespace < 0) return Fail("open /proc/self/ns/mnt");
  if (umount2("/", MNT_DETACH) != 0) return Fail("umount2 /");
  if (setns(own_namespace, CLONE_NEWNS) != 0) return Fail("setns");
  DIR* root = opendir("/");
  if (root == NULL) return Fail("opendir /");
  struct dirent* entry;
  while ((entry = readdir(root)) != NULL) {
    if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
      printf("entry: %s\n", entry->d_name);
    }
  }
  closedir(root);
  return 0;
}
