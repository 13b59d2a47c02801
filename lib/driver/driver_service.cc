#include "lib/driver/driver_service.h"

namespace sluice::driver {

grpc::Status DriverServiceImpl::GetStatus(grpc::ServerContext* /*context*/,
                                          const proto::GetDriverStatusRequest* /*request*/,
                                          proto::DriverStatus* response) {
  *response = status_();
  return grpc::Status::OK;
}

}  // namespace sluice::driver
