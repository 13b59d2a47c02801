// ReplicatedLog: a log of opaque records replicated from the leader to the
// standbys, with quorum commit and epoch fencing (docs/wal.md).
//
// Module sluice::wal owns it. It knows nothing of what the records mean: it
// hands each committed record to the StateMachine it is given, which also
// provides and restores the snapshots the log compacts into. Every driver has
// one, over the driver's ClusterState. As a standby it answers
// the leader's Append/Fetch/InstallSnapshot (the Handle* methods, called by
// WalServiceImpl). As the leader of epoch E it:
//
//   1. catches up (BecomeLeader): asks the live standbys for their logs,
//      raising their fence to E, until a quorum of the group (itself
//      included) has answered; adopts the most up-to-date log among them
//      (highest last epoch, then longest), truncating its own conflicting
//      uncommitted tail; then appends LeaderChange{E};
//   2. appends (Append): one writer thread group-commits pending records to
//      RocksDB (one synced write for all), while one replicator thread per
//      standby streams them out; a standby acknowledges after its own synced
//      write. A record is committed once durable on a quorum (group_size/2+1,
//      leader included) and the newest committed record is of epoch E (so an
//      older leader's record is never counted committed on its own: Raft's
//      rule). Append returns only then.
//   3. applies committed records to the state machine, and every
//      compact_every records folds them into its snapshot and deletes them; a
//      standby too far behind gets the snapshot, then the records after it.
//
//   FOLLOWER --BecomeLeader(E)--> RECOVERING --LeaderChange committed--> SERVING
//      ^                              |                                    |
//      +------- StepDown() / a higher epoch seen (on_fenced) -------------+
//
// A full disk: a leader whose own append fails steps down (on_fenced); a
// standby whose append fails answers with the error and the leader retries
// every 100 ms, so once the store has resumed by itself (WalStore, StoreHealth)
// the standby catches up like any other that fell behind. The leader keeps,
// per standby, what it acknowledged, when it last answered and its last error
// (Stats().peers): why a standby lags.
//
// Fencing: the store keeps the highest epoch seen (synced). A request with a
// lower epoch is refused with FAILED_PRECONDITION; a leader refused that way,
// or shown a higher epoch, reports it through on_fenced and must step down.
//
// Thread-safe. BecomeLeader blocks (call it from its own thread); Abort()
// makes it return early; StepDown() joins the term's threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "lib/wal/wal_peer.h"
#include "lib/wal/state_machine.h"
#include "lib/wal/wal_store.h"
#include "proto/common.pb.h"
#include "proto/wal.pb.h"

namespace sluice::wal {

struct ReplicatedLogOptions {
  std::string id;                // this driver's id
  int group_size = 3;            // drivers in the replication group
  int64_t compact_every = 10'000;
  int max_batch = 2000;          // records per replication request
  std::chrono::milliseconds heartbeat{100};  // empty appends carry the commit point
  Clock* clock = nullptr;  // for the standbys' last contact; nullptr: the real clock
};

// The leader's view of one standby.
struct WalPeerStats {
  std::string id;
  std::string address;
  int64_t acked_seq = 0;             // the last record known durable there
  int64_t lag = 0;                   // records the leader holds durable beyond it
  int64_t last_contact_unix_ms = 0;  // its last successful answer; 0: none this term
  std::string last_error;            // of its last call; "" once a call succeeds
  std::string state;                 // "replicating", "probing", "sending snapshot"
};

struct WalStats {
  int64_t last_seq = 0;
  int64_t commit_seq = 0;
  int64_t snapshot_seq = 0;
  int64_t fence = 0;
  bool serving = false;  // leader, caught up, LeaderChange committed
  storage::StoreHealthInfo store;  // whether this driver's own log takes writes
  std::vector<WalPeerStats> peers;  // while leading: one per standby, by id
};

class WalProbe;

class ReplicatedLog {
 public:
  // `state` (not owned) must outlive the log; only the log writes it.
  ReplicatedLog(std::unique_ptr<WalStore> store, StateMachine* state, ReplicatedLogOptions options,
                WalPeerFactory peers);
  ~ReplicatedLog();

  // Rebuilds the state from the snapshot and the records known committed.
  [[nodiscard]] Status Init();

  // Called with the new epoch when this driver learns of a higher one while
  // leading or recovering; it must step down. Runs on the thread that saw it.
  void SetOnFenced(std::function<void(int64_t epoch)> on_fenced);
  // The other live drivers (from the drivers/ group); self is ignored.
  void SetPeers(const std::vector<proto::MemberInfo>& peers);

  // --- leader ---
  // Leads epoch E unless an Abort() came after abort_generation() returned
  // `generation` (so an abort that races the election is never lost).
  [[nodiscard]] Status BecomeLeader(int64_t epoch, int64_t generation);
  // Makes a running BecomeLeader and waiting Appends give up; non-blocking.
  void Abort();
  int64_t abort_generation() const;
  // Aborts for good: no term starts after this (shutdown).
  void Close();
  // Ends the term: stops the writer and replicators and fails waiting
  // appends with UNAVAILABLE. Records written but not committed stay in the
  // local log; the next leader decides their fate.
  void StepDown();
  // Appends a record carrying `payload` (seq and epoch are assigned) and
  // waits until it is committed and applied. UNAVAILABLE if this driver is
  // not serving or the term ends first (the record may then still be
  // committed by a later leader).
  [[nodiscard]] Result<int64_t> Append(std::string payload);
  // Appends one record per payload, in order; waits until the last is
  // committed and returns its seq. (One wait, one wake-up, for many records.)
  [[nodiscard]] Result<int64_t> AppendBatch(std::vector<std::string> payloads);
  // Appends' commit latencies go to `probe` (wal_probe.h; null: none).
  void set_probe(WalProbe* probe) {
    std::lock_guard<std::mutex> lock(mu_);
    probe_.store(probe);
  }

