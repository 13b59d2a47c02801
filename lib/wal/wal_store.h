// WalStore: the replicated log on disk — a RocksDB database of WalRecords
// keyed by sequence number, the snapshot that folds away a prefix, and two
// metadata values (the epoch fence, the last known commit point).
//
// Module sluice::wal owns it; only ReplicatedLog uses it. Keys:
//   "R" + 8-byte big-endian seq -> WalRecord   (seq first_seq()..last_seq(), no gaps)
//   "S"                          -> WalSnapshot (covers seq <= snapshot_seq())
//   "F"                          -> highest epoch accepted (fence), synced
//   "C"                          -> commit point learned from the leader
//
// Every write that adds or removes records is one synced WriteBatch
// (Options::sync; RocksDB groups concurrent synced writers). Open() reads the
// whole log and refuses, naming the sequence number, a record that does not
// parse, carries another seq than its key, leaves a gap, or has a format
// (WalFormat) this build does not read.
//
// A failed write (a full disk) leaves the store as it was before the call;
// RocksDB then refuses every write until the store's StoreHealth has resumed
// it, which it does by itself once the disk has room (health()).
//
// Thread-safe: writes are serialised by a mutex; reads go to RocksDB directly.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "lib/common/status.h"
#include "lib/storage/store_health.h"
#include "proto/wal.pb.h"

namespace rocksdb {
class DB;
class Env;
}  // namespace rocksdb

namespace sluice::wal {

class WalStore {
 public:
  struct Options {
    std::string path;
    rocksdb::Env* env = nullptr;  // null: the default Env
    bool sync = true;             // false only to prove, in tests, that sync matters
    // How often a store that refuses writes tries to resume.
    std::chrono::milliseconds resume_interval{500};
  };

  [[nodiscard]] static Result<std::unique_ptr<WalStore>> Open(const Options& options);
  ~WalStore();

  // Appends records that continue the log (records[0].seq == last_seq() + 1).
  [[nodiscard]] Status Append(const std::vector<proto::WalRecord>& records);
  // Removes every record with seq >= from (a conflicting, uncommitted tail).
  [[nodiscard]] Status TruncateFrom(int64_t from);
  // Up to `max` records from `from` (first_seq() <= from), fewer at the end.
  [[nodiscard]] Result<std::vector<proto::WalRecord>> Read(int64_t from, int max) const;
  // The epoch of record `seq`: 0 for seq 0, the snapshot's for snapshot_seq(),
  // NOT_FOUND if absent.
  [[nodiscard]] Result<int64_t> EpochAt(int64_t seq) const;

  // Writes `snapshot` and deletes the records it covers (compaction).
  [[nodiscard]] Status SaveSnapshot(const proto::WalSnapshot& snapshot);
  // Replaces the whole log by `snapshot` (a follower far behind).
  [[nodiscard]] Status InstallSnapshot(const proto::WalSnapshot& snapshot);
  std::optional<proto::WalSnapshot> snapshot() const;

  [[nodiscard]] Status SetFence(int64_t epoch);  // synced
  [[nodiscard]] Status SetCommitSeq(int64_t seq);  // not synced: a hint, relearned

  // {last_seq, last_epoch}, read together.
  std::pair<int64_t, int64_t> LastPosition() {
    std::lock_guard<std::mutex> lock(write_mu_);
    return {last_seq_.load(), last_epoch_.load()};
  }
  int64_t last_seq() const { return last_seq_.load(); }
  int64_t last_epoch() const { return last_epoch_.load(); }
  int64_t snapshot_seq() const { return snapshot_seq_.load(); }
  int64_t first_seq() const { return snapshot_seq_.load() + 1; }
  int64_t fence() const { return fence_.load(); }
  int64_t commit_seq() const { return commit_seq_.load(); }
  // Whether the database takes writes, and why not.
  storage::StoreHealthInfo health() const { return health_->Info(); }

 private:
  WalStore(Options options, rocksdb::DB* db, std::shared_ptr<storage::StoreHealth> health)
      : options_(std::move(options)), db_(db), health_(std::move(health)) {}
  [[nodiscard]] Status Load();
  // FromRocks for a write, telling health_ of an I/O error.
  [[nodiscard]] Status WriteResult(const rocksdb::Status& s, const std::string& what);

  const Options options_;
  rocksdb::DB* const db_;
  const std::shared_ptr<storage::StoreHealth> health_;
  std::mutex write_mu_;  // serialises writers
  mutable std::mutex snapshot_mu_;
  std::optional<proto::WalSnapshot> snapshot_;  // guarded by snapshot_mu_
  std::atomic<int64_t> last_seq_{0};
  std::atomic<int64_t> last_epoch_{0};
  std::atomic<int64_t> snapshot_seq_{0};
  std::atomic<int64_t> fence_{0};
  std::atomic<int64_t> commit_seq_{0};
};

// "R" + big-endian seq, so that byte order is numeric order.
std::string RecordKey(int64_t seq);

// OK if this build reads `snapshot`'s (or `record`'s) format: the previous
// one or its own (lib/common/version.h, kWalFormat); FAILED_PRECONDITION
// naming both otherwise.
[[nodiscard]] Status CheckSnapshotFormat(const proto::WalSnapshot& snapshot);
[[nodiscard]] Status CheckRecordFormat(const proto::WalRecord& record);
// The format this build writes into every record and snapshot.
proto::WalFormat WrittenFormat();

}  // namespace sluice::wal
