#include "lib/state/state_store.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "rocksdb/convenience.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "spdlog/spdlog.h"

namespace sluice::state {
namespace {

constexpr char kMeta = 'm';
constexpr char kState = 's';
constexpr char kDelta = 'd';
constexpr char kMarker = 'e';
constexpr char kValueTag = 'v';
constexpr char kTombstone = 't';

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsCorruption()) return absl::DataLossError(fmt::format("state store: {}: {}", what, s.ToString()));
  return absl::InternalError(fmt::format("state store: {}: {}", what, s.ToString()));
}

void AppendU32(std::string* out, uint32_t x) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>((x >> (8 * i)) & 0xff));
}
void AppendU64(std::string* out, uint64_t x) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((x >> (8 * i)) & 0xff));
}
uint64_t ReadU(const char* p, int n) {
  uint64_t x = 0;
  for (int i = 0; i < n; ++i) x = (x << 8) | static_cast<unsigned char>(p[i]);
  return x;
}
// Signed integers with the sign bit flipped: byte order = numeric order.
void AppendI32(std::string* out, int32_t x) { AppendU32(out, static_cast<uint32_t>(x) ^ 0x80000000u); }
void AppendI64(std::string* out, int64_t x) { AppendU64(out, static_cast<uint64_t>(x) ^ 0x8000000000000000ull); }
int32_t ReadI32(const char* p) { return static_cast<int32_t>(static_cast<uint32_t>(ReadU(p, 4)) ^ 0x80000000u); }
int64_t ReadI64(const char* p) { return static_cast<int64_t>(ReadU(p, 8) ^ 0x8000000000000000ull); }

std::string JobPrefix(char tag, std::string_view job) {
  std::string k(1, tag);
  AppendU32(&k, static_cast<uint32_t>(job.size()));
  k.append(job);
  return k;
}
std::string PartPrefix(char tag, std::string_view job, int32_t p) {
  std::string k = JobPrefix(tag, job);
  AppendI32(&k, p);
  return k;
}
std::string BatchPrefix(char tag, std::string_view job, int32_t p, int64_t n) {
  std::string k = PartPrefix(tag, job, p);
  AppendI64(&k, n);
  return k;
}
std::string StateKey(std::string_view job, int32_t p, std::string_view key) {
  std::string k = PartPrefix(kState, job, p);
  k.append(key);
  return k;
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

// Decodes the (job, p) of a key of any tag; the bytes after them go to
// *rest. False if the key is malformed.
bool DecodePart(const rocksdb::Slice& k, std::string* job, int32_t* p, rocksdb::Slice* rest) {
  if (k.size() < 9) return false;
  const uint64_t len = ReadU(k.data() + 1, 4);
  if (k.size() < 9 + len) return false;
  job->assign(k.data() + 5, len);
  *p = ReadI32(k.data() + 5 + len);
  *rest = rocksdb::Slice(k.data() + 9 + len, k.size() - 9 - len);
  return true;
}

std::string EncodeBatch(int64_t n) {
  std::string v;
  AppendI64(&v, n);
  return v;
}

Result<int64_t> DecodeBatch(const std::string& v, std::string_view job, int32_t p) {
  if (v.size() != 8) return absl::DataLossError(fmt::format("state store: malformed m/ of {}[{}]", job, p));
  return ReadI64(v.data());
}

// An iterator over the keys that start with `prefix`, positioned at the first.
// The upper bound it needs lives beside it.
struct PrefixIter {
  std::string upper;
  rocksdb::Slice upper_slice;
  std::unique_ptr<rocksdb::Iterator> it;
  PrefixIter(rocksdb::DB* db, const std::string& prefix)
      : upper(Successor(prefix)), upper_slice(upper) {
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper_slice;
    it.reset(db->NewIterator(ro));
    it->Seek(prefix);
  }
};

}  // namespace

Result<std::unique_ptr<StateStore>> StateStore::Open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);  // RocksDB makes only the last level
  rocksdb::Options options;
  options.create_if_missing = true;
  const std::vector<rocksdb::CompressionType> supported = rocksdb::GetSupportedCompressions();
  options.compression = std::find(supported.begin(), supported.end(), rocksdb::kLZ4Compression) != supported.end()
                            ? rocksdb::kLZ4Compression
                            : rocksdb::kNoCompression;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &db);
  if (!s.ok()) return FromRocks(s, fmt::format("cannot open {}", dir));
  return std::unique_ptr<StateStore>(new StateStore(dir, db));
}

