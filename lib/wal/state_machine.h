// StateMachine: what the replicated log feeds its committed records to.
//
// Module sluice::wal owns the interface; the log's user implements it (the
// driver's ClusterState). The log never looks inside a payload: it replicates
// records, decides when they are committed, and hands them here in order,
// each exactly once per incarnation of the state. Snapshot() and Restore()
// let the log fold a prefix of itself away and send it whole to a standby
// that is too far behind (the shape of Redpanda's raft::state_machine_base).
//
// Thread-safety: the log calls these methods one at a time, under its lock;
// an implementation that also serves readers guards them itself.
#pragma once

#include <string>
#include <string_view>

#include "lib/common/status.h"
#include "proto/wal.pb.h"

namespace sluice::wal {

class StateMachine {
 public:
  virtual ~StateMachine() = default;

  // Folds in one committed record (a payload, or a LeaderChange). An error
  // is logged by the log and the record skipped: a leader checks records
  // before it appends them, so a log it wrote never holds one.
  [[nodiscard]] virtual Status Apply(const proto::WalRecord& record) = 0;

  // The whole state as of the last record applied.
  virtual std::string Snapshot() const = 0;

  // Replaces the state by `snapshot`, as Snapshot() wrote it; an empty
  // string is the state of an empty log. An error (a snapshot it cannot
  // read, e.g. of a newer format) stops the log from starting.
  [[nodiscard]] virtual Status Restore(std::string_view snapshot) = 0;
};

}  // namespace sluice::wal
