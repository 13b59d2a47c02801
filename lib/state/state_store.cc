#include "lib/state/state_store.h"

#include <algorithm>
#include <atomic>
#include <map>

#include "lib/common/version.h"
#include "lib/state/internal/codec.h"
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


constexpr size_t kChunkBytes = 2 << 20;  // a snapshot chunk ends at the first entry past this
constexpr size_t kSnapshotEveryDeltas = 10;  // K: a snapshot once this many folded deltas are kept

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsCorruption()) return absl::DataLossError(fmt::format("state store: {}: {}", what, s.ToString()));
  return absl::InternalError(fmt::format("state store: {}: {}", what, s.ToString()));
}

// The smallest string greater than every string that starts with `prefix`
// (every prefix used here starts with a tag byte below 0xff).
std::string Successor(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) prefix.pop_back();
  if (!prefix.empty()) prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
  return prefix;
}

void DeletePrefix(rocksdb::WriteBatch* batch, const std::string& prefix) {
  batch->DeleteRange(prefix, Successor(prefix)).PermitUncheckedError();
}

// An iterator over the keys that start with `prefix`, positioned at the first.
// The upper bound it needs lives beside it.
struct PrefixIter {
  std::string upper;
  rocksdb::Slice upper_slice;
  std::unique_ptr<rocksdb::Iterator> it;
  PrefixIter(rocksdb::DB* db, const std::string& prefix) : upper(Successor(prefix)), upper_slice(upper) {
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper_slice;
    it.reset(db->NewIterator(ro));
    it->Seek(prefix);
  }
};

using StateMap = std::map<std::string, std::string, std::less<>>;

