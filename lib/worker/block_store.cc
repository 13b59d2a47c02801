#include "lib/worker/block_store.h"

#include <cstring>
#include <filesystem>

#include "lib/common/version.h"
#include "lib/storage/rocksdb_open.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace sluice::worker {
namespace {

std::string DiskKey(const BlockKey& k) {
  std::string key = k.source;
  key.push_back('\0');
  for (int i = 3; i >= 0; --i) key.push_back(static_cast<char>((k.partition >> (8 * i)) & 0xff));
  for (int i = 7; i >= 0; --i) key.push_back(static_cast<char>((k.start_offset >> (8 * i)) & 0xff));
  return key;
}

// The block log's format (lib/common/version.h, kBlockLogFormat) as decimal
// text, under a key no block has (a block's key holds a NUL); absent in a
// log written before it existed, which is format 1.
constexpr char kLogFormatKey[] = "format";

// Block log values: end offset and record count (8 bytes each, big-endian),
// then the block's data.
std::string LogHeader(const format::Block& b) {
  std::string v;
  for (int64_t x : {b.lineage().end_offset, b.records()}) {
    for (int i = 7; i >= 0; --i) v.push_back(static_cast<char>((x >> (8 * i)) & 0xff));
  }
  return v;
}

int64_t ReadBE(const char* p, int n) {
  uint64_t x = 0;
  for (int i = 0; i < n; ++i) x = (x << 8) | static_cast<unsigned char>(p[i]);
  return static_cast<int64_t>(x);
}

Result<std::unique_ptr<rocksdb::DB>> OpenDb(const std::string& path, rocksdb::Env* env,
                                            std::shared_ptr<storage::StoreHealth> health) {
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  // Values are whole blocks (megabytes). They go to blob files, written once
  // by a flush, instead of twice (RocksDB's WAL, then the flushed table) and
  // again by compaction; uncompressed (blocks are compressed or not by their
  // source, and a spilled block is read back soon).
  db_options.enable_blob_files = true;
  db_options.min_blob_size = 4096;
  db_options.blob_file_size = 256 << 20;
  db_options.enable_blob_garbage_collection = true;
  db_options.compression = rocksdb::kNoCompression;
  db_options.blob_compression_type = rocksdb::kNoCompression;
  storage::ApplyMemoryBudget({.memtable_bytes = 64 << 20, .memtables = 2, .block_cache_bytes = 4 << 20}, &db_options);
  Result<std::unique_ptr<rocksdb::DB>> db = storage::OpenRocksDb(path, db_options, env, std::move(health));
  if (!db.ok()) return Annotate(db.status(), "block store");
  return db;
}

}  // namespace

Result<std::unique_ptr<BlockStore>> BlockStore::Open(const Options& options) {
  if (options.spill_path.empty()) return absl::InvalidArgumentError("block store: spill_path is required");
  std::error_code ec;
  std::filesystem::remove_all(options.spill_path, ec);  // scratch: see the header
  auto db_health = storage::StoreHealth::Create(
      {.name = fmt::format("the block spill store at {}", options.spill_path),
       .retry_interval = options.resume_interval});
  ASSIGN_OR_RETURN(std::unique_ptr<rocksdb::DB> db, OpenDb(options.spill_path, options.env, db_health));
  std::unique_ptr<rocksdb::DB> log;
  std::shared_ptr<storage::StoreHealth> log_health;
  if (!options.log_path.empty()) {
    log_health = storage::StoreHealth::Create(
        {.name = fmt::format("the block log at {}", options.log_path), .retry_interval = options.resume_interval});
    Result<std::unique_ptr<rocksdb::DB>> opened = OpenDb(options.log_path, options.env, log_health);
    if (!opened.ok()) {
      db_health->Detach();
      return opened.status();
    }
    log = std::move(*opened);
  }
  const bool has_log = log != nullptr;
  std::unique_ptr<BlockStore> store(
      new BlockStore(options, db.release(), log.release(), std::move(db_health), std::move(log_health)));
  if (has_log) RETURN_IF_ERROR_PREPEND(store->LoadLog(), "reading the block log");
  return store;
}

