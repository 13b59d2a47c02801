// Scheduler's keyed batches (scheduler.h): where each reduce partition of a
// batch runs (placement, replicas, moves), its reduce tasks, the keyed
// batch's two stages, and a rescale's re-split before them. The rest of
// the scheduler is in scheduler.cc.
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
#include "lib/driver/scheduler.h"
#include "spdlog/spdlog.h"

namespace sluice::driver {

std::optional<Scheduler::ReducePlacement> Scheduler::PlaceReducePartitions(
    const std::string& job_id, const proto::JobState& job, const proto::BatchPlanned& batch,
    const std::vector<proto::MemberInfo>& live, const std::set<std::string>& cut_off, int32_t partitions,
    bool stateful, Retry& retry, bool fresh_layout) {
  // A partition stays where its state is — the live holders of the newest
  // committed batch, owner first; a partition without one goes to the live
  // worker with the fewest partitions (docs/state.md "Placement"). A worker
  // the others cannot reach counts as gone. A move the rebalancer made READY
  // (partition_moves.h) changes that: its warmed target becomes the replica,
  // and once the WAL names it a holder, the owner.
  std::map<std::string, const proto::MemberInfo*> by_id;
  for (const proto::MemberInfo& m : live) {
    if (!cut_off.contains(m.id())) by_id[m.id()] = &m;
  }
  const std::set<std::string> draining = UsableAndDraining().second;
  // A layout re-split for this batch has one holder per partition and no
  // move of its own yet: each partition gets its replica now (the old
  // layout, the other copy until now, is dropped once this batch commits).
  const std::map<int32_t, PartitionMove> ready =
      fresh_layout ? std::map<int32_t, PartitionMove>() : moves_->Ready(job_id);
  ReducePlacement placement;
  placement.holders.resize(partitions);
  std::vector<int> recorded(partitions, 0);
  for (const proto::ReduceHolders& h : job.reduce_holders()) {
    if (h.partition() < 0 || h.partition() >= partitions) continue;
    recorded[h.partition()] = h.workers_size();
    for (const std::string& w : h.workers()) {
      if (by_id.contains(w)) placement.holders[h.partition()].push_back(by_id[w]);
    }
  }
  std::map<std::string, int> load;
  for (const proto::MemberInfo& m : live) load[m.id()] = 0;
  // New work goes to a worker being drained only when no other can take it.
  auto least_loaded = [&](const std::string& except) -> const proto::MemberInfo* {
    const proto::MemberInfo* best = nullptr;
    for (bool allow_draining : {false, true}) {
      for (const proto::MemberInfo& m : live) {
        if (m.id() == except || !by_id.contains(m.id())) continue;
        if (!allow_draining && draining.contains(m.id())) continue;
        if (best == nullptr || load[m.id()] < load[best->id()]) best = &m;
      }
      if (best != nullptr) break;
    }
    return best;
  };
  // The READY move of partition p whose target may take it, if any.
  auto move_of = [&](int32_t p) -> std::optional<std::pair<PartitionMove, const proto::MemberInfo*>> {
    auto it = ready.find(p);
    if (it == ready.end() || !by_id.contains(it->second.to) || draining.contains(it->second.to)) return std::nullopt;
    return std::make_pair(it->second, by_id.at(it->second.to));
  };
  auto holds = [&](int32_t p, const proto::MemberInfo* m) {
    const auto& h = placement.holders[p];
    return std::find(h.begin(), h.end(), m) != h.end();
  };
  placement.owner.resize(partitions);
  placement.replica.assign(partitions, nullptr);
  for (int32_t p = 0; p < partitions; ++p) {
    const std::vector<const proto::MemberInfo*>& h = placement.holders[p];
    if (stateful && recorded[p] > 0 && h.empty()) {
      if (!retry.waiting) {
        spdlog::warn("job {}: no live worker that the others can reach holds the state of reduce partition {}; "
                     "batch {} waits for one",
                     job_id, p, batch.batch_id());
      }
      retry.waiting = true;
      retry.not_before_unix_ms = clock_->UnixMillis() + 500;
      return std::nullopt;
    }
    placement.owner[p] = h.empty() ? least_loaded("") : h[0];
    if (auto mv = move_of(p); mv && mv->first.role == MoveRole::kOwner && (!stateful || holds(p, mv->second))) {
      // Stateless: nothing to copy. Stateful: the target holds the state as
      // of the newest batch (it was the replica of it).
      placement.owner[p] = mv->second;
    }
    if (placement.owner[p] == nullptr) {  // every live worker is cut off from the others
      retry.not_before_unix_ms = clock_->UnixMillis() + 500;
      return std::nullopt;
    }
    ++load[placement.owner[p]->id()];
  }
  if (stateful) {
    for (int32_t p = 0; p < partitions; ++p) {
      const proto::MemberInfo* owner = placement.owner[p];
      if (auto mv = move_of(p); mv && mv->second != owner && !holds(p, mv->second)) {
        // Step b of a move: the warmed target is the replica of this batch;
        // the owner sends it only the changes since its copy.
        placement.replica[p] = mv->second;
      } else {
        for (const proto::MemberInfo* m : placement.holders[p]) {
          if (m->id() != owner->id()) {
            placement.replica[p] = m;
            break;
          }
        }
      }
      // A partition that has state but lost its replica runs with its owner
      // alone until the rebalancer has warmed a new one: a batch never waits
      // on a whole copy. A new partition (no state yet) gets one at once.
      if (placement.replica[p] == nullptr && (recorded[p] == 0 || fresh_layout)) {
        placement.replica[p] = least_loaded(owner->id());
      }
      if (placement.replica[p] != nullptr) ++load[placement.replica[p]->id()];
    }
  }
  retry.waiting = false;
  return placement;
}

std::vector<proto::TaskRequest> Scheduler::ReduceTasks(const std::string& job_id, const proto::JobState& job,
                                                       const proto::BatchPlanned& batch, int64_t epoch,
                                                       int32_t map_tasks, bool stateful,
                                                       const ReducePlacement& placement) {
  std::vector<proto::TaskRequest> reduces;
  for (int32_t p = 0; p < static_cast<int32_t>(placement.owner.size()); ++p) {
    proto::TaskRequest t;
    t.set_epoch(epoch);
    t.set_job_id(job_id);
    t.set_batch_id(batch.batch_id());
    t.set_task(p);
    t.set_output_partition(p);
    *t.mutable_spec() = job.spec();
    t.set_stage(proto::TASK_STAGE_REDUCE);
    t.set_map_tasks(map_tasks);
    t.set_reduce_partition(p);
    t.set_batch_time_unix_ms(batch.batch_time_unix_ms());
    t.set_watermark_unix_ms(batch.watermark_unix_ms());
    t.set_final_flush(batch.final_flush());
    if (stateful) {
      for (const proto::MemberInfo* m : placement.holders[p]) *t.add_state_holders() = *m;
      if (placement.replica[p] != nullptr) *t.mutable_replica() = *placement.replica[p];
    }
    reduces.push_back(std::move(t));
  }
  return reduces;
}

bool Scheduler::RunKeyedBatch(const std::string& job_id, const proto::JobState& job, const proto::BatchPlanned& batch,
                              const std::vector<proto::MemberInfo>& live, int64_t epoch,
                              std::vector<proto::TaskRequest> maps,
                              std::vector<std::vector<proto::MemberInfo>> candidates, Retry& retry) {
  Result<std::optional<engine::KeyedStage>> stage = engine::KeyedStageOf(job.spec());
  if (!stage.ok() || !*stage) {
    // Refused at submit; a spec from an older release that this one cannot run.
    spdlog::error("job {} failed: {}", job_id, stage.ok() ? std::string("no keyed stage") : stage.status().ToString());
    StopJob(job_id, "FAILED: " + (stage.ok() ? std::string("no keyed stage") : stage.status().ToString()));
    return false;
  }
  const bool stateful = (*stage)->stateful();
  // 0. A rescale: the state re-split into the batch's partition count.
  int64_t layout = 0;
  std::optional<proto::JobState> resplit;
  if (!PrepareStateLayout(job_id, job, batch, live, epoch, (*stage)->reduce_partitions, stateful, retry, &layout,
                          &resplit)) {
    return false;
  }
  // 1. Placement of the reduce partitions.
  std::optional<ReducePlacement> placement = PlaceReducePartitions(
      job_id, resplit ? *resplit : job, batch, live, CutOff(), (*stage)->reduce_partitions, stateful, retry,
      /*fresh_layout=*/resplit.has_value());
  if (!placement) return false;

  // 2. Map tasks: one per range, pushing their shuffle output to the owners.
  const int64_t started = clock_->UnixMillis();
  if (retry.first_started_unix_ms == 0) retry.first_started_unix_ms = started;
  progress_->Start(job_id, batch.batch_id(), static_cast<int32_t>(maps.size() + placement->owner.size()), 0,
                   retry.first_started_unix_ms, 1 + retry.failures + retry.transient);
  std::atomic<int> attempts{0};
  const int max_failures = std::max(1, job.spec().max_task_failures());
  for (proto::TaskRequest& t : maps) {
    t.set_stage(proto::TASK_STAGE_MAP);
    t.set_batch_time_unix_ms(batch.batch_time_unix_ms());
    t.set_watermark_unix_ms(batch.watermark_unix_ms());
    for (const proto::MemberInfo* o : placement->owner) *t.add_reduce_workers() = *o;
  }
  std::vector<Result<proto::TaskResult>> map_results = RunTasks(job_id, batch.batch_id(), maps, candidates,
                                                                max_failures, &attempts);

  // 3. Reduce tasks: one per partition, on its owner only (its shuffle
  // input and state are there).
  std::vector<Result<proto::TaskResult>> reduce_results;
  if (std::all_of(map_results.begin(), map_results.end(), [](const auto& r) { return r.ok(); }) &&
      (stateful || !maps.empty())) {
    std::vector<proto::TaskRequest> reduces =
        ReduceTasks(job_id, job, batch, epoch, static_cast<int32_t>(maps.size()), stateful, *placement);
    for (proto::TaskRequest& t : reduces) t.set_state_layout(layout);
    std::vector<std::vector<proto::MemberInfo>> where;
    for (const proto::MemberInfo* owner : placement->owner) where.push_back({*owner});
    reduce_results = RunTasks(job_id, batch.batch_id(), reduces, where, 1, &attempts);
  }
  progress_->End(job_id, batch.batch_id());
  if (!leadership_->Serving() || leadership_->epoch() != epoch) return false;
  Status failed;
  for (const auto* results : {&map_results, &reduce_results}) {
    for (const Result<proto::TaskResult>& r : *results) {
      if (!r.ok() && failed.ok()) failed = r.status();
    }
  }
  if (!failed.ok()) {
    FailAttempt(job_id, batch, failed, max_failures, retry);
    return false;
  }

  // 4. Commit, naming where each partition's state now is.
  proto::DriverRecord record;
  proto::BatchCommitted* bc = record.mutable_batch_committed();
  bc->set_job_id(job_id);
  bc->set_batch_id(batch.batch_id());
  for (const Result<proto::TaskResult>& r : map_results) {
    bc->set_input_count(bc->input_count() + r->input());
    bc->set_dead_letters(bc->dead_letters() + r->dead_letters());
    bc->set_late_events(bc->late_events() + r->late_events());
    bc->set_shuffle_bytes(bc->shuffle_bytes() + r->shuffle_bytes());
    bc->set_blocks_fetched(bc->blocks_fetched() + r->blocks_fetched());
    bc->set_blocks_recomputed(bc->blocks_recomputed() + r->blocks_recomputed());
    bc->set_max_event_time_unix_ms(std::max(bc->max_event_time_unix_ms(), r->max_event_time_unix_ms()));
  }
  for (size_t p = 0; p < reduce_results.size(); ++p) {
    const proto::TaskResult& r = *reduce_results[p];
    bc->set_output_count(bc->output_count() + r.output());
    bc->set_state_keys(bc->state_keys() + r.state_keys());
    bc->set_state_bytes(bc->state_bytes() + r.state_bytes());
    proto::ReduceHolders* h = bc->add_reduce_holders();
    h->set_partition(static_cast<int32_t>(p));
    if (stateful) {
      *h->mutable_workers() = r.state_holders();
    } else {
      h->add_workers(placement->owner[p]->id());  // where it ran: the next batch goes there too
    }
  }
  bc->set_reduce_partitions((*stage)->reduce_partitions);
  bc->set_state_layout(layout);
  bc->set_started_unix_ms(started);
  bc->set_finished_unix_ms(clock_->UnixMillis());
  bc->set_task_attempts(attempts.load());
  retry = Retry{};
  if (!Commit(job_id, batch, std::move(record), live, epoch)) return false;
  if (layout != job.state_layout()) DropStateLayout(workers_, job_id, job.state_layout(), live, epoch);
  return true;
}

bool Scheduler::PrepareStateLayout(const std::string& job_id, const proto::JobState& job,
                                   const proto::BatchPlanned& batch, const std::vector<proto::MemberInfo>& live,
                                   int64_t epoch, int32_t partitions, bool stateful, Retry& retry, int64_t* layout,
                                   std::optional<proto::JobState>* resplit) {
  const StateLayoutPlan plan = PlanStateLayout(job, partitions, stateful);
  *layout = plan.layout;
  if (plan.layout != plan.old_layout && !plan.resplit) {
    // Nothing to move (no partition has state yet, or a reset): the new
    // layout starts empty.
    resplit->emplace(job);
    (*resplit)->clear_reduce_holders();
    return true;
  }
  if (!plan.resplit) return true;
  const std::set<std::string> cut_off = CutOff();
  // New partitions go to workers being drained only when no other can take them.
  const std::set<std::string> draining = UsableAndDraining().second;
  std::vector<proto::MemberInfo> usable;
  for (const proto::MemberInfo& m : live) {
    if (!cut_off.contains(m.id()) && !draining.contains(m.id())) usable.push_back(m);
  }
  if (usable.empty()) {
    for (const proto::MemberInfo& m : live) {
      if (!cut_off.contains(m.id())) usable.push_back(m);
    }
  }
  const int64_t started = clock_->UnixMillis();
  Result<std::vector<proto::ReduceHolders>> holders = ResplitState(
      workers_, job_id, job, batch.batch_id() - 1, plan, partitions, usable, epoch);
  if (!leadership_->Serving() || leadership_->epoch() != epoch) return false;
  if (!holders.ok()) {
    FailAttempt(job_id, batch,
                Annotate(holders.status(), fmt::format("re-splitting the state from {} into {} reduce partitions",
                                                       plan.old_partitions, partitions)),
                std::max(1, job.spec().max_task_failures()), retry);
    return false;
  }
  spdlog::info("job {} batch {}: state re-split from {} reduce partitions (layout {}) into {} (layout {}) in {} ms",
               job_id, batch.batch_id(), plan.old_partitions, plan.old_layout, partitions, plan.layout,
               clock_->UnixMillis() - started);
  resplit->emplace(job);
  (*resplit)->clear_reduce_holders();
  for (proto::ReduceHolders& h : *holders) *(*resplit)->add_reduce_holders() = std::move(h);
  return true;
}

}  // namespace sluice::driver
