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
// after a restart.
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
#include "lib/source/block.h"

namespace rocksdb {
class DB;
}

namespace sluice::worker {

struct BlockKey {
  std::string source;
  int32_t partition = 0;
  int64_t start_offset = 0;
  auto operator<=>(const BlockKey&) const = default;
};

struct BlockStoreStats {
  size_t memory_bytes = 0;
  size_t disk_bytes = 0;
  size_t blocks_in_memory = 0;
  size_t blocks_on_disk = 0;
};

class BlockStore {
 public:
  struct Options {
    size_t memory_budget_bytes = 256u << 20;
    size_t disk_budget_bytes = 4ull << 30;
    std::string spill_path;  // RocksDB directory for spilled blocks
  };

  [[nodiscard]] static Result<std::unique_ptr<BlockStore>> Open(const Options& options);
  ~BlockStore();

  // Stores `*block`: in memory if it fits the budget, else on disk. On
  // success the block has been moved in (no copy); on an error it is left
  // as it was, so the caller still holds it.
  // RESOURCE_EXHAUSTED if neither has room; ALREADY_EXISTS for a duplicate.
  [[nodiscard]] Status Put(source::Block* block);
  // NOT_FOUND if the block is not held (dropped, or never here).
  [[nodiscard]] Result<source::Block> Get(const BlockKey& key) const;
  // Whether a block of `bytes` would be taken now.
  bool HasRoom(size_t bytes) const;
  // Drops the blocks of (source, partition) that end at or before `offset`.
  // Returns how many.
  int DropBefore(const std::string& source, int32_t partition, int64_t offset);
  // Lineage of every block held, for the leader (after a failover too).
  std::vector<source::BlockLineage> Holdings() const;
  BlockStoreStats Stats() const;

 private:
  struct Entry {
    source::BlockLineage lineage;
    int64_t records = 0;
    size_t bytes = 0;
    bool on_disk = false;
    source::Block block;  // when in memory
  };
  BlockStore(Options options, rocksdb::DB* db) : options_(std::move(options)), db_(db) {}

  const Options options_;
  rocksdb::DB* const db_;
  mutable std::mutex mu_;
  std::map<BlockKey, Entry> entries_;  // guarded by mu_
  BlockStoreStats stats_;              // guarded by mu_
};

}  // namespace sluice::worker
