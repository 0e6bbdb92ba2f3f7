#include "engine/security.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <string>
#include <string_view>

#include "hull/core/fd.h"
#include "hull/core/log.h"
#include "hull/core/sys.h"
#include "hull/core/syscall.h"

namespace hull::engine {
namespace {

// ---- seccomp (parent side) --------------------------------------------------

// Frees a libseccomp filter context.
class SeccompContext {
 public:
  explicit SeccompContext(scmp_filter_ctx ctx) : ctx_(ctx) {}
  SeccompContext(const SeccompContext&) = delete;
  SeccompContext& operator=(const SeccompContext&) = delete;
  ~SeccompContext() {
    if (ctx_ != nullptr) seccomp_release(ctx_);
  }
  scmp_filter_ctx get() const { return ctx_; }

 private:
  scmp_filter_ctx ctx_;
};

// libseccomp returns negative errnos.
Unexpected LibseccompError(std::string message, int rc) {
  return ErrnoError(std::move(message), -rc);
}

std::string Quoted(std::string_view s) { return "`" + std::string(s) + "`"; }

// The largest errno the kernel passes through (larger SECCOMP_RET_ERRNO data
// is clamped to MAX_ERRNO).
constexpr uint32_t kMaxErrno = 4095;

// Maps an OCI action (and its errnoRet) to a libseccomp action. `where` names
// the spec field for messages.
Result<uint32_t> SeccompAction(std::string_view action, std::optional<uint32_t> errno_ret,
                               const std::string& where) {
  auto with_errno = [&](uint32_t base, uint32_t fallback) -> Result<uint32_t> {
    uint32_t value = errno_ret.value_or(fallback);
    if (value > kMaxErrno) {
      return MakeError(ErrorCode::kInvalidArgument, where + ": errnoRet " + std::to_string(value) +
                                                        " is out of range (max " +
                                                        std::to_string(kMaxErrno) + ")");
    }
    return base | value;
  };
  auto without_errno = [&](uint32_t value) -> Result<uint32_t> {
    // runtime-spec: "When the action doesn't support an errno, the runtime
    // MUST print an error and fail."
    if (errno_ret) {
      return MakeError(ErrorCode::kInvalidArgument,
                       where + ": errnoRet is not supported with action " + Quoted(action));
    }
    return value;
  };

  if (action == "SCMP_ACT_ALLOW") return without_errno(SCMP_ACT_ALLOW);
  if (action == "SCMP_ACT_ERRNO") return with_errno(SCMP_ACT_ERRNO(0), EPERM);
  if (action == "SCMP_ACT_KILL" || action == "SCMP_ACT_KILL_THREAD") {
    return without_errno(SCMP_ACT_KILL_THREAD);
  }
  if (action == "SCMP_ACT_KILL_PROCESS") return without_errno(SCMP_ACT_KILL_PROCESS);
  if (action == "SCMP_ACT_LOG") return without_errno(SCMP_ACT_LOG);
  // As runc: TRACE defaults to EPERM (what the tracee sees with no tracer
  // attached is ENOSYS regardless); TRAP carries the value in si_errno.
  if (action == "SCMP_ACT_TRACE") return with_errno(SCMP_ACT_TRACE(0), EPERM);
  if (action == "SCMP_ACT_TRAP") return with_errno(SCMP_ACT_TRAP, 0);
  if (action == "SCMP_ACT_NOTIFY") {
    return MakeError(ErrorCode::kUnimplemented,
                     where +
                         ": action SCMP_ACT_NOTIFY is not supported by hull (no seccomp "
                         "notification agent)");
  }
  return MakeError(ErrorCode::kInvalidArgument, where + ": unknown action " + Quoted(action));
}

Result<uint32_t> SeccompArch(std::string_view name, const std::string& where) {
  static constexpr std::pair<std::string_view, uint32_t> kArchs[] = {
      {"SCMP_ARCH_NATIVE", SCMP_ARCH_NATIVE},
      {"SCMP_ARCH_X86", SCMP_ARCH_X86},
      {"SCMP_ARCH_X86_64", SCMP_ARCH_X86_64},
      {"SCMP_ARCH_X32", SCMP_ARCH_X32},
      {"SCMP_ARCH_ARM", SCMP_ARCH_ARM},
      {"SCMP_ARCH_AARCH64", SCMP_ARCH_AARCH64},
      {"SCMP_ARCH_MIPS", SCMP_ARCH_MIPS},
      {"SCMP_ARCH_MIPS64", SCMP_ARCH_MIPS64},
      {"SCMP_ARCH_MIPS64N32", SCMP_ARCH_MIPS64N32},
      {"SCMP_ARCH_MIPSEL", SCMP_ARCH_MIPSEL},
      {"SCMP_ARCH_MIPSEL64", SCMP_ARCH_MIPSEL64},
      {"SCMP_ARCH_MIPSEL64N32", SCMP_ARCH_MIPSEL64N32},
      {"SCMP_ARCH_PPC", SCMP_ARCH_PPC},
      {"SCMP_ARCH_PPC64", SCMP_ARCH_PPC64},
      {"SCMP_ARCH_PPC64LE", SCMP_ARCH_PPC64LE},
      {"SCMP_ARCH_S390", SCMP_ARCH_S390},
      {"SCMP_ARCH_S390X", SCMP_ARCH_S390X},
      {"SCMP_ARCH_PARISC", SCMP_ARCH_PARISC},
      {"SCMP_ARCH_PARISC64", SCMP_ARCH_PARISC64},
      {"SCMP_ARCH_RISCV64", SCMP_ARCH_RISCV64},
  };
  for (const auto& [arch_name, token] : kArchs) {
    if (arch_name == name) return token;
  }
  return MakeError(ErrorCode::kInvalidArgument, where + ": unknown architecture " + Quoted(name));
}

Result<scmp_compare> SeccompOperator(std::string_view op, const std::string& where) {
  static constexpr std::pair<std::string_view, scmp_compare> kOps[] = {
      {"SCMP_CMP_NE", SCMP_CMP_NE},
      {"SCMP_CMP_LT", SCMP_CMP_LT},
      {"SCMP_CMP_LE", SCMP_CMP_LE},
      {"SCMP_CMP_EQ", SCMP_CMP_EQ},
      {"SCMP_CMP_GE", SCMP_CMP_GE},
      {"SCMP_CMP_GT", SCMP_CMP_GT},
      {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
  };
  for (const auto& [op_name, value] : kOps) {
    if (op_name == op) return value;
  }
  return MakeError(ErrorCode::kInvalidArgument, where + ": unknown operator " + Quoted(op));
}

Result<unsigned int> SeccompFlag(std::string_view flag, const std::string& where) {
  // TSYNC is harmless (the container process is single-threaded when it loads
  // the filter); runc accepts it and relies on libseccomp's TSYNC.
  if (flag == "SECCOMP_FILTER_FLAG_TSYNC") return SECCOMP_FILTER_FLAG_TSYNC;
  if (flag == "SECCOMP_FILTER_FLAG_LOG") return SECCOMP_FILTER_FLAG_LOG;
  if (flag == "SECCOMP_FILTER_FLAG_SPEC_ALLOW") return SECCOMP_FILTER_FLAG_SPEC_ALLOW;
  if (flag == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV") {
    return MakeError(
        ErrorCode::kUnimplemented,
        where + ": " + Quoted(flag) + " applies to SCMP_ACT_NOTIFY, which hull does not support");
  }
  return MakeError(ErrorCode::kInvalidArgument, where + ": unknown flag " + Quoted(flag));
}

// seccomp_export_bpf writes to a file descriptor; a memfd turns it back into
// memory.
Result<std::vector<struct sock_filter>> ExportBpf(scmp_filter_ctx ctx) {
  UniqueFd fd(sys::MemfdCreate("hull-seccomp", MFD_CLOEXEC));
  if (!fd) return ErrnoError("memfd_create");
  if (int rc = seccomp_export_bpf(ctx, fd.get()); rc < 0) {
    return LibseccompError("seccomp_export_bpf", rc);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) return ErrnoError("fstat seccomp memfd");
  size_t size = static_cast<size_t>(st.st_size);
  if (size == 0 || size % sizeof(struct sock_filter) != 0) {
    return MakeError(ErrorCode::kInternal, "seccomp_export_bpf wrote " + std::to_string(size) +
                                               " bytes, not a whole number of BPF instructions");
  }
  std::vector<struct sock_filter> filter(size / sizeof(struct sock_filter));
  size_t done = 0;
  auto* bytes = reinterpret_cast<char*>(filter.data());
  while (done < size) {
    ssize_t n = RetryEintr(
        [&] { return ::pread(fd.get(), bytes + done, size - done, static_cast<off_t>(done)); });
    if (n < 0) return ErrnoError("read seccomp memfd");
    if (n == 0) return MakeError(ErrorCode::kInternal, "short read of the seccomp memfd");
    done += static_cast<size_t>(n);
  }
  if (filter.size() > BPF_MAXINSNS) {
    return MakeError(ErrorCode::kInvalidArgument, "linux.seccomp: the compiled filter has " +
                                                      std::to_string(filter.size()) +
                                                      " instructions; the kernel accepts at most " +
                                                      std::to_string(BPF_MAXINSNS));
  }
  return filter;
}

// Adds the rules of one syscall name, as runc's matchCall does.
Status AddSyscallRule(scmp_filter_ctx ctx, int number, uint32_t action,
                      const std::vector<scmp_arg_cmp>& conditions, bool same_index_twice,
                      const std::string& where) {
  if (conditions.empty()) {
    if (int rc = seccomp_rule_add_array(ctx, action, number, 0, nullptr); rc < 0) {
      return LibseccompError(where + ": seccomp_rule_add", rc);
    }
    return Ok();
  }
  if (same_index_twice) {
    // libseccomp ANDs the conditions of one rule and cannot hold two on the
    // same argument; runc then adds one rule per condition, which ORs them.
    for (const scmp_arg_cmp& condition : conditions) {
      if (int rc = seccomp_rule_add_array(ctx, action, number, 1, &condition); rc < 0) {
        return LibseccompError(where + ": seccomp_rule_add", rc);
      }
    }
    return Ok();
  }
  if (int rc = seccomp_rule_add_array(
          ctx, action, number, static_cast<unsigned int>(conditions.size()), conditions.data());
      rc < 0) {
    return LibseccompError(where + ": seccomp_rule_add", rc);
  }
  return Ok();
}

// ---- capabilities (parent side) -----------------------------------------------

constexpr int kKnownLastCap = oci::kLastKnownCapability;
static_assert(kKnownLastCap == CAP_CHECKPOINT_RESTORE, "oci::kLastKnownCapability is out of step");
static_assert(kKnownLastCap < 64, "capability masks are 64 bits");

Result<int> ReadLastCap() {
  constexpr const char* kPath = "/proc/sys/kernel/cap_last_cap";
  HULL_TRY(std::string text, ReadFile(kPath, 64), "read capability count");
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  int value = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0 || value > 63) {
    return MakeError(ErrorCode::kInternal,
                     std::string(kPath) + ": unexpected contents " + Quoted(text));
  }
  return value;
}

// Names to a mask; `field` is "bounding", "effective", ...
Result<uint64_t> CapabilityMask(const std::vector<std::string>& names, std::string_view field,
                                int last_cap) {
  uint64_t mask = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    int cap = oci::CapabilityNumber(name).value_or(-1);
    if (cap < 0) {
      return MakeError(ErrorCode::kInvalidArgument, "process.capabilities." + std::string(field) +
                                                        "[" + std::to_string(i) +
                                                        "]: unknown capability " + Quoted(name));
    }
    if (cap > last_cap) {
      HULL_LOG_DEBUG(
          "process.capabilities.{}: {} is not supported by the running kernel "
          "(cap_last_cap {}); ignored",
          field, name, last_cap);
      continue;
    }
    mask |= uint64_t{1} << cap;
  }
  return mask;
}

std::string CapabilityList(uint64_t mask) {
  std::string out;
  for (int c = 0; c <= kKnownLastCap; ++c) {
    if ((mask & (uint64_t{1} << c)) == 0) continue;
    if (!out.empty()) out += ", ";
    out += oci::CapabilityName(c);
  }
  return out;
}

// ---- rlimits (parent side) ------------------------------------------------------

// ---- child side -------------------------------------------------------------------

// The child reports failures as an errno value (0: done); the raw calls
// (hull/core/sys.h) avoid glibc's set*id broadcast after clone(2).
inline int RawResult(int rc) noexcept { return rc < 0 ? errno : 0; }

inline int Prctl(int option, unsigned long arg2, unsigned long arg3 = 0) noexcept {
  return RawResult(sys::Prctl(option, arg2, arg3));
}

inline void SetStep(const char** failed_step, const char* step) noexcept {
  if (failed_step != nullptr) *failed_step = step;
}

}  // namespace

