// Receiver: reads one source partition and cuts it into blocks every block
// interval, storing each in the worker's BlockStore and reporting it.
//
// Reporting is the owner's (ReceiverSet): it replicates a durable block to a
// second worker and hands the block to the leader. While the reporter says
// UNAVAILABLE, RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED (leader unreachable,
// too many blocks not yet acknowledged, no replica reachable or a replica
// call timed out) the receiver is paused exactly as when the store is full;
// any other error stops it with that error (the leader refused the block:
// another receiver owns the partition now) and drops the unreported block.
// Dead letters (events over the size limit, frames that do not parse) are
// counted and logged with their offsets; the receiver keeps running.
//
// Module sluice::worker owns it. Backpressure: when the store has no room,
// the receiver holds its one finished block and stops reading until room
// returns — memory stays bounded (one block beyond the store's budget) and no
// event is dropped. A rate limit (events/s: the leader's rate controller,
// at most the source's max_rate_per_partition) caps how fast it reads, as a
// token bucket holding at most one block interval of tokens; the leader
// changes it, and the most offsets in a block, without a restart
// (SetLimits). A read error (an offset gap,
// offsets lost to retention) stops the receiver with that error, which it
// keeps for the leader: the receiver skips nothing itself. The leader
// decides what follows (the source's on_data_loss) and, if the partition
// goes on, assigns it again further on (docs/data-path.md "When the source
// loses data").
//
//   READING --interval over--> CUT --store has room--> (reported) READING
//                               |  ^
//                    no room    v  | room again
//                              PAUSED
//
// Thread-safe: Start/Stop from the owner; Stats from anywhere.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "lib/source/partition_reader.h"
#include "lib/worker/block_store.h"

namespace sluice::worker {

struct ReceiverOptions {
  std::string source;
  int32_t partition = 0;
  int64_t start_offset = 0;
  std::chrono::milliseconds block_interval{200};
  // A block is cut at the interval or at this many records, whichever comes
  // first: very large blocks cost more in page faults and cache misses than
  // they save (measured: 120k-record blocks ingest twice as fast as 1M).
  int64_t max_block_records = 131'072;
  // The initial limits, then SetLimits'.
  int64_t rate_limit_per_s = 0;   // 0: unlimited
  int64_t max_block_offsets = 0;  // 0: max_block_records alone
  // Blocks also go to the block log (receiver WAL): non-replayable sources.
  // Their synced write overlaps reading the next block.
  bool durable = false;
};

// Blocks of durable receivers are cut smaller: a synced write of a block of
// this size runs near the disk's sequential bandwidth, while 130k-record
// (~80 MB) blocks ran at half of it (measured, bench/ingest_bench).
inline constexpr int64_t kDurableMaxBlockRecords = 32'768;

struct ReceiverStats {
  int64_t next_offset = 0;
  int64_t blocks = 0;
  int64_t records = 0;
  bool paused = false;
  int64_t pauses = 0;
  int64_t dead_letters = 0;
  std::string last_dead_letter;
  int64_t rate_limit_per_s = 0;  // as set now; 0: none
  int64_t end_offset = -1;  // the source's end as last heard (Kafka's high watermark); -1: unknown
  bool stopped = false;  // the thread has ended (on an error, or Stop)
  Status error;  // set if the receiver stopped on an error
};

class Receiver {
 public:
  // Called with each block once it is in the store; see the top of the file.
  using Reporter = std::function<Status(const HeldBlock&)>;

  Receiver(ReceiverOptions options, std::unique_ptr<source::PartitionReader> reader, BlockStore* store,
           Reporter reporter, Clock* clock);
  ~Receiver();

  void Start();
  void Stop();
  ReceiverStats Stats() const;
  // Takes effect within a few milliseconds; 0 lifts either limit.
  void SetLimits(int64_t rate_limit_per_s, int64_t max_block_offsets);

 private:
  void Run();
  [[nodiscard]] Status RunLoop();
  [[nodiscard]] Status Hand(format::Block block);
  // How many records the rate limit lets the receiver read now (INT64_MAX
  // without a limit); 0 means wait. Refills `tokens_`.
  int64_t Allowance();
  void NoteDeadLetters(const format::BlockBuilder& builder, int64_t before);

  const ReceiverOptions options_;
  std::unique_ptr<source::PartitionReader> reader_;
  BlockStore* const store_;
  const Reporter reporter_;
  Clock* const clock_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> rate_limit_per_s_;
  std::atomic<int64_t> max_block_offsets_;
  std::atomic<int64_t> end_offset_{-1};  // the reader's EndOffset, as last read
  // The token bucket, the receiver thread's only.
  double tokens_ = 0;
  Clock::TimePoint refilled_{};
  std::thread thread_;
  mutable std::mutex mu_;
  ReceiverStats stats_;  // guarded by mu_
};

}  // namespace sluice::worker
