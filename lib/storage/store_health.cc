#include "lib/storage/store_health.h"

#include "spdlog/spdlog.h"

namespace sluice::storage {

std::shared_ptr<StoreHealth> StoreHealth::Create(Options options) {
  return std::shared_ptr<StoreHealth>(new StoreHealth(std::move(options)));
}

StoreHealth::StoreHealth(Options options)
    : options_(std::move(options)), clock_(options_.clock != nullptr ? options_.clock : Clock::Real()) {}

StoreHealth::~StoreHealth() { Detach(); }

void StoreHealth::Attach(rocksdb::DB* db) {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  db_ = db;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void StoreHealth::Detach() {
  std::thread thread;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    db_ = nullptr;
    thread.swap(thread_);
  }
  cv_.notify_all();
  if (thread.joinable()) thread.join();
}

void StoreHealth::MarkDegradedLocked(const std::string& error) {
  ++generation_;
  if (info_.degraded) return;  // logged once per spell
  info_.degraded = true;
  info_.error = error;
  info_.degraded_since_unix_ms = clock_->UnixMillis();
  degraded_at_ = clock_->Now();
  spdlog::error("{} refuses writes: {}; retrying every {} ms until it takes them again", options_.name, error,
                options_.retry_interval.count());
  cv_.notify_all();
}

void StoreHealth::Report(const rocksdb::Status& s) {
  if (s.ok() || !s.IsIOError()) return;
  std::lock_guard<std::mutex> lock(mu_);
  MarkDegradedLocked(s.ToString());
}

void StoreHealth::OnBackgroundError(rocksdb::BackgroundErrorReason, rocksdb::Status* bg_error) {
  if (bg_error == nullptr || bg_error->ok()) return;
  std::lock_guard<std::mutex> lock(mu_);
  MarkDegradedLocked(bg_error->ToString());
}

void StoreHealth::OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status bg_error,
                                       bool* auto_recovery) {
  bg_error.PermitUncheckedError();
  // Ours instead (see the header): RocksDB's would make Resume() busy for as
  // long as it waits for more free space than a small disk may ever have.
  if (auto_recovery != nullptr) *auto_recovery = false;
}

StoreHealthInfo StoreHealth::Info() const {
  std::lock_guard<std::mutex> lock(mu_);
  return info_;
}

bool StoreHealth::degraded() const {
  std::lock_guard<std::mutex> lock(mu_);
  return info_.degraded;
}

Status StoreHealth::CheckWritable() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!info_.degraded) return absl::OkStatus();
  return absl::UnavailableError(fmt::format("{} refuses writes: {}", options_.name, info_.error));
}

void StoreHealth::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait(lock, [&] { return stopping_ || info_.degraded; });
    if (stopping_) return;
    cv_.wait_for(lock, options_.retry_interval, [&] { return stopping_; });
    if (stopping_) return;
    rocksdb::DB* db = db_;
    const int64_t generation = generation_;
    lock.unlock();
    // Flushes the memtables, switches to a new log file and clears the error;
    // fails (and leaves the error set) while the flush does not fit.
    rocksdb::Status s = db->Resume();
    lock.lock();
    if (!s.ok()) {
      // Still degraded. Keep the first reason: it says why the store stopped.
      spdlog::debug("{}: resume failed: {}", options_.name, s.ToString());
      continue;
    }
    if (generation_ != generation) continue;  // failed again meanwhile: retry
    const double seconds = std::chrono::duration<double>(clock_->Now() - degraded_at_).count();
    spdlog::info("{} takes writes again after {:.1f} s (was: {})", options_.name, seconds, info_.error);
    info_.degraded = false;
    info_.error.clear();
    info_.degraded_since_unix_ms = 0;
    ++info_.recoveries;
  }
}

}  // namespace sluice::storage
