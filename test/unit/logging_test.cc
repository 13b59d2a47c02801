// LogRateLimiter and SLUICE_LOG_EVERY: at most one line per interval per call
// site, the dropped lines counted in the next one.
#include "lib/common/logging.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/common/clock.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(LogRateLimiterTest, FirstPassesThenOnePerIntervalWithTheCountDropped) {
  FakeClock clock;
  LogRateLimiter limiter(milliseconds(1000));
  int64_t suppressed = -1;
  EXPECT_TRUE(limiter.Allow(clock.Now(), &suppressed));
  EXPECT_EQ(suppressed, 0);
  for (int i = 0; i < 7; ++i) {
    clock.Advance(milliseconds(100));
    EXPECT_FALSE(limiter.Allow(clock.Now(), &suppressed));
  }
  clock.Advance(milliseconds(300));  // 1000 ms after the first
  EXPECT_TRUE(limiter.Allow(clock.Now(), &suppressed));
  EXPECT_EQ(suppressed, 7);
  // The count starts again.
  clock.Advance(milliseconds(999));
  EXPECT_FALSE(limiter.Allow(clock.Now(), &suppressed));
  clock.Advance(milliseconds(1));
  EXPECT_TRUE(limiter.Allow(clock.Now(), &suppressed));
  EXPECT_EQ(suppressed, 1);
  // A quiet site logs its next line at once, with nothing suppressed.
  clock.Advance(milliseconds(60'000));
  EXPECT_TRUE(limiter.Allow(clock.Now(), &suppressed));
  EXPECT_EQ(suppressed, 0);
}

TEST(LogRateLimiterTest, WithSuppressedAppendsTheCountOnlyWhenThereIsOne) {
  EXPECT_EQ(WithSuppressed("block lost", 0), "block lost");
  EXPECT_EQ(WithSuppressed("block lost", 12), "block lost (12 similar suppressed)");
}

class LogEveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = spdlog::default_logger();
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    auto logger = std::make_shared<spdlog::logger>("log-every-test", sink);
    logger->set_pattern("%l %v");
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
  }
  void TearDown() override { spdlog::set_default_logger(previous_); }

  int Lines() const {
    const std::string text = out_.str();
    return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
  }

  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

void NoisyWarning(int block) {
  SLUICE_LOG_EVERY(std::chrono::hours(1), spdlog::level::warn, "block {} not found", block);
}

void OtherSite(int block) {
  SLUICE_LOG_EVERY(std::chrono::hours(1), spdlog::level::warn, "other site, block {}", block);
}

TEST_F(LogEveryTest, OneLinePerSiteAndInterval) {
  for (int i = 0; i < 500; ++i) NoisyWarning(i);
  OtherSite(1);
  OtherSite(2);
  EXPECT_EQ(Lines(), 2) << out_.str();
  EXPECT_THAT(out_.str(), HasSubstr("warning block 0 not found\n"));
  EXPECT_THAT(out_.str(), HasSubstr("warning other site, block 1\n"));
  EXPECT_THAT(out_.str(), Not(HasSubstr("block 1 not found")));
}

TEST_F(LogEveryTest, BelowTheLevelNothingIsCountedOrLogged) {
  for (int i = 0; i < 3; ++i) SLUICE_LOG_EVERY(milliseconds(0), spdlog::level::debug, "debug {}", i);
  EXPECT_EQ(Lines(), 0);
  // A zero interval logs every line.
  for (int i = 0; i < 3; ++i) SLUICE_LOG_EVERY(milliseconds(0), spdlog::level::info, "info {}", i);
  EXPECT_EQ(Lines(), 3) << out_.str();
}

TEST_F(LogEveryTest, TheNextLineAfterTheIntervalCountsTheDroppedOnes) {
  // 2 s: three calls in a row stay inside it even on a loaded machine.
  auto site = [](int i) { SLUICE_LOG_EVERY(milliseconds(2000), spdlog::level::warn, "fetch {} failed", i); };
  site(1);
  site(2);
  site(3);
  std::this_thread::sleep_for(milliseconds(2100));
  site(4);
  EXPECT_EQ(Lines(), 2) << out_.str();
  EXPECT_THAT(out_.str(), HasSubstr("warning fetch 4 failed (2 similar suppressed)\n"));
}

}  // namespace
}  // namespace sluice