Status BlockStore::CheckLogFormat() {
  std::string value;
  rocksdb::Status s = log_->Get(rocksdb::ReadOptions(), kLogFormatKey, &value);
  int found = 1;  // written before the format key existed
  if (s.ok()) {
    found = version::ParseFormat(value);
    if (found < 0) {
      return absl::DataLossError(
          fmt::format("block log at {}: format value '{}' is not a number", options_.log_path, value));
    }
  } else if (!s.IsNotFound()) {
    return absl::DataLossError(fmt::format("block log at {}: reading its format: {}", options_.log_path, s.ToString()));
  }
  RETURN_IF_ERROR(version::CheckReadable(fmt::format("the block log at {}", options_.log_path), found,
                                         version::kBlockLogFormat));
  if (s.ok() && found == version::kBlockLogFormat) return absl::OkStatus();
  rocksdb::WriteOptions sync;
  sync.sync = true;
  s = log_->Put(sync, kLogFormatKey, std::to_string(version::kBlockLogFormat));
  if (!s.ok()) {
    return absl::UnavailableError(fmt::format("block log at {}: writing its format: {}", options_.log_path, s.ToString()));
  }
  return absl::OkStatus();
}

Status BlockStore::LoadLog() {
  RETURN_IF_ERROR(CheckLogFormat());
  std::unique_ptr<rocksdb::Iterator> it(log_->NewIterator(rocksdb::ReadOptions()));
  std::lock_guard<std::mutex> lock(mu_);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const rocksdb::Slice k = it->key();
    const rocksdb::Slice v = it->value();
    if (k == rocksdb::Slice(kLogFormatKey)) continue;
    const char* nul = static_cast<const char*>(std::memchr(k.data(), '\0', k.size()));
    if (nul == nullptr || k.size() - (nul - k.data()) != 13 || v.size() < 16) {
      return absl::DataLossError(fmt::format("malformed block log entry of {} bytes", k.size()));
    }
    BlockKey key{std::string(k.data(), nul - k.data()), static_cast<int32_t>(ReadBE(nul + 1, 4)),
                 ReadBE(nul + 5, 8)};
    Entry e{.lineage = {key.source, key.partition, key.start_offset, ReadBE(v.data(), 8)},
            .records = ReadBE(v.data() + 8, 8),
            .bytes = v.size() - 16,
            .on_disk = true,
            .in_log = true};
    stats_.disk_bytes += e.bytes;
    ++stats_.blocks_on_disk;
    ++stats_.blocks_in_log;
    entries_.emplace(std::move(key), std::move(e));
  }
  if (!it->status().ok()) return absl::DataLossError(it->status().ToString());
  return absl::OkStatus();
}

BlockStore::~BlockStore() {
  db_health_->Detach();
  if (log_health_ != nullptr) log_health_->Detach();
  db_->Close().PermitUncheckedError();
  delete db_;
  if (log_ != nullptr) {
    log_->Close().PermitUncheckedError();
    delete log_;
  }
}

bool BlockStore::HasRoom(size_t bytes) const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_.memory_bytes + bytes <= options_.memory_budget_bytes ||
         stats_.disk_bytes + bytes <= options_.disk_budget_bytes;
}

