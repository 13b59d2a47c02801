// StateStore: the keyed state of a worker's reduce partitions, versioned by
// batch, in one RocksDB instance per worker process.
//
// Module sluice::state owns it; the worker's reduce tasks use it (and the
// replica of a partition's state, kept folded on the same commit message).
// Design: docs/state.md, "State: versioned by batch".
//
// Representation (as Spark's HDFSBackedStateStore): each (job, p) this
// store holds is kept IN MEMORY as an ordered map of its state as of the
// folded batch C, loaded lazily from RocksDB on the first call that needs it
// after Open. RocksDB holds the store's format (lib/common/version.h,
// kStateStoreFormat; absent = 1), checked and then rewritten by Open:
//   f                        -> the format, as decimal text
// and per (job, reduce partition p):
//   m/<job>/<p>              -> meta: C; S, the batch of the newest snapshot
//                               (S <= C), and its chunk count; the keys and
//                               key+value bytes of the state as of C. Present
//                               iff this store holds state for (job, p).
//   n/<job>/<p>/<S>/<chunk#> -> the state as of S, whole, serialized into
//                               chunks of ~2 MiB (none when it is empty)
//   d/<job>/<p>/<N>          -> the delta of batch N, ONE value: the batch's
//                               changes (key, value or tombstone), length-
//                               prefixed, in key order. Its presence is the
//                               "complete" marker. For S < N <= C a folded
//                               delta kept until the next snapshot; for N > C
//                               a delta written and not folded yet.
// Encoding of the keys: a tag byte ('m', 'n', 'd'), the job as a 4-byte
// big-endian length and its bytes, p as 4 bytes and N (or S) as 8 bytes
// big-endian with the sign bit flipped (byte order = numeric order), then
// the chunk number as 4 bytes. No job, partition or batch prefix is a prefix
// of another's; state keys and values are arbitrary bytes (they live inside
// the values). On load: the chunks of snapshot S, then the deltas S+1..C
// applied in order; the deltas > C are kept (in memory too) for Prepare.
//
// With a memory budget (StateStoreOptions, workerd --state-memory-mb) a
// partition is kept in the DISK LAYOUT instead (state_store_disk.cc): m/
// (format 2) names the layout and a generation G, and the state as of C is
//   k/<job>/<p>/<G>/<key>    -> value, one RocksDB key per entry
// (no n/ snapshot); d/ as above, the last 10 folded deltas kept; and
//   g/<job>/<p>/<G>          -> a generation being written (an Install or
//                               a conversion), removed by Open if m/ never
//                               came to name it.
// Get and Scan read RocksDB (its block cache, within the budget, holds the
// hot set); Prepare merges the deltas, reads the changed keys' old values
// (one MultiGet, for exact stats) and writes their Puts and Deletes, the
// stale deltas' deletion and m/ in one WriteBatch. A partition stored in
// the other layout than the store's is converted the first time it loads.
//
// In memory, Prepare folds in memory; what it writes is small: the m/ value, deletions
// of the stale deltas > base, and every K = 10 folded batches (or once the
// deltas kept since S outweigh the snapshot) a new snapshot as of C with
// the deletion of the old snapshot's chunks and of the deltas it covers.
// In memory no call on the batch path reads RocksDB per state key; Get,
// Scan, ReadDelta and the stats are served from memory. A copy (Freeze,
// ReadAsOf) reads RocksDB through a snapshot in both layouts, so that it
// needs no lock while the partition goes on (state_store_frozen.cc).
//
// A partition's life (the caller serialises the calls for one (job, p)):
//
//   ABSENT --Prepare(-1) / Install(base)--> HELD(C)
//   HELD(C) --WriteDelta(N), N > C--> HELD(C) + delta N   (replaces an earlier
//                                                          delta N)
//   HELD(C) --Prepare(B), deltas C+1..B complete--> HELD(B)  (folds them, drops
//                                                             every delta > B)
//   HELD(C) --Prepare(B), B < C or a delta missing--> HELD(C), returns false
//   HELD(C) --Install(B)--> HELD(B)    (a snapshot as of B, no deltas)
//   any     --Drop / DropJob--> ABSENT
//
// Crash consistency: every call that changes a partition is ONE WriteBatch,
// and RocksDB applies a WriteBatch whole or not at all. The m/ value names
// the snapshot (S, chunk count) and C; the batch that changes m/ also writes
// what the new m/ needs (the new snapshot's chunks) and deletes only what it
// no longer needs (an older snapshot, deltas <= the new S, deltas > the new
// C). So after a crash between any two calls, m/, the snapshot it names and
// the deltas S+1..C are exactly those of one call that completed, and the
// load (snapshot S + deltas S+1..C) rebuilds exactly that state; the deltas
// > C are exactly those written before it. The in-memory map is changed
// only by the call that writes it; if the write fails, the partition is
// marked unloaded and the next call reloads it from RocksDB. Writes go
// through RocksDB's WAL without an fsync per write: they survive the process
// being killed (kill -9: that call is the last one), not the loss of the
// machine or its power (an earlier one, never half of one) — the replica
// covers that. test/unit/state_store_crash_test.cc checks both.
//
// Memory cost (a limit, as with Spark's HDFS state store): the WHOLE state of
// every partition held is in RAM once used: key + value bytes plus the map's
// overhead (~100 bytes per key with libstdc++'s std::map and std::string),
// plus the blobs of the deltas not yet folded (usually one batch's). A worker
// holding more state than fits in memory needs the disk layout: its RocksDB
// memory (block cache with index and filter blocks, memtables) stays within
// the budget, and copies move in chunks (ReadAsOf with a ChunkFn, Installer).
//
// Thread-safe. Calls for different (job, p) may run concurrently (a mutex
// guards the partition table; a partition's data is touched only by the one
// caller of that (job, p), who serialises its calls). Stats and
// PartitionStats may be called from any thread at any time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/common/status.h"
#include "lib/storage/store_health.h"

