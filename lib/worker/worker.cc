#include "lib/worker/worker.h"

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/common/fs.h"
#include "lib/common/logging.h"
#include "lib/rpc/process_info.h"
#include "lib/rpc/rpc.h"
#include "lib/worker/worker_service.h"
#include "spdlog/spdlog.h"

namespace sluice::worker {

void WorkerOptions::Register(CLI::App& app) {
  app.add_option("--id", id, "Worker id, unique among the cluster's workers (required)");
  app.add_option("--rpc-address", rpc_address, "host:port the gRPC server listens on")
      ->capture_default_str();
  app.add_option("--data-dir", data_dir, "Directory for block and state storage")
      ->capture_default_str();
  app.add_option("--slots", slots, "Tasks this worker runs at once")->capture_default_str();
  app.add_option("--log-level", log_level, kLogLevels)->capture_default_str();
}

Status WorkerOptions::Validate() const {
  RETURN_IF_ERROR(ValidateId(id, "id"));
  RETURN_IF_ERROR(ParseHostPort(rpc_address, "rpc-address").status());
  if (data_dir.empty()) return absl::InvalidArgumentError("data-dir: must not be empty");
  if (slots < 1 || slots > 1024) {
    return absl::InvalidArgumentError(fmt::format("slots: {} is not in 1..1024", slots));
  }
  return absl::OkStatus();
}

Worker::Worker(WorkerOptions options, Clock* clock) : options_(std::move(options)), clock_(clock) {}

Worker::~Worker() { Stop(); }

Status Worker::Start() {
  RETURN_IF_ERROR(EnsureDirectory(options_.data_dir, "data-dir"));
  service_ = std::make_unique<WorkerServiceImpl>(options_.slots);
  ASSIGN_OR_RETURN(server_, rpc::RpcServer::Start(options_.rpc_address, {service_.get()}));
  service_->SetProcessInfo(rpc::MakeProcessInfo(options_.id, server_->address(), clock_));
  spdlog::info("worker {} serving on {} with {} slots", options_.id, server_->address(),
               options_.slots);
  return absl::OkStatus();
}

void Worker::Stop() {
  if (server_ != nullptr) server_->Shutdown();
}

std::string Worker::rpc_address() const { return server_ ? server_->address() : options_.rpc_address; }

}  // namespace sluice::worker
