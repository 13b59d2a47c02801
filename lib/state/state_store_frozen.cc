// StateStore::Freeze and ReadAsOf: the state as of a batch, read from a
// RocksDB snapshot so that the read needs no lock of the partition
// (state_store.h). Both layouts: the in-memory one reads its snapshot
// chunks (n/) with the folded deltas since them, the disk one its entries
// (k/); each with the deltas not folded yet laid over.
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lib/state/internal/codec.h"
#include "lib/state/internal/store_parts.h"
#include "lib/state/state_store.h"
#include "rocksdb/db.h"

namespace sluice::state {

using internal::ChunkKey;
using internal::DecodeDelta;
using internal::DecodeSnapshotChunk;
using internal::DeltaKey;
using internal::FromRocks;
using internal::PrefixIter;

class StateStore::Frozen final : public StateStore::FrozenState {
 public:
  // Where the state as of the part's folded batch lies, read through `snapshot`.
  struct Source {
    bool disk = false;
    uint64_t gen = 0;         // disk: k/<job>/<p>/<gen>/
    int64_t snapshot = -1;    // memory: n/<job>/<p>/<snapshot>/<chunk#>
    uint32_t chunks = 0;
  };
  // The changes laid over the source, the later batch winning per key.
  using Changes = std::map<std::string, std::optional<std::string>, std::less<>>;

  Frozen(rocksdb::DB* db, std::string dir, std::string job, int32_t p, Source source, Changes changes)
      : db_(db),
        snapshot_(db->GetSnapshot()),
        dir_(std::move(dir)),
        job_(std::move(job)),
        p_(p),
        source_(source),
        changes_(std::move(changes)) {}
  ~Frozen() override { db_->ReleaseSnapshot(snapshot_); }

  const rocksdb::Snapshot* snapshot() const { return snapshot_; }
  Changes* changes() { return &changes_; }
  // Lays the delta `blob` of batch `n` over the changes so far.
  [[nodiscard]] Status Merge(std::string_view blob, int64_t n) {
    if (!DecodeDelta(blob, [&](std::string_view key, const std::string_view* value) {
          auto [it, added] = changes_.try_emplace(std::string(key));
          it->second = value != nullptr ? std::optional<std::string>(*value) : std::nullopt;
        })) {
      return Malformed(fmt::format("the delta of batch {}", n));
    }
    return absl::OkStatus();
  }

  Status Read(size_t chunk_bytes, const ChunkFn& fn) const override {
    std::vector<Change> chunk;
    size_t bytes = 0;
    bool called = false;
    const auto emit = [&](std::string_view k, std::string_view v) -> Status {
      chunk.push_back(Change{std::string(k), std::string(v)});
      bytes += k.size() + v.size();
      if (bytes < chunk_bytes) return absl::OkStatus();
      called = true;
      Status st = fn(chunk);
      chunk.clear();
      bytes = 0;
      return st;
    };
    auto c = changes_.begin();
    // The source's entries in key order, with the changes laid over them.
    const auto take = [&](std::string_view k, std::string_view v) -> Status {
      for (; c != changes_.end() && c->first < k; ++c) {
        if (c->second.has_value()) RETURN_IF_ERROR(emit(c->first, *c->second));
      }
      if (c != changes_.end() && c->first == k) {
        const std::optional<std::string>& changed = (c++)->second;
        return changed.has_value() ? emit(k, *changed) : absl::OkStatus();
      }
      return emit(k, v);
    };
    if (source_.disk) {
      const std::string gen = internal::GenPrefix(job_, p_, source_.gen);
      PrefixIter it(db_, gen, snapshot_);
      for (; it.it->Valid(); it.it->Next()) {
        RETURN_IF_ERROR(take(it.it->key().ToStringView().substr(gen.size()), it.it->value().ToStringView()));
      }
      RETURN_IF_ERROR(FromRocks(it.it->status(), fmt::format("reading {}[{}]", job_, p_)));
    } else {
      rocksdb::ReadOptions ro;
      ro.snapshot = snapshot_;
      std::string blob;
      for (uint32_t i = 0; i < source_.chunks; ++i) {
        RETURN_IF_ERROR(FromRocks(db_->Get(ro, ChunkKey(job_, p_, source_.snapshot, i), &blob),
                                  fmt::format("reading snapshot {} chunk {} of {}[{}]", source_.snapshot, i, job_, p_)));
        Status taken = absl::OkStatus();
        if (!DecodeSnapshotChunk(blob, [&](std::string_view k, std::string_view v) {
              if (taken.ok()) taken = take(k, v);
            })) {
          return Malformed("a snapshot chunk");
        }
        RETURN_IF_ERROR(taken);
      }
    }
    for (; c != changes_.end(); ++c) {
      if (c->second.has_value()) RETURN_IF_ERROR(emit(c->first, *c->second));
    }
    if (!chunk.empty() || !called) RETURN_IF_ERROR(fn(chunk));
    return absl::OkStatus();
  }

