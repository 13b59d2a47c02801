// StoreHealth: whether a RocksDB database still takes writes, and getting it
// back to read-write by itself once the cause is gone (a full disk freed).
//
// Module sluice::storage owns it; every store that keeps a RocksDB (the WAL,
// the block store, the state store) holds one per database. Why it exists:
// after a failed write (ENOSPC on its log or a flush) RocksDB stops taking
// writes until DB::Resume() is called or the database is reopened. RocksDB's
// own recovery from a full disk polls every 5 s for free space of at least a
// write buffer (64 MiB by default) — on a small file system that never comes,
// and while it waits a manual Resume() is refused as busy. So this listener
// turns RocksDB's automatic recovery off and runs its own: while the store is
// degraded it calls Resume() every retry_interval, which succeeds as soon as
// the flush it does fits on the disk.
//
// Usage: Create() before opening, pass it to OpenRocksDb (which registers it
// as the database's listener and attaches it after the open), Report() the
// status of failed foreground writes, Detach() before closing the database.
// It logs once when the store becomes degraded and once when it recovers.
//
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "rocksdb/db.h"
#include "rocksdb/listener.h"

namespace sluice::storage {

struct StoreHealthInfo {
  bool degraded = false;
  std::string error;            // why, while degraded (RocksDB's message)
  int64_t degraded_since_unix_ms = 0;
  int64_t recoveries = 0;       // degraded spells ended by a successful Resume()
};

class StoreHealth : public rocksdb::EventListener {
 public:
  struct Options {
    std::string name;  // in log lines and errors: "the WAL at /data/wal"
    std::chrono::milliseconds retry_interval{500};
    Clock* clock = nullptr;  // for the timestamps; nullptr: the real clock
  };

  static std::shared_ptr<StoreHealth> Create(Options options);
  ~StoreHealth() override;

  // Starts watching `db` (not owned; it must stay open until Detach()).
  void Attach(rocksdb::DB* db);
  // Stops the recovery thread; call before the database is closed.
  void Detach();

  // A foreground write returned `s`: an I/O error (a full disk among them)
  // marks the store degraded until a Resume() succeeds. Other errors are the
  // caller's own business and are ignored here.
  void Report(const rocksdb::Status& s);

  StoreHealthInfo Info() const;
  bool degraded() const;
  // OK, or UNAVAILABLE naming the store and why it refuses writes.
  [[nodiscard]] Status CheckWritable() const;

  // rocksdb::EventListener.
  const char* Name() const override { return "SluiceStoreHealth"; }
  void OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status* bg_error) override;
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason reason, rocksdb::Status bg_error,
                            bool* auto_recovery) override;

 private:
  explicit StoreHealth(Options options);
  void MarkDegradedLocked(const std::string& error);
  void Loop();

  const Options options_;
  Clock* const clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  rocksdb::DB* db_ = nullptr;   // guarded by mu_
  bool stopping_ = false;       // guarded by mu_
  StoreHealthInfo info_;        // guarded by mu_
  int64_t generation_ = 0;      // guarded by mu_; bumped by every failure seen
  Clock::TimePoint degraded_at_{};  // guarded by mu_
  std::thread thread_;
};

}  // namespace sluice::storage
