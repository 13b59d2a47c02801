// WorkerServiceImpl: the gRPC face of workerd (proto/worker.proto).
//
// Module sluice::worker owns it. Thread-safe.
#pragma once

#include <mutex>
#include <string>

#include "proto/worker.grpc.pb.h"

namespace sluice::worker {

class WorkerServiceImpl final : public proto::WorkerService::Service {
 public:
  explicit WorkerServiceImpl(int slots) : slots_(slots) {}

  void SetProcessInfo(proto::ProcessInfo process);

  grpc::Status GetStatus(grpc::ServerContext* context, const proto::GetWorkerStatusRequest* request,
                         proto::WorkerStatus* response) override;

 private:
  const int slots_;
  std::mutex mu_;
  proto::ProcessInfo process_;  // guarded by mu_
};

}  // namespace sluice::worker
