// Unit tests of a job's life in the driver's state machine (ClusterState:
// stop, drain, restart, update, delete, the batch clock) and of the update
// rules (CheckUpdate), and of a drain's bound in the planner (PlanBatch).
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/driver/cluster_state.h"
#include "lib/driver/job_update.h"
#include "lib/driver/rescale.h"
#include "lib/driver/planner.h"
#include "lib/engine/job_file.h"

namespace sluice::driver {
namespace {

class LifecycleStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    proto::DriverRecord source;
    proto::SourceSpec* s = source.mutable_source_registered()->mutable_spec();
    s->set_name("s");
    s->set_kind(proto::SOURCE_KIND_GENERATOR);
    s->set_partitions(1);
    Apply(source);
  }

  void Apply(const proto::DriverRecord& r) { ASSERT_TRUE(st_.ApplyRecord(r, ++seq_).ok()) << r.ShortDebugString(); }
  Status TryApply(const proto::DriverRecord& r) { return st_.ApplyRecord(r, ++seq_); }

  proto::DriverRecord Submit(const std::string& id, int64_t at_ms = 1000, const std::string& filter = "v > 1") {
    proto::DriverRecord r;
    r.mutable_job_submitted()->set_job_id(id);
    r.mutable_job_submitted()->set_submit_time_unix_ms(at_ms);
    *r.mutable_job_submitted()->mutable_spec() = Spec(id, filter);
    return r;
  }
  static proto::JobSpec Spec(const std::string& id, const std::string& filter) {
    proto::JobSpec spec;
    spec.set_name(id);
    spec.set_batch_interval_ms(100);
    spec.add_sources("s");
    spec.add_operators()->mutable_filter()->set_expr(filter);
    return spec;
  }
  void Blocks(int64_t start, int64_t end) {
    proto::DriverRecord r;
    proto::BlockInfo* b = r.mutable_blocks_added()->add_blocks();
    b->mutable_range()->set_source("s");
    b->mutable_range()->set_start_offset(start);
    b->mutable_range()->set_end_offset(end);
    Apply(r);
  }
  void Plan(const std::string& job, int64_t batch, int64_t start, int64_t end) {
    proto::DriverRecord r;
    proto::BatchPlanned* p = r.mutable_batch_planned();
    p->set_job_id(job);
    p->set_batch_id(batch);
    proto::PartitionRange* range = p->add_ranges();
    range->set_source("s");
    range->set_start_offset(start);
    range->set_end_offset(end);
    Apply(r);
  }
  void Commit(const std::string& job, int64_t batch, int64_t next) {
    proto::DriverRecord r;
    proto::BatchCommitted* c = r.mutable_batch_committed();
    c->set_job_id(job);
    c->set_batch_id(batch);
    proto::SourceOffset* o = c->add_next_offsets();
    o->set_source("s");
    o->set_offset(next);
    proto::ReduceHolders* h = c->add_reduce_holders();
    h->add_workers("w1");
    c->set_state_keys(7);
    Apply(r);
  }
  proto::DriverRecord Stop(const std::string& job, bool failed = false) {
    proto::DriverRecord r;
    r.mutable_job_stopped()->set_job_id(job);
    r.mutable_job_stopped()->set_reason(failed ? "FAILED: batch 2: boom" : "by hand");
    r.mutable_job_stopped()->set_failed(failed);
    return r;
  }
  proto::DriverRecord Restart(const std::string& job, int64_t at_ms) {
    proto::DriverRecord r;
    r.mutable_job_restarted()->set_job_id(job);
    r.mutable_job_restarted()->set_restart_unix_ms(at_ms);
    return r;
  }
  proto::DriverRecord Delete(const std::string& job) {
    proto::DriverRecord r;
    r.mutable_job_deleted()->set_job_id(job);
    return r;
  }
  const proto::JobState& Job(const std::string& id) { return st_.View()->jobs().at(id); }

  ClusterState st_;
  int64_t seq_ = 0;
};

