// OpenRocksDb: how every Sluice store opens its RocksDB database, through an
// Env the caller chooses (tests pass one over a fault-injection file system).
//
// Module sluice::storage owns it; the WAL (sluice::wal), the state store
// (sluice::state) and the block store (sluice::worker) use it. Stateless:
// thread-safe.
#pragma once

#include <memory>
#include <string>

#include "lib/common/status.h"
#include "lib/storage/store_health.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"

namespace sluice::storage {

// Opens the RocksDB database at `path` with `options` (the caller's: create
// if missing, compression, blob files, ...), through `env` — nullptr for
// rocksdb::Env::Default(), the real file system; `options.env` is
// overwritten. RocksDB's own log goes to the daemon's (spdlog, debug level),
// not to a LOG file beside the data, unless `options.info_log` is set. The
// directories above `path` are created through the same
// Env (RocksDB makes only the last level). DATA_LOSS if RocksDB reports
// corruption, INTERNAL otherwise; the message names the path.
// `health`, if given, becomes the database's listener and is attached to it
// once open: the store then recovers by itself from a full disk
// (store_health.h); the caller must Detach() it before closing the database.
// The memory a database may hold: its memtables (each written to a table
// file when full; at most `memtables` of them, the one being written and
// those being flushed) and its block cache. RocksDB's default cache is
// 32 MiB per database; the stores read little back and set their own.
// Memtables smaller than RocksDB's 64 MiB would bound a daemon's memory
// sooner, but changed how a full disk is met (wal_store.cc): not yet.
struct MemoryBudget {
  size_t memtable_bytes = 64 << 20;
  int memtables = 2;
  size_t block_cache_bytes = 4 << 20;
  // Index and filter blocks in the block cache, charged to it, instead of
  // held by each open table file without a bound: what makes the cache's
  // size the bound of a store that reads per key.
  bool cache_index_and_filter_blocks = false;
  // A Bloom filter per table of this many bits per key (0: none); a store
  // that looks up keys it may not have skips most tables with it.
  int bloom_bits_per_key = 0;
};

// The budget of a store whose memory must stay within `total_bytes`: two
// memtables of an eighth each (at least 1 MiB) and the rest as a block cache
// holding index and filter blocks too, with 10-bit Bloom filters.
MemoryBudget BoundedMemoryBudget(size_t total_bytes);

// Sets `options`' memtable size and count and gives it a block cache of its
// own, as `budget` says.
void ApplyMemoryBudget(const MemoryBudget& budget, rocksdb::Options* options);

[[nodiscard]] Result<std::unique_ptr<rocksdb::DB>> OpenRocksDb(const std::string& path, rocksdb::Options options,
                                                               rocksdb::Env* env = nullptr,
                                                               std::shared_ptr<StoreHealth> health = nullptr);

}  // namespace sluice::storage
