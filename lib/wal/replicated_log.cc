// ReplicatedLog: construction, the view, fencing, appends and commit.
// Replication to standbys: replication.cc. Standby side: follower.cc.
// A new leader's catch-up: catch_up.cc.
#include "lib/wal/replicated_log.h"

#include <algorithm>

#include "lib/wal/wal_probe.h"
#include "spdlog/spdlog.h"

namespace sluice::wal {

ReplicatedLog::ReplicatedLog(std::unique_ptr<WalStore> store, StateMachine* state,
                             ReplicatedLogOptions options, WalPeerFactory peers)
    : store_(std::move(store)),
      options_(std::move(options)),
      peer_factory_(std::move(peers)),
      clock_(options_.clock != nullptr ? options_.clock : Clock::Real()),
      state_(state) {}

ReplicatedLog::~ReplicatedLog() { StepDown(); }

Status ReplicatedLog::Init() {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR_PREPEND(RestoreLocked(store_->snapshot()), "restoring the WAL snapshot");
  applied_seq_ = store_->snapshot_seq();
  commit_seq_ = std::max(store_->snapshot_seq(), std::min(store_->commit_seq(), store_->last_seq()));
  RETURN_IF_ERROR_PREPEND(ApplyUpToLocked(commit_seq_), "rebuilding the state from the WAL");
  spdlog::info("wal: {} records ({}..{}), committed up to {}, fence {}",
               store_->last_seq() - store_->snapshot_seq(), store_->first_seq(), store_->last_seq(),
               commit_seq_, store_->fence());
  return absl::OkStatus();
}

Status ReplicatedLog::RestoreLocked(const std::optional<proto::WalSnapshot>& snapshot) {
  return state_->Restore(snapshot ? std::string_view(snapshot->state()) : std::string_view());
}

void ReplicatedLog::SetOnFenced(std::function<void(int64_t)> on_fenced) {
  std::lock_guard<std::mutex> lock(mu_);
  on_fenced_ = std::move(on_fenced);
}

Status ReplicatedLog::CheckFenceLocked(int64_t epoch, std::function<void()>* notify) {
  const int64_t fence = store_->fence();
  if (epoch < fence) {
    return absl::FailedPreconditionError(
        fmt::format("stale leader epoch {}: driver {} has seen epoch {}", epoch, options_.id, fence));
  }
  if (epoch > fence) {
    RETURN_IF_ERROR(store_->SetFence(epoch));
    if ((term_epoch_ != 0 || recovering_) && term_epoch_ < epoch) {
      spdlog::warn("wal: epoch {} seen while leading epoch {}: stepping down", epoch, term_epoch_);
      AbortLocked();
      if (on_fenced_ && notify != nullptr) *notify = [cb = on_fenced_, epoch] { cb(epoch); };
    }
  }
  return absl::OkStatus();
}

Status ReplicatedLog::ApplyUpToLocked(int64_t seq) {
  while (applied_seq_ < seq) {
    ASSIGN_OR_RETURN(std::vector<proto::WalRecord> records,
                     store_->Read(applied_seq_ + 1, static_cast<int>(std::min<int64_t>(seq - applied_seq_, 1000))));
    if (records.empty()) {
      return absl::DataLossError(fmt::format("committed WAL record {} is missing", applied_seq_ + 1));
    }
    for (const proto::WalRecord& r : records) {
      Status st = state_->Apply(r);
      if (!st.ok()) spdlog::error("wal: {}", st.ToString());  // never on a log we wrote
      applied_seq_ = r.seq();
    }
  }
  if (applied_seq_ - store_->snapshot_seq() >= options_.compact_every) {
    proto::WalSnapshot snap;
    snap.set_last_seq(applied_seq_);
    ASSIGN_OR_RETURN(int64_t epoch, store_->EpochAt(applied_seq_));
    snap.set_last_epoch(epoch);
    snap.set_format(WrittenFormat());
    snap.set_state(state_->Snapshot());
    RETURN_IF_ERROR_PREPEND(store_->SaveSnapshot(snap), "compacting the WAL");
    spdlog::info("wal: snapshot at {}; records up to it deleted", applied_seq_);
  }
  return absl::OkStatus();
}

void ReplicatedLog::AdvanceCommitLocked() {
  if (term_epoch_ == 0 || term_start_seq_ == 0) return;
  std::vector<int64_t> acks = {durable_seq_};
  for (const auto& [address, f] : followers_) acks.push_back(f->match_seq);
  if (static_cast<int>(acks.size()) < quorum()) return;
  std::sort(acks.begin(), acks.end(), std::greater<>());
  const int64_t c = acks[quorum() - 1];
  // Only a record of this term commits by counting copies (Raft's rule);
  // everything before it commits with it.
  if (c <= commit_seq_ || c < term_start_seq_) return;
  commit_seq_ = c;
  Status st = ApplyUpToLocked(c);
  if (!st.ok()) {
    // The state machine cannot follow the log: what an appender would read
    // after its append returned is not there. Stop serving this term.
    spdlog::error("wal: applying committed records failed, leaving the term: {}", st.ToString());
    serving_ = false;
    apply_failed_ = true;  // the writer tells on_fenced, outside the lock
    AbortLocked();
    return;
  }
  st = store_->SetCommitSeq(c);
  if (!st.ok()) spdlog::error("wal: {}", st.ToString());
  commit_cv_.notify_all();
}

Result<int64_t> ReplicatedLog::Append(std::string payload) {
  std::vector<std::string> one;
  one.push_back(std::move(payload));
  return AppendBatch(std::move(one));
}

Result<int64_t> ReplicatedLog::AppendBatch(std::vector<std::string> payloads) {
  if (payloads.empty()) return absl::InvalidArgumentError("nothing to append");
  std::vector<proto::WalRecord> records(payloads.size());
  for (size_t i = 0; i < payloads.size(); ++i) records[i].set_payload(std::move(payloads[i]));
  const int64_t count = static_cast<int64_t>(records.size());
  const Clock::TimePoint start = clock_->Now();
  std::unique_lock<std::mutex> lock(mu_);
  if (!serving_) {
    return absl::UnavailableError(fmt::format("driver {} is not the serving leader", options_.id));
  }
  Result<int64_t> seq = AppendLocked(lock, std::move(records));
  // Under mu_, as set_probe is: a probe being destroyed is never called.
  if (WalProbe* probe = probe_.load(); probe != nullptr && seq.ok()) {
    probe->Committed(count, std::chrono::duration<double>(clock_->Now() - start).count());
  }
  lock.unlock();
  return seq;
}

void ReplicatedLog::WakeAllLocked() {
  commit_cv_.notify_all();
  writer_cv_.notify_all();
  work_cv_.notify_all();
}

Result<int64_t> ReplicatedLog::AppendLocked(std::unique_lock<std::mutex>& lock,
                                            std::vector<proto::WalRecord> records) {
  const int64_t epoch = term_epoch_;
  for (proto::WalRecord& record : records) {
    record.set_seq(++assigned_seq_);
    record.set_epoch(epoch);
    record.set_format(WrittenFormat());
    pending_.push_back(std::move(record));
  }
  const int64_t seq = assigned_seq_;
  writer_cv_.notify_one();
  bool committed = false;
  commit_cv_.wait(lock, [&] {
    if (!TermActiveLocked(epoch)) return true;
    committed = commit_seq_ >= seq;
    return committed;
  });
  if (!committed) {
    return absl::UnavailableError(
        fmt::format("leadership of epoch {} ended before record {} was committed", epoch, seq));
  }
  return seq;
}

void ReplicatedLog::WriterLoop(int64_t epoch) {
  std::unique_lock<std::mutex> lock(mu_);
  std::vector<proto::WalRecord> batch;
  while (true) {
    writer_cv_.wait(lock, [&] { return !pending_.empty() || !TermActiveLocked(epoch); });
    if (!TermActiveLocked(epoch)) {
      if (apply_failed_) {
        apply_failed_ = false;
        std::function<void(int64_t)> cb = on_fenced_;
        lock.unlock();
        if (cb) cb(epoch);  // non-blocking: it queues the step-down
      }
      return;
    }
    batch.clear();
    batch.swap(pending_);
    lock.unlock();
    Status st = store_->Append(batch);  // one synced write: the group commit
    lock.lock();
    if (!st.ok()) {
      spdlog::error("wal: local append failed, stepping down: {}", st.ToString());
      AbortLocked();
      std::function<void(int64_t)> cb = on_fenced_;
      lock.unlock();
      if (cb) cb(epoch);  // non-blocking: it queues the step-down
      return;
    }
    durable_seq_ = batch.back().seq();
    AdvanceCommitLocked();
    work_cv_.notify_all();
  }
}

void ReplicatedLog::AbortLocked() {
  ++abort_generation_;
  WakeAllLocked();
}

void ReplicatedLog::Abort() {
  std::lock_guard<std::mutex> lock(mu_);
  AbortLocked();
}

int64_t ReplicatedLog::abort_generation() const {
  std::lock_guard<std::mutex> lock(mu_);
  return abort_generation_;
}

void ReplicatedLog::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  AbortLocked();
}

