// A Clock that moves only when the test says so: a deadline passes at
// Advance, never because the machine was slow.
#pragma once

#include <list>
#include <utility>

#include "hull/core/clock.h"

namespace hull::testing {

class FakeClock final : public Clock {
 public:
  time_point Now() const override {
    std::lock_guard lock(mu_);
    return now_;
  }

  bool WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                 time_point deadline, const std::function<bool()>& done) override {
    std::list<Waiter>::iterator self;
    {
      std::lock_guard guard(mu_);
      self = waiters_.insert(waiters_.end(), Waiter{&cv, lock.mutex()});
    }
    while (!done() && Now() < deadline) cv.wait(lock);
    std::lock_guard guard(mu_);
    waiters_.erase(self);
    return done();
  }

  // Moves time on and wakes every waiter to look at it. The waiters' mutexes
  // must outlive the call (they belong to the objects under test).
  void Advance(std::chrono::steady_clock::duration by) {
    std::list<Waiter> waiters;
    {
      std::lock_guard lock(mu_);
      now_ += by;
      waiters = waiters_;
    }
    for (const auto& waiter : waiters) {
      // Taking the waiter's mutex orders this after its check of Now():
      // it is either waiting (and gets the notify) or sees the new time.
      { std::lock_guard lock(*waiter.mutex); }
      waiter.cv->notify_all();
    }
  }

  // How many are waiting on this clock now.
  size_t waiters() const {
    std::lock_guard lock(mu_);
    return waiters_.size();
  }

 private:
  struct Waiter {
    std::condition_variable* cv;
    std::mutex* mutex;
  };
  mutable std::mutex mu_;
  time_point now_ = std::chrono::steady_clock::now();
  std::list<Waiter> waiters_;
};

}  // namespace hull::testing
