// DriverClient: every call to one driver's DriverService (proto/driver.proto),
// from sluicectl, from workers (registration, block reports) and from tests
// and benchmarks; and FindServingLeader / CallLeader, how sluicectl reaches
// the leader.
//
// Module sluice::rpc owns it. A client is cheap: it uses its address's channel
// from a ChannelCache, so make one where it is needed. Each method has one
// deadline, a default below that a caller may override, and the client's
// RetryPolicy. Errors are the canonical codes the driver answered (a standby
// answers UNAVAILABLE naming the leader), or UNAVAILABLE / DEADLINE_EXCEEDED
// from the transport.
//
// Thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lib/common/status.h"
#include "lib/rpc/call.h"
#include "proto/driver.pb.h"

namespace sluice::rpc {

class ChannelCache;

class DriverClient {
 public:
  // Default deadlines.
  static constexpr std::chrono::milliseconds kStatusDeadline{500};
  // Calls that return once their WAL record is committed.
  static constexpr std::chrono::milliseconds kAppendMarkerDeadline{5'000};
  static constexpr std::chrono::milliseconds kRegisterSourceDeadline{10'000};
  static constexpr std::chrono::milliseconds kSubmitJobDeadline{15'000};
  static constexpr std::chrono::milliseconds kStopJobDeadline{15'000};
  static constexpr std::chrono::milliseconds kResetPartitionDeadline{15'000};  // asks the source, then appends
  // Reads.
  static constexpr std::chrono::milliseconds kReadWalDeadline{5'000};
  static constexpr std::chrono::milliseconds kListSourcesDeadline{3'000};
  static constexpr std::chrono::milliseconds kListJobsDeadline{3'000};
  static constexpr std::chrono::milliseconds kDescribeJobDeadline{3'000};
  // Worker -> leader.
  static constexpr std::chrono::milliseconds kRegisterWorkerDeadline{10'000};
  static constexpr std::chrono::milliseconds kReportBlocksDeadline{5'000};
  static constexpr std::chrono::milliseconds kJoinGroupDeadline{2'000};
  // The driver answers before the fault lands.
  static constexpr std::chrono::milliseconds kDrillDeadline{2'000};
  // Savepoints: the whole state of a job crosses (and a restore waits for
  // the copies on the workers and the commit).
  static constexpr std::chrono::milliseconds kSavepointDeadline{300'000};

  // `channels` must outlive the call to the constructor only.
  DriverClient(ChannelCache& channels, const std::string& address, RetryPolicy retry = {});
  ~DriverClient();
  DriverClient(DriverClient&&) noexcept;
  DriverClient& operator=(DriverClient&&) noexcept;

  const std::string& address() const { return address_; }

  [[nodiscard]] Result<proto::DriverStatus> GetStatus(std::chrono::milliseconds deadline = kStatusDeadline);
  [[nodiscard]] Result<proto::AppendMarkerResponse> AppendMarker(
      const proto::AppendMarkerRequest& request, std::chrono::milliseconds deadline = kAppendMarkerDeadline);
  [[nodiscard]] Result<proto::ReadWalResponse> ReadWal(const proto::ReadWalRequest& request,
                                                       std::chrono::milliseconds deadline = kReadWalDeadline);
  [[nodiscard]] Result<proto::RegisterSourceResponse> RegisterSource(
      const proto::RegisterSourceRequest& request, std::chrono::milliseconds deadline = kRegisterSourceDeadline);
  [[nodiscard]] Result<proto::ListSourcesResponse> ListSources(
      const proto::ListSourcesRequest& request, std::chrono::milliseconds deadline = kListSourcesDeadline);
  [[nodiscard]] Result<proto::RegisterWorkerResponse> RegisterWorker(
      const proto::RegisterWorkerRequest& request, std::chrono::milliseconds deadline = kRegisterWorkerDeadline);
  [[nodiscard]] Result<proto::ReportBlocksResponse> ReportBlocks(
      const proto::ReportBlocksRequest& request, std::chrono::milliseconds deadline = kReportBlocksDeadline);
  [[nodiscard]] Result<proto::JoinGroupResponse> JoinGroup(const proto::JoinGroupRequest& request,
                                                           std::chrono::milliseconds deadline = kJoinGroupDeadline);
  [[nodiscard]] Result<proto::SubmitJobResponse> SubmitJob(const proto::SubmitJobRequest& request,
                                                           std::chrono::milliseconds deadline = kSubmitJobDeadline);
  [[nodiscard]] Result<proto::ListJobsResponse> ListJobs(const proto::ListJobsRequest& request,
                                                         std::chrono::milliseconds deadline = kListJobsDeadline);
  [[nodiscard]] Result<proto::JobInfo> DescribeJob(const proto::DescribeJobRequest& request,
                                                   std::chrono::milliseconds deadline = kDescribeJobDeadline);
  [[nodiscard]] Result<proto::StopJobResponse> StopJob(const proto::StopJobRequest& request,
                                                       std::chrono::milliseconds deadline = kStopJobDeadline);
  // Streams: TakeSavepoint hands each chunk to `consume`; RestoreSavepoint
  // sends what `produce` writes (see call.h).
  [[nodiscard]] Status TakeSavepoint(const proto::TakeSavepointRequest& request,
                                     const ChunkConsumer<proto::SavepointChunk>& consume,
                                     std::chrono::milliseconds deadline = kSavepointDeadline);
  [[nodiscard]] Result<proto::RestoreSavepointResponse> RestoreSavepoint(
      const ChunkProducer<proto::SavepointChunk>& produce, std::chrono::milliseconds deadline = kSavepointDeadline);
  [[nodiscard]] Result<proto::ResetPartitionResponse> ResetPartition(
      const proto::ResetPartitionRequest& request, std::chrono::milliseconds deadline = kResetPartitionDeadline);
  [[nodiscard]] Result<proto::DrillResponse> Drill(const proto::DrillRequest& request,
                                                   std::chrono::milliseconds deadline = kDrillDeadline);
  // Reduce-partition placement; DrainWorker waits for a WAL commit.
  [[nodiscard]] Result<proto::DrainWorkerResponse> DrainWorker(const proto::DrainWorkerRequest& request,
                                                               std::chrono::milliseconds deadline = kStopJobDeadline);
  [[nodiscard]] Result<proto::RebalanceResponse> Rebalance(const proto::RebalanceRequest& request,
                                                           std::chrono::milliseconds deadline = kStopJobDeadline);
  // The job lifecycle; each waits for a WAL commit, as StopJob does.
  [[nodiscard]] Result<proto::DeleteJobResponse> DeleteJob(const proto::DeleteJobRequest& request,
                                                           std::chrono::milliseconds deadline = kStopJobDeadline);
  [[nodiscard]] Result<proto::RestartJobResponse> RestartJob(const proto::RestartJobRequest& request,
                                                             std::chrono::milliseconds deadline = kStopJobDeadline);
  [[nodiscard]] Result<proto::UpdateJobResponse> UpdateJob(const proto::UpdateJobRequest& request,
                                                           std::chrono::milliseconds deadline = kSubmitJobDeadline);

 private:
  struct Stub;  // the generated stub (driver.grpc.pb.h stays in the .cc)

  std::string address_;
  RetryPolicy retry_;
  std::unique_ptr<Stub> stub_;
};

// The first of `drivers` whose GetStatus (each with `deadline`) says it leads
// and its WAL serves. UNAVAILABLE "no serving leader among N driver(s)" if
// none does.
[[nodiscard]] Result<std::string> FindServingLeader(ChannelCache& channels, const std::vector<std::string>& drivers,
                                                    std::chrono::milliseconds deadline);

// Finds the serving leader among `drivers` and returns `call(DriverClient&)`
// made on it: a Result or a Status, the leader-finding error if there is no
// leader.
template <typename Call>
auto CallLeader(ChannelCache& channels, const std::vector<std::string>& drivers, std::chrono::milliseconds deadline,
                Call&& call) -> decltype(call(std::declval<DriverClient&>())) {
  Result<std::string> leader = FindServingLeader(channels, drivers, deadline);
  if (!leader.ok()) return leader.status();
  DriverClient client(channels, *leader);
  return std::forward<Call>(call)(client);
}

}  // namespace sluice::rpc
