#include "lib/driver/driver_service.h"

#include <unistd.h>

#include "lib/common/drill.h"

#include "lib/driver/data_path.h"
#include "lib/driver/job_registry.h"

#include "lib/driver/driver.h"
#include "lib/rpc/rpc.h"

namespace sluice::driver {

grpc::Status DriverServiceImpl::GetStatus(grpc::ServerContext*, const proto::GetDriverStatusRequest*,
                                          proto::DriverStatus* response) {
  *response = driver_->GetStatus();
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::AppendMarker(grpc::ServerContext*,
                                             const proto::AppendMarkerRequest* request,
                                             proto::AppendMarkerResponse* response) {
  Result<int64_t> seq = driver_->AppendMarker(*request);
  if (!seq.ok()) return rpc::ToGrpc(seq.status());
  response->set_seq(*seq);
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::ReadWal(grpc::ServerContext*, const proto::ReadWalRequest* request,
                                        proto::ReadWalResponse* response) {
  return rpc::ToGrpc(driver_->ReadWal(*request, response));
}

namespace {

grpc::Status NotReady() { return grpc::Status(grpc::StatusCode::UNAVAILABLE, "driver is starting"); }

}  // namespace

grpc::Status DriverServiceImpl::RegisterSource(grpc::ServerContext*, const proto::RegisterSourceRequest* request,
                                               proto::RegisterSourceResponse* response) {
  DataPath* data = driver_->data_path();
  if (data == nullptr) return NotReady();
  Result<proto::SourceSpec> spec = data->RegisterSource(request->spec());
  if (!spec.ok()) return rpc::ToGrpc(spec.status());
  *response->mutable_spec() = *spec;
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::ListSources(grpc::ServerContext*, const proto::ListSourcesRequest* request,
                                            proto::ListSourcesResponse* response) {
  DataPath* data = driver_->data_path();
  if (data == nullptr) return NotReady();
  data->ListSources(*request, response);
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::RegisterWorker(grpc::ServerContext*, const proto::RegisterWorkerRequest* request,
                                               proto::RegisterWorkerResponse* response) {
  DataPath* data = driver_->data_path();
  if (data == nullptr) return NotReady();
  return rpc::ToGrpc(data->RegisterWorker(*request, response));
}

grpc::Status DriverServiceImpl::ReportBlocks(grpc::ServerContext*, const proto::ReportBlocksRequest* request,
                                             proto::ReportBlocksResponse* response) {
  DataPath* data = driver_->data_path();
  if (data == nullptr) return NotReady();
  return rpc::ToGrpc(data->ReportBlocks(*request, response));
}

grpc::Status DriverServiceImpl::JoinGroup(grpc::ServerContext*, const proto::JoinGroupRequest* request,
                                          proto::JoinGroupResponse* /*response*/) {
  return rpc::ToGrpc(driver_->AcceptMember(*request));
}

grpc::Status DriverServiceImpl::SubmitJob(grpc::ServerContext*, const proto::SubmitJobRequest* request,
                                          proto::SubmitJobResponse* response) {
  JobRegistry* jobs = driver_->jobs();
  if (jobs == nullptr) return NotReady();
  Result<proto::SubmitJobResponse> got = jobs->Submit(request->spec());
  if (!got.ok()) return rpc::ToGrpc(driver_->WithLeaderHint(got.status()));
  *response = std::move(*got);
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::ListJobs(grpc::ServerContext*, const proto::ListJobsRequest*,
                                         proto::ListJobsResponse* response) {
  JobRegistry* jobs = driver_->jobs();
  if (jobs == nullptr) return NotReady();
  *response = jobs->List();
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::DescribeJob(grpc::ServerContext*, const proto::DescribeJobRequest* request,
                                            proto::JobInfo* response) {
  JobRegistry* jobs = driver_->jobs();
  if (jobs == nullptr) return NotReady();
  Result<proto::JobInfo> got = jobs->Describe(request->job_id());
  if (!got.ok()) return rpc::ToGrpc(got.status());
  *response = std::move(*got);
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::StopJob(grpc::ServerContext*, const proto::StopJobRequest* request,
                                        proto::StopJobResponse*) {
  JobRegistry* jobs = driver_->jobs();
  if (jobs == nullptr) return NotReady();
  return rpc::ToGrpc(driver_->WithLeaderHint(jobs->Stop(request->job_id(), request->reason())));
}

grpc::Status DriverServiceImpl::Drill(grpc::ServerContext*, const proto::DrillRequest* request,
                                      proto::DrillResponse* response) {
  response->set_pid(::getpid());
  return rpc::ToGrpc(ObeyDrill(static_cast<DrillFault>(request->fault()), std::chrono::milliseconds(request->pause_ms()),
                               driver_->allow_drills(), "driver " + driver_->id()));
}

}  // namespace sluice::driver