// ---- seccomp ------------------------------------------------------------------------

Result<SeccompProgram> CompileSeccomp(const oci::Seccomp& spec) {
  SeccompProgram program;

  HULL_TRY(
      uint32_t default_action,
      SeccompAction(spec.default_action, spec.default_errno_ret, "linux.seccomp.defaultAction"),
      "compile seccomp profile");

  for (size_t i = 0; i < spec.flags.size(); ++i) {
    HULL_TRY(unsigned int flag,
             SeccompFlag(spec.flags[i], "linux.seccomp.flags[" + std::to_string(i) + "]"),
             "compile seccomp profile");
    program.flags |= flag;
  }

  SeccompContext ctx(seccomp_init(default_action));
  if (ctx.get() == nullptr) {
    return MakeError(ErrorCode::kInternal,
                     "seccomp_init failed (default action " + Quoted(spec.default_action) + ")");
  }
  // hull sets no_new_privs itself, when the spec asks (the attribute only
  // matters to seccomp_load, which hull does not use, but be explicit).
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0); rc < 0) {
    return LibseccompError("seccomp_attr_set(CTL_NNP)", rc);
  }

  for (size_t i = 0; i < spec.architectures.size(); ++i) {
    std::string where = "linux.seccomp.architectures[" + std::to_string(i) + "]";
    HULL_TRY(uint32_t arch, SeccompArch(spec.architectures[i], where), "compile seccomp profile");
    int rc = seccomp_arch_add(ctx.get(), arch);
    // The native architecture is always there; listing it again is fine.
    if (rc < 0 && rc != -EEXIST) {
      return LibseccompError(where + ": add architecture " + Quoted(spec.architectures[i]), rc);
    }
  }

  for (size_t i = 0; i < spec.syscalls.size(); ++i) {
    const oci::SeccompSyscall& syscall = spec.syscalls[i];
    std::string where = "linux.seccomp.syscalls[" + std::to_string(i) + "]";
    if (syscall.names.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, where + ": names must not be empty");
    }
    HULL_TRY(uint32_t action, SeccompAction(syscall.action, syscall.errno_ret, where),
             "compile seccomp profile");

    std::vector<scmp_arg_cmp> conditions;
    unsigned int per_index[6] = {};
    bool same_index_twice = false;
    for (size_t a = 0; a < syscall.args.size(); ++a) {
      const oci::SeccompArg& arg = syscall.args[a];
      std::string arg_where = where + ".args[" + std::to_string(a) + "]";
      if (arg.index >= std::size(per_index)) {
        return MakeError(ErrorCode::kInvalidArgument,
                         arg_where + ": index " + std::to_string(arg.index) +
                             " is out of range (syscalls have 6 arguments)");
      }
      HULL_TRY(scmp_compare op, SeccompOperator(arg.op, arg_where), "compile seccomp profile");
      // For SCMP_CMP_MASKED_EQ, value is the mask and valueTwo the datum,
      // which is libseccomp's order too.
      conditions.push_back(scmp_arg_cmp{arg.index, op, arg.value, arg.value_two});
      if (++per_index[arg.index] > 1) same_index_twice = true;
    }

    for (size_t n = 0; n < syscall.names.size(); ++n) {
      const std::string& name = syscall.names[n];
      if (name.empty()) {
        return MakeError(ErrorCode::kInvalidArgument,
                         where + ".names[" + std::to_string(n) + "]: empty syscall name");
      }
      // libseccomp refuses rules that repeat the default action; runc skips them.
      if (action == default_action) continue;
      int number = seccomp_syscall_resolve_name(name.c_str());
      if (number == __NR_SCMP_ERROR) {
        // Profiles list the syscalls of many kernels and architectures.
        HULL_LOG_DEBUG("{}: unknown syscall `{}` ignored", where, name);
        continue;
      }
      HULL_CHECK_OK(AddSyscallRule(ctx.get(), number, action, conditions, same_index_twice,
                                   where + " " + Quoted(name)),
                    "compile seccomp profile");
    }
  }

  HULL_TRY(program.filter, ExportBpf(ctx.get()), "compile seccomp profile");
  return program;
}

