// Unit tests of the driver's JobProbe (lib/driver/driver_probe.h): which
// committed batches count as re-runs, the histograms observed at a commit,
// and the mirrored totals raised from the replicated state at a scrape.
#include "lib/driver/cluster_state.h"
#include "lib/driver/driver_probe.h"
#include "lib/metrics/metrics.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::driver {
namespace {

using ::testing::HasSubstr;

proto::BatchPlanned Planned(int64_t batch, int ranges, int64_t batch_time_ms = 10'000) {
  proto::BatchPlanned p;
  p.set_job_id("j");
  p.set_batch_id(batch);
  p.set_batch_time_unix_ms(batch_time_ms);
  for (int i = 0; i < ranges; ++i) {
    proto::PartitionRange* r = p.add_ranges();
    r->set_source("s");
    r->set_partition(i);
  }
  return p;
}

proto::BatchCommitted Done(int64_t batch, int attempts, int reduces = 0) {
  proto::BatchCommitted c;
  c.set_job_id("j");
  c.set_batch_id(batch);
  c.set_task_attempts(attempts);
  c.set_started_unix_ms(10'250);
  c.set_finished_unix_ms(10'750);
  for (int i = 0; i < reduces; ++i) c.add_reduce_holders()->set_partition(i);
  return c;
}

Status Apply(ClusterState& st, int64_t seq, const proto::DriverRecord& record) {
  proto::WalRecord r;
  r.set_seq(seq);
  r.set_epoch(1);
  r.set_format(proto::WAL_FORMAT_V1);
  r.set_payload(record.SerializeAsString());
  return st.Apply(r);
}

// The state with job "j" submitted (batches of 500 ms), as WAL record `seq`.
void Submit(ClusterState& st, int64_t seq = 1, int64_t submit_time_unix_ms = 0) {
  proto::DriverRecord submit;
  submit.mutable_job_submitted()->set_job_id("j");
  submit.mutable_job_submitted()->mutable_spec()->set_name("j");
  submit.mutable_job_submitted()->mutable_spec()->set_batch_interval_ms(500);
  submit.mutable_job_submitted()->set_submit_time_unix_ms(submit_time_unix_ms);
  ASSERT_TRUE(Apply(st, seq, submit).ok());
}

// Batch `batch` of "j" planned and committed with these counts, as WAL
// records `seq` and `seq` + 1.
void PlanAndCommit(ClusterState& st, int64_t seq, int64_t batch, int64_t input, int64_t output,
                   int64_t dead_letters = 0) {
  proto::DriverRecord plan;
  *plan.mutable_batch_planned() = Planned(batch, 0);
  ASSERT_TRUE(Apply(st, seq, plan).ok());
  proto::DriverRecord commit;
  *commit.mutable_batch_committed() = Done(batch, 0);
  commit.mutable_batch_committed()->set_input_count(input);
  commit.mutable_batch_committed()->set_output_count(output);
  commit.mutable_batch_committed()->set_dead_letters(dead_letters);
  ASSERT_TRUE(Apply(st, seq + 1, commit).ok());
}

TEST(JobProbe, ARerunIsABatchPlannedInAnEarlierTermOrWithTasksTriedAgain) {
  // One attempt per task, planned by this leader: not a re-run.
  EXPECT_FALSE(JobProbe::IsRerun(Planned(1, 2), Done(1, 2), false));
  EXPECT_FALSE(JobProbe::IsRerun(Planned(1, 0), Done(1, 0), false));  // an empty batch
  // Keyed: the map tasks and one reduce task per partition.
  EXPECT_FALSE(JobProbe::IsRerun(Planned(1, 2), Done(1, 6, 4), false));
  EXPECT_TRUE(JobProbe::IsRerun(Planned(1, 2), Done(1, 7, 4), false));
  // A task tried again.
  EXPECT_TRUE(JobProbe::IsRerun(Planned(1, 2), Done(1, 3), false));
  // Planned by an earlier leader: perhaps run already.
  EXPECT_TRUE(JobProbe::IsRerun(Planned(1, 2), Done(1, 2), true));
}

TEST(JobProbe, CommitsOfBatchesPlannedBeforeTheTermCountAsReruns) {
  metrics::Registry registry;
  ClusterState state;
  ASSERT_NO_FATAL_FAILURE(Submit(state));  // a job's series go with it from the state
  auto probe = JobProbe::Create(&registry, nullptr, &state, nullptr);
  ASSERT_TRUE(probe.ok()) << probe.status();
  // Epoch 5: batches 3 and 4 were in flight when this leader took over; it
  // planned 5 on.
  (*probe)->BatchPlanned("j", 5, 5);
  (*probe)->BatchPlanned("j", 6, 5);
  (*probe)->BatchCommitted(Planned(3, 1), Done(3, 1), 5);
  (*probe)->BatchCommitted(Planned(4, 1), Done(4, 1), 5);
  (*probe)->BatchCommitted(Planned(5, 1), Done(5, 1), 5);
  (*probe)->BatchCommitted(Planned(6, 1), Done(6, 2), 5);  // a task retried
  const std::string text = registry.Expose();
  EXPECT_THAT(text, HasSubstr("sluice_job_batches_rerun_total{job=\"j\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("sluice_job_batches_committed_total{job=\"j\"} 6\n"));
  EXPECT_THAT(text, HasSubstr("sluice_job_task_attempts_total{job=\"j\"} 5\n"));
  // Batch time 10 s, first task 10.25 s, last done 10.75 s.
  EXPECT_THAT(text, HasSubstr("sluice_job_total_delay_seconds_count{job=\"j\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("sluice_job_total_delay_seconds_sum{job=\"j\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("sluice_job_scheduling_delay_seconds_sum{job=\"j\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("sluice_job_processing_seconds_sum{job=\"j\"} 2\n"));
  // A new term: what it did not plan is a re-run again.
  (*probe)->BatchCommitted(Planned(7, 1), Done(7, 1), 6);
  EXPECT_THAT(registry.Expose(), HasSubstr("sluice_job_batches_rerun_total{job=\"j\"} 4\n"));
}

TEST(JobProbe, TotalsComeFromTheReplicatedStateAtEachScrape) {
  ClusterState state;
  ASSERT_NO_FATAL_FAILURE(Submit(state));
  ASSERT_NO_FATAL_FAILURE(PlanAndCommit(state, 2, 1, 250, 200, 3));

  metrics::Registry registry;
  auto probe = JobProbe::Create(&registry, nullptr, &state, nullptr);
  ASSERT_TRUE(probe.ok()) << probe.status();
  const std::string text = registry.Expose();
  EXPECT_THAT(text, HasSubstr("sluice_job_input_records_total{job=\"j\"} 250\n"));
  EXPECT_THAT(text, HasSubstr("sluice_job_output_records_total{job=\"j\"} 200\n"));
  EXPECT_THAT(text, HasSubstr("sluice_job_dead_letters_total{job=\"j\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("sluice_job_batches_planned_total{job=\"j\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("sluice_job_batches_committed_total{job=\"j\"} 1\n"));
  // 250 events in a 500 ms batch.
  EXPECT_THAT(text, HasSubstr("sluice_job_input_rate_events_per_second{job=\"j\"} 500\n"));
  EXPECT_THAT(text, HasSubstr("sluice_job_running{job=\"j\"} 1\n"));
}

TEST(JobProbe, ANameSubmittedAgainBetweenScrapesStartsItsTotalsAgain) {
  ClusterState state;
  ASSERT_NO_FATAL_FAILURE(Submit(state));
  ASSERT_NO_FATAL_FAILURE(PlanAndCommit(state, 2, 1, 250, 200));
  metrics::Registry registry;
  auto probe = JobProbe::Create(&registry, nullptr, &state, nullptr);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_THAT(registry.Expose(), HasSubstr("sluice_job_input_records_total{job=\"j\"} 250\n"));

  // Deleted and submitted again before the next scrape; the new job's
  // first batch (numbered on: 2) reads 40 events.
  proto::DriverRecord stop;
  stop.mutable_job_stopped()->set_job_id("j");
  ASSERT_TRUE(Apply(state, 4, stop).ok());
  proto::DriverRecord del;
  del.mutable_job_deleted()->set_job_id("j");
  ASSERT_TRUE(Apply(state, 5, del).ok());
  ASSERT_NO_FATAL_FAILURE(Submit(state, 6, 60'000));
  ASSERT_NO_FATAL_FAILURE(PlanAndCommit(state, 7, 2, 40, 30));
  const std::string text = registry.Expose();
  EXPECT_THAT(text, HasSubstr("sluice_job_input_records_total{job=\"j\"} 40\n"));
  EXPECT_THAT(text, HasSubstr("sluice_job_output_records_total{job=\"j\"} 30\n"));
  EXPECT_THAT(text, HasSubstr("sluice_job_batches_committed_total{job=\"j\"} 2\n"));
}

}  // namespace
}  // namespace sluice::driver
