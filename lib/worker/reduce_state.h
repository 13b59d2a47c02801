// ReduceState: a worker's copies of reduce partitions' state, and how they
// move between workers (docs/state.md "State: versioned by batch" and
// "Durable beyond the worker").
//
// Module sluice::worker owns it, over one lib/state StateStore at
// <data-dir>/state. The leader's record of a partition is the list of workers
// holding its state as of the newest committed batch C (ReduceHolders in the
// WAL); a reduce task of batch N = C+1 names them. Then:
//
//   owner, before reducing:  Prepare(C) here if this worker is a holder (folds
//                            its deltas up to C, drops later ones); else, or
//                            if that fails, FetchState from a live holder and
//                            Install it. The first batch starts empty.
//   owner, after reducing:   WriteDelta(N), then ReplicateState to the
//                            replica: the delta on top of C, preceded by a
//                            snapshot as of C when the replica is not a
//                            holder or says it lacks C. Both copies exist
//                            before the task reports success.
//   replica:                 Install the snapshot if one came, Prepare(C),
//                            WriteDelta(N).
//
// A whole state moves as a stream of chunks on both sides (StateStore's
// chunked ReadAsOf and BeginInstall): never in memory at once.
//
// Every copy folds N only when a later batch's task (or replication) names
// N as committed, so an attempt that never committed is never folded.
//
// Thread-safe: calls for one (job, partition) are serialised by its lock.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "lib/common/status.h"
#include "lib/state/state_store.h"
#include "proto/worker.pb.h"

namespace sluice::rpc {
class ChannelCache;
}  // namespace sluice::rpc

namespace sluice::worker {

class ReduceState {
 public:
  // `channels` (to the other workers) must outlive the object.
  [[nodiscard]] static Result<std::unique_ptr<ReduceState>> Open(const std::string& dir, std::string self_id,
                                                                 rpc::ChannelCache* channels,
                                                                 int64_t state_memory_bytes = 0);

  state::StateStore* store() { return store_.get(); }
  const std::string& self_id() const { return self_; }

  // The lock every operation on (job, partition) holds.
  std::mutex& LockOf(const std::string& job, int32_t partition);

  // Makes this worker's copy the state as of `base` (see above). `holders`:
  // the live workers holding it (from the task). UNAVAILABLE if no holder
  // could give it, naming those it could not reach (rpc::UnreachablePeers);
  // ABORTED if this copy is already past `base` (the task is a stale attempt
  // of a batch that committed).
  [[nodiscard]] Status EnsureBase(int64_t epoch, const std::string& job, int32_t partition, int64_t base,
                                  const google::protobuf::RepeatedPtrField<proto::MemberInfo>& holders);

  // Copies the delta of `batch` (on top of `base`) to `replica`, with a
  // snapshot first when it needs one, within TransferDeadline of the bytes.
  [[nodiscard]] Status Replicate(int64_t epoch, const std::string& job, int32_t partition, int64_t base,
                                 int64_t batch, bool replica_is_holder, const proto::MemberInfo& replica);

  // Drops the state of a stopped job, if this worker holds any (logged).
  [[nodiscard]] Status DropJob(const std::string& job);

  // Server side of FetchState: the state as of base, in chunks.
  [[nodiscard]] Status Snapshot(const std::string& job, int32_t partition, int64_t base,
                                const std::function<bool(const proto::StateChunk&)>& write);

  // Server side of ReplicateState: applies what arrived (all chunks of one
  // stream); a stream of snapshot chunks only installs the state as of their
  // base_batch (a savepoint's restore). NOT_FOUND when a delta came without a snapshot and this worker
  // lacks its base (the sender then sends the whole state); ABORTED when this
  // copy is already past the base (a stale attempt: never rolled back).
  [[nodiscard]] Status Apply(const std::vector<proto::StateChunk>& chunks);
  // The same, streamed: `next` fills in the stream's next chunk, false at its
  // end. Snapshot chunks are installed as they come.
  [[nodiscard]] Status Apply(const std::function<bool(proto::StateChunk*)>& next);

 private:
  ReduceState(std::unique_ptr<state::StateStore> store, std::string self, rpc::ChannelCache* channels)
      : store_(std::move(store)), self_(std::move(self)), channels_(channels) {}

  std::unique_ptr<state::StateStore> store_;
  const std::string self_;
  rpc::ChannelCache* const channels_;
  std::mutex mu_;
  std::map<std::pair<std::string, int32_t>, std::unique_ptr<std::mutex>> locks_;  // guarded by mu_
};

}  // namespace sluice::worker
