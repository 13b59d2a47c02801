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
//                            replica: the delta on top of C; if the replica
//                            says its copy is as of V < C, the merged changes
//                            V+1..C first (ChangesSince), and a snapshot as of
//                            C only when those deltas are gone or it has no
//                            copy. Both copies exist before the task reports
//                            success.
//   replica:                 Install the snapshot if one came, or the changes
//                            since V; Prepare(C), WriteDelta(N).
//   warm (before a move):    the leader's WarmState: this worker fetches the
//                            state as of C from a holder, off the batch loop,
//                            so that replicating to it later is incremental.
//
// A whole state moves as a stream of chunks on both sides (StateStore's
// chunked ReadAsOf and BeginInstall): never in memory at once.
//
// Every copy folds N only when a later batch's task (or replication) names
// N as committed, so an attempt that never committed is never folded.
//
// Thread-safe: calls for one (job, partition) are serialised by its lock.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "lib/common/status.h"
#include "lib/rpc/call.h"
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
  // What went is counted in `sent` (optional; see below).
  struct Sent;
  [[nodiscard]] Status Replicate(int64_t epoch, const std::string& job, int32_t partition, int64_t base,
                                 int64_t batch, bool replica_is_holder, const proto::MemberInfo& replica,
                                 Sent* sent = nullptr);

  // One ReplicateState stream, written by `produce` chunk by chunk, and the
  // replica's answer; `deadline_bytes` is what the stream carries besides a
  // whole state, and `whole` says one goes too (for its deadline).
  using SendState = std::function<Result<proto::ReplicateStateResponse>(
      const rpc::ChunkProducer<proto::StateChunk>& produce, int64_t deadline_bytes, bool whole)>;
  // Replicate through `send`: the delta first; the changes since the
  // replica's copy, or the whole state, only when it says it lacks `base`.
  // Counts what went in `sent` (optional).
  struct Sent {
    // How the replica's copy was brought to the base: it had it (the delta
    // alone went), by the changes since its copy, or whole.
    enum class Copy { kDelta, kChanges, kWhole };
    Copy copy = Copy::kDelta;
    int64_t streams = 0;
    int64_t delta_entries = 0;
    int64_t catch_up_entries = 0;   // changes since the replica's copy
    int64_t snapshot_entries = 0;   // whole states
  };
  [[nodiscard]] Status ReplicateVia(int64_t epoch, const std::string& job, int32_t partition, int64_t base,
                                    int64_t batch, const std::string& replica_id, const SendState& send,
                                    Sent* sent = nullptr);

  // Server side of WarmState: makes this worker's copy the state as of
  // `base` (fetched from one of `holders` unless it has it or a newer one);
  // the batch it is then as of and the bytes copied. FAILED_PRECONDITION if
  // there is no holder to copy from.
  // The copy streams in without the partition's lock and is switched to
  // under it; `stopped` (optional: the WarmState call was cancelled) ends it
  // early.
  [[nodiscard]] Result<proto::WarmStateResponse> Warm(int64_t epoch, const std::string& job, int32_t partition,
                                                      int64_t base,
                                                      const google::protobuf::RepeatedPtrField<proto::MemberInfo>& holders,
                                                      const std::function<bool()>& stopped = nullptr);

  // Drops the state of a stopped job, if this worker holds any (logged).
  [[nodiscard]] Status DropJob(const std::string& job);

  // (job, partition)'s state as of `base`, fixed under its lock and read
  // after it (StateStore::Freeze): a copy served to another worker does not
  // hold up this worker's next batch of the partition. nullptr if this
  // worker cannot give the state as of `base`.
  [[nodiscard]] Result<std::unique_ptr<state::StateStore::FrozenState>> Freeze(const std::string& job,
                                                                               int32_t partition, int64_t base);

  // Server side of FetchState: the state as of base, in chunks (frozen).
  // `keep_changes` (a warm ahead of a move): the deltas after `base` are
  // kept for kWarmKeep, so that replicating to the warmed worker later sends
  // the changes alone.
  static constexpr std::chrono::seconds kWarmKeep{300};
  [[nodiscard]] Status Snapshot(const std::string& job, int32_t partition, int64_t base, bool keep_changes,
                                const std::function<bool(const proto::StateChunk&)>& write);

  // Server side of ReplicateState: applies what arrived (all chunks of one
  // stream); a stream of snapshot chunks only installs the state as of their
  // base_batch (a savepoint's restore); changes since the copy's batch bring
  // it to the base first. When a delta came without either and this worker
  // lacks its base: a response saying so and which batch its copy is as of
  // if the stream has answer_lacking, else NOT_FOUND (the sender then sends
  // the whole state); ABORTED when this copy is already past the base (a
  // stale attempt: never rolled back).
  // Snapshot chunks are installed as they come (`next` fills in the stream's
  // next chunk, false at its end); the vector forms are for tests.
  [[nodiscard]] Result<proto::ReplicateStateResponse> ApplyAnswering(
      const std::function<bool(proto::StateChunk*)>& next);
  [[nodiscard]] Result<proto::ReplicateStateResponse> ApplyAnswering(const std::vector<proto::StateChunk>& chunks);
  [[nodiscard]] Status Apply(const std::vector<proto::StateChunk>& chunks) { return ApplyAnswering(chunks).status(); }

 private:
  // A copy fetched from one of `holders` (not this worker) into an install
  // not committed yet, as of `base` (a warm's: of `base` or later, as the
  // holder sent it); its caller commits it under the partition's lock.
  struct Fetched {
    std::unique_ptr<state::StateStore::Installer> installer;
    int64_t base = -1;
    int64_t keys = 0;
    std::string from;
  };
  [[nodiscard]] Result<Fetched> FetchCopy(int64_t epoch, const std::string& job, int32_t partition, int64_t base,
                                          const google::protobuf::RepeatedPtrField<proto::MemberInfo>& holders,
                                          bool warm, const std::function<bool()>& stopped);

  ReduceState(std::unique_ptr<state::StateStore> store, std::string self, rpc::ChannelCache* channels)
      : store_(std::move(store)), self_(std::move(self)), channels_(channels) {}

  std::unique_ptr<state::StateStore> store_;
  const std::string self_;
  rpc::ChannelCache* const channels_;
  std::mutex mu_;
  std::map<std::pair<std::string, int32_t>, std::unique_ptr<std::mutex>> locks_;  // guarded by mu_
};

}  // namespace sluice::worker
