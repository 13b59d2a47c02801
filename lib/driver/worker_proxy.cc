#include "lib/driver/worker_proxy.h"

#include "lib/rpc/worker_client.h"

namespace sluice::driver {

Status GrpcWorkerProxy::LeaderHeartbeat(const std::string& address,
                                        const proto::LeaderHeartbeatRequest& request,
                                        proto::LeaderHeartbeatResponse* response) {
  return rpc::MoveInto(rpc::WorkerClient(*channels_, address).LeaderHeartbeat(request, deadline_), response);
}

Status GrpcWorkerProxy::AssignReceivers(const std::string& address, const proto::AssignReceiversRequest& request,
                                        proto::AssignReceiversResponse* response, rpc::Cancellation* cancel) {
  return rpc::MoveInto(rpc::WorkerClient(*channels_, address)
                           .AssignReceivers(request, rpc::WorkerClient::kAssignReceiversDeadline, cancel),
                       response);
}

Status GrpcWorkerProxy::RunTask(const std::string& address, const proto::TaskRequest& request,
                                proto::TaskResult* response, rpc::Cancellation* cancel) {
  return rpc::MoveInto(
      rpc::WorkerClient(*channels_, address).RunTask(request, rpc::WorkerClient::kRunTaskDeadline, cancel), response);
}

Status GrpcWorkerProxy::DropBlocks(const std::string& address, const proto::DropBlocksRequest& request,
                                   proto::DropBlocksResponse* response) {
  return rpc::MoveInto(rpc::WorkerClient(*channels_, address).DropBlocks(request, deadline_), response);
}

Status GrpcWorkerProxy::WarmState(const std::string& address, const proto::WarmStateRequest& request,
                                  proto::WarmStateResponse* response, rpc::Cancellation* cancel) {
  return rpc::MoveInto(
      rpc::WorkerClient(*channels_, address).WarmState(request, rpc::WorkerClient::kWarmStateDeadline, cancel),
      response);
}

Status GrpcWorkerProxy::ResplitState(const std::string& address, const proto::ResplitStateRequest& request,
                                     proto::ResplitStateResponse* response) {
  return rpc::MoveInto(rpc::WorkerClient(*channels_, address).ResplitState(request), response);
}

}  // namespace sluice::driver
