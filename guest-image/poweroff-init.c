/* hull-poweroff-init: the "floor" of the boot benchmark.
 *
 * Run as PID 1 of a guest (the only file of floor-initrd.img), it powers the
 * VM off at once, so kernel-start-to-poweroff measures the kernel's own boot
 * cost with no userspace work at all. Linked statically: the initrd holds no
 * loader or libraries.
 *
 * Outside a guest it refuses to do anything (it is not PID 1), so running it
 * by mistake on a host cannot power the host off.
 */
#include <stdio.h>
#include <sys/reboot.h>
#include <unistd.h>

int main(void) {
  if (getpid() != 1) {
    fprintf(stderr, "hull-poweroff-init: not PID 1, refusing to power off\n");
    return 2;
  }
  reboot(RB_POWER_OFF);
  /* Only reached if reboot() failed; returning from PID 1 panics the kernel,
   * which with panic=-1 and -no-reboot still ends the VM. */
  perror("hull-poweroff-init: reboot(RB_POWER_OFF)");
  return 1;
}
