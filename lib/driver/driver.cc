#include "lib/driver/driver.h"

#include <map>
#include <memory>
#include <set>
#include <mutex>
#include <optional>

#include "CLI/CLI.hpp"
#include "absl/base/thread_annotations.h"
#include "lib/common/config.h"
#include "lib/common/fs.h"
#include "lib/common/logging.h"
#include "lib/coord/coordinator.h"
#include "lib/coord/session_probe.h"
#include "lib/driver/cluster_state.h"
#include "lib/driver/data_path.h"
#include "lib/driver/driver_log.h"
#include "lib/driver/driver_probe.h"
#include "lib/driver/driver_service.h"
#include "lib/driver/job_holds.h"
#include "lib/driver/job_registry.h"
#include "lib/driver/savepoint.h"
#include "lib/driver/planner.h"
#include "lib/driver/rate_control.h"
#include "lib/driver/scheduler.h"
#include "lib/driver/leadership.h"
#include "lib/driver/status_page.h"
#include "lib/http/daemon_http.h"
#include "lib/wal/replicated_log.h"
#include "lib/wal/wal_probe.h"
#include "lib/wal/wal_service.h"
#include "lib/driver/worker_proxy.h"
#include "lib/rpc/channel_cache.h"
#include "lib/rpc/driver_client.h"
#include "lib/rpc/process_info.h"
#include "lib/rpc/rpc.h"
#include "lib/rpc/worker_client.h"
#include "lib/rpc/tls.h"
#include "spdlog/spdlog.h"

namespace sluice::driver {
namespace {

// Logs a group's membership as it changes: the members at first, then one
// line per member that joins or leaves, with those left. Shared by the
// copies of a membership callback; thread-safe.
class MembershipLog {
 public:
  explicit MembershipLog(const char* kind) : kind_(kind) {}

  void Changed(const std::vector<proto::MemberInfo>& members) {
    std::map<std::string, std::string> now;  // id -> address
    for (const proto::MemberInfo& m : members) now[m.id()] = m.rpc_address();
    std::string ids;
    for (const auto& [id, address] : now) ids += (ids.empty() ? "" : ",") + id;
    std::lock_guard<std::mutex> lock(mu_);
    if (!known_.has_value()) {
      spdlog::info("{}s: [{}]", kind_, ids);
    } else {
      for (const auto& [id, address] : now) {
        if (!known_->contains(id)) spdlog::info("{} {} joined at {}; {}s now [{}]", kind_, id, address, kind_, ids);
      }
      for (const auto& [id, address] : *known_) {
        if (!now.contains(id)) spdlog::info("{} {} left; {}s now [{}]", kind_, id, kind_, ids);
      }
    }
    known_ = std::move(now);
  }