int InstallSeccomp(const SeccompProgram& program) noexcept {
  if (program.empty()) return 0;
  struct sock_fprog prog {};
  prog.len = static_cast<unsigned short>(program.filter.size());
  prog.filter = const_cast<struct sock_filter*>(program.filter.data());
  return RawResult(sys::SeccompSetFilter(program.flags, &prog));
}

// ---- capabilities ---------------------------------------------------------------------

Result<CapabilityPlan> PlanCapabilities(const std::optional<oci::Capabilities>& caps) {
  CapabilityPlan plan;
  HULL_TRY(plan.last_cap, ReadLastCap(), "plan capabilities");
  if (!caps) return plan;

  HULL_TRY(plan.bounding, CapabilityMask(caps->bounding, "bounding", plan.last_cap),
           "plan capabilities");
  HULL_TRY(plan.effective, CapabilityMask(caps->effective, "effective", plan.last_cap),
           "plan capabilities");
  HULL_TRY(plan.permitted, CapabilityMask(caps->permitted, "permitted", plan.last_cap),
           "plan capabilities");
  HULL_TRY(plan.inheritable, CapabilityMask(caps->inheritable, "inheritable", plan.last_cap),
           "plan capabilities");
  HULL_TRY(plan.ambient, CapabilityMask(caps->ambient, "ambient", plan.last_cap),
           "plan capabilities");

  if (uint64_t extra = plan.effective & ~plan.permitted; extra != 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "process.capabilities.effective: " + CapabilityList(extra) +
                         " not in the permitted set (the kernel refuses an effective "
                         "capability that is not permitted)");
  }
  if (uint64_t unraisable = plan.ambient & ~(plan.permitted & plan.inheritable); unraisable != 0) {
    HULL_LOG_WARN(
        "process.capabilities.ambient: {} not in both the permitted and the "
        "inheritable sets; the kernel cannot raise them, ignored (as runc does)",
        CapabilityList(unraisable));
    plan.ambient &= ~unraisable;
  }
  return plan;
}