 private:
  Status Malformed(std::string_view what) const {
    return absl::DataLossError(fmt::format("state store {}: {} of {}[{}] is malformed", dir_, what, job_, p_));
  }

  rocksdb::DB* const db_;
  const rocksdb::Snapshot* const snapshot_;
  const std::string dir_;
  const std::string job_;
  const int32_t p_;
  const Source source_;
  Changes changes_;
};

Result<std::unique_ptr<StateStore::FrozenState>> StateStore::Freeze(const std::string& job, int32_t p,
                                                                    int64_t base) {
  ASSIGN_OR_RETURN(std::shared_ptr<Part> part, Loaded(job, p));
  if (part == nullptr || part->meta.folded > base) return nullptr;
  for (int64_t n = part->meta.folded + 1; n <= base; ++n) {
    if (!part->pending.contains(n)) return nullptr;
  }
  // Under the caller's serialisation RocksDB holds exactly the part's state
  // (every call writes one WriteBatch before it returns): the snapshot taken
  // here is the state as of C, and the deltas above it are read through it.
  Frozen::Source source{.disk = part->meta.disk, .gen = part->meta.gen};
  if (!part->meta.disk) {
    source.snapshot = part->meta.snapshot;
    source.chunks = part->meta.chunks;
  }
  auto frozen = std::make_unique<Frozen>(db_, dir_, job, p, source, Frozen::Changes());
  if (!part->meta.disk) {
    // The folded deltas S+1..C, kept in d/ until the next snapshot.
    rocksdb::ReadOptions ro;
    ro.snapshot = frozen->snapshot();
    std::string blob;
    for (int64_t n = part->meta.snapshot + 1; n <= part->meta.folded; ++n) {
      RETURN_IF_ERROR(FromRocks(db_->Get(ro, DeltaKey(job, p, n), &blob),
                                fmt::format("reading the delta of batch {} of {}[{}]", n, job, p)));
      RETURN_IF_ERROR(frozen->Merge(blob, n));
    }
  }
  for (int64_t n = part->meta.folded + 1; n <= base; ++n) RETURN_IF_ERROR(frozen->Merge(part->pending.at(n), n));
  return std::unique_ptr<FrozenState>(std::move(frozen));
}

Result<std::optional<std::vector<Change>>> StateStore::ReadAsOf(const std::string& job, int32_t p, int64_t base) {
  std::vector<Change> out;
  ASSIGN_OR_RETURN(bool held, ReadAsOf(job, p, base, 1 << 20, [&](std::span<const Change> chunk) {
                     out.insert(out.end(), chunk.begin(), chunk.end());
                     return absl::OkStatus();
                   }));
  if (!held) return std::optional<std::vector<Change>>();
  return std::optional<std::vector<Change>>(std::move(out));
}

Result<bool> StateStore::ReadAsOf(const std::string& job, int32_t p, int64_t base, size_t chunk_bytes,
                                  const ChunkFn& fn) {
  ASSIGN_OR_RETURN(std::unique_ptr<FrozenState> frozen, Freeze(job, p, base));
  if (frozen == nullptr) return false;
  RETURN_IF_ERROR(frozen->Read(chunk_bytes, fn));
  return true;
}

}  // namespace sluice::state
