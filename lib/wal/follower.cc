// ReplicatedLog, standby side: what WalService calls.
#include <algorithm>

#include "lib/wal/replicated_log.h"
#include "spdlog/spdlog.h"

namespace sluice::wal {

Status ReplicatedLog::AppendConflictFree(const std::vector<proto::WalRecord>& records) {
  std::vector<proto::WalRecord> to_append;
  for (const proto::WalRecord& r : records) {
    if (!to_append.empty()) {
      to_append.push_back(r);
      continue;
    }
    if (r.seq() <= store_->snapshot_seq()) continue;  // folded: committed, hence equal
    if (r.seq() <= store_->last_seq()) {
      ASSIGN_OR_RETURN(int64_t have, store_->EpochAt(r.seq()));
      if (have == r.epoch()) continue;  // the same record
      // A conflicting, uncommitted tail from an older leader: drop it.
      spdlog::info("wal: dropping records {}..{} (epoch {} conflicts with {})", r.seq(),
                   store_->last_seq(), have, r.epoch());
      RETURN_IF_ERROR(store_->TruncateFrom(r.seq()));
    }
    to_append.push_back(r);
  }
  return store_->Append(to_append);
}

Status ReplicatedLog::HandleAppend(const proto::WalAppendRequest& req,
                                   proto::WalAppendResponse* resp) {
  std::lock_guard<std::mutex> handlers(follower_mu_);
  std::function<void()> notify;
  {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(CheckFenceLocked(req.epoch(), &notify));
    if (term_epoch_ != 0 || recovering_) {
      if (!notify) {
        return absl::UnavailableError(fmt::format("driver {} leads epoch {}", options_.id, term_epoch_));
      }
    }
  }
  if (notify) {
    notify();
    return absl::UnavailableError(fmt::format("driver {} is stepping down", options_.id));
  }
  resp->set_ok(false);
  if (req.prev_seq() > store_->last_seq()) {
    resp->set_last_seq(store_->last_seq());
    return absl::OkStatus();
  }
  if (req.prev_seq() > store_->snapshot_seq()) {
    ASSIGN_OR_RETURN(int64_t have, store_->EpochAt(req.prev_seq()));
    if (have != req.prev_epoch()) {
      // Everything up to our commit point matches the leader's log: resume
      // from there rather than walking back one record per call.
      std::lock_guard<std::mutex> lock(mu_);
      resp->set_last_seq(std::min(req.prev_seq() - 1, commit_seq_));
      return absl::OkStatus();
    }
  }
  std::vector<proto::WalRecord> records(req.records().begin(), req.records().end());
  // As for a snapshot below: a record this build cannot read is not written.
  for (const proto::WalRecord& r : records) {
    if (Status st = CheckRecordFormat(r); !st.ok()) return absl::UnimplementedError(st.message());
  }
  RETURN_IF_ERROR(AppendConflictFree(records));
  const int64_t match = req.prev_seq() + req.records_size();
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t commit = std::min(req.commit_seq(), match);
    if (commit > commit_seq_) {
      commit_seq_ = commit;
      RETURN_IF_ERROR(ApplyUpToLocked(commit));
      RETURN_IF_ERROR(store_->SetCommitSeq(commit));
    }
  }
  resp->set_ok(true);
  resp->set_last_seq(store_->last_seq());
  return absl::OkStatus();
}

Status ReplicatedLog::HandleFetch(const proto::WalFetchRequest& req, proto::WalFetchResponse* resp) {
  // Serialised with appends: once the fence is raised here, no append of an
  // older epoch is still being written, so what we report includes it.
  std::lock_guard<std::mutex> handlers(follower_mu_);
  std::function<void()> notify;
  {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(CheckFenceLocked(req.epoch(), &notify));
  }
  if (notify) notify();
  auto [last_seq, last_epoch] = store_->LastPosition();
  resp->set_last_seq(last_seq);
  resp->set_last_epoch(last_epoch);
  if (req.max_records() <= 0) return absl::OkStatus();
  int64_t from = req.from_seq();
  if (from <= store_->snapshot_seq()) {
    if (auto snap = store_->snapshot()) *resp->mutable_snapshot() = *snap;
    from = store_->snapshot_seq() + 1;
  }
  Result<std::vector<proto::WalRecord>> records = store_->Read(from, req.max_records());
  if (!records.ok() && absl::IsOutOfRange(records.status())) {
    // Compacted between the two reads: send the new snapshot and nothing else.
    if (auto snap = store_->snapshot()) *resp->mutable_snapshot() = *snap;
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(records.status());
  for (proto::WalRecord& r : *records) *resp->add_records() = std::move(r);
  return absl::OkStatus();
}

Status ReplicatedLog::HandleInstallSnapshot(const proto::WalInstallSnapshotRequest& req,
                                            proto::WalInstallSnapshotResponse* resp) {
  std::lock_guard<std::mutex> handlers(follower_mu_);
  std::function<void()> notify;
  {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(CheckFenceLocked(req.epoch(), &notify));
    if ((term_epoch_ != 0 || recovering_) && !notify) {
      return absl::UnavailableError(fmt::format("driver {} leads epoch {}", options_.id, term_epoch_));
    }
  }
  if (notify) {
    notify();
    return absl::UnavailableError(fmt::format("driver {} is stepping down", options_.id));
  }
  const proto::WalSnapshot& snap = req.snapshot();
  // Checked before anything is written: a snapshot this build cannot read
  // must not replace the records it covers. UNIMPLEMENTED, not
  // FAILED_PRECONDITION: the leader is not fenced, it retries later.
  if (Status st = CheckSnapshotFormat(snap); !st.ok()) return absl::UnimplementedError(st.message());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (snap.last_seq() <= commit_seq_) {  // stale (a retried call): we are past it
      resp->set_last_seq(store_->last_seq());
      return absl::OkStatus();
    }
  }
  Result<int64_t> have = store_->EpochAt(snap.last_seq());
  if (have.ok() && *have == snap.last_epoch() && snap.last_seq() > store_->snapshot_seq()) {
    // We hold the snapshot's last record: keep what follows it.
    RETURN_IF_ERROR(store_->SaveSnapshot(snap));
  } else {
    RETURN_IF_ERROR(store_->InstallSnapshot(snap));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR_PREPEND(RestoreLocked(snap), "restoring the leader's snapshot");
    applied_seq_ = commit_seq_ = snap.last_seq();
    RETURN_IF_ERROR(store_->SetCommitSeq(commit_seq_));
  }
  spdlog::info("wal: installed the leader's snapshot at {}", req.snapshot().last_seq());
  resp->set_last_seq(store_->last_seq());
  return absl::OkStatus();
}

}  // namespace sluice::wal
