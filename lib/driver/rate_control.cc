#include "lib/driver/rate_control.h"

#include <algorithm>
#include <cmath>

#include "spdlog/fmt/fmt.h"

namespace sluice::driver {
namespace {

// The smaller of two limits where 0 means none.
int64_t MinLimit(int64_t a, int64_t b) {
  if (a <= 0) return b;
  if (b <= 0) return a;
  return std::min(a, b);
}

int64_t PartitionsOf(const proto::ClusterState& state, const proto::JobSpec& spec) {
  int64_t n = 0;
  for (const std::string& source : spec.sources()) {
    auto it = state.sources().find(source);
    if (it != state.sources().end()) n += std::max(it->second.spec().partitions(), it->second.partitions_size());
  }
  return std::max<int64_t>(1, n);
}

// The most a partition of `source` may be read at for this job without the
// controller: the source's ceiling and what max_records_per_batch allows.
//
// With max_records_per_batch N, a batch takes whole blocks adding up to at
// most N, and receivers cut blocks of at most N/4 (MaxBlockOffsets), so a
// batch takes at least 3N/4 of what is there; reading at most 3N/4 per
// interval, receivers never get ahead of the batches.
int64_t PartitionCeiling(const proto::SourceSpec& source, const proto::JobSpec& spec) {
  int64_t ceiling = source.max_rate_per_partition();
  if (const int64_t bound = MaxBatchOffsets(spec); bound > 0) {
    const double per_s = 0.75 * static_cast<double>(bound) * 1000 /
                         static_cast<double>(std::max<int64_t>(10, spec.batch_interval_ms()));
    ceiling = MinLimit(ceiling, std::max<int64_t>(1, static_cast<int64_t>(std::min(per_s, kMaxRate))));
  }
  return ceiling;
}

// The job's ceiling over all its partitions; 0 when some partition has none.
int64_t JobCeiling(const proto::ClusterState& state, const proto::JobSpec& spec) {
  int64_t sum = 0;
  for (const std::string& name : spec.sources()) {
    auto it = state.sources().find(name);
    if (it == state.sources().end()) continue;
    const int64_t c = PartitionCeiling(it->second.spec(), spec);
    if (c <= 0) return 0;
    sum += static_cast<int64_t>(std::min(kMaxRate, static_cast<double>(c) *
                                                        std::max(it->second.spec().partitions(),
                                                                 it->second.partitions_size())));
  }
  return static_cast<int64_t>(std::min(kMaxRate, static_cast<double>(sum)));
}

std::string Rate(double r) { return std::to_string(std::llround(std::min(r, kMaxRate))); }

}  // namespace

int64_t MaxBatchOffsets(const proto::JobSpec& spec) { return std::max<int64_t>(0, spec.max_records_per_batch()); }

int64_t MaxBlockOffsets(const proto::JobSpec& spec) {
  const int64_t bound = MaxBatchOffsets(spec);
  return bound > 0 ? std::max<int64_t>(1, bound / 4) : 0;
}

PidRateEstimator::PidRateEstimator(int64_t batch_interval_ms, double min_rate, PidGains gains, double rate,
                                   double processing_rate)
    : interval_ms_(static_cast<double>(std::max<int64_t>(1, batch_interval_ms))),
      min_rate_(min_rate),
      gains_(gains),
      rate_(rate),
      processing_rate_(rate > 0 ? std::max(0.0, processing_rate) : 0),
      last_measured_(processing_rate_) {}

void PidRateEstimator::Cap(double ceiling) {
  ceiling_ = ceiling;
  if (ceiling_ > 0 && rate_ > ceiling_) rate_ = ceiling_;
}

std::optional<double> PidRateEstimator::Compute(int64_t finished_ms, int64_t events, int64_t processing_ms,
                                                int64_t scheduling_delay_ms) {
  if (finished_ms <= last_finished_ms_ || events <= 0 || processing_ms <= 0) return std::nullopt;
  const double since_s = last_finished_ms_ < 0 ? interval_ms_ / 1000 : (finished_ms - last_finished_ms_) / 1000.0;
  last_finished_ms_ = finished_ms;
  const double measured = static_cast<double>(events) * 1000 / static_cast<double>(processing_ms);
  // A batch the limit held back read at least half its allowance. One that
  // read well under it (an idle source, a first batch after a failover) and
  // ran in a small part of the interval is mostly fixed cost: its
  // processing rate understates the job's. One that read little and still
  // took most of the interval was slow on its own account and counts.
  const bool held_back = rate_ > 0 && static_cast<double>(events) >= 0.5 * rate_ * interval_ms_ / 1000;
  const bool tells_capacity =
      held_back || static_cast<double>(processing_ms) >= gains_.utilization * interval_ms_;
  // The processing rate steered by. One batch's figure is noisy — on a
  // busy machine a batch of the same size took 261 ms and, two batches
  // later, 2 s — so a batch that tells the capacity and is faster than the
  // last one that did counts as the mean of the two figures: one fast batch
  // does not double the rate into batches that spill, or that the next slow
  // batch turns into seconds of delay; two in a row are believed. A slower
  // one counts at once (backing off is never late). Any other batch can
  // only raise the figure, halfway: its low figure is the fixed cost
  // talking, and taken at its word it would cut the rate of a job that,
  // after a failover, is merely late (test/unit/rate_control_test.cc).
  double processing_rate = measured;
  if (tells_capacity || processing_rate_ <= 0) {
    if (last_measured_ > 0 && measured > last_measured_) processing_rate = (measured + last_measured_) / 2;
    last_measured_ = measured;
  } else {
    processing_rate = std::max(processing_rate_, std::min(measured, (measured + processing_rate_) / 2));
  }
  processing_rate_ = processing_rate;
  if (!measured_ || rate_ <= 0) {
    measured_ = true;
    const double input_rate = static_cast<double>(events) * 1000 / interval_ms_;
    const double target = gains_.utilization * processing_rate;
    if (rate_ <= 0) {
      rate_ = target;
    } else if (!tells_capacity) {
      rate_ = std::max(rate_, std::min(target, 2 * rate_));  // may rise, not fall
    } else {
      rate_ = std::min(target, 2 * std::max(rate_, input_rate));
    }
    rate_ = std::max(min_rate_, rate_);
    if (ceiling_ > 0) rate_ = std::min(rate_, ceiling_);
    last_error_ = 0;
    return rate_;
  }
  // The target is not the processing rate itself but a share of it, so
  // that batches take `utilization` of the interval: at 100% any slower
  // batch leaves a delay that only the integral term, acting a few batches
  // late, works off — a real cluster then swings between seconds behind
  // and nearly idle (measured: test/integration/backpressure_test.cc).
  const double error = rate_ - gains_.utilization * processing_rate;
  const double historical_error = static_cast<double>(scheduling_delay_ms) * processing_rate / interval_ms_;
  const double d_error = (error - last_error_) / since_s;
  double next = rate_ - gains_.proportional * error - gains_.integral * historical_error - gains_.derivative * d_error;
  // A small quick batch (not held back, mostly fixed cost) that was not
  // late may raise the rate, never lower it — so a source that was idle
  // does not start a burst with a limit near zero.
  if (!tells_capacity && scheduling_delay_ms < interval_ms_) next = std::max(next, rate_);
  // Two guards Spark's estimator lacks, both found on a real cluster (the
  // batches' cost is not linear in their size: past the workers' block
  // memory, blocks spill and a batch takes ten times longer):
  //  - at most twice the rate of the last batch's input per batch: a small
  //    batch's processing rate overstates what a large one achieves, so the
  //    rate climbs towards it in doublings, as TCP's slow start;
  //  - working off a delay never takes the rate below a quarter of the
  //    processing rate: at that rate a batch takes a quarter of the
  //    interval, so the delay still shrinks by most of an interval per
  //    batch, where the floor would starve the job for dozens of batches
  //    and then ramp it straight back into the same delay.
  const double input_rate = static_cast<double>(events) * 1000 / interval_ms_;
  next = std::min(next, 2 * std::max(rate_, input_rate));
  next = std::max(next, processing_rate / 4);
  next = std::max(next, min_rate_);
  if (ceiling_ > 0) next = std::min(next, ceiling_);
  rate_ = next;
  last_error_ = error;
  return rate_;
}

RateControl::Job RateControl::StartJob(const proto::ClusterState& state, const proto::JobState& job) const {
  Job j;
  j.last_batch = job.last_committed_batch();
  const proto::BackpressureSpec& bp = job.spec().backpressure();
  if (bp.disabled()) {
    j.reason = "backpressure disabled";
    return j;
  }
  const double min_rate = static_cast<double>(bp.min_rate() > 0 ? bp.min_rate() : kDefaultMinRate);
  double rate = static_cast<double>(bp.initial_rate() > 0 ? bp.initial_rate() : kDefaultInitialRate);
  j.reason = "initial_rate: no batch measured yet";
  // A job with a batch bound is already kept from taking in too much at
  // once: it starts at the bound's rate, so a backlog is not read at the
  // initial rate for the first several batches.
  if (const int64_t ceiling = JobCeiling(state, job.spec());
      bp.initial_rate() == 0 && MaxBatchOffsets(job.spec()) > 0 && ceiling > 0) {
    rate = static_cast<double>(ceiling);
    j.reason = "max_records_per_batch: no batch measured yet";
  }
  // A leader taking over goes on from the newest committed batch's
  // processing rate rather than from the initial rate.
  double processing_rate = 0;
  for (auto it = job.recent_batches().rbegin(); it != job.recent_batches().rend(); ++it) {
    if (it->input_count() > 0 && it->processing_ms() > 0) {
      processing_rate = static_cast<double>(it->input_count()) * 1000 / static_cast<double>(it->processing_ms());
      // Never below the initial rate: the newest batch may have been tiny
      // (an idle source), its processing rate mostly fixed cost.
      rate = std::max(rate, PidGains{}.utilization * processing_rate);
      j.reason = fmt::format("batch {} processed {} events/s (from the WAL: no batch measured by this leader yet)",
                             it->batch_id(), Rate(processing_rate));
      break;
    }
  }
  j.estimator.emplace(job.spec().batch_interval_ms(), min_rate, PidGains{}, rate, processing_rate);
  j.estimator->Cap(static_cast<double>(JobCeiling(state, job.spec())));
  return j;
}

void RateControl::Observe(const proto::BatchSummary& batch, Job* j) const {
  j->last_batch = batch.batch_id();
  if (!j->estimator) return;
  const int64_t finished = batch.batch_time_unix_ms() + batch.total_delay_ms();
  if (!j->estimator->Compute(finished, batch.input_count(), batch.processing_ms(), batch.scheduling_delay_ms())) return;
  j->reason = fmt::format("batch {}: {} events in {} ms ({} events/s), scheduling delay {} ms", batch.batch_id(),
                          batch.input_count(), batch.processing_ms(),
                          Rate(static_cast<double>(batch.input_count()) * 1000 /
                               static_cast<double>(std::max<int64_t>(1, batch.processing_ms()))),
                          batch.scheduling_delay_ms());
}

void RateControl::Update(const proto::ClusterState& state, int64_t epoch) {
  std::lock_guard<std::mutex> lock(mu_);
  if (epoch != epoch_) {
    jobs_.clear();
    epoch_ = epoch;
  }
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    auto found = state.jobs().find(it->first);
    it = found == state.jobs().end() || found->second.stopped() ? jobs_.erase(it) : std::next(it);
  }
  for (const auto& [id, job] : state.jobs()) {
    if (job.stopped()) continue;
    auto [it, fresh] = jobs_.try_emplace(id);
    if (fresh) {
      it->second = StartJob(state, job);
      continue;
    }
    for (const proto::BatchSummary& b : job.recent_batches()) {
      if (b.batch_id() > it->second.last_batch) Observe(b, &it->second);
    }
    if (it->second.estimator) it->second.estimator->Cap(static_cast<double>(JobCeiling(state, job.spec())));
  }
}

