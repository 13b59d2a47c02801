#include "test/harness/fault_injection_fs.h"

#include <algorithm>
#include <filesystem>

namespace sluice::testing {
namespace {

rocksdb::IOStatus Inactive() { return rocksdb::IOStatus::IOError("filesystem deactivated (crash)"); }
rocksdb::IOStatus DiskFull(const std::string& fname) {
  return rocksdb::IOStatus::NoSpace("While appending to file: " + fname, "No space left on device");
}

class TrackingFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  TrackingFile(std::unique_ptr<rocksdb::FSWritableFile> base, FaultInjectionFS* fs, std::string name)
      : FSWritableFileOwnerWrapper(std::move(base)), fs_(fs), name_(std::move(name)) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    if (fs_->disk_full()) return DiskFull(name_);
    if (!fs_->BeforeAppend()) return rocksdb::IOStatus::OK();  // lost with the machine
    rocksdb::IOStatus s = target()->Append(data, options, dbg);
    if (s.ok()) fs_->OnAppend(name_, data.size());
    return s;
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    if (fs_->disk_full()) return DiskFull(name_);
    if (!fs_->BeforeAppend()) return rocksdb::IOStatus::OK();
    rocksdb::IOStatus s = target()->Append(data, options, info, dbg);
    if (s.ok()) fs_->OnAppend(name_, data.size());
    return s;
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    if (!fs_->BeforeSync()) return rocksdb::IOStatus::OK();
    rocksdb::IOStatus s = target()->Sync(options, dbg);
    if (s.ok()) fs_->OnSync(name_);
    return s;
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    if (!fs_->BeforeSync()) return rocksdb::IOStatus::OK();
    rocksdb::IOStatus s = target()->Fsync(options, dbg);
    if (s.ok()) fs_->OnSync(name_);
    return s;
  }
  rocksdb::IOStatus Close(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    return target()->Close(options, dbg);  // closing syncs nothing
  }

 private:
  FaultInjectionFS* fs_;
  std::string name_;
};

}  // namespace

rocksdb::IOStatus FaultInjectionFS::NewWritableFile(const std::string& fname,
                                                    const rocksdb::FileOptions& opts,
                                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                                    rocksdb::IODebugContext* dbg) {
  if (!active_) return Inactive();
  if (disk_full_) return rocksdb::IOStatus::NoSpace("While open a file for appending: " + fname, "No space left on device");
  std::unique_ptr<rocksdb::FSWritableFile> base;
  rocksdb::IOStatus s = target()->NewWritableFile(fname, opts, &base, dbg);
  if (!s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    files_[fname] = FileState{};
  }
  *result = std::make_unique<TrackingFile>(std::move(base), this, fname);
  return s;
}

rocksdb::IOStatus FaultInjectionFS::ReopenWritableFile(
    const std::string& fname, const rocksdb::FileOptions& opts,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  if (!active_) return Inactive();
  std::unique_ptr<rocksdb::FSWritableFile> base;
  rocksdb::IOStatus s = target()->ReopenWritableFile(fname, opts, &base, dbg);
  if (!s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!files_.contains(fname)) {
      std::error_code ec;
      uint64_t size = std::filesystem::file_size(fname, ec);
      files_[fname] = FileState{ec ? 0 : size, ec ? 0 : size};
    }
  }
  *result = std::make_unique<TrackingFile>(std::move(base), this, fname);
  return s;
}

rocksdb::IOStatus FaultInjectionFS::RenameFile(const std::string& src, const std::string& dst,
                                               const rocksdb::IOOptions& opts,
                                               rocksdb::IODebugContext* dbg) {
  if (!active_) return Inactive();
  rocksdb::IOStatus s = target()->RenameFile(src, dst, opts, dbg);
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = files_.find(src);
    if (it != files_.end()) {
      files_[dst] = it->second;
      files_.erase(it);
    }
  }
  return s;
}

rocksdb::IOStatus FaultInjectionFS::DeleteFile(const std::string& fname,
                                               const rocksdb::IOOptions& opts,
                                               rocksdb::IODebugContext* dbg) {
  if (!active_) return Inactive();
  rocksdb::IOStatus s = target()->DeleteFile(fname, opts, dbg);
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    files_.erase(fname);
  }
  return s;
}

void FaultInjectionFS::OnAppend(const std::string& fname, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  files_[fname].size += bytes;
}

bool FaultInjectionFS::BeforeAppend() {
  if (!active_) return false;
  const int64_t n = ++appends_;
  if (deactivate_at_append_ > 0 && n >= deactivate_at_append_) {
    active_ = false;  // the machine dies before this write
    return false;
  }
  return true;
}

bool FaultInjectionFS::BeforeSync() {
  if (!active_) return false;
  const int64_t n = ++syncs_;
  if (deactivate_at_sync_ > 0 && n >= deactivate_at_sync_) {
    active_ = false;  // the machine dies before this sync
    return false;
  }
  return true;
}

void FaultInjectionFS::OnSync(const std::string& fname) {
  std::lock_guard<std::mutex> lock(mu_);
  FileState& f = files_[fname];
  f.synced = f.size;
}

uint64_t FaultInjectionFS::DropUnsyncedData() {
  return DropUnsyncedData([](uint64_t synced, uint64_t) { return synced; });
}

uint64_t FaultInjectionFS::DropUnsyncedData(const std::function<uint64_t(uint64_t synced, uint64_t size)>& keep) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t lost = 0;
  for (auto& [name, f] : files_) {
    std::error_code ec;
    uint64_t size = std::filesystem::file_size(name, ec);
    if (ec || size <= f.synced) continue;
    const uint64_t kept = std::clamp(keep(f.synced, size), f.synced, size);
    std::filesystem::resize_file(name, kept, ec);
    if (!ec) lost += size - kept;
    f.size = kept;
    f.synced = kept;
  }
  return lost;
}

}  // namespace sluice::testing
