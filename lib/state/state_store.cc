#include "lib/state/state_store.h"

#include <algorithm>
#include <atomic>
#include <map>

#include "lib/common/version.h"
#include "lib/state/internal/codec.h"
#include "lib/state/internal/store_parts.h"
#include "lib/storage/rocksdb_open.h"
#include "rocksdb/convenience.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "spdlog/spdlog.h"

namespace sluice::state {
namespace {

using internal::kMeta;
using internal::kSnapshot;
using internal::kDelta;
using internal::kEntry;
using internal::kGeneration;
using internal::AppendBytes;
using internal::AppendVarint;
using internal::kBlobVersion;
using internal::ReadI64;
using internal::PartPrefix;
using internal::JobPrefix;
using internal::DeltaKey;
using internal::ChunkKey;
using internal::DecodePart;
using internal::DecodeDelta;
using internal::DecodeSnapshotChunk;
using internal::EncodeDelta;
using internal::Meta;
using internal::EncodeMeta;
using internal::DecodeMeta;
using internal::FromRocks;
using internal::DeletePrefix;
using internal::PrefixIter;
using internal::StateMap;
using internal::PutSnapshot;
using internal::kChunkBytes;
using internal::kSnapshotEveryDeltas;
using internal::Apply;



// Refuses a store of a format this build does not read; then marks it with
// this build's format, which is what every value written from now on has.
Status CheckFormat(rocksdb::DB* db, const std::string& dir) {
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), internal::kFormatKey, &value);
  int found = 1;  // written before the format key existed
  if (s.ok()) {
    found = version::ParseFormat(value);
    if (found < 0) {
      return absl::DataLossError(fmt::format("state store at {}: format value '{}' is not a number", dir, value));
    }
  } else if (!s.IsNotFound()) {
    return FromRocks(s, fmt::format("reading the format of {}", dir));
  }
  RETURN_IF_ERROR(version::CheckReadable(fmt::format("the state store at {}", dir), found,
                                         version::kStateStoreFormat));
  if (s.ok() && found == version::kStateStoreFormat) return absl::OkStatus();
  rocksdb::WriteOptions sync;
  sync.sync = true;
  return FromRocks(db->Put(sync, internal::kFormatKey, std::to_string(version::kStateStoreFormat)),
                   fmt::format("writing the format of {}", dir));
}

}  // namespace