StateStore::~StateStore() {
  db_->Close().PermitUncheckedError();
  delete db_;
}

Status StateStore::Commit(rocksdb::WriteBatch* batch, const std::function<void(StatsMap&)>& update,
                          std::string_view what) {
  std::shared_lock<std::shared_mutex> gate(write_gate_);
  // RocksDB's WAL, not synced: survives kill -9 (see the header).
  RETURN_IF_ERROR(FromRocks(db_->Write(rocksdb::WriteOptions(), batch), fmt::format("{} in {}", what, dir_)));
  std::lock_guard<std::mutex> lock(stats_mu_);
  if (stats_loaded_) update(stats_);
  return absl::OkStatus();
}

Result<std::optional<int64_t>> StateStore::FoldedBatch(const std::string& job, int32_t p) {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), PartPrefix(kMeta, job, p), &v);
  if (s.IsNotFound()) return std::optional<int64_t>();
  RETURN_IF_ERROR(FromRocks(s, fmt::format("reading m/ of {}[{}]", job, p)));
  ASSIGN_OR_RETURN(int64_t c, DecodeBatch(v, job, p));
  return std::optional<int64_t>(c);
}

Result<std::optional<std::vector<Change>>> StateStore::ReadAsOf(const std::string& job, int32_t p, int64_t base) {
  using Out = std::optional<std::vector<Change>>;
  ASSIGN_OR_RETURN(std::optional<int64_t> folded, FoldedBatch(job, p));
  if (!folded.has_value() || *folded > base) return Out();
  for (int64_t n = *folded + 1; n <= base; ++n) {
    ASSIGN_OR_RETURN(bool complete, HasMarker(job, p, n));
    if (!complete) return Out();
  }
  std::map<std::string, std::string> state;
  RETURN_IF_ERROR(Scan(job, p, "", [&](std::string_view k, std::string_view v) {
    state.emplace(std::string(k), std::string(v));
    return true;
  }));
  for (int64_t n = *folded + 1; n <= base; ++n) {
    ASSIGN_OR_RETURN(std::vector<Change> delta, ReadDelta(job, p, n));
    for (Change& c : delta) {
      if (c.value.has_value()) {
        state[c.key] = std::move(*c.value);
      } else {
        state.erase(c.key);
      }
    }
  }
  std::vector<Change> out;
  out.reserve(state.size());
  for (auto& [k, v] : state) out.push_back({k, std::move(v)});
  return Out(std::move(out));
}

Result<bool> StateStore::HasMarker(const std::string& job, int32_t p, int64_t batch) {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), BatchPrefix(kMarker, job, p, batch), &v);
  if (s.IsNotFound()) return false;
  RETURN_IF_ERROR(FromRocks(s, fmt::format("reading the marker of {}[{}] batch {}", job, p, batch)));
  return true;
}

