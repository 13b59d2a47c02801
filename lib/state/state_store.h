// StateStore: the keyed state of a worker's reduce partitions, versioned by
// batch, in one RocksDB instance per worker process.
//
// Module sluice::state owns it; the worker's reduce tasks use it (and the
// replica of a partition's state, kept folded on the same commit message).
// Design: docs/state.md, "State: versioned by batch".
//
// Layout, per (job, reduce partition p):
//   m/<job>/<p>             -> C, the batch the s/ values are as of (-1: before
//                              any batch, the empty state). Present iff this
//                              store holds state for (job, p).
//   s/<job>/<p>/<key>       -> the value of <key> as of batch C
//   d/<job>/<p>/<N>/<key>   -> the change batch N (N > C) made: a value or a
//                              tombstone
//   e/<job>/<p>/<N>         -> marker: the delta of batch N is complete
//                              (written in the same WriteBatch as its entries)
// Encoding: a tag byte ('m', 's', 'd', 'e'), the job as a 4-byte big-endian
// length and its bytes, p as 4 bytes and N as 8 bytes big-endian with the sign
// bit flipped (byte order = numeric order), then the key's raw bytes. No job,
// partition or batch prefix is a prefix of another's; keys and values are
// arbitrary bytes. A d/ value is 'v' + value, or "t" for a tombstone.
//
// A partition's life (the caller serialises the calls for one (job, p)):
//
//   ABSENT --Prepare(-1) / Install(base)--> HELD(C)
//   HELD(C) --WriteDelta(N), N > C--> HELD(C) + delta N   (replaces an earlier
//                                                          delta N)
//   HELD(C) --Prepare(B), deltas C+1..B complete--> HELD(B)  (folds them, drops
//                                                             every delta > B)
//   HELD(C) --Prepare(B), B < C or a delta missing--> HELD(C), returns false
//   HELD(C) --Install(B)--> HELD(B)    (s/ replaced, no deltas)
//   any     --Drop / DropJob--> ABSENT
//
// Every call that changes a partition is one WriteBatch, so a crash leaves it
// either as it was or as the call made it. Writes go through RocksDB's WAL
// without an fsync per write: they survive the process being killed (kill -9),
// not the loss of the machine or its power — the replica covers that.
//
// Thread-safe. Calls for different (job, p) may run concurrently; the caller
// serialises the calls for one (job, p).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/common/status.h"

namespace rocksdb {
class DB;
class WriteBatch;
}  // namespace rocksdb

namespace sluice::state {

// A change to one key: a new value, or erased (value == nullopt).
struct Change {
  std::string key;
  std::optional<std::string> value;
  bool operator==(const Change&) const = default;
};

struct StateStats {
  int64_t partitions = 0;  // (job, p) held
  int64_t keys = 0;        // in s/ (as of each partition's folded batch)
  int64_t bytes = 0;       // key + value bytes in s/
};

class StateStore {
 public:
  // Opens (creating) the RocksDB at `dir`. INTERNAL (DATA_LOSS if corrupt)
  // errors naming the path.
  [[nodiscard]] static Result<std::unique_ptr<StateStore>> Open(const std::string& dir);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // Makes (job, p)'s s/ be the state as of batch `base` (the newest committed
  // batch; -1 = none yet) and returns true, or returns false, changing
  // nothing, if this store cannot: it holds no state for (job, p) (unless
  // base == -1: then it creates the empty state, m = -1, and returns true),
  // its folded batch C is > base, or some delta C+1..base has no complete
  // marker. On true: deltas C+1..base were folded into s/ in batch order
  // (tombstones erase), their d/ and e/ entries removed, every delta > base
  // (left by attempts of batches that never committed) removed, and m = base,
  // all in one WriteBatch. INVALID_ARGUMENT if base < -1.
  [[nodiscard]] Result<bool> Prepare(const std::string& job, int32_t p, int64_t base);

  // The value of `key` in s/ (call after Prepare), or nullopt.
  [[nodiscard]] Result<std::optional<std::string>> Get(const std::string& job, int32_t p, std::string_view key);