Result<std::unique_ptr<StateStore>> StateStore::Open(const std::string& dir, rocksdb::Env* env,
                                                     StateStoreOptions store_options) {
  if (store_options.memory_budget_bytes < 0) {
    return absl::InvalidArgumentError(
        fmt::format("state store: a memory budget of {} bytes", store_options.memory_budget_bytes));
  }
  rocksdb::Options options;
  options.create_if_missing = true;
  if (store_options.memory_budget_bytes > 0) {
    // The disk layout reads RocksDB per key: everything RocksDB holds for it
    // (the hot entries' blocks, index and filter blocks, memtables) is
    // bounded by the budget.
    storage::ApplyMemoryBudget(storage::BoundedMemoryBudget(static_cast<size_t>(store_options.memory_budget_bytes)),
                               &options);
  } else {
    // Deltas and snapshots are written once per batch; the in-memory copy of
    // the state serves reads (state_store.h), so the cache is small.
    // RocksDB's memtables (64 MiB, two; smaller ones changed how a full disk
    // is met, see wal_store.cc).
    storage::ApplyMemoryBudget({.memtable_bytes = 64 << 20, .memtables = 2, .block_cache_bytes = 8 << 20}, &options);
  }
  const std::vector<rocksdb::CompressionType> supported = rocksdb::GetSupportedCompressions();
  options.compression = std::find(supported.begin(), supported.end(), rocksdb::kLZ4Compression) != supported.end()
                            ? rocksdb::kLZ4Compression
                            : rocksdb::kNoCompression;
  auto health = storage::StoreHealth::Create({.name = fmt::format("the state store at {}", dir)});
  Result<std::unique_ptr<rocksdb::DB>> owned = storage::OpenRocksDb(dir, options, env, health);
  if (!owned.ok()) return Annotate(owned.status(), "state store");
  rocksdb::DB* db = owned->get();
  PartTable parts;
  uint64_t next_gen = 1;
  Status loaded = [&]() -> Status {
    RETURN_IF_ERROR(CheckFormat(db, dir));
    PrefixIter m(db, std::string(1, kMeta));
    for (; m.it->Valid(); m.it->Next()) {
      std::string job;
      int32_t p = 0;
      std::string_view rest;
      if (!DecodePart(m.it->key().ToStringView(), &job, &p, &rest) || !rest.empty()) {
        return absl::DataLossError(fmt::format("state store: malformed m/ key in {}", dir));
      }
      ASSIGN_OR_RETURN(Meta meta, DecodeMeta(m.it->value().ToStringView(), job, p, dir));
      next_gen = std::max(next_gen, meta.gen + 1);
      auto part = std::make_shared<Part>();
      part->meta = meta;
      part->Unload();
      parts.emplace(PartId{std::move(job), p}, std::move(part));
    }
    RETURN_IF_ERROR(FromRocks(m.it->status(), fmt::format("listing the partitions in {}", dir)));
    // A generation still marked was never switched to (an Install or a
    // conversion that a crash or an error cut short): nothing names it.
    rocksdb::WriteBatch abandoned;
    PrefixIter g(db, std::string(1, kGeneration));
    for (; g.it->Valid(); g.it->Next()) {
      std::string job;
      int32_t p = 0;
      std::string_view rest;
      if (!DecodePart(g.it->key().ToStringView(), &job, &p, &rest) || rest.size() != 8) {
        return absl::DataLossError(fmt::format("state store: malformed g/ key in {}", dir));
      }
      const uint64_t gen = internal::ReadU(rest.data(), 8);
      next_gen = std::max(next_gen, gen + 1);
      auto it = parts.find(PartId{job, p});
      if (it != parts.end() && it->second->meta.disk && it->second->meta.gen == gen) continue;
      DeletePrefix(&abandoned, internal::GenPrefix(job, p, gen));
      abandoned.Delete(g.it->key()).PermitUncheckedError();
      spdlog::info("state store {}: removing an unfinished copy of {}[{}] (generation {})", dir, job, p, gen);
    }
    RETURN_IF_ERROR(FromRocks(g.it->status(), fmt::format("listing the generations in {}", dir)));
    if (abandoned.Count() == 0) return absl::OkStatus();
    return FromRocks(db->Write(rocksdb::WriteOptions(), &abandoned), fmt::format("removing unfinished copies in {}", dir));
  }();
  if (!loaded.ok()) {
    health->Detach();  // before the database closes
    return loaded;
  }
  return std::unique_ptr<StateStore>(
      new StateStore(dir, owned->release(), std::move(health), std::move(parts), store_options, next_gen));
}

StateStore::~StateStore() {
  health_->Detach();
  db_->Close().PermitUncheckedError();
  delete db_;
}

Status StateStore::Write(rocksdb::WriteBatch* batch, std::string_view what) {
  // RocksDB's WAL, not synced: survives kill -9 (see the header).
  rocksdb::Status s = db_->Write(rocksdb::WriteOptions(), batch);
  health_->Report(s);
  return FromRocks(s, fmt::format("{} in {}", what, dir_));
}

std::shared_ptr<StateStore::Part> StateStore::Find(const std::string& job, int32_t p) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = parts_.find(PartId{job, p});
  return it == parts_.end() ? nullptr : it->second;
}

void StateStore::Put(const PartId& id, std::shared_ptr<Part> part) {
  std::lock_guard<std::mutex> lock(mu_);
  parts_[id] = std::move(part);
}

Result<std::shared_ptr<StateStore::Part>> StateStore::Loaded(const std::string& job, int32_t p) {
  std::shared_ptr<Part> part = Find(job, p);
  if (part != nullptr && !part->loaded) RETURN_IF_ERROR(Load(job, p, part.get()));
  return part;
}

