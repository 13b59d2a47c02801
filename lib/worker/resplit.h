// Resplitter: a worker's part in rescaling a keyed job's state
// (docs/state.md "Rescaling"; the leader's part is lib/driver/rescale.h).
//
// Module sluice::worker owns it, over the worker's ReduceState:
//   - ResplitState (new owner of partition p' of layout L', R' partitions):
//     from one holder of each old partition, FetchState with the split
//     filter (only entries as of the base batch with
//     StatePartitionOf(key, R') == p'), merged and installed as
//     (StateNamespace(job, L'), p') at the base batch — replacing whatever
//     an earlier attempt installed there;
//   - the serving side of that filtered FetchState;
//   - dropping one namespace (DropBlocksRequest.dropped_state), and every
//     layout of a deleted job.
//
// Thread-safe: each partition's calls hold its ReduceState lock.
#pragma once

#include <functional>
#include <string>

#include "lib/common/status.h"
#include "proto/worker.pb.h"

namespace sluice::rpc {
class ChannelCache;
}  // namespace sluice::rpc

namespace sluice::worker {

class ReduceState;

class Resplitter {
 public:
  // Both must outlive the object.
  Resplitter(ReduceState* state, rpc::ChannelCache* channels) : state_(state), channels_(channels) {}

  // UNAVAILABLE naming the old partition no holder gave; ABORTED if the new
  // partition is already folded past the base (a stale call).
  [[nodiscard]] Result<proto::ResplitStateResponse> Resplit(const proto::ResplitStateRequest& request);

  // FetchState with split_partitions > 0: the partition's entries as of
  // base_batch that belong to split_partition, in chunks of about 1 MiB.
  [[nodiscard]] Status ServeSplit(const proto::FetchStateRequest& request,
                                  const std::function<bool(const proto::StateChunk&)>& write);

  // Drops every partition of the namespace `ns` held here.
  [[nodiscard]] Status DropNamespace(const std::string& ns);
  // Drops every layout but 0 of `job_id` (ReduceState::DropJob drops 0).
  [[nodiscard]] Status DropLaterLayouts(const std::string& job_id);

 private:
  ReduceState* const state_;
  rpc::ChannelCache* const channels_;
};

}  // namespace sluice::worker