namespace rocksdb {
class DB;
class Env;
class WriteBatch;
}  // namespace rocksdb

namespace sluice::state {

// A change to one key: a new value, or erased (value == nullopt).
struct Change {
  std::string key;
  std::optional<std::string> value;
  bool operator==(const Change&) const = default;
};

// How a store keeps its partitions (docs/state.md "The memory budget").
struct StateStoreOptions {
  // 0: every partition in memory (an ordered map, snapshots in n/). Above 0:
  // the disk layout, one RocksDB key per state entry, and this is all the
  // memory RocksDB may use for the store (block cache with its index and
  // filter blocks, memtables).
  int64_t memory_budget_bytes = 0;
};

// What a chunked read hands over: the entries of one chunk, key order.
using ChunkFn = std::function<Status(std::span<const Change>)>;

struct StateStats {
  int64_t partitions = 0;  // (job, p) held
  int64_t keys = 0;        // in the state as of each partition's folded batch
  int64_t bytes = 0;       // key + value bytes of that state
};

class StateStore {
 public:
  // Opens (creating) the RocksDB at `dir` through `env` (nullptr: the real
  // file system; tests pass one that loses unsynced data). INTERNAL
  // (DATA_LOSS if corrupt) errors naming the path.
  // `options.memory_budget_bytes` picks the layout: a partition stored in the
  // other one is converted the first time it is loaded (state_store.h top).
  [[nodiscard]] static Result<std::unique_ptr<StateStore>> Open(const std::string& dir, rocksdb::Env* env = nullptr,
                                                                StateStoreOptions options = {});
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // Makes (job, p)'s state be the state as of batch `base` (the newest
  // committed batch; -1 = none yet) and returns true, or returns false,
  // changing nothing, if this store cannot: it holds no state for (job, p)
  // (unless base == -1: then it creates the empty state, m = -1, and returns
  // true), its folded batch C is > base, or some delta C+1..base was not
  // written. On true: deltas C+1..base were folded into the state in batch
  // order (tombstones erase), every delta > base (left by attempts of batches
  // that never committed) removed, and m = base, all in one WriteBatch (with
  // a snapshot now and then: see above). INVALID_ARGUMENT if base < -1.
  [[nodiscard]] Result<bool> Prepare(const std::string& job, int32_t p, int64_t base);

  // The value of `key` in the state as of C (call after Prepare), or nullopt.
  [[nodiscard]] Result<std::optional<std::string>> Get(const std::string& job, int32_t p, std::string_view key);

  // Calls fn(key, value) for each entry of (job, p)'s state whose key starts
  // with `prefix`, in key order; stops early when fn returns false. fn may
  // read (job, p) but must not change it (the entries live in the map).
  [[nodiscard]] Status Scan(const std::string& job, int32_t p, std::string_view prefix,
                            const std::function<bool(std::string_view key, std::string_view value)>& fn);

  // Writes the complete delta of batch `batch`, replacing any earlier delta of
  // that batch: one Put of one value. An empty `changes` is a valid (empty)
  // delta; of two changes to one key the later wins.
  // FAILED_PRECONDITION if batch <= the folded batch, or if this store holds
  // no state for (job, p) (Prepare(-1) or Install first: a delta of an absent
  // partition could never be folded).
  [[nodiscard]] Status WriteDelta(const std::string& job, int32_t p, int64_t batch, std::span<const Change> changes);

