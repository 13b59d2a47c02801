// DataPath: the leader's side of the data path — sources, the blocks reported
// for each source partition, and which worker's receiver reads which
// partition (DESIGN.md "Data path", steps 1-2; docs/data-path.md).
//
// Module sluice::driver owns it. What must survive a failover is in the WAL:
// SourceRegistered, and BlocksAdded for every accepted block, so a new leader
// knows exactly where each partition's next block must start. The rest is
// derived and rebuilt each term: which worker runs which receiver (from the
// workers' registrations, then kept sticky by AssignPartitions), which live
// workers hold each block (from reports and registrations, filtered by
// membership).
//
// The invariant it keeps: per partition, accepted blocks are contiguous —
// each starts exactly where the previous one ended. A report that does not
// start there is REJECTED, so no offset lands in two blocks and no gap goes
// unnoticed, whatever the races between receivers on different workers.
//
// Each round (Tick, from the driver's heartbeat loop while it leads):
//   1. revoke: a worker losing partitions is sent its reduced set first; it
//      stops those receivers and flushes their reports before answering;
//   2. grant: every registered live worker is sent its full set, new
//      partitions starting at the partition's next offset.
// A revocation that fails (worker unreachable but not dead) holds the grant
// back until the worker answers or leaves the membership.
//
// Thread-safe: Register*/Report*/List* come on gRPC threads, Tick on the
// heartbeat thread. mu_ is never held across an RPC or a WAL append;
// append_mu_ serialises check-then-append so two reports for one partition
// cannot both pass the check.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "proto/driver.pb.h"
#include "proto/worker.pb.h"

namespace sluice::wal {
class ReplicatedLog;
}

namespace sluice::driver {

class Leadership;
class WorkerProxy;

class DataPath {
 public:
  // All pointers must outlive this object.
  DataPath(std::string driver_id, wal::ReplicatedLog* log, Leadership* leadership, WorkerProxy* workers,
           Clock* clock);

  [[nodiscard]] Result<proto::SourceSpec> RegisterSource(proto::SourceSpec spec);
  [[nodiscard]] Status RegisterWorker(const proto::RegisterWorkerRequest& request,
                                      proto::RegisterWorkerResponse* response);
  [[nodiscard]] Status ReportBlocks(const proto::ReportBlocksRequest& request,
                                    proto::ReportBlocksResponse* response);
  // The leader's view while it serves; otherwise the committed WAL's (no
  // workers, no holders).
  void ListSources(const proto::ListSourcesRequest& request, proto::ListSourcesResponse* response);

  // Drops from the leader's record the blocks of (source, partition) that
  // end at or before `offset` (their batch committed; WalState folds the same).
  void FoldCommitted(const std::string& source, int32_t partition, int64_t offset);

  // One assignment round (see the top of the file). `live` is the workers/
  // membership; `leader_address` is this driver's advertised address.
  void Tick(const std::vector<proto::MemberInfo>& live, const std::string& leader_address);

 private:
  struct Partition {
    int64_t next_offset = -1;
    std::vector<proto::BlockInfo> blocks;  // holders: every worker known to hold a copy
    std::string worker;                    // whose receiver reads it; "" for none
    proto::ReceiverState receiver;         // as that worker last reported it
    std::string error;                     // a fatal receiver error: not assigned again
  };
  struct Source {
    proto::SourceSpec spec;
    std::vector<Partition> partitions;
  };

  // OK if `epoch` is this leader's serving epoch; FAILED_PRECONDITION if
  // older; UNAVAILABLE if this driver does not serve.
  [[nodiscard]] Status CheckEpoch(int64_t epoch) const;
  // Rebuilds the state from the committed WAL when a new term began.
  void EnsureTermLocked(int64_t epoch);
  // Appends `blocks` as one BlocksAdded record and waits for the commit;
  // then records them (unless a new term began meanwhile).
  [[nodiscard]] Status AppendBlocks(int64_t epoch, std::vector<proto::BlockInfo> blocks);
  Partition* FindLocked(const std::string& source, int32_t partition);
  std::set<std::string> LiveLocked() const;

  const std::string driver_id_;
  wal::ReplicatedLog* const log_;
  Leadership* const leadership_;
  WorkerProxy* const workers_;
  Clock* const clock_;

  std::mutex append_mu_;  // serialises check-then-append; taken before mu_
  mutable std::mutex mu_;
  int64_t term_ = 0;                              // guarded by mu_: epoch of the state below
  std::map<std::string, Source> sources_;         // guarded by mu_
  std::map<std::string, int64_t> registered_;     // guarded by mu_: worker id -> epoch
  std::vector<proto::MemberInfo> live_;           // guarded by mu_
  int term_rounds_ = 0;                           // guarded by mu_: Tick rounds this term
};

}  // namespace sluice::driver
