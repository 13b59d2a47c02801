// SourceProbe: the leader's metrics of its sources — offsets each partition
// lost (sluice_source_lost_offsets_total{source,partition}: ranges skipped
// under on_data_loss: skip or by sluicectl source reset), raised at each
// scrape to the total the replicated log keeps (PartitionState.lost_offsets),
// so the counter goes on across a failover. Exported by the serving leader
// only, like the job metrics.
//
// Module sluice::driver owns it; DriverProbes makes it. Thread-safe.
#pragma once

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "lib/common/status.h"
#include "lib/metrics/metrics.h"

namespace sluice::driver {

class ClusterState;
class Leadership;

class SourceProbe {
 public:
  // The arguments must outlive the probe; `leadership` null: always serving.
  [[nodiscard]] static Result<std::unique_ptr<SourceProbe>> Create(metrics::Registry* registry,
                                                                   Leadership* leadership, ClusterState* state);
  ~SourceProbe();
  SourceProbe(const SourceProbe&) = delete;
  SourceProbe& operator=(const SourceProbe&) = delete;
  void Collect();

 private:
  SourceProbe(metrics::Registry* registry, Leadership* leadership, ClusterState* state)
      : registry_(registry), leadership_(leadership), state_(state) {}
  metrics::Registry* const registry_;
  Leadership* const leadership_;
  ClusterState* const state_;
  int collector_ = 0;
  metrics::Family<metrics::Counter>* lost_offsets_ = nullptr;
  std::mutex mu_;
  std::set<std::pair<std::string, int32_t>> exported_;  // guarded by mu_
};

}  // namespace sluice::driver
