// Executor: runs a batch's tasks on a worker (DESIGN.md "Data path", step 3).
//
// Module sluice::worker owns it. A task is the job's operators over the
// blocks of one partition range. Each block is taken from this worker's
// store, else fetched from a live holder (FetchBlock), else recomputed from
// its lineage (generator and Kafka are replayable; a socket block with no
// live copy is DATA_LOSS naming partition and offsets). The output goes to
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

#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "lib/sink/sink.h"
#include "lib/worker/block_store.h"
#include "lib/worker/epoch_fence.h"
#include "proto/worker.pb.h"

namespace sluice::worker {

// Streams the block of `range` from the worker at `address` (FetchBlock) and
// checks it is that block: DATA_LOSS if the range or its records differ.
[[nodiscard]] Result<source::Block> FetchRemoteBlock(const std::string& address, const proto::PartitionRange& range);

class Executor {
 public:
  // `store`, `fence` and `clock` must outlive this object.
  Executor(BlockStore* store, const EpochFence* fence, Clock* clock) : store_(store), fence_(fence), clock_(clock) {}

  // `abandoned` (optional) says whether the leader has given up on this
  // attempt (its RPC cancelled or past its deadline): a transactional sink
  // then aborts rather than commits, since another attempt may be running.
  [[nodiscard]] Result<proto::TaskResult> Run(const proto::TaskRequest& task,
                                              std::function<bool()> abandoned = {});

 private:
  [[nodiscard]] Result<source::Block> GetBlock(const proto::TaskRequest& task, const proto::BlockInfo& info,
                                               proto::TaskResult* result);
  // The job's sink, opened on its first task (a job's name is used once, so
  // its sink spec never changes).
  [[nodiscard]] Result<sink::Sink*> SinkOf(const proto::TaskRequest& task);

  BlockStore* const store_;
  const EpochFence* const fence_;  // a task whose leader is superseded does not commit
  Clock* const clock_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<sink::Sink>> sinks_;  // by job; guarded by mu_
};

}  // namespace sluice::worker