Result<bool> StateStore::Prepare(const std::string& job, int32_t p, int64_t base) {
  if (base < -1) return absl::InvalidArgumentError(fmt::format("state store: Prepare at batch {}", base));
  const PartId id{job, p};
  ASSIGN_OR_RETURN(std::optional<int64_t> folded, FoldedBatch(job, p));
  if (!folded.has_value()) {
    if (base != -1) return false;
    rocksdb::WriteBatch batch;
    for (char tag : {kState, kDelta, kMarker}) DeletePrefix(&batch, PartPrefix(tag, job, p));
    batch.Put(PartPrefix(kMeta, job, p), EncodeBatch(-1)).PermitUncheckedError();
    RETURN_IF_ERROR(Commit(&batch, [&](StatsMap& m) { m[id] = PartStats{}; },
                           fmt::format("creating {}[{}]", job, p)));
    return true;
  }
  const int64_t c = *folded;
  if (c > base) return false;
  for (int64_t n = c + 1; n <= base; ++n) {
    ASSIGN_OR_RETURN(bool complete, HasMarker(job, p, n));
    if (!complete) return false;
  }

  // The changes of deltas c+1..base, the later batch winning per key. Every
  // marker is there, so every delta is whole (entries and marker are written
  // together).
  std::map<std::string, std::optional<std::string>> changes;
  const std::string delta_prefix = PartPrefix(kDelta, job, p);
  // Every delta and marker entry is removed one by one, not with a range
  // deletion: RocksDB 7 re-reads the memtable's range tombstones on every
  // Get, so one DeleteRange per batch made each batch's reads slower than
  // the last (measured: processing 1 s -> 5 s over 7 batches).
  std::vector<std::string> remove;
  {
    // Everything up to c was removed by the fold that made c: start after
    // it, not among that fold's deletions.
    PrefixIter e(db_, PartPrefix(kMarker, job, p));
    e.it->Seek(BatchPrefix(kMarker, job, p, c + 1));
    for (; e.it->Valid(); e.it->Next()) remove.push_back(e.it->key().ToString());
    RETURN_IF_ERROR(FromRocks(e.it->status(), fmt::format("reading the markers of {}[{}]", job, p)));
    PrefixIter d(db_, delta_prefix);
    const std::string first = BatchPrefix(kDelta, job, p, c + 1);
    const std::string end = BatchPrefix(kDelta, job, p, base + 1);
    d.it->Seek(first);
    for (; d.it->Valid(); d.it->Next()) {
      const rocksdb::Slice k = d.it->key();
      remove.push_back(k.ToString());
      if (k.compare(first) < 0 || k.compare(end) >= 0) continue;  // not c+1..base: a stale attempt
      const rocksdb::Slice v = d.it->value();
      std::string key(k.data() + delta_prefix.size() + 8, k.size() - delta_prefix.size() - 8);
      if (v.size() == 1 && v[0] == kTombstone) {
        changes[std::move(key)] = std::nullopt;
      } else if (v.size() >= 1 && v[0] == kValueTag) {
        changes[std::move(key)] = std::string(v.data() + 1, v.size() - 1);
      } else {
        return absl::DataLossError(fmt::format("state store: malformed delta entry of {}[{}]", job, p));
      }
    }
    RETURN_IF_ERROR(FromRocks(d.it->status(), fmt::format("reading the deltas of {}[{}]", job, p)));
  }
  if (remove.empty() && base == c) return true;  // nothing to fold or remove

  rocksdb::WriteBatch batch;
  int64_t dkeys = 0;
  int64_t dbytes = 0;
  for (const auto& [key, value] : changes) {
    const std::string skey = StateKey(job, p, key);
    std::string old;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), skey, &old);
    if (s.ok()) {
      --dkeys;
      dbytes -= static_cast<int64_t>(key.size() + old.size());
    } else if (!s.IsNotFound()) {
      return FromRocks(s, fmt::format("reading s/ of {}[{}]", job, p));
    }
    if (value.has_value()) {
      ++dkeys;
      dbytes += static_cast<int64_t>(key.size() + value->size());
      batch.Put(skey, *value).PermitUncheckedError();
    } else if (s.ok()) {
      batch.Delete(skey).PermitUncheckedError();
    }
  }
  for (const std::string& k : remove) batch.Delete(k).PermitUncheckedError();
  batch.Put(PartPrefix(kMeta, job, p), EncodeBatch(base)).PermitUncheckedError();
  RETURN_IF_ERROR(Commit(
      &batch,
      [&](StatsMap& m) {
        PartStats& st = m[id];
        st.keys += dkeys;
        st.bytes += dbytes;
      },
      fmt::format("folding {}[{}] to batch {}", job, p, base)));
  return true;
}

Result<std::optional<std::string>> StateStore::Get(const std::string& job, int32_t p, std::string_view key) {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), StateKey(job, p, key), &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  RETURN_IF_ERROR(FromRocks(s, fmt::format("reading s/ of {}[{}]", job, p)));
  return std::optional<std::string>(std::move(v));
}

Status StateStore::Scan(const std::string& job, int32_t p, std::string_view prefix,
                        const std::function<bool(std::string_view key, std::string_view value)>& fn) {
  const std::string part = PartPrefix(kState, job, p);
  PrefixIter s(db_, StateKey(job, p, prefix));
  for (; s.it->Valid(); s.it->Next()) {
    const rocksdb::Slice k = s.it->key();
    const rocksdb::Slice v = s.it->value();
    if (!fn(std::string_view(k.data() + part.size(), k.size() - part.size()), std::string_view(v.data(), v.size()))) {
      return absl::OkStatus();
    }
  }
  return FromRocks(s.it->status(), fmt::format("scanning s/ of {}[{}]", job, p));
}

