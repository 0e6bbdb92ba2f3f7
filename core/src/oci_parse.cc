// The OCI runtime spec parser: config.json, an ExecProcess process and an
// UpdateContainer resources object, validated field by field. They come from
// containerd (and whoever talks to it), so nothing here may throw or crash,
// whatever the bytes; every error names the field (see oci_json.h).
#include <set>
#include <utility>

#include "hull/core/oci_spec.h"
#include "oci_fields.h"
#include "oci_json.h"

namespace hull::oci {
namespace {

constexpr std::array<std::string_view, 8> kNamespaceTypes = {"pid", "network", "mount",  "ipc",
                                                             "uts", "user",    "cgroup", "time"};

constexpr std::array<std::string_view, 9> kSeccompActions = {
    "SCMP_ACT_KILL",  "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",  "SCMP_ACT_ERRNO",        "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",          "SCMP_ACT_NOTIFY"};

// The values runc accepts (libcontainer's mountPropagationMapping).
constexpr std::array<std::string_view, 9> kRootfsPropagations = {
    "", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable"};

// HOST_NAME_MAX: the limit of sethostname(2) and setdomainname(2).
constexpr size_t kMaxHostnameLength = 64;

// --- process --------------------------------------------------------------------

Result<ConsoleSize> ParseConsoleSize(const Json& value, const std::string& path) {
  return ParseRecord<ConsoleSize>(value, path, kConsoleSizeFields);
}

Result<User> ParseUser(const Json& value, const std::string& path) {
  return ParseRecord<User>(value, path, kUserFields);
}

Result<std::string> ToCapability(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(std::string name, ToString(value, path));
  if (!CapabilityNumber(name)) return Invalid(path, "unknown capability " + Quote(name));
  return name;
}

Result<Capabilities> ParseCapabilities(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  Capabilities capabilities;
  for (const auto& [key, set] : kCapabilitySets) {
    HULL_OCI_CHECK(object.ReadArray(key, capabilities.*set, ToCapability));
  }
  return capabilities;
}

Result<Rlimit> ParseRlimit(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  Rlimit rlimit;
  HULL_OCI_CHECK(ReadFields(object, rlimit, kRlimitFields));
  HULL_OCI_CHECK(CheckName(rlimit.type, RlimitResource(rlimit.type).has_value(),
                           object.PathOf("type"), "rlimit"));
  // setrlimit(2) would fail with EINVAL; say why before the container starts.
  if (rlimit.soft > rlimit.hard) {
    return Invalid(path, "soft limit " + std::to_string(rlimit.soft) + " exceeds hard limit " +
                             std::to_string(rlimit.hard));
  }
  return rlimit;
}

Result<std::string> ToEnvironmentEntry(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(std::string entry, ToString(value, path));
  size_t equals = entry.find('=');
  if (equals == std::string::npos) return Invalid(path, Quote(entry) + " is not KEY=value");
  if (equals == 0) return Invalid(path, Quote(entry) + " has an empty variable name");
  return entry;
}

Result<Process> ParseProcessObject(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  Process process;
  HULL_OCI_CHECK(object.Read("terminal", process.terminal));
  HULL_OCI_CHECK(object.ReadObject("consoleSize", process.console_size, ParseConsoleSize));
  if (const Json* user = object.Find("user"); user != nullptr) {
    HULL_OCI_ASSIGN(process.user, ParseUser(*user, object.PathOf("user")));
  }
  HULL_OCI_CHECK(object.Read("args", process.args));
  if (process.args.empty()) return Invalid(object.PathOf("args"), "must not be empty");
  HULL_OCI_CHECK(object.ReadArray("env", process.env, ToEnvironmentEntry));
  if (object.Find("cwd") != nullptr) {
    HULL_OCI_CHECK(object.Read("cwd", process.cwd));
    if (!IsAbsolute(process.cwd)) return Invalid(object.PathOf("cwd"), "must be an absolute path");
  }
  HULL_OCI_CHECK(object.ReadObject("capabilities", process.capabilities, ParseCapabilities));
  HULL_OCI_CHECK(object.ReadArray("rlimits", process.rlimits, ParseRlimit));
  std::set<std::string_view> rlimit_types;
  for (size_t i = 0; i < process.rlimits.size(); ++i) {
    if (!rlimit_types.insert(process.rlimits[i].type).second) {
      return Invalid(MemberPath(ElementPath(object.PathOf("rlimits"), i), "type"),
                     "duplicate rlimit " + Quote(process.rlimits[i].type));
    }
  }
  HULL_OCI_CHECK(object.Read("noNewPrivileges", process.no_new_privileges));
  HULL_OCI_CHECK(object.Read("oomScoreAdj", process.oom_score_adj));
  if (process.oom_score_adj && (*process.oom_score_adj < -1000 || *process.oom_score_adj > 1000)) {
    return Invalid(object.PathOf("oomScoreAdj"),
                   std::to_string(*process.oom_score_adj) + " is out of range (-1000 to 1000)");
  }
  HULL_OCI_CHECK(object.Read("apparmorProfile", process.apparmor_profile));
  HULL_OCI_CHECK(object.Read("selinuxLabel", process.selinux_label));
  return process;
}

// --- root, mounts, hostname -----------------------------------------------------

Result<Root> ParseRoot(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  Root root;
  HULL_OCI_CHECK(object.Read("path", root.path));
  if (root.path.empty()) return Invalid(object.PathOf("path"), "must not be empty");
  HULL_OCI_CHECK(object.Read("readonly", root.readonly));
  return root;
}

Result<Mount> ParseMount(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  Mount mount;
  HULL_OCI_CHECK(object.Read("destination", mount.destination));
  if (!IsAbsolute(mount.destination)) {
    return Invalid(object.PathOf("destination"), "must be an absolute path");
  }
  // "type" may be absent: a bind mount says so through its options.
  HULL_OCI_CHECK(object.Read("type", mount.type));
  HULL_OCI_CHECK(object.Read("source", mount.source));
  HULL_OCI_CHECK(object.Read("options", mount.options));
  return mount;
}

Status CheckUtsName(const std::string& name, const std::string& path) {
  if (name.find('/') != std::string::npos) return Invalid(path, "must not contain '/'");
  if (name.size() > kMaxHostnameLength) {
    return Invalid(path, "is " + std::to_string(name.size()) + " characters long (at most " +
                             std::to_string(kMaxHostnameLength) + ")");
  }
  return Ok();
}

// --- linux ------------------------------------------------------------------------

Result<Namespace> ParseNamespace(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  Namespace ns;
  HULL_OCI_CHECK(object.Read("type", ns.type));
  HULL_OCI_CHECK(CheckName(ns.type, Contains(kNamespaceTypes, ns.type), object.PathOf("type"),
                           "namespace type"));
  HULL_OCI_CHECK(object.Read("path", ns.path));
  if (!ns.path.empty() && !IsAbsolute(ns.path)) {
    return Invalid(object.PathOf("path"), "must be an absolute path");
  }
  return ns;
}

Result<IdMapping> ParseIdMapping(const Json& value, const std::string& path) {
  return ParseRecord<IdMapping>(value, path, kIdMappingFields);
}

Result<Device> ParseDevice(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  Device device;
  HULL_OCI_CHECK(object.Read("type", device.type));
  bool known_type =
      device.type == "c" || device.type == "b" || device.type == "u" || device.type == "p";
  HULL_OCI_CHECK(CheckName(device.type, known_type, object.PathOf("type"), "device type",
                           " (expected c, b, u or p)"));
  HULL_OCI_CHECK(object.Read("path", device.path));
  if (!IsAbsolute(device.path)) return Invalid(object.PathOf("path"), "must be an absolute path");
  // Go writes major and minor with omitempty, so /dev/tty (5:0) comes without a
  // "minor": absent means 0.
  HULL_OCI_CHECK(object.Read("major", device.major));
  HULL_OCI_CHECK(object.Read("minor", device.minor));
  HULL_OCI_CHECK(object.Read("fileMode", device.file_mode));
  HULL_OCI_CHECK(object.Read("uid", device.uid));
  HULL_OCI_CHECK(object.Read("gid", device.gid));
  return device;
}

Result<DeviceCgroupRule> ParseDeviceCgroupRule(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  DeviceCgroupRule rule;
  HULL_OCI_CHECK(object.Read("allow", rule.allow));
  HULL_OCI_CHECK(object.Read("type", rule.type));
  if (rule.type != "" && rule.type != "a" && rule.type != "c" && rule.type != "b") {
    return Invalid(object.PathOf("type"),
                   "unknown device type " + Quote(rule.type) + " (expected a, c or b)");
  }
  HULL_OCI_CHECK(object.Read("major", rule.major));
  HULL_OCI_CHECK(object.Read("minor", rule.minor));
  HULL_OCI_CHECK(object.Read("access", rule.access));
  if (rule.access.find_first_not_of("rwm") != std::string::npos) {
    return Invalid(object.PathOf("access"),
                   Quote(rule.access) + " is not a combination of r, w and m");
  }
  return rule;
}

Result<MemoryResources> ParseMemory(const Json& value, const std::string& path) {
  return ParseRecord<MemoryResources>(value, path, kMemoryFields);
}

Result<CpuResources> ParseCpu(const Json& value, const std::string& path) {
  return ParseRecord<CpuResources>(value, path, kCpuFields);
}

Result<PidsResources> ParsePids(const Json& value, const std::string& path) {
  return ParseRecord<PidsResources>(value, path, kPidsFields);
}

Result<BlockIoDeviceWeight> ParseBlockIoDeviceWeight(const Json& value, const std::string& path) {
  return ParseRecord<BlockIoDeviceWeight>(value, path, kBlockIoDeviceWeightFields);
}

Result<BlockIoDeviceRate> ParseBlockIoDeviceRate(const Json& value, const std::string& path) {
  return ParseRecord<BlockIoDeviceRate>(value, path, kBlockIoDeviceRateFields);
}

Result<BlockIoResources> ParseBlockIo(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  BlockIoResources block_io;
  HULL_OCI_CHECK(object.Read("weight", block_io.weight));
  HULL_OCI_CHECK(object.Read("leafWeight", block_io.leaf_weight));
  HULL_OCI_CHECK(
      object.ReadArray("weightDevice", block_io.weight_device, ParseBlockIoDeviceWeight));
  for (const auto& [key, devices] : kThrottleDevices) {
    HULL_OCI_CHECK(object.ReadArray(key, block_io.*devices, ParseBlockIoDeviceRate));
  }
  return block_io;
}

Result<Resources> ParseResourcesObject(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  Resources resources;
  HULL_OCI_CHECK(object.ReadArray("devices", resources.devices, ParseDeviceCgroupRule));
  HULL_OCI_CHECK(object.ReadObject("memory", resources.memory, ParseMemory));
  HULL_OCI_CHECK(object.ReadObject("cpu", resources.cpu, ParseCpu));
  HULL_OCI_CHECK(object.ReadObject("pids", resources.pids, ParsePids));
  HULL_OCI_CHECK(object.ReadObject("blockIO", resources.block_io, ParseBlockIo));
  HULL_OCI_CHECK(object.Read("unified", resources.unified));
  // Each key names a file in the container's cgroup directory; a '/' or ".."
  // would write somewhere else.
  for (const auto& [key, value] : resources.unified) {
    if (key.empty() || key == "." || key == ".." || key.find('/') != std::string::npos ||
        key.find('\0') != std::string::npos) {
      return Invalid(object.PathOf("unified"), "invalid cgroup file name " + Quote(key));
    }
  }
  return resources;
}

Result<SeccompArg> ParseSeccompArg(const Json& value, const std::string& path) {
  return ParseRecord<SeccompArg>(value, path, kSeccompArgFields);
}

Status CheckSeccompAction(const std::string& action, const std::string& path) {
  return CheckName(action, Contains(kSeccompActions, action), path, "seccomp action");
}

Result<SeccompSyscall> ParseSeccompSyscall(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  SeccompSyscall syscall;
  HULL_OCI_CHECK(object.Read("names", syscall.names));
  HULL_OCI_CHECK(object.Read("action", syscall.action));
  HULL_OCI_CHECK(CheckSeccompAction(syscall.action, object.PathOf("action")));
  HULL_OCI_CHECK(object.Read("errnoRet", syscall.errno_ret));
  HULL_OCI_CHECK(object.ReadArray("args", syscall.args, ParseSeccompArg));
  return syscall;
}

Result<Seccomp> ParseSeccomp(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  Seccomp seccomp;
  HULL_OCI_CHECK(object.Read("defaultAction", seccomp.default_action));
  HULL_OCI_CHECK(CheckSeccompAction(seccomp.default_action, object.PathOf("defaultAction")));
  HULL_OCI_CHECK(object.Read("defaultErrnoRet", seccomp.default_errno_ret));
  HULL_OCI_CHECK(object.Read("architectures", seccomp.architectures));
  HULL_OCI_CHECK(object.Read("flags", seccomp.flags));
  HULL_OCI_CHECK(object.ReadArray("syscalls", seccomp.syscalls, ParseSeccompSyscall));
  return seccomp;
}

Result<std::string> ToAbsolutePath(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(std::string text, ToString(value, path));
  if (!IsAbsolute(text)) return Invalid(path, "must be an absolute path");
  return text;
}

// A sysctl name, dotted ("net.ipv4.ip_forward") or slashed; it becomes a path
// under /proc/sys, so no component may be empty, "." or "..".
bool IsValidSysctlName(std::string_view name) {
  size_t start = 0;
  while (true) {
    size_t end = name.find_first_of("./", start);
    std::string_view component =
        name.substr(start, end == std::string_view::npos ? end : end - start);
    if (component.empty() || component.find('\0') != std::string_view::npos) return false;
    if (end == std::string_view::npos) return true;
    start = end + 1;
  }
}

Result<Linux> ParseLinux(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  Linux linux;
  HULL_OCI_CHECK(object.ReadArray("namespaces", linux.namespaces, ParseNamespace));
  std::set<std::string_view> namespace_types;
  for (size_t i = 0; i < linux.namespaces.size(); ++i) {
    if (!namespace_types.insert(linux.namespaces[i].type).second) {
      return Invalid(MemberPath(ElementPath(object.PathOf("namespaces"), i), "type"),
                     "duplicate namespace " + Quote(linux.namespaces[i].type));
    }
  }
  HULL_OCI_CHECK(object.ReadArray("uidMappings", linux.uid_mappings, ParseIdMapping));
  HULL_OCI_CHECK(object.ReadArray("gidMappings", linux.gid_mappings, ParseIdMapping));
  HULL_OCI_CHECK(object.ReadArray("devices", linux.devices, ParseDevice));
  HULL_OCI_CHECK(object.Read("cgroupsPath", linux.cgroups_path));
  HULL_OCI_CHECK(object.ReadObject("resources", linux.resources, ParseResourcesObject));
  HULL_OCI_CHECK(object.ReadObject("seccomp", linux.seccomp, ParseSeccomp));
  HULL_OCI_CHECK(object.Read("rootfsPropagation", linux.rootfs_propagation));
  if (!Contains(kRootfsPropagations, linux.rootfs_propagation)) {
    return Invalid(object.PathOf("rootfsPropagation"),
                   "unknown propagation " + Quote(linux.rootfs_propagation));
  }
  HULL_OCI_CHECK(object.ReadArray("maskedPaths", linux.masked_paths, ToAbsolutePath));
  HULL_OCI_CHECK(object.ReadArray("readonlyPaths", linux.readonly_paths, ToAbsolutePath));
  HULL_OCI_CHECK(object.Read("sysctl", linux.sysctl));
  for (const auto& [name, setting] : linux.sysctl) {
    if (!IsValidSysctlName(name)) {
      return Invalid(object.PathOf("sysctl"), "invalid sysctl name " + Quote(name));
    }
  }
  HULL_OCI_CHECK(object.Read("mountLabel", linux.mount_label));
  return linux;
}

// --- the whole spec -----------------------------------------------------------------

// "1.0.2", "1.1.0", "1.2.1", "1.0.2-dev", "1.0.0-rc5+build": 1.0 to 1.2, any patch.
bool IsSupportedVersion(std::string_view version) {
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  if (version.size() < 5 || version.substr(0, 2) != "1." || version[2] < '0' || version[2] > '2' ||
      version[3] != '.') {
    return false;
  }
  std::string_view rest = version.substr(4);
  size_t digits = 0;
  while (digits < rest.size() && is_digit(rest[digits])) ++digits;
  if (digits == 0) return false;
  rest.remove_prefix(digits);
  if (rest.empty()) return true;
  return (rest.front() == '-' || rest.front() == '+') && rest.size() > 1;
}

Result<Spec> ParseSpecObject(const Json& value) {
  if (!value.is_object()) return Invalid("config.json", "expected an object");
  HULL_OCI_ASSIGN(Object object, Object::Of(value, ""));
  Spec spec;
  if (object.Find("ociVersion") == nullptr) return Invalid("ociVersion", "is required");
  HULL_OCI_CHECK(object.Read("ociVersion", spec.oci_version));
  if (!IsSupportedVersion(spec.oci_version)) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "ociVersion " + Quote(spec.oci_version) + " is not supported (hull supports 1.0 to 1.2)");
  }
  HULL_OCI_CHECK(object.ReadObject("process", spec.process, ParseProcessObject));
  const Json* root = object.Find("root");
  if (root == nullptr) return Invalid("root", "is required");
  HULL_OCI_ASSIGN(spec.root, ParseRoot(*root, "root"));
  HULL_OCI_CHECK(object.Read("hostname", spec.hostname));
  HULL_OCI_CHECK(CheckUtsName(spec.hostname, "hostname"));
  HULL_OCI_CHECK(object.Read("domainname", spec.domainname));
  HULL_OCI_CHECK(CheckUtsName(spec.domainname, "domainname"));
  HULL_OCI_CHECK(object.ReadArray("mounts", spec.mounts, ParseMount));
  HULL_OCI_CHECK(object.ReadObject("linux", spec.linux, ParseLinux));
  HULL_OCI_CHECK(object.Read("annotations", spec.annotations));
  return spec;
}

// Only the SAX callback for errors matters: it gets the position and the
// parser's explanation, which json::parse(..., allow_exceptions=false) drops.
class SyntaxErrorCatcher : public nlohmann::json_sax<Json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&,
                   const nlohmann::json::exception& error) override {
    message = error.what();
    // Drop nlohmann's "[json.exception.parse_error.101] " prefix.
    if (size_t end = message.find("] ");
        !message.empty() && message.front() == '[' && end != std::string::npos) {
      message.erase(0, end + 2);
    }
    return false;
  }

  std::string message;
};

Result<Json> ParseJson(std::string_view text, std::string_view what) {
  Json document = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (!document.is_discarded()) return document;
  SyntaxErrorCatcher catcher;
  (void)Json::sax_parse(text.begin(), text.end(), &catcher);
  std::string message = std::string(what) + ": invalid JSON";
  if (!catcher.message.empty()) message += ": " + catcher.message;
  return MakeError(ErrorCode::kInvalidArgument, std::move(message));
}

}  // namespace

Result<Spec> ParseOciSpec(std::string_view json_text) {
  HULL_OCI_ASSIGN(Json document, ParseJson(json_text, "config.json"));
  return ParseSpecObject(document);
}

Result<Process> ParseOciProcess(std::string_view json_text) {
  HULL_OCI_ASSIGN(Json document, ParseJson(json_text, "process"));
  return ParseProcessObject(document, "process");
}

Result<Resources> ParseOciResources(std::string_view json_text) {
  HULL_OCI_ASSIGN(Json document, ParseJson(json_text, "linux.resources"));
  return ParseResourcesObject(document, "linux.resources");
}

}  // namespace hull::oci
