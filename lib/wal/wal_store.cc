#include "lib/wal/wal_store.h"

#include <charconv>

#include "lib/common/version.h"
#include "lib/storage/rocksdb_open.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace sluice::wal {
namespace {

constexpr char kSnapshotKey[] = "S";
constexpr char kFenceKey[] = "F";
constexpr char kCommitKey[] = "C";

Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsCorruption()) return absl::DataLossError(fmt::format("{}: {}", what, s.ToString()));
  if (s.IsNotFound()) return absl::NotFoundError(fmt::format("{}: {}", what, s.ToString()));
  // A full disk: retried by the caller, and the store resumes by itself once
  // there is room (StoreHealth).
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(fmt::format("{}: {}", what, s.ToString()));
  return absl::InternalError(fmt::format("{}: {}", what, s.ToString()));
}

// The seq of a record key (RecordKey); -1 for a key of the wrong size.
int64_t SeqFromKey(const rocksdb::Slice& key) {
  if (key.size() != 9) return -1;
  int64_t seq = 0;
  for (size_t i = 1; i < 9; ++i) seq = (seq << 8) | static_cast<uint8_t>(key[i]);
  return seq;
}

}  // namespace

Status CheckSnapshotFormat(const proto::WalSnapshot& snapshot) {
  return version::CheckReadable(fmt::format("the WAL snapshot at {}", snapshot.last_seq()),
                                static_cast<int>(snapshot.format()), version::kWalFormat);
}

Status CheckRecordFormat(const proto::WalRecord& record) {
  return version::CheckReadable(fmt::format("WAL record {}", record.seq()), static_cast<int>(record.format()),
                                version::kWalFormat);
}

proto::WalFormat WrittenFormat() { return static_cast<proto::WalFormat>(version::kWalFormat); }

std::string RecordKey(int64_t seq) {
  std::string key(9, 'R');
  for (int i = 8; i >= 1; --i) {
    key[i] = static_cast<char>(seq & 0xff);
    seq >>= 8;
  }
  return key;
}

Result<std::unique_ptr<WalStore>> WalStore::Open(const Options& options) {
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.paranoid_checks = true;
  // RocksDB's memtables (64 MiB, two): with 4 MiB ones, a WAL whose disk
  // filled was resumed while still full and the next write tripped an
  // assertion in librocksdb (docs/coordination.md, "Under repeated faults").
  // A small block cache: records are read back rarely.
  storage::ApplyMemoryBudget({.memtable_bytes = 64 << 20, .memtables = 2, .block_cache_bytes = 4 << 20}, &db_options);
  std::shared_ptr<storage::StoreHealth> health = storage::StoreHealth::Create(
      {.name = fmt::format("the WAL at {}", options.path), .retry_interval = options.resume_interval});
  Result<std::unique_ptr<rocksdb::DB>> db = storage::OpenRocksDb(options.path, db_options, options.env, health);
  if (!db.ok()) return Annotate(db.status(), "opening the WAL");
  std::unique_ptr<WalStore> store(new WalStore(options, db->release(), std::move(health)));
  RETURN_IF_ERROR(store->Load());
  return store;
}

WalStore::~WalStore() {
  health_->Detach();
  db_->Close().PermitUncheckedError();
  delete db_;
}

Status WalStore::WriteResult(const rocksdb::Status& s, const std::string& what) {
  health_->Report(s);
  return FromRocks(s, what);
}

