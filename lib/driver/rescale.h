// Rescaling a keyed job's state: when a batch's spec has another
// reduce_partitions than the state its holders keep, the state is re-split
// into a new layout before the batch's reduce tasks run (docs/state.md
// "Rescaling").
//
// Module sluice::driver owns it; Scheduler::RunKeyedBatch calls it. The
// steps for batch N of a stateful job, holders at (layout L, R partitions),
// spec at R' != R:
//
//   PlanStateLayout     -> layout L+1, re-split needed (if any state exists)
//   ResplitState        -> each new partition p' on the least loaded usable
//                          worker: WorkerService.ResplitState gathers from
//                          the holders of L the entries as of N-1 with
//                          StatePartitionOf(key, R') == p' and installs them
//                          as (L+1, p') at N-1; the batch runs with those
//                          workers as holders
//   BatchCommitted(N)   -> names R' and L+1 (ClusterState records them)
//   DropStateLayout     -> the live workers drop L (best effort)
//
// Nothing of L changes before the commit, so a failed or repeated re-split
// (an attempt that failed, a new leader) is simply done again; each install
// replaces what an earlier attempt left.
//
// Pure functions and calls through WorkerProxy; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lib/common/status.h"
#include "proto/common.pb.h"
#include "proto/driver_log.pb.h"

namespace sluice::driver {

class WorkerProxy;

// The spec's reduce_partitions (its default applied); 0 without key_by.
int32_t ReducePartitionsOf(const proto::JobSpec& spec);

// How many reduce partitions the job's reduce_holders are of.
int32_t HoldersPartitions(const proto::JobState& job);

struct StateLayoutPlan {
  int64_t layout = 0;           // the layout the batch's reduce tasks use
  bool resplit = false;         // the state moves from old_layout first
  int64_t old_layout = 0;
  int32_t old_partitions = 0;
};

// For a batch whose spec has `partitions` reduce partitions. A stateless
// stage keeps its layout (it stores nothing); a stateful one with another
// count gets a new layout, re-split into if any partition holds state.
StateLayoutPlan PlanStateLayout(const proto::JobState& job, int32_t partitions, bool stateful);

// Re-splits `job`'s state as of `base_batch` into plan.layout with
// `partitions` partitions, each on one of `usable` (live, reachable), and
// returns the new layout's holders (one worker per partition). UNAVAILABLE
// if some old partition's state has no usable holder, or a worker failed.
[[nodiscard]] Result<std::vector<proto::ReduceHolders>> ResplitState(
    WorkerProxy* workers, const std::string& job_id, const proto::JobState& job, int64_t base_batch,
    const StateLayoutPlan& plan, int32_t partitions, const std::vector<proto::MemberInfo>& usable, int64_t epoch);

// Tells the `live` workers to drop `layout` of the job's state (the first
// batch of a newer one committed). A worker that misses it keeps the state
// until the job is deleted.
void DropStateLayout(WorkerProxy* workers, const std::string& job_id, int64_t layout,
                     const std::vector<proto::MemberInfo>& live, int64_t epoch);

}  // namespace sluice::driver
