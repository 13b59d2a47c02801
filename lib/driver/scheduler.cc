#include "lib/driver/scheduler.h"

#include <algorithm>
#include <atomic>
#include <future>
#include <set>

#include "lib/driver/data_path.h"
#include "lib/driver/driver_probe.h"
#include "lib/driver/leadership.h"
#include "lib/driver/rescale.h"
#include "lib/driver/worker_proxy.h"
#include "lib/engine/keyed.h"
#include "lib/engine/state_namespace.h"
#include "lib/rpc/rpc.h"
#include "lib/driver/driver_log.h"
#include "lib/driver/job_holds.h"
#include "spdlog/spdlog.h"

namespace sluice::driver {
namespace {

// The range's partition numbered across the job's sources, in their order.
int32_t OutputPartition(const proto::JobSpec& spec, const proto::ClusterState& state, const proto::PartitionRange& r) {
  int32_t before = 0;
  for (const std::string& name : spec.sources()) {
    if (name == r.source()) break;
    auto it = state.sources().find(name);
    if (it != state.sources().end()) before += it->second.spec().partitions();
  }
  return before + r.partition();
}

}  // namespace

namespace {

// Errors a batch is tried again after: a worker died, restarted or left
// (its blocks, shuffle output or state must be found again) or the
// membership has not caught up yet.
// Attempts of one batch that fail with transient errors before the job
// stops: ~a minute of a worker being unreachable while its membership
// says it lives.
constexpr int kMaxTransientAttempts = 100;

bool Transient(const Status& st) {
  return absl::IsUnavailable(st) || absl::IsAborted(st) || absl::IsDeadlineExceeded(st) || absl::IsCancelled(st);
}

}  // namespace

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(live_mu_);
    serving_ = false;
    for (const auto& [worker, attempt] : attempts_) attempt.cancel->Cancel();
  }
  for (auto& [job, run] : runs_) {
    if (run->thread.joinable()) run->thread.join();
  }
}