Status BlockStore::Put(format::Block* in, bool durable) {
  format::Block& block = *in;
  const format::BlockLineage l = block.lineage();
  BlockKey key{l.source, l.partition, l.start_offset};
  const size_t bytes = block.bytes();
  std::unique_lock<std::mutex> lock(mu_);
  if (auto it = entries_.find(key); it != entries_.end()) {
    const Entry& old = it->second;
    if (old.lineage.end_offset == l.end_offset && old.records == block.records() && old.bytes == bytes) {
      return absl::AlreadyExistsError(
          fmt::format("block {}[{}] at {} is already held", l.source, l.partition, l.start_offset));
    }
    // A different block at the same start: the old one was never accepted
    // (a receiver starts only where the accepted blocks end), a leftover of a
    // receiver or replica source that died before its report. Replace it.
    const bool old_spilled = old.on_disk && !old.in_log;
    const bool old_logged = old.in_log;
    if (old.in_log) --stats_.blocks_in_log;
    if (old.on_disk) {
      stats_.disk_bytes -= old.bytes;
      --stats_.blocks_on_disk;
    } else {
      stats_.memory_bytes -= old.bytes;
      --stats_.blocks_in_memory;
    }
    entries_.erase(it);
    lock.unlock();
    if (old_spilled) db_->Delete(rocksdb::WriteOptions(), DiskKey(key)).PermitUncheckedError();
    if (old_logged && !durable) log_->Delete(rocksdb::WriteOptions(), DiskKey(key)).PermitUncheckedError();
    lock.lock();
    if (entries_.contains(key)) {
      return absl::AlreadyExistsError(
          fmt::format("block {}[{}] at {} is being replaced concurrently", l.source, l.partition, l.start_offset));
    }
  }
  Entry e{.lineage = l, .records = block.records(), .bytes = bytes};
  if (durable) {
    if (log_ == nullptr) return absl::FailedPreconditionError("block store: no block log for a durable block");
    // Refused at once while the log cannot take it: the receiver pauses.
    RETURN_IF_ERROR(log_health_->CheckWritable());
    const bool in_memory = stats_.memory_bytes + bytes <= options_.memory_budget_bytes;
    if (!in_memory && stats_.disk_bytes + bytes > options_.disk_budget_bytes) {
      return absl::ResourceExhaustedError(fmt::format(
          "block store full: {} bytes in memory (budget {}), {} on disk (budget {})", stats_.memory_bytes,
          options_.memory_budget_bytes, stats_.disk_bytes, options_.disk_budget_bytes));
    }
    lock.unlock();
    // Durable once the flush returns: the memtable goes to a synced table
    // and blob file, and the manifest records them (RocksDB's own WAL off).
    rocksdb::WriteOptions no_wal;
    no_wal.disableWAL = true;
    // Header and data as two slices: the block is not copied to build the value.
    const std::string header = LogHeader(block);
    const std::string disk_key = DiskKey(key);
    const rocksdb::Slice key_part(disk_key);
    const rocksdb::Slice value_parts[2] = {rocksdb::Slice(header), rocksdb::Slice(block.data())};
    rocksdb::WriteBatch batch;
    rocksdb::Status s = batch.Put(rocksdb::SliceParts(&key_part, 1), rocksdb::SliceParts(value_parts, 2));
    if (s.ok()) s = log_->Write(no_wal, &batch);
    if (s.ok()) s = log_->Flush(rocksdb::FlushOptions());
    if (!s.ok()) {
      log_health_->Report(s);
      return absl::UnavailableError(fmt::format("block log at {}: write failed: {}", options_.log_path, s.ToString()));
    }
    lock.lock();
    if (entries_.contains(key)) return absl::OkStatus();  // a concurrent put of the same block
    e.in_log = true;
    ++stats_.blocks_in_log;
    if (in_memory) {
      e.block = std::move(block);
      stats_.memory_bytes += bytes;
      ++stats_.blocks_in_memory;
    } else {
      e.on_disk = true;
      stats_.disk_bytes += bytes;
      ++stats_.blocks_on_disk;
      block = format::Block();
    }
    entries_.emplace(key, std::move(e));
    return absl::OkStatus();
  }
  if (stats_.memory_bytes + bytes <= options_.memory_budget_bytes) {
    e.block = std::move(block);
    stats_.memory_bytes += bytes;
    ++stats_.blocks_in_memory;
    entries_.emplace(key, std::move(e));
    return absl::OkStatus();
  }
  if (stats_.disk_bytes + bytes > options_.disk_budget_bytes) {
    return absl::ResourceExhaustedError(fmt::format(
        "block store full: {} bytes in memory (budget {}), {} on disk (budget {})", stats_.memory_bytes,
        options_.memory_budget_bytes, stats_.disk_bytes, options_.disk_budget_bytes));
  }
  if (Status st = db_health_->CheckWritable(); !st.ok()) {
    // Over the memory budget and the disk refuses: the receiver pauses.
    return absl::UnavailableError(fmt::format("block store: cannot spill: {}", std::string(st.message())));
  }
  // Spill. Reserve the space first so concurrent puts respect the budget.
  stats_.disk_bytes += bytes;
  ++stats_.blocks_on_disk;
  e.on_disk = true;
  entries_.emplace(key, e);
  lock.unlock();
  // The spill store is scratch (emptied on open): no WAL.
  rocksdb::WriteOptions no_wal;
  no_wal.disableWAL = true;
  rocksdb::Status s = db_->Put(no_wal, DiskKey(key), block.data());
  if (!s.ok()) {
    db_health_->Report(s);
    lock.lock();
    entries_.erase(key);
    stats_.disk_bytes -= bytes;
    --stats_.blocks_on_disk;
    return absl::UnavailableError(fmt::format("block store: spilling failed: {}", s.ToString()));
  }
  block = format::Block();  // moved in: the caller's copy is released
  return absl::OkStatus();
}

