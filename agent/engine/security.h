// The security settings of a container process: seccomp, capabilities,
// rlimits, no_new_privs and the user/group switch.
//
// Every setting comes in two halves (STYLE.md rule 6):
//   * Plan* / CompileSeccomp run in the parent, before clone/fork. They
//     validate the OCI spec, may allocate and log, and return a Result whose
//     errors name the offending spec field
//     ("linux.seccomp.syscalls[3]: unknown action `X`").
//   * Apply* / Install* / SetNoNewPrivileges run in the child. They are
//     noexcept and async-signal-safe: no allocation, no locks, no logging,
//     only raw system calls (no glibc set*id wrappers, which synchronise the
//     other threads of a process that, after clone, may not exist). They
//     return 0 or an errno. Where a function has several steps, an optional
//     `failed_step` out-parameter is pointed at a string literal naming the
//     step that failed ("setresuid", "capset", ...), for the report sent to
//     the parent.
//
// The order the launcher must follow, as runc's standard_init does (and as
// ApplyProcessSecurity does for you):
//
//   1. ApplyRlimits. runc sets rlimits from the parent with prlimit(2) on the
//      child's pid; hull applies them in the child instead, first, while it
//      still holds CAP_SYS_RESOURCE (raising a hard limit needs it) and before
//      any seccomp filter is installed (so the profile need not allow
//      prlimit64).
//   2. InstallSeccomp, here, if the process does NOT set noNewPrivileges:
//      without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which the
//      later steps drop. The profile must then allow the syscalls of steps
//      3-5 (prctl, setgroups, setresgid, setresuid, capset, umask); Docker's
//      default profile does.
//   3. DropBoundingSet (needs CAP_SETPCAP, so before the capabilities drop).
//   4. ApplyUser: setgroups, setresgid, then setresuid with PR_SET_KEEPCAPS
//      set, so the permitted set survives leaving uid 0 (the kernel still
//      clears the effective and ambient sets).
//   5. ApplyCapabilities: capset the effective/permitted/inheritable sets,
//      then raise the ambient ones (which must come after the uid switch,
//      since setresuid away from root clears the ambient set).
//   6. SetNoNewPrivileges, if requested.
//   7. InstallSeccomp, here, if the process sets noNewPrivileges: as late as
//      possible, right before execve, so the profile sees the fewest
//      runtime-internal syscalls.
//   then execve.
#pragma once

#include <linux/filter.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "hull/core/error.h"
#include "hull/core/oci_spec.h"

