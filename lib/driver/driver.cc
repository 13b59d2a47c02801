#include "lib/driver/driver.h"

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/common/fs.h"
#include "lib/common/logging.h"
#include "lib/coord/coordinator.h"
#include "lib/driver/driver_service.h"
#include "lib/driver/worker_proxy.h"
#include "lib/rpc/process_info.h"
#include "lib/rpc/rpc.h"
#include "spdlog/spdlog.h"

namespace sluice::driver {

void DriverOptions::Register(CLI::App& app) {
  daemon.Register(app, "driver");
  app.add_option("--heartbeat-interval-ms", heartbeat_interval_ms,
                 "How often the leader heartbeats each worker")
      ->capture_default_str();
}

Status DriverOptions::Validate() const {
  RETURN_IF_ERROR(daemon.Validate());
  ASSIGN_OR_RETURN(coord::CoordinatorSpec spec, coord::CoordinatorSpec::Parse(daemon.coordinator));
  if (spec.kind == coord::CoordinatorSpec::Kind::kStandalone && !spec.leader_address.empty()) {
    return absl::InvalidArgumentError(
        "coordinator: a driver cannot follow another in standalone mode; use 'standalone'");
  }
  if (heartbeat_interval_ms < 10 || heartbeat_interval_ms > 60'000) {
    return absl::InvalidArgumentError(
        fmt::format("heartbeat-interval-ms: {} is not in 10..60000", heartbeat_interval_ms));
  }
  return absl::OkStatus();
}

Driver::Driver(DriverOptions options, Clock* clock) : options_(std::move(options)), clock_(clock) {}

Driver::~Driver() { Stop(); }

Status Driver::Start() {
  RETURN_IF_ERROR(EnsureDirectory(options_.daemon.data_dir, "data-dir"));
  service_ = std::make_unique<DriverServiceImpl>([this] { return GetStatus(); });
  ASSIGN_OR_RETURN(server_, rpc::RpcServer::Start(options_.daemon.rpc_address, {service_.get()}));
  {
    std::lock_guard<std::mutex> lock(mu_);
    process_ = rpc::MakeProcessInfo(options_.daemon.id, options_.daemon.Advertised(server_->address()),
                                    clock_);
  }
  spdlog::info("driver {} serving on {}", options_.daemon.id, server_->address());

  ASSIGN_OR_RETURN(coordinator_, coord::Coordinator::CreateForDaemon(options_.daemon, clock_));
  workers_proxy_ = std::make_unique<GrpcWorkerProxy>(
      std::chrono::milliseconds(std::max(100, options_.heartbeat_interval_ms)));

  detector_ = coordinator_->NewDetector();
  detector_->Watch([this](const std::optional<proto::LeaderInfo>& leader) {
    if (leader) {
      spdlog::info("leader is {} at {} (epoch {})", leader->id(), leader->rpc_address(),
                   leader->epoch());
    } else {
      spdlog::info("no leader");
    }
    std::lock_guard<std::mutex> lock(mu_);
    leader_ = leader;
  });
  workers_ = coordinator_->NewMembership(coord::Group::kWorkers);
  workers_->Watch([this](const std::vector<proto::MemberInfo>& members) {
    std::string ids;
    for (const auto& m : members) ids += (ids.empty() ? "" : ",") + m.id();
    spdlog::info("workers: [{}]", ids);
    std::lock_guard<std::mutex> lock(mu_);
    worker_view_ = members;
  });
  drivers_ = coordinator_->NewMembership(coord::Group::kDrivers);
  drivers_->Watch([this](const std::vector<proto::MemberInfo>& members) {
    std::lock_guard<std::mutex> lock(mu_);
    driver_view_ = members;
  });
  proto::MemberInfo me;
  me.set_id(options_.daemon.id);
  me.set_rpc_address(options_.daemon.Advertised(server_->address()));
  RETURN_IF_ERROR_PREPEND(drivers_->Join(me), "joining the drivers group");

  proto::LeaderInfo candidate;
  candidate.set_id(options_.daemon.id);
  candidate.set_rpc_address(options_.daemon.Advertised(server_->address()));
  elector_ = coordinator_->NewElector(candidate);
  RETURN_IF_ERROR(elector_->Start(
      {.elected = [this](int64_t epoch) { spdlog::info("now LEADER with epoch {}", epoch); },
       .lost = [] { spdlog::warn("now STANDBY"); }}));
  elector_view_ = elector_.get();
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
  return absl::OkStatus();
}

void Driver::HeartbeatLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    stop_cv_.wait_for(lock, std::chrono::milliseconds(options_.heartbeat_interval_ms));
    if (stopping_ || !elector_->IsLeader()) continue;
    std::vector<proto::MemberInfo> workers = worker_view_;
    proto::LeaderHeartbeatRequest request;
    request.set_epoch(elector_->epoch());
    request.set_leader_id(options_.daemon.id);
    request.set_leader_address(process_.rpc_address());
    lock.unlock();
    for (const proto::MemberInfo& w : workers) {
      if (!elector_->IsLeader()) break;  // the lease may lapse mid-round
      proto::LeaderHeartbeatResponse response;
      Status st = workers_proxy_->LeaderHeartbeat(w.rpc_address(), request, &response);
      if (absl::IsFailedPrecondition(st)) {
        // A worker has seen a newer epoch: another driver leads now.
        spdlog::warn("worker {} rejected epoch {}: {}", w.id(), request.epoch(),
                     std::string(st.message()));
      } else if (!st.ok()) {
        spdlog::debug("heartbeat to worker {} failed: {}", w.id(), st.ToString());
      }
    }
    lock.lock();
  }
}

void Driver::Stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  if (server_ != nullptr) server_->Shutdown(0);
  elector_view_ = nullptr;
  if (elector_) elector_->Stop();
  if (drivers_) drivers_->Leave();
  if (coordinator_) coordinator_->Close();
  // The roles hold pointers into the coordinator: release them first.
  elector_.reset();
  detector_.reset();
  drivers_.reset();
  workers_.reset();
  coordinator_.reset();
}

std::string Driver::rpc_address() const { return server_ ? server_->address() : options_.daemon.rpc_address; }

proto::DriverStatus Driver::GetStatus() const {
  proto::DriverStatus status;
  coord::LeaderElector* elector = elector_view_.load();
  const bool leads = elector != nullptr && elector->IsLeader();
  std::lock_guard<std::mutex> lock(mu_);
  *status.mutable_process() = process_;
  status.set_role(leads ? proto::DRIVER_ROLE_LEADER : proto::DRIVER_ROLE_STANDBY);
  if (leads) status.set_epoch(elector->epoch());
  if (leader_) *status.mutable_leader() = *leader_;
  for (const auto& w : worker_view_) *status.add_workers() = w;
  for (const auto& d : driver_view_) *status.add_drivers() = d;
  status.set_coordinator(options_.daemon.coordinator);
  return status;
}

}  // namespace sluice::driver
