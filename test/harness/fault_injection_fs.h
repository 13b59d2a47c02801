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
// RangeSync does not count as a sync (it is a write-back hint). Thread-safe.
#pragma once

#include <atomic>
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
  // Truncates every file written through this FS to its last synced size.
  // Returns the number of bytes lost.
  uint64_t DropUnsyncedData();

  // Called by the files.
  void OnAppend(const std::string& fname, uint64_t bytes);
  void OnSync(const std::string& fname);

 private:
  struct FileState {
    uint64_t size = 0;    // bytes written (reached the OS)
    uint64_t synced = 0;  // bytes known durable
  };
  std::atomic<bool> active_{true};
  std::mutex mu_;
  std::map<std::string, FileState> files_;  // guarded by mu_
};

}  // namespace sluice::testing
