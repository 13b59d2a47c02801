// Unit tests of the worker's EpochFence (docs/design.md, leadership rule 4).
#include "lib/worker/epoch_fence.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace sluice::worker {
namespace {

TEST(EpochFence, AcceptsEqualOrHigherRejectsLower) {
  EpochFence fence;
  EXPECT_TRUE(fence.Accept(3).ok());
  EXPECT_TRUE(fence.Accept(3).ok());
  EXPECT_EQ(fence.Accept(2).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(fence.Accept(5).ok());
  EXPECT_EQ(fence.highest(), 5);
  EXPECT_EQ(fence.Accept(4).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(fence.Accept(0).code(), absl::StatusCode::kInvalidArgument);
}

TEST(EpochFence, ConcurrentAcceptsKeepTheMaximum) {
  EpochFence fence;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&fence, t] {
      for (int e = 1; e <= 10000; ++e) IgnoreError(fence.Accept(e * 4 + t), "racing on purpose");
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(fence.highest(), 10000 * 4 + 3);
}

}  // namespace
}  // namespace sluice::worker
