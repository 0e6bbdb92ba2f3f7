#include "hull/core/config.h"

#include <toml++/toml.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <sstream>

#include "hull/core/log.h"
#include "hull/core/syscall.h"

namespace hull {

namespace {

Unexpected KeyError(std::string_view key, std::string message) {
  return MakeError(ErrorCode::kInvalidArgument, std::string(key) + ": " + message);
}

using Setter = std::function<Status(const toml::node&, Config&)>;

Setter String(std::string_view key, std::string Config::*field) {
  return [key, field](const toml::node& node, Config& config) -> Status {
    auto value = node.value<std::string>();
    if (!node.is_string() || !value) return KeyError(key, "expected a string");
    config.*field = *value;
    return Ok();
  };
}

Setter Bool(std::string_view key, bool Config::*field) {
  return [key, field](const toml::node& node, Config& config) -> Status {
    if (!node.is_boolean()) return KeyError(key, "expected true or false");
    config.*field = *node.value<bool>();
    return Ok();
  };
}

// An integer node within [min, max], or the error naming `key`.
Result<int64_t> IntInRange(std::string_view key, const toml::node& node, int64_t min, int64_t max) {
  if (!node.is_integer()) return KeyError(key, "expected an integer");
  int64_t v = *node.value<int64_t>();
  if (v < min || v > max) {
    return KeyError(key, "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                             ", got " + std::to_string(v));
  }
  return v;
}

template <typename Number>
Setter Int(std::string_view key, Number Config::*field, int64_t min, int64_t max) {
  return [=](const toml::node& node, Config& config) -> Status {
    HULL_TRY(int64_t v, IntInRange(key, node, min, max), "");
    config.*field = static_cast<Number>(v);
    return Ok();
  };
}

template <typename Section>
Setter SectionString(std::string_view key, Section Config::*section, std::string Section::*field) {
  return [key, section, field](const toml::node& node, Config& config) -> Status {
    if (!node.is_string()) return KeyError(key, "expected a string");
    (config.*section).*field = *node.value<std::string>();
    return Ok();
  };
}

template <typename Section>
Setter SectionStringArray(std::string_view key, Section Config::*section,
                          std::vector<std::string> Section::*field) {
  return [key, section, field](const toml::node& node, Config& config) -> Status {
    const toml::array* array = node.as_array();
    if (array == nullptr) return KeyError(key, "expected an array of strings");
    std::vector<std::string> values;
    for (const toml::node& element : *array) {
      if (!element.is_string()) return KeyError(key, "expected an array of strings");
      values.push_back(*element.value<std::string>());
    }
    (config.*section).*field = std::move(values);
    return Ok();
  };
}

template <typename Section>
Setter SectionBool(std::string_view key, Section Config::*section, bool Section::*field) {
  return [key, section, field](const toml::node& node, Config& config) -> Status {
    if (!node.is_boolean()) return KeyError(key, "expected true or false");
    (config.*section).*field = *node.value<bool>();
    return Ok();
  };
}

template <typename Section, typename Int>
Setter SectionInt(std::string_view key, Section Config::*section, Int Section::*field, int64_t min,
                  int64_t max) {
  return [=](const toml::node& node, Config& config) -> Status {
    HULL_TRY(int64_t v, IntInRange(key, node, min, max), "");
    (config.*section).*field = static_cast<Int>(v);
    return Ok();
  };
}

Status OneOf(std::string_view key, const std::string& value,
             std::initializer_list<std::string_view> allowed) {
  for (auto a : allowed) {
    if (value == a) return Ok();
  }
  std::string list;
  for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  return KeyError(key, "`" + value + "` is not one of: " + list);
}

const std::map<std::string, Setter, std::less<>>& Setters() {
  using H = HypervisorConfig;
  using A = AgentConfig;
  static const auto* setters = new std::map<std::string, Setter, std::less<>>{
      {"runtime.run_dir", String("runtime.run_dir", &Config::run_dir)},
      {"runtime.log_level", String("runtime.log_level", &Config::log_level)},
      {"runtime.host_cgroup_parent",
       String("runtime.host_cgroup_parent", &Config::host_cgroup_parent)},
      {"runtime.host_memory_overhead_mib",
       Int("runtime.host_memory_overhead_mib", &Config::host_memory_overhead_mib, 64, 1 << 20)},
      {"runtime.host_pids_max", Int("runtime.host_pids_max", &Config::host_pids_max, 64, 1 << 22)},
      {"runtime.host_cgroup_required",
       Bool("runtime.host_cgroup_required", &Config::host_cgroup_required)},
      {"hypervisor.backend", SectionString("hypervisor.backend", &Config::hypervisor, &H::backend)},
      {"hypervisor.libvirt_uri",
       SectionString("hypervisor.libvirt_uri", &Config::hypervisor, &H::libvirt_uri)},
      {"hypervisor.path", SectionString("hypervisor.path", &Config::hypervisor, &H::path)},
      {"hypervisor.kernel", SectionString("hypervisor.kernel", &Config::hypervisor, &H::kernel)},
      {"hypervisor.initrd", SectionString("hypervisor.initrd", &Config::hypervisor, &H::initrd)},
      {"hypervisor.root_image",
       SectionString("hypervisor.root_image", &Config::hypervisor, &H::root_image)},
      {"hypervisor.machine", SectionString("hypervisor.machine", &Config::hypervisor, &H::machine)},
      {"hypervisor.accel", SectionString("hypervisor.accel", &Config::hypervisor, &H::accel)},
      {"hypervisor.vcpus", SectionInt("hypervisor.vcpus", &Config::hypervisor, &H::vcpus, 1, 255)},
      {"hypervisor.memory_mib",
       SectionInt("hypervisor.memory_mib", &Config::hypervisor, &H::memory_mib, 64, 1 << 20)},
      {"hypervisor.pod_memory_overhead_mib",
       SectionInt("hypervisor.pod_memory_overhead_mib", &Config::hypervisor,
                  &H::pod_memory_overhead_mib, 0, 1 << 16)},
      {"hypervisor.seccomp_sandbox",
       SectionBool("hypervisor.seccomp_sandbox", &Config::hypervisor, &H::seccomp_sandbox)},
      {"hypervisor.free_page_reporting",
       SectionBool("hypervisor.free_page_reporting", &Config::hypervisor, &H::free_page_reporting)},
      {"hypervisor.tcg_tb_size_mib", SectionInt("hypervisor.tcg_tb_size_mib", &Config::hypervisor,
                                                &H::tcg_tb_size_mib, 0, 1 << 14)},
      {"hypervisor.kernel_params",
       SectionString("hypervisor.kernel_params", &Config::hypervisor, &H::kernel_params)},
      {"hypervisor.console_log_max_kib",
       SectionInt("hypervisor.console_log_max_kib", &Config::hypervisor, &H::console_log_max_kib, 4,
                  1 << 20)},
      {"hypervisor.stop_grace_seconds",
       SectionInt("hypervisor.stop_grace_seconds", &Config::hypervisor, &H::stop_grace_seconds, 0,
                  600)},
      {"hypervisor.virtiofsd",
       SectionString("hypervisor.virtiofsd", &Config::hypervisor, &H::virtiofsd)},
      {"hypervisor.virtiofs_cache",
       SectionString("hypervisor.virtiofs_cache", &Config::hypervisor, &H::virtiofs_cache)},
      {"hypervisor.virtiofsd_sandbox",
       SectionString("hypervisor.virtiofsd_sandbox", &Config::hypervisor, &H::virtiofsd_sandbox)},
      {"hypervisor.virtiofsd_args",
       SectionStringArray("hypervisor.virtiofsd_args", &Config::hypervisor, &H::virtiofsd_args)},
      {"hypervisor.template",
       SectionBool("hypervisor.template", &Config::hypervisor, &H::template_enabled)},
      {"hypervisor.template_dir",
       SectionString("hypervisor.template_dir", &Config::hypervisor, &H::template_dir)},
      {"agent.transport", SectionString("agent.transport", &Config::agent, &A::transport)},
      {"agent.log_level", SectionString("agent.log_level", &Config::agent, &A::log_level)},
      {"agent.debug", SectionBool("agent.debug", &Config::agent, &A::debug)},
      {"agent.boot_timeout_seconds",
       SectionInt("agent.boot_timeout_seconds", &Config::agent, &A::boot_timeout_seconds, 1, 3600)},
      {"agent.call_timeout_seconds",
       SectionInt("agent.call_timeout_seconds", &Config::agent, &A::call_timeout_seconds, 1, 3600)},
      {"agent.create_timeout_seconds", SectionInt("agent.create_timeout_seconds", &Config::agent,
                                                  &A::create_timeout_seconds, 1, 3600)},
  };
  return *setters;
}

Status Validate(const Config& config) {
  HULL_CHECK_OK(OneOf("hypervisor.backend", config.hypervisor.backend, {"qemu", "libvirt"}),
                "config");
  HULL_CHECK_OK(OneOf("hypervisor.accel", config.hypervisor.accel, {"auto", "kvm", "tcg"}),
                "config");
  HULL_CHECK_OK(OneOf("hypervisor.virtiofs_cache", config.hypervisor.virtiofs_cache,
                      {"auto", "always", "none"}),
                "config");
  HULL_CHECK_OK(OneOf("hypervisor.virtiofsd_sandbox", config.hypervisor.virtiofsd_sandbox,
                      {"namespace", "chroot"}),
                "config");
  HULL_CHECK_OK(OneOf("agent.transport", config.agent.transport, {"auto", "serial", "vsock"}),
                "config");
  if (!config.hypervisor.template_dir.empty() &&
      (config.hypervisor.template_dir[0] != '/' ||
       config.hypervisor.template_dir.find(',') != std::string::npos)) {
    return KeyError("hypervisor.template_dir", "must be an absolute path without commas");
  }
  if (const auto& root = config.hypervisor.root_image;
      !root.empty() && root != "none" && (root[0] != '/' || root.find(',') != std::string::npos)) {
    return KeyError("hypervisor.root_image", "must be \"none\" or an absolute path without commas");
  }
  if (config.hypervisor.libvirt_uri.empty())
    return KeyError("hypervisor.libvirt_uri", "must not be empty");
  // libvirt starts virtiofsd itself, from the settings its domain XML can
  // express: extra arguments have nowhere to go.
  if (config.hypervisor.backend == "libvirt" && !config.hypervisor.virtiofsd_args.empty()) {
    return KeyError("hypervisor.virtiofsd_args",
                    "is not supported with backend = \"libvirt\" (libvirt starts virtiofsd)");
  }
  if (auto level = ParseLogLevel(config.agent.log_level); !level) {
    return KeyError("agent.log_level", level.error().message());
  }
  if (auto level = ParseLogLevel(config.log_level); !level) {
    return KeyError("runtime.log_level", level.error().message());
  }
  if (config.run_dir.empty() || config.run_dir[0] != '/') {
    return KeyError("runtime.run_dir", "must be an absolute path");
  }
  if (const std::string& parent = config.host_cgroup_parent;
      parent.empty() || parent[0] != '/' || parent.find("/..") != std::string::npos ||
      parent.find("/./") != std::string::npos || parent.find(':') != std::string::npos) {
    return KeyError("runtime.host_cgroup_parent",
                    "must be an absolute cgroupfs path without . or .. (e.g. \"/hull\")");
  }
  for (char c : config.hypervisor.kernel_params) {
    if (c == '\n' || c == '\0') return KeyError("hypervisor.kernel_params", "must be one line");
  }
  if (config.hypervisor.virtiofsd.empty() || config.hypervisor.virtiofsd[0] != '/') {
    return KeyError("hypervisor.virtiofsd", "must be an absolute path");
  }
  for (const std::string& arg : config.hypervisor.virtiofsd_args) {
    if (arg.empty() || arg.find('\0') != std::string::npos) {
      return KeyError("hypervisor.virtiofsd_args",
                      "arguments must be non-empty strings without NUL");
    }
  }
  return Ok();
}

}  // namespace

Result<Config> ParseConfig(std::string_view toml_text, std::string_view source_name) {
  Config config;
  config.source = std::string(source_name);
  toml::table parsed;
  try {
    // toml++ reports syntax errors by exception; it stops here.
    parsed = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& err) {
    std::ostringstream where;
    where << err.source().begin;
    return MakeError(
        ErrorCode::kInvalidArgument,
        std::string(source_name) + ": " + std::string(err.description()) + " at " + where.str());
  }
  const auto& setters = Setters();
  for (const auto& [section_key, section_node] : parsed) {
    std::string section(section_key.str());
    const toml::table* table = section_node.as_table();
    if (table == nullptr) {
      return MakeError(ErrorCode::kInvalidArgument, std::string(source_name) + ": `" + section +
                                                        "` must be a table ([" + section + "])");
    }
    for (const auto& [key, node] : *table) {
      std::string full = section + "." + std::string(key.str());
      auto setter = setters.find(full);
      if (setter == setters.end()) {
        return MakeError(ErrorCode::kInvalidArgument,
                         std::string(source_name) + ": unknown key `" + full + "`");
      }
      if (auto set = setter->second(node, config); !set) {
        return std::move(set).error().Wrap(std::string(source_name));
      }
    }
  }
  if (auto valid = Validate(config); !valid)
    return std::move(valid).error().Wrap(std::string(source_name));
  return config;
}

Result<Config> LoadConfig(const std::string& explicit_path) {
  std::string path = explicit_path;
  if (path.empty()) {
    const char* env = std::getenv("HULL_CONFIG");
    if (env != nullptr && *env != '\0') path = env;
  }
  bool required = !path.empty();
  if (!required) path = std::string(kDefaultConfigPath);
  auto text = ReadFile(path, 1 << 20);
  if (!text) {
    if (!required && text.error().sys_errno() == ENOENT) return Config{};
    return std::move(text).error().Wrap("load configuration");
  }
  return ParseConfig(*text, path);
}

}  // namespace hull
