// Clock: the only source of time in Sluice code, so tests can control it.
//
// Module sluice::common owns it. RealClock reads the system clocks; FakeClock
// moves only when told (SleepFor advances it, so code that sleeps runs at once).
// Both are thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

namespace sluice {

class Clock {
 public:
  using Duration = std::chrono::nanoseconds;
  using TimePoint = std::chrono::steady_clock::time_point;

  virtual ~Clock() = default;
  // Monotonic time, for timeouts and intervals.
  virtual TimePoint Now() = 0;
  // Wall-clock time in milliseconds since the Unix epoch, for batch times and logs.
  virtual int64_t UnixMillis() = 0;
  virtual void SleepFor(Duration d) = 0;

  // The process-wide real clock.
  static Clock* Real();
};

class RealClock final : public Clock {
 public:
  TimePoint Now() override;
  int64_t UnixMillis() override;
  void SleepFor(Duration d) override;
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t unix_millis = 1'700'000'000'000) : unix_millis_(unix_millis) {}
  TimePoint Now() override;
  int64_t UnixMillis() override;
  void SleepFor(Duration d) override { Advance(d); }
  void Advance(Duration d);

 private:
  std::mutex mu_;
  Duration elapsed_{0};   // guarded by mu_
  int64_t unix_millis_;   // guarded by mu_; at elapsed_ == 0
};

}  // namespace sluice
