// DriverProbe and JobProbe: the driver's own metrics.
//
// DriverProbe: this driver's role — whether it leads, serves, and the epoch
// of the term it knows (its own while leading, else the last leader's from
// the replicated log) — read at each scrape.
//
// JobProbe: the per-job metrics, labelled `job`, exported by the serving
// leader only; a standby (or a leader still catching up) exports none, and
// a driver that stops leading drops them. Counters that mirror totals the
// log keeps (records in and out, dead letters, late events, batches planned
// and committed) are raised to the replicated totals at each scrape, so
// they go on across a failover; the rest are counted by this leader when
// it commits a batch (the Scheduler's hook) — the delay histograms, shuffle
// bytes, blocks fetched or recomputed, and re-runs: a batch this leader
// committed that it did not plan itself (planned under an earlier term, so
// its tasks may have run already) or whose tasks took more attempts than
// it has tasks (a task or the batch tried again).
//
// Module sluice::driver owns them; the Driver makes them on its registry.
// Thread-safe: hooks from the plan and schedule threads, collectors from a
// scrape.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "lib/common/status.h"
#include "lib/metrics/metrics.h"
#include "lib/driver/source_probe.h"
#include "proto/driver_log.pb.h"

namespace sluice::rpc {
class RpcProbe;
}
namespace sluice::wal {
class WalProbe;
}
namespace sluice::coord {
class SessionProbe;
}

namespace sluice::driver {

class ClusterState;
class Leadership;
class Planner;
class RateControl;
class Scheduler;

class DriverProbe {
 public:
  // The arguments must outlive the probe.
  [[nodiscard]] static Result<std::unique_ptr<DriverProbe>> Create(metrics::Registry* registry,
                                                                   Leadership* leadership, ClusterState* state);
  ~DriverProbe();
  DriverProbe(const DriverProbe&) = delete;
  DriverProbe& operator=(const DriverProbe&) = delete;
  void Collect();

 private:
  DriverProbe(metrics::Registry* registry, Leadership* leadership, ClusterState* state)
      : registry_(registry), leadership_(leadership), state_(state) {}
  metrics::Registry* const registry_;
  Leadership* const leadership_;
  ClusterState* const state_;
  int collector_ = 0;
  metrics::Gauge* is_leader_ = nullptr;
  metrics::Gauge* serving_ = nullptr;
  metrics::Gauge* epoch_ = nullptr;
  metrics::Gauge* jobs_ = nullptr;
};

class JobProbe {
 public:
  // The arguments must outlive the probe. `leadership` null: always serving
  // (tests).
  [[nodiscard]] static Result<std::unique_ptr<JobProbe>> Create(metrics::Registry* registry, Leadership* leadership,
                                                                ClusterState* state, RateControl* rates);
  ~JobProbe();
  JobProbe(const JobProbe&) = delete;
  JobProbe& operator=(const JobProbe&) = delete;

  // The planner appended and committed BatchPlanned(batch_id) of `job_id`
  // in the term of `epoch`.
  void BatchPlanned(const std::string& job_id, int64_t batch_id, int64_t epoch);
  // The scheduler appended and committed `done`, of `batch`, in the term of
  // `epoch`.
  void BatchCommitted(const proto::BatchPlanned& batch, const proto::BatchCommitted& done, int64_t epoch);
  // This leader completed a move of one of `job_id`'s reduce partitions
  // (the WAL names the new holder in its slot).
  void PartitionMoved(const std::string& job_id);
  // Whether `done` counts as a re-run for a leader that planned `batch`
  // itself or not (`inherited`): pure, for tests.
  static bool IsRerun(const proto::BatchPlanned& batch, const proto::BatchCommitted& done, bool inherited);
  // Sets the gauges and mirrored counters from the state now, or drops every
  // job's series if this driver does not serve.
  void Collect();

 private:
  JobProbe(metrics::Registry* registry, Leadership* leadership, ClusterState* state, RateControl* rates)
      : registry_(registry), leadership_(leadership), state_(state), rates_(rates) {}
  bool Serving() const;
  void DropLocked(const std::string& job_id);

  metrics::Registry* const registry_;
  Leadership* const leadership_;
  ClusterState* const state_;
  RateControl* const rates_;
  int collector_ = 0;

  metrics::Family<metrics::Gauge>* input_rate_ = nullptr;
  metrics::Family<metrics::Gauge>* rate_limit_ = nullptr;
  metrics::Family<metrics::Gauge>* running_ = nullptr;
  metrics::Family<metrics::Gauge>* in_flight_ = nullptr;
  metrics::Family<metrics::Gauge>* state_keys_ = nullptr;
  metrics::Family<metrics::Gauge>* state_bytes_ = nullptr;
  metrics::Family<metrics::Gauge>* last_batch_time_ = nullptr;
  metrics::Family<metrics::Counter>* input_ = nullptr;
  metrics::Family<metrics::Counter>* output_ = nullptr;
  metrics::Family<metrics::Counter>* dead_letters_ = nullptr;
  metrics::Family<metrics::Counter>* late_events_ = nullptr;
  metrics::Family<metrics::Counter>* planned_ = nullptr;
  metrics::Family<metrics::Counter>* committed_ = nullptr;
  metrics::Family<metrics::Counter>* rerun_ = nullptr;
  metrics::Family<metrics::Counter>* shuffle_bytes_ = nullptr;
  metrics::Family<metrics::Counter>* blocks_fetched_ = nullptr;
  metrics::Family<metrics::Counter>* blocks_recomputed_ = nullptr;
  metrics::Family<metrics::Counter>* task_attempts_ = nullptr;
  metrics::Family<metrics::Counter>* moves_ = nullptr;
  metrics::Family<metrics::Histogram>* scheduling_delay_ = nullptr;
  metrics::Family<metrics::Histogram>* processing_ = nullptr;
  metrics::Family<metrics::Histogram>* total_delay_ = nullptr;

  struct PlannedTerm {
    int64_t epoch = 0;
    int64_t first_batch = 0;  // the first batch this driver planned in that term
  };
  std::mutex mu_;
  std::map<std::string, PlannedTerm> planned_terms_;  // by job; guarded by mu_
  std::set<std::string> exported_;                    // jobs with series now; guarded by mu_
  std::map<std::string, int64_t> submitted_;          // each job's submit time at the last scrape; mu_
};

}  // namespace sluice::driver

namespace sluice::driver {

// Every probe of one driver, made as its parts are: Create (the gRPC
// server's, before the server starts), then the others once their subjects
// exist. Destroyed before those subjects (Driver::Stop).
struct DriverProbes {
  [[nodiscard]] static Result<std::unique_ptr<DriverProbes>> Create(metrics::Registry* registry);
  ~DriverProbes();
  // The leader's parts: the role and job probes, hooked into the planner and
  // the scheduler.
  [[nodiscard]] Status AttachLeader(Leadership* leadership, ClusterState* state, RateControl* rates, Planner* planner,
                                    Scheduler* scheduler);

  metrics::Registry* registry = nullptr;
  std::unique_ptr<rpc::RpcProbe> rpc;
  std::unique_ptr<wal::WalProbe> wal;
  std::unique_ptr<coord::SessionProbe> session;
  std::unique_ptr<DriverProbe> driver;
  std::unique_ptr<JobProbe> jobs;
  std::unique_ptr<SourceProbe> sources;
};

}  // namespace sluice::driver
