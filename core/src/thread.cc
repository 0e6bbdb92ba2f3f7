#include "hull/core/thread.h"

#include <pthread.h>

#include <utility>

namespace hull {

std::thread SpawnThread(std::string name, std::function<void()> fn) {
  if (name.size() > kMaxThreadNameLength) name.resize(kMaxThreadNameLength);
  return std::thread([name = std::move(name), fn = std::move(fn)] {
    // Fails only for a name over 15 bytes, which cannot happen here.
    ::pthread_setname_np(::pthread_self(), name.c_str());
    fn();
  });
}

}  // namespace hull