Status StateStore::Load(const std::string& job, int32_t p, Part* part) {
  if (part->meta.disk) {
    if (disk_layout()) return LoadDisk(job, p, part);
    RETURN_IF_ERROR(ToMemory(job, p, part));  // then loaded as any in-memory partition
  }
  const Meta& meta = part->meta;
  const auto malformed = [&](std::string_view what) {
    return absl::DataLossError(fmt::format("state store {}: {} of {}[{}] is malformed", dir_, what, job, p));
  };
  part->Unload();
  int64_t keys = 0;
  int64_t bytes = 0;
  int64_t snapshot_bytes = 0;
  StateMap state;
  std::string chunk;
  for (uint32_t i = 0; i < meta.chunks; ++i) {
    RETURN_IF_ERROR(FromRocks(db_->Get(rocksdb::ReadOptions(), ChunkKey(job, p, meta.snapshot, i), &chunk),
                              fmt::format("reading snapshot {} chunk {} of {}[{}]", meta.snapshot, i, job, p)));
    snapshot_bytes += static_cast<int64_t>(chunk.size());
    if (!DecodeSnapshotChunk(chunk, [&](std::string_view k, std::string_view v) {
          state.emplace_hint(state.end(), std::string(k), std::string(v));  // in key order
          ++keys;
          bytes += static_cast<int64_t>(k.size() + v.size());
        })) {
      return malformed("a snapshot chunk");
    }
  }
  std::map<int64_t, int64_t> folded_deltas;
  std::map<int64_t, std::string> pending;
  {
    const std::string prefix = PartPrefix(kDelta, job, p);
    PrefixIter d(db_, prefix);
    for (; d.it->Valid(); d.it->Next()) {  // in batch order
      const rocksdb::Slice k = d.it->key();
      if (k.size() != prefix.size() + 8) return malformed("a delta key");
      const int64_t n = ReadI64(k.data() + prefix.size());
      const std::string_view blob(d.it->value().data(), d.it->value().size());
      if (n <= meta.snapshot) continue;  // never left behind (see Prepare); harmless
      if (n <= meta.folded) {
        if (n != meta.snapshot + 1 + static_cast<int64_t>(folded_deltas.size())) {
          return absl::DataLossError(
              fmt::format("state store {}: the delta of batch {} of {}[{}] is missing", dir_, n - 1, job, p));
        }
        if (!DecodeDelta(blob, [&](std::string_view key, const std::string_view* value) {
              Apply(&state, key, value, &keys, &bytes);
            })) {
          return malformed("a delta");
        }
        folded_deltas.emplace(n, static_cast<int64_t>(blob.size()));
      } else {
        pending.emplace(n, std::string(blob));
      }
    }
    RETURN_IF_ERROR(FromRocks(d.it->status(), fmt::format("reading the deltas of {}[{}]", job, p)));
  }
  if (meta.snapshot + static_cast<int64_t>(folded_deltas.size()) != meta.folded) {
    return absl::DataLossError(fmt::format("state store {}: deltas {}..{} of {}[{}] are incomplete", dir_,
                                           meta.snapshot + 1, meta.folded, job, p));
  }
  if (keys != meta.keys || bytes != meta.bytes) {
    spdlog::warn("state store {}: {}[{}] loaded with {} keys, {} bytes; its meta said {}, {}", dir_, job, p, keys,
                 bytes, meta.keys, meta.bytes);
  }
  part->state = std::move(state);
  part->folded_deltas = std::move(folded_deltas);
  part->pending = std::move(pending);
  part->snapshot_bytes = snapshot_bytes;
  part->keys = keys;
  part->bytes = bytes;
  part->loaded = true;
  if (disk_layout()) return ToDisk(job, p, part);
  return absl::OkStatus();
}

void StateStore::KeepChangesSince(const std::string& job, int32_t p, int64_t since,
                                  std::chrono::steady_clock::time_point until) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, added] = keeps_.try_emplace(PartId{job, p}, Keep{since, until});
  if (added) return;
  if (it->second.until < std::chrono::steady_clock::now()) {
    it->second = Keep{since, until};  // the old one had ended
    return;
  }
  it->second.since = std::min(it->second.since, since);
  it->second.until = std::max(it->second.until, until);
}

