// StateProbe: the keyed state a worker holds, per job (`job`): partitions,
// keys and key+value bytes as of each partition's folded batch, whether the
// store takes writes, its RocksDB memory and its disk layout's bytes. Read
// from the StateStore at each scrape.
//
// Module sluice::state owns it; the worker makes one on its registry.
// Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>

#include "lib/common/status.h"
#include "lib/metrics/metrics.h"

namespace sluice::state {

class StateStore;

class StateProbe {
 public:
  // The job a name of the store's belongs to (a rescaled job's state lives
  // under a name per layout: lib/engine/state_namespace.h).
  using JobOf = std::function<std::string(const std::string& name)>;
  // `store` must outlive the probe. `job_of` (optional: the name itself)
  // labels the series, a job's layouts summed under one.
  [[nodiscard]] static Result<std::unique_ptr<StateProbe>> Create(metrics::Registry* registry, StateStore* store,
                                                                  JobOf job_of = nullptr);
  ~StateProbe();
  StateProbe(const StateProbe&) = delete;
  StateProbe& operator=(const StateProbe&) = delete;
  void Collect();

 private:
  StateProbe(metrics::Registry* registry, StateStore* store, JobOf job_of)
      : registry_(registry), store_(store), job_of_(std::move(job_of)) {}
  metrics::Registry* const registry_;
  StateStore* const store_;
  const JobOf job_of_;
  int collector_ = 0;
  metrics::Family<metrics::Gauge>* partitions_ = nullptr;
  metrics::Family<metrics::Gauge>* keys_ = nullptr;
  metrics::Family<metrics::Gauge>* bytes_ = nullptr;
  metrics::Gauge* degraded_ = nullptr;
  metrics::Gauge* memory_ = nullptr;
  metrics::Gauge* disk_ = nullptr;
  std::set<std::string> jobs_;  // with series now; the collector's only
};

}  // namespace sluice::state
