// BatchProgress: the batch in flight per job, as the Scheduler reports it.
#include "lib/driver/batch_progress.h"

#include "gtest/gtest.h"

namespace sluice::driver {
namespace {

TEST(BatchProgressTest, CountsTasksOfTheCurrentBatchOnly) {
  BatchProgress progress;
  EXPECT_FALSE(progress.Of("j", 1000).has_value());
  progress.Start("j", 7, 4, 1, 1000, 2);
  progress.TaskDone("j", 7);
  progress.TaskDone("j", 6);  // an older batch's late answer
  std::optional<proto::BatchProgress> p = progress.Of("j", 1500);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->batch_id(), 7);
  EXPECT_EQ(p->tasks_done(), 2);
  EXPECT_EQ(p->tasks_total(), 4);
  EXPECT_EQ(p->running_ms(), 500);
  EXPECT_EQ(p->attempt(), 2);
  for (int i = 0; i < 5; ++i) progress.TaskDone("j", 7);
  EXPECT_EQ(progress.Of("j", 1500)->tasks_done(), 4);  // never past the total
  EXPECT_FALSE(progress.Of("other", 1500).has_value());
  progress.End("j", 6);
  EXPECT_TRUE(progress.Of("j", 1500).has_value());
  progress.End("j", 7);
  EXPECT_FALSE(progress.Of("j", 1500).has_value());
}

}  // namespace
}  // namespace sluice::driver