// Applies one change to `state`, keeping *keys and *bytes.
void Apply(StateMap* state, std::string_view key, const std::string_view* value, int64_t* keys, int64_t* bytes) {
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
uint32_t PutSnapshot(rocksdb::WriteBatch* batch, std::string_view job, int32_t p, int64_t s, const StateMap& state,
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

// One (job, p) held. The stats counters are read by any thread; everything
// else belongs to the caller of this (job, p).
struct StateStore::Part {
  std::atomic<int64_t> keys{0};   // of `state` (of the meta while not loaded)
  std::atomic<int64_t> bytes{0};  // key + value bytes of `state`
  Meta meta;                      // as in m/
  bool loaded = false;            // the fields below are valid
  StateMap state;                 // as of meta.folded
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

Result<std::unique_ptr<StateStore>> StateStore::Open(const std::string& dir, rocksdb::Env* env) {
  rocksdb::Options options;
  options.create_if_missing = true;
  // Deltas and snapshots are written once per batch; the in-memory copy of
  // the state serves reads (state_store.h), so the cache is small.
  // RocksDB's memtables (64 MiB, two; smaller ones changed how a full disk
  // is met, see wal_store.cc).
  storage::ApplyMemoryBudget({.memtable_bytes = 64 << 20, .memtables = 2, .block_cache_bytes = 8 << 20}, &options);
  const std::vector<rocksdb::CompressionType> supported = rocksdb::GetSupportedCompressions();
  options.compression = std::find(supported.begin(), supported.end(), rocksdb::kLZ4Compression) != supported.end()
                            ? rocksdb::kLZ4Compression
                            : rocksdb::kNoCompression;
  auto health = storage::StoreHealth::Create({.name = fmt::format("the state store at {}", dir)});
  Result<std::unique_ptr<rocksdb::DB>> owned = storage::OpenRocksDb(dir, options, env, health);
  if (!owned.ok()) return Annotate(owned.status(), "state store");
  rocksdb::DB* db = owned->get();
  PartTable parts;
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
      auto part = std::make_shared<Part>();
      part->meta = meta;
      part->Unload();
      parts.emplace(PartId{std::move(job), p}, std::move(part));
    }
    return FromRocks(m.it->status(), fmt::format("listing the partitions in {}", dir));
  }();
  if (!loaded.ok()) {
    health->Detach();  // before the database closes
    return loaded;
  }
  return std::unique_ptr<StateStore>(new StateStore(dir, owned->release(), std::move(health), std::move(parts)));
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
  return absl::OkStatus();
}

Result<std::optional<int64_t>> StateStore::FoldedBatch(const std::string& job, int32_t p) {
  std::shared_ptr<Part> part = Find(job, p);
  if (part == nullptr) return std::optional<int64_t>();
  return std::optional<int64_t>(part->meta.folded);
}

Result<std::optional<std::vector<Change>>> StateStore::ReadAsOf(const std::string& job, int32_t p, int64_t base) {
  using Out = std::optional<std::vector<Change>>;
  ASSIGN_OR_RETURN(std::shared_ptr<Part> part, Loaded(job, p));
  if (part == nullptr || part->meta.folded > base) return Out();
  // The changes of deltas C+1..base, the later batch winning per key.
  std::map<std::string_view, std::optional<std::string_view>> changes;
  for (int64_t n = part->meta.folded + 1; n <= base; ++n) {
    auto it = part->pending.find(n);
    if (it == part->pending.end()) return Out();
    if (!DecodeDelta(it->second, [&](std::string_view key, const std::string_view* value) {
          changes[key] = value != nullptr ? std::optional<std::string_view>(*value) : std::nullopt;
        })) {
      return absl::DataLossError(
          fmt::format("state store {}: the delta of batch {} of {}[{}] is malformed", dir_, n, job, p));
    }
  }
  std::vector<Change> out;
  out.reserve(part->state.size() + changes.size());
  auto s = part->state.begin();
  auto c = changes.begin();
  while (s != part->state.end() || c != changes.end()) {
    if (c == changes.end() || (s != part->state.end() && std::string_view(s->first) < c->first)) {
      out.push_back(Change{s->first, s->second});
      ++s;
      continue;
    }
    if (c->second.has_value()) out.push_back(Change{std::string(c->first), std::string(*c->second)});
    if (s != part->state.end() && std::string_view(s->first) == c->first) ++s;
    ++c;
  }
  return Out(std::move(out));
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
  const bool snapshot = base > meta.snapshot && (folded_deltas.size() >= kSnapshotEveryDeltas ||
                                                 kept_bytes > part->snapshot_bytes);
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
  auto it = part->state.find(key);
  if (it == part->state.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

Status StateStore::Scan(const std::string& job, int32_t p, std::string_view prefix,
                        const std::function<bool(std::string_view key, std::string_view value)>& fn) {
  ASSIGN_OR_RETURN(std::shared_ptr<Part> part, Loaded(job, p));
  if (part == nullptr) return absl::OkStatus();
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

Status StateStore::Install(const std::string& job, int32_t p, int64_t base, std::span<const Change> entries) {
  if (base < -1) return absl::InvalidArgumentError(fmt::format("state store: Install at batch {}", base));
  auto part = std::make_shared<Part>();
  int64_t keys = 0;
  int64_t bytes = 0;
  for (const Change& e : entries) {
    if (!e.value.has_value()) {
      return absl::InvalidArgumentError(fmt::format("state store: Install of {}[{}] with an erased key", job, p));
    }
    const std::string_view v = *e.value;
    Apply(&part->state, e.key, &v, &keys, &bytes);  // of a key given twice the later wins
  }
  rocksdb::WriteBatch batch;
  std::shared_ptr<Part> old = Find(job, p);
  if (old != nullptr && old->loaded) {  // every key it has in RocksDB is known
    for (uint32_t i = 0; i < old->meta.chunks; ++i) {
      batch.Delete(ChunkKey(job, p, old->meta.snapshot, i)).PermitUncheckedError();
    }
    for (const auto& [n, size] : old->folded_deltas) batch.Delete(DeltaKey(job, p, n)).PermitUncheckedError();
    for (const auto& [n, blob] : old->pending) batch.Delete(DeltaKey(job, p, n)).PermitUncheckedError();
  } else if (old != nullptr) {  // rare (an Install before any other call since Open)
    for (char tag : {kSnapshot, kDelta}) DeletePrefix(&batch, PartPrefix(tag, job, p));
  }
  Meta& meta = part->meta;
  meta.folded = base;
  meta.snapshot = base;
  meta.keys = keys;
  meta.bytes = bytes;
  meta.chunks = PutSnapshot(&batch, job, p, base, part->state, &part->snapshot_bytes);
  batch.Put(PartPrefix(kMeta, job, p), EncodeMeta(meta)).PermitUncheckedError();
  RETURN_IF_ERROR(Write(&batch, fmt::format("installing {}[{}] at batch {}", job, p, base)));
  part->keys = keys;
  part->bytes = bytes;
  part->loaded = true;
  Put(PartId{job, p}, std::move(part));
  return absl::OkStatus();
}

Status StateStore::Drop(const std::string& job, int32_t p) {
  rocksdb::WriteBatch batch;
  for (char tag : {kMeta, kSnapshot, kDelta}) DeletePrefix(&batch, PartPrefix(tag, job, p));
  RETURN_IF_ERROR(Write(&batch, fmt::format("dropping {}[{}]", job, p)));
  std::lock_guard<std::mutex> lock(mu_);
  parts_.erase(PartId{job, p});
  return absl::OkStatus();
}

Status StateStore::DropJob(const std::string& job) {
  rocksdb::WriteBatch batch;
  for (char tag : {kMeta, kSnapshot, kDelta}) DeletePrefix(&batch, JobPrefix(tag, job));
  RETURN_IF_ERROR(Write(&batch, fmt::format("dropping job {}", job)));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = parts_.lower_bound(PartId{job, INT32_MIN});
  while (it != parts_.end() && it->first.first == job) it = parts_.erase(it);
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
