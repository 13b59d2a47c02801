#include "lib/driver/cluster_state.h"

#include <algorithm>
#include <atomic>

#include "lib/common/version.h"
#include "lib/driver/rescale.h"
#include "lib/engine/keyed.h"
#include "lib/source/source_connector.h"
#include "spdlog/spdlog.h"

namespace sluice::driver {

// Declared in rescale.h; defined beside its only caller in the replicated
// state so that what links ClusterState alone (the WAL's fuzz target) has it.
int32_t ReducePartitionsOf(const proto::JobSpec& spec) {
  Result<std::optional<engine::KeyedStage>> stage = engine::KeyedStageOf(spec);
  if (!stage.ok() || !stage->has_value()) return 0;
  return (*stage)->reduce_partitions;
}

namespace {

Status Refuse(int64_t seq, const std::string& why) {
  return absl::FailedPreconditionError(fmt::format("WAL record {}: {}", seq, why));
}

// The block-retention rule, in this one place: a block is folded away once
// every running job reading its source has committed past it and planned
// nothing that needs it.
void FoldCommittedBlocks(proto::ClusterState& state, const proto::BatchCommitted& bc) {
  // A block is folded away once every running job reading its source has
  // committed past it and planned nothing that needs it. A job with no
  // position in the partition yet (it has planned nothing there: no data
  // had come when it last planned) starts at the oldest block still here, so
  // it holds them all back.
  for (const proto::SourceOffset& next : bc.next_offsets()) {
    int64_t upto = next.offset();
    for (const auto& [id, job] : state.jobs()) {
      if (job.stopped() || id == bc.job_id()) continue;
      const auto& sources = job.spec().sources();
      if (std::find(sources.begin(), sources.end(), next.source()) == sources.end()) continue;
      // Its planned batches still need their ranges; then its committed position.
      bool has_position = false;
      for (const proto::BatchPlanned& b : job.in_flight()) {
        for (const proto::PartitionRange& r : b.ranges()) {
          if (r.source() == next.source() && r.partition() == next.partition()) {
            upto = std::min(upto, r.start_offset());
            has_position = true;
          }
        }
      }
      for (const proto::SourceOffset& o : job.committed_offsets()) {
        if (o.source() == next.source() && o.partition() == next.partition()) {
          upto = std::min(upto, o.offset());
          has_position = true;
        }
      }
      if (!has_position) upto = -1;
    }
    auto it = state.mutable_sources()->find(next.source());
    if (it == state.mutable_sources()->end() || next.partition() < 0 ||
        next.partition() >= it->second.partitions_size()) {
      continue;
    }
    auto* blocks = it->second.mutable_partitions(next.partition())->mutable_blocks();
    int n = 0;
    while (n < blocks->size() && blocks->Get(n).range().end_offset() <= upto) ++n;
    if (n > 0) blocks->DeleteSubrange(0, n);
  }
}

// BatchCommitted(N): the job's position, its batch summary and totals, the
// keyed job's state holders; then the blocks no running reader needs go.
Status ApplyBatchCommitted(proto::ClusterState& state, const proto::BatchCommitted& bc, int64_t seq) {
  auto it = state.mutable_jobs()->find(bc.job_id());
  if (it == state.mutable_jobs()->end()) return Refuse(seq, "commit of unknown job " + bc.job_id());
  proto::JobState& job = it->second;
  if (bc.batch_id() != job.last_committed_batch() + 1 || bc.batch_id() > job.last_planned_batch()) {
    return Refuse(seq, fmt::format("batch {} committed after {} (planned up to {})", bc.batch_id(),
                                 job.last_committed_batch(), job.last_planned_batch()));
  }
  job.set_last_committed_batch(bc.batch_id());
  int64_t batch_time = 0;
  bool final_flush = false;
  auto* in_flight = job.mutable_in_flight();
  for (int i = 0; i < in_flight->size(); ++i) {
    if (in_flight->Get(i).batch_id() == bc.batch_id()) {
      batch_time = in_flight->Get(i).batch_time_unix_ms();
      final_flush = in_flight->Get(i).final_flush();
      in_flight->DeleteSubrange(i, 1);
      break;
    }
  }
  if (final_flush && job.draining()) {
    // The last batch of a drain closed the open windows: the drain is over,
    // in the same record (no moment in which a second flush could be planned).
    job.set_stopped(true);
    job.set_failed(false);
    job.set_draining(false);
    job.clear_drain_until();
    job.set_drain_emit_windows(false);
    if (job.stop_reason().empty()) job.set_stop_reason("drained");
  }
  for (const proto::SourceOffset& next : bc.next_offsets()) {
    bool found = false;
    for (proto::SourceOffset& o : *job.mutable_committed_offsets()) {
      if (o.source() == next.source() && o.partition() == next.partition()) {
        o.set_offset(next.offset());
        found = true;
      }
    }
    if (!found) *job.add_committed_offsets() = next;
  }
  // Timings are the leader's clock; a batch planned by one leader and run
  // by the next has its batch time from the plan.
  proto::BatchSummary summary;
  summary.set_batch_id(bc.batch_id());
  summary.set_batch_time_unix_ms(batch_time);
  summary.set_input_count(bc.input_count());
  summary.set_output_count(bc.output_count());
  summary.set_dead_letters(bc.dead_letters());
  summary.set_task_attempts(bc.task_attempts());
  summary.set_shuffle_bytes(bc.shuffle_bytes());
  summary.set_late_events(bc.late_events());
  summary.set_blocks_fetched(bc.blocks_fetched());
  summary.set_blocks_recomputed(bc.blocks_recomputed());
  if (bc.started_unix_ms() > 0 && summary.batch_time_unix_ms() > 0) {
    summary.set_scheduling_delay_ms(std::max<int64_t>(0, bc.started_unix_ms() - summary.batch_time_unix_ms()));
    summary.set_processing_ms(std::max<int64_t>(0, bc.finished_unix_ms() - bc.started_unix_ms()));
    summary.set_total_delay_ms(std::max<int64_t>(0, bc.finished_unix_ms() - summary.batch_time_unix_ms()));
  }
  *job.add_recent_batches() = summary;
  if (job.recent_batches_size() > ClusterState::kRecentBatches) {
    job.mutable_recent_batches()->DeleteSubrange(0, job.recent_batches_size() - ClusterState::kRecentBatches);
  }
  job.set_total_input(job.total_input() + bc.input_count());
  job.set_total_output(job.total_output() + bc.output_count());
  job.set_total_dead_letters(job.total_dead_letters() + bc.dead_letters());
  job.set_total_late_events(job.total_late_events() + bc.late_events());
  if (!bc.reduce_holders().empty()) {
    // Keyed jobs: every batch's reduce tasks name where the state is now.
    *job.mutable_reduce_holders() = bc.reduce_holders();
    job.set_state_keys(bc.state_keys());
    job.set_state_bytes(bc.state_bytes());
    // A commit from a build before rescaling names neither: they stay.
    if (bc.reduce_partitions() > 0) {
      job.set_holders_partitions(bc.reduce_partitions());
      job.set_state_layout(bc.state_layout());
    }
  }
  job.set_max_event_time_unix_ms(std::max(job.max_event_time_unix_ms(), bc.max_event_time_unix_ms()));
  // The last batch planned under a spec an update replaced has committed.
  if (job.has_previous_spec() && bc.batch_id() + 1 >= job.spec_from_batch()) {
    job.clear_previous_spec();
    job.set_spec_from_batch(0);
  }
  FoldCommittedBlocks(state, bc);
  return absl::OkStatus();
}

// BlocksAdded: each block must start where its partition's last one ended
// (any start for a Kafka partition's first block).
Status ApplyBlocksAdded(proto::ClusterState& state, const proto::BlocksAdded& added, int64_t seq) {
  for (const proto::BlockInfo& b : added.blocks()) {
    const proto::PartitionRange& range = b.range();
    auto it = state.mutable_sources()->find(range.source());
    if (it == state.mutable_sources()->end()) return Refuse(seq, "block of unknown source " + range.source());
    if (range.partition() < 0 || range.partition() >= it->second.partitions_size()) {
      return Refuse(seq, fmt::format("block of {}: no partition {}", range.source(), range.partition()));
    }
    proto::PartitionState* ps = it->second.mutable_partitions(range.partition());
    if ((ps->next_offset() >= 0 && range.start_offset() != ps->next_offset()) ||
        range.end_offset() <= range.start_offset()) {
      return Refuse(seq, fmt::format("block {}[{}] {}..{} does not follow offset {}", range.source(),
                                   range.partition(), range.start_offset(), range.end_offset(),
                                   ps->next_offset()));
    }
    ps->set_next_offset(range.end_offset());
    *ps->add_blocks() = b;
  }
  return absl::OkStatus();
}

// The job's lifecycle (docs/jobs.md "A job's life"). Each record is checked
// by the leader before it is appended (JobRegistry); what would contradict
// the state is refused here too, so a log cannot say what never happened.

// A job starts its batch clock again at `now`: batch N's time is
// now + (N - last planned) * interval from here on.
void RestartClock(proto::JobState& job, int64_t now_unix_ms) {
  job.set_schedule_origin_unix_ms(now_unix_ms);
  job.set_schedule_origin_batch(job.last_planned_batch());
}

Status ApplyJobSubmitted(proto::ClusterState& state, const proto::JobSubmitted& js, int64_t seq) {
  if (state.jobs().contains(js.job_id())) return Refuse(seq, "job " + js.job_id() + " exists");
  // A name used before numbers its batches on from the deleted job's last,
  // so no sink or worker mistakes this job's batch N for that one's.
  int64_t first_after = 0;
  if (auto it = state.mutable_deleted_jobs()->find(js.job_id()); it != state.mutable_deleted_jobs()->end()) {
    first_after = it->second;
    state.mutable_deleted_jobs()->erase(it);
  }
  proto::JobState& job = (*state.mutable_jobs())[js.job_id()];
  *job.mutable_spec() = js.spec();
  job.set_submit_time_unix_ms(js.submit_time_unix_ms());
  if (js.has_from_savepoint()) {
    const proto::SavepointStart& sp = js.from_savepoint();
    first_after = std::max(first_after, sp.last_committed_batch());
    *job.mutable_committed_offsets() = sp.offsets();
    *job.mutable_reduce_holders() = sp.reduce_holders();
    job.set_max_event_time_unix_ms(sp.max_event_time_unix_ms());
    job.set_state_keys(sp.state_keys());
    job.set_state_bytes(sp.state_bytes());
    job.set_savepoint(sp.savepoint());
  }
  job.set_last_planned_batch(first_after);
  job.set_last_committed_batch(first_after);
  // A restored savepoint's state is installed at layout 0 with the spec's
  // count (Savepoints::Restore refuses another count).
  job.set_holders_partitions(ReducePartitionsOf(js.spec()));
  RestartClock(job, js.submit_time_unix_ms());
  return absl::OkStatus();
}

Status ApplyJobStopped(proto::ClusterState& state, const proto::JobStopped& r, int64_t seq) {
  auto it = state.mutable_jobs()->find(r.job_id());
  if (it == state.mutable_jobs()->end()) return Refuse(seq, "stop of unknown job " + r.job_id());
  proto::JobState& job = it->second;
  job.set_stopped(true);
  job.set_stop_reason(r.reason());
  // Logs written before JobStopped.failed existed say so in the reason.
  job.set_failed(r.failed() || r.reason().starts_with("FAILED"));
  job.set_draining(false);
  job.clear_drain_until();
  job.set_drain_emit_windows(false);
  return absl::OkStatus();
}

Status ApplyJobDrainRequested(proto::ClusterState& state, const proto::JobDrainRequested& r, int64_t seq) {
  auto it = state.mutable_jobs()->find(r.job_id());
  if (it == state.mutable_jobs()->end()) return Refuse(seq, "drain of unknown job " + r.job_id());
  // A job the leader stopped for an error just before: nothing to drain.
  if (it->second.stopped()) return absl::OkStatus();
  proto::JobState& job = it->second;
  job.set_draining(true);
  *job.mutable_drain_until() = r.until();
  job.set_drain_emit_windows(r.emit_open_windows());
  job.set_stop_reason(r.reason());
  return absl::OkStatus();
}

Status ApplyJobRestarted(proto::ClusterState& state, const proto::JobRestarted& r, int64_t seq) {
  auto it = state.mutable_jobs()->find(r.job_id());
  if (it == state.mutable_jobs()->end()) return Refuse(seq, "restart of unknown job " + r.job_id());
  if (!it->second.stopped()) return Refuse(seq, "restart of running job " + r.job_id());
  proto::JobState& job = it->second;
  job.set_stopped(false);
  job.set_failed(false);
  job.clear_stop_reason();
  job.set_restarts(job.restarts() + 1);
  job.set_draining(false);
  job.clear_drain_until();
  job.set_drain_emit_windows(false);
  // A drain's flush batch, planned and not committed when it stopped, runs
  // as a plain batch: the job runs again, its windows stay open.
  for (proto::BatchPlanned& b : *job.mutable_in_flight()) b.set_final_flush(false);
  // Batches planned before the stop run again exactly as planned (a sink may
  // hold part of their output); new ones follow the clock from now.
  RestartClock(job, r.restart_unix_ms());
  return absl::OkStatus();
}

Status ApplyJobUpdated(proto::ClusterState& state, const proto::JobUpdated& r, int64_t seq) {
  auto it = state.mutable_jobs()->find(r.job_id());
  if (it == state.mutable_jobs()->end()) return Refuse(seq, "update of unknown job " + r.job_id());
  proto::JobState& job = it->second;
  // The batches already planned ran (or may have run) under the old spec:
  // they keep it, whole.
  if (!job.in_flight().empty()) {
    if (!job.has_previous_spec()) *job.mutable_previous_spec() = job.spec();
    job.set_spec_from_batch(job.last_planned_batch() + 1);
  } else {
    job.clear_previous_spec();
    job.set_spec_from_batch(0);
  }
  // A job from a build before rescaling has not recorded its holders'
  // count: until now it could only be the spec's.
  if (job.holders_partitions() == 0) job.set_holders_partitions(ReducePartitionsOf(job.spec()));
  *job.mutable_spec() = r.spec();
  job.set_updates(job.updates() + 1);
  // The batches in flight still need the state where it is: the reset is
  // the scheduler's, at the first batch of the new spec.
  if (r.reset_state()) job.set_state_reset_batch(job.last_planned_batch() + 1);
  RestartClock(job, r.update_unix_ms());
  return absl::OkStatus();
}

Status ApplyJobDeleted(proto::ClusterState& state, const proto::JobDeleted& r, int64_t seq) {
  auto it = state.mutable_jobs()->find(r.job_id());
  if (it == state.mutable_jobs()->end()) return Refuse(seq, "delete of unknown job " + r.job_id());
  if (!it->second.stopped()) return Refuse(seq, "delete of running job " + r.job_id());
  (*state.mutable_deleted_jobs())[r.job_id()] = it->second.last_planned_batch();
  state.mutable_jobs()->erase(it);
  return absl::OkStatus();
}

// A source partition to change, or a refusal naming it.
Result<proto::PartitionState*> MutablePartition(proto::ClusterState& state, const std::string& source,
                                                int32_t partition, int64_t seq) {
  auto it = state.mutable_sources()->find(source);
  if (it == state.mutable_sources()->end()) return Refuse(seq, "loss or reset of unknown source " + source);
  if (partition < 0 || partition >= it->second.partitions_size()) {
    return Refuse(seq, fmt::format("loss or reset of {}: no partition {}", source, partition));
  }
  return it->second.mutable_partitions(partition);
}

// SourceDataLost: the partition goes on at to_offset; the range is kept (the
// last kLostRanges) and counted. It must start at the partition's next
// offset (any start before the first block), so accepted blocks and lost
// ranges together still cover the partition without a gap or an overlap.
Status ApplySourceDataLost(proto::ClusterState& state, const proto::SourceDataLost& lost, int64_t seq) {
  ASSIGN_OR_RETURN(proto::PartitionState * ps, MutablePartition(state, lost.source(), lost.partition(), seq));
  if ((ps->next_offset() >= 0 && lost.from_offset() != ps->next_offset()) ||
      lost.to_offset() <= lost.from_offset()) {
    return Refuse(seq, fmt::format("lost range {}[{}] {}..{} does not follow offset {}", lost.source(),
                                   lost.partition(), lost.from_offset(), lost.to_offset(), ps->next_offset()));
  }
  ps->set_next_offset(lost.to_offset());
  *ps->add_lost() = lost;
  if (ps->lost_size() > ClusterState::kLostRanges) {
    ps->mutable_lost()->DeleteSubrange(0, ps->lost_size() - ClusterState::kLostRanges);
  }
  ps->set_lost_offsets(ps->lost_offsets() + lost.to_offset() - lost.from_offset());
  return absl::OkStatus();
}

// PartitionReset: the partition goes on at to_offset. Never backwards: the
// offsets before the next one are in accepted blocks (the skipped ones, if
// any, came first as a SourceDataLost).
Status ApplyPartitionReset(proto::ClusterState& state, const proto::PartitionReset& reset, int64_t seq) {
  ASSIGN_OR_RETURN(proto::PartitionState * ps, MutablePartition(state, reset.source(), reset.partition(), seq));
  if (reset.to_offset() < 0 || (ps->next_offset() >= 0 && reset.to_offset() < ps->next_offset())) {
    return Refuse(seq, fmt::format("reset of {}[{}] to {} goes back from offset {}", reset.source(),
                                   reset.partition(), reset.to_offset(), ps->next_offset()));
  }
  ps->set_next_offset(reset.to_offset());
  return absl::OkStatus();
}

// The leader's clock as a record of the current term carries it: the
// term's first and last time seen. Records of no term (a log that starts
// without a LeaderChange, in tests) change nothing.
void SeenInTerm(proto::ClusterState& state, int64_t first_unix_ms, int64_t last_unix_ms) {
  if (state.leader_terms().empty() || last_unix_ms <= 0) return;
  proto::LeaderTerm* term = state.mutable_leader_terms(state.leader_terms_size() - 1);
  if (term->first_seen_unix_ms() == 0) term->set_first_seen_unix_ms(first_unix_ms > 0 ? first_unix_ms : last_unix_ms);
  term->set_last_seen_unix_ms(std::max(term->last_seen_unix_ms(), last_unix_ms));
}

}  // namespace

ClusterState::ClusterState(BatchHistoryOptions history)
    : state_(std::make_shared<proto::ClusterState>()), history_(history) {}

std::shared_ptr<const proto::ClusterState> ClusterState::View() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

proto::ClusterState* ClusterState::MutableLocked() {
  // Only View() hands out references, under mu_: a count of one means no
  // reader holds this state, and none can take it while we change it.
  if (state_.use_count() > 1) {
    state_ = std::make_shared<proto::ClusterState>(*state_);
  } else {
    // The last reader's release happens before our writes.
    std::atomic_thread_fence(std::memory_order_acquire);
  }
  return state_.get();
}

Status ClusterState::Apply(const proto::WalRecord& record) {
  switch (record.body_case()) {
    case proto::WalRecord::kLeaderChange: {
      std::lock_guard<std::mutex> lock(mu_);
      proto::ClusterState& state = *MutableLocked();
      state.set_last_leader_epoch(record.leader_change().epoch());
      state.set_last_leader_id(record.leader_change().leader_id());
      proto::LeaderTerm* term = state.add_leader_terms();
      term->set_epoch(record.leader_change().epoch());
      term->set_leader_id(record.leader_change().leader_id());
      term->set_seq(record.seq());
      if (state.leader_terms_size() > kLeaderTerms) {
        state.mutable_leader_terms()->DeleteSubrange(0, state.leader_terms_size() - kLeaderTerms);
      }
      return absl::OkStatus();
    }
    case proto::WalRecord::kPayload: {
      proto::DriverRecord driver_record;
      if (!driver_record.ParseFromString(record.payload())) return Refuse(record.seq(), "unreadable payload");
      return ApplyRecord(driver_record, record.seq());
    }
    case proto::WalRecord::BODY_NOT_SET:
      break;
  }
  return Refuse(record.seq(), "empty record");
}

std::string ClusterState::Snapshot() const {
  proto::ClusterSnapshot snapshot;
  snapshot.set_format(static_cast<proto::ClusterStateFormat>(version::kClusterStateFormat));
  *snapshot.mutable_state() = *View();
  return snapshot.SerializeAsString();
}

Status ClusterState::Restore(std::string_view bytes) {
  auto state = std::make_shared<proto::ClusterState>();
  if (!bytes.empty()) {
    proto::ClusterSnapshot snapshot;
    if (!snapshot.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      return absl::DataLossError("the driver's snapshot is unreadable");
    }
    RETURN_IF_ERROR(version::CheckReadable("the driver's snapshot", static_cast<int>(snapshot.format()),
                                           version::kClusterStateFormat));
    *state = std::move(*snapshot.mutable_state());
  }
  history_.Reset(*state);
  std::lock_guard<std::mutex> lock(mu_);
  state_ = std::move(state);
  return absl::OkStatus();
}

const proto::PartitionState* FindPartitionState(const proto::ClusterState& state, const std::string& source,
                                                int32_t partition) {
  auto it = state.sources().find(source);
  if (it == state.sources().end() || partition < 0 || partition >= it->second.partitions_size()) return nullptr;
  return &it->second.partitions(partition);
}

std::string JobStateName(const proto::JobState& job) {
  if (job.stopped()) return job.failed() ? "failed" : "stopped";
  return job.draining() ? "draining" : "running";
}

int64_t BatchTimeOf(const proto::JobState& job, int64_t batch_id) {
  const int64_t interval = std::max<int64_t>(10, job.spec().batch_interval_ms());
  // Logs from before the batch clock was recorded: the submit time.
  if (job.schedule_origin_unix_ms() == 0) return job.submit_time_unix_ms() + batch_id * interval;
  return job.schedule_origin_unix_ms() + (batch_id - job.schedule_origin_batch()) * interval;
}

const proto::JobSpec& SpecForBatch(const proto::JobState& job, int64_t batch_id) {
  if (job.has_previous_spec() && batch_id < job.spec_from_batch()) return job.previous_spec();
  return job.spec();
}

Result<int64_t> RetainedFrom(const proto::ClusterState& state, const std::string& source, int32_t partition) {
  const proto::PartitionState* ps = FindPartitionState(state, source, partition);
  if (ps == nullptr) return absl::NotFoundError(fmt::format("no partition {} of source {}", partition, source));
  return ps->blocks().empty() ? ps->next_offset() : ps->blocks(0).range().start_offset();
}

Status ClusterState::ApplyRecord(const proto::DriverRecord& r, int64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  proto::ClusterState& state = *MutableLocked();
  switch (r.body_case()) {
    case proto::DriverRecord::kJobSubmitted: {
      const auto& js = r.job_submitted();
      RETURN_IF_ERROR(ApplyJobSubmitted(state, js, seq));
      SeenInTerm(state, js.submit_time_unix_ms(), js.submit_time_unix_ms());
      return absl::OkStatus();
    }
    case proto::DriverRecord::kJobStopped:
      return ApplyJobStopped(state, r.job_stopped(), seq);
    case proto::DriverRecord::kJobDrainRequested:
      return ApplyJobDrainRequested(state, r.job_drain_requested(), seq);
    case proto::DriverRecord::kJobRestarted:
      return ApplyJobRestarted(state, r.job_restarted(), seq);
    case proto::DriverRecord::kJobUpdated:
      return ApplyJobUpdated(state, r.job_updated(), seq);
    case proto::DriverRecord::kJobDeleted:
      RETURN_IF_ERROR(ApplyJobDeleted(state, r.job_deleted(), seq));
      history_.Remove(r.job_deleted().job_id());
      return absl::OkStatus();
    case proto::DriverRecord::kBatchPlanned: {
      const auto& bp = r.batch_planned();
      auto it = state.mutable_jobs()->find(bp.job_id());
      if (it == state.mutable_jobs()->end()) return Refuse(seq, "batch of unknown job " + bp.job_id());
      if (bp.batch_id() != it->second.last_planned_batch() + 1) {
        return Refuse(seq, fmt::format("batch {} planned after {}", bp.batch_id(),
                                     it->second.last_planned_batch()));
      }
      it->second.set_last_planned_batch(bp.batch_id());
      *it->second.add_in_flight() = bp;
      return absl::OkStatus();
    }
    case proto::DriverRecord::kBatchCommitted: {
      const proto::BatchCommitted& bc = r.batch_committed();
      RETURN_IF_ERROR(ApplyBatchCommitted(state, bc, seq));
      SeenInTerm(state, bc.started_unix_ms(), bc.finished_unix_ms());
      const proto::JobState& job = state.jobs().at(bc.job_id());
      history_.Add(bc.job_id(), job.recent_batches(job.recent_batches_size() - 1));
      return absl::OkStatus();
    }
    case proto::DriverRecord::kMarker:
      state.set_markers(state.markers() + 1);
      return absl::OkStatus();
    case proto::DriverRecord::kSourceRegistered: {
      const proto::SourceSpec& spec = r.source_registered().spec();
      if (state.sources().contains(spec.name())) return Refuse(seq, "source " + spec.name() + " exists");
      proto::SourceState& source = (*state.mutable_sources())[spec.name()];
      *source.mutable_spec() = spec;
      // Kafka starts where its start position says, fixed by the first block;
      // the generator and sockets count from 0.
      const int64_t first = source::InitialNextOffset(spec);
      for (int32_t p = 0; p < spec.partitions(); ++p) {
        proto::PartitionState* ps = source.add_partitions();
        ps->set_partition(p);
        ps->set_next_offset(first);
      }
      return absl::OkStatus();
    }
    case proto::DriverRecord::kBlocksAdded:
      return ApplyBlocksAdded(state, r.blocks_added(), seq);
    case proto::DriverRecord::kSourceDataLost:
      return ApplySourceDataLost(state, r.source_data_lost(), seq);
    case proto::DriverRecord::kPartitionReset:
      return ApplyPartitionReset(state, r.partition_reset(), seq);
    case proto::DriverRecord::kWorkerDrainRequested: {
      // Any worker id is taken: a drain may be asked for a worker that has
      // not joined yet, and a cancel of one that is not draining is a no-op.
      const proto::WorkerDrainRequested& d = r.worker_drain_requested();
      if (d.worker_id().empty()) return Refuse(seq, "a drain of no worker");
      if (d.cancel()) {
        state.mutable_draining_workers()->erase(d.worker_id());
      } else {
        (*state.mutable_draining_workers())[d.worker_id()] = d.requested_unix_ms();
      }
      return absl::OkStatus();
    }
    case proto::DriverRecord::BODY_NOT_SET:
      return Refuse(seq, "empty record");
  }
  return Refuse(seq, "unknown record type");
}

}  // namespace sluice::driver
