#include "lib/worker/worker_service.h"

#include "lib/rpc/rpc.h"

namespace sluice::worker {

grpc::Status WorkerServiceImpl::GetStatus(grpc::ServerContext* /*context*/,
                                          const proto::GetWorkerStatusRequest* /*request*/,
                                          proto::WorkerStatus* response) {
  *response = status_();
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::LeaderHeartbeat(grpc::ServerContext* /*context*/,
                                                const proto::LeaderHeartbeatRequest* request,
                                                proto::LeaderHeartbeatResponse* response) {
  if (Status st = fence_->Accept(request->epoch()); !st.ok()) return rpc::ToGrpc(st);
  on_heartbeat_(*request);
  response->set_worker_id(worker_id_);
  return grpc::Status::OK;
}

}  // namespace sluice::worker
