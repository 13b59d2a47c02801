#include "lib/driver/worker_proxy.h"

#include "grpcpp/grpcpp.h"
#include "lib/rpc/rpc.h"

namespace sluice::driver {

proto::WorkerService::Stub* GrpcWorkerProxy::StubFor(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& stub = stubs_[address];
  if (!stub) stub = proto::WorkerService::NewStub(rpc::NewChannel(address));
  return stub.get();
}

Status GrpcWorkerProxy::LeaderHeartbeat(const std::string& address,
                                        const proto::LeaderHeartbeatRequest& request,
                                        proto::LeaderHeartbeatResponse* response) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline_);
  return rpc::FromGrpc(StubFor(address)->LeaderHeartbeat(&ctx, request, response));
}

Status GrpcWorkerProxy::AssignReceivers(const std::string& address, const proto::AssignReceiversRequest& request,
                                        proto::AssignReceiversResponse* response) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return rpc::FromGrpc(StubFor(address)->AssignReceivers(&ctx, request, response));
}

Status GrpcWorkerProxy::RunTask(const std::string& address, const proto::TaskRequest& request,
                                proto::TaskResult* response) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  return rpc::FromGrpc(StubFor(address)->RunTask(&ctx, request, response));
}

Status GrpcWorkerProxy::DropBlocks(const std::string& address, const proto::DropBlocksRequest& request,
                                   proto::DropBlocksResponse* response) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline_);
  return rpc::FromGrpc(StubFor(address)->DropBlocks(&ctx, request, response));
}

}  // namespace sluice::driver