 private:
  const char* const kind_;
  std::mutex mu_;
  std::optional<std::map<std::string, std::string>> known_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

void DriverOptions::Register(CLI::App& app) {
  daemon.Register(app, "driver");
  app.add_option("--heartbeat-interval-ms", heartbeat_interval_ms,
                 "How often the leader heartbeats each worker")
      ->capture_default_str();
  app.add_option("--workers-unreachable-give-up-ms", workers_unreachable_give_up_ms,
                 "The leader gives up leading after failing to heartbeat more than half of the "
                 "live workers this long (0: zk-session-timeout-ms + 2 heartbeat intervals)")
      ->capture_default_str();
  app.add_option("--wal-group-size", wal_group_size,
                 "Drivers in the WAL's replication group; a record commits on a majority")
      ->capture_default_str();
  app.add_option("--wal-compact-every", wal_compact_every,
                 "Fold this many committed WAL records into a snapshot")
      ->capture_default_str();
  paths.Register(app);
}

Status DriverOptions::Validate() const {
  RETURN_IF_ERROR(daemon.Validate());
  RETURN_IF_ERROR(paths.Validate());
  ASSIGN_OR_RETURN(coord::CoordinatorSpec spec, coord::CoordinatorSpec::Parse(daemon.coordinator));
  if (spec.kind == coord::CoordinatorSpec::Kind::kStandalone && !spec.leader_address.empty()) {
    return absl::InvalidArgumentError(
        "coordinator: a driver cannot follow another in standalone mode; use 'standalone'");
  }
  if (wal_group_size < 1 || wal_group_size > 15) {
    return absl::InvalidArgumentError(fmt::format("wal-group-size: {} is not in 1..15", wal_group_size));
  }
  if (wal_compact_every < 10) {
    return absl::InvalidArgumentError("wal-compact-every: must be at least 10");
  }
  if (workers_unreachable_give_up_ms < 0) {
    return absl::InvalidArgumentError(
        fmt::format("workers-unreachable-give-up-ms: {} is negative", workers_unreachable_give_up_ms));
  }
  if (heartbeat_interval_ms < 10 || heartbeat_interval_ms > 60'000) {
    return absl::InvalidArgumentError(
        fmt::format("heartbeat-interval-ms: {} is not in 10..60000", heartbeat_interval_ms));
  }
  return absl::OkStatus();
}

Driver::Driver(DriverOptions options, Clock* clock)
    : options_(std::move(options)),
      clock_(clock),
      http_(std::make_unique<http::DaemonHttp>("driver")),
      holds_(std::make_unique<JobHolds>()) {}

Driver::~Driver() { Stop(); }

void Driver::Reload() {
  if (tls_ == nullptr) return;
  if (Status st = tls_->Reload(); !st.ok()) {
    spdlog::error("reload: {}; the running TLS certificate stays", std::string(st.message()));
  }
}

Status Driver::Start() {
  RETURN_IF_ERROR(EnsureDirectory(options_.daemon.data_dir, "data-dir"));
  ASSIGN_OR_RETURN(std::unique_ptr<wal::WalStore> store,
                   wal::WalStore::Open({.path = options_.daemon.data_dir + "/wal"}));
  ASSIGN_OR_RETURN(rpc::RpcOptions rpc_options, rpc::DaemonRpcOptions(options_.daemon, rpc::Role::kDriver));
  tls_ = rpc_options.tls;
  channels_ = std::make_unique<rpc::ChannelCache>(rpc_options);
  ASSIGN_OR_RETURN(probes_, DriverProbes::Create(metrics()));
  rpc_options.probe = probes_->rpc.get();  // the server counts its calls
  state_ = std::make_unique<ClusterState>();
  // Standalone mode has one driver: a WAL group of more could never commit.
  int group_size = options_.wal_group_size;
  ASSIGN_OR_RETURN(coord::CoordinatorSpec spec, coord::CoordinatorSpec::Parse(options_.daemon.coordinator));
  if (spec.kind == coord::CoordinatorSpec::Kind::kStandalone && group_size != 1) {
    spdlog::info("standalone: the WAL's group is this driver alone (wal-group-size {} applies with ZooKeeper)",
                 group_size);
    group_size = 1;
  }
  log_ = std::make_unique<wal::ReplicatedLog>(
      std::move(store), state_.get(),
      wal::ReplicatedLogOptions{.id = options_.daemon.id,
                                .group_size = group_size,
                                .compact_every = options_.wal_compact_every,
                                .clock = clock_},
      wal::GrpcWalPeerFactory(channels_.get(), std::chrono::milliseconds(1000)));
  RETURN_IF_ERROR_PREPEND(log_->Init(), "opening the WAL");
  ASSIGN_OR_RETURN(probes_->wal, wal::WalProbe::Create(metrics(), log_.get()));
  driver_log_ = std::make_unique<DriverLog>(log_.get(), state_.get());
  wal_service_ = std::make_unique<wal::WalServiceImpl>(log_.get());
  service_ = std::make_unique<DriverServiceImpl>(this);
  ASSIGN_OR_RETURN(server_, rpc::RpcServer::Start(options_.daemon.rpc_address,
                                                  {service_.get(), wal_service_.get()}, rpc_options));
  const std::string advertised = options_.daemon.Advertised(server_->address());
  // The status page reads this driver's status (its parts through their
  // atomic views, null while starting), the log's state and its history.
  page_ = std::make_unique<StatusPage>(
      [this] { return GetStatus(); }, state_.get(),
      [this](const std::string& address) {
        return rpc::WorkerClient(*channels_, address).GetStatus(std::chrono::milliseconds(500));
      },
      clock_);
  page_->Register(http_->server());
  RETURN_IF_ERROR(http_->Start(options_.daemon, liveness_));
  {
    std::lock_guard<std::mutex> lock(mu_);
    process_ = rpc::MakeProcessInfo(options_.daemon.id, advertised, clock_);
    process_.set_http_address(http_->advertised());
  }
  spdlog::info("driver {} serving on {}", options_.daemon.id, server_->address());

  ASSIGN_OR_RETURN(coordinator_, coord::Coordinator::CreateForDaemon(options_.daemon, clock_));
  coordinator_view_ = coordinator_.get();
  ASSIGN_OR_RETURN(probes_->session, coord::SessionProbe::Create(metrics(), coordinator_.get()));
  workers_proxy_ = std::make_unique<GrpcWorkerProxy>(
      channels_.get(), std::chrono::milliseconds(std::max(100, options_.heartbeat_interval_ms)));

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
  workers_->Watch(
      [this, changes = std::make_shared<MembershipLog>("worker")](const std::vector<proto::MemberInfo>& members) {
        changes->Changed(members);
        {
          std::lock_guard<std::mutex> lock(mu_);
          worker_view_ = members;
        }
        if (DataPath* data = data_path_view_.load()) data->WorkersChanged(members);
      });
  drivers_ = coordinator_->NewMembership(coord::Group::kDrivers);
  drivers_->Watch(
      [this, changes = std::make_shared<MembershipLog>("driver")](const std::vector<proto::MemberInfo>& members) {
        changes->Changed(members);
        log_->SetPeers(members);  // the WAL replicates to the live standbys
        std::lock_guard<std::mutex> lock(mu_);
        driver_view_ = members;
      });
  proto::MemberInfo me;
  me.set_id(options_.daemon.id);
  me.set_rpc_address(advertised);
  me.set_http_address(http_->advertised());
  RETURN_IF_ERROR_PREPEND(drivers_->Join(me), "joining the drivers group");

  proto::LeaderInfo candidate;
  candidate.set_id(options_.daemon.id);
  candidate.set_rpc_address(advertised);
  candidate.set_http_address(http_->advertised());
  leadership_ = std::make_unique<Leadership>(coordinator_.get(), candidate, log_.get());
  RETURN_IF_ERROR(leadership_->Start());
  leadership_view_ = leadership_.get();
  rates_ = std::make_unique<RateControl>();
  data_path_ = std::make_unique<DataPath>(options_.daemon.id, driver_log_.get(), leadership_.get(),
                                          workers_proxy_.get(), rates_.get(), clock_);
  data_path_view_ = data_path_.get();
  scheduler_ =
      std::make_unique<Scheduler>(driver_log_.get(), leadership_.get(), workers_proxy_.get(), data_path_.get(), clock_);
  scheduler_->set_holds(holds_.get());
  scheduler_view_ = scheduler_.get();
  jobs_ = std::make_unique<JobRegistry>(options_.daemon.id, driver_log_.get(), leadership_.get(), data_path_.get(),
                                        rates_.get(), clock_, &options_.paths, scheduler_->progress());
  jobs_->set_holds(holds_.get());
  jobs_view_ = jobs_.get();
  savepoints_ = std::make_unique<Savepoints>(
      driver_log_.get(), leadership_.get(), jobs_.get(), holds_.get(), channels_.get(),
      [this] {
        std::lock_guard<std::mutex> lock(mu_);
        return worker_view_;
      },
      options_.daemon.coordinator, clock_);
  savepoints_view_ = savepoints_.get();
  planner_ = std::make_unique<Planner>(driver_log_.get(), leadership_.get(), rates_.get(), clock_, holds_.get());
  RETURN_IF_ERROR(probes_->AttachLeader(leadership_.get(), state_.get(), rates_.get(), planner_.get(), scheduler_.get()));
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
  assign_thread_ = std::thread([this] { AssignLoop(); });
  schedule_thread_ = std::thread([this] { ScheduleLoop(); });
  plan_thread_ = std::thread([this] { PlanLoop(); });
  return absl::OkStatus();
}

// Heartbeats also tell whether this leader can do its work: with most of
// the live workers unreachable (a partition between it and them, while
// ZooKeeper still sees everyone) it could neither schedule nor hear of
// blocks, yet would keep the leadership. Dead workers leave the membership
// within the session timeout, so the default give-up time (the session
// timeout + 2 heartbeat intervals) never counts a crash, only a partition.
// Giving up is pointless without another driver to lead, so a lone driver
// keeps trying.
void Driver::HeartbeatLoop() {
  const std::chrono::milliseconds give_up = options_.WorkersUnreachableGiveUp();
  std::optional<Clock::TimePoint> failing_since;  // most live workers unreachable since
  int64_t failing_epoch = 0;
  LoopBeat* beat = liveness_->Register("heartbeat");
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    stop_cv_.wait_for(lock, std::chrono::milliseconds(options_.heartbeat_interval_ms));
    lock.unlock();
    beat->Beat();
    lock.lock();
    if (stopping_ || !leadership_->IsLeader()) {
      failing_since.reset();
      continue;
    }
    std::vector<proto::MemberInfo> workers = worker_view_;
    int other_drivers = 0;
    for (const proto::MemberInfo& d : driver_view_) other_drivers += d.id() != options_.daemon.id;
    proto::LeaderHeartbeatRequest request;
    request.set_epoch(leadership_->epoch());
    request.set_leader_id(options_.daemon.id);
    request.set_leader_address(process_.rpc_address());
    lock.unlock();
    const Clock::TimePoint round_start = clock_->Now();
    int unreachable = 0;
    for (const proto::MemberInfo& w : workers) {
      if (!leadership_->IsLeader()) break;  // the lease may lapse mid-round
      proto::LeaderHeartbeatResponse response;
      Status st = workers_proxy_->LeaderHeartbeat(w.rpc_address(), request, &response);
      if (absl::IsFailedPrecondition(st)) {
        // A worker has seen a newer epoch: another driver leads now.
        spdlog::warn("worker {} rejected epoch {}: {}", w.id(), request.epoch(),
                     std::string(st.message()));
      } else if (!st.ok()) {
        ++unreachable;
        spdlog::debug("heartbeat to worker {} failed: {}", w.id(), st.ToString());
      }
    }
    if (2 * unreachable <= static_cast<int>(workers.size()) || failing_epoch != request.epoch()) {
      failing_since.reset();
      failing_epoch = request.epoch();
    }
    if (2 * unreachable > static_cast<int>(workers.size())) {
      if (!failing_since) {
        failing_since = round_start;
        spdlog::warn("{} of {} live workers do not answer heartbeats; giving up leadership if that lasts {} ms",
                     unreachable, workers.size(), give_up.count());
      } else if (clock_->Now() - *failing_since >= give_up && other_drivers > 0) {
        leadership_->GiveUp(request.epoch(),
                            fmt::format("{} of {} live workers have not answered heartbeats for {} ms", unreachable,
                                        workers.size(),
                                        std::chrono::duration_cast<std::chrono::milliseconds>(clock_->Now() -
                                                                                              *failing_since)
                                            .count()));
        failing_since.reset();
      }
    }
    lock.lock();
  }
}

void Driver::AssignLoop() {
  LoopBeat* beat = liveness_->Register("assign");
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    stop_cv_.wait_for(lock, std::chrono::milliseconds(options_.heartbeat_interval_ms));
    lock.unlock();
    beat->Beat();
    lock.lock();
    if (stopping_ || !leadership_->Serving()) continue;
    std::vector<proto::MemberInfo> workers = worker_view_;
    const std::string address = process_.rpc_address();
    lock.unlock();
    data_path_->Tick(workers, address);
    lock.lock();
  }
}

// Batches are planned at their batch time, whatever the heartbeat interval:
// a plan made late takes in more data and delays the batch.
void Driver::PlanLoop() {
  LoopBeat* beat = liveness_->Register("plan");
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    stop_cv_.wait_for(lock, std::chrono::milliseconds(20));
    lock.unlock();
    beat->Beat();
    lock.lock();
    if (stopping_ || !leadership_->Serving()) continue;
    lock.unlock();
    planner_->Tick();
    lock.lock();
  }
}

