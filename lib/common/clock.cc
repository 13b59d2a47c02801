#include "lib/common/clock.h"

#include <thread>

namespace sluice {

Clock* Clock::Real() {
  static RealClock* clock = new RealClock();
  return clock;
}

Clock::TimePoint RealClock::Now() { return std::chrono::steady_clock::now(); }

int64_t RealClock::UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void RealClock::SleepFor(Duration d) { std::this_thread::sleep_for(d); }

Clock::TimePoint FakeClock::Now() {
  std::lock_guard<std::mutex> lock(mu_);
  return TimePoint(elapsed_);
}

int64_t FakeClock::UnixMillis() {
  std::lock_guard<std::mutex> lock(mu_);
  return unix_millis_ + std::chrono::duration_cast<std::chrono::milliseconds>(elapsed_).count();
}

void FakeClock::Advance(Duration d) {
  std::lock_guard<std::mutex> lock(mu_);
  elapsed_ += d;
}

}  // namespace sluice
