#include "lib/rpc/status_client.h"

#include "grpcpp/grpcpp.h"
#include "lib/rpc/rpc.h"
#include "proto/driver.grpc.pb.h"
#include "proto/worker.grpc.pb.h"

namespace sluice::rpc {

Result<proto::DriverStatus> GetDriverStatus(const std::string& address,
                                            std::chrono::milliseconds deadline) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  proto::DriverStatus status;
  RETURN_IF_ERROR(FromGrpc(proto::DriverService::NewStub(NewChannel(address))
                               ->GetStatus(&ctx, proto::GetDriverStatusRequest(), &status)));
  return status;
}

Result<proto::WorkerStatus> GetWorkerStatus(const std::string& address,
                                            std::chrono::milliseconds deadline) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  proto::WorkerStatus status;
  RETURN_IF_ERROR(FromGrpc(proto::WorkerService::NewStub(NewChannel(address))
                               ->GetStatus(&ctx, proto::GetWorkerStatusRequest(), &status)));
  return status;
}

}  // namespace sluice::rpc
