// A sandbox session for host tools: one VM with a shared directory, its
// agent connected and its sandbox created; containers are added from host
// root filesystems. Tearing down removes every container, powers the guest
// off, stops the VM and virtiofsd, and unmounts what was shared.
#pragma once

#include <memory>
#include <string>

#include "agent_client.h"
#include "hull/core/config.h"
#include "hull/core/error.h"
#include "hull/hypervisor/hypervisor.h"

namespace hull::hullctl {

inline constexpr char kGuestSharedDir[] = "/run/hull/shared";

class Session {
 public:
  // Boots the VM named `id` and creates its sandbox. On failure nothing is
  // left behind.
  static Result<std::unique_ptr<Session>> Open(const Config& config, const std::string& id);
  ~Session();

  // Shares `host_rootfs` into the guest and creates container `id` from the
  // spec JSON; returns once the container is created (not started).
  Status CreateContainer(const std::string& id, const std::string& spec_json, const std::string& host_rootfs,
                         const agent::v1::ProcessIo& io);
  // Removes the containers, powers the guest off and stops the VM. Safe to
  // call more than once.
  void Close();

  AgentClient& client() { return *client_; }
  Vm& vm() { return *vm_; }

 private:
  Session(Config config, std::unique_ptr<Vm> vm) : config_(std::move(config)), vm_(std::move(vm)) {}

  Config config_;
  std::unique_ptr<Vm> vm_;
  std::unique_ptr<AgentClient> client_;
  std::vector<std::string> containers_;
  std::vector<std::string> mounts_;
  bool closed_ = false;
};

}  // namespace hull::hullctl