void ReplicatedLog::StepDown() {
  std::lock_guard<std::mutex> handlers(follower_mu_);
  std::vector<std::unique_ptr<Follower>> followers;
  std::thread writer;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (term_epoch_ == 0 && !recovering_) return;
    spdlog::info("wal: leaving the term of epoch {}", term_epoch_);
    ++abort_generation_;
    term_epoch_ = 0;
    term_start_seq_ = 0;
    recovering_ = false;
    serving_ = false;
    pending_.clear();
    for (auto& [address, f] : followers_) {
      f->stop = true;
      followers.push_back(std::move(f));
    }
    followers_.clear();
    writer.swap(writer_);
    WakeAllLocked();
  }
  if (writer.joinable()) writer.join();
  for (auto& f : followers) {
    if (f->thread.joinable()) f->thread.join();
  }
}

WalStats ReplicatedLog::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  WalStats stats{.last_seq = store_->last_seq(),
                 .commit_seq = commit_seq_,
                 .snapshot_seq = store_->snapshot_seq(),
                 .fence = store_->fence(),
                 .serving = serving_,
                 .store = store_->health()};
  for (const auto& [address, f] : followers_) {
    stats.peers.push_back({.id = f->id,
                           .address = address,
                           .acked_seq = f->match_seq,
                           .lag = std::max<int64_t>(0, durable_seq_ - f->match_seq),
                           .last_contact_unix_ms = f->last_contact_ms,
                           .last_error = f->last_error,
                           .state = f->state});
  }
  std::sort(stats.peers.begin(), stats.peers.end(),
            [](const WalPeerStats& a, const WalPeerStats& b) { return a.id < b.id; });
  return stats;
}

Result<std::vector<proto::WalRecord>> ReplicatedLog::ReadCommitted(int64_t from, int max) const {
  int64_t commit;
  {
    std::lock_guard<std::mutex> lock(mu_);
    commit = commit_seq_;
  }
  if (from > commit) return std::vector<proto::WalRecord>();
  return store_->Read(from, static_cast<int>(std::min<int64_t>(max, commit - from + 1)));
}

}  // namespace sluice::wal