std::optional<int64_t> StateStore::KeptSince(const std::string& job, int32_t p, int64_t snapshot) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keeps_.find(PartId{job, p});
  if (it == keeps_.end()) return std::nullopt;
  if (it->second.until < std::chrono::steady_clock::now()) {
    keeps_.erase(it);
    return std::nullopt;
  }
  if (it->second.since < snapshot) return std::nullopt;
  return it->second.since;
}

Result<std::optional<int64_t>> StateStore::FoldedBatch(const std::string& job, int32_t p) {
  std::shared_ptr<Part> part = Find(job, p);
  if (part == nullptr) return std::optional<int64_t>();
  return std::optional<int64_t>(part->meta.folded);
}

Result<std::optional<std::vector<Change>>> StateStore::ChangesSince(const std::string& job, int32_t p,
                                                                     int64_t since, int64_t base) {
  using Out = std::optional<std::vector<Change>>;
  if (since < -1 || since >= base) {
    return absl::InvalidArgumentError(fmt::format("state store: changes of {}[{}] since {} to {}", job, p, since, base));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Part> part, Loaded(job, p));
  if (part == nullptr || since < part->meta.snapshot) return Out();
  std::map<std::string, std::optional<std::string>> changes;  // the later batch wins per key
  const auto merge = [&](std::string_view blob, int64_t n) -> Status {
    if (!DecodeDelta(blob, [&](std::string_view key, const std::string_view* value) {
          changes[std::string(key)] = value != nullptr ? std::optional<std::string>(*value) : std::nullopt;
        })) {
      return absl::DataLossError(
          fmt::format("state store {}: the delta of batch {} of {}[{}] is malformed", dir_, n, job, p));
    }
    return absl::OkStatus();
  };
  std::string blob;
  for (int64_t n = since + 1; n <= base; ++n) {
    if (n <= part->meta.folded) {  // folded, kept in d/ until the next snapshot
      if (!part->folded_deltas.contains(n)) return Out();
      rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), DeltaKey(job, p, n), &blob);
      if (s.IsNotFound()) return Out();
      RETURN_IF_ERROR(FromRocks(s, fmt::format("reading the delta of batch {} of {}[{}]", n, job, p)));
      RETURN_IF_ERROR(merge(blob, n));
      continue;
    }
    auto it = part->pending.find(n);
    if (it == part->pending.end()) return Out();
    RETURN_IF_ERROR(merge(it->second, n));
  }
  std::vector<Change> out;
  out.reserve(changes.size());
  for (auto& [key, value] : changes) out.push_back(Change{key, std::move(value)});
  return Out(std::move(out));
}

