#include "lib/worker/worker_service.h"

namespace sluice::worker {

void WorkerServiceImpl::SetProcessInfo(proto::ProcessInfo process) {
  std::lock_guard<std::mutex> lock(mu_);
  process_ = std::move(process);
}

grpc::Status WorkerServiceImpl::GetStatus(grpc::ServerContext* /*context*/,
                                          const proto::GetWorkerStatusRequest* /*request*/,
                                          proto::WorkerStatus* response) {
  std::lock_guard<std::mutex> lock(mu_);
  *response->mutable_process() = process_;
  response->set_slots(slots_);
  return grpc::Status::OK;
}

}  // namespace sluice::worker
