// Unit tests of PlanBatch (lib/driver/planner.h): a batch takes every
// accepted offset, or with max_records_per_batch whole blocks within the
// bound, and the next batch goes on where it ended. And JobHolds: a hold
// waits for a plan begun and keeps the planner off the job until released.
#include "lib/driver/planner.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "gtest/gtest.h"
#include "lib/driver/job_holds.h"

namespace sluice::driver {
namespace {

// One source "s" of one partition holding blocks of these sizes from offset 0.
proto::ClusterState WithBlocks(const std::vector<int64_t>& sizes) {
  proto::ClusterState state;
  proto::SourceState& src = (*state.mutable_sources())["s"];
  src.mutable_spec()->set_name("s");
  src.mutable_spec()->set_partitions(1);
  proto::PartitionState* ps = src.add_partitions();
  int64_t at = 0;
  for (int64_t n : sizes) {
    proto::BlockInfo* b = ps->add_blocks();
    b->mutable_range()->set_source("s");
    b->mutable_range()->set_start_offset(at);
    b->mutable_range()->set_end_offset(at + n);
    b->set_records(n);
    at += n;
  }
  ps->set_next_offset(at);
  return state;
}

proto::JobState Job(int64_t max_records_per_batch) {
  proto::JobState job;
  job.mutable_spec()->add_sources("s");
  job.mutable_spec()->set_max_records_per_batch(max_records_per_batch);
  return job;
}

TEST(PlanBatch, TakesEverythingWithoutABound) {
  const proto::BatchPlanned plan = PlanBatch("j", Job(0), WithBlocks({100, 100, 100}), 1, 0);
  ASSERT_EQ(plan.ranges_size(), 1);
  EXPECT_EQ(plan.ranges(0).start_offset(), 0);
  EXPECT_EQ(plan.ranges(0).end_offset(), 300);
}

TEST(PlanBatch, MaxRecordsPerBatchTakesWholeBlocksWithinTheBound) {
  const proto::ClusterState state = WithBlocks({100, 100, 100, 40, 300});
  proto::JobState job = Job(250);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (int64_t id = 1; id <= 3; ++id) {
    const proto::BatchPlanned plan = PlanBatch("j", job, state, id, 0);
    ASSERT_EQ(plan.ranges_size(), 1) << "batch " << id;
    ranges.emplace_back(plan.ranges(0).start_offset(), plan.ranges(0).end_offset());
    *job.add_in_flight() = plan;  // the next batch starts where this one ends
  }
  // 100+100, then 100+40, then a 300-offset block alone (cut larger than
  // the bound: a batch takes at least one block), then nothing is left.
  EXPECT_EQ(ranges[0], std::make_pair(int64_t{0}, int64_t{200}));
  EXPECT_EQ(ranges[1], std::make_pair(int64_t{200}, int64_t{340}));
  EXPECT_EQ(ranges[2], std::make_pair(int64_t{340}, int64_t{640}));
  EXPECT_EQ(PlanBatch("j", job, state, 4, 0).ranges_size(), 0);
}

// An update reads the job's last planned batch and records its first batch
// under a hold: the hold must wait for a plan already begun (the planner
// read the same view and is appending batch N+1), or the answer says N+1
// while the update takes effect at N+2.
TEST(JobHolds, AHoldWaitsForAPlanBegunAndKeepsThePlannerOffUntilReleased) {
  JobHolds holds;
  ASSERT_TRUE(holds.BeginPlanning("j"));
  std::atomic<bool> held{false};
  std::thread updater([&] {
    holds.Hold("j");
    held = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(held) << "the hold did not wait for the plan in progress";
  EXPECT_TRUE(holds.BeginPlanning("k")) << "another job plans meanwhile";
  holds.EndPlanning("k");
  holds.EndPlanning("j");
  updater.join();
  EXPECT_TRUE(held);
  EXPECT_FALSE(holds.BeginPlanning("j")) << "a held job is not planned";
  holds.Hold("j");  // a second holder (a savepoint) does not wait for the first
  holds.Release("j");
  EXPECT_FALSE(holds.BeginPlanning("j"));
  holds.Release("j");
  ASSERT_TRUE(holds.BeginPlanning("j"));
  holds.EndPlanning("j");
}

}  // namespace
}  // namespace sluice::driver
