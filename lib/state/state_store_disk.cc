// The disk layout of StateStore (state_store.h; docs/state.md "The memory budget"): one
// RocksDB key per state entry in a generation named by m/, folds that write
// the changed keys, installs into a fresh generation, and the conversions
// between the two layouts.
#include <algorithm>
#include <map>

#include "lib/state/internal/codec.h"
#include "lib/state/internal/store_parts.h"
#include "lib/state/state_store.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "spdlog/spdlog.h"

namespace sluice::state {
namespace {

using internal::DecodeDelta;
using internal::DeletePrefix;
using internal::DeltaKey;
using internal::EncodeMeta;
using internal::FromRocks;
using internal::GenMarker;
using internal::GenPrefix;
using internal::Meta;
using internal::PartPrefix;
using internal::PrefixIter;
using internal::kMeta;

// Folded deltas kept in d/ for incremental copies (ChangesSince): the last
// ten, as the in-memory layout keeps up to ten between snapshots.
constexpr size_t kKeptDeltas = 10;
// A generation is written in WriteBatches of about this many bytes.
constexpr size_t kWriteBytes = 4 << 20;

}  // namespace

Status StateStore::LoadDisk(const std::string& job, int32_t p, Part* part) {
  part->Unload();
  const Meta& meta = part->meta;
  std::map<int64_t, int64_t> folded_deltas;
  std::map<int64_t, std::string> pending;
  const std::string prefix = PartPrefix(internal::kDelta, job, p);
  PrefixIter d(db_, prefix);
  for (; d.it->Valid(); d.it->Next()) {  // in batch order
    const rocksdb::Slice k = d.it->key();
    if (k.size() != prefix.size() + 8) {
      return absl::DataLossError(fmt::format("state store {}: a delta key of {}[{}] is malformed", dir_, job, p));
    }
    const int64_t n = internal::ReadI64(k.data() + prefix.size());
    if (n <= meta.snapshot) continue;
    if (n <= meta.folded) {
      if (n != meta.snapshot + 1 + static_cast<int64_t>(folded_deltas.size())) {
        return absl::DataLossError(
            fmt::format("state store {}: the delta of batch {} of {}[{}] is missing", dir_, n - 1, job, p));
      }
      folded_deltas.emplace(n, static_cast<int64_t>(d.it->value().size()));
    } else {
      pending.emplace(n, d.it->value().ToString());
    }
  }
  RETURN_IF_ERROR(FromRocks(d.it->status(), fmt::format("reading the deltas of {}[{}]", job, p)));
  if (meta.snapshot + static_cast<int64_t>(folded_deltas.size()) != meta.folded) {
    return absl::DataLossError(fmt::format("state store {}: deltas {}..{} of {}[{}] are incomplete", dir_,
                                           meta.snapshot + 1, meta.folded, job, p));
  }
  part->folded_deltas = std::move(folded_deltas);
  part->pending = std::move(pending);
  part->loaded = true;  // keys and bytes: the meta's, exact (every write keeps them)
  return absl::OkStatus();
}

Status StateStore::ToDisk(const std::string& job, int32_t p, Part* part) {
  const uint64_t gen = NewGeneration();
  const std::string prefix = GenPrefix(job, p, gen);
  const std::string marker = GenMarker(job, p, gen);
  const auto abandon = [&](Status st) {
    rocksdb::WriteBatch undo;
    DeletePrefix(&undo, prefix);
    undo.Delete(marker).PermitUncheckedError();
    Write(&undo, "abandoning a conversion").IgnoreError();  // else Open removes it
    part->Unload();
    return st;
  };
  {
    rocksdb::WriteBatch batch;
    batch.Put(marker, "").PermitUncheckedError();
    RETURN_IF_ERROR(Write(&batch, fmt::format("converting {}[{}]", job, p)));
  }
  rocksdb::WriteBatch batch;
  for (const auto& [k, v] : part->state) {
    batch.Put(prefix + k, v).PermitUncheckedError();
    if (batch.GetDataSize() >= kWriteBytes) {
      if (Status st = Write(&batch, fmt::format("converting {}[{}]", job, p)); !st.ok()) return abandon(st);
      batch.Clear();
    }
  }
  // The switch: the snapshot chunks go, the folded deltas stay (still
  // S+1..C over the entries as of C), the marker goes.
  Meta meta = part->meta;
  for (uint32_t i = 0; i < meta.chunks; ++i) {
    batch.Delete(internal::ChunkKey(job, p, meta.snapshot, i)).PermitUncheckedError();
  }
  batch.Delete(marker).PermitUncheckedError();
  meta.chunks = 0;
  meta.disk = true;
  meta.gen = gen;
  batch.Put(PartPrefix(kMeta, job, p), EncodeMeta(meta)).PermitUncheckedError();
  if (Status st = Write(&batch, fmt::format("converting {}[{}]", job, p)); !st.ok()) return abandon(st);
  spdlog::info("state store {}: {}[{}] converted to the disk layout ({} keys)", dir_, job, p, meta.keys);
  part->meta = meta;
  part->state.clear();
  part->snapshot_bytes = 0;
  return absl::OkStatus();
}

Status StateStore::ToMemory(const std::string& job, int32_t p, Part* part) {
  Meta meta = part->meta;
  internal::StateMap state;
  const std::string prefix = GenPrefix(job, p, meta.gen);
  {
    PrefixIter it(db_, prefix);
    for (; it.it->Valid(); it.it->Next()) {
      state.emplace_hint(state.end(), it.it->key().ToStringView().substr(prefix.size()), it.it->value().ToString());
    }
    RETURN_IF_ERROR(FromRocks(it.it->status(), fmt::format("reading {}[{}]", job, p)));
  }
  // One WriteBatch: a snapshot as of C replaces the entries and the folded
  // deltas (a snapshot covers them), the pending deltas stay.
  rocksdb::WriteBatch batch;
  int64_t snapshot_bytes = 0;
  meta.chunks = internal::PutSnapshot(&batch, job, p, meta.folded, state, &snapshot_bytes);
  meta.snapshot = meta.folded;
  meta.disk = false;
  meta.gen = 0;
  DeletePrefix(&batch, prefix);
  batch.DeleteRange(DeltaKey(job, p, INT64_MIN), DeltaKey(job, p, meta.folded + 1)).PermitUncheckedError();
  batch.Put(PartPrefix(kMeta, job, p), EncodeMeta(meta)).PermitUncheckedError();
  RETURN_IF_ERROR(Write(&batch, fmt::format("converting {}[{}] to memory", job, p)));
  spdlog::info("state store {}: {}[{}] converted to the in-memory layout ({} keys)", dir_, job, p, meta.keys);
  part->meta = meta;
  return absl::OkStatus();
}

Result<bool> StateStore::PrepareDisk(const std::string& job, int32_t p, Part* part, int64_t base) {
  // The merged changes of C+1..base, the later batch winning per key.
  std::map<std::string_view, std::optional<std::string_view>> merged;
  rocksdb::WriteBatch batch;
  std::map<int64_t, int64_t> folded_deltas = part->folded_deltas;
  for (const auto& [n, blob] : part->pending) {
    if (n > base) {  // an attempt that never committed
      batch.Delete(DeltaKey(job, p, n)).PermitUncheckedError();
      continue;
    }
    if (!DecodeDelta(blob, [&](std::string_view key, const std::string_view* value) {
          merged[key] = value != nullptr ? std::optional<std::string_view>(*value) : std::nullopt;
        })) {
      part->Unload();
      return absl::DataLossError(fmt::format("state store {}: the delta of batch {} of {}[{}] is malformed", dir_,
                                             n, job, p));
    }
    folded_deltas.emplace(n, static_cast<int64_t>(blob.size()));
  }
  // The old values, for keys and bytes that stay exact.
  const std::string prefix = GenPrefix(job, p, part->meta.gen);
  std::vector<std::string> keys;
  keys.reserve(merged.size());
  for (const auto& [k, v] : merged) keys.push_back(prefix + std::string(k));
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> olds(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  if (!keys.empty()) {
    db_->MultiGet(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), keys.size(), slices.data(), olds.data(),
                  statuses.data(), /*sorted_input=*/true);
  }
  int64_t key_count = part->meta.keys;
  int64_t bytes = part->meta.bytes;
  size_t i = 0;
  for (const auto& [k, v] : merged) {
    const rocksdb::Status& st = statuses[i];
    if (!st.ok() && !st.IsNotFound()) return FromRocks(st, fmt::format("reading a key of {}[{}]", job, p));
    const bool found = st.ok();
    if (v.has_value()) {
      if (found) {
        bytes += static_cast<int64_t>(v->size()) - static_cast<int64_t>(olds[i].size());
      } else {
        ++key_count;
        bytes += static_cast<int64_t>(k.size() + v->size());
      }
      batch.Put(keys[i], *v).PermitUncheckedError();
    } else if (found) {
      --key_count;
      bytes -= static_cast<int64_t>(k.size() + olds[i].size());
      batch.Delete(keys[i]).PermitUncheckedError();
    }
    ++i;
  }
  Meta meta = part->meta;
  // The deltas after a kept batch stay (KeepChangesSince), however many.
  const std::optional<int64_t> kept = KeptSince(job, p, meta.snapshot);
  while (folded_deltas.size() > kKeptDeltas && !(kept.has_value() && folded_deltas.begin()->first > *kept)) {
    batch.Delete(DeltaKey(job, p, folded_deltas.begin()->first)).PermitUncheckedError();
    meta.snapshot = folded_deltas.begin()->first;
    folded_deltas.erase(folded_deltas.begin());
  }
  meta.folded = base;
  meta.keys = key_count;
  meta.bytes = bytes;
  batch.Put(PartPrefix(kMeta, job, p), EncodeMeta(meta)).PermitUncheckedError();
  Status written = Write(&batch, fmt::format("folding {}[{}] to batch {}", job, p, base));
  if (!written.ok()) {
    part->Unload();
    return written;
  }
  part->meta = meta;
  part->folded_deltas = std::move(folded_deltas);
  part->pending.clear();
  part->keys = key_count;
  part->bytes = bytes;
  return true;
}

StateStore::DiskInstaller::~DiskInstaller() {
  if (!started_ || committed_) return;
  rocksdb::WriteBatch undo;
  DeletePrefix(&undo, prefix_);
  undo.Delete(GenMarker(job_, p_, gen_)).PermitUncheckedError();
  store_->Write(&undo, "abandoning an install").IgnoreError();  // else the next Open removes it
}

Status StateStore::DiskInstaller::Start() {
  rocksdb::WriteBatch batch;
  batch.Put(GenMarker(job_, p_, gen_), "").PermitUncheckedError();
  RETURN_IF_ERROR(store_->Write(&batch, fmt::format("installing {}[{}] at batch {}", job_, p_, base_)));
  started_ = true;
  return absl::OkStatus();
}

Status StateStore::DiskInstaller::Add(std::span<const Change> entries) {
  rocksdb::WriteBatch batch;
  for (const Change& e : entries) {
    if (!e.value.has_value()) {
      return absl::InvalidArgumentError(fmt::format("state store: Install of {}[{}] with an erased key", job_, p_));
    }
    std::string key = prefix_ + e.key;
    if (distinct_keys_) {
      // Nothing to look up: the key is not here.
    } else if (any_ && e.key <= last_) {  // out of order: the key may be here (in this batch or an earlier one)
      std::string old;
      rocksdb::ReadOptions ro;
      rocksdb::Status s = store_->db_->Get(ro, key, &old);
      if (batch.Count() > 0) {  // the pending batch first: a later Put in it wins
        RETURN_IF_ERROR(store_->Write(&batch, fmt::format("installing {}[{}]", job_, p_)));
        batch.Clear();
        s = store_->db_->Get(ro, key, &old);
      }
      if (s.ok()) {
        --keys_;
        bytes_ -= static_cast<int64_t>(e.key.size() + old.size());
      } else if (!s.IsNotFound()) {
        return FromRocks(s, fmt::format("installing {}[{}]", job_, p_));
      }
    } else {
      last_ = e.key;
      any_ = true;
    }
    ++keys_;
    bytes_ += static_cast<int64_t>(e.key.size() + e.value->size());
    batch.Put(key, *e.value).PermitUncheckedError();
    if (batch.GetDataSize() >= kWriteBytes) {
      RETURN_IF_ERROR(store_->Write(&batch, fmt::format("installing {}[{}]", job_, p_)));
      batch.Clear();
    }
  }
  if (batch.Count() == 0) return absl::OkStatus();
  return store_->Write(&batch, fmt::format("installing {}[{}]", job_, p_));
}

Status StateStore::DiskInstaller::Commit() {
  rocksdb::WriteBatch batch;
  std::shared_ptr<Part> old = store_->Find(job_, p_);
  store_->DeleteContents(&batch, job_, p_, old.get());
  batch.Delete(GenMarker(job_, p_, gen_)).PermitUncheckedError();
  auto part = std::make_shared<Part>();
  Meta& meta = part->meta;
  meta.folded = base_;
  meta.snapshot = base_;
  meta.keys = keys_;
  meta.bytes = bytes_;
  meta.disk = true;
  meta.gen = gen_;
  batch.Put(PartPrefix(kMeta, job_, p_), EncodeMeta(meta)).PermitUncheckedError();
  RETURN_IF_ERROR(store_->Write(&batch, fmt::format("installing {}[{}] at batch {}", job_, p_, base_)));
  committed_ = true;
  part->keys = keys_;
  part->bytes = bytes_;
  part->loaded = true;
  store_->Put(PartId{job_, p_}, std::move(part));
  return absl::OkStatus();
}

int64_t StateStore::MemoryBytes() const {
  uint64_t cache = 0, memtables = 0;
  db_->GetIntProperty("rocksdb.block-cache-usage", &cache);
  db_->GetIntProperty("rocksdb.cur-size-all-mem-tables", &memtables);
  return static_cast<int64_t>(cache + memtables);
}

int64_t StateStore::DiskLayoutBytes() const {
  const std::string lo(1, internal::kEntry), hi(1, internal::kEntry + 1);
  rocksdb::Range range(lo, hi);
  rocksdb::SizeApproximationOptions o;
  o.include_memtables = true;
  o.include_files = true;
  uint64_t size = 0;
  db_->GetApproximateSizes(o, db_->DefaultColumnFamily(), &range, 1, &size).PermitUncheckedError();
  return static_cast<int64_t>(size);
}

}  // namespace sluice::state
