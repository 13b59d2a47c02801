// WorkerProxy: every call the driver makes to a worker goes through here.
//
// Module sluice::driver owns it. The real implementation is a thin adapter
// over rpc::WorkerClient (channels cached per worker address); tests can put
// a fake or a fault-injecting decorator in its place.
//
// Thread-safe.
#pragma once

#include <chrono>
#include <string>

#include "lib/common/status.h"
#include "proto/worker.pb.h"

namespace sluice::rpc {
class Cancellation;
class ChannelCache;
}  // namespace sluice::rpc

namespace sluice::driver {

class WorkerProxy {
 public:
  virtual ~WorkerProxy() = default;
  [[nodiscard]] virtual Status LeaderHeartbeat(const std::string& address,
                                               const proto::LeaderHeartbeatRequest& request,
                                               proto::LeaderHeartbeatResponse* response) = 0;
  [[nodiscard]] virtual Status AssignReceivers(const std::string& address,
                                               const proto::AssignReceiversRequest& request,
                                               proto::AssignReceiversResponse* response,
                                               rpc::Cancellation* cancel = nullptr) = 0;
  // `cancel` (optional) ends the attempt early from another thread.
  [[nodiscard]] virtual Status RunTask(const std::string& address, const proto::TaskRequest& request,
                                       proto::TaskResult* response, rpc::Cancellation* cancel = nullptr) = 0;
  [[nodiscard]] virtual Status DropBlocks(const std::string& address, const proto::DropBlocksRequest& request,
                                          proto::DropBlocksResponse* response) = 0;
  [[nodiscard]] virtual Status WarmState(const std::string& address, const proto::WarmStateRequest& request,
                                         proto::WarmStateResponse* response, rpc::Cancellation* cancel = nullptr) = 0;
  [[nodiscard]] virtual Status ResplitState(const std::string& address, const proto::ResplitStateRequest& request,
                                            proto::ResplitStateResponse* response) = 0;
};

class GrpcWorkerProxy final : public WorkerProxy {
 public:
  // Heartbeats and DropBlocks with `deadline`; `channels` must outlive this.
  GrpcWorkerProxy(rpc::ChannelCache* channels, std::chrono::milliseconds deadline)
      : channels_(channels), deadline_(deadline) {}
  [[nodiscard]] Status LeaderHeartbeat(const std::string& address,
                                       const proto::LeaderHeartbeatRequest& request,
                                       proto::LeaderHeartbeatResponse* response) override;
  // AssignReceivers and RunTask with rpc::WorkerClient's deadlines (10 s,
  // a minute).
  [[nodiscard]] Status AssignReceivers(const std::string& address, const proto::AssignReceiversRequest& request,
                                       proto::AssignReceiversResponse* response,
                                       rpc::Cancellation* cancel = nullptr) override;
  [[nodiscard]] Status RunTask(const std::string& address, const proto::TaskRequest& request,
                               proto::TaskResult* response, rpc::Cancellation* cancel = nullptr) override;
  [[nodiscard]] Status DropBlocks(const std::string& address, const proto::DropBlocksRequest& request,
                                  proto::DropBlocksResponse* response) override;
  [[nodiscard]] Status WarmState(const std::string& address, const proto::WarmStateRequest& request,
                                 proto::WarmStateResponse* response, rpc::Cancellation* cancel = nullptr) override;
  // With rpc::WorkerClient's deadline (a minute).
  [[nodiscard]] Status ResplitState(const std::string& address, const proto::ResplitStateRequest& request,
                                    proto::ResplitStateResponse* response) override;

 private:
  rpc::ChannelCache* const channels_;
  const std::chrono::milliseconds deadline_;
};

}  // namespace sluice::driver
