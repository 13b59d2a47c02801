// FaultInjectionFS: a RocksDB FileSystem decorator that remembers how much of
// each file written through it was synced, and can then lose the rest — what
// a power failure does to a file's unsynced tail. It proves a log's fsync
// discipline: whatever an append reported durable must survive.
//
// Part of the test harness. Usage: make an Env with
// rocksdb::NewCompositeEnv(fs), open the database with it, write, then
// Deactivate() (later writes and syncs are dropped, as if the machine died),
// destroy the database object, DropUnsyncedData(), and reopen with any Env.
//
// A crash can also come inside a call: DeactivateAtSync(n) and
// DeactivateAtAppend(n) kill the machine just before the n-th sync or write
// from now (RocksDB writes each WriteBatch to its WAL in one append). And the OS may have written back part
// of an unsynced tail before the power went: DropUnsyncedData(keep) keeps a
// prefix of each one, of a length the caller draws.
//
// A full disk: SetDiskFull(true) makes every write to a file and every new
// file fail with ENOSPC's error (IOStatus::NoSpace, "No space left on
// device") until SetDiskFull(false) — what a file system that filled up does.
//
// RangeSync does not count as a sync (it is a write-back hint). Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "rocksdb/file_system.h"

namespace sluice::testing {

class FaultInjectionFS : public rocksdb::FileSystemWrapper {
 public:
  explicit FaultInjectionFS(const std::shared_ptr<rocksdb::FileSystem>& base)
      : FileSystemWrapper(base) {}
  static const char* kClassName() { return "SluiceFaultInjectionFS"; }
  const char* Name() const override { return kClassName(); }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& src, const std::string& dst,
                               const rocksdb::IOOptions& opts, rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& fname, const rocksdb::IOOptions& opts,
                               rocksdb::IODebugContext* dbg) override;

  // From now on, writes and syncs are dropped and file operations fail.
  void Deactivate() { active_ = false; }
  bool active() const { return active_; }
  // Deactivates just before the n-th sync (Sync or Fsync of a file) from now,
  // n >= 1: that sync and everything after it are dropped.
  void DeactivateAtSync(int64_t n) { deactivate_at_sync_ = syncs_ + n; }
  // The same before the n-th Append to a file.
  void DeactivateAtAppend(int64_t n) { deactivate_at_append_ = appends_ + n; }
  // While true, writes and new files fail with NoSpace (a full disk).
  void SetDiskFull(bool full) { disk_full_ = full; }
  bool disk_full() const { return disk_full_; }
  // Syncs and appends done through this FS so far.
  int64_t syncs() const { return syncs_; }
  int64_t appends() const { return appends_; }
  // Truncates every file written through this FS to its last synced size.
  // Returns the number of bytes lost.
  uint64_t DropUnsyncedData();
  // The same, but each file keeps keep(synced, size) bytes, clamped to
  // [synced, size]: the part of its unsynced tail the OS had written back.
  uint64_t DropUnsyncedData(const std::function<uint64_t(uint64_t synced, uint64_t size)>& keep);

  // Called by the files. BeforeAppend and BeforeSync return false if the
  // machine is dead (then the write or sync must not happen).
  [[nodiscard]] bool BeforeAppend();
  void OnAppend(const std::string& fname, uint64_t bytes);
  [[nodiscard]] bool BeforeSync();
  void OnSync(const std::string& fname);

 private:
  struct FileState {
    uint64_t size = 0;    // bytes written (reached the OS)
    uint64_t synced = 0;  // bytes known durable
  };
  std::atomic<bool> active_{true};
  std::atomic<bool> disk_full_{false};
  std::atomic<int64_t> syncs_{0};
  std::atomic<int64_t> deactivate_at_sync_{0};  // 0: never
  std::atomic<int64_t> appends_{0};
  std::atomic<int64_t> deactivate_at_append_{0};  // 0: never
  std::mutex mu_;
  std::map<std::string, FileState> files_;  // guarded by mu_
};

}  // namespace sluice::testing