Status WalStore::Load() {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), kSnapshotKey, &value);
  if (s.ok()) {
    proto::WalSnapshot snap;
    if (!snap.ParseFromString(value)) {
      return absl::DataLossError(fmt::format("WAL at {}: the snapshot is unreadable", options_.path));
    }
    RETURN_IF_ERROR_PREPEND(CheckSnapshotFormat(snap), fmt::format("WAL at {}", options_.path));
    snapshot_seq_ = snap.last_seq();
    last_seq_ = snap.last_seq();
    last_epoch_ = snap.last_epoch();
    snapshot_ = std::move(snap);
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "reading the WAL snapshot");
  }
  for (auto [key, target] : {std::pair{kFenceKey, &fence_}, std::pair{kCommitKey, &commit_seq_}}) {
    s = db_->Get(rocksdb::ReadOptions(), key, &value);
    if (s.ok()) {
      int64_t v = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec != std::errc() || end != value.data() + value.size()) {
        return absl::DataLossError(fmt::format("WAL at {}: the {} value '{}' is not a number", options_.path,
                                               key == kFenceKey ? "fence" : "commit", value.substr(0, 32)));
      }
      *target = v;
    } else if (!s.IsNotFound()) {
      return FromRocks(s, "reading WAL metadata");
    }
  }
  rocksdb::ReadOptions ro;
  ro.verify_checksums = true;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  int64_t expected = snapshot_seq_ + 1;
  for (it->Seek(RecordKey(0)); it->Valid() && it->key().starts_with("R"); it->Next()) {
    const int64_t seq = SeqFromKey(it->key());
    if (seq < 0) {
      return absl::DataLossError(
          fmt::format("WAL at {}: a record key of {} bytes is malformed", options_.path, it->key().size()));
    }
    if (seq <= snapshot_seq_) continue;  // compaction's delete not yet visible: covered
    if (seq != expected) {
      return absl::DataLossError(fmt::format(
          "WAL at {}: record {} is missing (next present is {})", options_.path, expected, seq));
    }
    proto::WalRecord record;
    if (!record.ParseFromArray(it->value().data(), static_cast<int>(it->value().size())) ||
        record.seq() != seq) {
      return absl::DataLossError(
          fmt::format("WAL at {}: record {} is unreadable", options_.path, seq));
    }
    RETURN_IF_ERROR_PREPEND(CheckRecordFormat(record), fmt::format("WAL at {}", options_.path));
    last_seq_ = seq;
    last_epoch_ = record.epoch();
    ++expected;
  }
  if (!it->status().ok()) {
    return FromRocks(it->status(), fmt::format("WAL at {}: reading record {}", options_.path, expected));
  }
  return absl::OkStatus();
}

Status WalStore::Append(const std::vector<proto::WalRecord>& records) {
  if (records.empty()) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(write_mu_);
  int64_t next = last_seq_ + 1;
  rocksdb::WriteBatch batch;
  std::string buf;
  for (const proto::WalRecord& r : records) {
    if (r.seq() != next) {
      return absl::InternalError(fmt::format("WAL append out of order: got {}, expected {}", r.seq(), next));
    }
    r.SerializeToString(&buf);
    batch.Put(RecordKey(r.seq()), buf);
    ++next;
  }
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  RETURN_IF_ERROR(WriteResult(db_->Write(wo, &batch), "appending to the WAL"));
  last_epoch_ = records.back().epoch();
  last_seq_ = records.back().seq();
  return absl::OkStatus();
}

Status WalStore::TruncateFrom(int64_t from) {
  std::lock_guard<std::mutex> lock(write_mu_);
  if (from > last_seq_) return absl::OkStatus();
  if (from <= snapshot_seq_) {
    return absl::InternalError(fmt::format("cannot truncate at {}: records up to {} are folded", from,
                                           snapshot_seq_.load()));
  }
  rocksdb::WriteBatch batch;
  batch.DeleteRange(RecordKey(from), RecordKey(last_seq_ + 1));
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  RETURN_IF_ERROR(WriteResult(db_->Write(wo, &batch), "truncating the WAL"));
  last_seq_ = from - 1;
  if (from - 1 == snapshot_seq_) {
    std::lock_guard<std::mutex> slock(snapshot_mu_);
    last_epoch_ = snapshot_ ? snapshot_->last_epoch() : 0;
  } else {
    std::string value;
    proto::WalRecord r;
    if (db_->Get(rocksdb::ReadOptions(), RecordKey(from - 1), &value).ok() && r.ParseFromString(value)) {
      last_epoch_ = r.epoch();
    }
  }
  return absl::OkStatus();
}

