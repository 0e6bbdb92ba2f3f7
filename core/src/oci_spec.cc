// The OCI runtime spec model: parsing with validation, the `runc spec`
// default, and serialisation.
//
// config.json comes from containerd (and, through ExecProcess and
// UpdateContainer, from whoever talks to it), so every member access checks
// the JSON type first: nlohmann::json throws on a mismatch (get<>, at()), and
// nothing here may throw or crash, whatever the bytes. Integers are taken only
// from JSON integers and are range-checked for the field they land in, the way
// Go's encoding/json (and so runc) decodes them.

#include "hull/core/oci_spec.h"

#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <concepts>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

namespace hull::oci {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

// Propagates an error unchanged: the message already names the field, so a
// context frame would only repeat it.
#define HULL_OCI_CHECK_IMPL(tmp, expr)                           \
  do {                                                           \
    auto tmp = (expr);                                           \
    if (!tmp) return ::hull::Unexpected{std::move(tmp).error()}; \
  } while (0)
#define HULL_OCI_CHECK(expr) HULL_OCI_CHECK_IMPL(HULL_CONCAT(hull_oci_ok_, __LINE__), expr)

#define HULL_OCI_ASSIGN_IMPL(tmp, lhs, expr)                   \
  auto tmp = (expr);                                           \
  if (!tmp) return ::hull::Unexpected{std::move(tmp).error()}; \
  lhs = std::move(tmp).value()
#define HULL_OCI_ASSIGN(lhs, expr) \
  HULL_OCI_ASSIGN_IMPL(HULL_CONCAT(hull_oci_tmp_, __LINE__), lhs, expr)

constexpr std::array<std::string_view, kLastKnownCapability + 1> kCapabilities = {
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
};

struct NamedRlimit {
  std::string_view name;
  int resource;
};
constexpr std::array<NamedRlimit, 16> kRlimits = {{
    {"RLIMIT_AS", RLIMIT_AS},
    {"RLIMIT_CORE", RLIMIT_CORE},
    {"RLIMIT_CPU", RLIMIT_CPU},
    {"RLIMIT_DATA", RLIMIT_DATA},
    {"RLIMIT_FSIZE", RLIMIT_FSIZE},
    {"RLIMIT_LOCKS", RLIMIT_LOCKS},
    {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
    {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
    {"RLIMIT_NICE", RLIMIT_NICE},
    {"RLIMIT_NOFILE", RLIMIT_NOFILE},
    {"RLIMIT_NPROC", RLIMIT_NPROC},
    {"RLIMIT_RSS", RLIMIT_RSS},
    {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
    {"RLIMIT_RTTIME", RLIMIT_RTTIME},
    {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
    {"RLIMIT_STACK", RLIMIT_STACK},
}};

constexpr std::array<std::string_view, 8> kNamespaceTypes = {"pid", "network", "mount",  "ipc",
                                                             "uts", "user",    "cgroup", "time"};

constexpr std::array<std::string_view, 9> kSeccompActions = {
    "SCMP_ACT_KILL",  "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",  "SCMP_ACT_ERRNO",        "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",          "SCMP_ACT_NOTIFY"};

constexpr std::array<std::string_view, 7> kSeccompOps = {
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE",       "SCMP_CMP_EQ",
    "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"};

// The values runc accepts (libcontainer's mountPropagationMapping).
constexpr std::array<std::string_view, 9> kRootfsPropagations = {
    "", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable"};

// seccomp(2) filters see six syscall arguments.
constexpr uint32_t kSeccompMaxArgs = 6;
// HOST_NAME_MAX: the limit of sethostname(2) and setdomainname(2).
constexpr size_t kMaxHostnameLength = 64;

template <size_t N>
bool Contains(const std::array<std::string_view, N>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// A user's value echoed in a message: quoted, cut short and with control
// characters escaped, so a hostile spec cannot flood or forge log lines.
std::string Quote(std::string_view value) {
  constexpr size_t kMaxEchoed = 64;
  bool cut = false;
  if (value.size() > kMaxEchoed) {
    size_t end = kMaxEchoed;
    // Do not split a UTF-8 sequence: the message may end up in a protobuf string.
    while (end > 0 && (static_cast<unsigned char>(value[end]) & 0xC0) == 0x80) --end;
    value = value.substr(0, end);
    cut = true;
  }
  std::string out = "`";
  for (char c : value) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
  out += cut ? "...`" : "`";
  return out;
}

Unexpected Invalid(const std::string& path, std::string_view what) {
  std::string message = path;
  message += ": ";
  message += what;
  return MakeError(ErrorCode::kInvalidArgument, std::move(message));
}

std::string MemberPath(const std::string& path, std::string_view key) {
  if (path.empty()) return std::string(key);
  std::string out = path;
  out += '.';
  out += key;
  return out;
}

std::string ElementPath(const std::string& path, size_t index) {
  return path + "[" + std::to_string(index) + "]";
}

// A required name from a fixed set: `known` says whether `value` is in it.
Status CheckName(const std::string& value, bool known, const std::string& path,
                 std::string_view kind, std::string_view hint = "") {
  if (value.empty()) return Invalid(path, "is required");
  if (known) return Ok();
  std::string what = "unknown ";
  what += kind;
  what += ' ';
  what += Quote(value);
  what += hint;
  return Invalid(path, what);
}

bool IsAbsolute(std::string_view path) { return !path.empty() && path.front() == '/'; }

// --- scalar conversions -------------------------------------------------------

Result<std::string> ToString(const Json& value, const std::string& path) {
  if (!value.is_string()) return Invalid(path, "expected a string");
  const auto& text = value.get_ref<const std::string&>();
  // A NUL would silently cut the string short at the next system call.
  if (text.find('\0') != std::string::npos) return Invalid(path, "must not contain a NUL byte");
  return text;
}

template <std::integral T>
requires(!std::same_as<T, bool>) std::string RangeText() {
  return "(" + std::to_string(std::numeric_limits<T>::min()) + " to " +
         std::to_string(std::numeric_limits<T>::max()) + ")";
}

// Only JSON integers: Go's encoding/json refuses 1024.0, "1024" and 1e3 for an
// integer field, and so do we.
template <std::integral T>
requires(!std::same_as<T, bool>) Result<T> ToInteger(const Json& value, const std::string& path) {
  if (value.is_number_unsigned()) {
    auto number = *value.get_ptr<const Json::number_unsigned_t*>();
    if (!std::in_range<T>(number)) {
      return Invalid(path, std::to_string(number) + " is out of range " + RangeText<T>());
    }
    return static_cast<T>(number);
  }
  if (value.is_number_integer()) {
    auto number = *value.get_ptr<const Json::number_integer_t*>();
    if (!std::in_range<T>(number)) {
      return Invalid(path, std::to_string(number) + " is out of range " + RangeText<T>());
    }
    return static_cast<T>(number);
  }
  return Invalid(path, "expected an integer");
}

Result<bool> ToBool(const Json& value, const std::string& path) {
  if (!value.is_boolean()) return Invalid(path, "expected a boolean");
  return value.get<bool>();
}

// --- objects ------------------------------------------------------------------

// A JSON object of the spec with its path, for checked access to its members.
class Object {
 public:
  static Result<Object> Of(const Json& value, std::string path) {
    if (!value.is_object()) return Invalid(path, "expected an object");
    return Object(value, std::move(path));
  }

  const std::string& path() const { return path_; }
  std::string PathOf(std::string_view key) const { return MemberPath(path_, key); }

  // The member `key`, or nullptr when it is absent or null (Go decodes a null
  // as the zero value, so runc treats it as absent).
  const Json* Find(std::string_view key) const {
    auto it = value_->find(key);
    if (it == value_->end() || it->is_null()) return nullptr;
    return &*it;
  }

  Status Read(std::string_view key, std::string& out) const {
    const Json* member = Find(key);
    if (member == nullptr) return Ok();
    HULL_OCI_ASSIGN(out, ToString(*member, PathOf(key)));
    return Ok();
  }

  Status Read(std::string_view key, bool& out) const {
    const Json* member = Find(key);
    if (member == nullptr) return Ok();
    HULL_OCI_ASSIGN(out, ToBool(*member, PathOf(key)));
    return Ok();
  }

  Status Read(std::string_view key, std::optional<bool>& out) const {
    const Json* member = Find(key);
    if (member == nullptr) return Ok();
    HULL_OCI_ASSIGN(out, ToBool(*member, PathOf(key)));
    return Ok();
  }

  template <std::integral T>
  requires(!std::same_as<T, bool>) Status Read(std::string_view key, T& out)
  const {
    const Json* member = Find(key);
    if (member == nullptr) return Ok();
    HULL_OCI_ASSIGN(out, ToInteger<T>(*member, PathOf(key)));
    return Ok();
  }

  template <std::integral T>
  requires(!std::same_as<T, bool>) Status Read(std::string_view key, std::optional<T>& out)
  const {
    const Json* member = Find(key);
    if (member == nullptr) return Ok();
    HULL_OCI_ASSIGN(out, ToInteger<T>(*member, PathOf(key)));
    return Ok();
  }

  Status Read(std::string_view key, std::vector<std::string>& out) const {
    return ReadArray(key, out, ToString);
  }

  template <std::integral T>
  requires(!std::same_as<T, bool>) Status Read(std::string_view key, std::vector<T>& out)
  const { return ReadArray(key, out, ToInteger<T>); }

  // A JSON object of strings (annotations, sysctl, unified).
  Status Read(std::string_view key, std::map<std::string, std::string>& out) const {
    const Json* member = Find(key);
    if (member == nullptr) return Ok();
    std::string path = PathOf(key);
    if (!member->is_object()) return Invalid(path, "expected an object");
    out.clear();
    for (const auto& [name, value] : member->items()) {
      std::string value_path = MemberPath(path, name);
      if (!value.is_string()) return Invalid(value_path, "expected a string");
      out.emplace(name, value.get_ref<const std::string&>());
    }
    return Ok();
  }

  // An array whose elements `parse(element, path)` turns into T.
  template <typename T, typename Parse>
  Status ReadArray(std::string_view key, std::vector<T>& out, Parse parse) const {
    const Json* member = Find(key);
    if (member == nullptr) return Ok();
    std::string path = PathOf(key);
    if (!member->is_array()) return Invalid(path, "expected an array");
    out.clear();
    out.reserve(member->size());
    size_t index = 0;
    for (const Json& element : *member) {
      HULL_OCI_ASSIGN(T item, parse(element, ElementPath(path, index)));
      out.push_back(std::move(item));
      ++index;
    }
    return Ok();
  }

  // A nested object that `parse(object, path)` turns into T.
  template <typename T, typename Parse>
  Status ReadObject(std::string_view key, std::optional<T>& out, Parse parse) const {
    const Json* member = Find(key);
    if (member == nullptr) return Ok();
    HULL_OCI_ASSIGN(out, parse(*member, PathOf(key)));
    return Ok();
  }

 private:
  Object(const Json& value, std::string path) : value_(&value), path_(std::move(path)) {}

  const Json* value_;
  std::string path_;
};

// --- process --------------------------------------------------------------------

Result<ConsoleSize> ParseConsoleSize(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  ConsoleSize size;
  HULL_OCI_CHECK(object.Read("height", size.height));
  HULL_OCI_CHECK(object.Read("width", size.width));
  return size;
}

Result<User> ParseUser(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  User user;
  HULL_OCI_CHECK(object.Read("uid", user.uid));
  HULL_OCI_CHECK(object.Read("gid", user.gid));
  HULL_OCI_CHECK(object.Read("umask", user.umask));
  HULL_OCI_CHECK(object.Read("additionalGids", user.additional_gids));
  return user;
}

Result<std::string> ToCapability(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(std::string name, ToString(value, path));
  if (!CapabilityNumber(name)) return Invalid(path, "unknown capability " + Quote(name));
  return name;
}

Result<Capabilities> ParseCapabilities(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  Capabilities capabilities;
  HULL_OCI_CHECK(object.ReadArray("bounding", capabilities.bounding, ToCapability));
  HULL_OCI_CHECK(object.ReadArray("effective", capabilities.effective, ToCapability));
  HULL_OCI_CHECK(object.ReadArray("inheritable", capabilities.inheritable, ToCapability));
  HULL_OCI_CHECK(object.ReadArray("permitted", capabilities.permitted, ToCapability));
  HULL_OCI_CHECK(object.ReadArray("ambient", capabilities.ambient, ToCapability));
  return capabilities;
}

Result<Rlimit> ParseRlimit(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  Rlimit rlimit;
  HULL_OCI_CHECK(object.Read("type", rlimit.type));
  HULL_OCI_CHECK(object.Read("hard", rlimit.hard));
  HULL_OCI_CHECK(object.Read("soft", rlimit.soft));
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
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  IdMapping mapping;
  HULL_OCI_CHECK(object.Read("containerID", mapping.container_id));
  HULL_OCI_CHECK(object.Read("hostID", mapping.host_id));
  HULL_OCI_CHECK(object.Read("size", mapping.size));
  return mapping;
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

// Byte counts where -1 means unlimited.
Status CheckByteLimit(const std::optional<int64_t>& value, const std::string& path) {
  if (value && *value < -1) {
    return Invalid(path, std::to_string(*value) + " is neither a byte count nor -1 (unlimited)");
  }
  return Ok();
}

Result<MemoryResources> ParseMemory(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  MemoryResources memory;
  HULL_OCI_CHECK(object.Read("limit", memory.limit));
  HULL_OCI_CHECK(CheckByteLimit(memory.limit, object.PathOf("limit")));
  HULL_OCI_CHECK(object.Read("reservation", memory.reservation));
  HULL_OCI_CHECK(CheckByteLimit(memory.reservation, object.PathOf("reservation")));
  HULL_OCI_CHECK(object.Read("swap", memory.swap));
  HULL_OCI_CHECK(CheckByteLimit(memory.swap, object.PathOf("swap")));
  HULL_OCI_CHECK(object.Read("kernel", memory.kernel));
  HULL_OCI_CHECK(object.Read("swappiness", memory.swappiness));
  HULL_OCI_CHECK(object.Read("disableOOMKiller", memory.disable_oom_killer));
  return memory;
}

Result<CpuResources> ParseCpu(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  CpuResources cpu;
  HULL_OCI_CHECK(object.Read("shares", cpu.shares));
  HULL_OCI_CHECK(object.Read("quota", cpu.quota));
  HULL_OCI_CHECK(object.Read("period", cpu.period));
  HULL_OCI_CHECK(object.Read("realtimeRuntime", cpu.realtime_runtime));
  HULL_OCI_CHECK(object.Read("realtimePeriod", cpu.realtime_period));
  HULL_OCI_CHECK(object.Read("cpus", cpu.cpus));
  HULL_OCI_CHECK(object.Read("mems", cpu.mems));
  HULL_OCI_CHECK(object.Read("idle", cpu.idle));
  return cpu;
}

Result<PidsResources> ParsePids(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  PidsResources pids;
  HULL_OCI_CHECK(object.Read("limit", pids.limit));
  return pids;
}

Result<BlockIoDeviceWeight> ParseBlockIoDeviceWeight(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  BlockIoDeviceWeight device;
  HULL_OCI_CHECK(object.Read("major", device.major));
  HULL_OCI_CHECK(object.Read("minor", device.minor));
  HULL_OCI_CHECK(object.Read("weight", device.weight));
  HULL_OCI_CHECK(object.Read("leafWeight", device.leaf_weight));
  return device;
}

Result<BlockIoDeviceRate> ParseBlockIoDeviceRate(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  BlockIoDeviceRate device;
  HULL_OCI_CHECK(object.Read("major", device.major));
  HULL_OCI_CHECK(object.Read("minor", device.minor));
  HULL_OCI_CHECK(object.Read("rate", device.rate));
  return device;
}

Result<BlockIoResources> ParseBlockIo(const Json& value, const std::string& path) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  BlockIoResources block_io;
  HULL_OCI_CHECK(object.Read("weight", block_io.weight));
  HULL_OCI_CHECK(object.Read("leafWeight", block_io.leaf_weight));
  HULL_OCI_CHECK(
      object.ReadArray("weightDevice", block_io.weight_device, ParseBlockIoDeviceWeight));
  HULL_OCI_CHECK(object.ReadArray("throttleReadBpsDevice", block_io.throttle_read_bps_device,
                                  ParseBlockIoDeviceRate));
  HULL_OCI_CHECK(object.ReadArray("throttleWriteBpsDevice", block_io.throttle_write_bps_device,
                                  ParseBlockIoDeviceRate));
  HULL_OCI_CHECK(object.ReadArray("throttleReadIOPSDevice", block_io.throttle_read_iops_device,
                                  ParseBlockIoDeviceRate));
  HULL_OCI_CHECK(object.ReadArray("throttleWriteIOPSDevice", block_io.throttle_write_iops_device,
                                  ParseBlockIoDeviceRate));
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
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  SeccompArg arg;
  HULL_OCI_CHECK(object.Read("index", arg.index));
  if (arg.index >= kSeccompMaxArgs) {
    return Invalid(object.PathOf("index"), std::to_string(arg.index) + " is out of range (0 to " +
                                               std::to_string(kSeccompMaxArgs - 1) + ")");
  }
  HULL_OCI_CHECK(object.Read("value", arg.value));
  HULL_OCI_CHECK(object.Read("valueTwo", arg.value_two));
  HULL_OCI_CHECK(object.Read("op", arg.op));
  HULL_OCI_CHECK(
      CheckName(arg.op, Contains(kSeccompOps, arg.op), object.PathOf("op"), "seccomp operator"));
  return arg;
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

// --- serialisation --------------------------------------------------------------------

// Writers follow runc's Go types: members without omitempty are always written,
// the others only when set.
void PutString(OrderedJson& object, const char* key, const std::string& value) {
  if (!value.empty()) object[key] = value;
}

void PutStrings(OrderedJson& object, const char* key, const std::vector<std::string>& values) {
  if (!values.empty()) object[key] = values;
}

template <typename T>
void PutOptional(OrderedJson& object, const char* key, const std::optional<T>& value) {
  if (value) object[key] = *value;
}

void PutMap(OrderedJson& object, const char* key,
            const std::map<std::string, std::string>& values) {
  if (values.empty()) return;
  OrderedJson& out = object[key] = OrderedJson::object();
  for (const auto& [name, value] : values) out[name] = value;
}

template <typename T, typename Write>
void PutArray(OrderedJson& object, const char* key, const std::vector<T>& values, Write write) {
  if (values.empty()) return;
  OrderedJson& out = object[key] = OrderedJson::array();
  for (const T& value : values) out.push_back(write(value));
}

OrderedJson WriteProcess(const Process& process) {
  OrderedJson out = OrderedJson::object();
  if (process.terminal) out["terminal"] = true;
  if (process.console_size) {
    out["consoleSize"] = {{"height", process.console_size->height},
                          {"width", process.console_size->width}};
  }
  OrderedJson& user = out["user"] = {{"uid", process.user.uid}, {"gid", process.user.gid}};
  PutOptional(user, "umask", process.user.umask);
  if (!process.user.additional_gids.empty()) user["additionalGids"] = process.user.additional_gids;
  PutStrings(out, "args", process.args);
  PutStrings(out, "env", process.env);
  out["cwd"] = process.cwd;
  if (process.capabilities) {
    OrderedJson& capabilities = out["capabilities"] = OrderedJson::object();
    PutStrings(capabilities, "bounding", process.capabilities->bounding);
    PutStrings(capabilities, "effective", process.capabilities->effective);
    PutStrings(capabilities, "inheritable", process.capabilities->inheritable);
    PutStrings(capabilities, "permitted", process.capabilities->permitted);
    PutStrings(capabilities, "ambient", process.capabilities->ambient);
  }
  PutArray(out, "rlimits", process.rlimits, [](const Rlimit& rlimit) {
    return OrderedJson{{"type", rlimit.type}, {"hard", rlimit.hard}, {"soft", rlimit.soft}};
  });
  if (process.no_new_privileges) out["noNewPrivileges"] = true;
  PutOptional(out, "oomScoreAdj", process.oom_score_adj);
  PutString(out, "apparmorProfile", process.apparmor_profile);
  PutString(out, "selinuxLabel", process.selinux_label);
  return out;
}

OrderedJson WriteResources(const Resources& resources) {
  OrderedJson out = OrderedJson::object();
  PutArray(out, "devices", resources.devices, [](const DeviceCgroupRule& rule) {
    OrderedJson item = {{"allow", rule.allow}};
    PutString(item, "type", rule.type);
    PutOptional(item, "major", rule.major);
    PutOptional(item, "minor", rule.minor);
    PutString(item, "access", rule.access);
    return item;
  });
  if (resources.memory) {
    const MemoryResources& memory = *resources.memory;
    OrderedJson& item = out["memory"] = OrderedJson::object();
    PutOptional(item, "limit", memory.limit);
    PutOptional(item, "reservation", memory.reservation);
    PutOptional(item, "swap", memory.swap);
    PutOptional(item, "kernel", memory.kernel);
    PutOptional(item, "swappiness", memory.swappiness);
    PutOptional(item, "disableOOMKiller", memory.disable_oom_killer);
  }
  if (resources.cpu) {
    const CpuResources& cpu = *resources.cpu;
    OrderedJson& item = out["cpu"] = OrderedJson::object();
    PutOptional(item, "shares", cpu.shares);
    PutOptional(item, "quota", cpu.quota);
    PutOptional(item, "period", cpu.period);
    PutOptional(item, "realtimeRuntime", cpu.realtime_runtime);
    PutOptional(item, "realtimePeriod", cpu.realtime_period);
    PutString(item, "cpus", cpu.cpus);
    PutString(item, "mems", cpu.mems);
    PutOptional(item, "idle", cpu.idle);
  }
  if (resources.pids) out["pids"] = {{"limit", resources.pids->limit}};
  if (resources.block_io) {
    const BlockIoResources& block_io = *resources.block_io;
    OrderedJson& item = out["blockIO"] = OrderedJson::object();
    PutOptional(item, "weight", block_io.weight);
    PutOptional(item, "leafWeight", block_io.leaf_weight);
    PutArray(item, "weightDevice", block_io.weight_device, [](const BlockIoDeviceWeight& device) {
      OrderedJson entry = {{"major", device.major}, {"minor", device.minor}};
      PutOptional(entry, "weight", device.weight);
      PutOptional(entry, "leafWeight", device.leaf_weight);
      return entry;
    });
    auto write_rate = [](const BlockIoDeviceRate& device) {
      return OrderedJson{{"major", device.major}, {"minor", device.minor}, {"rate", device.rate}};
    };
    PutArray(item, "throttleReadBpsDevice", block_io.throttle_read_bps_device, write_rate);
    PutArray(item, "throttleWriteBpsDevice", block_io.throttle_write_bps_device, write_rate);
    PutArray(item, "throttleReadIOPSDevice", block_io.throttle_read_iops_device, write_rate);
    PutArray(item, "throttleWriteIOPSDevice", block_io.throttle_write_iops_device, write_rate);
  }
  PutMap(out, "unified", resources.unified);
  return out;
}

OrderedJson WriteSeccomp(const Seccomp& seccomp) {
  OrderedJson out = {{"defaultAction", seccomp.default_action}};
  PutOptional(out, "defaultErrnoRet", seccomp.default_errno_ret);
  PutStrings(out, "architectures", seccomp.architectures);
  PutStrings(out, "flags", seccomp.flags);
  PutArray(out, "syscalls", seccomp.syscalls, [](const SeccompSyscall& syscall) {
    OrderedJson item = {{"names", syscall.names}, {"action", syscall.action}};
    PutOptional(item, "errnoRet", syscall.errno_ret);
    PutArray(item, "args", syscall.args, [](const SeccompArg& arg) {
      OrderedJson entry = {{"index", arg.index}, {"value", arg.value}};
      if (arg.value_two != 0) entry["valueTwo"] = arg.value_two;
      entry["op"] = arg.op;
      return entry;
    });
    return item;
  });
  return out;
}

OrderedJson WriteLinux(const Linux& linux) {
  OrderedJson out = OrderedJson::object();
  auto write_mapping = [](const IdMapping& mapping) {
    return OrderedJson{
        {"containerID", mapping.container_id}, {"hostID", mapping.host_id}, {"size", mapping.size}};
  };
  PutArray(out, "uidMappings", linux.uid_mappings, write_mapping);
  PutArray(out, "gidMappings", linux.gid_mappings, write_mapping);
  PutMap(out, "sysctl", linux.sysctl);
  if (linux.resources) out["resources"] = WriteResources(*linux.resources);
  PutString(out, "cgroupsPath", linux.cgroups_path);
  PutArray(out, "namespaces", linux.namespaces, [](const Namespace& ns) {
    OrderedJson item = {{"type", ns.type}};
    PutString(item, "path", ns.path);
    return item;
  });
  PutArray(out, "devices", linux.devices, [](const Device& device) {
    OrderedJson item = {{"type", device.type}, {"path", device.path}};
    if (device.major != 0) item["major"] = device.major;
    if (device.minor != 0) item["minor"] = device.minor;
    PutOptional(item, "fileMode", device.file_mode);
    PutOptional(item, "uid", device.uid);
    PutOptional(item, "gid", device.gid);
    return item;
  });
  if (linux.seccomp) out["seccomp"] = WriteSeccomp(*linux.seccomp);
  PutString(out, "rootfsPropagation", linux.rootfs_propagation);
  PutStrings(out, "maskedPaths", linux.masked_paths);
  PutStrings(out, "readonlyPaths", linux.readonly_paths);
  PutString(out, "mountLabel", linux.mount_label);
  return out;
}

}  // namespace

std::optional<int> CapabilityNumber(std::string_view name) {
  auto it = std::find(kCapabilities.begin(), kCapabilities.end(), name);
  if (it == kCapabilities.end()) return std::nullopt;
  return static_cast<int>(it - kCapabilities.begin());
}

std::optional<int> RlimitResource(std::string_view name) {
  for (const NamedRlimit& rlimit : kRlimits) {
    if (rlimit.name == name) return rlimit.resource;
  }
  return std::nullopt;
}

const char* CapabilityName(int number) {
  if (number < 0 || number > kLastKnownCapability) return "";
  return kCapabilities[static_cast<size_t>(number)].data();  // a literal: NUL-terminated
}

const char* RlimitName(int resource) {
  for (const NamedRlimit& rlimit : kRlimits) {
    if (rlimit.resource == resource) return rlimit.name.data();  // a literal: NUL-terminated
  }
  return "";
}

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

Spec DefaultSpec(std::vector<std::string> args, bool terminal) {
  const std::vector<std::string> default_capabilities = {"CAP_AUDIT_WRITE", "CAP_KILL",
                                                         "CAP_NET_BIND_SERVICE"};
  Spec spec;
  spec.oci_version = "1.0.2-dev";

  Process& process = spec.process.emplace();
  process.terminal = terminal;
  process.args = args.empty() ? std::vector<std::string>{"sh"} : std::move(args);
  process.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"};
  process.cwd = "/";
  Capabilities& capabilities = process.capabilities.emplace();
  capabilities.bounding = default_capabilities;
  capabilities.effective = default_capabilities;
  capabilities.permitted = default_capabilities;
  capabilities.ambient = default_capabilities;
  process.rlimits = {Rlimit{.type = "RLIMIT_NOFILE", .hard = 1024, .soft = 1024}};
  process.no_new_privileges = true;

  spec.root = Root{.path = "rootfs", .readonly = true};
  spec.hostname = "hull";
  spec.mounts = {
      {.destination = "/proc", .type = "proc", .source = "proc", .options = {}},
      {.destination = "/dev",
       .type = "tmpfs",
       .source = "tmpfs",
       .options = {"nosuid", "strictatime", "mode=755", "size=65536k"}},
      {.destination = "/dev/pts",
       .type = "devpts",
       .source = "devpts",
       .options = {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
      {.destination = "/dev/shm",
       .type = "tmpfs",
       .source = "shm",
       .options = {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
      {.destination = "/dev/mqueue",
       .type = "mqueue",
       .source = "mqueue",
       .options = {"nosuid", "noexec", "nodev"}},
      {.destination = "/sys",
       .type = "sysfs",
       .source = "sysfs",
       .options = {"nosuid", "noexec", "nodev", "ro"}},
      {.destination = "/sys/fs/cgroup",
       .type = "cgroup",
       .source = "cgroup",
       .options = {"nosuid", "noexec", "nodev", "relatime", "ro"}},
  };

  Linux& linux = spec.linux.emplace();
  Resources& resources = linux.resources.emplace();
  resources.devices = {DeviceCgroupRule{.allow = false, .access = "rwm"}};
  for (const char* type : {"pid", "network", "ipc", "uts", "mount"}) {
    linux.namespaces.push_back(Namespace{.type = type, .path = {}});
  }
  linux.masked_paths = {"/proc/acpi",        "/proc/asound",        "/proc/kcore",
                        "/proc/keys",        "/proc/latency_stats", "/proc/timer_list",
                        "/proc/timer_stats", "/proc/sched_debug",   "/sys/firmware",
                        "/proc/scsi"};
  linux.readonly_paths = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
  return spec;
}

std::string SerializeOciProcess(const Process& process) {
  return WriteProcess(process).dump(1, '\t', false, OrderedJson::error_handler_t::replace);
}

std::string SerializeOciSpec(const Spec& spec) {
  OrderedJson out = {{"ociVersion", spec.oci_version}};
  if (spec.process) out["process"] = WriteProcess(*spec.process);
  OrderedJson& root = out["root"] = {{"path", spec.root.path}};
  if (spec.root.readonly) root["readonly"] = true;
  PutString(out, "hostname", spec.hostname);
  PutString(out, "domainname", spec.domainname);
  PutArray(out, "mounts", spec.mounts, [](const Mount& mount) {
    OrderedJson item = {{"destination", mount.destination}};
    PutString(item, "type", mount.type);
    PutString(item, "source", mount.source);
    PutStrings(item, "options", mount.options);
    return item;
  });
  PutMap(out, "annotations", spec.annotations);
  if (spec.linux) out["linux"] = WriteLinux(*spec.linux);
  // A Spec built in code (args from a command line) may hold invalid UTF-8,
  // which dump() would throw on; replace it instead.
  return out.dump(1, '\t', /*ensure_ascii=*/false, OrderedJson::error_handler_t::replace);
}

}  // namespace hull::oci