  // --- follower (WalService) ---
  [[nodiscard]] Status HandleAppend(const proto::WalAppendRequest& request,
                                    proto::WalAppendResponse* response);
  [[nodiscard]] Status HandleFetch(const proto::WalFetchRequest& request,
                                   proto::WalFetchResponse* response);
  [[nodiscard]] Status HandleInstallSnapshot(const proto::WalInstallSnapshotRequest& request,
                                             proto::WalInstallSnapshotResponse* response);

  // --- reads ---
  WalStats Stats() const;
  // Committed records from `from` (OUT_OF_RANGE if folded: read the snapshot).
  [[nodiscard]] Result<std::vector<proto::WalRecord>> ReadCommitted(int64_t from, int max) const;
  std::optional<proto::WalSnapshot> Snapshot() const { return store_->snapshot(); }

 private:
  struct Follower {
    std::string id;
    std::string address;
    std::unique_ptr<WalPeer> peer;
    int64_t match_seq = 0;         // guarded by mu_
    int64_t last_contact_ms = 0;   // guarded by mu_
    std::string last_error;        // guarded by mu_
    std::string state = "probing";  // guarded by mu_
    bool stop = false;             // guarded by mu_
    std::thread thread;
  };

  int quorum() const { return options_.group_size / 2 + 1; }
  // Requires mu_. Raises the fence to `epoch` if higher; tells on_fenced if
  // this driver leads an older term. FAILED_PRECONDITION if `epoch` is stale.
  [[nodiscard]] Status CheckFenceLocked(int64_t epoch, std::function<void()>* notify);
  [[nodiscard]] Status ApplyUpToLocked(int64_t seq);
  // Queues `records` for the writer and waits for the commit of the last;
  // `lock` holds mu_.
  [[nodiscard]] Result<int64_t> AppendLocked(std::unique_lock<std::mutex>& lock,
                                             std::vector<proto::WalRecord> records);
  // Wakes every waiter (the term ended or was aborted). Requires mu_.
  void WakeAllLocked();
  void AdvanceCommitLocked();
  void StartFollowerLocked(const std::string& address);
  // Records the outcome of a call to `f` (and logs when a standby starts or
  // stops refusing). Takes mu_.
  void NoteCallResult(Follower* f, const Status& st, const char* state);
  void StopFollowers(std::vector<std::unique_ptr<Follower>>* out);
  void WriterLoop(int64_t epoch);
  void ReplicateLoop(Follower* f, int64_t epoch);
  [[nodiscard]] Status CatchUp(int64_t epoch);
  [[nodiscard]] Status AdoptFrom(WalPeer* peer, int64_t epoch, int64_t best_last_seq);
  [[nodiscard]] Status AppendConflictFree(const std::vector<proto::WalRecord>& records);
  bool TermActiveLocked(int64_t epoch) const {
    return term_epoch_ == epoch && abort_generation_ == term_generation_ && !closed_;
  }
  // Ends the current term's activity (waiters give up). Requires mu_.
  void AbortLocked();

  // Restores the state machine from `snapshot` (or the empty state).
  // Requires mu_.
  [[nodiscard]] Status RestoreLocked(const std::optional<proto::WalSnapshot>& snapshot);

  const std::unique_ptr<WalStore> store_;
  const ReplicatedLogOptions options_;
  const WalPeerFactory peer_factory_;
  Clock* const clock_;
  std::atomic<WalProbe*> probe_{nullptr};

  mutable std::mutex mu_;
  std::condition_variable commit_cv_;  // appenders wait for commit_seq_
  std::condition_variable writer_cv_;  // the writer waits for pending records
  std::condition_variable work_cv_;    // replicators wait for durable records
  StateMachine* const state_;          // written under mu_; committed records only
  int64_t applied_seq_ = 0;            // guarded by mu_
  int64_t commit_seq_ = 0;             // guarded by mu_
  int64_t term_epoch_ = 0;             // guarded by mu_; 0: not leading
  int64_t term_start_seq_ = 0;         // guarded by mu_; seq of our LeaderChange
  int64_t abort_generation_ = 0;       // guarded by mu_; bumped by every abort
  int64_t term_generation_ = -1;       // guarded by mu_; abort_generation_ at term start
  bool closed_ = false;                // guarded by mu_
  bool apply_failed_ = false;          // guarded by mu_; the term ends: tell on_fenced
  bool recovering_ = false;            // guarded by mu_
  bool serving_ = false;               // guarded by mu_
  int64_t assigned_seq_ = 0;           // guarded by mu_
  int64_t durable_seq_ = 0;            // guarded by mu_
  std::vector<proto::WalRecord> pending_;  // guarded by mu_
  std::vector<std::string> peer_addresses_;  // guarded by mu_
  std::map<std::string, std::string> peer_ids_;  // guarded by mu_; address -> driver id
  std::map<std::string, std::unique_ptr<Follower>> followers_;  // guarded by mu_
  std::thread writer_;
  std::function<void(int64_t)> on_fenced_;  // guarded by mu_
  // Serialises follower-side handlers with each other (they write the store).
  std::mutex follower_mu_;
};

}  // namespace sluice::wal