void Driver::ScheduleLoop() {
  LoopBeat* beat = liveness_->Register("schedule");
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    stop_cv_.wait_for(lock, std::chrono::milliseconds(50));
    lock.unlock();
    beat->Beat();
    lock.lock();
    if (stopping_) continue;
    // Also while not serving: the scheduler then gives up the attempts of
    // the term that ended.
    std::vector<proto::MemberInfo> workers = worker_view_;
    lock.unlock();
    scheduler_->Tick(workers);
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
  leadership_view_ = nullptr;
  coordinator_view_ = nullptr;
  data_path_view_ = nullptr;
  coordinator_view_ = nullptr;
  jobs_view_ = nullptr;
  savepoints_view_ = nullptr;
  scheduler_view_ = nullptr;
  if (leadership_) leadership_->Stop();  // leaves the election first (rule 6)
  // The HTTP handlers read the parts below (nothing is released before
  // here); stopping them waits for requests in flight, so after the handover.
  http_->Stop();
  if (page_) page_->Stop();  // so does its worker-details thread
  // Assignment rounds and tasks in flight end on their own (they stop at the
  // next check of Serving()); the handover does not wait for them.
  if (assign_thread_.joinable()) assign_thread_.join();
  if (schedule_thread_.joinable()) schedule_thread_.join();
  if (plan_thread_.joinable()) plan_thread_.join();
  if (server_ != nullptr) server_->Shutdown(0);
  if (drivers_) drivers_->Leave();
  if (coordinator_) coordinator_->Close();
  // The roles hold pointers into the coordinator: release them first.
  planner_.reset();
  scheduler_.reset();
  probes_.reset();  // before the coordinator, the log and the leadership they read
  savepoints_.reset();
  jobs_.reset();
  data_path_.reset();  // gRPC has stopped: nothing calls it any more
  leadership_.reset();
  detector_.reset();
  drivers_.reset();
  workers_.reset();
  coordinator_.reset();
}