Result<std::vector<proto::WalRecord>> WalStore::Read(int64_t from, int max) const {
  std::vector<proto::WalRecord> out;
  if (from <= snapshot_seq_) {
    return absl::OutOfRangeError(fmt::format("records up to {} are folded into the snapshot",
                                             snapshot_seq_.load()));
  }
  const int64_t last = last_seq_;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  int64_t expected = from;
  for (it->Seek(RecordKey(from));
       it->Valid() && it->key().starts_with("R") && static_cast<int>(out.size()) < max && expected <= last;
       it->Next()) {
    proto::WalRecord r;
    if (!r.ParseFromArray(it->value().data(), static_cast<int>(it->value().size())) ||
        r.seq() != expected) {
      return absl::DataLossError(fmt::format("WAL record {} is unreadable", expected));
    }
    out.push_back(std::move(r));
    ++expected;
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading the WAL"));
  return out;
}

Result<int64_t> WalStore::EpochAt(int64_t seq) const {
  if (seq == 0) return int64_t{0};
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    if (snapshot_ && seq == snapshot_->last_seq()) return snapshot_->last_epoch();
  }
  if (seq < snapshot_seq_ || seq > last_seq_) {
    return absl::NotFoundError(fmt::format("WAL record {} is not here", seq));
  }
  std::string value;
  RETURN_IF_ERROR(FromRocks(db_->Get(rocksdb::ReadOptions(), RecordKey(seq), &value),
                            fmt::format("WAL record {}", seq)));
  proto::WalRecord r;
  if (!r.ParseFromString(value)) return absl::DataLossError(fmt::format("WAL record {} is unreadable", seq));
  return r.epoch();
}

Status WalStore::SaveSnapshot(const proto::WalSnapshot& snapshot) {
  std::lock_guard<std::mutex> lock(write_mu_);
  if (snapshot.last_seq() > last_seq_ || snapshot.last_seq() <= snapshot_seq_) {
    return absl::InternalError(fmt::format("snapshot at {} does not fit the log ({}..{})",
                                           snapshot.last_seq(), snapshot_seq_.load(), last_seq_.load()));
  }
  rocksdb::WriteBatch batch;
  batch.Put(kSnapshotKey, snapshot.SerializeAsString());
  batch.DeleteRange(RecordKey(0), RecordKey(snapshot.last_seq() + 1));
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  RETURN_IF_ERROR(WriteResult(db_->Write(wo, &batch), "writing the WAL snapshot"));
  {
    std::lock_guard<std::mutex> slock(snapshot_mu_);
    snapshot_ = snapshot;
  }
  snapshot_seq_ = snapshot.last_seq();
  // The range tombstone's space is reclaimed by RocksDB's own compactions.
  return absl::OkStatus();
}

Status WalStore::InstallSnapshot(const proto::WalSnapshot& snapshot) {
  std::lock_guard<std::mutex> lock(write_mu_);
  rocksdb::WriteBatch batch;
  batch.Put(kSnapshotKey, snapshot.SerializeAsString());
  batch.DeleteRange(RecordKey(0), RecordKey(std::max<int64_t>(last_seq_, snapshot.last_seq()) + 1));
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  RETURN_IF_ERROR(WriteResult(db_->Write(wo, &batch), "installing a WAL snapshot"));
  {
    std::lock_guard<std::mutex> slock(snapshot_mu_);
    snapshot_ = snapshot;
  }
  snapshot_seq_ = snapshot.last_seq();
  last_seq_ = snapshot.last_seq();
  last_epoch_ = snapshot.last_epoch();
  return absl::OkStatus();
}

std::optional<proto::WalSnapshot> WalStore::snapshot() const {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  return snapshot_;
}

Status WalStore::SetFence(int64_t epoch) {
  std::lock_guard<std::mutex> lock(write_mu_);
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  RETURN_IF_ERROR(WriteResult(db_->Put(wo, kFenceKey, std::to_string(epoch)), "writing the WAL fence"));
  fence_ = epoch;
  return absl::OkStatus();
}

Status WalStore::SetCommitSeq(int64_t seq) {
  if (seq <= commit_seq_) return absl::OkStatus();
  RETURN_IF_ERROR(WriteResult(db_->Put(rocksdb::WriteOptions(), kCommitKey, std::to_string(seq)),
                            "writing the WAL commit point"));
  commit_seq_ = seq;
  return absl::OkStatus();
}

}  // namespace sluice::wal