int Scheduler::Tick(const std::vector<proto::MemberInfo>& live) {
  const bool serving = leadership_->Serving();
  {
    // Attempts on workers that left (or all, once this driver no longer
    // serves) are given up now rather than at their deadline: a paused or
    // cut-off worker may never answer.
    std::lock_guard<std::mutex> lock(live_mu_);
    live_ = live;
    serving_ = serving;
    std::set<std::string> ids;
    for (const proto::MemberInfo& m : live) ids.insert(m.id());
    for (const auto& [worker, attempt] : attempts_) {
      if (!serving || !ids.contains(worker)) attempt.cancel->Cancel();
    }
    RefreshCutOff();  // links unheard of for a while count as mended
  }
  int committed = 0;
  for (auto& [job, run] : runs_) {
    if (run->busy.load(std::memory_order_acquire)) continue;
    if (run->thread.joinable()) run->thread.join();
    committed += run->committed.exchange(0);
  }
  if (!serving || live.empty()) return committed;
  const int64_t epoch = leadership_->epoch();
  const std::shared_ptr<const proto::ClusterState> state = log_->View();
  TellDeleted(*state, live, epoch);
  {
    std::lock_guard<std::mutex> lock(live_mu_);
    draining_.clear();
    for (const proto::MemberInfo& m : live) {
      if (state->draining_workers().contains(m.id())) draining_.insert(m.id());
    }
  }
  // A draining worker absent from the membership for kDrainForgetAfter of
  // this term has left: its mark goes, so that a worker started again under
  // its id takes work. Counted per term (a new leader counts from its first
  // tick), and never on one absent tick (a worker whose session expired
  // registers again at once, still drained).
  if (drain_absent_epoch_ != epoch) {
    drain_absent_since_.clear();
    drain_absent_epoch_ = epoch;
  }
  const int64_t now_ms = clock_->UnixMillis();
  for (auto it = drain_absent_since_.begin(); it != drain_absent_since_.end();) {
    const bool marked = state->draining_workers().contains(it->first);
    const bool here = std::any_of(live.begin(), live.end(), [&](const auto& m) { return m.id() == it->first; });
    it = marked && !here ? std::next(it) : drain_absent_since_.erase(it);
  }
  for (const auto& [id, since] : state->draining_workers()) {
    if (std::any_of(live.begin(), live.end(), [&](const auto& m) { return m.id() == id; })) continue;
    auto [absent, added] = drain_absent_since_.try_emplace(id, now_ms);
    if (added || now_ms - absent->second < kDrainForgetAfter.count()) continue;
    proto::DriverRecord cancel;
    cancel.mutable_worker_drain_requested()->set_worker_id(id);
    cancel.mutable_worker_drain_requested()->set_cancel(true);
    cancel.mutable_worker_drain_requested()->set_requested_unix_ms(now_ms);
    if (log_->Append(cancel).ok()) {
      spdlog::info("worker {} left while draining ({} s gone): its drain mark is cleared", id,
                   (now_ms - absent->second) / 1000);
      drain_absent_since_.erase(absent);
    }  // else tried again next tick
  }
  // Moves of reduce partitions: the rebalancer's rounds (each second, so a
  // worker that joins or is drained gets or loses its share by itself).
  auto [usable, draining] = UsableAndDraining();
  moves_->Round(*state, live, usable, draining, epoch, /*plan=*/false);
  for (const auto& [job_id, job] : state->jobs()) {
    std::unique_ptr<JobRun>& run = runs_[job_id];
    if (run == nullptr) run = std::make_unique<JobRun>();
    if (run->busy.load(std::memory_order_acquire)) continue;
    if (job.stopped()) run->retry = Retry{};
    if (job.stopped() || job.in_flight().empty()) continue;
    if (clock_->UnixMillis() < run->retry.not_before_unix_ms &&
        run->retry.batch == job.in_flight(0).batch_id()) {
      continue;
    }
    // It may have finished since the reaping loop above looked at it.
    if (run->thread.joinable()) run->thread.join();
    run->busy.store(true, std::memory_order_release);
    run->thread = std::thread([this, job_id, state, live, epoch, r = run.get()] {
      if (RunBatch(job_id, *state, state->jobs().at(job_id), live, epoch, r->retry)) r->committed.fetch_add(1);
      r->busy.store(false, std::memory_order_release);
    });
  }
  return committed;
}

