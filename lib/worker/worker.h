// Worker: one workerd process, assembled from its parts.
//
// Module sluice::worker owns the worker daemon: its options, its gRPC service
// (WorkerService in proto/worker.proto) and, as later parts arrive,
// membership, receivers, the block store and executors. cmd/workerd/main.cpp
// only parses flags into WorkerOptions and calls Start/Stop.
//
// Thread-safety: Start and Stop are called from one thread; the service
// answers RPCs from gRPC's threads.
#pragma once

#include <memory>
#include <string>

#include "lib/common/clock.h"
#include "lib/common/status.h"

namespace CLI {
class App;
}

namespace sluice::rpc {
class RpcServer;
}

namespace sluice::worker {

class WorkerServiceImpl;

struct WorkerOptions {
  std::string id;                              // unique among the cluster's workers
  std::string rpc_address = "127.0.0.1:7200";  // where the gRPC server listens
  std::string data_dir = "/var/lib/sluice/worker";
  int slots = 2;                               // tasks run at once
  std::string log_level = "info";

  void Register(CLI::App& app);
  [[nodiscard]] Status Validate() const;
};

class Worker {
 public:
  Worker(WorkerOptions options, Clock* clock);
  ~Worker();

  [[nodiscard]] Status Start();
  void Stop();

  std::string rpc_address() const;

 private:
  WorkerOptions options_;
  Clock* clock_;
  std::unique_ptr<WorkerServiceImpl> service_;
  std::unique_ptr<rpc::RpcServer> server_;
};

}  // namespace sluice::worker
