// WorkerServiceImpl: the gRPC face of workerd (proto/worker.proto).
//
// Module sluice::worker owns it. Every call from a driver passes the epoch
// fence first. Thread-safe.
#pragma once

#include <functional>

#include "lib/worker/epoch_fence.h"
#include "proto/worker.grpc.pb.h"

namespace sluice::worker {

class WorkerServiceImpl final : public proto::WorkerService::Service {
 public:
  using StatusSource = std::function<proto::WorkerStatus()>;
  using LeaderSink = std::function<void(const proto::LeaderHeartbeatRequest&)>;

  // `fence` must outlive the service. `on_heartbeat` hears every accepted
  // heartbeat.
  WorkerServiceImpl(std::string worker_id, EpochFence* fence, StatusSource status,
                    LeaderSink on_heartbeat)
      : worker_id_(std::move(worker_id)),
        fence_(fence),
        status_(std::move(status)),
        on_heartbeat_(std::move(on_heartbeat)) {}

  grpc::Status GetStatus(grpc::ServerContext* context, const proto::GetWorkerStatusRequest* request,
                         proto::WorkerStatus* response) override;
  grpc::Status LeaderHeartbeat(grpc::ServerContext* context,
                               const proto::LeaderHeartbeatRequest* request,
                               proto::LeaderHeartbeatResponse* response) override;

 private:
  const std::string worker_id_;
  EpochFence* const fence_;
  const StatusSource status_;
  const LeaderSink on_heartbeat_;
};

}  // namespace sluice::worker