int DropBoundingSet(const CapabilityPlan& plan) noexcept {
  for (int cap = 0; cap <= plan.last_cap && cap < 64; ++cap) {
    if ((plan.bounding & (uint64_t{1} << cap)) != 0) continue;
    if (int err = Prctl(PR_CAPBSET_DROP, static_cast<unsigned long>(cap)); err != 0) return err;
  }
  return 0;
}

int ApplyCapabilities(const CapabilityPlan& plan, const char** failed_step) noexcept {
  struct __user_cap_header_struct header {};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  for (int word = 0; word < _LINUX_CAPABILITY_U32S_3; ++word) {
    int shift = 32 * word;
    data[word].effective = static_cast<uint32_t>(plan.effective >> shift);
    data[word].permitted = static_cast<uint32_t>(plan.permitted >> shift);
    data[word].inheritable = static_cast<uint32_t>(plan.inheritable >> shift);
  }
  if (sys::Capset(&header, data) < 0) {
    SetStep(failed_step, "capset");
    return errno;
  }

  if (int err = Prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL); err != 0) {
    SetStep(failed_step, "ambient capabilities");
    return err;
  }
  for (int cap = 0; cap <= plan.last_cap && cap < 64; ++cap) {
    if ((plan.ambient & (uint64_t{1} << cap)) == 0) continue;
    if (int err = Prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, static_cast<unsigned long>(cap));
        err != 0) {
      SetStep(failed_step, "ambient capabilities");
      return err;
    }
  }
  return 0;
}