Status Driver::AcceptMember(const proto::JoinGroupRequest& request) {
  coord::Group group;
  if (request.group() == coord::GroupName(coord::Group::kWorkers)) {
    group = coord::Group::kWorkers;
  } else {
    return absl::InvalidArgumentError(fmt::format("group: '{}' is not one a member joins through the driver",
                                                  request.group()));
  }
  RETURN_IF_ERROR(ValidateId(request.member().id(), "member.id"));
  coord::Coordinator* coordinator = coordinator_view_.load();
  if (coordinator == nullptr) return absl::UnavailableError("the driver is starting or stopping");
  return coordinator->AcceptRemoteMember(group, request.member(), std::chrono::milliseconds(request.lease_ms()));
}

// Ready as the serving leader, or as a standby once its WAL has reached the
// leader's commit point as the leader stated it at least a second earlier
// (so replication has had time to bring it), under the same leader.
sluice::ServiceState Driver::ServiceState() {
  sluice::ServiceState state = ComputeServiceState();
  http_->SetServiceState(state);
  return state;
}

sluice::ServiceState Driver::ComputeServiceState() {
  sluice::ServiceState out;
  Leadership* leadership = leadership_view_.load();
  if (leadership == nullptr || log_ == nullptr) {
    out.status = "starting";
    return out;
  }
  const wal::WalStats wal = log_->Stats();
  std::optional<proto::LeaderInfo> leader;
  int workers = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    leader = leader_;
    workers = static_cast<int>(worker_view_.size());
  }
  if (leadership->IsLeader()) {
    const int64_t epoch = leadership->epoch();
    if (!wal.serving) {
      out.status = fmt::format("leader epoch {}, catching up the WAL ({} committed of {})", epoch, wal.commit_seq,
                               wal.last_seq);
      return out;
    }
    int jobs = 0;
    if (JobRegistry* registry = jobs_view_.load()) {
      const proto::ListJobsResponse list = registry->List();
      for (const proto::JobInfo& j : list.jobs()) jobs += j.state() != "stopped";
    }
    out.ready = true;
    out.status = fmt::format("leader epoch {}, {} worker{}, {} job{}", epoch, workers, workers == 1 ? "" : "s", jobs,
                             jobs == 1 ? "" : "s");
    return out;
  }
  if (!leader || leader->id().empty() || leader->id() == options_.daemon.id) {
    out.status = "standby, waiting for a leader";
    return out;
  }
  if (catch_up_leader_ != leader->id()) {
    catch_up_leader_ = leader->id();
    catch_up_target_ = -1;
    caught_up_ = false;
  }
  if (!caught_up_ && clock_->Now() - catch_up_asked_ >= std::chrono::seconds(1)) {
    if (catch_up_target_ >= 0 && wal.commit_seq >= catch_up_target_) {
      caught_up_ = true;
      spdlog::info("WAL caught up with leader {} (committed {} >= {})", leader->id(), wal.commit_seq,
                   catch_up_target_);
    } else {
      catch_up_asked_ = clock_->Now();
      Result<proto::DriverStatus> got =
          rpc::DriverClient(*channels_, leader->rpc_address()).GetStatus(std::chrono::milliseconds(500));
      if (got.ok() && got->role() == proto::DRIVER_ROLE_LEADER && got->wal().serving()) {
        bool in_group = false;
        for (const proto::WalPeerInfo& p : got->wal().peers()) in_group |= p.id() == options_.daemon.id;
        if (!in_group && got->wal().peers_size() >= options_.wal_group_size - 1) {
          caught_up_ = true;  // outside the WAL's replication group: nothing to catch up
          spdlog::info("leader {} does not replicate its WAL to this driver (wal-group-size); standing by",
                       leader->id());
        } else {
          catch_up_target_ = got->wal().commit_seq();
        }
      }
    }
  }
  out.ready = caught_up_;
  out.status = caught_up_ ? fmt::format("standby, following {}, WAL caught up", leader->id())
                          : fmt::format("standby, following {}, catching up the WAL ({} committed{})", leader->id(),
                                        wal.commit_seq,
                                        catch_up_target_ >= 0 ? fmt::format(" of {}", catch_up_target_) : "");
  return out;
}

