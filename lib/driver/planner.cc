#include "lib/driver/planner.h"

#include <algorithm>
#include <vector>

#include "lib/driver/driver_probe.h"
#include "lib/driver/leadership.h"
#include "lib/driver/rate_control.h"
#include "lib/engine/keyed.h"
#include "lib/driver/driver_log.h"
#include "spdlog/spdlog.h"

namespace sluice::driver {
namespace {

// Where the next batch of `job` starts in (source, partition), or -1.
// A position inside a range the source lost (PartitionState.lost) jumps to
// its end, and the ranges jumped over go to `skipped` (the batch reports
// them as dead letters); `*end_before` becomes the start of the next lost
// range after the position, which the batch must not reach (-1: none).
int64_t NextStart(const proto::JobState& job, const proto::PartitionState& ps, const std::string& source,
                  std::vector<proto::SourceDataLost>* skipped, int64_t* end_before) {
  *end_before = -1;
  int64_t start = -1;
  bool positioned = true;
  // The newest planned batch that covers the partition wins, then the
  // committed position.
  for (int i = job.in_flight_size() - 1; i >= 0 && start < 0; --i) {
    for (const proto::PartitionRange& r : job.in_flight(i).ranges()) {
      if (r.source() == source && r.partition() == ps.partition()) start = r.end_offset();
    }
  }
  for (const proto::SourceOffset& o : job.committed_offsets()) {
    if (start < 0 && o.source() == source && o.partition() == ps.partition()) start = o.offset();
  }
  if (start < 0) {
    positioned = false;
    start = ps.blocks().empty() ? ps.next_offset()  // -1 while a Kafka start position is not fixed yet
                                : ps.blocks(0).range().start_offset();  // the oldest block held
  }
  if (start < 0) return start;
  // Lost ranges are in offset order. A job with no position yet (it starts
  // after them) is told of none.
  for (const proto::SourceDataLost& lost : ps.lost()) {
    if (start >= lost.from_offset() && start < lost.to_offset()) {
      if (positioned) skipped->push_back(lost);
      start = lost.to_offset();
    } else if (lost.from_offset() > start) {
      *end_before = lost.from_offset();
      break;
    }
  }
  return start;
}

// Where a batch starting at `start` ends in `ps`: the partition's next
// offset, or — with a bound — the end of the last whole block that keeps the
// range within `max_offsets` (at least one block: a block cut before the
// bound was set may be larger than it).
int64_t PlanEnd(const proto::PartitionState& ps, int64_t start, int64_t max_offsets) {
  if (max_offsets <= 0 || ps.next_offset() - start <= max_offsets) return ps.next_offset();
  int64_t end = start;
  for (const proto::BlockInfo& b : ps.blocks()) {
    if (b.range().end_offset() <= end) continue;
    if (b.range().start_offset() != end) break;  // not contiguous from start: cannot happen
    if (end > start && b.range().end_offset() - start > max_offsets) break;
    end = b.range().end_offset();
  }
  return end > start ? end : ps.next_offset();
}

}  // namespace

proto::BatchPlanned PlanBatch(const std::string& job_id, const proto::JobState& job, const proto::ClusterState& state,
                              int64_t batch_id, int64_t batch_time_unix_ms) {
  proto::BatchPlanned plan;
  plan.set_job_id(job_id);
  plan.set_batch_id(batch_id);
  plan.set_batch_time_unix_ms(batch_time_unix_ms);
  // Fixed here, so every attempt at the batch closes the same windows.
  plan.set_watermark_unix_ms(engine::Watermark(job.spec(), job.max_event_time_unix_ms()));
  for (const std::string& source : job.spec().sources()) {
    auto it = state.sources().find(source);
    if (it == state.sources().end()) continue;
    for (const proto::PartitionState& ps : it->second.partitions()) {
      std::vector<proto::SourceDataLost> skipped;
      int64_t end_before = -1;
      const int64_t start = NextStart(job, ps, source, &skipped, &end_before);
      if (start < 0 || ps.next_offset() <= start) continue;  // nothing new: left out
      proto::PartitionRange* r = plan.add_ranges();
      r->set_source(source);
      r->set_partition(ps.partition());
      r->set_start_offset(start);
      // Accepted blocks are contiguous up to the partition's next offset, or
      // up to the next lost range.
      int64_t end = PlanEnd(ps, start, MaxBatchOffsets(job.spec()));
      if (end_before > start) end = std::min(end, end_before);
      r->set_end_offset(end);
      for (proto::SourceDataLost& lost : skipped) *plan.add_skipped() = std::move(lost);
    }
  }
  return plan;
}

int Planner::Tick() {
  if (!leadership_->Serving()) {
    rates_->Forget();  // a former leader's limits are stale
    return 0;
  }
  const std::shared_ptr<const proto::ClusterState> state_view = log_->View();
  const proto::ClusterState& state = *state_view;
  rates_->Update(state, leadership_->epoch());
  const int64_t now = clock_->UnixMillis();
  int planned = 0;
  for (const auto& [id, job] : state.jobs()) {
    if (job.stopped()) continue;
    // Event-time jobs: batch N is planned once N-1 committed, so its
    // watermark is always that of every batch before it, whatever the timing.
    const bool event_time = engine::HasEventTime(job.spec());
    const int max_in_flight = event_time ? 1 : std::max(1, job.spec().max_batches_in_flight());
    if (job.in_flight_size() >= max_in_flight) continue;
    const int64_t interval = std::max<int64_t>(10, job.spec().batch_interval_ms());
    const int64_t batch_id = job.last_planned_batch() + 1;
    const int64_t batch_time = job.submit_time_unix_ms() + batch_id * interval;
    if (now < batch_time) continue;
    proto::DriverRecord record;
    *record.mutable_batch_planned() = PlanBatch(id, job, state, batch_id, batch_time);
    int64_t events = 0;
    for (const auto& r : record.batch_planned().ranges()) events += r.end_offset() - r.start_offset();
    Result<int64_t> seq = log_->Append(std::move(record));
    if (!seq.ok()) {
      spdlog::warn("planning batch {} of job {}: {}", batch_id, id, seq.status().ToString());
      return planned;
    }
    spdlog::debug("job {}: batch {} planned ({} offsets)", id, batch_id, events);
    if (probe_ != nullptr) probe_->BatchPlanned(id, batch_id, leadership_->epoch());
    ++planned;
  }
  return planned;
}

}  // namespace sluice::driver
