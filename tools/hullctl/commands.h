// hullctl's commands, as functions main.cc calls after parsing flags.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hull/core/config.h"
#include "hull/core/error.h"
#include "hull/core/fd.h"

namespace hull::hullctl {

struct CheckOptions {
  std::string config_path;
};
// Prints one line per host capability; returns the process exit code
// (0: hull can run here, 1: it cannot).
int RunCheck(const CheckOptions& options);

struct PingOptions {
  std::string config_path;
  std::optional<std::string> hypervisor;  // qemu | libvirt (default: [hypervisor] backend)
  std::optional<std::string> transport;   // serial | vsock
  std::optional<std::string> accel;       // kvm | tcg | auto
  std::optional<uint64_t> memory_mib;
  std::optional<uint32_t> cpus;
  std::optional<std::string> kernel;
  std::optional<std::string> initrd;
  bool json = false;
  bool keep_console = false;  // print the console log when done
  // Do not contact the agent: time launch until the guest powers itself off.
  // With an initrd whose init powers off at once, this is the boot floor.
  bool until_poweroff = false;
  // Start the VM as a clone of the template for its shape (built first if
  // missing, not timed).
  bool from_template = false;
};
// Boots a VM, asks the agent for its details, prints them and the time from
// QEMU launch to the agent's first answer, and shuts the VM down.
int RunVmPing(const PingOptions& options);

struct RunOptions {
  std::string config_path;
  std::optional<std::string> hypervisor;  // qemu | libvirt (default: [hypervisor] backend)
  std::string bundle;                     // a runc-style bundle: config.json + rootfs
  std::string rootfs;                     // or a bare root filesystem, wrapped in the default spec
  bool tty = false;
  std::string memory;  // VM memory: "512M", "1G", or MiB
  std::optional<uint32_t> cpus;
  std::string name;               // container (and VM) id; default run-<random>
  std::vector<std::string> args;  // overrides process.args
};
// Runs the container in a fresh VM with stdio attached; returns its exit
// status (the code, or 128+signal), or 125 when hull itself failed.
int RunContainer(const RunOptions& options);

// "512M", "1G", "256" (MiB) -> MiB.
Result<uint64_t> ParseMemory(const std::string& text);

struct TemplateOptions {
  std::string config_path;
  std::string memory;  // the shape: VM memory ("512M"), default from the configuration
  std::optional<uint32_t> cpus;
};
// Builds the template for the configuration's VM shape unless it is there.
int RunTemplateBuild(const TemplateOptions& options);
// Lists the templates with their shape and the RAM they hold.
int RunTemplateList(const TemplateOptions& options);

// A hullctl's hold on its VM's name in run_dir (see gc.cc): taken before the
// VM exists, released (the owner file removed) once it is gone. If hullctl
// dies, the kernel drops the lock and `hullctl gc` cleans up.
class RunClaim {
 public:
  // kAlreadyExists when another live hullctl has `id`, or a dead one left
  // its directory.
  static Result<RunClaim> Take(const std::string& run_dir, const std::string& id);
  RunClaim(RunClaim&&) noexcept = default;
  RunClaim& operator=(RunClaim&&) noexcept = default;
  ~RunClaim();

 private:
  RunClaim(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::string path_;
  UniqueFd fd_;
};

struct GcOptions {
  std::string config_path;
  bool all_templates = false;  // every template, not only stale ones
};
// Removes what dead `hullctl run`/`vm ping` processes left in run_dir, and
// the VM templates of a guest image or QEMU that changed since (all of them
// with all_templates); prints each id and template it removed. 0 when
// everything could be removed.
int RunGc(const GcOptions& options);

}  // namespace hull::hullctl