std::string Driver::http_address() const { return http_->advertised(); }

metrics::Registry* Driver::metrics() { return http_->registry(); }

std::string Driver::rpc_address() const { return server_ ? server_->address() : options_.daemon.rpc_address; }

proto::DriverStatus Driver::GetStatus() const {
  proto::DriverStatus status;
  Leadership* leadership = leadership_view_.load();
  const bool leads = leadership != nullptr && leadership->IsLeader();
  if (log_ != nullptr) {
    wal::WalStats w = log_->Stats();
    proto::WalInfo* info = status.mutable_wal();
    info->set_last_seq(w.last_seq);
    info->set_commit_seq(w.commit_seq);
    info->set_snapshot_seq(w.snapshot_seq);
    info->set_fence(w.fence);
    info->set_serving(leads && w.serving);
    info->set_store_degraded(w.store.degraded);
    info->set_store_error(w.store.error);
    info->set_store_degraded_since_unix_ms(w.store.degraded_since_unix_ms);
    for (const wal::WalPeerStats& p : w.peers) {
      proto::WalPeerInfo* peer = info->add_peers();
      peer->set_id(p.id);
      peer->set_address(p.address);
      peer->set_acked_seq(p.acked_seq);
      peer->set_lag(p.lag);
      peer->set_last_contact_unix_ms(p.last_contact_unix_ms);
      peer->set_last_error(p.last_error);
      peer->set_state(p.state);
    }
  }
  if (driver_log_ != nullptr) {
    std::shared_ptr<const proto::ClusterState> state = driver_log_->View();
    std::set<std::string> draining;  // sorted: the map's order is not
    for (const auto& [id, since] : state->draining_workers()) draining.insert(id);
    for (const std::string& id : draining) status.add_draining_workers(id);
  }
  std::lock_guard<std::mutex> lock(mu_);
  *status.mutable_process() = process_;
  status.set_role(leads ? proto::DRIVER_ROLE_LEADER : proto::DRIVER_ROLE_STANDBY);
  if (leads) status.set_epoch(leadership->epoch());
  if (leader_) *status.mutable_leader() = *leader_;
  for (const auto& w : worker_view_) *status.add_workers() = w;
  for (const auto& d : driver_view_) *status.add_drivers() = d;
  status.set_coordinator(options_.daemon.coordinator);
  status.set_session_timeout_ms(options_.daemon.zk_session_timeout_ms);
  if (coord::Coordinator* c = coordinator_view_.load()) status.set_zk_server(c->connected_server());
  return status;
}