bool Scheduler::RunBatch(const std::string& job_id, const proto::ClusterState& state, const proto::JobState& stored,
                         const std::vector<proto::MemberInfo>& live, int64_t epoch, Retry& retry) {
  const proto::BatchPlanned& batch = stored.in_flight(0);
  // The spec and state the batch runs with: an update takes effect at a
  // batch boundary (batches planned before it keep the old spec), and a
  // reset of the state empties it for the first batch after the update.
  std::optional<proto::JobState> adjusted;
  if (stored.has_previous_spec() || stored.state_reset_batch() == batch.batch_id()) {
    adjusted = stored;
    *adjusted->mutable_spec() = SpecForBatch(stored, batch.batch_id());
    if (stored.state_reset_batch() == batch.batch_id()) adjusted->clear_reduce_holders();
  }
  const proto::JobState& job = adjusted ? *adjusted : stored;
  if (retry.batch != batch.batch_id()) retry = Retry{.batch = batch.batch_id()};
  std::set<std::string> live_ids;
  for (const proto::MemberInfo& m : live) live_ids.insert(m.id());
  // One task per range, each on a list of workers to try in order.
  std::vector<proto::TaskRequest> tasks;
  std::vector<std::vector<proto::MemberInfo>> candidates;
  for (int i = 0; i < batch.ranges_size(); ++i) {
    const proto::PartitionRange& r = batch.ranges(i);
    proto::TaskRequest t;
    t.set_epoch(epoch);
    t.set_job_id(job_id);
    t.set_batch_id(batch.batch_id());
    t.set_task(i);
    *t.mutable_spec() = job.spec();
    *t.mutable_range() = r;
    for (const proto::SourceDataLost& lost : batch.skipped()) {
      if (lost.source() == r.source() && lost.partition() == r.partition()) *t.add_skipped() = lost;
    }
    t.set_output_partition(OutputPartition(job.spec(), state, r));
    for (const proto::MemberInfo& m : live) *t.add_holders() = m;
    std::vector<proto::MemberInfo> order;
    auto src = state.sources().find(r.source());
    if (src != state.sources().end()) {
      *t.mutable_source() = src->second.spec();
      for (const proto::BlockInfo& b : src->second.partitions(r.partition()).blocks()) {
        if (b.range().start_offset() >= r.start_offset() && b.range().end_offset() <= r.end_offset()) {
          proto::BlockInfo* info = t.add_blocks();
          *info = b;
          info->clear_holders();
          for (std::string& h : data_->LiveHolders(b, live_ids)) info->add_holders(std::move(h));
        }
      }
    }
    // Prefer the holder of the first block (its blocks are local), then the rest.
    if (t.blocks_size() > 0 && t.blocks(0).holders_size() > 0) {
      for (const proto::MemberInfo& m : live) {
        if (m.id() == t.blocks(0).holders(0)) order.push_back(m);
      }
    }
    const size_t next = next_worker_.fetch_add(1);
    for (size_t k = 0; k < live.size(); ++k) {
      const proto::MemberInfo& m = live[(next + k) % live.size()];
      if (order.empty() || m.id() != order.front().id()) order.push_back(m);
    }
    // A draining worker takes no new tasks while another worker can.
    if (!state.draining_workers().empty()) {
      std::vector<proto::MemberInfo> kept;
      for (const proto::MemberInfo& m : order) {
        if (!state.draining_workers().contains(m.id())) kept.push_back(m);
      }
      if (!kept.empty()) order = std::move(kept);
    }
    tasks.push_back(std::move(t));
    candidates.push_back(std::move(order));
  }
  if (engine::IsKeyed(job.spec())) {
    return RunKeyedBatch(job_id, job, batch, live, epoch, std::move(tasks), std::move(candidates), retry);
  }
  const int max_failures = std::max(1, job.spec().max_task_failures());
  if (retry.first_started_unix_ms == 0) retry.first_started_unix_ms = clock_->UnixMillis();
  progress_->Start(job_id, batch.batch_id(), static_cast<int32_t>(tasks.size()),
                   static_cast<int32_t>(retry.done.size()), retry.first_started_unix_ms,
                   1 + retry.failures + retry.transient);
  std::atomic<int> attempts{0};
  // A batch tried again runs only the tasks that have not succeeded yet.
  std::vector<proto::TaskRequest> todo;
  std::vector<std::vector<proto::MemberInfo>> todo_candidates;
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (retry.done.contains(static_cast<int32_t>(i))) continue;
    todo.push_back(tasks[i]);
    todo_candidates.push_back(candidates[i]);
  }
  std::vector<Result<proto::TaskResult>> results =
      RunTasks(job_id, batch.batch_id(), todo, todo_candidates, max_failures, &attempts);
  retry.attempts += attempts.load();
  progress_->End(job_id, batch.batch_id());
  if (!leadership_->Serving() || leadership_->epoch() != epoch) return false;
  Status failed;
  for (size_t k = 0; k < results.size(); ++k) {
    const int32_t task = todo[k].task();
    if (results[k].ok()) {
      retry.done[task] = std::move(*results[k]);
    } else if (failed.ok()) {
      failed = Annotate(results[k].status(), fmt::format("batch {} task {}", batch.batch_id(), task));
    }
  }
  if (!failed.ok()) {
    // Each task has had its max_task_failures attempts already; only a task
    // that found no live worker to take it (ABORTED) is worth another round.
    if (absl::IsAborted(failed)) {
      FailAttempt(job_id, batch, failed, max_failures, retry);
    } else {
      spdlog::error("job {} failed: {}", job_id, failed.ToString());
      StopJob(job_id, "FAILED: " + failed.ToString());
    }
    return false;
  }
  proto::DriverRecord record;
  proto::BatchCommitted* bc = record.mutable_batch_committed();
  bc->set_job_id(job_id);
  bc->set_batch_id(batch.batch_id());
  for (const auto& [task, r] : retry.done) {
    bc->set_input_count(bc->input_count() + r.input());
    bc->set_output_count(bc->output_count() + r.output());
    bc->set_dead_letters(bc->dead_letters() + r.dead_letters());
    bc->set_blocks_fetched(bc->blocks_fetched() + r.blocks_fetched());
    bc->set_blocks_recomputed(bc->blocks_recomputed() + r.blocks_recomputed());
  }
  bc->set_started_unix_ms(retry.first_started_unix_ms);
  bc->set_finished_unix_ms(clock_->UnixMillis());
  bc->set_task_attempts(retry.attempts);
  retry = Retry{};
  return Commit(job_id, batch, std::move(record), live, epoch);
}

