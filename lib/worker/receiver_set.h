// ReceiverSet: a worker's receivers, as the leader assigns them, and the one
// reporter thread that hands their blocks to the leader.
//
// Module sluice::worker owns it. Assign() makes the running receivers match
// the leader's wish: it stops the ones the worker loses — and waits until
// their last blocks are reported, so the leader can hand the partition on at
// the right offset — and starts the new ones at the offset the leader gives.
//
// A receiver's block goes, in order: into the BlockStore (the block log too,
// for a source with replication 2), to a second worker (ReplicateBlock), then
// onto the report queue. The reporter sends the queue to the leader
// (ReportBlocks), registering first with every new leader epoch — holdings
// and running receivers — so a new leader knows what survived the failover.
// A receiver with max_unreported_blocks blocks not yet acknowledged pauses:
// an unreachable leader stops reading, it never grows a queue. A block the
// leader refuses (its partition moved on) is dropped and its receiver
// stopped; the next Assign restarts it where the leader says. A receiver
// stopped for good (data lost, a bad spec) is restarted only when the leader
// moves its partition past where it stopped (a recorded loss, a reset).
//
// Thread-safe. Lock order: assign_mu_, then mu_.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lib/common/clock.h"
#include "lib/common/service_notify.h"
#include "lib/common/status.h"
#include "lib/worker/block_store.h"
#include "lib/worker/receiver.h"
#include "proto/driver.pb.h"
#include "proto/worker.pb.h"

namespace sluice::rpc {
class ChannelCache;
}  // namespace sluice::rpc

namespace sluice::source {
class SourceConnector;
}  // namespace sluice::source

namespace sluice::worker {

struct ReceiverSetOptions {
  proto::MemberInfo self;  // id, advertised address, slots
  std::chrono::milliseconds block_interval{200};
  int64_t max_block_records = 131'072;
  int max_unreported_blocks = 8;  // per receiver
};

class ReceiverSet {
 public:
  // `store`, `channels` (to the leader and the other workers) and `clock`
  // must outlive this object.
  ReceiverSet(ReceiverSetOptions options, BlockStore* store, rpc::ChannelCache* channels, Clock* clock);
  ~ReceiverSet();

  // Who this worker is (id, advertised address, slots); before Start.
  void SetSelf(proto::MemberInfo self) { options_.self = std::move(self); }
  void Start();
  // Stops every receiver and the reporter; unreported blocks stay held.
  void Stop();

  // The leader of `epoch` (already accepted by the epoch fence) is at
  // `address`. Blocks are reported to the leader of the highest epoch.
  void OnLeader(int64_t epoch, const std::string& address);

  // Makes the receivers match `request` (already fenced); see the top.
  // FAILED_PRECONDITION if a newer leader has been heard since the fence.
  [[nodiscard]] Result<proto::AssignReceiversResponse> Assign(const proto::AssignReceiversRequest& request);

  std::vector<proto::ReceiverState> States() const;
  // Each receiver's own figures (with the source's end, for the lag).
  struct Snapshot {
    std::string source;
    int32_t partition = 0;
    uint64_t generation = 0;  // changes when the partition's receiver is made again
    ReceiverStats stats;  // stopped, with start_offset as next_offset, if it could not be made
  };
  std::vector<Snapshot> Snapshots() const;
  int64_t registered_epoch() const;
  // The reporter loop beats `beat` each round (the watchdog's); before Start.
  void set_beat(LoopBeat* beat) { beat_ = beat; }
  int64_t unreported() const;

 private:
  using Key = std::pair<std::string, int32_t>;  // source, partition
  struct Running {
    uint64_t generation = 0;
    proto::ReceiverAssignment assignment;
    std::unique_ptr<source::SourceConnector> connector;  // outlives the receiver's reader
    std::unique_ptr<Receiver> receiver;  // null if it could not be made
    Status failed;                       // why it could not be made
    std::atomic<bool> refused{false};    // the leader refused one of its blocks
  };
  struct Pending {
    proto::BlockInfo info;
    uint64_t generation = 0;
  };

  [[nodiscard]] Result<std::unique_ptr<Running>> Create(const proto::ReceiverAssignment& a);
  [[nodiscard]] Status Report(const Key& key, uint64_t generation, std::atomic<bool>* refused,
                              const HeldBlock& block);
  // Copies a durable block to another live worker; returns its id.
  [[nodiscard]] Result<std::string> Replicate(const HeldBlock& block);
  void ReporterLoop();
  [[nodiscard]] Status Register(int64_t epoch, const std::string& address);
  static proto::ReceiverState StateOf(const Key& key, const Running& r);

  ReceiverSetOptions options_;  // self is set before Start, then constant
  BlockStore* const store_;
  rpc::ChannelCache* const channels_;
  Clock* const clock_;

  std::mutex assign_mu_;  // one Assign at a time
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<Key, std::shared_ptr<Running>> running_;  // guarded by mu_
  uint64_t next_generation_ = 1;                     // guarded by mu_
  std::deque<Pending> queue_;                        // guarded by mu_: stored, not yet acknowledged
  std::map<Key, int> unreported_;                    // guarded by mu_
  int64_t leader_epoch_ = 0;                         // guarded by mu_
  std::string leader_address_;                       // guarded by mu_
  LoopBeat* beat_ = nullptr;
  int64_t registered_epoch_ = 0;                     // guarded by mu_
  std::vector<proto::MemberInfo> replica_targets_;   // guarded by mu_
  bool stopping_ = false;                            // guarded by mu_
  std::thread reporter_;
};

// Streams a block in chunks of at most 1 MiB, the first carrying `info`.
template <typename Write>
bool WriteBlockChunks(const proto::BlockInfo& info, const std::string& data, Write&& write) {
  constexpr size_t kChunk = 1 << 20;
  size_t pos = 0;
  do {
    proto::BlockChunk chunk;
    if (pos == 0) *chunk.mutable_info() = info;
    const size_t n = std::min(kChunk, data.size() - pos);
    chunk.set_data(data.substr(pos, n));
    pos += n;
    if (!write(chunk)) return false;
  } while (pos < data.size());
  return true;
}

}  // namespace sluice::worker