Result<int64_t> Driver::AppendMarker(const proto::AppendMarkerRequest& request) {
  Leadership* leadership = leadership_view_.load();
  if (leadership == nullptr || !leadership->Serving()) {
    std::lock_guard<std::mutex> lock(mu_);
    return absl::UnavailableError(fmt::format(
        "driver {} is not the serving leader (leader: {})", options_.daemon.id,
        leader_ ? leader_->id() + " at " + leader_->rpc_address() : "unknown"));
  }
  const int count = std::max(1, request.count());
  if (count > 10'000) return absl::InvalidArgumentError("count: at most 10000 markers per call");
  std::vector<proto::DriverRecord> records(count);
  for (int i = 0; i < count; ++i) {
    proto::Marker* m = records[i].mutable_marker();
    m->set_client_id(request.client_id());
    m->set_client_seq(request.client_seq() + i);
    m->set_payload(request.payload());
  }
  return driver_log_->AppendBatch(records);
}

namespace {

proto::PartitionMoveInfo MoveInfo(const PartitionMove& m, bool warming) {
  proto::PartitionMoveInfo out;
  out.set_job_id(m.job);
  out.set_partition(m.partition);
  out.set_role(m.role == MoveRole::kOwner ? "owner" : "replica");
  out.set_from(m.from);
  out.set_to(m.to);
  out.set_warming(warming);
  return out;
}

}  // namespace

Result<proto::DrainWorkerResponse> Driver::DrainWorker(const proto::DrainWorkerRequest& request) {
  Leadership* leadership = leadership_view_.load();
  DataPath* data = data_path_view_.load();
  if (leadership == nullptr || data == nullptr || !leadership->Serving()) {
    return WithLeaderHint(absl::UnavailableError(fmt::format("driver {} is not the serving leader", options_.daemon.id)));
  }
  if (request.worker_id().empty()) return absl::InvalidArgumentError("worker drain: a worker id is needed");
  bool live = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const proto::MemberInfo& m : worker_view_) live = live || m.id() == request.worker_id();
  }
  std::shared_ptr<const proto::ClusterState> state = driver_log_->View();
  if (!request.status_only()) {
    if (!live && !request.cancel() && !state->draining_workers().contains(request.worker_id())) {
      return absl::NotFoundError(fmt::format("worker {} is not a live member of the cluster", request.worker_id()));
    }
    proto::DriverRecord record;
    proto::WorkerDrainRequested* d = record.mutable_worker_drain_requested();
    d->set_worker_id(request.worker_id());
    d->set_cancel(request.cancel());
    d->set_requested_unix_ms(clock_->UnixMillis());
    RETURN_IF_ERROR(WithLeaderHint(driver_log_->Append(record).status()));
    spdlog::info("worker {}: {}", request.worker_id(), request.cancel() ? "drain cancelled" : "draining");
    state = driver_log_->View();
  }
  proto::DrainWorkerResponse out;
  out.set_draining(state->draining_workers().contains(request.worker_id()));
  out.set_live(live);
  out.set_receivers(data->ReceiversOf(request.worker_id()));
  for (const auto& [id, job] : state->jobs()) {
    if (job.stopped()) continue;
    for (const proto::ReduceHolders& h : job.reduce_holders()) {
      if (std::find(h.workers().begin(), h.workers().end(), request.worker_id()) != h.workers().end()) {
        out.add_reduce_partitions(fmt::format("{}/{}", id, h.partition()));
      }
    }
  }
  return out;
}

