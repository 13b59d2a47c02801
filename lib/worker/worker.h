// Worker: one workerd process, assembled from its parts.
//
// Module sluice::worker owns the worker daemon: its options, its gRPC service
// (WorkerService in proto/worker.proto), its registration in the workers/
// group, the leader it follows (through the detector and the leader's
// heartbeats), the epoch fence every driver call passes, the block store and
// the receivers the leader assigns (ReceiverSet), and the executor of batch
// tasks. In standalone mode (standalone://DRIVER) it joins the workers group
// through the driver's JoinGroup. cmd/workerd/main.cpp only parses flags into
// WorkerOptions and calls Start/Stop.
//
// Thread-safety: Start and Stop are called from one thread; the service
// answers RPCs from gRPC's threads.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "lib/common/clock.h"
#include "lib/common/daemon_options.h"
#include "lib/common/service_notify.h"
#include "lib/common/status.h"
#include "lib/engine/confinement.h"
#include "lib/worker/epoch_fence.h"
#include "proto/worker.pb.h"

namespace CLI {
class App;
}

namespace sluice::http {
class DaemonHttp;
}

namespace sluice::metrics {
class Registry;
}

namespace sluice::rpc {
class ChannelCache;
class RpcServer;
class TlsIdentity;
}

namespace sluice::coord {
class Coordinator;
class LeaderDetector;
class Membership;
}  // namespace sluice::coord

namespace sluice::worker {

struct WorkerProbes;

class BlockStore;
class Executor;
class ReduceState;
class Resplitter;
class ShuffleStore;
class ReceiverSet;
class WorkerServiceImpl;

struct WorkerOptions {
  DaemonOptions daemon{.rpc_address = "127.0.0.1:7200",
                       .data_dir = "/var/lib/sluice/worker",
                       .coordinator = "standalone://127.0.0.1:7100"};
  int slots = 2;  // tasks run at once
  int64_t block_memory_mb = 256;   // blocks held in memory before spilling
  int64_t block_disk_mb = 4096;    // spilled and logged blocks
  int64_t state_memory_mb = 0;     // keyed state store's memory; 0: state in memory (state_store.h)
  int block_interval_ms = 200;     // a receiver cuts a block this often
  int max_unreported_blocks = 8;   // per receiver, before it pauses
  engine::PathPolicy paths;        // plugin-dirs, output-dirs

  void Register(CLI::App& app);
  [[nodiscard]] Status Validate() const;
  const std::string& log_level() const { return daemon.log_level; }
};

class Worker {
 public:
  Worker(WorkerOptions options, Clock* clock);
  ~Worker();

  [[nodiscard]] Status Start();
  void Stop();
  // SIGHUP: re-reads the TLS certificate, key and CA files (tls.h); on an
  // error the running ones stay, and the error is logged.
  void Reload();

  std::string rpc_address() const;
  // The HTTP endpoint's advertised address ("" without --http-address).
  std::string http_address() const;
  // The metrics registry every part of this worker registers on.
  metrics::Registry* metrics();
  proto::WorkerStatus GetStatus() const;
  // The main loops' heartbeats go to `liveness`; call before Start.
  void SetLiveness(Liveness* liveness) { liveness_ = liveness; }
  // Ready once registered with the leader (it heartbeats this worker and took
  // its registration), with a line for systemd (docs/service.md).
  sluice::ServiceState ServiceState() const;

 private:
  sluice::ServiceState ComputeServiceState() const;
  void OnHeartbeat(const proto::LeaderHeartbeatRequest& request);

  WorkerOptions options_;
  Clock* clock_;
  Liveness own_liveness_;
  Liveness* liveness_ = &own_liveness_;
  EpochFence fence_;
  std::shared_ptr<rpc::TlsIdentity> tls_;  // null with tls = off
  // First made, last destroyed: the metrics registry lives as long as the
  // parts that hold metrics of it.
  std::unique_ptr<http::DaemonHttp> http_;
  std::unique_ptr<rpc::ChannelCache> channels_;  // to the leader and the other workers
  std::unique_ptr<BlockStore> store_;
  std::unique_ptr<ReceiverSet> receivers_;
  std::unique_ptr<ShuffleStore> shuffle_;
  std::unique_ptr<ReduceState> state_;
  std::unique_ptr<Resplitter> resplitter_;  // over state_
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<WorkerServiceImpl> service_;
  std::unique_ptr<rpc::RpcServer> server_;
  std::unique_ptr<coord::Coordinator> coordinator_;
  std::unique_ptr<coord::LeaderDetector> detector_;
  std::unique_ptr<coord::Membership> membership_;
  std::unique_ptr<WorkerProbes> probes_;  // of the parts above: released before them (Stop)

  mutable std::mutex mu_;
  proto::ProcessInfo process_;               // guarded by mu_
  std::optional<proto::LeaderInfo> leader_;  // guarded by mu_
  bool stopped_ = false;
};

}  // namespace sluice::worker
