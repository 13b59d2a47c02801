// BlockStore: the blocks a worker holds, in memory up to a budget and spilled
// to RocksDB beyond it, until the leader says their batch is committed.
//
// Module sluice::worker owns it. Blocks are keyed by (source, partition,
// start_offset). Put() refuses with RESOURCE_EXHAUSTED when memory and disk
// budgets are both used up — the receiver then pauses its source
// (backpressure: never an unbounded queue, never a dropped event). DropBefore()
// releases every block of a partition that ends at or before an offset (its
// batch is committed). The spill database is scratch: it is emptied on open,
// since a worker's blocks are recomputed from lineage or served by a replica
// after a restart. Blocks of non-replayable sources are put `durable`: they
// also go to the block log (the receiver WAL), a second RocksDB kept across
// restarts, each by a synced flush before Put returns; its blocks are held
// again on open; the log holds its format (lib/common/version.h,
// kBlockLogFormat), checked on open. Drops from the log are not synced: a
// power failure can bring a dropped block back, whole. Both databases are
// opened through Options::env (tests: test/unit/block_store_crash_test.cc).
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "lib/common/status.h"
#include "lib/format/block.h"
#include "lib/storage/store_health.h"

namespace rocksdb {
class DB;
class Env;
}

namespace sluice::worker {

struct BlockKey {
  std::string source;
  int32_t partition = 0;
  int64_t start_offset = 0;
  auto operator<=>(const BlockKey&) const = default;
};

// A held block, as reported to the leader.
struct HeldBlock {
  format::BlockLineage lineage;
  int64_t records = 0;
  size_t bytes = 0;
  bool durable = false;  // in the block log
};

struct BlockStoreStats {
  size_t memory_bytes = 0;
  size_t disk_bytes = 0;
  size_t blocks_in_memory = 0;
  size_t blocks_on_disk = 0;
  size_t blocks_in_log = 0;
  // Why the spill store or the block log refuses writes; "" while both take them.
  std::string degraded;
};

// One partition's blocks held, by where they are served from.
struct PartitionHoldings {
  int64_t blocks_in_memory = 0;
  int64_t bytes_in_memory = 0;
  int64_t blocks_on_disk = 0;  // spilled, or in the block log only
  int64_t bytes_on_disk = 0;
};

class BlockStore {
 public:
  struct Options {
    size_t memory_budget_bytes = 256u << 20;
    size_t disk_budget_bytes = 4ull << 30;
    std::string spill_path;  // RocksDB directory for spilled blocks (scratch)
    std::string log_path;    // RocksDB directory of the block log; "" for none
    rocksdb::Env* env = nullptr;  // of both databases; nullptr: the real file system
    // How often a database that refuses writes tries to resume.
    std::chrono::milliseconds resume_interval{500};
  };

  [[nodiscard]] static Result<std::unique_ptr<BlockStore>> Open(const Options& options);
  ~BlockStore();

  // Stores `*block`: in memory if it fits the budget, else on disk. On
  // success the block has been moved in (no copy); on an error it is left
  // as it was, so the caller still holds it.
  // RESOURCE_EXHAUSTED if neither has room; ALREADY_EXISTS if the same block
  // (range, records, bytes) is held. A different block at the same start
  // replaces the held one: that one was never accepted by the leader, since
  // receivers start only where the accepted blocks of a partition end.
  // `durable`: the block is also written to the block log, synced, before
  // Put returns (FAILED_PRECONDITION if the store has no log).
  [[nodiscard]] Status Put(format::Block* block, bool durable = false);
  // A block in memory is returned sharing its bytes (no copy); a spilled one
  // is read back. NOT_FOUND if the block is not held (dropped, or never here).
  [[nodiscard]] Result<format::Block> Get(const BlockKey& key) const;
  // Whether a block of `bytes` would be taken now.
  bool HasRoom(size_t bytes) const;
  // Drops the blocks of (source, partition) that end at or before `offset`.
  // Returns how many.
  int DropBefore(const std::string& source, int32_t partition, int64_t offset);
  // Drops one block (the leader refused it). Whether it was held.
  bool Drop(const BlockKey& key);
  // Lineage of every block held, for the leader (after a failover too).
  std::vector<HeldBlock> Holdings() const;
  BlockStoreStats Stats() const;
  // The blocks held per (source, partition), for the metrics.
  std::map<std::pair<std::string, int32_t>, PartitionHoldings> HoldingsByPartition() const;

 private:
  struct Entry {
    format::BlockLineage lineage;
    int64_t records = 0;
    size_t bytes = 0;
    bool on_disk = false;  // served from disk: the spill, or the log if in_log
    bool in_log = false;
    format::Block block;  // when in memory
  };
  BlockStore(Options options, rocksdb::DB* db, rocksdb::DB* log, std::shared_ptr<storage::StoreHealth> db_health,
             std::shared_ptr<storage::StoreHealth> log_health)
      : options_(std::move(options)),
        db_(db),
        log_(log),
        db_health_(std::move(db_health)),
        log_health_(std::move(log_health)) {}
  // Refuses a block log of a format this build does not read (version.h);
  // then marks it with this build's.
  [[nodiscard]] Status CheckLogFormat();
  [[nodiscard]] Status LoadLog();

  const Options options_;
  rocksdb::DB* const db_;
  rocksdb::DB* const log_;  // the block log; may be null
  const std::shared_ptr<storage::StoreHealth> db_health_;
  const std::shared_ptr<storage::StoreHealth> log_health_;  // null without a log
  mutable std::mutex mu_;
  std::map<BlockKey, Entry> entries_;  // guarded by mu_
  BlockStoreStats stats_;              // guarded by mu_
};

}  // namespace sluice::worker
