#include "lib/driver/driver_service.h"

namespace sluice::driver {

void DriverServiceImpl::SetProcessInfo(proto::ProcessInfo process) {
  std::lock_guard<std::mutex> lock(mu_);
  process_ = std::move(process);
}

grpc::Status DriverServiceImpl::GetStatus(grpc::ServerContext* /*context*/,
                                          const proto::GetDriverStatusRequest* /*request*/,
                                          proto::DriverStatus* response) {
  std::lock_guard<std::mutex> lock(mu_);
  *response->mutable_process() = process_;
  return grpc::Status::OK;
}

}  // namespace sluice::driver