Result<bool> StateStore::Prepare(const std::string& job, int32_t p, int64_t base) {
  if (base < -1) return absl::InvalidArgumentError(fmt::format("state store: Prepare at batch {}", base));
  ASSIGN_OR_RETURN(std::shared_ptr<Part> part, Loaded(job, p));
  if (part == nullptr) {
    if (base != -1) return false;
    // Nothing of an absent (job, p) is in RocksDB: every call that writes
    // d/ or n/ needs m/, and Drop removes them with m/.
    auto created = std::make_shared<Part>();
    created->loaded = true;
    if (disk_layout()) {
      created->meta.disk = true;
      created->meta.gen = NewGeneration();
    }
    rocksdb::WriteBatch batch;
    batch.Put(PartPrefix(kMeta, job, p), EncodeMeta(created->meta)).PermitUncheckedError();
    RETURN_IF_ERROR(Write(&batch, fmt::format("creating {}[{}]", job, p)));
    Put(PartId{job, p}, std::move(created));
    return true;
  }
  const int64_t c = part->meta.folded;
  if (c > base) return false;
  for (int64_t n = c + 1; n <= base; ++n) {
    if (part->pending.find(n) == part->pending.end()) return false;
  }
  if (base == c && part->pending.empty()) return true;  // nothing to fold or remove
  if (part->meta.disk) return PrepareDisk(job, p, part.get(), base);

  // Fold in memory; undone by a reload if the write fails.
  int64_t keys = part->keys;
  int64_t bytes = part->bytes;
  std::map<int64_t, int64_t> folded_deltas = part->folded_deltas;
  int64_t kept_bytes = 0;
  for (const auto& [n, size] : folded_deltas) kept_bytes += size;
  rocksdb::WriteBatch batch;
  for (const auto& [n, blob] : part->pending) {
    if (n > base) {  // an attempt that never committed
      batch.Delete(DeltaKey(job, p, n)).PermitUncheckedError();
      continue;
    }
    if (!DecodeDelta(blob, [&](std::string_view key, const std::string_view* value) {
          Apply(&part->state, key, value, &keys, &bytes);
        })) {
      part->Unload();
      return absl::DataLossError(fmt::format("state store {}: the delta of batch {} of {}[{}] is malformed", dir_,
                                             n, job, p));
    }
    folded_deltas.emplace(n, static_cast<int64_t>(blob.size()));
    kept_bytes += static_cast<int64_t>(blob.size());
  }
  Meta meta = part->meta;
  meta.folded = base;
  meta.keys = keys;
  meta.bytes = bytes;
  int64_t snapshot_bytes = part->snapshot_bytes;
  // Not while a worker's copy as of a batch after S waits for the changes
  // since (KeepChangesSince): the snapshot would take away their deltas.
  const std::optional<int64_t> kept = KeptSince(job, p, meta.snapshot);
  const bool snapshot = base > meta.snapshot && !(kept.has_value() && *kept < base) &&
                        (folded_deltas.size() >= kSnapshotEveryDeltas || kept_bytes > part->snapshot_bytes);
  if (snapshot) {
    // The state as of base, whole; the old snapshot and the deltas it
    // covers (S < N <= base) are no longer needed by the new m/.
    for (uint32_t i = 0; i < meta.chunks; ++i) {
      batch.Delete(ChunkKey(job, p, meta.snapshot, i)).PermitUncheckedError();
    }
    for (const auto& [n, size] : folded_deltas) batch.Delete(DeltaKey(job, p, n)).PermitUncheckedError();
    folded_deltas.clear();
    snapshot_bytes = 0;
    meta.snapshot = base;
    meta.chunks = PutSnapshot(&batch, job, p, base, part->state, &snapshot_bytes);
  }
  batch.Put(PartPrefix(kMeta, job, p), EncodeMeta(meta)).PermitUncheckedError();
  Status written = Write(&batch, fmt::format("folding {}[{}] to batch {}", job, p, base));
  if (!written.ok()) {
    part->Unload();  // the map holds the fold; RocksDB does not
    return written;
  }
  part->meta = meta;
  part->folded_deltas = std::move(folded_deltas);
  part->pending.clear();
  part->snapshot_bytes = snapshot_bytes;
  part->keys = keys;
  part->bytes = bytes;
  return true;
}

