// Unit tests of lost source data in the driver's state (docs/data-path.md
// "When the source loses data"): ClusterState applying SourceDataLost and
// PartitionReset, and the planner jumping a job's position over a lost
// range exactly once, reporting it in the batch that does.
#include "gtest/gtest.h"
#include "lib/driver/cluster_state.h"
#include "lib/driver/planner.h"

namespace sluice::driver {
namespace {

proto::DriverRecord Source() {
  proto::DriverRecord r;
  proto::SourceSpec* s = r.mutable_source_registered()->mutable_spec();
  s->set_name("s");
  s->set_kind(proto::SOURCE_KIND_GENERATOR);
  s->set_partitions(2);
  return r;
}

proto::DriverRecord Block(int64_t start, int64_t end) {
  proto::DriverRecord r;
  proto::BlockInfo* b = r.mutable_blocks_added()->add_blocks();
  b->mutable_range()->set_source("s");
  b->mutable_range()->set_start_offset(start);
  b->mutable_range()->set_end_offset(end);
  b->set_records(end - start);
  return r;
}

proto::DriverRecord Lost(int64_t from, int64_t to, int32_t partition = 0, bool by_reset = false) {
  proto::DriverRecord r;
  proto::SourceDataLost* l = r.mutable_source_data_lost();
  l->set_source("s");
  l->set_partition(partition);
  l->set_from_offset(from);
  l->set_to_offset(to);
  l->set_reason("retention");
  l->set_by_reset(by_reset);
  return r;
}

proto::DriverRecord Reset(int64_t to, const std::string& source = "s", int32_t partition = 0) {
  proto::DriverRecord r;
  proto::PartitionReset* p = r.mutable_partition_reset();
  p->set_source(source);
  p->set_partition(partition);
  p->set_to_offset(to);
  p->set_to(std::to_string(to));
  return r;
}

const proto::PartitionState& Partition(const ClusterState& st, int p = 0) {
  return st.View()->sources().at("s").partitions(p);
}

class DataLossStateTest : public ::testing::Test {
 protected:
  Status Apply(const proto::DriverRecord& r) { return st_.ApplyRecord(r, ++seq_); }
  void Ok(const proto::DriverRecord& r) { ASSERT_TRUE(Apply(r).ok()) << r.ShortDebugString(); }
  ClusterState st_;
  int64_t seq_ = 0;
};

TEST_F(DataLossStateTest, SourceDataLostMovesTheNextOffsetKeepsTheRangeAndCountsIt) {
  Ok(Source());
  Ok(Block(0, 100));
  Ok(Lost(100, 250));
  EXPECT_EQ(Partition(st_).next_offset(), 250);
  ASSERT_EQ(Partition(st_).lost_size(), 1);
  EXPECT_EQ(Partition(st_).lost(0).from_offset(), 100);
  EXPECT_EQ(Partition(st_).lost(0).to_offset(), 250);
  EXPECT_EQ(Partition(st_).lost_offsets(), 150);
  EXPECT_EQ(Partition(st_).blocks_size(), 1);  // the blocks before the loss stay for their readers
  // The next block must start where the loss ended.
  EXPECT_FALSE(Apply(Block(100, 200)).ok());
  Ok(Block(250, 300));
  EXPECT_EQ(Partition(st_, 1).next_offset(), 0);  // the other partition is untouched
}

TEST_F(DataLossStateTest, ALossThatDoesNotStartAtTheNextOffsetOrIsEmptyIsRefused) {
  Ok(Source());
  Ok(Block(0, 100));
  EXPECT_TRUE(absl::IsFailedPrecondition(Apply(Lost(50, 150))));   // overlaps an accepted block
  EXPECT_TRUE(absl::IsFailedPrecondition(Apply(Lost(120, 150))));  // leaves a gap
  EXPECT_TRUE(absl::IsFailedPrecondition(Apply(Lost(100, 100))));  // empty
  EXPECT_TRUE(absl::IsFailedPrecondition(Apply(Lost(100, 150, 7))));  // no partition 7
  EXPECT_EQ(Partition(st_).next_offset(), 100);
  EXPECT_EQ(Partition(st_).lost_size(), 0);
}

TEST_F(DataLossStateTest, OnlyTheLastLostRangesAreKeptButAllAreCounted) {
  Ok(Source());
  int64_t at = 0;
  for (int i = 0; i < ClusterState::kLostRanges + 5; ++i, at += 10) Ok(Lost(at, at + 10));
  ASSERT_EQ(Partition(st_).lost_size(), ClusterState::kLostRanges);
  EXPECT_EQ(Partition(st_).lost(0).from_offset(), 50);  // oldest first
  EXPECT_EQ(Partition(st_).lost_offsets(), (ClusterState::kLostRanges + 5) * 10);
}

TEST_F(DataLossStateTest, PartitionResetMovesOnNeverBackAndSurvivesASnapshot) {
  Ok(Source());
  Ok(Block(0, 100));
  Ok(Lost(100, 400, 0, /*by_reset=*/true));
  Ok(Reset(400));
  EXPECT_EQ(Partition(st_).next_offset(), 400);
  EXPECT_TRUE(Partition(st_).lost(0).by_reset());
  EXPECT_TRUE(absl::IsFailedPrecondition(Apply(Reset(399))));
  EXPECT_TRUE(absl::IsFailedPrecondition(Apply(Reset(500, "nope"))));
  EXPECT_TRUE(absl::IsFailedPrecondition(Apply(Reset(500, "s", -1))));
  Ok(Reset(400));  // where it is: allowed (restarts a stopped receiver there)
  ClusterState copy;
  ASSERT_TRUE(copy.Restore(st_.Snapshot()).ok());
  EXPECT_EQ(copy.View()->sources().at("s").partitions(0).next_offset(), 400);
  EXPECT_EQ(copy.View()->sources().at("s").partitions(0).lost_offsets(), 300);
}

TEST_F(DataLossStateTest, AKafkaPartitionWithoutABlockYetTakesAnyStart) {
  proto::DriverRecord src = Source();
  src.mutable_source_registered()->mutable_spec()->set_kind(proto::SOURCE_KIND_KAFKA);
  Ok(src);
  ASSERT_EQ(Partition(st_).next_offset(), -1);
  Ok(Lost(1000, 1500));
  EXPECT_EQ(Partition(st_).next_offset(), 1500);
}

// The planner: a job whose position falls in a lost range goes on at its
// end, told once (BatchPlanned.skipped); its ranges never span a loss.
TEST_F(DataLossStateTest, ThePlannerJumpsOverALostRangeOnceAndNeverSpansIt) {
  Ok(Source());
  Ok(Block(0, 100));
  proto::JobState job;
  job.mutable_spec()->add_sources("s");
  // Planned up to 60 before the loss.
  proto::BatchPlanned first = PlanBatch("j", job, *st_.View(), 1, 0);
  ASSERT_EQ(first.ranges_size(), 1);
  first.mutable_ranges(0)->set_end_offset(60);
  *job.add_in_flight() = first;
  Ok(Lost(100, 250));
  Ok(Block(250, 300));
  // [60,100) first: up to the loss, not across it; nothing skipped yet.
  proto::BatchPlanned second = PlanBatch("j", job, *st_.View(), 2, 0);
  ASSERT_EQ(second.ranges_size(), 1);
  EXPECT_EQ(second.ranges(0).start_offset(), 60);
  EXPECT_EQ(second.ranges(0).end_offset(), 100);
  EXPECT_EQ(second.skipped_size(), 0);
  *job.add_in_flight() = second;
  // Then the jump, told in this batch.
  proto::BatchPlanned third = PlanBatch("j", job, *st_.View(), 3, 0);
  ASSERT_EQ(third.ranges_size(), 1);
  EXPECT_EQ(third.ranges(0).start_offset(), 250);
  EXPECT_EQ(third.ranges(0).end_offset(), 300);
  ASSERT_EQ(third.skipped_size(), 1);
  EXPECT_EQ(third.skipped(0).from_offset(), 100);
  EXPECT_EQ(third.skipped(0).to_offset(), 250);
  *job.add_in_flight() = third;
  Ok(Block(300, 320));
  proto::BatchPlanned fourth = PlanBatch("j", job, *st_.View(), 4, 0);
  ASSERT_EQ(fourth.ranges_size(), 1);
  EXPECT_EQ(fourth.ranges(0).start_offset(), 300);
  EXPECT_EQ(fourth.skipped_size(), 0);  // told once
}

TEST_F(DataLossStateTest, AJobAtTheLossWithNothingNewAfterItIsToldWhenDataComes) {
  Ok(Source());
  Ok(Block(0, 100));
  proto::JobState job;
  job.mutable_spec()->add_sources("s");
  proto::SourceOffset* o = job.add_committed_offsets();
  o->set_source("s");
  o->set_partition(0);
  o->set_offset(100);
  Ok(Lost(100, 250));
  EXPECT_EQ(PlanBatch("j", job, *st_.View(), 1, 0).ranges_size(), 0);  // nothing after the loss yet
  Ok(Block(250, 260));
  const proto::BatchPlanned plan = PlanBatch("j", job, *st_.View(), 1, 0);
  ASSERT_EQ(plan.ranges_size(), 1);
  EXPECT_EQ(plan.ranges(0).start_offset(), 250);
  EXPECT_EQ(plan.skipped_size(), 1);
}

}  // namespace
}  // namespace sluice::driver
