// Unit tests of BatchHistory (lib/driver/batch_history.h): the per-job and
// global bounds, `since` queries and their limits, seeding from a snapshot,
// and the history ClusterState feeds as it applies BatchCommitted.
#include "lib/driver/batch_history.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/driver/cluster_state.h"

namespace sluice::driver {
namespace {

proto::BatchSummary Batch(int64_t id, int64_t delay_ms = 10) {
  proto::BatchSummary s;
  s.set_batch_id(id);
  s.set_batch_time_unix_ms(1'000'000 + id * 500);
  s.set_input_count(100 * id);
  s.set_total_delay_ms(delay_ms);
  return s;
}

std::vector<int64_t> Ids(const std::vector<BatchPoint>& points) {
  std::vector<int64_t> ids;
  for (const BatchPoint& p : points) ids.push_back(p.batch_id);
  return ids;
}

TEST(BatchHistoryTest, KeepsTheLastPerJobBatches) {
  BatchHistory h({.per_job = 5, .global = 1000, .min_per_job = 2});
  for (int64_t i = 1; i <= 12; ++i) h.Add("a", Batch(i));
  EXPECT_EQ(h.size(), 5);
  EXPECT_THAT(Ids(h.Last("a", 100)), ::testing::ElementsAre(8, 9, 10, 11, 12));
  EXPECT_THAT(Ids(h.Last("a", 2)), ::testing::ElementsAre(11, 12));
  EXPECT_TRUE(h.Last("nope", 5).empty());
}

TEST(BatchHistoryTest, IgnoresABatchNotNewerThanTheLast) {
  BatchHistory h;
  h.Add("a", Batch(1));
  h.Add("a", Batch(2));
  h.Add("a", Batch(2));
  h.Add("a", Batch(1));
  EXPECT_THAT(Ids(h.Last("a", 10)), ::testing::ElementsAre(1, 2));
}

TEST(BatchHistoryTest, TheGlobalBoundSharesOutAmongJobs) {
  BatchHistory h({.per_job = 100, .global = 300, .min_per_job = 10});
  for (int64_t i = 1; i <= 200; ++i) h.Add("a", Batch(i));
  EXPECT_EQ(h.size(), 100);  // per job first
  for (int64_t i = 1; i <= 200; ++i) h.Add("b", Batch(i));
  for (int64_t i = 1; i <= 200; ++i) h.Add("c", Batch(i));
  EXPECT_EQ(h.size(), 300);
  // A fourth job lowers every share to 75 at once, even for jobs that
  // commit no more.
  h.Add("d", Batch(1));
  EXPECT_LE(h.size(), 300);
  EXPECT_EQ(h.Last("a", 1000).size(), 75u);
  EXPECT_EQ(h.Last("a", 1000).back().batch_id, 200);
  // Many jobs: never below the minimum each.
  for (int j = 0; j < 100; ++j) {
    for (int64_t i = 1; i <= 30; ++i) h.Add("j" + std::to_string(j), Batch(i));
  }
  EXPECT_EQ(h.jobs(), 104);
  EXPECT_EQ(h.Last("a", 1000).size(), 10u);
  EXPECT_EQ(h.size(), 104 * 10 - 9);  // d holds one batch
  EXPECT_GT(h.MemoryBytes(), static_cast<size_t>(h.size()) * sizeof(BatchPoint));
}

TEST(BatchHistoryTest, SinceReturnsTheBatchesAfterIt) {
  BatchHistory h({.per_job = 10, .global = 1000, .min_per_job = 2});
  for (int64_t i = 1; i <= 25; ++i) h.Add("a", Batch(i));  // holds 16..25
  BatchHistory::Slice s = h.Since("a", 20, 100);
  EXPECT_THAT(Ids(s.points), ::testing::ElementsAre(21, 22, 23, 24, 25));
  EXPECT_EQ(s.oldest_kept, 16);
  EXPECT_EQ(s.newest, 25);
  EXPECT_FALSE(s.truncated);
  // Up to date: nothing new.
  s = h.Since("a", 25, 100);
  EXPECT_TRUE(s.points.empty());
  EXPECT_FALSE(s.truncated);
  s = h.Since("a", 99, 100);
  EXPECT_TRUE(s.points.empty());
  // Far behind: what is held, marked as missing some.
  s = h.Since("a", 3, 100);
  EXPECT_THAT(Ids(s.points), ::testing::ElementsAre(16, 17, 18, 19, 20, 21, 22, 23, 24, 25));
  EXPECT_TRUE(s.truncated);
  // A limit gives the newest ones.
  s = h.Since("a", 15, 3);
  EXPECT_THAT(Ids(s.points), ::testing::ElementsAre(23, 24, 25));
  EXPECT_TRUE(s.truncated);
  s = h.Since("a", 15, 0);
  EXPECT_TRUE(s.points.empty());
  // No such job.
  s = h.Since("b", 0, 100);
  EXPECT_TRUE(s.points.empty());
  EXPECT_EQ(s.newest, 0);
}

TEST(BatchHistoryTest, KeepsTheFiguresOfEachBatch) {
  BatchHistory h;
  proto::BatchSummary s = Batch(7, 1234);
  s.set_scheduling_delay_ms(34);
  s.set_processing_ms(1200);
  s.set_output_count(55);
  s.set_dead_letters(3);
  s.set_task_attempts(4);
  s.set_blocks_fetched(2);
  s.set_blocks_recomputed(1);
  s.set_total_delay_ms(int64_t{1} << 40);  // clamped, not wrapped
  h.Add("a", s);
  const BatchPoint p = h.Last("a", 1).at(0);
  EXPECT_EQ(p.batch_id, 7);
  EXPECT_EQ(p.batch_time_unix_ms, 1'003'500);
  EXPECT_EQ(p.input_count, 700);
  EXPECT_EQ(p.output_count, 55);
  EXPECT_EQ(p.scheduling_delay_ms, 34);
  EXPECT_EQ(p.processing_ms, 1200);
  EXPECT_EQ(p.total_delay_ms, std::numeric_limits<int32_t>::max());
  EXPECT_EQ(p.dead_letters, 3);
  EXPECT_EQ(p.task_attempts, 4);
  EXPECT_EQ(p.blocks_fetched, 2);
  EXPECT_EQ(p.blocks_recomputed, 1);
}

// ClusterState feeds its history as it applies commits, on any driver that
// applies the log (a standby too), and a restore starts it again from the
// snapshot's recent batches.
TEST(BatchHistoryTest, ClusterStateFeedsItAndARestoreSeedsIt) {
  ClusterState state({.per_job = 50, .global = 1000, .min_per_job = 5});
  proto::DriverRecord submit;
  submit.mutable_job_submitted()->set_job_id("j");
  submit.mutable_job_submitted()->mutable_spec()->set_name("j");
  ASSERT_TRUE(state.ApplyRecord(submit, 1).ok());
  int64_t seq = 2;
  for (int64_t b = 1; b <= 40; ++b) {
    proto::DriverRecord plan;
    plan.mutable_batch_planned()->set_job_id("j");
    plan.mutable_batch_planned()->set_batch_id(b);
    plan.mutable_batch_planned()->set_batch_time_unix_ms(10'000 + b * 100);
    ASSERT_TRUE(state.ApplyRecord(plan, seq++).ok());
    proto::DriverRecord commit;
    commit.mutable_batch_committed()->set_job_id("j");
    commit.mutable_batch_committed()->set_batch_id(b);
    commit.mutable_batch_committed()->set_input_count(b);
    commit.mutable_batch_committed()->set_started_unix_ms(10'000 + b * 100 + 5);
    commit.mutable_batch_committed()->set_finished_unix_ms(10'000 + b * 100 + 25);
    ASSERT_TRUE(state.ApplyRecord(commit, seq++).ok());
  }
  EXPECT_EQ(state.history().size(), 40);
  const BatchPoint last = state.history().Last("j", 1).at(0);
  EXPECT_EQ(last.batch_id, 40);
  EXPECT_EQ(last.scheduling_delay_ms, 5);
  EXPECT_EQ(last.processing_ms, 20);
  EXPECT_EQ(last.total_delay_ms, 25);

  ClusterState restored({.per_job = 50, .global = 1000, .min_per_job = 5});
  ASSERT_TRUE(restored.Restore(state.Snapshot()).ok());
  EXPECT_EQ(restored.history().size(), ClusterState::kRecentBatches);
  EXPECT_EQ(restored.history().Last("j", 100).front().batch_id, 40 - ClusterState::kRecentBatches + 1);
}

}  // namespace
}  // namespace sluice::driver
