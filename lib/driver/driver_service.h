// DriverServiceImpl: the gRPC face of driverd (proto/driver.proto).
//
// Module sluice::driver owns it. It answers from a status source the Driver
// gives it and never blocks on another daemon. Thread-safe.
#pragma once

#include <functional>

#include "proto/driver.grpc.pb.h"

namespace sluice::driver {

class DriverServiceImpl final : public proto::DriverService::Service {
 public:
  using StatusSource = std::function<proto::DriverStatus()>;
  explicit DriverServiceImpl(StatusSource status) : status_(std::move(status)) {}

  grpc::Status GetStatus(grpc::ServerContext* context, const proto::GetDriverStatusRequest* request,
                         proto::DriverStatus* response) override;

 private:
  const StatusSource status_;
};

}  // namespace sluice::driver
