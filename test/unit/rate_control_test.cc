// Unit tests of the rate controller (lib/driver/rate_control.h): the PID
// estimator against a simulated job whose capacity steps down and up, its
// rules (first batch, batches the limit did not hold back, floor, ceiling),
// and RateControl's per-partition limits over the jobs of a cluster state.
#include "lib/driver/rate_control.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "gtest/gtest.h"

namespace sluice::driver {
namespace {

// A job on a simulated cluster: batches every `interval_ms`, one at a time;
// a batch of n events takes fixed_ms + n / capacity. The source offers far
// more than the job can take, so what a batch holds is what the receivers
// were allowed to read over its interval. A new rate reaches the receivers
// `push_ms` after the batch that produced it finished (the leader pushes
// limits every heartbeat).
struct SimulatedJob {
  int64_t interval_ms = 1000;
  int64_t fixed_ms = 100;
  int64_t push_ms = 500;
  double offered = 2'000'000;  // events/s the source could give

  struct Batch {
    int64_t id, events, scheduling_delay_ms, processing_ms;
    double rate_after;  // the estimator's rate once it saw this batch
  };

  // Runs batches 1..capacities.size(), batch i at capacities[i-1] events/s.
  std::vector<Batch> Run(PidRateEstimator* estimator, const std::vector<double>& capacities) {
    std::vector<Batch> out;
    // (time from which a rate holds, the rate); 0 means no limit.
    std::vector<std::pair<int64_t, double>> limits = {{0, estimator->rate()}};
    auto read = [&](int64_t from, int64_t to) {
      double events = 0;
      for (int64_t t = from; t < to; t += 10) {
        double rate = 0;
        for (const auto& [at, r] : limits) {
          if (at <= t) rate = r;
        }
        events += (rate > 0 ? std::min(rate, offered) : offered) * 0.010;
      }
      return static_cast<int64_t>(events);
    };
    int64_t finished = 0;
    for (size_t i = 0; i < capacities.size(); ++i) {
      const int64_t id = static_cast<int64_t>(i) + 1;
      const int64_t batch_time = id * interval_ms;
      const int64_t events = read(batch_time - interval_ms, batch_time);
      const int64_t start = std::max(batch_time, finished);
      const int64_t processing =
          fixed_ms + static_cast<int64_t>(static_cast<double>(events) * 1000 / capacities[i]);
      finished = start + processing;
      estimator->Compute(finished, events, processing, start - batch_time);
      limits.emplace_back(finished + push_ms, estimator->rate());
      out.push_back({id, events, start - batch_time, processing, estimator->rate()});
    }
    return out;
  }
};

std::vector<double> Steps(std::initializer_list<std::pair<int, double>> steps) {
  std::vector<double> v;
  for (const auto& [n, c] : steps) v.insert(v.end(), n, c);
  return v;
}

// The rate at which batches of this job take the controller's share of the
// interval.
double Sustainable(const SimulatedJob& job, double capacity) {
  return capacity * (PidGains{}.utilization - static_cast<double>(job.fixed_ms) / static_cast<double>(job.interval_ms));
}

TEST(PidRateEstimator, FollowsTheCapacityDownAndUpWithoutOscillating) {
  SimulatedJob job;
  PidRateEstimator estimator(job.interval_ms, kDefaultMinRate, {}, kDefaultInitialRate);
  const auto batches = job.Run(&estimator, Steps({{30, 500'000}, {30, 250'000}, {30, 500'000}}));
  // Each phase is 30 batches at one capacity. The batches read before a
  // new rate reaches the receivers (about two: a batch's data is read while
  // the one before it runs) are late after a step down; the controller then
  // holds the rate below the target until that delay is worked off.
  auto check_phase = [&](int from, double capacity, const char* what, int within) {
    const double target = Sustainable(job, capacity);
    // It reacts: within `within` batches of the step the rate is within 10%
    // of the target, or below it while a delay is worked off.
    int reacted = -1;
    for (int i = from; i < from + within && reacted < 0; ++i) {
      if (batches[i].rate_after <= 1.10 * target &&
          (batches[i].rate_after >= 0.90 * target || batches[i].scheduling_delay_ms > 0)) {
        reacted = i;
      }
    }
    EXPECT_GE(reacted, 0) << what << ": the rate did not follow within " << within << " batches";
    // The delay stays bounded and is worked off within 15 batches.
    int drained = -1;
    for (int i = from; i < from + 30; ++i) {
      EXPECT_LE(batches[i].scheduling_delay_ms, 4000) << what << ": batch " << batches[i].id;
      if (drained < 0 && i > from && batches[i].scheduling_delay_ms <= 300) drained = i;
    }
    ASSERT_GE(drained, 0) << what << ": the scheduling delay was never worked off";
    EXPECT_LE(drained - from, 15) << what << ": the scheduling delay took " << drained - from << " batches to work off";
    // Then steady: no oscillation beyond 10% of the target, no new delay.
    for (int i = std::max(drained, from + within) + 1; i < from + 30; ++i) {
      EXPECT_NEAR(batches[i].rate_after, target, 0.10 * target) << what << ": batch " << batches[i].id;
      EXPECT_LE(batches[i].scheduling_delay_ms, 300) << what << ": batch " << batches[i].id;
    }
  };
  if (std::getenv("SLUICE_TRACE_SIMULATION") != nullptr) {
    for (const auto& b : batches) {
      std::printf("batch %3ld events %8ld sched %6ld proc %6ld rate %9.0f\n", static_cast<long>(b.id),
                  static_cast<long>(b.events), static_cast<long>(b.scheduling_delay_ms),
                  static_cast<long>(b.processing_ms), b.rate_after);
    }
  }
  // From the initial 10,000/s the rate doubles per batch: 6 batches to 450,000.
  check_phase(0, 500'000, "start at 500k/s", 8);
  check_phase(30, 250'000, "down to 250k/s", 3);
  check_phase(60, 500'000, "up to 500k/s", 3);
}

TEST(PidRateEstimator, WithoutItTheSameJobFallsFurtherBehindEveryBatch) {
  // The simulation itself: with no limit the delay grows batch after batch,
  // so the test above is not passing by construction.
  SimulatedJob job;
  PidRateEstimator never_measured(job.interval_ms, 1000);
  std::vector<SimulatedJob::Batch> batches;
  int64_t finished = 0;
  for (int64_t id = 1; id <= 10; ++id) {
    const int64_t batch_time = id * job.interval_ms;
    const auto events = static_cast<int64_t>(job.offered * job.interval_ms / 1000);
    const int64_t start = std::max(batch_time, finished);
    const int64_t processing = job.fixed_ms + static_cast<int64_t>(static_cast<double>(events) * 1000 / 500'000);
    finished = start + processing;
    batches.push_back({id, events, start - batch_time, processing, 0});
  }
  EXPECT_GT(batches.back().scheduling_delay_ms, 20'000);
  for (size_t i = 1; i < batches.size(); ++i) {
    EXPECT_GT(batches[i].scheduling_delay_ms, batches[i - 1].scheduling_delay_ms);
  }
}

TEST(PidRateEstimator, AnInitialRateHoldsUntilTheFirstBatchThenAtMostDoublesPerBatch) {
  PidRateEstimator e(1000, 100, {}, 50'000);
  EXPECT_EQ(e.rate(), 50'000);
  EXPECT_FALSE(e.Compute(1000, 0, 10, 0));  // no events: tells nothing
  EXPECT_FALSE(e.Compute(1000, 100, 0, 0));  // no processing time
  ASSERT_TRUE(e.Compute(1100, 40'000, 200, 0));  // processed at 200,000 events/s
  EXPECT_NEAR(e.rate(), 100'000, 1);             // twice the 50,000 it had
  EXPECT_FALSE(e.Compute(1100, 40'000, 200, 0));  // not newer
  ASSERT_TRUE(e.Compute(2100, 100'000, 500, 0));  // 200,000/s again
  EXPECT_NEAR(e.rate(), 170'000, 1);  // 85% of it
  // A first batch far under its allowance (an idle source) does not pull
  // the rate down.
  PidRateEstimator idle(1000, 100, {}, 10'000);
  ASSERT_TRUE(idle.Compute(1000, 100, 10, 0));  // 10,000/s, 85% of it 8,500
  EXPECT_NEAR(idle.rate(), 10'000, 1);
  // Without an initial rate the first batch sets it outright.
  PidRateEstimator unlimited(1000, 100);
  ASSERT_TRUE(unlimited.Compute(1000, 40'000, 200, 0));
  EXPECT_NEAR(unlimited.rate(), 170'000, 1);  // 85% of it
}

TEST(PidRateEstimator, ABatchTheLimitDidNotHoldBackCannotLowerTheRate) {
  PidRateEstimator e(1000, 100);
  ASSERT_TRUE(e.Compute(1000, 400'000, 800, 0));  // 500,000/s
  // An idle second: 1,000 events in 50 ms is 20,000/s, but the limit
  // allowed 425,000 (85% of it): the rate stays.
  ASSERT_TRUE(e.Compute(2000, 1000, 50, 0));
  EXPECT_NEAR(e.rate(), 425'000, 1);
  // Late, though, it may lower it: the job is behind.
  ASSERT_TRUE(e.Compute(3500, 1000, 50, 1500));
  EXPECT_LT(e.rate(), 425'000);
}

TEST(PidRateEstimator, AFasterBatchCountsAsItsMeanWithTheOneBeforeASlowerOneAtOnce) {
  PidRateEstimator e(1000, 100);
  ASSERT_TRUE(e.Compute(1000, 400'000, 800, 0));  // 500,000/s
  EXPECT_NEAR(e.processing_rate(), 500'000, 1);
  EXPECT_NEAR(e.rate(), 425'000, 1);
  // Held back (it read its whole allowance) and 70% faster: one batch's
  // word is not taken, the rate steers by the mean (675,000/s), 85% of it.
  ASSERT_TRUE(e.Compute(2000, 425'000, 500, 0));  // 850,000/s
  EXPECT_NEAR(e.processing_rate(), 675'000, 1);
  EXPECT_NEAR(e.rate(), 573'750, 1);
  // A second batch as fast: believed.
  ASSERT_TRUE(e.Compute(3000, 573'750, 675, 0));  // 850,000/s
  EXPECT_NEAR(e.processing_rate(), 850'000, 1);
  EXPECT_NEAR(e.rate(), 722'500, 1);
  // Slower again: taken at once.
  ASSERT_TRUE(e.Compute(4000, 500'000, 1000, 0));  // 500,000/s
  EXPECT_NEAR(e.processing_rate(), 500'000, 1);
  EXPECT_NEAR(e.rate(), 425'000, 1);
}

TEST(PidRateEstimator, ALateSmallBatchAfterAFailoverKeepsAQuarterOfTheKnownProcessingRate) {
  // As a new leader starts a job: from the WAL's last batch, 830,000
  // events/s processed, so 705,500 allowed (85%).
  PidRateEstimator e(500, 1000, {}, 705'500, 830'000);
  EXPECT_NEAR(e.processing_rate(), 830'000, 1);
  // Its first batches are small (the receivers' blocks of the leaderless
  // seconds went into earlier batches) and late by the failover's gap: a
  // batch of 67,575 events in 196 ms says 344,770 events/s, mostly fixed
  // cost. The first measured batch keeps the rate; the next one, 4 s late,
  // works the delay off down to a quarter of what the job was measured to
  // do — not a quarter of the small batch's figure (86,000), where it
  // would read a tenth of what it can for several batches.
  ASSERT_TRUE(e.Compute(1000, 60'000, 180, 3500));
  EXPECT_NEAR(e.rate(), 705'500, 1);
  ASSERT_TRUE(e.Compute(2000, 67'575, 196, 4039));
  EXPECT_NEAR(e.processing_rate(), 830'000, 1);
  EXPECT_NEAR(e.rate(), 830'000 / 4.0, 1);
  // A small quick batch that measures faster than the figure raises it
  // halfway.
  ASSERT_TRUE(e.Compute(3000, 50'000, 50, 0));  // 1,000,000/s
  EXPECT_NEAR(e.processing_rate(), 915'000, 1);
  // A held-back batch that is slower is believed at once.
  ASSERT_TRUE(e.Compute(4000, 150'000, 500, 1000));  // 300,000/s
  EXPECT_NEAR(e.processing_rate(), 300'000, 1);
}

TEST(PidRateEstimator, ASmallBatchThatTookMostOfTheIntervalLowersTheFigureAtOnce) {
  // The WAL said 830,000 events/s, but the cluster the new leader has does
  // 80,000 and the source gives 100,000: batches read far under the
  // allowance, and take longer than the interval. They are not fixed cost:
  // the figure follows them down, and the rate with it, instead of staying
  // at a quarter of 830,000 while the delay grows without end.
  SimulatedJob job;
  job.interval_ms = 500;
  job.fixed_ms = 20;
  job.offered = 100'000;
  PidRateEstimator e(job.interval_ms, 1000, {}, 705'500, 830'000);
  const auto batches = job.Run(&e, Steps({{40, 80'000}}));
  EXPECT_LT(e.processing_rate(), 100'000);
  EXPECT_LT(e.rate(), 80'000);
  EXPECT_LT(batches.back().scheduling_delay_ms, 2000) << "the delay kept growing";
}

TEST(PidRateEstimator, StaysBetweenItsFloorAndItsCeiling) {
  PidRateEstimator e(1000, 5000);
  e.Cap(100'000);
  ASSERT_TRUE(e.Compute(1000, 900'000, 900, 0));  // 1,000,000/s measured
  EXPECT_EQ(e.rate(), 100'000);
  // Far behind: the integral term would go below zero; the rate stays at a
  // quarter of the processing rate, or the floor if that is higher.
  ASSERT_TRUE(e.Compute(2000, 100'000, 1000, 60'000));
  EXPECT_EQ(e.rate(), 25'000);
  ASSERT_TRUE(e.Compute(3000, 10'000, 1000, 60'000));  // 10,000/s: small, but it took the whole interval
  EXPECT_EQ(e.rate(), 5000);
}

// A cluster state with sources and jobs, for RateControl.
proto::ClusterState State() {
  proto::ClusterState s;
  auto add_source = [&](const std::string& name, int partitions, int64_t max_rate) {
    proto::SourceState& src = (*s.mutable_sources())[name];
    src.mutable_spec()->set_name(name);
    src.mutable_spec()->set_partitions(partitions);
    src.mutable_spec()->set_max_rate_per_partition(max_rate);
    for (int p = 0; p < partitions; ++p) src.add_partitions()->set_partition(p);
  };
  add_source("a", 4, 0);
  add_source("b", 2, 30'000);
  return s;
}

proto::JobState& AddJob(proto::ClusterState* s, const std::string& name, std::vector<std::string> sources) {
  proto::JobState& j = (*s->mutable_jobs())[name];
  j.mutable_spec()->set_name(name);
  j.mutable_spec()->set_batch_interval_ms(1000);
  for (std::string& src : sources) j.mutable_spec()->add_sources(std::move(src));
  return j;
}

void Commit(proto::JobState* j, int64_t id, int64_t events, int64_t processing_ms, int64_t scheduling_ms = 0) {
  proto::BatchSummary* b = j->add_recent_batches();
  b->set_batch_id(id);
  b->set_batch_time_unix_ms(1'000'000 + id * 1000);
  b->set_input_count(events);
  b->set_processing_ms(processing_ms);
  b->set_scheduling_delay_ms(scheduling_ms);
  b->set_total_delay_ms(processing_ms + scheduling_ms);
  j->set_last_committed_batch(id);
}

TEST(RateControl, SplitsAJobsRateOverItsPartitionsAndTakesTheMinimumOverJobs) {
  proto::ClusterState s = State();
  RateControl rc;
  AddJob(&s, "fast", {"a"});
  AddJob(&s, "slow", {"a", "b"});
  rc.Update(s, 1);
  // No batch measured: the default initial rate, split over the partitions.
  EXPECT_EQ(rc.LimitsOf(s, "a").rate_limit_per_s, (kDefaultInitialRate + 3) / 6);  // "slow"'s, rounded
  EXPECT_EQ(rc.RateOf(s, "fast").events_per_s, kDefaultInitialRate);
  // "slow" (6 partitions) measures 120,000/s, "fast" (4) 800,000/s; each
  // aims at 85% of that (within twice what its batch read).
  Commit(&(*s.mutable_jobs())["fast"], 1, 400'000, 500);
  Commit(&(*s.mutable_jobs())["slow"], 1, 60'000, 500);
  rc.Update(s, 1);
  EXPECT_EQ(rc.RateOf(s, "fast").events_per_s, 680'000);
  EXPECT_EQ(rc.RateOf(s, "slow").events_per_s, 102'000);
  EXPECT_EQ(rc.LimitsOf(s, "a").rate_limit_per_s, 17'000);  // min(680k/4, 102k/6)
  EXPECT_EQ(rc.LimitsOf(s, "b").rate_limit_per_s, 17'000);
  EXPECT_NE(rc.RateOf(s, "slow").reason.find("60000 events in 500 ms"), std::string::npos)
      << rc.RateOf(s, "slow").reason;
  // A stopped job no longer holds anyone back.
  (*s.mutable_jobs())["slow"].set_stopped(true);
  rc.Update(s, 1);
  EXPECT_EQ(rc.LimitsOf(s, "a").rate_limit_per_s, 170'000);
  EXPECT_EQ(rc.LimitsOf(s, "b").rate_limit_per_s, 30'000);
}

TEST(RateControl, MaxRecordsPerBatchBoundsBlocksAndTheRate) {
  proto::ClusterState s = State();
  proto::JobState& j = AddJob(&s, "bounded", {"a"});
  j.mutable_spec()->set_max_records_per_batch(50'000);
  j.mutable_spec()->set_batch_interval_ms(500);
  j.mutable_spec()->mutable_backpressure()->set_disabled(true);  // the bound alone
  RateControl rc;
  rc.Update(s, 1);
  const PartitionLimits limits = rc.LimitsOf(s, "a");
  EXPECT_EQ(limits.max_block_offsets, 12'500);  // a quarter of the bound
  EXPECT_EQ(limits.rate_limit_per_s, 75'000);  // 3/4 of 50,000 a batch, 2 batches a second
  const JobRate rate = rc.RateOf(s, "bounded");
  EXPECT_EQ(rate.events_per_s, 300'000);  // over 4 partitions
  EXPECT_NE(rate.reason.find("max_records_per_batch"), std::string::npos) << rate.reason;
  // With the controller on, such a job starts at the bound's rate, not at
  // the default initial rate: a backlog is read at full size from the start.
  j.mutable_spec()->mutable_backpressure()->set_disabled(false);
  rc.Update(s, 2);
  EXPECT_EQ(rc.RateOf(s, "bounded").events_per_s, 300'000);
  EXPECT_EQ(rc.LimitsOf(s, "a").rate_limit_per_s, 75'000);
}

TEST(RateControl, ANewTermStartsFromTheLastCommittedBatchAndDisabledMeansNoLimit) {
  proto::ClusterState s = State();
  proto::JobState& j = AddJob(&s, "j", {"a"});
  j.mutable_spec()->mutable_backpressure()->set_initial_rate(8000);
  RateControl rc;
  rc.Update(s, 1);
  EXPECT_EQ(rc.RateOf(s, "j").events_per_s, 8000);
  EXPECT_EQ(rc.LimitsOf(s, "a").rate_limit_per_s, 2000);
  Commit(&j, 1, 300'000, 1000);
  Commit(&j, 2, 300'000, 600);  // 500,000/s
  rc.Update(s, 2);  // a new leader: 85% of the newest batch's processing rate
  EXPECT_EQ(rc.RateOf(s, "j").events_per_s, 425'000);
  EXPECT_NE(rc.RateOf(s, "j").reason.find("batch 2 processed 500000 events/s (from the WAL"), std::string::npos)
      << rc.RateOf(s, "j").reason;
  // Its first batches are small and late (the leaderless seconds): working
  // the delay off takes the rate down to a quarter of the WAL's 500,000/s,
  // not of the small batches' own figure (30,000 in 100 ms: 300,000/s).
  Commit(&j, 3, 30'000, 100, 3000);
  Commit(&j, 4, 30'000, 100, 3000);
  rc.Update(s, 2);
  EXPECT_EQ(rc.RateOf(s, "j").events_per_s, 125'000);
  j.mutable_spec()->mutable_backpressure()->set_disabled(true);
  rc.Update(s, 3);
  EXPECT_EQ(rc.RateOf(s, "j").events_per_s, 0);
  EXPECT_EQ(rc.LimitsOf(s, "a").rate_limit_per_s, 0);
  EXPECT_EQ(rc.RateOf(s, "j").reason, "backpressure disabled");
}

}  // namespace
}  // namespace sluice::driver
