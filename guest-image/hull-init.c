/* hull-init: the guest's first process, the only program in initrd.img.
 *
 * It mounts the shared read-only guest root and hands PID 1 to the agent on
 * it:
 *   1. loads the modules that reach the root device, listed (dependencies
 *      first) in /lib/modules/hull-boot-modules.list;
 *   2. waits for the device named by `hull.root=` on the kernel command line
 *      (`pmem0`: virtio-pmem, mounted with DAX, so the guest reads the host's
 *      page cache; `vda`: virtio-blk) and mounts its erofs read-only on
 *      /newroot;
 *   3. deletes the initramfs's files (they would stay in guest RAM), moves
 *      the new root onto / (switch_root's sequence) and execs /init there:
 *      hull-agent.
 * Any failure is printed to the console and powers the VM off: a guest
 * without its root has nothing to run. Linked statically: the initrd holds no
 * loader or libraries. Outside a guest (not PID 1) it refuses to run.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BOOT_MODULE_LIST "/lib/modules/hull-boot-modules.list"
#define NEW_ROOT "/newroot"
/* Generous: under load a TCG guest probes devices slowly; the host bounds
 * the whole boot anyway. */
#define DEVICE_WAIT_MS 30000

static void die(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  fputs("hull-init: fatal: ", stderr);
  vfprintf(stderr, fmt, args);
  fputc('\n', stderr);
  va_end(args);
  sync();
  reboot(RB_POWER_OFF);
  _exit(1); /* PID 1 exiting panics the kernel; with panic=-1 the VM ends */
}

static void load_modules(void) {
  FILE* list = fopen(BOOT_MODULE_LIST, "re");
  if (!list) die("open %s: %s", BOOT_MODULE_LIST, strerror(errno));
  char path[512];
  while (fgets(path, sizeof path, list)) {
    path[strcspn(path, "\n")] = '\0';
    if (path[0] == '\0' || path[0] == '#') continue;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open module %s: %s", path, strerror(errno));
    long rc;
    do {
      rc = syscall(SYS_finit_module, fd, "", 0);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno != EEXIST) die("load module %s: %s", path, strerror(errno));
    close(fd);
  }
  fclose(list);
}

/* The value of hull.root= on the kernel command line: a device name under
 * /dev made of [a-z0-9] only. */
static void root_device(char* name, size_t size) {
  char cmdline[4096];
  int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open /proc/cmdline: %s", strerror(errno));
  ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
  close(fd);
  if (n < 0) die("read /proc/cmdline: %s", strerror(errno));
  cmdline[n] = '\0';
  for (char* arg = strtok(cmdline, " \n"); arg; arg = strtok(NULL, " \n")) {
    if (strncmp(arg, "hull.root=", 10) != 0) continue;
    const char* value = arg + 10;
    size_t len = strlen(value);
    if (len == 0 || len >= size || strspn(value, "abcdefghijklmnopqrstuvwxyz0123456789") != len)
      die("hull.root=%s: expected a device name such as pmem0 or vda", value);
    memcpy(name, value, len + 1);
    return;
  }
  die("no hull.root= on the kernel command line: this image needs its root device");
}

/* Mounts `device` once it can be: its node appears in devtmpfs before the
 * disk is usable (opening it fails with ENXIO until the driver has bound it,
 * which libnvdimm does asynchronously), so ENOENT, ENXIO and ENODEV are
 * waited out, up to DEVICE_WAIT_MS. */
static void mount_when_ready(const char* device, const char* target, unsigned long flags,
                             const char* options) {
  struct timespec step = {0, 2 * 1000 * 1000};
  for (int waited = 0;; waited += 2) {
    if (mount(device, target, "erofs", flags, options) == 0) return;
    int error = errno;
    if ((error != ENOENT && error != ENXIO && error != ENODEV) || waited >= DEVICE_WAIT_MS)
      die("mount erofs %s on %s (after %d ms): %s", device, target, waited, strerror(error));
    nanosleep(&step, NULL);
  }
}

/* Deletes everything on the initramfs (the device of `dir`), as switch_root
 * does; mount points on it are left alone. */
static void delete_tree(int dir_fd, dev_t dev) {
  DIR* dir = dir_fd >= 0 ? fdopendir(dir_fd) : NULL;
  if (!dir) die("open a directory of the initramfs: %s", strerror(errno));
  struct dirent* entry;
  while ((entry = readdir(dir))) {
    if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (st.st_dev != dev) continue;
    if (S_ISDIR(st.st_mode)) {
      int child = openat(dirfd(dir), entry->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (child >= 0) {
        struct stat inner;
        /* A mount point has another device: keep it (and what is under it). */
        if (fstat(child, &inner) == 0 && inner.st_dev == dev) {
          delete_tree(child, dev);
          unlinkat(dirfd(dir), entry->d_name, AT_REMOVEDIR);
        } else {
          close(child);
        }
      }
    } else {
      unlinkat(dirfd(dir), entry->d_name, 0);
    }
  }
  closedir(dir);
}

int main(int argc, char** argv) {
  (void)argc;
  if (getpid() != 1) {
    fprintf(stderr, "hull-init: not PID 1, refusing to run\n");
    return 2;
  }
  mkdir("/dev", 0755);
  mkdir("/proc", 0555);
  if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") != 0 && errno != EBUSY)
    die("mount devtmpfs on /dev: %s", strerror(errno));
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
    die("mount proc on /proc: %s", strerror(errno));
  char name[32];
  root_device(name, sizeof name);
  load_modules();

  char device[64];
  snprintf(device, sizeof device, "/dev/%s", name);
  mkdir(NEW_ROOT, 0755);
  /* DAX maps the device's pages (the host's page cache) instead of copying
   * them into the guest's own page cache. */
  const char* options = strncmp(name, "pmem", 4) == 0 ? "dax=always" : NULL;
  mount_when_ready(device, NEW_ROOT, MS_RDONLY | MS_NODEV, options);
  /* The agent mounts its own /dev and /proc on the new root. */
  if (umount2("/proc", MNT_DETACH) != 0) die("unmount /proc: %s", strerror(errno));
  if (umount2("/dev", MNT_DETACH) != 0) die("unmount /dev: %s", strerror(errno));

  int old_root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (old_root < 0) die("open /: %s", strerror(errno));
  struct stat root_stat;
  if (fstat(old_root, &root_stat) != 0) die("stat /: %s", strerror(errno));
  if (chdir(NEW_ROOT) != 0) die("chdir %s: %s", NEW_ROOT, strerror(errno));
  /* delete_tree closes what it is given; old_root is needed once more. */
  delete_tree(fcntl(old_root, F_DUPFD_CLOEXEC, 0), root_stat.st_dev);
  if (mount(".", "/", NULL, MS_MOVE, NULL) != 0)
    die("move %s onto /: %s", NEW_ROOT, strerror(errno));
  if (chroot(".") != 0) die("chroot: %s", strerror(errno));
  if (chdir("/") != 0) die("chdir /: %s", strerror(errno));
  /* Its mount moved away, the mount point is an empty directory on the old
   * root: remove it too, so nothing at all is left there. */
  if (unlinkat(old_root, NEW_ROOT + 1, AT_REMOVEDIR) != 0)
    die("remove %s from the initramfs: %s", NEW_ROOT, strerror(errno));
  close(old_root);

  char* agent_argv[] = {"/init", NULL};
  execv("/init", agent_argv);
  die("exec /init on the guest root: %s", strerror(errno));
  (void)argv;
  return 1;
}