Result<std::optional<std::string>> StateStore::Get(const std::string& job, int32_t p, std::string_view key) {
  ASSIGN_OR_RETURN(std::shared_ptr<Part> part, Loaded(job, p));
  if (part == nullptr) return std::optional<std::string>();
  if (part->meta.disk) {
    std::string value;
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), internal::GenPrefix(job, p, part->meta.gen).append(key), &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    RETURN_IF_ERROR(FromRocks(s, fmt::format("reading a key of {}[{}]", job, p)));
    return std::optional<std::string>(std::move(value));
  }
  auto it = part->state.find(key);
  if (it == part->state.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

Status StateStore::Scan(const std::string& job, int32_t p, std::string_view prefix,
                        const std::function<bool(std::string_view key, std::string_view value)>& fn) {
  ASSIGN_OR_RETURN(std::shared_ptr<Part> part, Loaded(job, p));
  if (part == nullptr) return absl::OkStatus();
  if (part->meta.disk) {
    const std::string gen = internal::GenPrefix(job, p, part->meta.gen);
    PrefixIter it(db_, gen + std::string(prefix));
    for (; it.it->Valid(); it.it->Next()) {
      if (!fn(it.it->key().ToStringView().substr(gen.size()), it.it->value().ToStringView())) break;
    }
    return FromRocks(it.it->status(), fmt::format("scanning {}[{}]", job, p));
  }
  for (auto it = part->state.lower_bound(prefix); it != part->state.end(); ++it) {
    if (std::string_view(it->first).substr(0, prefix.size()) != prefix) break;
    if (!fn(it->first, it->second)) break;
  }
  return absl::OkStatus();
}

Status StateStore::WriteDelta(const std::string& job, int32_t p, int64_t n, std::span<const Change> changes) {
  ASSIGN_OR_RETURN(std::shared_ptr<Part> part, Loaded(job, p));
  if (part == nullptr) {
    return absl::FailedPreconditionError(
        fmt::format("state store: no state for {}[{}] to write the delta of batch {} on", job, p, n));
  }
  if (n <= part->meta.folded) {
    return absl::FailedPreconditionError(fmt::format(
        "state store: delta of batch {} for {}[{}], which is folded to batch {}", n, job, p, part->meta.folded));
  }
  std::string blob = EncodeDelta(changes);
  rocksdb::WriteBatch batch;
  batch.Put(DeltaKey(job, p, n), blob).PermitUncheckedError();  // replaces an earlier attempt's
  RETURN_IF_ERROR(Write(&batch, fmt::format("writing the delta of {}[{}] batch {}", job, p, n)));
  part->pending[n] = std::move(blob);
  return absl::OkStatus();
}

Result<std::vector<Change>> StateStore::ReadDelta(const std::string& job, int32_t p, int64_t n) {
  ASSIGN_OR_RETURN(std::shared_ptr<Part> part, Loaded(job, p));
  const std::string* blob = nullptr;
  if (part != nullptr) {
    auto it = part->pending.find(n);
    if (it != part->pending.end()) blob = &it->second;
  }
  if (blob == nullptr) {
    return absl::NotFoundError(fmt::format("state store: no complete delta of {}[{}] batch {}", job, p, n));
  }
  std::vector<Change> out;
  if (!DecodeDelta(*blob, [&](std::string_view key, const std::string_view* value) {
        Change c{.key = std::string(key)};
        if (value != nullptr) c.value = std::string(*value);
        out.push_back(std::move(c));
      })) {
    return absl::DataLossError(
        fmt::format("state store {}: the delta of batch {} of {}[{}] is malformed", dir_, n, job, p));
  }
  return out;
}

// Builds the new state in a map, then writes it as one snapshot in one
// WriteBatch: the in-memory layout holds the whole state anyway.
class StateStore::MemoryInstaller final : public StateStore::Installer {
 public:
  MemoryInstaller(StateStore* store, std::string job, int32_t p, int64_t base)
      : store_(store), job_(std::move(job)), p_(p), base_(base), part_(std::make_shared<Part>()) {}

  Status Add(std::span<const Change> entries) override {
    for (const Change& e : entries) {
      if (!e.value.has_value()) {
        return absl::InvalidArgumentError(fmt::format("state store: Install of {}[{}] with an erased key", job_, p_));
      }
      const std::string_view v = *e.value;
      internal::Apply(&part_->state, e.key, &v, &keys_, &bytes_);  // of a key given twice the later wins
    }
    return absl::OkStatus();
  }

  Status Commit() override {
    rocksdb::WriteBatch batch;
    std::shared_ptr<Part> old = store_->Find(job_, p_);
    store_->DeleteContents(&batch, job_, p_, old.get());
    Meta& meta = part_->meta;
    meta.folded = base_;
    meta.snapshot = base_;
    meta.keys = keys_;
    meta.bytes = bytes_;
    meta.chunks = PutSnapshot(&batch, job_, p_, base_, part_->state, &part_->snapshot_bytes);
    batch.Put(PartPrefix(kMeta, job_, p_), EncodeMeta(meta)).PermitUncheckedError();
    RETURN_IF_ERROR(store_->Write(&batch, fmt::format("installing {}[{}] at batch {}", job_, p_, base_)));
    part_->keys = keys_;
    part_->bytes = bytes_;
    part_->loaded = true;
    store_->Put(PartId{job_, p_}, std::move(part_));
    return absl::OkStatus();
  }

 private:
  StateStore* const store_;
  const std::string job_;
  const int32_t p_;
  const int64_t base_;
  std::shared_ptr<Part> part_;
  int64_t keys_ = 0;
  int64_t bytes_ = 0;
};

void StateStore::DeleteContents(rocksdb::WriteBatch* batch, const std::string& job, int32_t p, const Part* old) {
  if (old == nullptr) return;  // nothing of an absent (job, p) is in RocksDB but m/ (see Prepare)
  if (old->loaded && !old->meta.disk) {  // every key it has in RocksDB is known
    for (uint32_t i = 0; i < old->meta.chunks; ++i) {
      batch->Delete(ChunkKey(job, p, old->meta.snapshot, i)).PermitUncheckedError();
    }
    for (const auto& [n, size] : old->folded_deltas) batch->Delete(DeltaKey(job, p, n)).PermitUncheckedError();
    for (const auto& [n, blob] : old->pending) batch->Delete(DeltaKey(job, p, n)).PermitUncheckedError();
    return;
  }
  for (char tag : {kSnapshot, kDelta}) DeletePrefix(batch, PartPrefix(tag, job, p));
  if (old->meta.disk) DeletePrefix(batch, internal::GenPrefix(job, p, old->meta.gen));
}

Result<std::unique_ptr<StateStore::Installer>> StateStore::BeginInstall(const std::string& job, int32_t p,
                                                                         int64_t base, bool distinct_keys) {
  if (base < -1) return absl::InvalidArgumentError(fmt::format("state store: Install at batch {}", base));
  if (!disk_layout()) return std::unique_ptr<Installer>(new MemoryInstaller(this, job, p, base));
  auto in = std::make_unique<DiskInstaller>(this, job, p, base, NewGeneration(), distinct_keys);
  RETURN_IF_ERROR(in->Start());
  return std::unique_ptr<Installer>(std::move(in));
}

Status StateStore::Install(const std::string& job, int32_t p, int64_t base, std::span<const Change> entries) {
  ASSIGN_OR_RETURN(std::unique_ptr<Installer> in, BeginInstall(job, p, base));
  RETURN_IF_ERROR(in->Add(entries));
  return in->Commit();
}

Status StateStore::Drop(const std::string& job, int32_t p) {
  rocksdb::WriteBatch batch;
  for (char tag : {kMeta, kSnapshot, kDelta, kEntry, kGeneration}) DeletePrefix(&batch, PartPrefix(tag, job, p));
  RETURN_IF_ERROR(Write(&batch, fmt::format("dropping {}[{}]", job, p)));
  std::lock_guard<std::mutex> lock(mu_);
  parts_.erase(PartId{job, p});
  keeps_.erase(PartId{job, p});
  return absl::OkStatus();
}

Status StateStore::DropJob(const std::string& job) {
  rocksdb::WriteBatch batch;
  for (char tag : {kMeta, kSnapshot, kDelta, kEntry, kGeneration}) DeletePrefix(&batch, JobPrefix(tag, job));
  RETURN_IF_ERROR(Write(&batch, fmt::format("dropping job {}", job)));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = parts_.lower_bound(PartId{job, INT32_MIN});
  while (it != parts_.end() && it->first.first == job) it = parts_.erase(it);
  auto kept = keeps_.lower_bound(PartId{job, INT32_MIN});
  while (kept != keeps_.end() && kept->first.first == job) kept = keeps_.erase(kept);
  return absl::OkStatus();
}

Result<std::vector<std::pair<std::string, int32_t>>> StateStore::Partitions() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<std::string, int32_t>> out;
  out.reserve(parts_.size());
  for (const auto& [id, part] : parts_) out.push_back(id);
  return out;
}

StateStats StateStore::Stats(const std::string& job) {
  std::lock_guard<std::mutex> lock(mu_);
  StateStats out;
  for (auto it = parts_.lower_bound(PartId{job, INT32_MIN}); it != parts_.end() && it->first.first == job; ++it) {
    ++out.partitions;
    out.keys += it->second->keys;
    out.bytes += it->second->bytes;
  }
  return out;
}

StateStats StateStore::PartitionStats(const std::string& job, int32_t p) {
  std::lock_guard<std::mutex> lock(mu_);
  StateStats out;
  auto it = parts_.find(PartId{job, p});
  if (it == parts_.end()) return out;
  out.partitions = 1;
  out.keys = it->second->keys;
  out.bytes = it->second->bytes;
  return out;
}

}  // namespace sluice::state
