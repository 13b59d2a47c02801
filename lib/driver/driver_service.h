// DriverServiceImpl: the gRPC face of driverd (proto/driver.proto).
//
// Module sluice::driver owns it. It answers from state the Driver hands it and
// never blocks on another daemon. Thread-safe.
#pragma once

#include <mutex>
#include <string>

#include "proto/driver.grpc.pb.h"

namespace sluice::driver {

class DriverServiceImpl final : public proto::DriverService::Service {
 public:
  // Sets what GetStatus reports about this process (once the address is bound).
  void SetProcessInfo(proto::ProcessInfo process);

  grpc::Status GetStatus(grpc::ServerContext* context, const proto::GetDriverStatusRequest* request,
                         proto::DriverStatus* response) override;

 private:
  std::mutex mu_;
  proto::ProcessInfo process_;  // guarded by mu_
};

}  // namespace sluice::driver
