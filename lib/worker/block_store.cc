#include "lib/worker/block_store.h"

#include <filesystem>

#include "rocksdb/db.h"

namespace sluice::worker {
namespace {

std::string DiskKey(const BlockKey& k) {
  std::string key = k.source;
  key.push_back('\0');
  for (int i = 3; i >= 0; --i) key.push_back(static_cast<char>((k.partition >> (8 * i)) & 0xff));
  for (int i = 7; i >= 0; --i) key.push_back(static_cast<char>((k.start_offset >> (8 * i)) & 0xff));
  return key;
}

}  // namespace

Result<std::unique_ptr<BlockStore>> BlockStore::Open(const Options& options) {
  if (options.spill_path.empty()) return absl::InvalidArgumentError("block store: spill_path is required");
  std::error_code ec;
  std::filesystem::remove_all(options.spill_path, ec);  // scratch: see the header
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, options.spill_path, &db);
  if (!s.ok()) {
    return absl::FailedPreconditionError(
        fmt::format("block store: cannot open {}: {}", options.spill_path, s.ToString()));
  }
  return std::unique_ptr<BlockStore>(new BlockStore(options, db));
}

BlockStore::~BlockStore() {
  db_->Close().PermitUncheckedError();
  delete db_;
}

bool BlockStore::HasRoom(size_t bytes) const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_.memory_bytes + bytes <= options_.memory_budget_bytes ||
         stats_.disk_bytes + bytes <= options_.disk_budget_bytes;
}

Status BlockStore::Put(source::Block* in) {
  source::Block& block = *in;
  const source::BlockLineage l = block.lineage();
  BlockKey key{l.source, l.partition, l.start_offset};
  const size_t bytes = block.bytes();
  std::unique_lock<std::mutex> lock(mu_);
  if (entries_.contains(key)) {
    return absl::AlreadyExistsError(
        fmt::format("block {}[{}] at {} is already held", l.source, l.partition, l.start_offset));
  }
  Entry e{.lineage = l, .records = block.records(), .bytes = bytes};
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
  // Spill. Reserve the space first so concurrent puts respect the budget.
  stats_.disk_bytes += bytes;
  ++stats_.blocks_on_disk;
  e.on_disk = true;
  entries_.emplace(key, e);
  lock.unlock();
  rocksdb::Status s = db_->Put(rocksdb::WriteOptions(), DiskKey(key), block.data());
  if (!s.ok()) {
    lock.lock();
    entries_.erase(key);
    stats_.disk_bytes -= bytes;
    --stats_.blocks_on_disk;
    return absl::UnavailableError(fmt::format("block store: spilling failed: {}", s.ToString()));
  }
  block = source::Block();  // moved in: the caller's copy is released
  return absl::OkStatus();
}

Result<source::Block> BlockStore::Get(const BlockKey& key) const {
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
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), DiskKey(key), &data);
  if (!s.ok()) {
    return absl::DataLossError(fmt::format("block {}[{}] at {}: spilled copy unreadable: {}", key.source,
                                           key.partition, key.start_offset, s.ToString()));
  }
  source::Block block(e.lineage, std::move(data), e.records);
  return block;
}

int BlockStore::DropBefore(const std::string& source, int32_t partition, int64_t offset) {
  std::vector<BlockKey> spilled;
  int dropped = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.lower_bound(BlockKey{source, partition, INT64_MIN});
    while (it != entries_.end() && it->first.source == source && it->first.partition == partition &&
           it->second.lineage.end_offset <= offset) {
      if (it->second.on_disk) {
        stats_.disk_bytes -= it->second.bytes;
        --stats_.blocks_on_disk;
        spilled.push_back(it->first);
      } else {
        stats_.memory_bytes -= it->second.bytes;
        --stats_.blocks_in_memory;
      }
      it = entries_.erase(it);
      ++dropped;
    }
  }
  for (const BlockKey& k : spilled) db_->Delete(rocksdb::WriteOptions(), DiskKey(k)).PermitUncheckedError();
  return dropped;
}

std::vector<source::BlockLineage> BlockStore::Holdings() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<source::BlockLineage> out;
  for (const auto& [k, e] : entries_) out.push_back(e.lineage);
  return out;
}

BlockStoreStats BlockStore::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace sluice::worker
