#include "lib/driver/savepoint.h"

#include <algorithm>
#include <map>
#include <set>

#include "lib/driver/driver_log.h"
#include "lib/driver/job_holds.h"
#include "lib/driver/job_registry.h"
#include "lib/driver/job_update.h"
#include "lib/driver/leadership.h"
#include "lib/driver/rescale.h"
#include "lib/engine/keyed.h"
#include "lib/engine/state_namespace.h"
#include "lib/rpc/rpc.h"
#include "lib/rpc/worker_client.h"
#include "spdlog/spdlog.h"

namespace sluice::driver {
namespace {

// A whole partition's state crosses in one call.
constexpr std::chrono::milliseconds kTransferDeadline{120'000};

bool Stateful(const proto::JobSpec& spec) {
  Result<std::optional<engine::KeyedStage>> stage = engine::KeyedStageOf(spec);
  return stage.ok() && stage->has_value() && (*stage)->stateful();
}

// The names of the sources `spec` reads: its named and its inline ones.
std::set<std::string> SourcesOf(const proto::JobSpec& spec) {
  std::set<std::string> names(spec.sources().begin(), spec.sources().end());
  for (const proto::SourceSpec& s : spec.inline_sources()) names.insert(s.name());
  return names;
}

}  // namespace

Savepoints::Savepoints(DriverLog* log, Leadership* leadership, JobRegistry* jobs, JobHolds* holds,
                       rpc::ChannelCache* channels, std::function<std::vector<proto::MemberInfo>()> live_workers,
                       std::string cluster, Clock* clock)
    : log_(log),
      leadership_(leadership),
      jobs_(jobs),
      holds_(holds),
      channels_(channels),
      live_workers_(std::move(live_workers)),
      cluster_(std::move(cluster)),
      clock_(clock) {}

Status Savepoints::CheckLeader() const {
  if (!leadership_->Serving()) return absl::UnavailableError("this driver is not the serving leader");
  return absl::OkStatus();
}

Result<std::shared_ptr<const proto::ClusterState>> Savepoints::Quiesce(const std::string& job_id) {
  const Clock::TimePoint give_up = clock_->Now() + kQuiesceTimeout;
  while (true) {
    RETURN_IF_ERROR(CheckLeader());
    std::shared_ptr<const proto::ClusterState> view = log_->View();
    auto it = view->jobs().find(job_id);
    if (it == view->jobs().end()) return absl::NotFoundError(fmt::format("no job {}", job_id));
    // A stopped job plans nothing more: its batches in flight never commit.
    if (it->second.in_flight().empty() || it->second.stopped()) return view;
    if (clock_->Now() >= give_up) {
      return absl::DeadlineExceededError(
          fmt::format("job {}: batches still in flight after {} s of holding its planning (batch {} committed, {} "
                      "planned)",
                      job_id, kQuiesceTimeout.count() / 1000, it->second.last_committed_batch(),
                      it->second.last_planned_batch()));
    }
    clock_->SleepFor(std::chrono::milliseconds(50));
  }
}

Result<std::vector<proto::StateChunk>> Savepoints::FetchPartition(const std::string& job_id, int32_t partition,
                                                                  int64_t batch,
                                                                  const std::vector<std::string>& holders) {
  std::map<std::string, proto::MemberInfo> live;
  for (proto::MemberInfo& m : live_workers_()) live[m.id()] = std::move(m);
  std::vector<std::string> tried;
  Status last = absl::UnavailableError("no live holder");
  for (const std::string& id : holders) {
    auto it = live.find(id);
    if (it == live.end()) {
      tried.push_back(id + " (not live)");
      continue;
    }
    proto::FetchStateRequest request;
    request.set_epoch(leadership_->epoch());
    request.set_job_id(job_id);
    request.set_partition(partition);
    request.set_base_batch(batch);
    std::vector<proto::StateChunk> chunks;
    last = rpc::WorkerClient(*channels_, it->second.rpc_address())
               .FetchState(request, [&](proto::StateChunk&& c) { chunks.push_back(std::move(c)); },
                           kTransferDeadline);
    if (last.ok() && (chunks.empty() || !chunks.back().last())) {
      last = absl::UnavailableError("the state stream ended early");
    }
    if (last.ok()) return chunks;
    spdlog::warn("savepoint of job {}: reduce partition {} as of batch {} from worker {}: {}", job_id, partition,
                 batch, id, last.ToString());
    tried.push_back(fmt::format("{} ({})", id, std::string(last.message())));
  }
  std::string holders_said;
  for (const std::string& t : tried) holders_said += (holders_said.empty() ? "" : "; ") + t;
  return absl::UnavailableError(
      fmt::format("job {} reduce partition {}: no live holder gave its state as of batch {} (holders: {})", job_id,
                  partition, batch, holders_said.empty() ? std::string("none recorded") : holders_said));
}

Status Savepoints::Take(const std::string& job_id, const std::function<bool(const proto::SavepointChunk&)>& write) {
  RETURN_IF_ERROR(CheckLeader());
  // Held for the whole copy: the holders fold no batch past C meanwhile.
  ScopedJobHold hold(holds_, job_id);
  ASSIGN_OR_RETURN(std::shared_ptr<const proto::ClusterState> view, Quiesce(job_id));
  const proto::JobState& job = view->jobs().at(job_id);
  const int64_t batch = job.last_committed_batch();

  proto::SavepointChunk first;
  proto::SavepointHeader* header = first.mutable_header();
  header->set_format(kFormat);
  header->set_job_id(job_id);
  *header->mutable_spec() = job.spec();
  // A rescale recorded but not yet run: the state is still in the holders'
  // count, and the savepoint is of that state.
  if (Stateful(job.spec()) && HoldersPartitions(job) != ReducePartitionsOf(job.spec())) {
    header->mutable_spec()->set_reduce_partitions(HoldersPartitions(job));
  }
  proto::SavepointStart* start = header->mutable_start();
  start->set_last_committed_batch(batch);
  *start->mutable_offsets() = job.committed_offsets();
  start->set_max_event_time_unix_ms(job.max_event_time_unix_ms());
  start->set_state_keys(job.state_keys());
  start->set_state_bytes(job.state_bytes());
  header->set_taken_unix_ms(clock_->UnixMillis());
  header->set_cluster(cluster_);
  for (const std::string& name : SourcesOf(job.spec())) {
    auto s = view->sources().find(name);
    if (s != view->sources().end()) *header->add_sources() = s->second.spec();
  }
  if (!write(first)) return absl::CancelledError("the reader went away");

  int64_t keys = 0;
  int partitions = 0;
  if (Stateful(job.spec()) && batch > 0) {
    for (const proto::ReduceHolders& h : job.reduce_holders()) {
      // A partition with no holder has had no state yet: it starts empty.
      if (h.workers().empty()) continue;
      const std::vector<std::string> holders(h.workers().begin(), h.workers().end());
      // Under the namespace of the job's state layout (a rescaled job's is not
      // its id); the savepoint names the job alone, restored at layout 0.
      ASSIGN_OR_RETURN(std::vector<proto::StateChunk> chunks,
                       FetchPartition(engine::StateNamespace(job_id, job.state_layout()), h.partition(), batch,
                                      holders));
      for (proto::StateChunk& c : chunks) {
        keys += c.entries_size();
        c.clear_epoch();
        c.set_job_id(job_id);
        proto::SavepointChunk out;
        *out.mutable_state() = std::move(c);
        if (!write(out)) return absl::CancelledError("the reader went away");
      }
      ++partitions;
    }
  }
  spdlog::info("savepoint of job {} as of batch {}: {} reduce partitions, {} keys", job_id, batch, partitions, keys);
  return absl::OkStatus();
}

Status Savepoints::Install(const proto::MemberInfo& worker, const std::string& job_id, int32_t partition,
                           int64_t base, const std::vector<proto::StateChunk>& chunks) {
  auto produce = [&](const rpc::ChunkWriter<proto::StateChunk>& write) -> Status {
    for (size_t i = 0; i < chunks.size(); ++i) {
      proto::StateChunk c = chunks[i];
      c.set_epoch(leadership_->epoch());
      c.set_job_id(job_id);
      c.set_partition(partition);
      c.set_base_batch(base);
      c.clear_batch();
      c.set_snapshot(true);
      c.set_last(i + 1 == chunks.size());
      if (!write(c)) break;
    }
    return absl::OkStatus();
  };
  Status st = rpc::WorkerClient(*channels_, worker.rpc_address()).ReplicateState(produce, kTransferDeadline).status();
  return Annotate(st, fmt::format("installing job {} reduce partition {} as of batch {} on worker {}", job_id,
                                  partition, base, worker.id()));
}

Result<proto::RestoreSavepointResponse> Savepoints::Restore(const std::function<bool(proto::SavepointChunk*)>& read) {
  RETURN_IF_ERROR(CheckLeader());
  proto::SavepointChunk first;
  if (!read(&first) || !first.has_header()) {
    return absl::InvalidArgumentError("a savepoint stream must start with its header");
  }
  const proto::SavepointHeader& header = first.header();
  if (header.format() != kFormat) {
    return absl::FailedPreconditionError(fmt::format(
        "savepoint format {} is not known to this driver (it reads format {})", header.format(), kFormat));
  }
  const proto::JobSpec& spec = header.spec();
  const std::string& job_id = spec.name();
  if (job_id != header.job_id()) {
    return absl::InvalidArgumentError(
        fmt::format("savepoint of job {} carries a spec named {}", header.job_id(), job_id));
  }
  // The name free, the spec valid here, its inline sources registered.
  RETURN_IF_ERROR_PREPEND(jobs_->Admit(spec), fmt::format("restoring job {} from a savepoint", job_id));
  std::shared_ptr<const proto::ClusterState> view = log_->View();
  for (const proto::SourceSpec& saved : header.sources()) {
    auto it = view->sources().find(saved.name());
    if (it == view->sources().end()) {
      return absl::FailedPreconditionError(fmt::format(
          "job {}: source {} ({} partitions in the savepoint) does not exist here: declare it with sluicectl "
          "source add",
          job_id, saved.name(), saved.partitions()));
    }
    if (it->second.spec().partitions() != saved.partitions()) {
      return absl::FailedPreconditionError(
          fmt::format("job {}: source {} has {} partitions here and {} in the savepoint: positions and state are "
                      "per partition",
                      job_id, saved.name(), it->second.spec().partitions(), saved.partitions()));
    }
  }
  for (const proto::SourceOffset& o : header.start().offsets()) {
    if (!view->sources().contains(o.source())) {
      return absl::FailedPreconditionError(
          fmt::format("job {}: the savepoint has a position in source {}, which does not exist here", job_id,
                      o.source()));
    }
  }

  // The state, by partition, as the stream brings it.
  Result<std::optional<engine::KeyedStage>> stage = engine::KeyedStageOf(spec);
  const int32_t reduce_partitions = stage.ok() && stage->has_value() ? (*stage)->reduce_partitions : 0;
  std::map<int32_t, std::vector<proto::StateChunk>> state;
  for (proto::SavepointChunk c; read(&c); c.Clear()) {
    if (c.has_header() || !c.has_state()) return absl::InvalidArgumentError("a savepoint stream has one header");
    const int32_t p = c.state().partition();
    if (p < 0 || p >= reduce_partitions) {
      return absl::InvalidArgumentError(fmt::format(
          "job {}: the savepoint has state of reduce partition {}, the job has {} (reduce_partitions must match "
          "the state)",
          job_id, p, reduce_partitions));
    }
    state[p].push_back(std::move(*c.mutable_state()));
  }
  for (const auto& [p, chunks] : state) {
    if (!chunks.back().last()) {
      return absl::InvalidArgumentError(fmt::format("job {}: reduce partition {}'s state is cut short", job_id, p));
    }
  }

  // Another job file than the savepoint's: the positions and state must mean
  // the same to it, as for sluicectl update (same sources, same keyed part).
  if (header.has_saved_spec()) {
    proto::JobSpec saved = header.saved_spec();
    saved.set_name(spec.name());
    Result<UpdateCheck> check = CheckUpdate(saved, spec, /*reset_state=*/false);
    if (!check.ok() && !absl::IsInvalidArgument(check.status())) {
      return Annotate(check.status(), fmt::format("job {}: its file against the savepoint's", job_id));
    }
    if (!state.empty() && ReducePartitionsOf(saved) != reduce_partitions) {
      return absl::FailedPreconditionError(fmt::format(
          "job {}: the savepoint's state has {} reduce partitions and the file {}: restore it with {}, then "
          "sluicectl rescale",
          job_id, ReducePartitionsOf(saved), reduce_partitions, ReducePartitionsOf(saved)));
    }
  }
  // As if batch S had just committed: S is past every batch the name had.
  int64_t base = header.start().last_committed_batch();
  if (auto it = view->deleted_jobs().find(job_id); it != view->deleted_jobs().end()) base = std::max(base, it->second);
  proto::SavepointStart start = header.start();
  start.set_last_committed_batch(base);
  start.set_savepoint(fmt::format("{} at batch {}", start.savepoint().empty() ? header.cluster() : start.savepoint(),
                                  header.start().last_committed_batch()));
  start.clear_reduce_holders();
  // Windows over batch time count in batch numbers: shifted past a deleted
  // job's batches they would all close at once.
  if (base != header.start().last_committed_batch() && stage.ok() && stage->has_value() &&
      (*stage)->mode == engine::KeyedStage::Mode::kBatchWindow) {
    return absl::FailedPreconditionError(fmt::format(
        "job {}: its windows count batches, and a job of this name ran here to batch {} (the savepoint is at "
        "batch {}); restore it under another name",
        job_id, base, header.start().last_committed_batch()));
  }
  // A deleted name's state is being dropped from the workers (the
  // scheduler's TellDeleted): held, it is not, while this job's state lands.
  ScopedJobHold hold(holds_, job_id);
  // What was installed, dropped again if the restore fails: left there, a
  // later job of this name would find state ahead of its first batch.
  std::set<std::string> installed_on;
  std::vector<proto::MemberInfo> touched;
  auto undo = [&](Status failed) {
    // Not if a job of the name exists after all (a submit that raced this
    // restore): that state would be its.
    if (log_->View()->jobs().contains(job_id)) return failed;
    proto::DropBlocksRequest drop;
    drop.set_epoch(leadership_->epoch());
    drop.add_stopped_jobs(job_id);
    for (const proto::MemberInfo& w : touched) {
      IgnoreError(rpc::WorkerClient(*channels_, w.rpc_address()).DropBlocks(drop).status(),
                  "a worker that misses it keeps the state until the name is deleted");
    }
    return failed;
  };
  if (!state.empty()) {
    std::vector<proto::MemberInfo> live = live_workers_();
    std::sort(live.begin(), live.end(), [](const auto& a, const auto& b) { return a.id() < b.id(); });
    if (live.empty()) return absl::UnavailableError(fmt::format("job {}: no live worker to hold its state", job_id));
    for (const auto& [p, chunks] : state) {
      proto::ReduceHolders* holders = start.add_reduce_holders();
      holders->set_partition(p);
      // Owner and replica, spread: partition p's owner is the p-th worker.
      const size_t copies = std::min<size_t>(2, live.size());
      for (size_t i = 0; i < copies; ++i) {
        const proto::MemberInfo& w = live[(static_cast<size_t>(p) + i) % live.size()];
        if (Status st = CheckLeader(); !st.ok()) return undo(st);
        if (installed_on.insert(w.id()).second) touched.push_back(w);
        if (Status st = Install(w, job_id, p, base, chunks); !st.ok()) return undo(st);
        holders->add_workers(w.id());
      }
    }
  }
  Result<proto::SubmitJobResponse> submitted_or = jobs_->Submit(spec, &start);
  if (!submitted_or.ok()) return undo(submitted_or.status());
  const proto::SubmitJobResponse& submitted = *submitted_or;
  spdlog::info("job {} restored from savepoint {} (taken on {}), starting after batch {}", job_id, start.savepoint(),
               header.cluster(), base);
  proto::RestoreSavepointResponse response;
  response.set_job_id(submitted.job_id());
  response.set_wal_seq(submitted.wal_seq());
  return response;
}

}  // namespace sluice::driver
