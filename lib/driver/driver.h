// Driver: one driverd process, assembled from its parts.
//
// Module sluice::driver owns the driver daemon: its options, its gRPC service
// (DriverService in proto/driver.proto) and, as later parts arrive, election,
// the replicated WAL, the planner and the scheduler. cmd/driverd/main.cpp only
// parses flags into DriverOptions and calls Start/Stop.
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

namespace sluice::driver {

class DriverServiceImpl;

struct DriverOptions {
  std::string id;                             // unique among the cluster's drivers
  std::string rpc_address = "127.0.0.1:7100"; // where the gRPC server listens
  std::string data_dir = "/var/lib/sluice/driver";
  std::string log_level = "info";

  // Declares every option as a flag (and so as a config-file key) on `app`.
  void Register(CLI::App& app);
  // Checks values the flag parser cannot: INVALID_ARGUMENT naming the option.
  [[nodiscard]] Status Validate() const;
};

class Driver {
 public:
  Driver(DriverOptions options, Clock* clock);
  ~Driver();

  // Creates the data directory and starts serving. UNAVAILABLE if the address
  // cannot be bound; FAILED_PRECONDITION if the data directory is unusable.
  [[nodiscard]] Status Start();
  void Stop();

  // The bound "host:port" (valid after Start).
  std::string rpc_address() const;

 private:
  DriverOptions options_;
  Clock* clock_;
  std::unique_ptr<DriverServiceImpl> service_;
  std::unique_ptr<rpc::RpcServer> server_;
};

}  // namespace sluice::driver
