// DataPath: the leader's side of the data path — sources, the blocks reported
// for each source partition, and which worker's receiver reads which
// partition (docs/design.md "Data path", steps 1-2; docs/data-path.md).
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
//   3. losses: a partition whose receiver found offsets gone from the source
//      is recorded as a SourceDataLost and goes on (on_data_loss: skip) or
//      stays stopped with the range named (fail) until sluicectl source reset.
//
// Thread-safe: Register*/Report*/List* come on gRPC threads, Tick on the
// heartbeat thread. mu_ is never held across an RPC or a WAL append;
// append_mu_ serialises check-then-append so two reports for one partition
// cannot both pass the check.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "lib/driver/assignment.h"
#include "lib/rpc/call.h"
#include "proto/driver.pb.h"
#include "proto/worker.pb.h"

namespace sluice::source {
class SourceConnector;
}  // namespace sluice::source

namespace sluice::driver {

class DriverLog;
class Leadership;
class RateControl;
class WorkerProxy;

class DataPath {
 public:
  // All pointers must outlive this object.
  DataPath(std::string driver_id, DriverLog* log, Leadership* leadership, WorkerProxy* workers,
           const RateControl* rates, Clock* clock);
  ~DataPath();

  [[nodiscard]] Result<proto::SourceSpec> RegisterSource(proto::SourceSpec spec);
  [[nodiscard]] Status RegisterWorker(const proto::RegisterWorkerRequest& request,
                                      proto::RegisterWorkerResponse* response);
  [[nodiscard]] Status ReportBlocks(const proto::ReportBlocksRequest& request,
                                    proto::ReportBlocksResponse* response);
  // The leader's view while it serves; otherwise the committed WAL's (no
  // workers, no holders).
  void ListSources(const proto::ListSourcesRequest& request, proto::ListSourcesResponse* response);

  // The workers among `live` known to hold the accepted `block` (as the
  // log has it): those that reported it or confirmed it when registering
  // with this term; before this term knows of the block, its reporter.
  std::vector<std::string> LiveHolders(const proto::BlockInfo& block, const std::set<std::string>& live) const;

  // The workers' membership changed: an assignment call in flight to a
  // worker no longer in `live` is cancelled, so the round waiting on it
  // ends and the next moves that worker's receivers (a paused or cut-off
  // worker would otherwise hold the round for the call's whole deadline).
  void WorkersChanged(const std::vector<proto::MemberInfo>& live);

  // sluicectl source reset (docs/data-path.md "When the source loses data"):
  // the partition goes on at `to` — earliest (the first offset the source
  // still holds, or the partition's next offset if that is still held),
  // latest (the source's end) or an offset — whether it FAILED or not. The
  // offsets skipped are recorded (SourceDataLost, by_reset), then
  // PartitionReset; a stopped partition is assigned again. Never backwards:
  // an offset already read is not read twice. NOT_FOUND for an unknown
  // source; INVALID_ARGUMENT for a partition it does not have or a `to` that
  // is none of the three; FAILED_PRECONDITION for an offset before the
  // partition's next one; UNAVAILABLE if the source cannot be asked.
  [[nodiscard]] Result<proto::ResetPartitionResponse> ResetPartition(const proto::ResetPartitionRequest& request);

  // How many source partitions `worker`'s receivers read, as assigned.
  int ReceiversOf(const std::string& worker);

  // One assignment round (see the top of the file). `live` is the workers/
  // membership; `leader_address` is this driver's advertised address.
  void Tick(const std::vector<proto::MemberInfo>& live, const std::string& leader_address);

 private:
  // The accepted blocks and the next offset of each partition are the
  // log's (ClusterState); this is what only the leader of a term knows.
  struct Partition {
    // Start offset of an accepted block -> every worker known to hold a copy.
    std::map<int64_t, std::vector<std::string>> holders;
    std::string worker;                    // whose receiver reads it; "" for none
    proto::ReceiverState receiver;         // as that worker last reported it
    std::string error;                     // a fatal receiver error: not assigned again
    // The receiver stopped because offsets are gone from the source: the
    // leader asks the source what it still holds (ResolveLosses), then
    // records the loss and goes on (skip) or names the range in `error`
    // (fail). `lost_at`: the receiver's next offset when it stopped.
    bool data_lost = false;
    int64_t lost_at = -1;
  };
  struct Source {
    proto::SourceSpec spec;
    std::vector<Partition> partitions;
  };

