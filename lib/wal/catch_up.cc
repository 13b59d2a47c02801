// ReplicatedLog, becoming the leader: catch up from a quorum (docs/design.md
// leadership rule 2), then commit LeaderChange (rule 3).
#include <algorithm>

#include "lib/wal/replicated_log.h"
#include "spdlog/spdlog.h"

namespace sluice::wal {

Status ReplicatedLog::BecomeLeader(int64_t epoch, int64_t generation) {
  {
    std::lock_guard<std::mutex> handlers(follower_mu_);
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || abort_generation_ != generation) {
      return absl::UnavailableError(fmt::format("the term of epoch {} was aborted before it began", epoch));
    }
    if (term_epoch_ != 0 || recovering_) {
      return absl::FailedPreconditionError(fmt::format("already leading epoch {}", term_epoch_));
    }
    if (epoch < store_->fence()) {
      return absl::FailedPreconditionError(
          fmt::format("epoch {} is stale: this driver has seen epoch {}", epoch, store_->fence()));
    }
    if (epoch > store_->fence()) RETURN_IF_ERROR(store_->SetFence(epoch));
    term_epoch_ = epoch;
    term_generation_ = abort_generation_;
    term_start_seq_ = 0;
    recovering_ = true;
    serving_ = false;
  }
  Status st = CatchUp(epoch);
  if (st.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!TermActiveLocked(epoch)) {
      st = absl::UnavailableError(fmt::format("the term of epoch {} ended during catch-up", epoch));
    } else {
      assigned_seq_ = durable_seq_ = store_->last_seq();
      recovering_ = false;
      writer_ = std::thread([this, epoch] { WriterLoop(epoch); });
      for (const std::string& address : peer_addresses_) StartFollowerLocked(address);
      // LeaderChange is the first record of the term; committing it commits
      // everything adopted before it.
      term_start_seq_ = assigned_seq_ + 1;
    }
  }
  if (st.ok()) {
    proto::WalRecord change;
    change.mutable_leader_change()->set_epoch(epoch);
    change.mutable_leader_change()->set_leader_id(options_.id);
    std::unique_lock<std::mutex> lock(mu_);
    std::vector<proto::WalRecord> records;
    records.push_back(std::move(change));
    Result<int64_t> seq = AppendLocked(lock, std::move(records));
    st = seq.status();
    if (st.ok()) {
      serving_ = true;  // only now may the driver plan, schedule, or take appends
      spdlog::info("wal: leading epoch {}; LeaderChange committed at {}", epoch, *seq);
    }
  }
  if (!st.ok()) {
    spdlog::warn("wal: cannot lead epoch {}: {}", epoch, st.ToString());
    StepDown();
  }
  return st;
}

Status ReplicatedLog::CatchUp(int64_t epoch) {
  struct Answer {
    std::string address;
    int64_t last_epoch;
    int64_t last_seq;
  };
  std::map<std::string, Answer> answers;
  const size_t needed = static_cast<size_t>(quorum() - 1);
  int rounds = 0;
  while (answers.size() < needed) {
    std::vector<std::string> peers;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (rounds++ > 0) {
        work_cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return !TermActiveLocked(epoch); });
      }
      if (!TermActiveLocked(epoch)) return absl::UnavailableError("catch-up aborted");
      peers = peer_addresses_;
    }
    for (const std::string& address : peers) {
      if (answers.contains(address)) continue;
      proto::WalFetchRequest req;
      req.set_epoch(epoch);  // raises their fence: the old leader can commit nothing more
      req.set_from_seq(store_->last_seq() + 1);
      req.set_max_records(0);
      proto::WalFetchResponse resp;
      Status st = peer_factory_(address)->Fetch(req, &resp);
      if (absl::IsFailedPrecondition(st)) return st;
      if (st.ok()) answers[address] = {address, resp.last_epoch(), resp.last_seq()};
    }
    if (rounds % 25 == 0 && answers.size() < needed) {
      spdlog::warn("wal: catch-up for epoch {} has {} of the {} standby answers a quorum needs",
                   epoch, answers.size(), needed);
    }
  }
  // The most up-to-date log of the quorum holds every committed record.
  const Answer* best = nullptr;
  for (const auto& [address, a] : answers) {
    auto key = std::pair(a.last_epoch, a.last_seq);
    if (key > std::pair(store_->last_epoch(), store_->last_seq()) &&
        (best == nullptr || key > std::pair(best->last_epoch, best->last_seq))) {
      best = &a;
    }
  }
  if (best != nullptr) {
    spdlog::info("wal: adopting the log of {} (up to {}, epoch {}); ours ends at {} (epoch {})",
                 best->address, best->last_seq, best->last_epoch, store_->last_seq(),
                 store_->last_epoch());
    auto peer = peer_factory_(best->address);
    RETURN_IF_ERROR_PREPEND(AdoptFrom(peer.get(), epoch, best->last_seq), "adopting the standby's log");
  }
  return absl::OkStatus();
}

Status ReplicatedLog::AdoptFrom(WalPeer* peer, int64_t epoch, int64_t best_last_seq) {
  // Records up to our commit point are the same everywhere; start after it.
  int64_t from;
  {
    std::lock_guard<std::mutex> lock(mu_);
    from = commit_seq_ + 1;
  }
  while (from <= best_last_seq) {
    proto::WalFetchRequest req;
    req.set_epoch(epoch);
    req.set_from_seq(from);
    req.set_max_records(options_.max_batch);
    proto::WalFetchResponse resp;
    RETURN_IF_ERROR(peer->Fetch(req, &resp));
    // A newer leader may be reading our log: write only while our term
    // holds, and never while a handler serves it.
    std::lock_guard<std::mutex> handlers(follower_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!TermActiveLocked(epoch)) return absl::UnavailableError("catch-up aborted");
    }
    if (resp.has_snapshot() && resp.snapshot().last_seq() >= from) {
      RETURN_IF_ERROR(CheckSnapshotFormat(resp.snapshot()));
      RETURN_IF_ERROR(store_->InstallSnapshot(resp.snapshot()));
      std::lock_guard<std::mutex> lock(mu_);
      RETURN_IF_ERROR_PREPEND(RestoreLocked(resp.snapshot()), "restoring the snapshot adopted");
      applied_seq_ = commit_seq_ = resp.snapshot().last_seq();
      from = resp.snapshot().last_seq() + 1;
    }
    if (resp.records().empty()) break;
    std::vector<proto::WalRecord> records(resp.records().begin(), resp.records().end());
    for (const proto::WalRecord& r : records) RETURN_IF_ERROR(CheckRecordFormat(r));
    RETURN_IF_ERROR(AppendConflictFree(records));
    from = records.back().seq() + 1;
  }
  std::lock_guard<std::mutex> handlers(follower_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!TermActiveLocked(epoch)) return absl::UnavailableError("catch-up aborted");
  }
  if (store_->last_seq() > best_last_seq) RETURN_IF_ERROR(store_->TruncateFrom(best_last_seq + 1));
  return absl::OkStatus();
}

}  // namespace sluice::wal