Status StateStore::WriteDelta(const std::string& job, int32_t p, int64_t n, std::span<const Change> changes) {
  ASSIGN_OR_RETURN(std::optional<int64_t> folded, FoldedBatch(job, p));
  if (!folded.has_value()) {
    return absl::FailedPreconditionError(
        fmt::format("state store: no state for {}[{}] to write the delta of batch {} on", job, p, n));
  }
  if (n <= *folded) {
    return absl::FailedPreconditionError(
        fmt::format("state store: delta of batch {} for {}[{}], which is folded to batch {}", n, job, p, *folded));
  }
  const std::string prefix = BatchPrefix(kDelta, job, p, n);
  rocksdb::WriteBatch batch;
  {
    // An earlier attempt of batch n, removed key by key (see Prepare: no
    // range deletions on the per-batch path).
    PrefixIter old(db_, prefix);
    for (; old.it->Valid(); old.it->Next()) batch.Delete(old.it->key()).PermitUncheckedError();
    RETURN_IF_ERROR(FromRocks(old.it->status(), fmt::format("reading the delta of {}[{}] batch {}", job, p, n)));
  }
  std::string k;
  std::string v;
  for (const Change& c : changes) {
    k.assign(prefix).append(c.key);
    if (c.value.has_value()) {
      v.assign(1, kValueTag).append(*c.value);
    } else {
      v.assign(1, kTombstone);
    }
    batch.Put(k, v).PermitUncheckedError();
  }
  batch.Put(BatchPrefix(kMarker, job, p, n), "").PermitUncheckedError();
  return Commit(&batch, [](StatsMap&) {}, fmt::format("writing the delta of {}[{}] batch {}", job, p, n));
}

Result<std::vector<Change>> StateStore::ReadDelta(const std::string& job, int32_t p, int64_t n) {
  ASSIGN_OR_RETURN(bool complete, HasMarker(job, p, n));
  if (!complete) {
    return absl::NotFoundError(fmt::format("state store: no complete delta of {}[{}] batch {}", job, p, n));
  }
  const std::string prefix = BatchPrefix(kDelta, job, p, n);
  std::vector<Change> out;
  PrefixIter d(db_, prefix);
  for (; d.it->Valid(); d.it->Next()) {
    const rocksdb::Slice k = d.it->key();
    const rocksdb::Slice v = d.it->value();
    Change c{.key = std::string(k.data() + prefix.size(), k.size() - prefix.size())};
    if (v.size() >= 1 && v[0] == kValueTag) {
      c.value = std::string(v.data() + 1, v.size() - 1);
    } else if (!(v.size() == 1 && v[0] == kTombstone)) {
      return absl::DataLossError(fmt::format("state store: malformed delta entry of {}[{}]", job, p));
    }
    out.push_back(std::move(c));
  }
  RETURN_IF_ERROR(FromRocks(d.it->status(), fmt::format("reading the delta of {}[{}] batch {}", job, p, n)));
  return out;
}

Status StateStore::Install(const std::string& job, int32_t p, int64_t base, std::span<const Change> entries) {
  if (base < -1) return absl::InvalidArgumentError(fmt::format("state store: Install at batch {}", base));
  rocksdb::WriteBatch batch;
  for (char tag : {kState, kDelta, kMarker}) DeletePrefix(&batch, PartPrefix(tag, job, p));
  bool sorted = true;
  PartStats st;
  std::string k;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Change& e = entries[i];
    if (!e.value.has_value()) {
      return absl::InvalidArgumentError(
          fmt::format("state store: Install of {}[{}] with an erased key", job, p));
    }
    if (i > 0 && !(entries[i - 1].key < e.key)) sorted = false;
    ++st.keys;
    st.bytes += static_cast<int64_t>(e.key.size() + e.value->size());
    k.assign(PartPrefix(kState, job, p)).append(e.key);
    batch.Put(k, *e.value).PermitUncheckedError();
  }
  if (!sorted) {  // a key given twice: the later Put wins, count it once
    std::map<std::string_view, const std::string*> last;
    for (const Change& e : entries) last[e.key] = &*e.value;
    st = PartStats{};
    for (const auto& [key, value] : last) {
      ++st.keys;
      st.bytes += static_cast<int64_t>(key.size() + value->size());
    }
  }
  batch.Put(PartPrefix(kMeta, job, p), EncodeBatch(base)).PermitUncheckedError();
  return Commit(&batch, [&](StatsMap& m) { m[PartId{job, p}] = st; },
                fmt::format("installing {}[{}] at batch {}", job, p, base));
}

