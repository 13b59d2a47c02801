// Unit tests of the driver's state machine (lib/driver/cluster_state.h), fed
// through the log's interface: records fold in, blocks are folded away once
// every running job reading their source has committed past them, views never
// change under their reader, snapshots round-trip and carry a format.
#include "lib/driver/cluster_state.h"
#include "lib/common/version.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::driver {
namespace {

proto::DriverRecord Source(const std::string& name) {
  proto::DriverRecord r;
  proto::SourceSpec* s = r.mutable_source_registered()->mutable_spec();
  s->set_name(name);
  s->set_kind(proto::SOURCE_KIND_GENERATOR);
  s->set_partitions(1);
  return r;
}

proto::DriverRecord Blocks(const std::string& source, std::vector<std::pair<int64_t, int64_t>> ranges) {
  proto::DriverRecord r;
  for (auto [start, end] : ranges) {
    proto::BlockInfo* b = r.mutable_blocks_added()->add_blocks();
    b->mutable_range()->set_source(source);
    b->mutable_range()->set_start_offset(start);
    b->mutable_range()->set_end_offset(end);
    b->set_records(end - start);
  }
  return r;
}

proto::DriverRecord Job(const std::string& id, const std::string& source) {
  proto::DriverRecord r;
  r.mutable_job_submitted()->set_job_id(id);
  r.mutable_job_submitted()->mutable_spec()->set_name(id);
  r.mutable_job_submitted()->mutable_spec()->add_sources(source);
  return r;
}

proto::DriverRecord Plan(const std::string& job, int64_t batch, int64_t start, int64_t end) {
  proto::DriverRecord r;
  proto::BatchPlanned* p = r.mutable_batch_planned();
  p->set_job_id(job);
  p->set_batch_id(batch);
  proto::PartitionRange* range = p->add_ranges();
  range->set_source("s");
  range->set_start_offset(start);
  range->set_end_offset(end);
  return r;
}

proto::DriverRecord Commit(const std::string& job, int64_t batch, int64_t next) {
  proto::DriverRecord r;
  proto::BatchCommitted* c = r.mutable_batch_committed();
  c->set_job_id(job);
  c->set_batch_id(batch);
  proto::SourceOffset* o = c->add_next_offsets();
  o->set_source("s");
  o->set_offset(next);
  return r;
}

int HeldBlocks(const ClusterState& st) { return st.View()->sources().at("s").partitions(0).blocks_size(); }

// Applies `record` as the log would: the payload of a committed WalRecord.
Status ApplyAt(ClusterState& st, int64_t seq, const proto::DriverRecord& record) {
  proto::WalRecord r;
  r.set_seq(seq);
  r.set_epoch(1);
  r.set_format(proto::WAL_FORMAT_V1);
  r.set_payload(record.SerializeAsString());
  return st.Apply(r);
}

TEST(ClusterStateTest, CommittedBlocksAreFoldedOnceEveryRunningReaderIsPastThem) {
  ClusterState st;
  int64_t seq = 0;
  auto apply = [&](const proto::DriverRecord& r) { ASSERT_TRUE(ApplyAt(st, ++seq, r).ok()) << r.ShortDebugString(); };
  apply(Source("s"));
  apply(Blocks("s", {{0, 10}, {10, 20}, {20, 30}}));
  apply(Job("a", "s"));
  apply(Job("b", "s"));
  apply(Plan("a", 1, 0, 20));
  apply(Plan("b", 1, 0, 10));
  apply(Commit("b", 1, 10));
  // "a" still has to run [0,20): nothing goes.
  EXPECT_EQ(HeldBlocks(st), 3);
  apply(Commit("a", 1, 20));
  // "b" is at 10: [0,10) goes, [10,20) stays for it.
  EXPECT_EQ(HeldBlocks(st), 2);
  apply(Plan("b", 2, 10, 30));
  apply(Commit("b", 2, 30));
  EXPECT_EQ(HeldBlocks(st), 1);  // both past 20
  EXPECT_EQ(st.View()->sources().at("s").partitions(0).blocks(0).range().start_offset(), 20);
  EXPECT_EQ(st.View()->sources().at("s").partitions(0).next_offset(), 30);  // the record is kept
  // "c" has no position in the partition yet: it will start at the oldest
  // block still held, so nothing goes until it has one.
  apply(Job("c", "s"));
  apply(Blocks("s", {{30, 40}}));
  apply(Plan("a", 2, 20, 40));
  apply(Commit("a", 2, 40));
  apply(Plan("b", 3, 30, 40));
  apply(Commit("b", 3, 40));
  EXPECT_EQ(HeldBlocks(st), 2);
  apply(Plan("c", 1, 20, 40));
  apply(Commit("c", 1, 40));
  EXPECT_EQ(HeldBlocks(st), 0);
}

TEST(ClusterStateTest, CommittedBatchesKeepTheirTimingsAndTotals) {
  ClusterState st;
  int64_t seq = 0;
  auto apply = [&](const proto::DriverRecord& r) { ASSERT_TRUE(ApplyAt(st, ++seq, r).ok()) << r.ShortDebugString(); };
  apply(Source("s"));
  apply(Job("a", "s"));
  for (int64_t n = 1; n <= ClusterState::kRecentBatches + 5; ++n) {
    proto::DriverRecord plan = Plan("a", n, n * 10, n * 10 + 10);
    plan.mutable_batch_planned()->set_batch_time_unix_ms(n * 1000);
    apply(plan);
    proto::DriverRecord commit = Commit("a", n, n * 10 + 10);
    proto::BatchCommitted* c = commit.mutable_batch_committed();
    c->set_input_count(10);
    c->set_output_count(7);
    c->set_dead_letters(1);
    c->set_started_unix_ms(n * 1000 + 30);
    c->set_finished_unix_ms(n * 1000 + 250);
    c->set_task_attempts(2);
    apply(commit);
  }
  const auto view = st.View();
  const proto::JobState& job = view->jobs().at("a");
  ASSERT_EQ(job.recent_batches_size(), ClusterState::kRecentBatches);
  const proto::BatchSummary& last = job.recent_batches(ClusterState::kRecentBatches - 1);
  EXPECT_EQ(job.recent_batches(0).batch_id(), 6);  // the oldest are dropped
  EXPECT_EQ(last.batch_id(), ClusterState::kRecentBatches + 5);
  EXPECT_EQ(last.batch_time_unix_ms(), last.batch_id() * 1000);
  EXPECT_EQ(last.scheduling_delay_ms(), 30);
  EXPECT_EQ(last.processing_ms(), 220);
  EXPECT_EQ(last.total_delay_ms(), 250);
  EXPECT_EQ(last.task_attempts(), 2);
  EXPECT_EQ(job.total_input(), 10 * (ClusterState::kRecentBatches + 5));
  EXPECT_EQ(job.total_output(), 7 * (ClusterState::kRecentBatches + 5));
  EXPECT_EQ(job.total_dead_letters(), ClusterState::kRecentBatches + 5);
}

TEST(ClusterStateTest, FoldsJobsBatchesAndOffsets) {
  ClusterState state;
  proto::DriverRecord r;
  const int64_t r_seq = 1;
  r.mutable_job_submitted()->set_job_id("j");
  r.mutable_job_submitted()->mutable_spec()->set_name("wordcount");
  ASSERT_TRUE(ApplyAt(state, r_seq, r).ok());
  EXPECT_FALSE(ApplyAt(state, r_seq, r).ok());  // twice
  proto::DriverRecord plan;
  const int64_t plan_seq = 2;
  plan.mutable_batch_planned()->set_job_id("j");
  plan.mutable_batch_planned()->set_batch_id(1);
  ASSERT_TRUE(ApplyAt(state, plan_seq, plan).ok());
  plan.mutable_batch_planned()->set_batch_id(3);
  EXPECT_THAT(std::string(ApplyAt(state, plan_seq, plan).message()), ::testing::HasSubstr("batch 3 planned after 1"));
  proto::DriverRecord commit;
  const int64_t commit_seq = 3;
  commit.mutable_batch_committed()->set_job_id("j");
  commit.mutable_batch_committed()->set_batch_id(1);
  auto* off = commit.mutable_batch_committed()->add_next_offsets();
  off->set_source("events");
  off->set_partition(2);
  off->set_offset(500);
  ASSERT_TRUE(ApplyAt(state, commit_seq, commit).ok());
  const auto view = state.View();
  const proto::JobState& job = view->jobs().at("j");
  EXPECT_EQ(job.last_planned_batch(), 1);
  EXPECT_EQ(job.last_committed_batch(), 1);
  EXPECT_EQ(job.in_flight_size(), 0);
  ASSERT_EQ(job.committed_offsets_size(), 1);
  EXPECT_EQ(job.committed_offsets(0).offset(), 500);
  commit.mutable_batch_committed()->set_batch_id(2);
  EXPECT_FALSE(ApplyAt(state, commit_seq, commit).ok());  // never planned
  proto::DriverRecord stop;
  const int64_t stop_seq = 4;
  stop.mutable_job_stopped()->set_job_id("j");
  ASSERT_TRUE(ApplyAt(state, stop_seq, stop).ok());
  EXPECT_TRUE(state.View()->jobs().at("j").stopped());
}


TEST(ClusterStateTest, AViewNeverChangesUnderItsReader) {
  ClusterState st;
  ASSERT_TRUE(ApplyAt(st, 1, Source("s")).ok());
  const std::shared_ptr<const proto::ClusterState> before = st.View();
  EXPECT_EQ(st.View().get(), before.get());  // nothing applied: the same state, not a copy
  ASSERT_TRUE(ApplyAt(st, 2, Job("a", "s")).ok());
  EXPECT_FALSE(before->jobs().contains("a"));  // the reader's view is as it was
  EXPECT_TRUE(st.View()->jobs().contains("a"));
  EXPECT_NE(st.View().get(), before.get());
}

TEST(ClusterStateTest, SnapshotRoundTripsAndTheLeaderChangeIsKept) {
  ClusterState st;
  ASSERT_TRUE(ApplyAt(st, 1, Source("s")).ok());
  ASSERT_TRUE(ApplyAt(st, 2, Job("a", "s")).ok());
  proto::WalRecord change;
  change.set_seq(3);
  change.mutable_leader_change()->set_epoch(7);
  change.mutable_leader_change()->set_leader_id("driver-2");
  ASSERT_TRUE(st.Apply(change).ok());
  ClusterState restored;
  ASSERT_TRUE(restored.Restore(st.Snapshot()).ok());
  EXPECT_EQ(restored.View()->SerializeAsString(), st.View()->SerializeAsString());
  EXPECT_EQ(restored.View()->last_leader_epoch(), 7);
  ASSERT_TRUE(restored.Restore("").ok());  // the empty log's state
  EXPECT_TRUE(restored.View()->jobs().empty());
}

TEST(ClusterStateTest, SnapshotOfAnUnknownFormatOrUnreadableIsRefused) {
  proto::ClusterSnapshot newer;
  newer.set_format(static_cast<proto::ClusterStateFormat>(version::kClusterStateFormat + 1));
  ClusterState st;
  Status s = st.Restore(newer.SerializeAsString());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("format " + std::to_string(version::kClusterStateFormat + 1)));
  EXPECT_EQ(st.Restore("\xff\xff\xff").code(), absl::StatusCode::kDataLoss);
  proto::WalRecord garbage;
  garbage.set_seq(9);
  garbage.set_payload("\xff\xff\xff");
  EXPECT_THAT(std::string(st.Apply(garbage).message()), ::testing::HasSubstr("WAL record 9"));
}

}  // namespace
}  // namespace sluice::driver