void RateControl::Forget() {
  std::lock_guard<std::mutex> lock(mu_);
  jobs_.clear();
  epoch_ = -1;
}

JobRate RateControl::RateOf(const proto::ClusterState& state, const std::string& job_id) const {
  auto job = state.jobs().find(job_id);
  if (job == state.jobs().end() || job->second.stopped()) return {0, "not running"};
  JobRate r;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return {0, "this driver is not the leader, whose controller holds the limit"};
    const Job& j = it->second;
    r = {j.estimator ? static_cast<int64_t>(std::llround(std::min(j.estimator->rate(), kMaxRate))) : 0, j.reason};
  }
  if (const int64_t ceiling = JobCeiling(state, job->second.spec()); ceiling > 0 && (r.events_per_s == 0 || r.events_per_s >= ceiling)) {
    r.events_per_s = ceiling;
    r.reason += "; capped by max_rate_per_partition / max_records_per_batch";
  }
  return r;
}

PartitionLimits RateControl::LimitsOf(const proto::ClusterState& state, const std::string& source) const {
  PartitionLimits limits;
  auto src = state.sources().find(source);
  if (src == state.sources().end()) return limits;
  limits.rate_limit_per_s = src->second.spec().max_rate_per_partition();
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, job] : state.jobs()) {
    if (job.stopped()) continue;
    const auto& sources = job.spec().sources();
    if (std::find(sources.begin(), sources.end(), source) == sources.end()) continue;
    limits.rate_limit_per_s = MinLimit(limits.rate_limit_per_s, PartitionCeiling(src->second.spec(), job.spec()));
    limits.max_block_offsets = MinLimit(limits.max_block_offsets, MaxBlockOffsets(job.spec()));
    auto j = jobs_.find(id);
    if (j == jobs_.end() || !j->second.estimator || j->second.estimator->rate() <= 0) continue;
    const double share = j->second.estimator->rate() / static_cast<double>(PartitionsOf(state, job.spec()));
    limits.rate_limit_per_s =
        MinLimit(limits.rate_limit_per_s, std::max<int64_t>(1, std::llround(std::min(share, kMaxRate))));
  }
  return limits;
}

}  // namespace sluice::driver