bool Scheduler::StartAttempt(const std::vector<proto::MemberInfo>& preferred, size_t k, bool pinned,
                             const std::vector<std::string>& depends_on, bool needs_peers, proto::MemberInfo* worker,
                             rpc::Cancellation* cancel) {
  std::lock_guard<std::mutex> lock(live_mu_);
  if (!serving_ || live_.empty()) return false;
  std::set<std::string> ids;
  for (const proto::MemberInfo& m : live_) {
    if (!needs_peers || !cut_off_.contains(m.id())) ids.insert(m.id());
  }
  // The k-th preferred worker still usable, else any usable one.
  std::vector<const proto::MemberInfo*> usable;
  for (const proto::MemberInfo& m : preferred) {
    if (ids.contains(m.id())) usable.push_back(&m);
  }
  if (usable.empty() && pinned) return false;
  for (const std::string& id : depends_on) {
    if (!ids.contains(id)) return false;
  }
  if (usable.empty()) {
    for (const proto::MemberInfo& m : live_) {
      if (ids.contains(m.id())) usable.push_back(&m);
    }
    if (usable.empty()) return false;
  }
  *worker = *usable[k % usable.size()];
  attempts_.emplace(worker->id(), Attempt{cancel, needs_peers});
  for (const std::string& id : depends_on) {
    if (id != worker->id()) attempts_.emplace(id, Attempt{cancel, needs_peers});
  }
  return true;
}

void Scheduler::EndAttempt(rpc::Cancellation* cancel) {
  std::lock_guard<std::mutex> lock(live_mu_);
  std::erase_if(attempts_, [cancel](const auto& entry) { return entry.second.cancel == cancel; });
}

bool Scheduler::IsUsable(const std::string& worker, bool needs_peers) {
  std::lock_guard<std::mutex> lock(live_mu_);
  if (needs_peers && cut_off_.contains(worker)) return false;
  return std::any_of(live_.begin(), live_.end(), [&](const proto::MemberInfo& m) { return m.id() == worker; });
}

proto::TaskRequest Scheduler::WithoutDeparted(proto::TaskRequest request) {
  std::set<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(live_mu_);
    for (const proto::MemberInfo& m : live_) {
      if (!cut_off_.contains(m.id())) ids.insert(m.id());
    }
  }
  auto* holders = request.mutable_holders();
  holders->erase(std::remove_if(holders->begin(), holders->end(),
                                [&](const proto::MemberInfo& m) { return !ids.contains(m.id()); }),
                 holders->end());
  for (proto::BlockInfo& b : *request.mutable_blocks()) {
    auto* h = b.mutable_holders();
    h->erase(std::remove_if(h->begin(), h->end(), [&](const std::string& id) { return !ids.contains(id); }), h->end());
  }
  return request;
}