  // One assignment round: who reads what now (`current`), who should
  // (`desired`), and each partition's assignment as sent.
  struct Round {
    int64_t epoch = 0;
    std::map<std::string, proto::MemberInfo> workers;  // registered with this term and live
    std::map<PartitionId, std::string> current, desired;
    std::map<PartitionId, proto::ReceiverAssignment> assignment;
  };
  // Plans a round under mu_; nullopt during the grace rounds of a new term.
  std::optional<Round> PlanRound(const std::vector<proto::MemberInfo>& live_members, int64_t epoch);
  // Revocations: a worker losing partitions is sent its reduced set.
  void Revoke(Round& round, const std::string& leader_address);
  // Grants: every worker is sent its whole set.
  void Grant(Round& round, const std::string& leader_address);
  [[nodiscard]] Status SendAssignment(const Round& round, const proto::MemberInfo& worker,
                                      const std::vector<PartitionId>& set, const std::string& leader_address,
                                      proto::AssignReceiversResponse* response);
  // What a worker answered about its receivers: a permanent read error
  // stops the partition (it is not assigned again).
  void RecordReceivers(int64_t epoch, const std::string& worker, const proto::AssignReceiversResponse& response);

  // Partitions stopped by a loss of data: the lost range is asked of the
  // source and recorded (skip) or named (fail). data_path_loss.cc.
  void ResolveLosses(int64_t epoch);
  // The connector of `spec`, made once per source and kept.
  [[nodiscard]] Result<source::SourceConnector*> ConnectorOf(const proto::SourceSpec& spec);
  // Appends SourceDataLost for [from, to) of a partition; requires append_mu_.
  [[nodiscard]] Status AppendLoss(const std::string& source, int32_t partition, int64_t from, int64_t to,
                                  const std::string& reason, bool by_reset);

  // OK if `epoch` is this leader's serving epoch; FAILED_PRECONDITION if
  // older; UNAVAILABLE if this driver does not serve.
  [[nodiscard]] Status CheckEpoch(int64_t epoch) const;
  // Rebuilds the state from the committed WAL when a new term began.
  void EnsureTermLocked(int64_t epoch);
  // Appends `blocks` as one BlocksAdded record and waits for the commit;
  // then records them (unless a new term began meanwhile).
  [[nodiscard]] Status AppendBlocks(int64_t epoch, std::vector<proto::BlockInfo> blocks);
  Partition* FindLocked(const std::string& source, int32_t partition);
  // Forgets the holders of blocks `view` no longer keeps. Requires mu_.
  void PruneLocked(const proto::ClusterState& view);
  std::set<std::string> LiveLocked() const;

  const std::string driver_id_;
  DriverLog* const log_;
  Leadership* const leadership_;
  WorkerProxy* const workers_;
  const RateControl* const rates_;  // each receiver's rate limit
  Clock* const clock_;

  std::mutex append_mu_;  // serialises check-then-append; taken before mu_
  mutable std::mutex mu_;
  std::mutex calls_mu_;
  std::multimap<std::string, rpc::Cancellation*> calls_;  // guarded by calls_mu_: assignment calls by worker
  std::optional<std::set<std::string>> members_;          // guarded by calls_mu_: the last WorkersChanged
  int64_t term_ = 0;                              // guarded by mu_: epoch of the state below
  std::map<std::string, Source> sources_;         // guarded by mu_
  std::map<std::string, int64_t> registered_;     // guarded by mu_: worker id -> epoch
  std::vector<proto::MemberInfo> live_;           // guarded by mu_
  int term_rounds_ = 0;                           // guarded by mu_: Tick rounds this term
  std::mutex connectors_mu_;
  // guarded by connectors_mu_: by source name (a source's spec never changes)
  std::map<std::string, std::unique_ptr<source::SourceConnector>> connectors_;
};

}  // namespace sluice::driver
