#include "lib/worker/worker.h"

#include "lib/worker/block_store.h"
#include "lib/worker/executor.h"
#include "lib/worker/reduce_state.h"
#include "lib/worker/shuffle_store.h"
#include "lib/worker/receiver_set.h"

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/common/fs.h"
#include "lib/common/logging.h"
#include "lib/coord/coordinator.h"
#include "lib/coord/session_probe.h"
#include "lib/http/daemon_http.h"
#include "lib/state/state_probe.h"
#include "lib/worker/worker_probe.h"
#include "lib/rpc/channel_cache.h"
#include "lib/rpc/driver_client.h"
#include "lib/rpc/process_info.h"
#include "lib/rpc/rpc.h"
#include "lib/rpc/tls.h"
#include "lib/worker/worker_service.h"
#include "lib/engine/state_namespace.h"
#include "spdlog/spdlog.h"

namespace sluice::worker {

void WorkerOptions::Register(CLI::App& app) {
  daemon.Register(app, "worker");
  app.add_option("--slots", slots, "Tasks this worker runs at once")->capture_default_str();
  app.add_option("--block-memory-mb", block_memory_mb, "Blocks held in memory before they spill to disk")
      ->capture_default_str();
  app.add_option("--block-disk-mb", block_disk_mb,
                 "Blocks spilled or logged on disk; beyond both budgets receivers pause")
      ->capture_default_str();
  app.add_option("--state-memory-mb", state_memory_mb,
                 "Memory for the keyed state's store; 0: all state in memory. Above 0, state entries live on disk "
                 "(RocksDB) and this bounds its cache and memtables")
      ->capture_default_str();
  app.add_option("--block-interval-ms", block_interval_ms, "How often a receiver cuts a block")
      ->capture_default_str();
  app.add_option("--max-unreported-blocks", max_unreported_blocks,
                 "Blocks a receiver may have stored but not acknowledged by the leader before it pauses")
      ->capture_default_str();
  paths.Register(app);
}

Status WorkerOptions::Validate() const {
  RETURN_IF_ERROR(daemon.Validate());
  RETURN_IF_ERROR(paths.Validate());
  ASSIGN_OR_RETURN(coord::CoordinatorSpec spec, coord::CoordinatorSpec::Parse(daemon.coordinator));
  if (spec.kind == coord::CoordinatorSpec::Kind::kStandalone && spec.leader_address.empty()) {
    return absl::InvalidArgumentError(
        "coordinator: a worker needs to know its driver: standalone://DRIVER_HOST:PORT");
  }
  if (slots < 1 || slots > 1024) {
    return absl::InvalidArgumentError(fmt::format("slots: {} is not in 1..1024", slots));
  }
  if (block_memory_mb < 1 || block_disk_mb < 0) {
    return absl::InvalidArgumentError("block-memory-mb must be at least 1 and block-disk-mb not negative");
  }
  if (state_memory_mb < 0 || state_memory_mb > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(
        fmt::format("state-memory-mb: {} is not 0 (state in memory) or a budget in MiB", state_memory_mb));
  }
  if (state_memory_mb > 0 && state_memory_mb < 8) {
    return absl::InvalidArgumentError(fmt::format("state-memory-mb: {} is below the 8 MiB the store needs", state_memory_mb));
  }
  if (block_interval_ms < 10 || block_interval_ms > 60'000) {
    return absl::InvalidArgumentError(fmt::format("block-interval-ms: {} is not in 10..60000", block_interval_ms));
  }
  if (max_unreported_blocks < 1 || max_unreported_blocks > 1000) {
    return absl::InvalidArgumentError(
        fmt::format("max-unreported-blocks: {} is not in 1..1000", max_unreported_blocks));
  }
  return absl::OkStatus();
}

Worker::Worker(WorkerOptions options, Clock* clock)
    : options_(std::move(options)), clock_(clock), http_(std::make_unique<http::DaemonHttp>("worker")) {}

Worker::~Worker() { Stop(); }

void Worker::Reload() {
  if (tls_ == nullptr) return;
  if (Status st = tls_->Reload(); !st.ok()) {
    spdlog::error("reload: {}; the running TLS certificate stays", std::string(st.message()));
  }
}

Status Worker::Start() {
  RETURN_IF_ERROR(EnsureDirectory(options_.daemon.data_dir, "data-dir"));
  RETURN_IF_ERROR(EnsureDirectory(options_.daemon.data_dir + "/blocks", "data-dir"));
  ASSIGN_OR_RETURN(store_, BlockStore::Open({.memory_budget_bytes = static_cast<size_t>(options_.block_memory_mb) << 20,
                                             .disk_budget_bytes = static_cast<size_t>(options_.block_disk_mb) << 20,
                                             .spill_path = options_.daemon.data_dir + "/blocks/spill",
                                             .log_path = options_.daemon.data_dir + "/blocks/log"}));
  ASSIGN_OR_RETURN(rpc::RpcOptions rpc_options, rpc::DaemonRpcOptions(options_.daemon, rpc::Role::kWorker));
  tls_ = rpc_options.tls;
  channels_ = std::make_unique<rpc::ChannelCache>(rpc_options);
  ASSIGN_OR_RETURN(probes_, WorkerProbes::Create(metrics()));
  rpc_options.probe = probes_->rpc.get();  // the server counts its calls
  receivers_ = std::make_unique<ReceiverSet>(
      ReceiverSetOptions{.block_interval = std::chrono::milliseconds(options_.block_interval_ms),
                         .max_unreported_blocks = options_.max_unreported_blocks},
      store_.get(), channels_.get(), clock_);
  ASSIGN_OR_RETURN(state_, ReduceState::Open(options_.daemon.data_dir + "/state", options_.daemon.id, channels_.get(),
                                             options_.state_memory_mb << 20));
  shuffle_ = std::make_unique<ShuffleStore>();
  executor_ = std::make_unique<Executor>(options_.daemon.id, store_.get(), shuffle_.get(), state_.get(), &fence_,
                                         channels_.get(), &options_.paths, clock_);
  executor_->set_probe(probes_->executor.get());
  ASSIGN_OR_RETURN(probes_->receivers, ReceiverProbe::Create(metrics(), receivers_.get(), store_.get()));
  ASSIGN_OR_RETURN(probes_->state,
                   state::StateProbe::Create(metrics(), state_->store(), [](const std::string& name) {
                     return engine::ParseStateNamespace(name).job_id;
                   }));
  service_ = std::make_unique<WorkerServiceImpl>(
      options_.daemon.id, &fence_, store_.get(), shuffle_.get(), state_.get(), receivers_.get(), executor_.get(),
      [this] { return GetStatus(); },
      [this](const proto::LeaderHeartbeatRequest& r) { OnHeartbeat(r); });
  service_->set_allow_drills(options_.daemon.allow_drills);
  resplitter_ = std::make_unique<Resplitter>(state_.get(), channels_.get());
  service_->set_resplitter(resplitter_.get());
  ASSIGN_OR_RETURN(server_, rpc::RpcServer::Start(options_.daemon.rpc_address, {service_.get()}, rpc_options));
  RETURN_IF_ERROR(http_->Start(options_.daemon, liveness_));
  {
    std::lock_guard<std::mutex> lock(mu_);
    process_ = rpc::MakeProcessInfo(options_.daemon.id, options_.daemon.Advertised(server_->address()),
                                    clock_);
    process_.set_http_address(http_->advertised());
  }
  spdlog::info("worker {} serving on {} with {} slots", options_.daemon.id, server_->address(),
               options_.slots);

  // Standalone mode: the driver holds the workers group; join it there.
  auto join_at_driver = [this](coord::Group group, const proto::MemberInfo& self, std::chrono::milliseconds lease) {
    Result<coord::CoordinatorSpec> spec = coord::CoordinatorSpec::Parse(options_.daemon.coordinator);
    if (!spec.ok()) return spec.status();
    proto::JoinGroupRequest request;
    request.set_group(coord::GroupName(group));
    *request.mutable_member() = self;
    request.set_lease_ms(static_cast<int32_t>(lease.count()));
    return rpc::DriverClient(*channels_, spec->leader_address).JoinGroup(request).status();
  };
  ASSIGN_OR_RETURN(coordinator_, coord::Coordinator::CreateForDaemon(options_.daemon, clock_, join_at_driver));
  ASSIGN_OR_RETURN(probes_->session, coord::SessionProbe::Create(metrics(), coordinator_.get()));
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
  me.set_http_address(http_->advertised());
  receivers_->SetSelf(me);
  receivers_->set_beat(liveness_->Register("reporter"));
  receivers_->Start();
  RETURN_IF_ERROR_PREPEND(membership_->Join(me), "joining the workers group");
  return absl::OkStatus();
}

void Worker::OnHeartbeat(const proto::LeaderHeartbeatRequest& request) {
  receivers_->OnLeader(request.epoch(), request.leader_address());
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
  http_->Stop();  // its handlers read the parts below
  if (membership_) membership_->Leave();
  if (coordinator_) coordinator_->Close();
  if (server_ != nullptr) server_->Shutdown();
  if (receivers_) receivers_->Stop();
  if (executor_) executor_->set_probe(nullptr);
  probes_.reset();  // before the coordinator it reads
  membership_.reset();
  detector_.reset();
  coordinator_.reset();
}

sluice::ServiceState Worker::ServiceState() const {
  sluice::ServiceState state = ComputeServiceState();
  http_->SetServiceState(state);
  return state;
}

sluice::ServiceState Worker::ComputeServiceState() const {
  sluice::ServiceState out;
  if (receivers_ == nullptr || service_ == nullptr) {
    out.status = "starting";
    return out;
  }
  std::optional<proto::LeaderInfo> leader;
  {
    std::lock_guard<std::mutex> lock(mu_);
    leader = leader_;
  }
  const int64_t registered = receivers_->registered_epoch();
  int receivers = 0;
  for (const proto::ReceiverState& r : receivers_->States()) receivers += !r.stopped();
  const int tasks = service_->tasks_running();
  const std::string leader_name =
      leader && !leader->id().empty() ? leader->id() : options_.daemon.coordinator;
  if (registered == 0 || !leader || leader->epoch() == 0) {
    out.status = leader && leader->epoch() > 0 ? fmt::format("worker, registering with leader {}", leader_name)
                                               : fmt::format("worker, waiting for the leader ({})", leader_name);
    return out;
  }
  out.ready = true;
  out.status = fmt::format("worker, {} receiver{}, {} task{}, leader {} epoch {}", receivers,
                           receivers == 1 ? "" : "s", tasks, tasks == 1 ? "" : "s", leader_name, registered);
  return out;
}

std::string Worker::http_address() const { return http_->advertised(); }

metrics::Registry* Worker::metrics() { return http_->registry(); }

std::string Worker::rpc_address() const { return server_ ? server_->address() : options_.daemon.rpc_address; }

proto::WorkerStatus Worker::GetStatus() const {
  proto::WorkerStatus status;
  std::lock_guard<std::mutex> lock(mu_);
  *status.mutable_process() = process_;
  status.set_slots(options_.slots);
  if (leader_) *status.mutable_leader() = *leader_;
  status.set_highest_epoch(fence_.highest());
  if (receivers_) {
    status.set_registered_epoch(receivers_->registered_epoch());
    status.set_unreported_blocks(receivers_->unreported());
    for (proto::ReceiverState& r : receivers_->States()) *status.add_receivers() = std::move(r);
  }
  if (store_) {
    BlockStoreStats st = store_->Stats();
    proto::BlockStoreInfo* info = status.mutable_store();
    info->set_memory_bytes(static_cast<int64_t>(st.memory_bytes));
    info->set_memory_budget_bytes(options_.block_memory_mb << 20);
    info->set_disk_bytes(static_cast<int64_t>(st.disk_bytes));
    info->set_disk_budget_bytes(options_.block_disk_mb << 20);
    info->set_blocks_in_memory(static_cast<int64_t>(st.blocks_in_memory));
    info->set_blocks_on_disk(static_cast<int64_t>(st.blocks_on_disk));
    info->set_blocks_in_log(static_cast<int64_t>(st.blocks_in_log));
    std::string degraded = st.degraded;
    if (state_ != nullptr) {
      if (storage::StoreHealthInfo h = state_->store()->health(); h.degraded) {
        degraded += (degraded.empty() ? "" : "; ") + fmt::format("the state store refuses writes: {}", h.error);
      }
    }
    info->set_degraded(degraded);
  }
  return status;
}

}  // namespace sluice::worker
