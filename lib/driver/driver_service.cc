#include "lib/driver/driver_service.h"

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

}  // namespace sluice::driver