Status StateStore::Drop(const std::string& job, int32_t p) {
  rocksdb::WriteBatch batch;
  for (char tag : {kMeta, kState, kDelta, kMarker}) DeletePrefix(&batch, PartPrefix(tag, job, p));
  return Commit(&batch, [&](StatsMap& m) { m.erase(PartId{job, p}); }, fmt::format("dropping {}[{}]", job, p));
}

Status StateStore::DropJob(const std::string& job) {
  rocksdb::WriteBatch batch;
  for (char tag : {kMeta, kState, kDelta, kMarker}) DeletePrefix(&batch, JobPrefix(tag, job));
  return Commit(
      &batch,
      [&](StatsMap& m) {
        auto it = m.lower_bound(PartId{job, INT32_MIN});
        while (it != m.end() && it->first.first == job) it = m.erase(it);
      },
      fmt::format("dropping job {}", job));
}

Result<std::vector<std::pair<std::string, int32_t>>> StateStore::Partitions() {
  std::vector<std::pair<std::string, int32_t>> out;
  PrefixIter m(db_, std::string(1, kMeta));
  for (; m.it->Valid(); m.it->Next()) {
    std::string job;
    int32_t p = 0;
    rocksdb::Slice rest;
    if (!DecodePart(m.it->key(), &job, &p, &rest) || !rest.empty()) {
      return absl::DataLossError(fmt::format("state store: malformed m/ key in {}", dir_));
    }
    out.emplace_back(std::move(job), p);
  }
  RETURN_IF_ERROR(FromRocks(m.it->status(), "listing partitions"));
  std::sort(out.begin(), out.end());  // stored by job length first
  return out;
}

Result<StateStore::StatsMap> StateStore::ScanStats() {
  StatsMap out;
  ASSIGN_OR_RETURN(auto parts, Partitions());
  for (auto& id : parts) out.emplace(std::move(id), PartStats{});
  PrefixIter s(db_, std::string(1, kState));
  std::string job;
  int32_t p = 0;
  PartStats* current = nullptr;
  std::string current_prefix;  // of the partition `current` counts
  for (; s.it->Valid(); s.it->Next()) {
    const rocksdb::Slice k = s.it->key();
    if (current == nullptr || !k.starts_with(current_prefix)) {
      rocksdb::Slice rest;
      if (!DecodePart(k, &job, &p, &rest)) {
        return absl::DataLossError(fmt::format("state store: malformed s/ key in {}", dir_));
      }
      // (No call writes s/ without m/; such entries would still be counted.)
      current = &out[PartId{job, p}];
      current_prefix = PartPrefix(kState, job, p);
    }
    ++current->keys;
    current->bytes += static_cast<int64_t>(k.size() - current_prefix.size() + s.it->value().size());
  }
  RETURN_IF_ERROR(FromRocks(s.it->status(), "scanning s/ for stats"));
  return out;
}

StateStats StateStore::SumLocked(const std::string& job) const {
  StateStats out;
  for (auto it = stats_.lower_bound(PartId{job, INT32_MIN}); it != stats_.end() && it->first.first == job; ++it) {
    ++out.partitions;
    out.keys += it->second.keys;
    out.bytes += it->second.bytes;
  }
  return out;
}

StateStats StateStore::Stats(const std::string& job) {
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    if (stats_loaded_) return SumLocked(job);
  }
  std::unique_lock<std::shared_mutex> gate(write_gate_);  // no write between the scan and its numbers
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    if (stats_loaded_) return SumLocked(job);
  }
  Result<StatsMap> scanned = ScanStats();
  if (!scanned.ok()) {
    spdlog::error("state store {}: cannot compute stats: {}", dir_, scanned.status().ToString());
    return StateStats{};
  }
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_ = std::move(*scanned);
  stats_loaded_ = true;
  return SumLocked(job);
}

StateStats StateStore::PartitionStats(const std::string& job, int32_t p) {
  (void)Stats(job);  // loads the numbers on first use
  std::lock_guard<std::mutex> lock(stats_mu_);
  StateStats out;
  auto it = stats_.find(PartId{job, p});
  if (it == stats_.end()) return out;
  out.partitions = 1;
  out.keys = it->second.keys;
  out.bytes = it->second.bytes;
  return out;
}

}  // namespace sluice::state