Result<format::Block> BlockStore::Get(const BlockKey& key) const {
  Entry e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      return absl::NotFoundError(
          fmt::format("block {}[{}] at {} is not held here", key.source, key.partition, key.start_offset));
    }
    if (!it->second.on_disk) return it->second.block;
    e = it->second;
  }
  std::string data;
  rocksdb::Status s = (e.in_log ? log_ : db_)->Get(rocksdb::ReadOptions(), DiskKey(key), &data);
  if (s.ok() && e.in_log) data.erase(0, 16);
  if (!s.ok()) {
    return absl::DataLossError(fmt::format("block {}[{}] at {}: spilled copy unreadable: {}", key.source,
                                           key.partition, key.start_offset, s.ToString()));
  }
  format::Block block(e.lineage, std::move(data), e.records);
  return block;
}

int BlockStore::DropBefore(const std::string& source, int32_t partition, int64_t offset) {
  std::vector<BlockKey> spilled;
  std::vector<BlockKey> logged;
  int dropped = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.lower_bound(BlockKey{source, partition, INT64_MIN});
    while (it != entries_.end() && it->first.source == source && it->first.partition == partition &&
           it->second.lineage.end_offset <= offset) {
      if (it->second.in_log) {
        --stats_.blocks_in_log;
        logged.push_back(it->first);
      }
      if (it->second.on_disk) {
        stats_.disk_bytes -= it->second.bytes;
        --stats_.blocks_on_disk;
        if (!it->second.in_log) spilled.push_back(it->first);
      } else {
        stats_.memory_bytes -= it->second.bytes;
        --stats_.blocks_in_memory;
      }
      it = entries_.erase(it);
      ++dropped;
    }
  }
  for (const BlockKey& k : spilled) db_->Delete(rocksdb::WriteOptions(), DiskKey(k)).PermitUncheckedError();
  for (const BlockKey& k : logged) log_->Delete(rocksdb::WriteOptions(), DiskKey(k)).PermitUncheckedError();
  return dropped;
}

bool BlockStore::Drop(const BlockKey& key) {
  bool spilled = false, logged = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return false;
    const Entry& e = it->second;
    logged = e.in_log;
    if (e.in_log) --stats_.blocks_in_log;
    if (e.on_disk) {
      stats_.disk_bytes -= e.bytes;
      --stats_.blocks_on_disk;
      spilled = !e.in_log;
    } else {
      stats_.memory_bytes -= e.bytes;
      --stats_.blocks_in_memory;
    }
    entries_.erase(it);
  }
  if (spilled) db_->Delete(rocksdb::WriteOptions(), DiskKey(key)).PermitUncheckedError();
  if (logged) log_->Delete(rocksdb::WriteOptions(), DiskKey(key)).PermitUncheckedError();
  return true;
}

std::vector<HeldBlock> BlockStore::Holdings() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<HeldBlock> out;
  for (const auto& [k, e] : entries_) out.push_back({e.lineage, e.records, e.bytes, e.in_log});
  return out;
}

std::map<std::pair<std::string, int32_t>, PartitionHoldings> BlockStore::HoldingsByPartition() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::pair<std::string, int32_t>, PartitionHoldings> out;
  for (const auto& [k, e] : entries_) {
    PartitionHoldings& h = out[{k.source, k.partition}];
    if (e.on_disk) {
      ++h.blocks_on_disk;
      h.bytes_on_disk += static_cast<int64_t>(e.bytes);
    } else {
      ++h.blocks_in_memory;
      h.bytes_in_memory += static_cast<int64_t>(e.bytes);
    }
  }
  return out;
}

BlockStoreStats BlockStore::Stats() const {
  BlockStoreStats stats;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats = stats_;
  }
  for (const auto* health : {db_health_.get(), log_health_.get()}) {
    if (health == nullptr) continue;
    if (Status st = health->CheckWritable(); !st.ok()) {
      stats.degraded += (stats.degraded.empty() ? "" : "; ") + std::string(st.message());
    }
  }
  return stats;
}

}  // namespace sluice::worker