  // The delta of `batch` as written (key order, one change per key);
  // NOT_FOUND if it was never written, is folded, or was removed by Prepare.
  [[nodiscard]] Result<std::vector<Change>> ReadDelta(const std::string& job, int32_t p, int64_t batch);

  // Replaces everything of (job, p) by `entries` (all with values;
  // INVALID_ARGUMENT otherwise) as the state as of `base`: m = base, a
  // snapshot as of base, no deltas. One WriteBatch. Of two entries with one
  // key the later wins.
  [[nodiscard]] Status Install(const std::string& job, int32_t p, int64_t base, std::span<const Change> entries);

  // The whole state as of `base` (every entry with its value, key order),
  // read without changing anything: the state with deltas C+1..base applied.
  // nullopt when Prepare(base) would return false. For copies to another
  // worker: unlike Prepare it leaves later deltas alone.
  [[nodiscard]] Result<std::optional<std::vector<Change>>> ReadAsOf(const std::string& job, int32_t p, int64_t base);

  // The same, streamed: fn gets chunks of about `chunk_bytes` of key+value
  // bytes in key order (at least one call, possibly empty), so the whole
  // state is never in memory at once; fn's error ends the read and is
  // returned. false (fn never called) when Prepare(base) would return false.
  [[nodiscard]] Result<bool> ReadAsOf(const std::string& job, int32_t p, int64_t base, size_t chunk_bytes,
                                      const ChunkFn& fn);

  // The state of (job, p) as of `base` fixed now and read later, while the
  // partition goes on (a FetchState stream served without holding up the
  // partition's next batch): a RocksDB snapshot of what the store holds,
  // with the deltas that take it to `base` merged and kept by the object.
  // Freeze is a call on (job, p) like the others (its caller serialises it
  // with them); Read is not: it may run on any thread, at any time, while
  // (job, p) is folded, installed or dropped. The object must not outlive
  // the store. nullptr when Prepare(base) would return false.
  class FrozenState {
   public:
    virtual ~FrozenState() = default;
    // As the streamed ReadAsOf: chunks of about `chunk_bytes`, key order, at
    // least one call; fn's error ends the read and is returned.
    [[nodiscard]] virtual Status Read(size_t chunk_bytes, const ChunkFn& fn) const = 0;
  };
  [[nodiscard]] Result<std::unique_ptr<FrozenState>> Freeze(const std::string& job, int32_t p, int64_t base);

  // A streamed Install: Add the entries (values only, key order or not) in
  // any number of chunks, then Commit, which switches (job, p) to them as
  // the state as of `base` in one WriteBatch. Until Commit nothing visible
  // changes; in the disk layout the chunks go to a fresh generation, which
  // an abandoned install (destroyed without Commit) or a crash leaves
  // unreferenced and which Open or the destructor removes. The caller
  // serialises it with the other calls for (job, p).
  class Installer {
   public:
    virtual ~Installer() = default;
    [[nodiscard]] virtual Status Add(std::span<const Change> entries) = 0;
    [[nodiscard]] virtual Status Commit() = 0;
  };
  // `distinct_keys`: the caller adds no key twice (a re-split's shares,
  // each in key order, from partitions that share no key). The disk layout
  // then writes every chunk as it comes; otherwise a key not above the
  // greatest added so far is looked up first (a later entry replaces it and
  // the counts stay exact), one key at a time.
  [[nodiscard]] Result<std::unique_ptr<Installer>> BeginInstall(const std::string& job, int32_t p, int64_t base,
                                                                bool distinct_keys = false);

  // What changed from the state as of `since` to the state as of `base`
  // (since < base): the merged changes of deltas since+1..base, one per key
  // (the later batch winning; a tombstone for an erased key), in key order —
  // for an incremental copy to a worker whose copy is as of `since`. nullopt
  // when this store no longer has every one of those deltas: `since` is
  // before its newest snapshot S (the deltas up to S are gone), or some
  // delta C+1..base was never written. Folded deltas S+1..C are read from
  // RocksDB (they are kept there until the next snapshot), later ones from
  // memory. INVALID_ARGUMENT if since >= base or since < -1.
  [[nodiscard]] Result<std::optional<std::vector<Change>>> ChangesSince(const std::string& job, int32_t p,
                                                                        int64_t since, int64_t base);

  // Keeps what ChangesSince(job, p, since, ...) needs until `until`: no
  // snapshot in memory, no dropping of the oldest kept delta on disk, takes
  // away a delta after `since` meanwhile (a worker whose copy is as of
  // `since`, warmed ahead of a move, then catches up on the changes alone).
  // Of two keeps the older batch and the later time hold. Not written to
  // RocksDB: a restart forgets it (a later copy may then be whole). Any
  // thread.
  void KeepChangesSince(const std::string& job, int32_t p, int64_t since,
                        std::chrono::steady_clock::time_point until);