  // Calls fn(key, value) for each s/ entry of (job, p) whose key starts with
  // `prefix`, in key order; stops early when fn returns false.
  [[nodiscard]] Status Scan(const std::string& job, int32_t p, std::string_view prefix,
                            const std::function<bool(std::string_view key, std::string_view value)>& fn);

  // Writes the complete delta of batch `batch`, replacing any earlier delta of
  // that batch, with its marker, in one WriteBatch. An empty `changes` is a
  // valid (empty) delta; of two changes to one key the later wins.
  // FAILED_PRECONDITION if batch <= the folded batch, or if this store holds
  // no state for (job, p) (Prepare(-1) or Install first: a delta of an absent
  // partition could never be folded).
  [[nodiscard]] Status WriteDelta(const std::string& job, int32_t p, int64_t batch, std::span<const Change> changes);

  // The delta of `batch` as written (key order); NOT_FOUND if it has no
  // complete marker (never written, folded, or removed by Prepare).
  [[nodiscard]] Result<std::vector<Change>> ReadDelta(const std::string& job, int32_t p, int64_t batch);

  // Replaces everything of (job, p) by `entries` (all with values;
  // INVALID_ARGUMENT otherwise) as the state as of `base`: m = base, no
  // deltas. One WriteBatch. Of two entries with one key the later wins.
  [[nodiscard]] Status Install(const std::string& job, int32_t p, int64_t base, std::span<const Change> entries);

  // The whole state as of `base` (every entry with its value, key order),
  // read without changing anything: s/ with the deltas C+1..base applied.
  // nullopt when Prepare(base) would return false. For copies to another
  // worker: unlike Prepare it leaves later deltas alone.
  [[nodiscard]] Result<std::optional<std::vector<Change>>> ReadAsOf(const std::string& job, int32_t p, int64_t base);

  // The folded batch C of (job, p), or nullopt if not held.
  [[nodiscard]] Result<std::optional<int64_t>> FoldedBatch(const std::string& job, int32_t p);

  // Removes all of (job, p) / all of a job (DeleteRange).
  [[nodiscard]] Status Drop(const std::string& job, int32_t p);
  [[nodiscard]] Status DropJob(const std::string& job);

  // The (job, p) this store holds state for (an m/ entry), in (job, p) order.
  [[nodiscard]] Result<std::vector<std::pair<std::string, int32_t>>> Partitions();

  // Keys and bytes of s/ for `job` (all its partitions). Kept in memory per
  // (job, p): computed by one scan of the store on the first call, then
  // maintained by Prepare / Install / Drop / DropJob. If that scan fails, the
  // error is logged and zeros returned; the next call scans again.
  StateStats Stats(const std::string& job);
  // The same for one partition (partitions = 1 if held).
  StateStats PartitionStats(const std::string& job, int32_t p);

 private:
  struct PartStats {
    int64_t keys = 0;
    int64_t bytes = 0;
  };
  using PartId = std::pair<std::string, int32_t>;
  using StatsMap = std::map<PartId, PartStats>;

  StateStore(std::string dir, rocksdb::DB* db) : dir_(std::move(dir)), db_(db) {}

  // Writes `batch`; then, if the stats are loaded, applies `update` to them.
  [[nodiscard]] Status Commit(rocksdb::WriteBatch* batch, const std::function<void(StatsMap&)>& update,
                              std::string_view what);
  [[nodiscard]] Result<StatsMap> ScanStats();
  [[nodiscard]] Result<bool> HasMarker(const std::string& job, int32_t p, int64_t batch);
  StateStats SumLocked(const std::string& job) const;

  const std::string dir_;
  rocksdb::DB* const db_;
  // Writers (Commit) hold it shared across their write and their stats
  // update; the first Stats() holds it exclusively while it scans, so no
  // write lands between the scan and the maintained numbers.
  std::shared_mutex write_gate_;
  mutable std::mutex stats_mu_;
  bool stats_loaded_ = false;  // guarded by stats_mu_
  StatsMap stats_;             // guarded by stats_mu_
};

}  // namespace sluice::state
