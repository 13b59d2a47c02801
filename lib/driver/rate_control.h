// Rate control: each running job's receivers read no faster than the job's
// batches are measured to process, so a job fed more than it can take keeps
// a bounded delay and the excess waits in the source (a Kafka topic, the
// generator's clock) instead of in worker memory (docs/jobs.md "Backpressure").
//
// Module sluice::driver owns it. PidRateEstimator is Spark Streaming's
// PIDRateEstimator: after each committed batch,
//
//   processing rate  = events / processing time (damped: below)
//   error            = last rate - utilization * processing rate
//   historical error = scheduling delay * processing rate / batch interval
//   new rate         = last rate - kp * error - ki * historical error
//                      - kd * d(error)/dt,  at least min_rate
//
// With kp = 1 the new rate is 85% of the processing rate, less a share that works
// the scheduling delay off over a few batches (ki); it at most doubles per
// batch, and never drops below a quarter of the processing rate (the .cc
// says why). The processing rate it steers by is not one batch's word: a
// batch faster than the last one that told the job's capacity counts as
// the mean of the two, a slower one at once, and a small quick batch the
// limit did not hold back (mostly fixed cost) only upwards. When a batch has a fixed
// cost c besides its events (c < interval I), the processing rate of a
// batch read at rate r is r*I / (c + r*I/C) for a capacity C: the fixed point
// of r = u * p(r) is C * (u - c/I), the rate whose batches take u of the
// interval, and it converges by a factor of about c/(uI) per batch (test/unit/rate_control_test.cc
// drives it against a simulated job).
//
// RateControl keeps one estimator per running job, fed from the committed
// WAL view (the batch summaries), and turns the jobs' rates into each
// source partition's limit: a job's rate split evenly over its partitions,
// the minimum over the jobs that read a partition, never above the
// source's max_rate_per_partition nor above what max_records_per_batch lets
// a batch take. A job whose controller has not measured a batch yet has its
// initial_rate (unless set: kDefaultInitialRate, or for a job with
// max_records_per_batch the rate that bound allows); after a failover the new
// leader starts from the processing rate of the last committed batch, which
// is in the WAL.
//
// Thread-safe: Update from the planning thread, the rest from any.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "proto/driver_log.pb.h"

namespace sluice::driver {

// A job's limit before its first batch is measured, unless its spec sets
// one: low, because an unmeasured job fed faster than it can go would
// otherwise take in several intervals' worth before the first batch ends,
// and be seconds behind for dozens of batches; from here the rate reaches a
// job's capacity in 3-5 batches (each batch's processing rate is the next
// limit). A job whose input is below the limit never notices it.
inline constexpr int64_t kDefaultInitialRate = 10'000;
// The floor: even a job far behind keeps reading (Spark's minRate is 100).
inline constexpr int64_t kDefaultMinRate = 1000;
// No rate is taken above this (events/s), so conversions cannot overflow.
inline constexpr double kMaxRate = 1e12;

struct PidGains {
  double proportional = 1.0;
  double integral = 0.2;
  double derivative = 0.0;
  // The share of the interval a batch should take: the rate aims at this
  // share of the processing rate (Spark's estimator aims at all of it).
  double utilization = 0.85;
};

class PidRateEstimator {
 public:
  // `rate`: the limit in force before any batch is measured (0: none);
  // `processing_rate`: what the job was last measured to process (events/s,
  // 0: unknown), e.g. from the WAL on a new leader; ignored without a rate.
  PidRateEstimator(int64_t batch_interval_ms, double min_rate, PidGains gains = {}, double rate = 0,
                   double processing_rate = 0);

  // A committed batch: when it finished (ms, any monotonic origin), its
  // events, its processing time and its scheduling delay. Returns the new
  // rate, or nothing when the batch tells nothing (no events, no processing
  // time, not newer than the last one). The first measured batch only sets
  // the rate to its processing rate.
  std::optional<double> Compute(int64_t finished_ms, int64_t events, int64_t processing_ms,
                                int64_t scheduling_delay_ms);

  double rate() const { return rate_; }  // 0 until the first batch, unless given
  // The processing rate the controller steers by (events/s; 0 until known):
  // see Compute in the .cc for how one batch moves it.
  double processing_rate() const { return processing_rate_; }
  void Cap(double ceiling);              // the rate never goes above this (0: no cap)

 private:
  double interval_ms_;
  double min_rate_;
  PidGains gains_;
  double ceiling_ = 0;
  double rate_;
  double processing_rate_;
  // The own figure of the last batch that told the capacity (held back, or
  // slow on its own account), or the figure given at construction.
  double last_measured_;
  double last_error_ = 0;
  int64_t last_finished_ms_ = -1;
  bool measured_ = false;
};

// A job's limit as the leader holds it now.
struct JobRate {
  int64_t events_per_s = 0;  // over all the job's partitions; 0: none
  std::string reason;
};

// A source partition's limits as the leader pushes them to its receiver.
struct PartitionLimits {
  int64_t rate_limit_per_s = 0;    // 0: none
  int64_t max_block_offsets = 0;   // 0: none
};

class RateControl {
 public:
  // Folds in the batches committed since the last call. A new term (epoch)
  // starts every job afresh from its last committed batch.
  void Update(const proto::ClusterState& state, int64_t epoch);
  // Not the leader (any more): no job has a controller here.
  void Forget();

  // The job's limit over all its partitions, its ceilings included.
  JobRate RateOf(const proto::ClusterState& state, const std::string& job_id) const;
  PartitionLimits LimitsOf(const proto::ClusterState& state, const std::string& source) const;

 private:
  struct Job {
    std::optional<PidRateEstimator> estimator;  // empty: backpressure disabled
    int64_t last_batch = 0;                      // the newest batch folded in
    std::string reason;
  };
  Job StartJob(const proto::ClusterState& state, const proto::JobState& job) const;
  void Observe(const proto::BatchSummary& batch, Job* j) const;

  mutable std::mutex mu_;
  int64_t epoch_ = -1;
  std::map<std::string, Job> jobs_;  // running jobs only
};

// How many offsets a job's batch may take from one partition: its
// max_records_per_batch (0: no bound).
int64_t MaxBatchOffsets(const proto::JobSpec& spec);
// The most offsets in a block of a partition the job reads: a quarter of
// the batch bound, so whole blocks fill a batch to at least 3/4 of it.
int64_t MaxBlockOffsets(const proto::JobSpec& spec);

}  // namespace sluice::driver
