#include "lib/worker/worker.h"

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/common/fs.h"
#include "lib/common/logging.h"
#include "lib/coord/coordinator.h"
#include "lib/rpc/process_info.h"
#include "lib/rpc/rpc.h"
#include "lib/worker/worker_service.h"
#include "spdlog/spdlog.h"

namespace sluice::worker {

void WorkerOptions::Register(CLI::App& app) {
  daemon.Register(app, "worker");
  app.add_option("--slots", slots, "Tasks this worker runs at once")->capture_default_str();
}

Status WorkerOptions::Validate() const {
  RETURN_IF_ERROR(daemon.Validate());
  ASSIGN_OR_RETURN(coord::CoordinatorSpec spec, coord::CoordinatorSpec::Parse(daemon.coordinator));
  if (spec.kind == coord::CoordinatorSpec::Kind::kStandalone && spec.leader_address.empty()) {
    return absl::InvalidArgumentError(
        "coordinator: a worker needs to know its driver: standalone://DRIVER_HOST:PORT");
  }
  if (slots < 1 || slots > 1024) {
    return absl::InvalidArgumentError(fmt::format("slots: {} is not in 1..1024", slots));
  }
  return absl::OkStatus();
}

Worker::Worker(WorkerOptions options, Clock* clock) : options_(std::move(options)), clock_(clock) {}

Worker::~Worker() { Stop(); }

Status Worker::Start() {
  RETURN_IF_ERROR(EnsureDirectory(options_.daemon.data_dir, "data-dir"));
  service_ = std::make_unique<WorkerServiceImpl>(
      options_.daemon.id, &fence_, [this] { return GetStatus(); },
      [this](const proto::LeaderHeartbeatRequest& r) { OnHeartbeat(r); });
  ASSIGN_OR_RETURN(server_, rpc::RpcServer::Start(options_.daemon.rpc_address, {service_.get()}));
  {
    std::lock_guard<std::mutex> lock(mu_);
    process_ = rpc::MakeProcessInfo(options_.daemon.id, options_.daemon.Advertised(server_->address()),
                                    clock_);
  }
  spdlog::info("worker {} serving on {} with {} slots", options_.daemon.id, server_->address(),
               options_.slots);

  ASSIGN_OR_RETURN(coordinator_, coord::Coordinator::CreateForDaemon(options_.daemon, clock_));
  detector_ = coordinator_->NewDetector();
  detector_->Watch([this](const std::optional<proto::LeaderInfo>& leader) {
    if (leader) {
      spdlog::info("following leader {} at {} (epoch {})", leader->id(), leader->rpc_address(),
                   leader->epoch());
    } else {
      spdlog::warn("no leader");
    }
    std::lock_guard<std::mutex> lock(mu_);
    leader_ = leader;
  });
  membership_ = coordinator_->NewMembership(coord::Group::kWorkers);
  proto::MemberInfo me;
  me.set_id(options_.daemon.id);
  me.set_rpc_address(options_.daemon.Advertised(server_->address()));
  me.set_slots(options_.slots);
  RETURN_IF_ERROR_PREPEND(membership_->Join(me), "joining the workers group");
  return absl::OkStatus();
}

void Worker::OnHeartbeat(const proto::LeaderHeartbeatRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!leader_ || leader_->epoch() < request.epoch()) {
    if (!leader_ || leader_->id() != request.leader_id()) {
      spdlog::info("heartbeat from leader {} with epoch {}", request.leader_id(), request.epoch());
    }
    proto::LeaderInfo info;
    info.set_id(request.leader_id());
    info.set_rpc_address(request.leader_address());
    info.set_epoch(request.epoch());
    leader_ = info;
  }
}

void Worker::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (membership_) membership_->Leave();
  if (coordinator_) coordinator_->Close();
  if (server_ != nullptr) server_->Shutdown();
  membership_.reset();
  detector_.reset();
  coordinator_.reset();
}

std::string Worker::rpc_address() const { return server_ ? server_->address() : options_.daemon.rpc_address; }

proto::WorkerStatus Worker::GetStatus() const {
  proto::WorkerStatus status;
  std::lock_guard<std::mutex> lock(mu_);
  *status.mutable_process() = process_;
  status.set_slots(options_.slots);
  if (leader_) *status.mutable_leader() = *leader_;
  status.set_highest_epoch(fence_.highest());
  return status;
}

}  // namespace sluice::worker
