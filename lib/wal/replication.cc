// ReplicatedLog, leader side: one replicator thread per standby.
#include <algorithm>

#include "lib/wal/replicated_log.h"
#include "spdlog/spdlog.h"

namespace sluice::wal {

void ReplicatedLog::SetPeers(const std::vector<proto::MemberInfo>& peers) {
  std::vector<std::unique_ptr<Follower>> removed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    peer_addresses_.clear();
    for (const proto::MemberInfo& p : peers) {
      if (p.id() == options_.id) continue;
      peer_addresses_.push_back(p.rpc_address());
      peer_ids_[p.rpc_address()] = p.id();
    }
    if (static_cast<int>(peer_addresses_.size()) + 1 > options_.group_size) {
      spdlog::warn("wal: {} drivers are live but the WAL group size is {}: quorums may not meet; "
                   "set --wal-group-size to the number of drivers",
                   peer_addresses_.size() + 1, options_.group_size);
    }
    if (term_epoch_ == 0 || recovering_) return;  // followers start with the term
    for (auto it = followers_.begin(); it != followers_.end();) {
      if (std::find(peer_addresses_.begin(), peer_addresses_.end(), it->first) == peer_addresses_.end()) {
        it->second->stop = true;
        removed.push_back(std::move(it->second));
        it = followers_.erase(it);
      } else {
        ++it;
      }
    }
    for (const std::string& address : peer_addresses_) {
      if (!followers_.contains(address)) StartFollowerLocked(address);
    }
    work_cv_.notify_all();
  }
  for (auto& f : removed) {
    if (f->thread.joinable()) f->thread.join();
  }
}

void ReplicatedLog::StartFollowerLocked(const std::string& address) {
  auto f = std::make_unique<Follower>();
  auto id = peer_ids_.find(address);
  f->id = id != peer_ids_.end() ? id->second : address;
  f->address = address;
  f->peer = peer_factory_(address);
  Follower* raw = f.get();
  const int64_t epoch = term_epoch_;
  f->thread = std::thread([this, raw, epoch] { ReplicateLoop(raw, epoch); });
  followers_[address] = std::move(f);
}

void ReplicatedLog::NoteCallResult(Follower* f, const Status& st, const char* state) {
  std::lock_guard<std::mutex> lock(mu_);
  f->state = state;
  if (st.ok()) {
    f->last_contact_ms = clock_->UnixMillis();
    if (!f->last_error.empty()) {
      spdlog::info("wal: standby {} at {} answers again (acknowledged {}, {} records behind)", f->id, f->address,
                   f->match_seq, std::max<int64_t>(0, durable_seq_ - f->match_seq));
      f->last_error.clear();
    }
    return;
  }
  // Logged once per spell: the replicator retries every 100 ms.
  if (f->last_error.empty()) {
    spdlog::warn("wal: standby {} at {} fails ({}); retrying, it lags until it answers", f->id, f->address,
                 st.ToString());
  }
  f->last_error = st.ToString();
}

void ReplicatedLog::ReplicateLoop(Follower* f, int64_t epoch) {
  int64_t next = store_->last_seq() + 1;  // walked back on a mismatch
  auto active = [&] { return TermActiveLocked(epoch) && !f->stop; };
  auto pause = [&](std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> lock(mu_);
    work_cv_.wait_for(lock, d, [&] { return !active(); });
  };
  auto fenced = [&] {
    std::function<void(int64_t)> cb;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!active()) return;
      AbortLocked();
      cb = on_fenced_;
    }
    spdlog::warn("wal: standby {} refused epoch {}: a newer leader exists", f->address, epoch);
    if (cb) cb(epoch + 1);
  };
  while (true) {
    int64_t durable, commit;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait_for(lock, options_.heartbeat, [&] { return next <= durable_seq_ || !active(); });
      if (!active()) return;
      durable = durable_seq_;
      commit = commit_seq_;
    }
    if (next <= store_->snapshot_seq()) {
      std::optional<proto::WalSnapshot> snap = store_->snapshot();
      proto::WalInstallSnapshotRequest req;
      req.set_epoch(epoch);
      *req.mutable_snapshot() = *snap;
      proto::WalInstallSnapshotResponse resp;
      {
        std::lock_guard<std::mutex> lock(mu_);
        f->state = "sending snapshot";
      }
      Status st = f->peer->InstallSnapshot(req, &resp);
      if (absl::IsFailedPrecondition(st)) return fenced();
      if (!st.ok()) {
        NoteCallResult(f, st, "sending snapshot");
        pause(std::chrono::milliseconds(100));
        continue;
      }
      spdlog::info("wal: sent snapshot at {} to {}", snap->last_seq(), f->address);
      next = snap->last_seq() + 1;
      {
        std::lock_guard<std::mutex> lock(mu_);
        f->match_seq = std::max(f->match_seq, snap->last_seq());
        AdvanceCommitLocked();
      }
      NoteCallResult(f, st, "replicating");
      continue;
    }
    proto::WalAppendRequest req;
    req.set_epoch(epoch);
    req.set_leader_id(options_.id);
    req.set_commit_seq(commit);
    if (next <= durable) {
      Result<std::vector<proto::WalRecord>> records = store_->Read(
          next, static_cast<int>(std::min<int64_t>(options_.max_batch, durable - next + 1)));
      if (!records.ok()) continue;  // folded meanwhile: the snapshot path next round
      for (proto::WalRecord& r : *records) *req.add_records() = std::move(r);
    }
    Result<int64_t> prev_epoch = store_->EpochAt(next - 1);
    if (!prev_epoch.ok()) continue;  // folded meanwhile
    req.set_prev_seq(next - 1);
    req.set_prev_epoch(*prev_epoch);
    proto::WalAppendResponse resp;
    Status st = f->peer->Append(req, &resp);
    if (absl::IsFailedPrecondition(st)) return fenced();
    if (!st.ok()) {
      NoteCallResult(f, st, req.records_size() > 0 ? "replicating" : "probing");
      pause(std::chrono::milliseconds(100));
      continue;
    }
    if (resp.ok()) {
      const int64_t match = req.prev_seq() + req.records_size();
      next = match + 1;
      {
        std::lock_guard<std::mutex> lock(mu_);
        f->match_seq = std::max(f->match_seq, match);
        AdvanceCommitLocked();
      }
      NoteCallResult(f, st, "replicating");
    } else {
      next = std::max<int64_t>(1, std::min(next - 1, resp.last_seq() + 1));
      NoteCallResult(f, st, "probing");
    }
  }
}

}  // namespace sluice::wal
