// Unit tests of lib/common/clock.h.
#include "lib/common/clock.h"

#include "gtest/gtest.h"

namespace sluice {
namespace {

TEST(FakeClock, MovesOnlyWhenTold) {
  FakeClock clock(1000);
  auto t0 = clock.Now();
  EXPECT_EQ(clock.UnixMillis(), 1000);
  clock.Advance(std::chrono::milliseconds(250));
  EXPECT_EQ(clock.Now() - t0, std::chrono::milliseconds(250));
  EXPECT_EQ(clock.UnixMillis(), 1250);
  clock.SleepFor(std::chrono::seconds(1));
  EXPECT_EQ(clock.UnixMillis(), 2250);
}

TEST(RealClock, IsMonotonic) {
  Clock* clock = Clock::Real();
  auto a = clock->Now();
  clock->SleepFor(std::chrono::milliseconds(2));
  EXPECT_GE(clock->Now() - a, std::chrono::milliseconds(2));
  EXPECT_GT(clock->UnixMillis(), 1'600'000'000'000);
}

}  // namespace
}  // namespace sluice
