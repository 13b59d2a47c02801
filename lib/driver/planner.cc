#include "lib/driver/planner.h"

#include <algorithm>
#include <vector>

#include "lib/driver/cluster_state.h"
#include "lib/driver/driver_probe.h"
#include "lib/driver/job_holds.h"
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

// NextStart without the lost ranges' details: where the job is in the partition.
int64_t NextStart(const proto::JobState& job, const proto::PartitionState& ps, const std::string& source) {
  std::vector<proto::SourceDataLost> skipped;
  int64_t end_before = -1;
  return NextStart(job, ps, source, &skipped, &end_before);
}

// Where a batch starting at `start` ends in `ps`: the partition's next
// offset, or — with a bound — the end of the last whole block that keeps the
// range within `max_offsets` (at least one block: a block cut before the
// bound was set may be larger than it). A start before the oldest block held
// (a job restarted after its blocks were dropped: the range is read again
// from the source) ends at that block, and within the bound.
int64_t PlanEnd(const proto::PartitionState& ps, int64_t start, int64_t max_offsets) {
  const int64_t held_from = ps.blocks().empty() ? ps.next_offset() : ps.blocks(0).range().start_offset();
  if (start < held_from) return max_offsets > 0 ? std::min(held_from, start + max_offsets) : held_from;
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

// A draining job's bound in (source, partition): the offset its input ended
// at when the drain was asked; -1 when the partition had none.
int64_t DrainLimit(const proto::JobState& job, const std::string& source, int32_t partition) {
  for (const proto::SourceOffset& o : job.drain_until()) {
    if (o.source() == source && o.partition() == partition) return o.offset();
  }
  return -1;
}

// Whether a draining job has planned everything up to its bound.
bool DrainPlanned(const proto::JobState& job, const proto::ClusterState& state) {
  for (const proto::SourceOffset& o : job.drain_until()) {
    const proto::PartitionState* ps = FindPartitionState(state, o.source(), o.partition());
    if (ps == nullptr) continue;
    if (NextStart(job, *ps, o.source()) < o.offset()) return false;
  }
  return true;
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
      // Accepted blocks are contiguous up to the partition's next offset, or
      // up to the next lost range.
      int64_t end = PlanEnd(ps, start, MaxBatchOffsets(job.spec()));
      if (end_before > start) end = std::min(end, end_before);
      if (job.draining()) {
        // Nothing past the input accepted when the drain was asked.
        end = std::min(end, DrainLimit(job, source, ps.partition()));
        if (end <= start) continue;
      }
      proto::PartitionRange* r = plan.add_ranges();
      r->set_source(source);
      r->set_partition(ps.partition());
      r->set_start_offset(start);
      r->set_end_offset(end);
      for (proto::SourceDataLost& lost : skipped) *plan.add_skipped() = std::move(lost);
    }
  }
  return plan;
}

int Planner::FinishDrain(const std::string& id, const proto::JobState& job) {
  // Everything up to the bound is planned; once it has committed, the job
  // stops — after one last batch that closes the open windows, if asked.
  if (!job.in_flight().empty()) return 0;
  proto::DriverRecord record;
  if (job.drain_emit_windows() && engine::IsKeyed(job.spec())) {
    proto::BatchPlanned* flush = record.mutable_batch_planned();
    flush->set_job_id(id);
    flush->set_batch_id(job.last_planned_batch() + 1);
    flush->set_batch_time_unix_ms(std::max(clock_->UnixMillis(), BatchTimeOf(job, flush->batch_id())));
    flush->set_watermark_unix_ms(engine::Watermark(job.spec(), job.max_event_time_unix_ms()));
    flush->set_final_flush(true);  // its commit stops the job (ClusterState)
  } else {
    proto::JobStopped* stop = record.mutable_job_stopped();
    stop->set_job_id(id);
    stop->set_reason(job.stop_reason().empty() ? "drained" : job.stop_reason());
    stop->set_drained(true);
  }
  const bool flush = record.has_batch_planned();
  Result<int64_t> seq = log_->Append(std::move(record));
  if (!seq.ok()) {
    spdlog::warn("finishing the drain of job {}: {}", id, seq.status().ToString());
    return 0;
  }
  if (flush) {
    spdlog::info("job {}: its input is drained; batch {} closes its open windows", id, job.last_planned_batch() + 1);
    return 1;
  }
  spdlog::info("job {} drained and stopped at batch {} (WAL record {})", id, job.last_committed_batch(), *seq);
  return 0;
}

int Planner::Tick() {
  if (!leadership_->Serving()) {
    rates_->Forget();  // a former leader's limits are stale
    return 0;
  }
  std::vector<std::string> running;
  {
    // Held by name: a range-for over View()->jobs() would iterate a view
    // whose last owner (the temporary) is gone once the log replaces it.
    const std::shared_ptr<const proto::ClusterState> state_view = log_->View();
    rates_->Update(*state_view, leadership_->epoch());
    for (const auto& [id, job] : state_view->jobs()) {
      if (!job.stopped()) running.push_back(id);
    }
  }
  int planned = 0;
  for (const std::string& id : running) {
    // Read and planned inside one plan, which a hold waits for (an update's
    // first batch is the one after the last planned as its caller read it).
    if (holds_ != nullptr && !holds_->BeginPlanning(id)) continue;
    const Result<int> n = PlanJob(id);
    if (holds_ != nullptr) holds_->EndPlanning(id);
    if (!n.ok()) return planned;  // the log refused: the next tick tries again
    planned += *n;
  }
  return planned;
}

Result<int> Planner::PlanJob(const std::string& id) {
  const std::shared_ptr<const proto::ClusterState> state_view = log_->View();
  const proto::ClusterState& state = *state_view;
  auto it = state.jobs().find(id);
  if (it == state.jobs().end() || it->second.stopped()) return 0;
  const proto::JobState& job = it->second;
  if (job.draining() && DrainPlanned(job, state)) return FinishDrain(id, job);
  // Event-time jobs: batch N is planned once N-1 committed, so its
  // watermark is always that of every batch before it, whatever the timing.
  const bool event_time = engine::HasEventTime(job.spec());
  const int max_in_flight = event_time ? 1 : std::max(1, job.spec().max_batches_in_flight());
  if (job.in_flight_size() >= max_in_flight) return 0;
  const int64_t batch_id = job.last_planned_batch() + 1;
  const int64_t batch_time = BatchTimeOf(job, batch_id);
  if (clock_->UnixMillis() < batch_time) return 0;
  proto::DriverRecord record;
  *record.mutable_batch_planned() = PlanBatch(id, job, state, batch_id, batch_time);
  int64_t events = 0;
  for (const auto& r : record.batch_planned().ranges()) events += r.end_offset() - r.start_offset();
  Result<int64_t> seq = log_->Append(std::move(record));
  if (!seq.ok()) {
    spdlog::warn("planning batch {} of job {}: {}", batch_id, id, seq.status().ToString());
    return seq.status();
  }
  spdlog::debug("job {}: batch {} planned ({} offsets)", id, batch_id, events);
  if (probe_ != nullptr) probe_->BatchPlanned(id, batch_id, leadership_->epoch());
  return 1;
}

}  // namespace sluice::driver
