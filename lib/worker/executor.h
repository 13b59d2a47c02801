// Executor: runs a batch's tasks on a worker (DESIGN.md "Data path", step 3).
//
// Module sluice::worker owns it. A task is the job's operators over the
// blocks of one partition range. Each block is taken from this worker's
// store, else fetched from a live holder (FetchBlock), else recomputed from
// its lineage (generator and Kafka are replayable; a socket block with no
// live copy is DATA_LOSS naming partition and offsets). The output goes to
// the sink under a name carrying (job, batch, task), so a re-run replaces
// rather than appends (exactly-once with the commit rule):
//
//   file:   <path>/<job>-batch-<N>-part-<task>.jsonl, written to .tmp,
//           fsynced, renamed, directory fsynced
//   stdout: the worker's standard output; null: nothing
//
// Thread-safe: tasks run on gRPC's threads, each with its own Pipeline.
#pragma once

#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "lib/worker/block_store.h"
#include "proto/worker.pb.h"

namespace sluice::worker {

// Streams the block of `range` from the worker at `address` (FetchBlock) and
// checks it is that block: DATA_LOSS if the range or its records differ.
[[nodiscard]] Result<source::Block> FetchRemoteBlock(const std::string& address, const proto::PartitionRange& range);

class Executor {
 public:
  // `store` and `clock` must outlive this object.
  Executor(BlockStore* store, Clock* clock) : store_(store), clock_(clock) {}

  [[nodiscard]] Result<proto::TaskResult> Run(const proto::TaskRequest& task);

 private:
  [[nodiscard]] Result<source::Block> GetBlock(const proto::TaskRequest& task, const proto::BlockInfo& info,
                                               proto::TaskResult* result);

  BlockStore* const store_;
  Clock* const clock_;
};

}  // namespace sluice::worker
