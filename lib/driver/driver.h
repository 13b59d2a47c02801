// Driver: one driverd process, assembled from its parts.
//
// Module sluice::driver owns the driver daemon: its options, its gRPC services
// (DriverService in proto/driver.proto, WalService in proto/wal.proto), its
// replicated WAL (lib/wal), its terms as leader (Leadership), the drivers/
// group, its view of the workers/ group, and the leader's heartbeat to
// workers, which carries the epoch (docs/design.md, rule 4), and the leader's
// threads: assignment (receivers, every heartbeat), planning (batches at
// their batch time, checked every 20 ms) and scheduling (tasks, commits);
// and, on its HTTP endpoint, the status page (StatusPage).
// cmd/driverd/main.cpp only parses flags into DriverOptions and calls
// Start/Stop.
//
//   STANDBY --elected(E)--> LEADER (catching up) --LeaderChange committed--> SERVING
//      ^                          |                                          |
//      +---- lost / lease expired / fenced ----------------------------------+
//
// The leader heartbeats workers only while the elector's lease holds, and
// will plan and schedule only while Serving. A leader that cannot reach most
// of the live workers for longer than a dead worker takes to leave the
// membership gives the leadership up, so a driver that can reach them leads.
//
// Thread-safety: Start and Stop are called from one thread; everything else
// runs on gRPC's threads, the coordinator's thread and the driver's own
// threads (heartbeat, assign, plan, schedule).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lib/common/clock.h"
#include "lib/common/daemon_options.h"
#include "lib/common/service_notify.h"
#include "lib/common/status.h"
#include "lib/engine/confinement.h"
#include "proto/driver.pb.h"

namespace CLI {
class App;
}

namespace sluice::metrics {
class Registry;
}

namespace sluice::rpc {
class ChannelCache;
class RpcServer;
class TlsIdentity;
}

namespace sluice::http {
class DaemonHttp;
}

namespace sluice::coord {
class Coordinator;
class LeaderDetector;
class Membership;
}  // namespace sluice::coord

namespace sluice::wal {
class ReplicatedLog;
class WalServiceImpl;
}  // namespace sluice::wal

namespace sluice::driver {

class ClusterState;
class DataPath;
class DriverLog;
struct DriverProbes;
class DriverServiceImpl;
class JobHolds;
class JobRegistry;
class Planner;
class RateControl;
class Savepoints;
class Scheduler;
class StatusPage;
class Leadership;
class WorkerProxy;

struct DriverOptions {
  DaemonOptions daemon{.rpc_address = "127.0.0.1:7100",
                       .data_dir = "/var/lib/sluice/driver",
                       .coordinator = "standalone"};
  int heartbeat_interval_ms = 500;  // leader -> workers
  // The leader gives up leading after failing to heartbeat more than half of
  // the live workers for this long (docs/coordination.md); 0: the ZooKeeper
  // session timeout + 2 heartbeat intervals.
  int workers_unreachable_give_up_ms = 0;
  int wal_group_size = 3;           // drivers in the WAL's replication group
  int64_t wal_compact_every = 10'000;
  engine::PathPolicy paths;  // plugin-dirs, output-dirs: checked at submit

  // workers_unreachable_give_up_ms, or its default.
  std::chrono::milliseconds WorkersUnreachableGiveUp() const {
    return std::chrono::milliseconds(workers_unreachable_give_up_ms > 0
                                         ? workers_unreachable_give_up_ms
                                         : daemon.zk_session_timeout_ms + 2 * heartbeat_interval_ms);
  }

  // Declares every option as a flag (and so as a config-file key) on `app`.
  void Register(CLI::App& app);
  // Checks values the flag parser cannot: INVALID_ARGUMENT naming the option.
  [[nodiscard]] Status Validate() const;
  const std::string& log_level() const { return daemon.log_level; }
};

class Driver {
 public:
  Driver(DriverOptions options, Clock* clock);
  ~Driver();

  // Starts serving, connects to the coordinator, joins the drivers/ group and
  // the election. UNAVAILABLE if the address cannot be bound or ZooKeeper
  // cannot be reached; FAILED_PRECONDITION if the data directory is unusable.
  [[nodiscard]] Status Start();
  // Leaves the election and closes the coordinator session first, so a
  // standby takes over at once (docs/design.md, rule 6), then stops serving.
  void Stop();
  // SIGHUP: re-reads the TLS certificate, key and CA files (tls.h); on an
  // error the running ones stay, and the error is logged.
  void Reload();