void Scheduler::ReportUnreachable(const std::string& reporter, const std::vector<std::string>& unreachable) {
  std::lock_guard<std::mutex> lock(live_mu_);
  reachability_.Report(reporter, unreachable, clock_->UnixMillis());
  RefreshCutOff();
}

std::pair<std::set<std::string>, std::set<std::string>> Scheduler::UsableAndDraining() {
  std::lock_guard<std::mutex> lock(live_mu_);
  std::set<std::string> usable;
  for (const proto::MemberInfo& m : live_) {
    if (!cut_off_.contains(m.id()) && !draining_.contains(m.id())) usable.insert(m.id());
  }
  return {usable, draining_};
}

Result<std::vector<PartitionMove>> Scheduler::RebalanceNow() {
  std::vector<proto::MemberInfo> live;
  {
    std::lock_guard<std::mutex> lock(live_mu_);
    if (!serving_) return absl::FailedPreconditionError("this driver does not lead");
    live = live_;
  }
  const int64_t epoch = leadership_->epoch();
  auto [usable, draining] = UsableAndDraining();
  return moves_->Round(*log_->View(), live, usable, draining, epoch, /*plan=*/true);
}

std::set<std::string> Scheduler::CutOff() {
  std::lock_guard<std::mutex> lock(live_mu_);
  return cut_off_;
}

void Scheduler::RefreshCutOff() {
  std::set<std::string> ids;
  for (const proto::MemberInfo& m : live_) ids.insert(m.id());
  std::set<std::string> now = reachability_.CutOff(ids, clock_->UnixMillis());
  for (const std::string& w : now) {
    if (cut_off_.contains(w)) continue;
    spdlog::warn("worker {} cannot be reached by the other workers (its tasks and theirs failed to reach it): no "
                 "keyed work for it, its reduce partitions move to their replicas",
                 w);
    for (auto [it, end] = attempts_.equal_range(w); it != end; ++it) {
      if (it->second.needs_peers) it->second.cancel->Cancel();
    }
  }
  for (const std::string& w : cut_off_) {
    if (!now.contains(w) && ids.contains(w)) {
      spdlog::info("worker {}: no failure to reach it for {} s; it gets keyed work again", w,
                   WorkerReachability::kBrokenForMs / 1000);
    }
  }
  cut_off_ = std::move(now);
}

