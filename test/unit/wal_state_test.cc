// Unit tests of the WAL's view (lib/wal/wal_state.h): blocks are folded away
// once every running job reading their source has committed past them.
#include "lib/wal/wal_state.h"

#include "gtest/gtest.h"

namespace sluice::wal {
namespace {

proto::WalRecord Source(const std::string& name) {
  proto::WalRecord r;
  proto::SourceSpec* s = r.mutable_source_registered()->mutable_spec();
  s->set_name(name);
  s->set_kind(proto::SOURCE_KIND_GENERATOR);
  s->set_partitions(1);
  return r;
}

proto::WalRecord Blocks(const std::string& source, std::vector<std::pair<int64_t, int64_t>> ranges) {
  proto::WalRecord r;
  for (auto [start, end] : ranges) {
    proto::BlockInfo* b = r.mutable_blocks_added()->add_blocks();
    b->mutable_range()->set_source(source);
    b->mutable_range()->set_start_offset(start);
    b->mutable_range()->set_end_offset(end);
    b->set_records(end - start);
  }
  return r;
}

proto::WalRecord Job(const std::string& id, const std::string& source) {
  proto::WalRecord r;
  r.mutable_job_submitted()->set_job_id(id);
  r.mutable_job_submitted()->mutable_spec()->set_name(id);
  r.mutable_job_submitted()->mutable_spec()->add_sources(source);
  return r;
}

proto::WalRecord Plan(const std::string& job, int64_t batch, int64_t start, int64_t end) {
  proto::WalRecord r;
  proto::BatchPlanned* p = r.mutable_batch_planned();
  p->set_job_id(job);
  p->set_batch_id(batch);
  proto::PartitionRange* range = p->add_ranges();
  range->set_source("s");
  range->set_start_offset(start);
  range->set_end_offset(end);
  return r;
}

proto::WalRecord Commit(const std::string& job, int64_t batch, int64_t next) {
  proto::WalRecord r;
  proto::BatchCommitted* c = r.mutable_batch_committed();
  c->set_job_id(job);
  c->set_batch_id(batch);
  proto::SourceOffset* o = c->add_next_offsets();
  o->set_source("s");
  o->set_offset(next);
  return r;
}

int HeldBlocks(const WalState& st) { return st.proto().sources().at("s").partitions(0).blocks_size(); }

TEST(WalStateTest, CommittedBlocksAreFoldedOnceEveryRunningReaderIsPastThem) {
  WalState st;
  int64_t seq = 0;
  auto apply = [&](proto::WalRecord r) {
    r.set_seq(++seq);
    ASSERT_TRUE(st.Apply(r).ok()) << r.ShortDebugString();
  };
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
  EXPECT_EQ(st.proto().sources().at("s").partitions(0).blocks(0).range().start_offset(), 20);
  EXPECT_EQ(st.proto().sources().at("s").partitions(0).next_offset(), 30);  // the record is kept
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

TEST(WalStateTest, CommittedBatchesKeepTheirTimingsAndTotals) {
  WalState st;
  int64_t seq = 0;
  auto apply = [&](proto::WalRecord r) {
    r.set_seq(++seq);
    ASSERT_TRUE(st.Apply(r).ok()) << r.ShortDebugString();
  };
  apply(Source("s"));
  apply(Job("a", "s"));
  for (int64_t n = 1; n <= WalState::kRecentBatches + 5; ++n) {
    proto::WalRecord plan = Plan("a", n, n * 10, n * 10 + 10);
    plan.mutable_batch_planned()->set_batch_time_unix_ms(n * 1000);
    apply(plan);
    proto::WalRecord commit = Commit("a", n, n * 10 + 10);
    proto::BatchCommitted* c = commit.mutable_batch_committed();
    c->set_input_count(10);
    c->set_output_count(7);
    c->set_dead_letters(1);
    c->set_started_unix_ms(n * 1000 + 30);
    c->set_finished_unix_ms(n * 1000 + 250);
    c->set_task_attempts(2);
    apply(commit);
  }
  const proto::JobState& job = st.proto().jobs().at("a");
  ASSERT_EQ(job.recent_batches_size(), WalState::kRecentBatches);
  const proto::BatchSummary& last = job.recent_batches(WalState::kRecentBatches - 1);
  EXPECT_EQ(job.recent_batches(0).batch_id(), 6);  // the oldest are dropped
  EXPECT_EQ(last.batch_id(), WalState::kRecentBatches + 5);
  EXPECT_EQ(last.batch_time_unix_ms(), last.batch_id() * 1000);
  EXPECT_EQ(last.scheduling_delay_ms(), 30);
  EXPECT_EQ(last.processing_ms(), 220);
  EXPECT_EQ(last.total_delay_ms(), 250);
  EXPECT_EQ(last.task_attempts(), 2);
  EXPECT_EQ(job.total_input(), 10 * (WalState::kRecentBatches + 5));
  EXPECT_EQ(job.total_output(), 7 * (WalState::kRecentBatches + 5));
  EXPECT_EQ(job.total_dead_letters(), WalState::kRecentBatches + 5);
}

}  // namespace
}  // namespace sluice::wal
