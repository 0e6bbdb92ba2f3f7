// Time for deadlines and timeouts, behind an interface so that tests can
// drive it (tests/support/fake_clock.h) instead of sleeping through it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>

namespace hull {

class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual time_point Now() const = 0;
  // With `lock` held: waits on `cv` until `done()` or this clock reaches
  // `deadline`; returns done(). Whoever makes done() true notifies `cv`.
  virtual bool WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                         time_point deadline, const std::function<bool()>& done) = 0;

  // std::chrono::steady_clock.
  static Clock& Steady();
};

}  // namespace hull