std::vector<Result<proto::TaskResult>> Scheduler::RunTasks(const std::string& job_id, int64_t batch_id,
                                                          const std::vector<proto::TaskRequest>& tasks,
                                                          const std::vector<std::vector<proto::MemberInfo>>& candidates,
                                                          int max_failures, std::atomic<int>* attempts) {
  std::vector<std::future<Result<proto::TaskResult>>> running;
  for (size_t i = 0; i < tasks.size(); ++i) {
    running.push_back(std::async(std::launch::async, [&, i]() -> Result<proto::TaskResult> {
      proto::TaskRequest request = tasks[i];
      // A reduce task runs only where its shuffle input and state are; a
      // map task of a keyed job needs its reduce owners to take its output.
      const bool pinned = request.stage() == proto::TASK_STAGE_REDUCE;
      // Keyed work moves data between workers: not for one the others cannot reach.
      const bool needs_peers = pinned || !request.reduce_workers().empty();
      std::vector<std::string> depends_on;
      for (const proto::MemberInfo& owner : request.reduce_workers()) depends_on.push_back(owner.id());
      // A reduce task copies its state to the replica before it answers.
      if (!request.replica().id().empty()) depends_on.push_back(request.replica().id());
      Status last = absl::UnavailableError("no attempt yet");
      for (int failures = 0, k = 0; failures < max_failures; ++k) {
        if (!leadership_->Serving()) return absl::UnavailableError("no longer the leader");
        proto::MemberInfo w;
        rpc::Cancellation cancel;
        if (!StartAttempt(candidates[i], static_cast<size_t>(k), pinned, depends_on, needs_peers, &w, &cancel)) {
          // ABORTED: the batch is tried again once the membership settles.
          return absl::AbortedError(fmt::format("no live worker can take task {} of batch {} ({}); last: {}",
                                                request.task(), batch_id,
                                                depends_on.empty() ? "its workers left" : "its workers, reduce owners or state replica left",
                                                last.ToString()));
        }
        attempts->fetch_add(1);
        const auto sent = std::chrono::steady_clock::now();
        proto::TaskResult result;
        request = WithoutDeparted(std::move(request));
        last = workers_->RunTask(w.rpc_address(), request, &result, &cancel);
        EndAttempt(&cancel);
        const int64_t took_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - sent).count();
        if (last.ok()) {
          spdlog::debug("job {} batch {} task {} on worker {}: {} ms, {} in, {} blocks fetched, {} recomputed",
                        job_id, batch_id, request.task(), w.id(), took_ms, result.input(), result.blocks_fetched(),
                        result.blocks_recomputed());
          progress_->TaskDone(job_id, batch_id);
          return result;
        }
        if (cancel.cancelled()) {
          // The worker, or one the task needs, left the membership (or this
          // driver stopped serving): not the task's fault. The next attempt
          // goes to a live worker and fetches no block from departed ones;
          // a task whose reduce owner left cannot run until the batch is
          // placed again.
          if (!IsUsable(w.id(), needs_peers)) {
            spdlog::info("job {} batch {} task {}: worker {} left or was cut off after {} ms; running it elsewhere",
                         job_id, batch_id, request.task(), w.id(), took_ms);
            continue;
          }
          return absl::AbortedError(fmt::format(
              "a worker that task {} of batch {} needs left the cluster or cannot be reached by the others",
              request.task(), batch_id));
        }
        // A task that could not reach other workers names them.
        if (std::vector<std::string> peers = rpc::UnreachablePeers(last); !peers.empty()) {
          ReportUnreachable(w.id(), peers);
        }
        ++failures;
        spdlog::warn("job {} batch {} {} task {} on worker {} failed after {} ms (attempt {} of {}): {}", job_id,
                     batch_id, request.stage() == proto::TASK_STAGE_REDUCE ? "reduce" : "map", request.task(), w.id(),
                     took_ms, failures, max_failures, last.ToString());
      }
      return last;
    }));
  }
  std::vector<Result<proto::TaskResult>> results;
  for (auto& f : running) results.push_back(f.get());
  return results;
}

bool Scheduler::Commit(const std::string& job_id, const proto::BatchPlanned& batch, proto::DriverRecord record,
                       const std::vector<proto::MemberInfo>& live, int64_t epoch) {
  proto::BatchCommitted* bc = record.mutable_batch_committed();
  for (const proto::PartitionRange& r : batch.ranges()) {
    proto::SourceOffset* o = bc->add_next_offsets();
    o->set_source(r.source());
    o->set_partition(r.partition());
    o->set_offset(r.end_offset());
  }
  const proto::BatchCommitted done = *bc;
  if (!log_->Append(std::move(record)).ok()) return false;
  if (probe_ != nullptr) probe_->BatchCommitted(batch, done, epoch);
  spdlog::info("job {}: batch {} committed ({} in, {} out)", job_id, done.batch_id(), done.input_count(),
               done.output_count());
  if (batch.final_flush()) {
    // ClusterState stopped the job as it applied the commit.
    spdlog::info("job {} drained and stopped at batch {}, its open windows emitted", job_id, batch.batch_id());
  }
  // The blocks ClusterState folded away (every running reader is past
  // them) may go from the workers.
  const std::shared_ptr<const proto::ClusterState> after_view = log_->View();
  const proto::ClusterState& after = *after_view;
  CommitKafkaOffsets(job_id, after, done);
  proto::DropBlocksRequest drop;
  drop.set_epoch(epoch);
  for (const proto::SourceOffset& o : done.next_offsets()) {
    Result<int64_t> retained = RetainedFrom(after, o.source(), o.partition());
    if (!retained.ok()) continue;
    proto::SourceOffset* before = drop.add_before();
    *before = o;
    before->set_offset(*retained);
  }
  if (drop.before().empty()) return true;
  for (const proto::MemberInfo& m : live) {
    proto::DropBlocksResponse ignored;
    IgnoreError(workers_->DropBlocks(m.rpc_address(), drop, &ignored),
                "a worker that misses a drop keeps blocks until its store evicts them");
  }
  return true;
}


