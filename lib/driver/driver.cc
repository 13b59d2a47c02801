#include "lib/driver/driver.h"

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/common/logging.h"
#include "lib/common/fs.h"
#include "lib/driver/driver_service.h"
#include "lib/rpc/process_info.h"
#include "lib/rpc/rpc.h"
#include "spdlog/spdlog.h"

namespace sluice::driver {

void DriverOptions::Register(CLI::App& app) {
  app.add_option("--id", id, "Driver id, unique among the cluster's drivers (required)");
  app.add_option("--rpc-address", rpc_address, "host:port the gRPC server listens on")
      ->capture_default_str();
  app.add_option("--data-dir", data_dir, "Directory for the driver's WAL")->capture_default_str();
  app.add_option("--log-level", log_level, kLogLevels)->capture_default_str();
}

Status DriverOptions::Validate() const {
  RETURN_IF_ERROR(ValidateId(id, "id"));
  RETURN_IF_ERROR(ParseHostPort(rpc_address, "rpc-address").status());
  if (data_dir.empty()) return absl::InvalidArgumentError("data-dir: must not be empty");
  return absl::OkStatus();
}

Driver::Driver(DriverOptions options, Clock* clock) : options_(std::move(options)), clock_(clock) {}

Driver::~Driver() { Stop(); }

Status Driver::Start() {
  RETURN_IF_ERROR(EnsureDirectory(options_.data_dir, "data-dir"));
  service_ = std::make_unique<DriverServiceImpl>();
  ASSIGN_OR_RETURN(server_, rpc::RpcServer::Start(options_.rpc_address, {service_.get()}));
  service_->SetProcessInfo(rpc::MakeProcessInfo(options_.id, server_->address(), clock_));
  spdlog::info("driver {} serving on {}", options_.id, server_->address());
  return absl::OkStatus();
}

void Driver::Stop() {
  if (server_ != nullptr) server_->Shutdown();
}

std::string Driver::rpc_address() const { return server_ ? server_->address() : options_.rpc_address; }

}  // namespace sluice::driver