  // The folded batch C of (job, p), or nullopt if not held.
  [[nodiscard]] Result<std::optional<int64_t>> FoldedBatch(const std::string& job, int32_t p);

  // Removes all of (job, p) / all of a job, from memory and RocksDB
  // (DeleteRange: rare calls, and nothing reads RocksDB per batch).
  [[nodiscard]] Status Drop(const std::string& job, int32_t p);
  [[nodiscard]] Status DropJob(const std::string& job);

  // The (job, p) this store holds state for (an m/ entry), in (job, p) order.
  // Never fails since the layout moved to memory; kept a Result for callers.
  [[nodiscard]] Result<std::vector<std::pair<std::string, int32_t>>> Partitions();

  // Keys and key+value bytes of the state of `job` (all its partitions) as
  // of each one's folded batch: exact, from memory (from m/ for a partition
  // not loaded yet). Any thread, any time.
  StateStats Stats(const std::string& job);
  // Whether the database takes writes, and why not (a full disk).
  storage::StoreHealthInfo health() const { return health_->Info(); }
  // The same for one partition (partitions = 1 if held).
  StateStats PartitionStats(const std::string& job, int32_t p);

  // RocksDB's memory for this store now: block cache usage (index and
  // filter blocks included) plus memtables. Any thread.
  int64_t MemoryBytes() const;
  // Approximate bytes on disk (and in memtables) of the disk layout's
  // entries (k/), all partitions. Any thread.
  int64_t DiskLayoutBytes() const;
  bool disk_layout() const { return options_.memory_budget_bytes > 0; }

 private:
  struct Part;  // one (job, p): lib/state/state_store.cc
  class Frozen;  // lib/state/state_store_frozen.cc
  class MemoryInstaller;
  class DiskInstaller;
  using PartId = std::pair<std::string, int32_t>;
  using PartTable = std::map<PartId, std::shared_ptr<Part>>;

  StateStore(std::string dir, rocksdb::DB* db, std::shared_ptr<storage::StoreHealth> health, PartTable parts,
             StateStoreOptions options, uint64_t next_gen)
      : dir_(std::move(dir)),
        db_(db),
        health_(std::move(health)),
        options_(options),
        next_gen_(next_gen),
        parts_(std::move(parts)) {}

  // The held partition, or nullptr; Loaded also loads its state.
  std::shared_ptr<Part> Find(const std::string& job, int32_t p);
  [[nodiscard]] Result<std::shared_ptr<Part>> Loaded(const std::string& job, int32_t p);
  [[nodiscard]] Status Load(const std::string& job, int32_t p, Part* part);
  [[nodiscard]] Status Write(rocksdb::WriteBatch* batch, std::string_view what);
  void Put(const PartId& id, std::shared_ptr<Part> part);  // into the table
  // The disk layout (state_store_disk.cc).
  [[nodiscard]] Status LoadDisk(const std::string& job, int32_t p, Part* part);
  [[nodiscard]] Status ToDisk(const std::string& job, int32_t p, Part* part);    // a memory partition, loaded
  [[nodiscard]] Status ToMemory(const std::string& job, int32_t p, Part* part);  // a disk partition
  [[nodiscard]] Result<bool> PrepareDisk(const std::string& job, int32_t p, Part* part, int64_t base);
  // Deletes what (job, p) has in RocksDB besides m/ (snapshot chunks,
  // deltas, its disk generation), as the part knows it.
  void DeleteContents(rocksdb::WriteBatch* batch, const std::string& job, int32_t p, const Part* old);
  uint64_t NewGeneration() { return next_gen_.fetch_add(1); }
  // The batch a KeepChangesSince of (job, p) keeps the deltas after, if one
  // holds now and still can (`snapshot`: the part's S, before which they
  // are gone anyway).
  std::optional<int64_t> KeptSince(const std::string& job, int32_t p, int64_t snapshot);

  const std::string dir_;
  rocksdb::DB* const db_;
  // Resumes the database by itself after a full disk: a delta that failed
  // to write fails its task, which runs again once there is room.
  const std::shared_ptr<storage::StoreHealth> health_;
  const StateStoreOptions options_;
  std::atomic<uint64_t> next_gen_;  // of the disk layout's generations: never reused
  // Guards the table only; a Part's data belongs to the caller of its
  // (job, p), except its stats counters (atomics, read by Stats).
  mutable std::mutex mu_;
  PartTable parts_;  // guarded by mu_
  struct Keep {
    int64_t since;
    std::chrono::steady_clock::time_point until;
  };
  std::map<PartId, Keep> keeps_;  // guarded by mu_
};

}  // namespace sluice::state