TEST_F(LifecycleStateTest, AStoppedJobKeepsItsPositionsAndStateAndRestartsWithANewClock) {
  Apply(Submit("a", 1000));
  EXPECT_EQ(BatchTimeOf(Job("a"), 1), 1100);
  Blocks(0, 10);
  Plan("a", 1, 0, 10);
  Commit("a", 1, 10);
  Plan("a", 2, 10, 10);
  Apply(Stop("a", /*failed=*/true));
  EXPECT_TRUE(Job("a").stopped());
  EXPECT_TRUE(Job("a").failed());
  EXPECT_EQ(Job("a").committed_offsets(0).offset(), 10);
  EXPECT_EQ(Job("a").reduce_holders_size(), 1);
  EXPECT_EQ(Job("a").in_flight_size(), 1) << "batch 2 runs again as planned after a restart";
  EXPECT_FALSE(TryApply(Delete("b")).ok());
  EXPECT_FALSE(TryApply(Restart("b", 5000)).ok());

  Apply(Restart("a", 50'000));
  EXPECT_FALSE(Job("a").stopped());
  EXPECT_FALSE(Job("a").failed());
  EXPECT_EQ(Job("a").restarts(), 1);
  // Batch 3 is the first planned after the restart: one interval after it.
  EXPECT_EQ(BatchTimeOf(Job("a"), 3), 50'100);
  EXPECT_FALSE(TryApply(Restart("a", 60'000)).ok()) << "a running job is not restarted";
  EXPECT_FALSE(TryApply(Delete("a")).ok()) << "a running job is not deleted";

  // An older log's stop record has no failed flag; its reason says it.
  proto::DriverRecord old_stop = Stop("a");
  old_stop.mutable_job_stopped()->set_reason("FAILED: from an older release");
  Apply(old_stop);
  EXPECT_TRUE(Job("a").failed());
}

TEST_F(LifecycleStateTest, AnUpdateLeavesTheBatchesInFlightTheirSpec) {
  Apply(Submit("a", 1000, "v > 1"));
  Blocks(0, 30);
  Plan("a", 1, 0, 10);
  Plan("a", 2, 10, 20);
  proto::DriverRecord update;
  update.mutable_job_updated()->set_job_id("a");
  *update.mutable_job_updated()->mutable_spec() = Spec("a", "v > 2");
  update.mutable_job_updated()->set_update_unix_ms(9000);
  update.mutable_job_updated()->set_reset_state(true);
  Apply(update);
  const proto::JobState& job = Job("a");
  EXPECT_EQ(SpecForBatch(job, 1).operators(0).filter().expr(), "v > 1");
  EXPECT_EQ(SpecForBatch(job, 2).operators(0).filter().expr(), "v > 1");
  EXPECT_EQ(SpecForBatch(job, 3).operators(0).filter().expr(), "v > 2");
  EXPECT_EQ(job.state_reset_batch(), 3);
  EXPECT_EQ(BatchTimeOf(job, 3), 9100);
  Commit("a", 1, 10);
  EXPECT_TRUE(Job("a").has_previous_spec()) << "batch 2 still runs the old spec";
  Commit("a", 2, 20);
  EXPECT_FALSE(Job("a").has_previous_spec());
  EXPECT_EQ(Job("a").updates(), 1);

  // Nothing in flight: the new spec applies from the next batch at once.
  update.mutable_job_updated()->mutable_spec()->mutable_operators(0)->mutable_filter()->set_expr("v > 3");
  update.mutable_job_updated()->set_reset_state(false);
  Apply(update);
  EXPECT_FALSE(Job("a").has_previous_spec());
  EXPECT_EQ(SpecForBatch(Job("a"), 3).operators(0).filter().expr(), "v > 3");
}

TEST_F(LifecycleStateTest, AResetOfTheStateWaitsForTheBatchesInFlight) {
  Apply(Submit("a"));
  Blocks(0, 30);
  Plan("a", 1, 0, 10);
  Commit("a", 1, 10);  // the state is on w1 as of batch 1
  Plan("a", 2, 10, 20);
  proto::DriverRecord update;
  update.mutable_job_updated()->set_job_id("a");
  *update.mutable_job_updated()->mutable_spec() = Spec("a", "v > 2");
  update.mutable_job_updated()->set_reset_state(true);
  Apply(update);
  // Batch 2 runs the old spec on the old state: its holders stay.
  EXPECT_EQ(Job("a").reduce_holders_size(), 1);
  EXPECT_EQ(Job("a").state_reset_batch(), 3);
}

TEST_F(LifecycleStateTest, ADrainsFlushBatchStopsTheJobAsItCommits) {
  Apply(Submit("a"));
  proto::DriverRecord drain;
  drain.mutable_job_drain_requested()->set_job_id("a");
  Apply(drain);
  proto::DriverRecord flush;
  flush.mutable_batch_planned()->set_job_id("a");
  flush.mutable_batch_planned()->set_batch_id(1);
  flush.mutable_batch_planned()->set_final_flush(true);
  Apply(flush);
  // Stopped and restarted before it committed: it runs as a plain batch.
  Apply(Stop("a"));
  Apply(Restart("a", 5000));
  EXPECT_FALSE(Job("a").in_flight(0).final_flush());
  EXPECT_FALSE(Job("a").draining());
  Commit("a", 1, 0);
  EXPECT_FALSE(Job("a").stopped());
  // A drain whose flush commits: stopped in the same record.
  Apply(drain);
  flush.mutable_batch_planned()->set_batch_id(2);
  Apply(flush);
  Commit("a", 2, 0);
  EXPECT_TRUE(Job("a").stopped());
  EXPECT_FALSE(Job("a").failed());
  EXPECT_FALSE(Job("a").draining());
  // A drain asked of a job that has just failed is nothing to do.
  EXPECT_TRUE(TryApply(drain).ok());
  EXPECT_TRUE(Job("a").stopped());
}

TEST_F(LifecycleStateTest, ADeletedNameIsFreeAndItsNextJobNumbersBatchesOn) {
  Apply(Submit("a"));
  Blocks(0, 10);
  Plan("a", 1, 0, 5);
  Commit("a", 1, 5);
  Plan("a", 2, 5, 10);
  EXPECT_FALSE(TryApply(Delete("a")).ok()) << "running";
  Apply(Stop("a"));
  Apply(Delete("a"));
  EXPECT_FALSE(st_.View()->jobs().contains("a"));
  EXPECT_EQ(st_.View()->deleted_jobs().at("a"), 2);
  // A snapshot carries the deleted names.
  ClusterState restored;
  ASSERT_TRUE(restored.Restore(st_.Snapshot()).ok());
  EXPECT_EQ(restored.View()->deleted_jobs().at("a"), 2);

  Apply(Submit("a", 70'000));
  EXPECT_EQ(Job("a").last_planned_batch(), 2);
  EXPECT_EQ(Job("a").last_committed_batch(), 2);
  EXPECT_TRUE(Job("a").committed_offsets().empty()) << "positions went with the deleted job";
  EXPECT_EQ(BatchTimeOf(Job("a"), 3), 70'100);
  EXPECT_FALSE(st_.View()->deleted_jobs().contains("a"));
  Plan("a", 3, 0, 10);  // the next batch is 3
}

TEST_F(LifecycleStateTest, ASubmitFromASavepointStartsAtItsBatch) {
  proto::DriverRecord r = Submit("a", 1000);
  proto::SavepointStart* sp = r.mutable_job_submitted()->mutable_from_savepoint();
  sp->set_last_committed_batch(41);
  proto::SourceOffset* o = sp->add_offsets();
  o->set_source("s");
  o->set_offset(1234);
  sp->add_reduce_holders()->add_workers("w2");
  sp->set_savepoint("/sp/1");
  Apply(r);
  EXPECT_EQ(Job("a").last_committed_batch(), 41);
  EXPECT_EQ(Job("a").committed_offsets(0).offset(), 1234);
  EXPECT_EQ(Job("a").reduce_holders(0).workers(0), "w2");
  EXPECT_EQ(Job("a").savepoint(), "/sp/1");
}

TEST_F(LifecycleStateTest, ADrainPlansNoFurtherThanItsBound) {
  Apply(Submit("a"));
  Blocks(0, 10);
  Blocks(10, 20);
  proto::DriverRecord drain;
  drain.mutable_job_drain_requested()->set_job_id("a");
  proto::SourceOffset* until = drain.mutable_job_drain_requested()->add_until();
  until->set_source("s");
  until->set_offset(20);
  Apply(drain);
  Blocks(20, 30);  // arrives after the drain was asked
  proto::BatchPlanned plan = PlanBatch("a", Job("a"), *st_.View(), 1, 1100);
  ASSERT_EQ(plan.ranges_size(), 1);
  EXPECT_EQ(plan.ranges(0).start_offset(), 0);
  EXPECT_EQ(plan.ranges(0).end_offset(), 20);
  Plan("a", 1, 0, 20);
  EXPECT_TRUE(PlanBatch("a", Job("a"), *st_.View(), 2, 1200).ranges().empty());
  Apply(Stop("a"));
  EXPECT_FALSE(Job("a").draining());
  EXPECT_TRUE(Job("a").drain_until().empty());
  ASSERT_TRUE(TryApply(drain).ok());
  EXPECT_FALSE(Job("a").draining()) << "a stopped job does not drain";
}

TEST_F(LifecycleStateTest, ARestartedJobReadsTheDroppedGapAgainUpToTheOldestBlockHeld) {
  // Job "b" commits past [0,20) while "a" is stopped: those blocks go, and
  // "a" (at 10) reads [10,20) again from the source, within its bound.
  Apply(Submit("a"));
  Apply(Submit("b"));
  Blocks(0, 10);
  Plan("a", 1, 0, 10);
  Commit("a", 1, 10);
  Apply(Stop("a"));
  Blocks(10, 20);
  Blocks(20, 30);
  Plan("b", 1, 0, 20);
  Commit("b", 1, 20);
  ASSERT_EQ(st_.View()->sources().at("s").partitions(0).blocks(0).range().start_offset(), 20);
  Apply(Restart("a", 9000));
  proto::BatchPlanned plan = PlanBatch("a", Job("a"), *st_.View(), 2, 9100);
  ASSERT_EQ(plan.ranges_size(), 1);
  EXPECT_EQ(plan.ranges(0).start_offset(), 10);
  EXPECT_EQ(plan.ranges(0).end_offset(), 20) << "the gap alone; the held blocks in the next batch";
  proto::JobState bounded = Job("a");
  bounded.mutable_spec()->set_max_records_per_batch(4);
  plan = PlanBatch("a", bounded, *st_.View(), 2, 9100);
  ASSERT_EQ(plan.ranges_size(), 1);
  EXPECT_EQ(plan.ranges(0).end_offset(), 14);
}

proto::JobSpec Parse(const std::string& yaml) {
  Result<proto::JobSpec> spec = engine::ParseJobFile(yaml, "job.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *spec : proto::JobSpec();
}

std::string Keyed(const std::string& pre, const std::string& key, const std::string& stateful, int partitions = 4) {
  return "name: k\nbatch_interval: 1s\nreduce_partitions: " + std::to_string(partitions) +
         "\nsources:\n  - {name: s, kind: generator, partitions: 1}\noperators:\n  - parse: {format: json}\n" + pre +
         "  - key_by: " + key + "\n  - " + stateful + "\nsink:\n  stdout: {}\n";
}

TEST(CheckUpdateTest, ARescaleKeepsTheStateReSplit) {
  const proto::JobSpec base = Parse(Keyed("", "key", "update_state: {running: [{fn: count, as: n}]}"));
  Result<UpdateCheck> more = CheckUpdate(base, Parse(Keyed("", "key", "update_state: {running: [{fn: count, as: n}]}", 8)),
                                         false);
  ASSERT_TRUE(more.ok()) << more.status();
  EXPECT_EQ(more->state, "kept");
  EXPECT_THAT(more->changes, ::testing::Contains("state re-split: 4 -> 8 reduce partitions"));
  // With a filter changed too, and for a windowed job.
  Result<UpdateCheck> with_filter = CheckUpdate(
      base, Parse(Keyed("  - filter: \"v > 1\"\n", "key", "update_state: {running: [{fn: count, as: n}]}", 1)), false);
  ASSERT_TRUE(with_filter.ok()) << with_filter.status();
  EXPECT_EQ(with_filter->state, "kept");
  const std::string window = "window: {type: tumbling, length: 2s}\n  - aggregate: [{fn: count}]";
  Result<UpdateCheck> windowed = CheckUpdate(Parse(Keyed("", "key", window)), Parse(Keyed("", "key", window, 2)), false);
  ASSERT_TRUE(windowed.ok()) << windowed.status();
  EXPECT_EQ(windowed->state, "kept");
  // A stateless keyed job (an aggregate per batch) simply runs with the new count.
  const std::string per_batch = "aggregate: [{fn: count}]";
  Result<UpdateCheck> stateless = CheckUpdate(Parse(Keyed("", "key", per_batch)), Parse(Keyed("", "key", per_batch, 16)),
                                              false);
  ASSERT_TRUE(stateless.ok()) << stateless.status();
  EXPECT_EQ(stateless->state, "none");
}

TEST(PlanStateLayoutTest, ANewCountStartsANewLayoutAndMovesOnlyExistingState) {
  proto::JobState job;
  *job.mutable_spec() = Parse(Keyed("", "key", "update_state: {running: [{fn: count, as: n}]}", 8));
  job.set_holders_partitions(4);
  job.set_state_layout(2);
  // No partition holds state yet: a new layout, nothing to move.
  StateLayoutPlan plan = PlanStateLayout(job, 8, /*stateful=*/true);
  EXPECT_EQ(plan.layout, 3);
  EXPECT_FALSE(plan.resplit);
  proto::ReduceHolders* h = job.add_reduce_holders();
  h->set_partition(1);
  h->add_workers("w1");
  plan = PlanStateLayout(job, 8, true);
  EXPECT_EQ(plan.layout, 3);
  EXPECT_TRUE(plan.resplit);
  EXPECT_EQ(plan.old_layout, 2);
  EXPECT_EQ(plan.old_partitions, 4);
  // The same count, or a stateless stage: the layout stays.
  plan = PlanStateLayout(job, 4, true);
  EXPECT_EQ(plan.layout, 2);
  EXPECT_FALSE(plan.resplit);
  plan = PlanStateLayout(job, 8, false);
  EXPECT_EQ(plan.layout, 2);
  EXPECT_FALSE(plan.resplit);
  // Recorded before rescaling existed: the holders are of the spec's count
  // (the one before an update in progress).
  job.clear_holders_partitions();
  EXPECT_EQ(HoldersPartitions(job), 8);
  *job.mutable_previous_spec() = Parse(Keyed("", "key", "update_state: {running: [{fn: count, as: n}]}", 4));
  EXPECT_EQ(HoldersPartitions(job), 4);
}

TEST(CheckUpdateTest, TheKeyedPartDecidesWhetherTheStateIsKept) {
  const proto::JobSpec base = Parse(Keyed("", "key", "update_state: {running: [{fn: count, as: n}]}"));
  // A filter before key_by: kept.
  Result<UpdateCheck> kept =
      CheckUpdate(base, Parse(Keyed("  - filter: \"v > 1\"\n", "key", "update_state: {running: [{fn: count, as: n}]}")),
                  false);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->state, "kept");
  // Compared step by step: an inserted step shifts the ones after it.
  ASSERT_EQ(kept->changes.size(), 3u);
  EXPECT_EQ(kept->changes[0], "operators: step 2 (key_by -> filter) changed");
  EXPECT_EQ(kept->changes[2], "operators: step 4 added (update_state)");
  // Another key, another aggregate (with or without another partition
  // count): refused, then reset.
  for (const proto::JobSpec& next :
       {Parse(Keyed("", "v", "update_state: {running: [{fn: count, as: n}]}")),
        Parse(Keyed("", "key", "update_state: {running: [{fn: sum, field: v}]}")),
        Parse(Keyed("", "key", "update_state: {running: [{fn: sum, field: v}]}", 8)),
        Parse(Keyed("", "v", "update_state: {running: [{fn: count, as: n}]}", 2))}) {
    Result<UpdateCheck> refused = CheckUpdate(base, next, false);
    ASSERT_FALSE(refused.ok());
    EXPECT_TRUE(absl::IsFailedPrecondition(refused.status()));
    EXPECT_NE(refused.status().message().find("--reset-state"), std::string::npos) << refused.status();
    Result<UpdateCheck> reset = CheckUpdate(base, next, true);
    ASSERT_TRUE(reset.ok()) << reset.status();
    EXPECT_EQ(reset->state, "reset");
  }
  // Dropping the stateful operator needs --reset-state too.
  proto::JobSpec stateless = base;
  stateless.mutable_operators()->DeleteSubrange(1, 2);
  EXPECT_FALSE(CheckUpdate(base, stateless, false).ok());
  // The same spec: nothing to do. Another name or other sources: refused.
  EXPECT_TRUE(absl::IsInvalidArgument(CheckUpdate(base, base, false).status()));
  proto::JobSpec renamed = base;
  renamed.set_name("other");
  EXPECT_TRUE(absl::IsFailedPrecondition(CheckUpdate(base, renamed, false).status()));
  proto::JobSpec more_sources = base;
  more_sources.add_sources("t");
  Result<UpdateCheck> sources = CheckUpdate(base, more_sources, true);
  ASSERT_FALSE(sources.ok());
  EXPECT_NE(sources.status().message().find("sources [s] -> [s, t]"), std::string::npos) << sources.status();
  // A stateless job may change anything but its name and sources.
  proto::JobSpec a = base, b = base;
  a.mutable_operators()->DeleteSubrange(1, 2);
  b.mutable_operators()->DeleteSubrange(1, 2);
  b.mutable_sink()->mutable_null();
  b.set_batch_interval_ms(250);
  Result<UpdateCheck> stateless_change = CheckUpdate(a, b, false);
  ASSERT_TRUE(stateless_change.ok()) << stateless_change.status();
  EXPECT_EQ(stateless_change->state, "none");
  EXPECT_EQ(stateless_change->changes.size(), 2u);
}

}  // namespace
}  // namespace sluice::driver
