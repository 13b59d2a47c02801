// DriverLog: the driver's side of its replicated log — DriverRecords
// appended as the log's opaque payloads, and the ClusterState they build.
// What the planner, scheduler, registry and data path hold instead of the
// log itself.
//
// Module sluice::driver owns it. Thread-safe (as the log and the state are).
#pragma once

#include <memory>
#include <vector>

#include "lib/common/status.h"
#include "lib/driver/cluster_state.h"
#include "lib/wal/replicated_log.h"
#include "proto/driver_log.pb.h"

namespace sluice::driver {

class DriverLog {
 public:
  // Both must outlive this object; `state` is the state machine of `log`.
  DriverLog(wal::ReplicatedLog* log, const ClusterState* state) : log_(log), state_(state) {}

  // Appends `record` and waits until it is committed and applied: a View()
  // taken after an OK shows it. UNAVAILABLE as ReplicatedLog::Append.
  [[nodiscard]] Result<int64_t> Append(const proto::DriverRecord& record);
  // Appends `records` in order and waits for the last; returns its seq.
  [[nodiscard]] Result<int64_t> AppendBatch(const std::vector<proto::DriverRecord>& records);

  std::shared_ptr<const proto::ClusterState> View() const { return state_->View(); }
  wal::WalStats Stats() const { return log_->Stats(); }

 private:
  wal::ReplicatedLog* const log_;
  const ClusterState* const state_;
};

}  // namespace sluice::driver