  // The bound "host:port" (valid after Start).
  std::string rpc_address() const;
  // The HTTP endpoint's advertised address ("" without --http-address).
  std::string http_address() const;
  // The metrics registry every part of this driver registers on.
  metrics::Registry* metrics();
  proto::DriverStatus GetStatus() const;
  // Appends a Marker through the WAL (leader only) and waits for the commit.
  [[nodiscard]] Result<int64_t> AppendMarker(const proto::AppendMarkerRequest& request);
  [[nodiscard]] Status ReadWal(const proto::ReadWalRequest& request, proto::ReadWalResponse* response);
  // Sources, blocks and receiver assignment; null until started.
  DataPath* data_path() const { return data_path_view_.load(); }
  // An UNAVAILABLE `status` gains where the leader is, as this driver sees it.
  Status WithLeaderHint(Status status) const;
  // Jobs; null until started.
  JobRegistry* jobs() const { return jobs_view_.load(); }
  // Savepoints (take and restore); null until started.
  Savepoints* savepoints() const { return savepoints_view_.load(); }
  // Jobs whose planning is held (made in the constructor; never null).
  JobHolds* holds() const { return holds_.get(); }
  // The main loops' heartbeats go to `liveness` (the watchdog's); call
  // before Start. Without it the loops beat into a private one.
  void SetLiveness(Liveness* liveness) { liveness_ = liveness; }
  // Whether this driver serves (leading with a serving WAL, or a standby
  // following a leader with the WAL caught up) and a line saying so, for
  // systemd (docs/service.md). May ask the leader for its commit point.
  // Called from one thread (the daemon's main thread).
  sluice::ServiceState ServiceState();
  // Standalone mode: a worker's membership, renewed by its calls
  // (JoinGroup); it lapses after `lease`.
  [[nodiscard]] Status AcceptMember(const proto::JoinGroupRequest& request);
  // sluicectl worker drain: appends WorkerDrainRequested (unless
  // status_only) and says what the worker still holds. Leader only.
  [[nodiscard]] Result<proto::DrainWorkerResponse> DrainWorker(const proto::DrainWorkerRequest& request);
  // sluicectl rebalance: a rebalance round now. Leader only.
  [[nodiscard]] Result<proto::RebalanceResponse> Rebalance();
  // Fills `info`'s reduce partitions (holders from the WAL, moves in flight).
  void AddReducePartitions(proto::JobInfo* info);
  // Whether the Drill RPC is obeyed (the allow-drills option).
  bool allow_drills() const { return options_.daemon.allow_drills; }
  const std::string& id() const { return options_.daemon.id; }

 private:
  sluice::ServiceState ComputeServiceState();
  void HeartbeatLoop();
  void AssignLoop();
  void ScheduleLoop();
  void PlanLoop();

  DriverOptions options_;
  Clock* clock_;
  Liveness own_liveness_;
  Liveness* liveness_ = &own_liveness_;
  // What the standby learnt of the leader's commit point (ServiceState).
  std::string catch_up_leader_;       // the leader it was asked of
  int64_t catch_up_target_ = -1;      // its commit_seq then (-1: not asked)
  bool caught_up_ = false;            // reached it under that leader
  Clock::TimePoint catch_up_asked_{};
  // First made, last destroyed: the metrics registry lives as long as the
  // parts that hold metrics of it.
  std::unique_ptr<http::DaemonHttp> http_;
  std::shared_ptr<rpc::TlsIdentity> tls_;  // null with tls = off
  std::unique_ptr<rpc::ChannelCache> channels_;  // to the other drivers and the workers
  std::unique_ptr<ClusterState> state_;  // the log's state machine
  std::unique_ptr<wal::ReplicatedLog> log_;
  std::unique_ptr<DriverLog> driver_log_;
  std::unique_ptr<wal::WalServiceImpl> wal_service_;
  std::unique_ptr<DriverServiceImpl> service_;
  std::unique_ptr<rpc::RpcServer> server_;
  std::unique_ptr<WorkerProxy> workers_proxy_;
  std::unique_ptr<coord::Coordinator> coordinator_;
  // coordinator_ as gRPC threads see it (GetStatus): set once it is made.
  std::atomic<coord::Coordinator*> coordinator_view_{nullptr};
  std::unique_ptr<Leadership> leadership_;
  // leadership_ as gRPC threads see it: set once the election is entered.
  std::atomic<Leadership*> leadership_view_{nullptr};
  std::unique_ptr<RateControl> rates_;  // before its users, which hold pointers to it
  std::unique_ptr<DataPath> data_path_;
  std::atomic<DataPath*> data_path_view_{nullptr};
  std::unique_ptr<JobHolds> holds_;  // jobs the planner leaves alone for now (savepoints)
  std::unique_ptr<JobRegistry> jobs_;
  std::atomic<JobRegistry*> jobs_view_{nullptr};
  std::unique_ptr<Savepoints> savepoints_;
  std::atomic<Savepoints*> savepoints_view_{nullptr};
  std::unique_ptr<Planner> planner_;  // used by the plan thread only
  std::unique_ptr<Scheduler> scheduler_;  // used by the schedule thread only
  // scheduler_'s thread-safe part (moves, rebalance rounds) as gRPC threads see it.
  std::atomic<Scheduler*> scheduler_view_{nullptr};
  std::unique_ptr<coord::LeaderDetector> detector_;
  std::unique_ptr<coord::Membership> drivers_;
  std::unique_ptr<coord::Membership> workers_;
  // The status page (/ on the HTTP endpoint); stopped before the parts it reads.
  std::unique_ptr<StatusPage> page_;
  std::unique_ptr<DriverProbes> probes_;  // of the parts above: released before them (Stop)

  mutable std::mutex mu_;
  proto::ProcessInfo process_;                  // guarded by mu_
  std::optional<proto::LeaderInfo> leader_;     // guarded by mu_ (as detected)
  std::vector<proto::MemberInfo> worker_view_;  // guarded by mu_
  std::vector<proto::MemberInfo> driver_view_;  // guarded by mu_
  bool stopping_ = false;                       // guarded by mu_
  std::condition_variable stop_cv_;
  std::thread heartbeat_thread_;
  std::thread assign_thread_;
  std::thread schedule_thread_;
  std::thread plan_thread_;
  bool stopped_ = false;
};

}  // namespace sluice::driver
