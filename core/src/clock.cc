#include "hull/core/clock.h"

namespace hull {

namespace {

class SteadyClock final : public Clock {
 public:
  time_point Now() const override { return std::chrono::steady_clock::now(); }
  bool WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                 time_point deadline, const std::function<bool()>& done) override {
    return cv.wait_until(lock, deadline, done);
  }
};

}  // namespace

Clock& Clock::Steady() {
  static SteadyClock clock;
  return clock;
}

}  // namespace hull
