// Executor: runs a batch's tasks on a worker (docs/design.md "Data path", step 3).
//
// Module sluice::worker owns it. A task is the job's operators over the
// blocks of one partition range. Each block is taken from this worker's
// store, else fetched from a live holder (FetchBlock), else recomputed from
// its lineage — each contiguous run of such blocks in one read through the
// source's connector, kept between tasks (generator and Kafka are
// replayable; a socket block with no live copy is DATA_LOSS naming partition
// and offsets). The output goes to
// the job's sink (lib/sink), idempotent per (job, batch, output partition),
// so a re-run replaces or skips rather than appends (exactly-once with the
// commit rule).
//
// Thread-safe: tasks run on gRPC's threads, each with its own Pipeline.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <vector>

#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "lib/engine/confinement.h"
#include "lib/sink/sink.h"
#include "lib/source/connector_cache.h"
#include "lib/worker/block_store.h"
#include "lib/worker/epoch_fence.h"
#include "lib/worker/reduce_state.h"
#include "lib/worker/shuffle_store.h"
#include "lib/worker/transfer_deadline.h"
#include "proto/worker.pb.h"

namespace sluice::rpc {
class ChannelCache;
class WorkerClient;
}  // namespace sluice::rpc

namespace sluice::worker {

// Streams the block of `range` from the worker `holder` (FetchBlock) and
// checks it is that block: DATA_LOSS if the range or its records differ.
[[nodiscard]] Result<format::Block> FetchRemoteBlock(rpc::WorkerClient& holder, const proto::PartitionRange& range,
                                                     std::chrono::milliseconds deadline = std::chrono::seconds(30));

// How long a task waits for a block of `bytes` from another worker
// (TransferDeadline). A holder that does not answer in time (paused, cut
// off, overloaded) is skipped for the rest of the task, and the block
// recomputed: waiting longer is what stalled jobs.
std::chrono::milliseconds FetchDeadline(int64_t bytes);

class ExecutorProbe;

class Executor {
 public:
  // Keyed jobs (docs/state.md): a map task (TASK_STAGE_MAP of a job with
  // key_by) runs the operators up to key_by, combines per key and pushes one
  // buffer per reduce partition to the partition's worker (PushShuffle; to
  // `shuffle` directly when that is this worker), to every worker at once,
  // each push within TransferDeadline of its bytes. A task that could not
  // push fails naming the workers it could not reach
  // (rpc::UnreachablePeers), and so does a reduce task that could not copy
  // its state to the replica or fetch it from a holder: the leader then
  // stops placing work between them. A reduce task merges the
  // buffers of every map task of its batch from `shuffle` (ABORTED if one is
  // missing: the leader re-runs the batch's map tasks), folds them into the
  // partition's state (`state`, made current first, and copied to the
  // replica after), and writes what the batch emits to the sink as task =
  // output partition = the reduce partition.
  //
  // Before a task runs, its plugins are resolved in `paths`' plugin dirs and
  // its file sink and dead-letter directories checked against its output
  // dirs (FAILED_PRECONDITION naming the rule: the task fails).
  //
  // All pointers must outlive this object; `channels` reach the other workers.
  Executor(std::string self_id, BlockStore* store, ShuffleStore* shuffle, ReduceState* state,
           const EpochFence* fence, rpc::ChannelCache* channels, const engine::PathPolicy* paths, Clock* clock)
      : self_id_(std::move(self_id)),
        store_(store),
        shuffle_(shuffle),
        state_(state),
        fence_(fence),
        channels_(channels),
        paths_(paths),
        clock_(clock) {}

  // `abandoned` (optional) says whether the leader has given up on this
  // attempt (its RPC cancelled or past its deadline): a transactional sink
  // then aborts rather than commits, since another attempt may be running.
  [[nodiscard]] Result<proto::TaskResult> Run(const proto::TaskRequest& task,
                                              std::function<bool()> abandoned = {});
  // Tasks are counted there (worker_probe.h; null: none); before the first Run.
  void set_probe(ExecutorProbe* probe) { probe_ = probe; }
  ExecutorProbe* probe() const { return probe_; }

 private:
  [[nodiscard]] Result<proto::TaskResult> RunChecked(const proto::TaskRequest& task, std::function<bool()> abandoned);
  // Run, once the task's plugins are resolved and its outputs allowed.
  [[nodiscard]] Result<proto::TaskResult> RunConfined(const proto::TaskRequest& task,
                                                      const std::function<bool()>& abandoned);
  [[nodiscard]] Result<proto::TaskResult> RunReduce(const proto::TaskRequest& task,
                                                    const std::function<bool()>& abandoned);
  [[nodiscard]] Status PushShuffle(const proto::TaskRequest& task, std::vector<std::string> buffers,
                                   proto::TaskResult* result);
  // OK unless the leader has given up on this attempt or a newer leader
  // exists: then the attempt must not write (state, sink).
  [[nodiscard]] Status StillCurrent(const proto::TaskRequest& task, const std::function<bool()>& abandoned) const;
  [[nodiscard]] Status WriteDeadLetters(const proto::TaskRequest& task, const std::string& lines,
                                        proto::TaskResult* result);
  // Writes `out` to the job's sink as (batch, task, output partition).
  [[nodiscard]] Status WriteOutput(const proto::TaskRequest& task, int32_t index, int32_t output_partition,
                                   const std::string& out, const std::function<bool()>& abandoned,
                                   proto::TaskResult* result);
  // The block from this worker's store or from a live holder; none if no
  // one has it. Holders that could not be reached (not a block they lack)
  // go into `unreachable` and are not asked again by this task.
  std::optional<format::Block> HeldBlock(const proto::TaskRequest& task, const proto::BlockInfo& info,
                                         std::set<std::string>* unreachable, proto::TaskResult* result);
  // Reads the contiguous blocks `lost` again from the task's source, in one
  // read (SourceConnector::ReadRange). DATA_LOSS if the source cannot.
  [[nodiscard]] Result<std::vector<format::Block>> Recompute(const proto::TaskRequest& task,
                                                             const std::vector<const proto::BlockInfo*>& lost,
                                                             proto::TaskResult* result);
  // The job's sink, opened on its first task (a job's name is used once, so
  // its sink spec never changes).
  [[nodiscard]] Result<sink::Sink*> SinkOf(const proto::TaskRequest& task);

  const std::string self_id_;
  BlockStore* const store_;
  ShuffleStore* const shuffle_;
  ReduceState* const state_;
  const EpochFence* const fence_;  // a task whose leader is superseded does not commit
  rpc::ChannelCache* const channels_;
  const engine::PathPolicy* const paths_;
  Clock* const clock_;
  ExecutorProbe* probe_ = nullptr;
  std::mutex mu_;
  struct OpenSinkOf {
    proto::SinkSpec spec;
    std::unique_ptr<sink::Sink> sink;
  };
  std::map<std::string, OpenSinkOf> sinks_;                  // by job; guarded by mu_
  std::vector<std::unique_ptr<sink::Sink>> retired_sinks_;  // replaced by an update; guarded by mu_
  // Sources that lost blocks are read again through; their consumers are kept.
  source::ConnectorCache connectors_{clock_};
};

}  // namespace sluice::worker
