// ClusterState: the driver's state machine over the replicated log — jobs,
// their planned and committed batches, committed source offsets, sources and
// the blocks accepted for each partition, the last leader and the last few
// leaders' terms (the status page's timeline).
//
// Module sluice::driver owns it. It is a pure function of the log: Apply()
// folds one committed record in (a DriverRecord payload, or the log's
// LeaderChange), and a snapshot carries it whole, so a restart rebuilds
// exactly the same state from snapshot + records. It is also where the rule
// lives that says which accepted blocks may go (FoldCommittedBlocks): once
// every running job reading a source is past them.
//
// Readers (planner, scheduler, registry, data path, status) take View(): an
// immutable state as of the last applied record, shared, not copied. Apply
// changes the state in place when no reader holds it, and copies it first
// when one does (copy on write), so a view never changes under its reader.
//
// Each BatchCommitted it applies also goes to its BatchHistory, the longer
// in-memory history of every job's batches the status page charts (not part
// of the state or its snapshots; Restore seeds it from recent_batches).
//
// Thread-safe: the log calls Apply/Snapshot/Restore one at a time; View()
// and history() from any thread.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "lib/common/status.h"
#include "lib/driver/batch_history.h"
#include "lib/wal/state_machine.h"
#include "proto/driver_log.pb.h"

namespace sluice::driver {

class ClusterState final : public wal::StateMachine {
 public:
  explicit ClusterState(BatchHistoryOptions history = {});

  // wal::StateMachine.
  [[nodiscard]] Status Apply(const proto::WalRecord& record) override;
  std::string Snapshot() const override;
  [[nodiscard]] Status Restore(std::string_view snapshot) override;

  // Folds in one driver record, as Apply does with a payload; `seq` names
  // the record in errors. A record that contradicts the state (a batch for
  // an unknown job, batches out of order) is a FAILED_PRECONDITION.
  [[nodiscard]] Status ApplyRecord(const proto::DriverRecord& record, int64_t seq);

  // The state as of the last applied record. Never changes; cheap to take.
  std::shared_ptr<const proto::ClusterState> View() const;

  // Every job's committed batches, longer than recent_batches (in memory).
  const BatchHistory& history() const { return history_; }

  // How many committed batches each job keeps in JobState.recent_batches.
  static constexpr int kRecentBatches = 20;
  // How many leaders' terms ClusterState.leader_terms keeps.
  static constexpr int kLeaderTerms = 32;
  // How many lost ranges PartitionState.lost keeps.
  static constexpr int kLostRanges = 20;

 private:
  // The state to change: copied first if a reader holds the current one.
  // Requires mu_.
  proto::ClusterState* MutableLocked();

  mutable std::mutex mu_;
  std::shared_ptr<proto::ClusterState> state_;  // guarded by mu_; never null
  BatchHistory history_;
};

// A source partition's state in `state`, or null if there is no such
// partition.
const proto::PartitionState* FindPartitionState(const proto::ClusterState& state, const std::string& source,
                                                int32_t partition);

// A job's state as users see it: "running", "draining", "stopped" or
// "failed" (docs/jobs.md "A job's life").
std::string JobStateName(const proto::JobState& job);

// The end of batch `batch_id`'s interval by the job's batch clock, which
// starts at submit and again at each restart and update.
int64_t BatchTimeOf(const proto::JobState& job, int64_t batch_id);

// Which spec batch `batch_id` runs: the one before an update for the batches
// planned before it (JobState.previous_spec), else the job's.
const proto::JobSpec& SpecForBatch(const proto::JobState& job, int64_t batch_id);

// Where a partition's retained blocks start after the folding rule ran: the
// first block still held, or the partition's next offset when none is.
// NOT_FOUND for an unknown source or partition.
[[nodiscard]] Result<int64_t> RetainedFrom(const proto::ClusterState& state, const std::string& source,
                                           int32_t partition);

}  // namespace sluice::driver
