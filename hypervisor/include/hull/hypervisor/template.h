// VM templates: a VM booted once and saved, so that later VMs of the same
// shape start as copies of it instead of booting (docs/design/templates.md).
//
// The store touches only the names it makes (16 hex digits, with the suffixes
// below, or template-<name>): anything else in <root> is left alone.
//
// A template is a directory <root>/<name> holding
//   key     what it was built from (TemplateKey), one "name=value" per line
//   memory  the guest's RAM file (sparse)
//   state   QEMU's device state (a migration stream, RAM left out)
//   build   a random id of this build (Invalidate removes only the build it found)
// Templates are immutable once their directory has its final name: a builder
// fills <root>/<name>.new-<pid> and renames it into place, so a reader sees a
// whole template or none. Only one builder per name at a time (flock on
// <root>/<name>.lock); a start that finds the lock taken boots cold.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hull/core/error.h"
#include "hull/hypervisor/hypervisor.h"

namespace hull {

// Where templates live: [hypervisor] template_dir, by default <run_dir>/.templates
// (a name no sandbox id can have).
std::string TemplateRoot(const Config& config);

// Why `config` cannot start from a template, "" if it can. Clones need the
// q35 machine (PCIe hot-plug) and the serial transport (vsock is not tested
// on a restore), and get no extra kernel parameters beyond the template's.
std::string TemplateIneligibility(const VmConfig& config);

// Everything a clone must share with its template, as text: the identity
// (path, size, mtime, inode) of the kernel, initrd and hypervisor binary,
// and the VM's shape (machine, accelerator, vcpus, memory, transport, the
// kernel command line, seccomp, free page reporting). A rebuilt guest image
// or another shape gives another key, hence another template.
Result<std::string> TemplateKey(const VmConfig& config);

// The template's directory name for `key`: 16 hex digits of its hash.
std::string TemplateName(std::string_view key);

// A ready template, as found by TemplateStore::Find.
struct TemplateRef {
  std::string key;
  std::string name;
  std::string dir;    // <root>/<name>
  std::string build;  // which build of the template this is (random, per build)
};

class TemplateStore {
 public:
  // At most this many templates (VM shapes) per store: each holds its
  // guest's RAM. Build refuses more (kResourceExhausted); starts boot cold.
  static constexpr size_t kMaxTemplates = 8;

  explicit TemplateStore(std::string root) : root_(std::move(root)) {}
  const std::string& root() const { return root_; }

  // The ready template for `key`, or nullopt if there is none (or what is
  // there was built from another key, or misses a file).
  std::optional<TemplateRef> Find(const std::string& key) const;

  // Builds the template for `key` unless it is ready: takes the builder's
  // lock, boots `config` through `save` into a fresh directory, and renames
  // that into place. kUnavailable when another process is building it now.
  // `save(dir)` must write `memory` and `state` into `dir`.
  Result<TemplateRef> Build(const std::string& key,
                            const std::function<Status(const std::string& dir)>& save);

  // Removes the template `ref` found (a clone of it failed), unless it has
  // been rebuilt since or a builder holds it: the next start rebuilds it.
  // Clones running from it keep their own copies.
  void Invalidate(const TemplateRef& ref);

  // Whether a build for `key` failed less than `within` ago (Build leaves a
  // <name>.failed note; a successful build removes it).
  bool RecentlyFailed(const std::string& key, std::chrono::seconds within) const;

  // Removes every template whose name is not in `keep` and every leftover
  // of a builder that died; skips what a builder holds now. Returns the
  // names of what was removed.
  std::vector<std::string> RemoveAllBut(const std::vector<std::string>& keep);

  // Removes the templates built from a kernel, initrd or hypervisor binary
  // that has changed or gone since (RemoveAllBut the others).
  std::vector<std::string> RemoveStale();

  // Every ready template's name.
  std::vector<std::string> List() const;

 private:
  std::string root_;
};

// What a template VM's kernel command line adds to the sandbox's.
inline constexpr char kTemplateKernelParams[] = "init_on_free=1";

// The VmConfig of the template VM for `config`: no shared directory, no
// network, no host cgroup, its own id, its state under `root`, and
// kTemplateKernelParams.
VmConfig TemplateVmConfig(const VmConfig& config, const std::string& root, const std::string& name);

// Turns every all-zero 4 KiB page of the file `fd` into a hole (fallocate
// PUNCH_HOLE, size kept), so that a sparse copy skips it: a saved template's
// RAM holds pages the guest zeroed (init_on_alloc) and never used. The
// content reads back the same. Returns the bytes punched out.
Result<uint64_t> PunchZeroPages(int fd);

}  // namespace hull
