// WorkerProxy: every call the driver makes to a worker goes through here.
//
// Module sluice::driver owns it. The real implementation is a thin gRPC
// wrapper with one cached channel per worker address; tests can put a fake or
// a fault-injecting decorator in its place.
//
// Thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "lib/common/status.h"
#include "proto/worker.grpc.pb.h"

namespace sluice::driver {

class WorkerProxy {
 public:
  virtual ~WorkerProxy() = default;
  [[nodiscard]] virtual Status LeaderHeartbeat(const std::string& address,
                                               const proto::LeaderHeartbeatRequest& request,
                                               proto::LeaderHeartbeatResponse* response) = 0;
  [[nodiscard]] virtual Status AssignReceivers(const std::string& address,
                                               const proto::AssignReceiversRequest& request,
                                               proto::AssignReceiversResponse* response) = 0;
  [[nodiscard]] virtual Status RunTask(const std::string& address, const proto::TaskRequest& request,
                                       proto::TaskResult* response) = 0;
  [[nodiscard]] virtual Status DropBlocks(const std::string& address, const proto::DropBlocksRequest& request,
                                          proto::DropBlocksResponse* response) = 0;
};

class GrpcWorkerProxy final : public WorkerProxy {
 public:
  explicit GrpcWorkerProxy(std::chrono::milliseconds deadline) : deadline_(deadline) {}
  [[nodiscard]] Status LeaderHeartbeat(const std::string& address,
                                       const proto::LeaderHeartbeatRequest& request,
                                       proto::LeaderHeartbeatResponse* response) override;
  // Waits longer than a heartbeat: a worker answers once the receivers it
  // loses have stopped and their last blocks are reported.
  [[nodiscard]] Status AssignReceivers(const std::string& address, const proto::AssignReceiversRequest& request,
                                       proto::AssignReceiversResponse* response) override;
  // A task may read and write for a while: a minute.
  [[nodiscard]] Status RunTask(const std::string& address, const proto::TaskRequest& request,
                               proto::TaskResult* response) override;
  [[nodiscard]] Status DropBlocks(const std::string& address, const proto::DropBlocksRequest& request,
                                  proto::DropBlocksResponse* response) override;

 private:
  proto::WorkerService::Stub* StubFor(const std::string& address);

  const std::chrono::milliseconds deadline_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<proto::WorkerService::Stub>> stubs_;  // guarded by mu_
};

}  // namespace sluice::driver
