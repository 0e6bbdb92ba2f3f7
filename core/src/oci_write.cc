// The OCI runtime spec writer: a Spec or Process back to JSON, in runc's
// member order and with runc's omitempty rules, so that what hull writes
// reads like what runc writes.
#include <string>
#include <string_view>

#include "hull/core/oci_spec.h"
#include "oci_fields.h"
#include "oci_json.h"

namespace hull::oci {
namespace {

// Writers follow runc's Go types: members without omitempty are always written,
// the others only when set.
void PutString(OrderedJson& object, std::string_view key, const std::string& value) {
  if (!value.empty()) object[std::string(key)] = value;
}

void PutStrings(OrderedJson& object, std::string_view key, const std::vector<std::string>& values) {
  if (!values.empty()) object[std::string(key)] = values;
}

template <typename T>
void PutOptional(OrderedJson& object, std::string_view key, const std::optional<T>& value) {
  if (value) object[std::string(key)] = *value;
}

void PutMap(OrderedJson& object, std::string_view key,
            const std::map<std::string, std::string>& values) {
  if (values.empty()) return;
  OrderedJson& out = object[std::string(key)] = OrderedJson::object();
  for (const auto& [name, value] : values) out[name] = value;
}

template <typename T, typename Write>
void PutArray(OrderedJson& object, std::string_view key, const std::vector<T>& values,
              Write write) {
  if (values.empty()) return;
  OrderedJson& out = object[std::string(key)] = OrderedJson::array();
  for (const T& value : values) out.push_back(write(value));
}

OrderedJson WriteProcess(const Process& process) {
  OrderedJson out = OrderedJson::object();
  if (process.terminal) out["terminal"] = true;
  if (process.console_size)
    out["consoleSize"] = WriteFields(*process.console_size, kConsoleSizeFields);
  out["user"] = WriteFields(process.user, kUserFields);
  PutStrings(out, "args", process.args);
  PutStrings(out, "env", process.env);
  out["cwd"] = process.cwd;
  if (process.capabilities) {
    OrderedJson& capabilities = out["capabilities"] = OrderedJson::object();
    for (const auto& [key, set] : kCapabilitySets) {
      PutStrings(capabilities, key, (*process.capabilities).*set);
    }
  }
  PutArray(out, "rlimits", process.rlimits,
           [](const Rlimit& rlimit) { return WriteFields(rlimit, kRlimitFields); });
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
  if (resources.memory) out["memory"] = WriteFields(*resources.memory, kMemoryFields);
  if (resources.cpu) out["cpu"] = WriteFields(*resources.cpu, kCpuFields);
  if (resources.pids) out["pids"] = WriteFields(*resources.pids, kPidsFields);
  if (resources.block_io) {
    const BlockIoResources& block_io = *resources.block_io;
    OrderedJson& item = out["blockIO"] = OrderedJson::object();
    PutOptional(item, "weight", block_io.weight);
    PutOptional(item, "leafWeight", block_io.leaf_weight);
    PutArray(item, "weightDevice", block_io.weight_device, [](const BlockIoDeviceWeight& device) {
      return WriteFields(device, kBlockIoDeviceWeightFields);
    });
    for (const auto& [key, devices] : kThrottleDevices) {
      PutArray(item, key, block_io.*devices, [](const BlockIoDeviceRate& device) {
        return WriteFields(device, kBlockIoDeviceRateFields);
      });
    }
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
    PutArray(item, "args", syscall.args,
             [](const SeccompArg& arg) { return WriteFields(arg, kSeccompArgFields); });
    return item;
  });
  return out;
}

OrderedJson WriteLinux(const Linux& linux) {
  OrderedJson out = OrderedJson::object();
  auto write_mapping = [](const IdMapping& mapping) {
    return WriteFields(mapping, kIdMappingFields);
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