void Scheduler::FailAttempt(const std::string& job_id, const proto::BatchPlanned& batch, const Status& failed,
                            int max_failures, Retry& retry) {
  // The batch is tried again (a keyed one from its map tasks, on the
  // placement of the moment); errors that a re-run cannot mend stop the job
  // after `max_failures` attempts, transient ones after kMaxTransientAttempts.
  if (Transient(failed)) {
    ++retry.transient;
  } else {
    ++retry.failures;
  }
  retry.not_before_unix_ms = clock_->UnixMillis() + 500;
  spdlog::warn("job {} batch {}: {} (attempt of the batch failed; {} of {} failures, {} of {} transient ones)",
               job_id, batch.batch_id(), failed.ToString(), retry.failures, max_failures, retry.transient,
               kMaxTransientAttempts);
  if (retry.failures >= max_failures || retry.transient >= kMaxTransientAttempts) {
    spdlog::error("job {} failed: {}", job_id, failed.ToString());
    StopJob(job_id, "FAILED: " + Annotate(failed, fmt::format("batch {}", batch.batch_id())).ToString());
  }
}

void Scheduler::TellDeleted(const proto::ClusterState& state, const std::vector<proto::MemberInfo>& live,
                            int64_t epoch) {
  // A stopped job keeps its state (a restart or a savepoint needs it); a
  // deleted one's goes, and so do the layouts a rescale left behind. Each live worker is told once per leader term (a
  // worker that was away, or a new leader, tells again: dropping is
  // idempotent). A name in use again is not dropped: its batches number on,
  // so its first reduce starts from empty state anyway.
  if (told_epoch_ != epoch) {
    deleted_told_.clear();
    layouts_told_.clear();
    told_epoch_ = epoch;
  }
  // A name in use again is forgotten: if it is deleted again, its new
  // job's state must be dropped too.
  for (auto& [worker, told] : deleted_told_) {
    std::erase_if(told, [&](const std::string& id) { return state.jobs().contains(id); });
  }
  // And a layout told of a job that is gone, or of an earlier job of its
  // name (a new job counts its layouts from 0 again).
  for (auto& [worker, told] : layouts_told_) {
    std::erase_if(told, [&](const auto& e) {
      auto it = state.jobs().find(e.first);
      return it == state.jobs().end() || it->second.state_layout() < e.second;
    });
  }
  for (const proto::MemberInfo& m : live) {
    std::set<std::string>& told = deleted_told_[m.id()];
    std::map<std::string, int64_t>& layouts_told = layouts_told_[m.id()];
    proto::DropBlocksRequest drop;
    drop.set_epoch(epoch);
    for (const auto& [id, last_batch] : state.deleted_jobs()) {
      if (state.jobs().contains(id) || told.contains(id)) continue;
      if (holds_ != nullptr && holds_->Held(id)) continue;
      drop.add_stopped_jobs(id);
    }
    // A rescaled job's older layouts: the rescale's commit drops them from
    // the workers live then (rescale.h); one away then, or a leader that
    // died before telling, still holds them.
    std::map<std::string, int64_t> layouts;
    for (const auto& [id, job] : state.jobs()) {
      if (job.state_layout() == 0) continue;
      auto it = layouts_told.find(id);
      if (it != layouts_told.end() && it->second == job.state_layout()) continue;
      for (int64_t l = it != layouts_told.end() ? it->second : 0; l < job.state_layout(); ++l) {
        drop.add_dropped_state(engine::StateNamespace(id, l));
      }
      layouts[id] = job.state_layout();
    }
    if (drop.stopped_jobs().empty() && drop.dropped_state().empty()) continue;
    proto::DropBlocksResponse ignored;
    if (workers_->DropBlocks(m.rpc_address(), drop, &ignored).ok()) {
      told.insert(drop.stopped_jobs().begin(), drop.stopped_jobs().end());
      for (const auto& [id, l] : layouts) layouts_told[id] = l;
    }
  }
}

