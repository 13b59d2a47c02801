// Savepoints: the leader's side of `sluicectl savepoint` (TakeSavepoint) and
// `sluicectl submit --from-savepoint` (RestoreSavepoint); docs/jobs.md
// "Savepoints".
//
// Module sluice::driver owns it. A savepoint is a job as of one committed
// batch C: its spec, positions (committed_offsets), event time, and each
// reduce partition's state as of C, fetched from a live holder.
//
//   Take:    running job: hold its planning (JobHolds), wait until nothing
//            is in flight, read C from the log's view; stopped job: C as it
//            is. Stream the header, then every stateful partition's state.
//   Restore: header -> Admit (the spec's checks, the name free, its inline
//            sources) -> the sources' partition counts -> start batch S =
//            max(C, the name's last batch if it was deleted) -> each
//            partition's state installed as of S on two live workers ->
//            JobSubmitted with from_savepoint -> committed.
//
// Thread-safe: the calls read the log's view and the leader's parts, which
// are thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "proto/driver.pb.h"

namespace sluice::rpc {
class ChannelCache;
}  // namespace sluice::rpc

namespace sluice::driver {

class DriverLog;
class JobHolds;
class JobRegistry;
class Leadership;

class Savepoints {
 public:
  static constexpr int kFormat = 1;
  // How long a savepoint of a running job waits for its batches in flight.
  static constexpr std::chrono::milliseconds kQuiesceTimeout{30'000};

  // All pointers must outlive this object. `live_workers`: the workers group
  // as the leader sees it. `cluster`: this cluster's coordinator string.
  Savepoints(DriverLog* log, Leadership* leadership, JobRegistry* jobs, JobHolds* holds, rpc::ChannelCache* channels,
             std::function<std::vector<proto::MemberInfo>()> live_workers, std::string cluster, Clock* clock);

  // Writes the header, then the state chunks. NOT_FOUND for an unknown job;
  // DEADLINE_EXCEEDED if batches stay in flight; UNAVAILABLE naming a reduce
  // partition no live holder could give; CANCELLED if `write` fails.
  [[nodiscard]] Status Take(const std::string& job_id,
                            const std::function<bool(const proto::SavepointChunk&)>& write);

  // `read` gives the stream's chunks in order, false at its end.
  // FAILED_PRECONDITION for an unknown format or sources that differ;
  // ALREADY_EXISTS if the job name is taken; INVALID_ARGUMENT for a stream
  // that is not a savepoint.
  [[nodiscard]] Result<proto::RestoreSavepointResponse> Restore(
      const std::function<bool(proto::SavepointChunk*)>& read);

 private:
  [[nodiscard]] Status CheckLeader() const;
  // Waits (held) until `job_id` has nothing in flight; the view then.
  [[nodiscard]] Result<std::shared_ptr<const proto::ClusterState>> Quiesce(const std::string& job_id);
  // The state of `partition` as of `batch` from one of `holders` (by id).
  [[nodiscard]] Result<std::vector<proto::StateChunk>> FetchPartition(const std::string& job_id, int32_t partition,
                                                                      int64_t batch,
                                                                      const std::vector<std::string>& holders);
  // Installs `chunks` as the state of `partition` as of `base` on `worker`.
  [[nodiscard]] Status Install(const proto::MemberInfo& worker, const std::string& job_id, int32_t partition,
                               int64_t base, const std::vector<proto::StateChunk>& chunks);

  DriverLog* const log_;
  Leadership* const leadership_;
  JobRegistry* const jobs_;
  JobHolds* const holds_;
  rpc::ChannelCache* const channels_;
  const std::function<std::vector<proto::MemberInfo>()> live_workers_;
  const std::string cluster_;
  Clock* const clock_;
};

}  // namespace sluice::driver
