// WalState: the materialised view of the driver WAL — jobs, the last planned
// and committed batch of each, committed source offsets, the last leader.
//
// Module sluice::wal owns it. It is a pure function of the log: Apply()
// folds one committed record in, and a WalSnapshot carries it whole, so a
// restart rebuilds exactly the same view from snapshot + records.
//
// Thread-compatible (ReplicatedLog guards it).
#pragma once

#include "lib/common/status.h"
#include "proto/wal.pb.h"

namespace sluice::wal {

class WalState {
 public:
  WalState() = default;
  explicit WalState(proto::WalState state) : state_(std::move(state)) {}

  // Folds in one record. A record that contradicts the state (a batch for an
  // unknown job, batches out of order) is a FAILED_PRECONDITION naming it;
  // the log never holds one, since the leader checks before appending.
  [[nodiscard]] Status Apply(const proto::WalRecord& record);

  const proto::WalState& proto() const { return state_; }

  // How many committed batches each job keeps in JobState.recent_batches.
  static constexpr int kRecentBatches = 20;

 private:
  void FoldCommittedBlocks(const proto::BatchCommitted& bc);

  proto::WalState state_;
};

}  // namespace sluice::wal
