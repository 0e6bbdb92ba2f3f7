// hullctl template: build the VM template sandboxes start from, and list
// what templates there are (docs/design/templates.md).
#include "hull/hypervisor/template.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdio>

#include "commands.h"
#include "hull/core/syscall.h"
#include "hull/core/text.h"
#include "hull/sandbox/sandbox.h"

namespace hull::hullctl {

namespace {

// Bytes of the file that hold data (a RAM file is mostly holes).
uint64_t AllocatedBytes(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

}  // namespace

int RunTemplateBuild(const TemplateOptions& options) {
  auto fail = [](const Error& error) {
    std::fprintf(stderr, "hullctl template build: %s\n", error.ToString().c_str());
    return 1;
  };
  auto config = LoadConfig(options.config_path);
  if (!config) return fail(config.error());
  if (!options.memory.empty()) {
    auto memory = ParseMemory(options.memory);
    if (!memory) return fail(memory.error());
    config->hypervisor.memory_mib = *memory;
  }
  if (options.cpus) config->hypervisor.vcpus = *options.cpus;
  // The shape a sandbox of this configuration gets; the id is the
  // template's own (TemplateVmConfig), this one only has to be valid.
  auto vm_config = VmConfigFromConfig(*config, "template");
  if (!vm_config) return fail(vm_config.error());
  auto hypervisor = MakeHypervisor(config->hypervisor.backend);
  if (!hypervisor) return fail(hypervisor.error());
  auto started = std::chrono::steady_clock::now();
  auto built = sandbox::EnsureTemplate(*config, *vm_config, **hypervisor);
  if (!built) return fail(built.error());
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started)
                .count();
  std::printf("template %s ready in %s (%lld ms; RAM file holds %.1f MiB)\n", built->name.c_str(),
              built->dir.c_str(), static_cast<long long>(ms),
              AllocatedBytes(built->dir + "/memory") / 1048576.0);
  return 0;
}

int RunTemplateList(const TemplateOptions& options) {
  auto config = LoadConfig(options.config_path);
  if (!config) {
    std::fprintf(stderr, "hullctl template ls: %s\n", config.error().ToString().c_str());
    return 1;
  }
  TemplateStore store(TemplateRoot(*config));
  std::printf("%-18s %10s  %s\n", "TEMPLATE", "RAM MiB", "SHAPE");
  for (const auto& name : store.List()) {
    const std::string dir = store.root() + "/" + name;
    std::string shape;
    const std::string key = ReadFile(dir + "/key", 1 << 16).value_or("");
    for (std::string_view line : SplitLines(key)) {
      for (const char* field : {"vcpus=", "memory_mib=", "accel=", "machine="}) {
        if (line.starts_with(field)) shape += (shape.empty() ? "" : " ") + std::string(line);
      }
    }
    std::printf("%-18s %10.1f  %s\n", name.c_str(), AllocatedBytes(dir + "/memory") / 1048576.0,
                shape.c_str());
  }
  return 0;
}

}  // namespace hull::hullctl