Result<proto::RebalanceResponse> Driver::Rebalance() {
  Scheduler* scheduler = scheduler_view_.load();
  Leadership* leadership = leadership_view_.load();
  if (scheduler == nullptr || leadership == nullptr || !leadership->Serving()) {
    return WithLeaderHint(absl::UnavailableError(fmt::format("driver {} is not the serving leader", options_.daemon.id)));
  }
  ASSIGN_OR_RETURN(std::vector<PartitionMove> started, scheduler->RebalanceNow());
  proto::RebalanceResponse out;
  for (const PartitionMove& m : started) *out.add_started() = MoveInfo(m, false);
  for (const PartitionMoves::InFlight& m : scheduler->moves()->List()) *out.add_in_flight() = MoveInfo(m.move, m.warming);
  return out;
}

void Driver::AddReducePartitions(proto::JobInfo* info) {
  std::shared_ptr<const proto::ClusterState> state = driver_log_->View();
  auto job = state->jobs().find(info->job_id());
  if (job == state->jobs().end()) return;
  std::map<int32_t, PartitionMoves::InFlight> moving;
  if (Scheduler* scheduler = scheduler_view_.load()) {
    for (const PartitionMoves::InFlight& m : scheduler->moves()->List()) {
      if (m.move.job == info->job_id()) moving[m.move.partition] = m;
    }
  }
  for (const proto::ReduceHolders& h : job->second.reduce_holders()) {
    proto::ReducePartitionInfo* p = info->add_reduce_partitions();
    p->set_partition(h.partition());
    if (h.workers_size() > 0) p->set_owner(h.workers(0));
    if (h.workers_size() > 1) p->set_replica(h.workers(1));
    if (auto it = moving.find(h.partition()); it != moving.end()) {
      p->set_moving_to(it->second.move.to);
      p->set_move_role(it->second.move.role == MoveRole::kOwner ? "owner" : "replica");
      p->set_warming(it->second.warming);
    }
  }
}

