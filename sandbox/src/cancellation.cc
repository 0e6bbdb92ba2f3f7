#include "hull/sandbox/agent_api.h"

namespace hull::sandbox {

void Cancellation::Cancel() {
  std::map<uint64_t, std::function<void()>> callbacks;
  {
    std::lock_guard lock(mu_);
    if (cancelled_) return;
    cancelled_ = true;
    running_ = true;
    callbacks.swap(callbacks_);
  }
  // Run without the lock (a callback may take its owner's), while Forget
  // waits: what a callback touches must outlive it.
  for (auto& [id, fn] : callbacks) fn();
  {
    std::lock_guard lock(mu_);
    running_ = false;
  }
  ran_.notify_all();
}

bool Cancellation::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

uint64_t Cancellation::OnCancel(std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    if (!cancelled_) {
      callbacks_.emplace(++next_id_, std::move(fn));
      return next_id_;
    }
  }
  fn();
  return 0;
}

void Cancellation::Forget(uint64_t id) {
  std::unique_lock lock(mu_);
  callbacks_.erase(id);
  ran_.wait(lock, [&] { return !running_; });
}

}  // namespace hull::sandbox
