// Planner: forms each running job's batches from the blocks the leader has
// accepted (docs/design.md "Data path", step 2).
//
// Module sluice::driver owns it. Every batch interval of a job, batch N takes,
// per partition of each of its sources, the exact offset range from where
// batch N-1 ended (or the partition's oldest held block, for the first
// batch) to the partition's next offset — so consecutive batches are
// contiguous, never overlap and never skip, and every range is covered by
// accepted blocks. BatchPlanned(N) is appended to the WAL and committed
// before anything may run it; at most max_batches_in_flight are planned and
// not yet committed. A batch with no new data is still planned (empty ranges
// are left out): time advances. Everything it reads is the committed WAL
// view, so a new leader goes on exactly where the old one stopped.
//
// A job's max_records_per_batch bounds each range to whole blocks within it
// (receivers cut blocks no larger, as the leader tells them), and each Tick
// first folds the newly committed batches into the rate controller.
//
// Thread-compatible: the driver's assignment thread calls Tick.
#pragma once

#include <string>

#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "proto/driver_log.pb.h"

namespace sluice::driver {

class DriverLog;
class JobHolds;
class JobProbe;
class Leadership;
class RateControl;

// Batch `batch_id` of `job` as planned now (pure; exposed for tests).
proto::BatchPlanned PlanBatch(const std::string& job_id, const proto::JobState& job, const proto::ClusterState& state,
                              int64_t batch_id, int64_t batch_time_unix_ms);

class Planner {
 public:
  // `holds`: jobs not to plan for now (may be null: none).
  Planner(DriverLog* log, Leadership* leadership, RateControl* rates, Clock* clock, JobHolds* holds = nullptr)
      : log_(log), leadership_(leadership), rates_(rates), clock_(clock), holds_(holds) {}

  // Plans every batch that is due; returns how many were committed.
  int Tick();
  // Plans are counted there (driver_probe.h); before the first Tick.
  void set_probe(JobProbe* probe) { probe_ = probe; }

 private:
  // A draining job with everything up to its bound planned: stops it, or
  // plans its final flush. Returns the batches planned (0 or 1).
  int FinishDrain(const std::string& id, const proto::JobState& job);
  // Plans the next batch of job `id` if it is due, as the log's view says
  // now: how many were planned (0 or 1); the log's error if it refused.
  [[nodiscard]] Result<int> PlanJob(const std::string& id);

  DriverLog* const log_;
  Leadership* const leadership_;
  RateControl* const rates_;
  Clock* const clock_;
  JobHolds* const holds_;
  JobProbe* probe_ = nullptr;
};

}  // namespace sluice::driver