Status Driver::WithLeaderHint(Status status) const {
  if (!absl::IsUnavailable(status)) return status;
  std::lock_guard<std::mutex> lock(mu_);
  if (!leader_ || leader_->id() == options_.daemon.id) return status;
  return absl::UnavailableError(fmt::format("{} (the leader is {} at {})", std::string(status.message()), leader_->id(),
                                            leader_->rpc_address()));
}

Status Driver::ReadWal(const proto::ReadWalRequest& request, proto::ReadWalResponse* response) {
  const int max = request.max_records() > 0 ? std::min(request.max_records(), 10'000) : 1000;
  int64_t from = std::max<int64_t>(1, request.from_seq());
  if (std::optional<proto::WalSnapshot> snap = log_->Snapshot(); snap && from <= snap->last_seq()) {
    if (!response->mutable_snapshot()->ParseFromString(snap->state())) {
      return absl::DataLossError(fmt::format("the WAL snapshot at {} is unreadable", snap->last_seq()));
    }
    response->set_snapshot_seq(snap->last_seq());
    from = snap->last_seq() + 1;
  }
  ASSIGN_OR_RETURN(std::vector<proto::WalRecord> records, log_->ReadCommitted(from, max));
  for (const proto::WalRecord& r : records) {
    proto::DriverLogEntry* entry = response->add_records();
    entry->set_seq(r.seq());
    entry->set_epoch(r.epoch());
    if (r.has_leader_change()) {
      *entry->mutable_leader_change() = r.leader_change();
    } else if (!entry->mutable_record()->ParseFromString(r.payload())) {
      return absl::DataLossError(fmt::format("WAL record {} is unreadable", r.seq()));
    }
  }
  response->set_commit_seq(log_->Stats().commit_seq);
  return absl::OkStatus();
}

}  // namespace sluice::driver