namespace hull::engine {

// ---- seccomp --------------------------------------------------------------

// A compiled classic-BPF seccomp filter, ready for seccomp(2).
struct SeccompProgram {
  std::vector<struct sock_filter> filter;
  unsigned int flags = 0;  // SECCOMP_FILTER_FLAG_*
  bool empty() const { return filter.empty(); }
};

// Compiles linux.seccomp with libseccomp (in the parent) and exports the BPF.
// Follows runc: syscall names this libseccomp does not know are skipped (a
// profile lists the syscalls of many kernels and architectures); a rule whose
// action equals the default action is skipped; several conditions on the same
// argument index become separate rules (OR), conditions on different indexes
// one rule (AND). errnoRet defaults to EPERM. Errors are kInvalidArgument
// naming the entry; SCMP_ACT_NOTIFY (and its flag) is kUnimplemented.
// Unlike runc, hull does not patch the filter to return ENOSYS for syscalls
// newer than the profile.
Result<SeccompProgram> CompileSeccomp(const oci::Seccomp& spec);

// seccomp(SECCOMP_SET_MODE_FILTER, program.flags, program). An empty program
// installs nothing and returns 0. Needs no_new_privs or CAP_SYS_ADMIN.
int InstallSeccomp(const SeccompProgram& program) noexcept;

// ---- capabilities ---------------------------------------------------------

// Capability sets as bit masks (bit n = capability n).
struct CapabilityPlan {
  uint64_t bounding = 0;
  uint64_t effective = 0;
  uint64_t permitted = 0;
  uint64_t inheritable = 0;
  uint64_t ambient = 0;
  // The running kernel's /proc/sys/kernel/cap_last_cap, read by the planner.
  int last_cap = 0;
};

// Maps process.capabilities names ("CAP_SYS_ADMIN") to bits. Unknown names are
// errors naming the field and entry. Capabilities hull knows but the running
// kernel does not (above cap_last_cap) are dropped with a debug log, as runc
// does. Ambient capabilities not in both permitted and inheritable are dropped
// with a warning: the kernel refuses to raise them, and runc logs and goes on
// (this is why `runc spec`'s default, which lists ambient capabilities but no
// inheritable ones, runs with an empty ambient set). An effective set that is
// not a subset of permitted is an error (capset(2) would fail with EPERM).
// Absent capabilities: every set empty.
Result<CapabilityPlan> PlanCapabilities(const std::optional<oci::Capabilities>& caps);

// PR_CAPBSET_DROP for every capability 0..last_cap not in plan.bounding.
// Needs CAP_SETPCAP.
int DropBoundingSet(const CapabilityPlan& plan) noexcept;

// capset(2) (version 3) with the effective, permitted and inheritable sets,
// then PR_CAP_AMBIENT_CLEAR_ALL and PR_CAP_AMBIENT_RAISE for each ambient
// capability. Call after ApplyUser.
int ApplyCapabilities(const CapabilityPlan& plan, const char** failed_step = nullptr) noexcept;

// ---- rlimits --------------------------------------------------------------

struct RlimitPlan {
  int resource = 0;  // RLIMIT_*
  struct rlimit limit {};
  const char* name = nullptr;  // "RLIMIT_NOFILE": a string literal, for error reports
};

// Maps process.rlimits to RLIMIT_* values. Unknown types, duplicate types and
// soft > hard are errors naming the entry.
Result<std::vector<RlimitPlan>> PlanRlimits(const std::vector<oci::Rlimit>& rlimits);

// prlimit(2) on the calling process for each entry, in order. On failure,
// *failed_step names the resource ("RLIMIT_NOFILE").
int ApplyRlimits(std::span<const RlimitPlan> rlimits, const char** failed_step = nullptr) noexcept;

// ---- user -----------------------------------------------------------------

struct UserPlan {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> additional_gids;
  std::optional<mode_t> umask;
};

UserPlan PlanUser(const oci::User& user);

// setgroups(additional_gids) (an empty list clears the inherited groups; if
// that is refused with EPERM, as in a user namespace with setgroups "deny",
// it is ignored, as runc does), setresgid(gid), PR_SET_KEEPCAPS 1,
// setresuid(uid), PR_SET_KEEPCAPS 0, then umask if set. The effective
// capabilities are cleared by a switch away from uid 0: follow with
// ApplyCapabilities.
int ApplyUser(const UserPlan& plan, const char** failed_step = nullptr) noexcept;

// ---- no_new_privs ---------------------------------------------------------

// prctl(PR_SET_NO_NEW_PRIVS, 1).
int SetNoNewPrivileges() noexcept;

// ---- all of it --------------------------------------------------------------

struct SecurityPlan {
  CapabilityPlan caps;
  std::vector<RlimitPlan> rlimits;
  UserPlan user;
  bool no_new_privileges = false;
  SeccompProgram seccomp;  // empty: no linux.seccomp
};

// Plans process.capabilities, process.rlimits, process.user,
// process.noNewPrivileges and linux.seccomp.
Result<SecurityPlan> PlanProcessSecurity(const oci::Process& process,
                                         const std::optional<oci::Seccomp>& seccomp);

// Applies a SecurityPlan in the order documented at the top of this file; the
// caller execve()s next. Returns 0 or an errno; on failure *failed_step (if
// failed_step is not null) points to a string literal naming the step:
// an RLIMIT_* name, "seccomp", "drop bounding set", "setgroups", "setresgid",
// "setresuid", "keepcaps", "capset", "ambient capabilities", "no_new_privs".
int ApplyProcessSecurity(const SecurityPlan& plan, const char** failed_step = nullptr) noexcept;

}  // namespace hull::engine
