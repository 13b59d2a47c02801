#include "lib/rpc/driver_client.h"

#include "lib/rpc/channel_cache.h"
#include "lib/rpc/internal/call.h"
#include "proto/driver.grpc.pb.h"

namespace sluice::rpc {

struct DriverClient::Stub {
  std::unique_ptr<proto::DriverService::Stub> stub;
};

DriverClient::DriverClient(ChannelCache& channels, const std::string& address, RetryPolicy retry)
    : address_(address),
      retry_(retry),
      stub_(std::make_unique<Stub>(Stub{proto::DriverService::NewStub(channels.Get(address))})) {}

DriverClient::~DriverClient() = default;
DriverClient::DriverClient(DriverClient&&) noexcept = default;
DriverClient& DriverClient::operator=(DriverClient&&) noexcept = default;

// One unary method of DriverService: request in, Result<response> out.
#define SLUICE_DRIVER_UNARY(Method, Request, Response)                                                      \
  Result<proto::Response> DriverClient::Method(const proto::Request& request,                              \
                                               std::chrono::milliseconds deadline) {                       \
    return internal::Unary<proto::Response>(retry_, deadline, [&](grpc::ClientContext* ctx, auto* response) { \
      return stub_->stub->Method(ctx, request, response);                                                   \
    });                                                                                                     \
  }

SLUICE_DRIVER_UNARY(AppendMarker, AppendMarkerRequest, AppendMarkerResponse)
SLUICE_DRIVER_UNARY(ReadWal, ReadWalRequest, ReadWalResponse)
SLUICE_DRIVER_UNARY(RegisterSource, RegisterSourceRequest, RegisterSourceResponse)
SLUICE_DRIVER_UNARY(ListSources, ListSourcesRequest, ListSourcesResponse)
SLUICE_DRIVER_UNARY(RegisterWorker, RegisterWorkerRequest, RegisterWorkerResponse)
SLUICE_DRIVER_UNARY(ReportBlocks, ReportBlocksRequest, ReportBlocksResponse)
SLUICE_DRIVER_UNARY(JoinGroup, JoinGroupRequest, JoinGroupResponse)
SLUICE_DRIVER_UNARY(SubmitJob, SubmitJobRequest, SubmitJobResponse)
SLUICE_DRIVER_UNARY(ListJobs, ListJobsRequest, ListJobsResponse)
SLUICE_DRIVER_UNARY(DescribeJob, DescribeJobRequest, JobInfo)
SLUICE_DRIVER_UNARY(StopJob, StopJobRequest, StopJobResponse)
SLUICE_DRIVER_UNARY(ResetPartition, ResetPartitionRequest, ResetPartitionResponse)
SLUICE_DRIVER_UNARY(Drill, DrillRequest, DrillResponse)
SLUICE_DRIVER_UNARY(DrainWorker, DrainWorkerRequest, DrainWorkerResponse)
SLUICE_DRIVER_UNARY(Rebalance, RebalanceRequest, RebalanceResponse)
SLUICE_DRIVER_UNARY(DeleteJob, DeleteJobRequest, DeleteJobResponse)
SLUICE_DRIVER_UNARY(RestartJob, RestartJobRequest, RestartJobResponse)
SLUICE_DRIVER_UNARY(UpdateJob, UpdateJobRequest, UpdateJobResponse)

#undef SLUICE_DRIVER_UNARY

Result<proto::DriverStatus> DriverClient::GetStatus(std::chrono::milliseconds deadline) {
  return internal::Unary<proto::DriverStatus>(retry_, deadline, [&](grpc::ClientContext* ctx, auto* response) {
    return stub_->stub->GetStatus(ctx, proto::GetDriverStatusRequest(), response);
  });
}

Status DriverClient::TakeSavepoint(const proto::TakeSavepointRequest& request,
                                   const ChunkConsumer<proto::SavepointChunk>& consume,
                                   std::chrono::milliseconds deadline) {
  return internal::ReadStream<proto::SavepointChunk>(
      deadline, [&](grpc::ClientContext* ctx) { return stub_->stub->TakeSavepoint(ctx, request); }, consume);
}

Result<proto::RestoreSavepointResponse> DriverClient::RestoreSavepoint(
    const ChunkProducer<proto::SavepointChunk>& produce, std::chrono::milliseconds deadline) {
  return internal::WriteStream<proto::RestoreSavepointResponse, proto::SavepointChunk>(
      deadline,
      [&](grpc::ClientContext* ctx, auto* response) { return stub_->stub->RestoreSavepoint(ctx, response); },
      produce);
}

Result<std::string> FindServingLeader(ChannelCache& channels, const std::vector<std::string>& drivers,
                                      std::chrono::milliseconds deadline) {
  for (const std::string& address : drivers) {
    Result<proto::DriverStatus> got = DriverClient(channels, address).GetStatus(deadline);
    if (got.ok() && got->role() == proto::DRIVER_ROLE_LEADER && got->wal().serving()) return address;
  }
  return absl::UnavailableError(fmt::format("no serving leader among {} driver(s)", drivers.size()));
}

}  // namespace sluice::rpc
