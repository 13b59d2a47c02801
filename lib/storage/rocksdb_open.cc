#include "lib/storage/rocksdb_open.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <filesystem>

#include "rocksdb/cache.h"
#include "rocksdb/env.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/table.h"
#include "spdlog/spdlog.h"

namespace sluice::storage {
namespace {

// RocksDB's own log lines, into the daemon's log (debug level; a fatal one at
// error) instead of a LOG file in the database's directory. On a full disk
// that file fails too, and RocksDB 7.8 as Debian builds it (with assertions)
// aborts the process at its next line; the lines are the daemon's anyway.
class SpdlogLogger final : public rocksdb::Logger {
 public:
  explicit SpdlogLogger(std::string path)
      : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL), path_(std::move(path)) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override { Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap); }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    const spdlog::level::level_enum to =
        level >= rocksdb::InfoLogLevel::FATAL_LEVEL ? spdlog::level::err : spdlog::level::debug;
    if (!spdlog::should_log(to)) return;
    char buf[1024];
    std::vsnprintf(buf, sizeof(buf), format, ap);
    spdlog::log(to, "rocksdb {}: {}", path_, buf);
  }

 private:
  const std::string path_;
};

}  // namespace

void ApplyMemoryBudget(const MemoryBudget& budget, rocksdb::Options* options) {
  options->write_buffer_size = budget.memtable_bytes;
  options->max_write_buffer_number = budget.memtables;
  rocksdb::BlockBasedTableOptions table;
  if (budget.cache_index_and_filter_blocks) {
    // Few shards: a shard must hold the blocks it is given (a 4-shard cache
    // of 48 MiB takes 12 MiB blocks). Partitioned index and filters: a
    // table's whole filter (MBs for a million keys) would not stay in a
    // small cache, and every lookup would read it from the file again (what
    // a first version measured: 80% of a worker's CPU in checksumming
    // filter blocks); in partitions of 4 KiB only the top level is pinned
    // and the partitions in use are cached.
    table.block_cache = rocksdb::NewLRUCache(budget.block_cache_bytes, /*num_shard_bits=*/2);
    table.cache_index_and_filter_blocks = true;
    table.cache_index_and_filter_blocks_with_high_priority = true;
    table.pin_l0_filter_and_index_blocks_in_cache = true;
    table.index_type = rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
    table.partition_filters = true;
    table.metadata_block_size = 4096;
    table.pin_top_level_index_and_filter = true;
  } else {
    table.block_cache = rocksdb::NewLRUCache(budget.block_cache_bytes);
  }
  if (budget.bloom_bits_per_key > 0) table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(budget.bloom_bits_per_key));
  options->table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
}

MemoryBudget BoundedMemoryBudget(size_t total_bytes) {
  MemoryBudget b;
  b.memtable_bytes = std::max<size_t>(total_bytes / 8, 1 << 20);
  b.memtables = 2;
  const size_t memtables = b.memtable_bytes * 2;
  b.block_cache_bytes = total_bytes > memtables + (1 << 20) ? total_bytes - memtables : 1 << 20;
  b.cache_index_and_filter_blocks = true;
  b.bloom_bits_per_key = 10;
  return b;
}

Result<std::unique_ptr<rocksdb::DB>> OpenRocksDb(const std::string& path, rocksdb::Options options,
                                                 rocksdb::Env* env, std::shared_ptr<StoreHealth> health) {
  options.env = env != nullptr ? env : rocksdb::Env::Default();
  if (health != nullptr) options.listeners.push_back(health);
  if (options.info_log == nullptr) options.info_log = std::make_shared<SpdlogLogger>(path);
  // Every level above `path`, outermost first.
  std::filesystem::path parents;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  for (const std::filesystem::path& part : parent) {
    parents /= part;
    rocksdb::Status s = options.env->CreateDirIfMissing(parents.string());
    if (!s.ok()) {
      return absl::InternalError(fmt::format("cannot create {} for the database {}: {}", parents.string(), path,
                                             s.ToString()));
    }
  }
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, &db);
  if (!s.ok()) {
    const std::string message = fmt::format("cannot open the database {}: {}", path, s.ToString());
    return s.IsCorruption() ? absl::DataLossError(message) : absl::InternalError(message);
  }
  if (health != nullptr) health->Attach(db);
  return std::unique_ptr<rocksdb::DB>(db);
}

}  // namespace sluice::storage