void Scheduler::StopJob(const std::string& job_id, const std::string& reason) {
  // Only for errors: the job is FAILED, and sluicectl restart resumes it.
  proto::DriverRecord stop;
  stop.mutable_job_stopped()->set_job_id(job_id);
  stop.mutable_job_stopped()->set_reason(reason);
  stop.mutable_job_stopped()->set_failed(true);
  IgnoreError(log_->Append(stop).status(), "a new leader finds the job running and tries again");
}

void Scheduler::CommitKafkaOffsets(const std::string& job_id, const proto::ClusterState& state,
                                   const proto::BatchCommitted& done) {
  std::map<std::string, std::map<int32_t, int64_t>> by_source;
  for (const proto::SourceOffset& o : done.next_offsets()) {
    auto src = state.sources().find(o.source());
    if (src == state.sources().end() || !source::CommitsPositions(src->second.spec())) continue;
    by_source[o.source()][o.partition()] = o.offset();
  }
  for (const auto& [name, offsets] : by_source) {
    QueueCommit({job_id, name}, state.sources().at(name).spec(), offsets, std::chrono::milliseconds(0));
  }
}

void Scheduler::QueueCommit(const JobSource& key, const proto::SourceSpec& spec,
                            const std::map<int32_t, int64_t>& offsets, std::chrono::milliseconds delay) {
  std::lock_guard<std::mutex> lock(commit_mu_);
  PendingCommit& p = pending_[key];
  p.spec = spec;
  for (const auto& [partition, offset] : offsets) {
    int64_t& o = p.offsets[partition];
    o = std::max(o, offset);
  }
  if (p.posted) return;
  p.posted = true;
  commits_.PostAfter(delay, [this, key] { FlushCommit(key); });
}

void Scheduler::FlushCommit(const JobSource& key) {
  PendingCommit p;
  {
    std::lock_guard<std::mutex> lock(commit_mu_);
    p = std::move(pending_[key]);
    pending_.erase(key);
  }
  if (p.offsets.empty() || !leadership_->Serving()) return;
  const std::string& job_id = key.first;
  std::unique_ptr<source::SourceConnector>& c = committers_[key];
  if (!c) {
    Result<std::unique_ptr<source::SourceConnector>> created = source::SourceConnector::Create(p.spec, clock_);
    if (!created.ok()) {
      spdlog::warn("job {}: {}", job_id, created.status().ToString());  // a setting: retrying cannot help
      committers_.erase(key);
      return;
    }
    c = std::move(*created);
  }
  if (Status st = c->CommitPositions("sluice-" + job_id, p.offsets); absl::IsInvalidArgument(st)) {
    spdlog::warn("job {}: {}", job_id, st.ToString());  // a setting: retrying cannot help
    committers_.erase(key);
  } else if (!st.ok()) {
    spdlog::warn("job {}: {} (trying again in 1 s)", job_id, st.ToString());
    QueueCommit(key, p.spec, p.offsets, std::chrono::seconds(1));
  }
}

}  // namespace sluice::driver