// ---- rlimits -----------------------------------------------------------------------------

Result<std::vector<RlimitPlan>> PlanRlimits(const std::vector<oci::Rlimit>& rlimits) {
  std::vector<RlimitPlan> plans;
  plans.reserve(rlimits.size());
  for (size_t i = 0; i < rlimits.size(); ++i) {
    const oci::Rlimit& rlimit = rlimits[i];
    std::string where = "process.rlimits[" + std::to_string(i) + "]";
    std::optional<int> resource = oci::RlimitResource(rlimit.type);
    if (!resource) {
      return MakeError(ErrorCode::kInvalidArgument,
                       where + ": unknown type " + Quoted(rlimit.type));
    }
    for (const RlimitPlan& earlier : plans) {
      if (earlier.resource == *resource) {
        return MakeError(ErrorCode::kInvalidArgument,
                         where + ": duplicate type " + Quoted(rlimit.type));
      }
    }
    if (rlimit.soft > rlimit.hard) {
      return MakeError(ErrorCode::kInvalidArgument,
                       where + ": " + rlimit.type + " soft limit " + std::to_string(rlimit.soft) +
                           " is above the hard limit " + std::to_string(rlimit.hard));
    }
    RlimitPlan plan;
    plan.resource = *resource;
    plan.limit.rlim_cur = static_cast<rlim_t>(rlimit.soft);
    plan.limit.rlim_max = static_cast<rlim_t>(rlimit.hard);
    plan.name = oci::RlimitName(*resource);
    plans.push_back(plan);
  }
  return plans;
}

