#include "lib/driver/driver_service.h"

#include <unistd.h>

#include <cctype>
#include <vector>

#include "lib/common/drill.h"
#include "lib/driver/data_path.h"
#include "lib/driver/driver.h"
#include "lib/driver/job_registry.h"
#include "lib/driver/savepoint.h"
#include "lib/rpc/auth.h"
#include "lib/rpc/rpc.h"

namespace sluice::driver {

grpc::Status DriverServiceImpl::GetStatus(grpc::ServerContext* context, const proto::GetDriverStatusRequest*,
                                          proto::DriverStatus* response) {
  SLUICE_AUTHORIZE(context, "DriverService.GetStatus");
  *response = driver_->GetStatus();
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::AppendMarker(grpc::ServerContext* context,
                                             const proto::AppendMarkerRequest* request,
                                             proto::AppendMarkerResponse* response) {
  SLUICE_AUTHORIZE(context, "DriverService.AppendMarker");
  Result<int64_t> seq = driver_->AppendMarker(*request);
  if (!seq.ok()) return rpc::ToGrpc(seq.status());
  response->set_seq(*seq);
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::ReadWal(grpc::ServerContext* context, const proto::ReadWalRequest* request,
                                        proto::ReadWalResponse* response) {
  SLUICE_AUTHORIZE(context, "DriverService.ReadWal");
  return rpc::ToGrpc(driver_->ReadWal(*request, response));
}

namespace {

grpc::Status NotReady() { return grpc::Status(grpc::StatusCode::UNAVAILABLE, "driver is starting"); }

}  // namespace

grpc::Status DriverServiceImpl::RegisterSource(grpc::ServerContext* context, const proto::RegisterSourceRequest* request,
                                               proto::RegisterSourceResponse* response) {
  SLUICE_AUTHORIZE(context, "DriverService.RegisterSource");
  DataPath* data = driver_->data_path();
  if (data == nullptr) return NotReady();
  Result<proto::SourceSpec> spec = data->RegisterSource(request->spec());
  if (!spec.ok()) return rpc::ToGrpc(spec.status());
  *response->mutable_spec() = *spec;
  return grpc::Status::OK;
}

namespace {

// What a viewer (a dashboard) is not shown: Kafka properties that hold
// credentials (docs/security.md, "Roles").
bool IsSecretKey(std::string key) {
  for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* word : {"password", "secret", "jaas", "token", "credential"}) {
    if (key.find(word) != std::string::npos) return true;
  }
  return false;
}

void Redact(google::protobuf::Map<std::string, std::string>* properties) {
  for (auto& [k, v] : *properties) {
    if (IsSecretKey(k)) v = "<redacted>";
  }
}

void Redact(proto::JobSpec* spec) {
  Redact(spec->mutable_sink()->mutable_kafka()->mutable_properties());
  for (proto::SourceSpec& s : *spec->mutable_inline_sources()) Redact(s.mutable_kafka()->mutable_properties());
}

// Admins and drivers see specs whole; viewers without their credentials.
bool SeesSecrets(const grpc::ServerContext* context) {
  return rpc::CallerHasRole(context, rpc::Role::kAdmin) || rpc::CallerHasRole(context, rpc::Role::kDriver);
}

}  // namespace

grpc::Status DriverServiceImpl::ListSources(grpc::ServerContext* context, const proto::ListSourcesRequest* request,
                                            proto::ListSourcesResponse* response) {
  SLUICE_AUTHORIZE(context, "DriverService.ListSources");
  DataPath* data = driver_->data_path();
  if (data == nullptr) return NotReady();
  data->ListSources(*request, response);
  if (!SeesSecrets(context)) {
    for (proto::SourceInfo& s : *response->mutable_sources()) {
      Redact(s.mutable_spec()->mutable_kafka()->mutable_properties());
    }
  }
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::RegisterWorker(grpc::ServerContext* context, const proto::RegisterWorkerRequest* request,
                                               proto::RegisterWorkerResponse* response) {
  SLUICE_AUTHORIZE(context, "DriverService.RegisterWorker");
  DataPath* data = driver_->data_path();
  if (data == nullptr) return NotReady();
  return rpc::ToGrpc(data->RegisterWorker(*request, response));
}

grpc::Status DriverServiceImpl::ReportBlocks(grpc::ServerContext* context, const proto::ReportBlocksRequest* request,
                                             proto::ReportBlocksResponse* response) {
  SLUICE_AUTHORIZE(context, "DriverService.ReportBlocks");
  DataPath* data = driver_->data_path();
  if (data == nullptr) return NotReady();
  return rpc::ToGrpc(data->ReportBlocks(*request, response));
}

grpc::Status DriverServiceImpl::JoinGroup(grpc::ServerContext* context, const proto::JoinGroupRequest* request,
                                          proto::JoinGroupResponse* /*response*/) {
  SLUICE_AUTHORIZE(context, "DriverService.JoinGroup");
  return rpc::ToGrpc(driver_->AcceptMember(*request));
}

grpc::Status DriverServiceImpl::SubmitJob(grpc::ServerContext* context, const proto::SubmitJobRequest* request,
                                          proto::SubmitJobResponse* response) {
  SLUICE_AUTHORIZE(context, "DriverService.SubmitJob");
  JobRegistry* jobs = driver_->jobs();
  if (jobs == nullptr) return NotReady();
  Result<proto::SubmitJobResponse> got = jobs->Submit(request->spec());
  if (!got.ok()) return rpc::ToGrpc(driver_->WithLeaderHint(got.status()));
  *response = std::move(*got);
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::ListJobs(grpc::ServerContext* context, const proto::ListJobsRequest*,
                                         proto::ListJobsResponse* response) {
  SLUICE_AUTHORIZE(context, "DriverService.ListJobs");
  JobRegistry* jobs = driver_->jobs();
  if (jobs == nullptr) return NotReady();
  *response = jobs->List();
  if (!SeesSecrets(context)) {
    for (proto::JobInfo& j : *response->mutable_jobs()) Redact(j.mutable_spec());
  }
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::DescribeJob(grpc::ServerContext* context, const proto::DescribeJobRequest* request,
                                            proto::JobInfo* response) {
  SLUICE_AUTHORIZE(context, "DriverService.DescribeJob");
  JobRegistry* jobs = driver_->jobs();
  if (jobs == nullptr) return NotReady();
  Result<proto::JobInfo> got = jobs->Describe(request->job_id());
  if (!got.ok()) return rpc::ToGrpc(got.status());
  *response = std::move(*got);
  driver_->AddReducePartitions(response);
  if (!SeesSecrets(context)) Redact(response->mutable_spec());
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::StopJob(grpc::ServerContext* context, const proto::StopJobRequest* request,
                                        proto::StopJobResponse*) {
  SLUICE_AUTHORIZE(context, "DriverService.StopJob");
  JobRegistry* jobs = driver_->jobs();
  if (jobs == nullptr) return NotReady();
  return rpc::ToGrpc(driver_->WithLeaderHint(jobs->Stop(*request)));
}

grpc::Status DriverServiceImpl::DeleteJob(grpc::ServerContext* context, const proto::DeleteJobRequest* request,
                                          proto::DeleteJobResponse*) {
  SLUICE_AUTHORIZE(context, "DriverService.DeleteJob");
  JobRegistry* jobs = driver_->jobs();
  if (jobs == nullptr) return NotReady();
  return rpc::ToGrpc(driver_->WithLeaderHint(jobs->Delete(request->job_id())));
}

grpc::Status DriverServiceImpl::RestartJob(grpc::ServerContext* context, const proto::RestartJobRequest* request,
                                           proto::RestartJobResponse* response) {
  SLUICE_AUTHORIZE(context, "DriverService.RestartJob");
  JobRegistry* jobs = driver_->jobs();
  if (jobs == nullptr) return NotReady();
  Result<proto::RestartJobResponse> got = jobs->Restart(request->job_id());
  if (!got.ok()) return rpc::ToGrpc(driver_->WithLeaderHint(got.status()));
  *response = std::move(*got);
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::UpdateJob(grpc::ServerContext* context, const proto::UpdateJobRequest* request,
                                          proto::UpdateJobResponse* response) {
  SLUICE_AUTHORIZE(context, "DriverService.UpdateJob");
  JobRegistry* jobs = driver_->jobs();
  if (jobs == nullptr) return NotReady();
  Result<proto::UpdateJobResponse> got = jobs->Update(*request);
  if (!got.ok()) return rpc::ToGrpc(driver_->WithLeaderHint(got.status()));
  *response = std::move(*got);
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::TakeSavepoint(grpc::ServerContext* context, const proto::TakeSavepointRequest* request,
                                              grpc::ServerWriter<proto::SavepointChunk>* writer) {
  SLUICE_AUTHORIZE(context, "DriverService.TakeSavepoint");
  Savepoints* savepoints = driver_->savepoints();
  if (savepoints == nullptr) return NotReady();
  return rpc::ToGrpc(driver_->WithLeaderHint(savepoints->Take(
      request->job_id(), [&](const proto::SavepointChunk& c) { return !context->IsCancelled() && writer->Write(c); })));
}

grpc::Status DriverServiceImpl::RestoreSavepoint(grpc::ServerContext* context,
                                                 grpc::ServerReader<proto::SavepointChunk>* reader,
                                                 proto::RestoreSavepointResponse* response) {
  SLUICE_AUTHORIZE(context, "DriverService.RestoreSavepoint");
  Savepoints* savepoints = driver_->savepoints();
  if (savepoints == nullptr) return NotReady();
  // All of it first: Read() ends the same way for WritesDone and for a
  // broken stream, and a broken one must install nothing.
  std::vector<proto::SavepointChunk> chunks;
  for (proto::SavepointChunk c; reader->Read(&c); c.Clear()) chunks.push_back(std::move(c));
  if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "the savepoint stream broke off");
  size_t next = 0;
  Result<proto::RestoreSavepointResponse> got = savepoints->Restore([&](proto::SavepointChunk* c) {
    if (next == chunks.size()) return false;
    *c = std::move(chunks[next++]);
    return true;
  });
  if (!got.ok()) return rpc::ToGrpc(driver_->WithLeaderHint(got.status()));
  *response = std::move(*got);
  return grpc::Status::OK;
}

// sluicectl source reset: DataPath::ResetPartition, on the serving leader.
grpc::Status DriverServiceImpl::ResetPartition(grpc::ServerContext* context,
                                               const proto::ResetPartitionRequest* request,
                                               proto::ResetPartitionResponse* response) {
  SLUICE_AUTHORIZE(context, "DriverService.ResetPartition");
  DataPath* data = driver_->data_path();
  if (data == nullptr) return NotReady();
  Result<proto::ResetPartitionResponse> got = data->ResetPartition(*request);
  if (!got.ok()) return rpc::ToGrpc(driver_->WithLeaderHint(got.status()));
  *response = std::move(*got);
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::DrainWorker(grpc::ServerContext* context, const proto::DrainWorkerRequest* request,
                                            proto::DrainWorkerResponse* response) {
  SLUICE_AUTHORIZE(context, "DriverService.DrainWorker");
  Result<proto::DrainWorkerResponse> got = driver_->DrainWorker(*request);
  if (!got.ok()) return rpc::ToGrpc(got.status());
  *response = std::move(*got);
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::Rebalance(grpc::ServerContext* context, const proto::RebalanceRequest*,
                                          proto::RebalanceResponse* response) {
  SLUICE_AUTHORIZE(context, "DriverService.Rebalance");
  Result<proto::RebalanceResponse> got = driver_->Rebalance();
  if (!got.ok()) return rpc::ToGrpc(got.status());
  *response = std::move(*got);
  return grpc::Status::OK;
}

grpc::Status DriverServiceImpl::Drill(grpc::ServerContext* context, const proto::DrillRequest* request,
                                      proto::DrillResponse* response) {
  SLUICE_AUTHORIZE(context, "DriverService.Drill");
  response->set_pid(::getpid());
  return rpc::ToGrpc(ObeyDrill(static_cast<DrillFault>(request->fault()), std::chrono::milliseconds(request->pause_ms()),
                               driver_->allow_drills(), "driver " + driver_->id()));
}

}  // namespace sluice::driver
