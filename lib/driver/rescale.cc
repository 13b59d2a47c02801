#include "lib/driver/rescale.h"

#include <algorithm>
#include <future>
#include <map>

#include "lib/driver/worker_proxy.h"
#include "lib/engine/keyed.h"
#include "lib/engine/state_namespace.h"
#include "spdlog/spdlog.h"

namespace sluice::driver {

int32_t HoldersPartitions(const proto::JobState& job) {
  if (job.holders_partitions() > 0) return job.holders_partitions();
  // Recorded by a build before rescaling, which could not change the count:
  // the spec's (the one before an update in progress, which ran the
  // committed batches).
  return ReducePartitionsOf(job.has_previous_spec() ? job.previous_spec() : job.spec());
}

StateLayoutPlan PlanStateLayout(const proto::JobState& job, int32_t partitions, bool stateful) {
  StateLayoutPlan plan;
  plan.layout = job.state_layout();
  plan.old_layout = job.state_layout();
  plan.old_partitions = HoldersPartitions(job);
  if (!stateful || plan.old_partitions == partitions) return plan;
  // A new namespace even when nothing moves (a reset with a new count): the
  // old layout's partitions past the new count would otherwise linger there.
  plan.layout = job.state_layout() + 1;
  for (const proto::ReduceHolders& h : job.reduce_holders()) plan.resplit = plan.resplit || !h.workers().empty();
  return plan;
}

Result<std::vector<proto::ReduceHolders>> ResplitState(WorkerProxy* workers, const std::string& job_id,
                                                       const proto::JobState& job, int64_t base_batch,
                                                       const StateLayoutPlan& plan, int32_t partitions,
                                                       const std::vector<proto::MemberInfo>& usable, int64_t epoch) {
  if (usable.empty()) return absl::UnavailableError("no live worker to re-split the state on");
  std::map<std::string, const proto::MemberInfo*> by_id;
  for (const proto::MemberInfo& m : usable) by_id[m.id()] = &m;
  proto::ResplitStateRequest base;
  base.set_epoch(epoch);
  base.set_job_id(job_id);
  base.set_base_batch(base_batch);
  base.set_old_layout(plan.old_layout);
  base.set_old_partitions(plan.old_partitions);
  base.set_new_layout(plan.layout);
  base.set_new_partitions(partitions);
  // Each old partition's usable holders, owner first; the new partitions go
  // first to the workers owning the fewest old ones (the least loaded).
  std::map<std::string, int> load;
  for (const proto::MemberInfo& m : usable) load[m.id()] = 0;
  for (const proto::ReduceHolders& h : job.reduce_holders()) {
    if (h.workers().empty()) continue;  // no state yet
    if (h.partition() < 0 || h.partition() >= plan.old_partitions) continue;
    proto::ResplitHolders* old = base.add_old_holders();
    old->set_partition(h.partition());
    for (const std::string& w : h.workers()) {
      if (by_id.contains(w)) *old->add_workers() = *by_id[w];
    }
    if (old->workers().empty()) {
      return absl::UnavailableError(fmt::format(
          "no live worker that the others can reach holds reduce partition {} (layout {}) as of batch {}",
          h.partition(), plan.old_layout, base_batch));
    }
    ++load[old->workers(0).id()];
  }
  std::vector<const proto::MemberInfo*> owners(partitions);
  for (int32_t p = 0; p < partitions; ++p) {
    const proto::MemberInfo* best = nullptr;
    for (const proto::MemberInfo& m : usable) {
      if (best == nullptr || load[m.id()] < load[best->id()]) best = &m;
    }
    owners[p] = best;
    ++load[best->id()];
  }
  std::vector<std::future<Status>> calls;
  for (int32_t p = 0; p < partitions; ++p) {
    proto::ResplitStateRequest request = base;
    request.set_new_partition(p);
    calls.push_back(std::async(std::launch::async, [workers, request = std::move(request), owner = owners[p]] {
      proto::ResplitStateResponse response;
      return Annotate(workers->ResplitState(owner->rpc_address(), request, &response),
                      fmt::format("re-splitting into partition {} on worker {}", request.new_partition(),
                                  owner->id()));
    }));
  }
  Status failed;
  for (std::future<Status>& c : calls) {
    Status st = c.get();
    if (failed.ok() && !st.ok()) failed = st;
  }
  if (!failed.ok()) return failed;
  std::vector<proto::ReduceHolders> holders(partitions);
  for (int32_t p = 0; p < partitions; ++p) {
    holders[p].set_partition(p);
    holders[p].add_workers(owners[p]->id());
  }
  return holders;
}

void DropStateLayout(WorkerProxy* workers, const std::string& job_id, int64_t layout,
                     const std::vector<proto::MemberInfo>& live, int64_t epoch) {
  proto::DropBlocksRequest drop;
  drop.set_epoch(epoch);
  drop.add_dropped_state(engine::StateNamespace(job_id, layout));
  for (const proto::MemberInfo& m : live) {
    proto::DropBlocksResponse ignored;
    IgnoreError(workers->DropBlocks(m.rpc_address(), drop, &ignored),
                "a worker that misses it keeps the old layout until the job is deleted");
  }
}

}  // namespace sluice::driver