int ApplyRlimits(std::span<const RlimitPlan> rlimits, const char** failed_step) noexcept {
  for (const RlimitPlan& rlimit : rlimits) {
    if (sys::SetRlimit(rlimit.resource, rlimit.limit.rlim_cur, rlimit.limit.rlim_max) < 0) {
      SetStep(failed_step, rlimit.name != nullptr ? rlimit.name : "setrlimit");
      return errno;
    }
  }
  return 0;
}

// ---- user ----------------------------------------------------------------------------------

UserPlan PlanUser(const oci::User& user) {
  UserPlan plan;
  plan.uid = static_cast<uid_t>(user.uid);
  plan.gid = static_cast<gid_t>(user.gid);
  plan.additional_gids.assign(user.additional_gids.begin(), user.additional_gids.end());
  if (user.umask) plan.umask = static_cast<mode_t>(*user.umask & 07777);
  return plan;
}

int ApplyUser(const UserPlan& plan, const char** failed_step) noexcept {
  if (sys::SetGroups(plan.additional_gids.size(), plan.additional_gids.data()) < 0) {
    int err = errno;
    // setgroups is refused in a user namespace whose setgroups is "deny";
    // with nothing asked for, runc goes on silently.
    if (!(err == EPERM && plan.additional_gids.empty())) {
      SetStep(failed_step, "setgroups");
      return err;
    }
  }
  if (sys::SetResGid(plan.gid) < 0) {
    SetStep(failed_step, "setresgid");
    return errno;
  }
  if (int err = Prctl(PR_SET_KEEPCAPS, 1); err != 0) {
    SetStep(failed_step, "keepcaps");
    return err;
  }
  if (sys::SetResUid(plan.uid) < 0) {
    int err = errno;
    Prctl(PR_SET_KEEPCAPS, 0);
    SetStep(failed_step, "setresuid");
    return err;
  }
  if (int err = Prctl(PR_SET_KEEPCAPS, 0); err != 0) {
    SetStep(failed_step, "keepcaps");
    return err;
  }
  if (plan.umask) sys::Umask(*plan.umask);  // cannot fail
  return 0;
}

// ---- no_new_privs ----------------------------------------------------------------------------

int SetNoNewPrivileges() noexcept { return Prctl(PR_SET_NO_NEW_PRIVS, 1); }

// ---- all of it -------------------------------------------------------------------------------

Result<SecurityPlan> PlanProcessSecurity(const oci::Process& process,
                                         const std::optional<oci::Seccomp>& seccomp) {
  SecurityPlan plan;
  HULL_TRY(plan.caps, PlanCapabilities(process.capabilities), "plan process security");
  HULL_TRY(plan.rlimits, PlanRlimits(process.rlimits), "plan process security");
  plan.user = PlanUser(process.user);
  plan.no_new_privileges = process.no_new_privileges;
  if (seccomp) {
    HULL_TRY(plan.seccomp, CompileSeccomp(*seccomp), "plan process security");
  }
  return plan;
}

int ApplyProcessSecurity(const SecurityPlan& plan, const char** failed_step) noexcept {
  // The order is explained at the top of security.h.
  if (int err = ApplyRlimits(plan.rlimits, failed_step); err != 0) return err;

  if (!plan.no_new_privileges) {
    if (int err = InstallSeccomp(plan.seccomp); err != 0) {
      SetStep(failed_step, "seccomp");
      return err;
    }
  }
  if (int err = DropBoundingSet(plan.caps); err != 0) {
    SetStep(failed_step, "drop bounding set");
    return err;
  }
  if (int err = ApplyUser(plan.user, failed_step); err != 0) return err;
  if (int err = ApplyCapabilities(plan.caps, failed_step); err != 0) return err;

  if (plan.no_new_privileges) {
    if (int err = SetNoNewPrivileges(); err != 0) {
      SetStep(failed_step, "no_new_privs");
      return err;
    }
    if (int err = InstallSeccomp(plan.seccomp); err != 0) {
      SetStep(failed_step, "seccomp");
      return err;
    }
  }
  return 0;
}

}  // namespace hull::engine
