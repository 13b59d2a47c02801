// Shared by state_store.cc (the in-memory layout, the calls) and
// state_store_disk.cc (the disk layout): the partition record and the
// helpers both use. Internal to module sluice::state. Pure functions and a
// struct whose thread rules are StateStore's.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "fmt/format.h"
#include "lib/state/internal/codec.h"
#include "lib/state/state_store.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace sluice::state {
namespace internal {

inline constexpr size_t kChunkBytes = 2 << 20;  // a snapshot chunk ends at the first entry past this
inline constexpr size_t kSnapshotEveryDeltas = 10;  // K: a snapshot once this many folded deltas are kept

inline Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsCorruption()) return absl::DataLossError(fmt::format("state store: {}: {}", what, s.ToString()));
  return absl::InternalError(fmt::format("state store: {}: {}", what, s.ToString()));
}

// The smallest string greater than every string that starts with `prefix`
// (every prefix used here starts with a tag byte below 0xff).
inline std::string Successor(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) prefix.pop_back();
  if (!prefix.empty()) prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
  return prefix;
}

inline void DeletePrefix(rocksdb::WriteBatch* batch, const std::string& prefix) {
  batch->DeleteRange(prefix, Successor(prefix)).PermitUncheckedError();
}

// An iterator over the keys that start with `prefix`, positioned at the first.
// The upper bound it needs lives beside it.
struct PrefixIter {
  std::string upper;
  rocksdb::Slice upper_slice;
  std::unique_ptr<rocksdb::Iterator> it;
  // `snapshot`: read as of it (nullptr: now).
  PrefixIter(rocksdb::DB* db, const std::string& prefix, const rocksdb::Snapshot* snapshot = nullptr)
      : upper(Successor(prefix)), upper_slice(upper) {
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper_slice;
    ro.snapshot = snapshot;
    it.reset(db->NewIterator(ro));
    it->Seek(prefix);
  }
};

using StateMap = std::map<std::string, std::string, std::less<>>;

// Applies one change to `state`, keeping *keys and *bytes.
inline void Apply(StateMap* state, std::string_view key, const std::string_view* value, int64_t* keys, int64_t* bytes) {
  auto it = state->lower_bound(key);
  const bool found = it != state->end() && it->first == key;
  if (value != nullptr) {
    if (found) {
      *bytes += static_cast<int64_t>(value->size()) - static_cast<int64_t>(it->second.size());
      it->second.assign(*value);
    } else {
      state->emplace_hint(it, std::string(key), std::string(*value));
      ++*keys;
      *bytes += static_cast<int64_t>(key.size() + value->size());
    }
  } else if (found) {
    --*keys;
    *bytes -= static_cast<int64_t>(it->first.size() + it->second.size());
    state->erase(it);
  }
}

// Writes the snapshot of `state` as of `s` into `batch`; returns its chunk
// count and adds its bytes to *size.
inline uint32_t PutSnapshot(rocksdb::WriteBatch* batch, std::string_view job, int32_t p, int64_t s, const StateMap& state,
                     int64_t* size) {
  uint32_t chunks = 0;
  std::string chunk;
  std::string body;
  uint64_t count = 0;
  auto flush = [&] {
    chunk.assign(1, kBlobVersion);
    AppendVarint(&chunk, count);
    chunk.append(body);
    batch->Put(ChunkKey(job, p, s, chunks++), chunk).PermitUncheckedError();
    *size += static_cast<int64_t>(chunk.size());
    body.clear();
    count = 0;
  };
  body.reserve(kChunkBytes + 4096);
  for (const auto& [k, v] : state) {
    AppendBytes(&body, k);
    AppendBytes(&body, v);
    ++count;
    if (body.size() >= kChunkBytes) flush();
  }
  if (count > 0) flush();
  return chunks;
}
}  // namespace internal

// One (job, p) held. The stats counters are read by any thread; everything
// else belongs to the caller of this (job, p).
struct StateStore::Part {
  std::atomic<int64_t> keys{0};   // of `state` (of the meta while not loaded)
  std::atomic<int64_t> bytes{0};  // key + value bytes of `state`
  internal::Meta meta;                      // as in m/
  bool loaded = false;            // the fields below are valid
  internal::StateMap state;                 // as of meta.folded
  std::map<int64_t, int64_t> folded_deltas;  // S < N <= C, kept in d/: N -> blob bytes
  std::map<int64_t, std::string> pending;    // N > C: the blob in d/
  int64_t snapshot_bytes = 0;                // of the chunks of snapshot S

  void Unload() {
    loaded = false;
    state.clear();
    folded_deltas.clear();
    pending.clear();
    keys = meta.keys;
    bytes = meta.bytes;
  }
};

// Writes an Install's entries into a fresh generation, chunk by chunk, under
// a g/ marker; Commit switches m/ to it and deletes the old contents and the
// marker in one WriteBatch. Destroyed without Commit it deletes its
// generation; after a crash Open does (state_store_disk.cc).
class StateStore::DiskInstaller final : public StateStore::Installer {
 public:
  DiskInstaller(StateStore* store, std::string job, int32_t p, int64_t base, uint64_t gen, bool distinct_keys)
      : store_(store), job_(std::move(job)), p_(p), base_(base), gen_(gen),
        prefix_(internal::GenPrefix(job_, p_, gen)), distinct_keys_(distinct_keys) {}
  ~DiskInstaller() override;
  [[nodiscard]] Status Start();
  Status Add(std::span<const Change> entries) override;
  Status Commit() override;

 private:
  StateStore* const store_;
  const std::string job_;
  const int32_t p_;
  const int64_t base_;
  const uint64_t gen_;
  const std::string prefix_;
  const bool distinct_keys_;  // no key is added twice: no lookups
  bool started_ = false;
  bool committed_ = false;
  std::string last_;  // the greatest key added: a key not above it may be there already
  bool any_ = false;
  int64_t keys_ = 0;
  int64_t bytes_ = 0;
};

}  // namespace sluice::state
