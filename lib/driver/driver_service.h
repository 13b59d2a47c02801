// DriverServiceImpl: the gRPC face of driverd (proto/driver.proto).
//
// Module sluice::driver owns it. It forwards to the Driver, and never blocks
// on another daemon except AppendMarker, which waits for the commit.
// Thread-safe.
#pragma once

#include "proto/driver.grpc.pb.h"

namespace sluice::driver {

class Driver;

class DriverServiceImpl final : public proto::DriverService::Service {
 public:
  explicit DriverServiceImpl(Driver* driver) : driver_(driver) {}

  grpc::Status GetStatus(grpc::ServerContext* context, const proto::GetDriverStatusRequest* request,
                         proto::DriverStatus* response) override;
  grpc::Status AppendMarker(grpc::ServerContext* context, const proto::AppendMarkerRequest* request,
                            proto::AppendMarkerResponse* response) override;
  grpc::Status ReadWal(grpc::ServerContext* context, const proto::ReadWalRequest* request,
                       proto::ReadWalResponse* response) override;
  grpc::Status RegisterSource(grpc::ServerContext* context, const proto::RegisterSourceRequest* request,
                              proto::RegisterSourceResponse* response) override;
  grpc::Status ListSources(grpc::ServerContext* context, const proto::ListSourcesRequest* request,
                           proto::ListSourcesResponse* response) override;
  grpc::Status RegisterWorker(grpc::ServerContext* context, const proto::RegisterWorkerRequest* request,
                              proto::RegisterWorkerResponse* response) override;
  grpc::Status ReportBlocks(grpc::ServerContext* context, const proto::ReportBlocksRequest* request,
                            proto::ReportBlocksResponse* response) override;
  grpc::Status JoinGroup(grpc::ServerContext* context, const proto::JoinGroupRequest* request,
                         proto::JoinGroupResponse* response) override;
  grpc::Status SubmitJob(grpc::ServerContext* context, const proto::SubmitJobRequest* request,
                         proto::SubmitJobResponse* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const proto::ListJobsRequest* request,
                        proto::ListJobsResponse* response) override;
  grpc::Status DescribeJob(grpc::ServerContext* context, const proto::DescribeJobRequest* request,
                           proto::JobInfo* response) override;
  grpc::Status StopJob(grpc::ServerContext* context, const proto::StopJobRequest* request,
                       proto::StopJobResponse* response) override;
  grpc::Status DeleteJob(grpc::ServerContext* context, const proto::DeleteJobRequest* request,
                         proto::DeleteJobResponse* response) override;
  grpc::Status RestartJob(grpc::ServerContext* context, const proto::RestartJobRequest* request,
                          proto::RestartJobResponse* response) override;
  grpc::Status UpdateJob(grpc::ServerContext* context, const proto::UpdateJobRequest* request,
                         proto::UpdateJobResponse* response) override;
  grpc::Status TakeSavepoint(grpc::ServerContext* context, const proto::TakeSavepointRequest* request,
                             grpc::ServerWriter<proto::SavepointChunk>* writer) override;
  grpc::Status RestoreSavepoint(grpc::ServerContext* context, grpc::ServerReader<proto::SavepointChunk>* reader,
                                proto::RestoreSavepointResponse* response) override;
  grpc::Status ResetPartition(grpc::ServerContext* context, const proto::ResetPartitionRequest* request,
                              proto::ResetPartitionResponse* response) override;
  grpc::Status DrainWorker(grpc::ServerContext* context, const proto::DrainWorkerRequest* request,
                           proto::DrainWorkerResponse* response) override;
  grpc::Status Rebalance(grpc::ServerContext* context, const proto::RebalanceRequest* request,
                         proto::RebalanceResponse* response) override;
  grpc::Status Drill(grpc::ServerContext* context, const proto::DrillRequest* request,
                     proto::DrillResponse* response) override;

 private:
  Driver* const driver_;
};

}  // namespace sluice::driver
