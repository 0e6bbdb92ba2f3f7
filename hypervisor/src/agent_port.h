// What both backends know about the guest's end of the agent's virtio-serial
// port, from QEMU's VSERPORT_CHANGE events. Not thread-safe: the owning VM
// guards it with its own mutex.
#pragma once

#include <cstdint>

namespace hull {

class AgentPortState {
 public:
  void OnChange(bool open) {
    open_ = open;
    if (open) ++opens_;
  }
  void OnVmExit() { open_ = false; }

  // Connect only once the guest has opened its end: bytes sent before that
  // would sit in QEMU's socket and confuse the next connection. After a host
  // connection ends, the agent closes and reopens its port; wait for that
  // reopen too, or the new connection could be spliced onto the agent's
  // previous session before it noticed the old one end.
  bool ReadyForConnection() const { return open_ && opens_ > opens_used_; }
  // The next connection takes the current open.
  void TakeOpen() { opens_used_ = opens_; }

 private:
  bool open_ = false;
  uint64_t opens_ = 0;       // how often the guest opened the port
  uint64_t opens_used_ = 0;  // the open the last connection used
};

}  // namespace hull
