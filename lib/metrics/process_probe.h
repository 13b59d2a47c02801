// ProcessProbe: the metrics every Sluice process exports about itself —
// resident and virtual memory, CPU time, threads, open file descriptors,
// start time and the build's version — read from /proc/self at each scrape.
//
// Module sluice::metrics owns it; each daemon makes one on its registry.
// Thread-safe (the registry's collector runs it).
#pragma once

#include <string>

#include "lib/common/status.h"
#include "lib/metrics/metrics.h"

namespace sluice::metrics {

class ProcessProbe {
 public:
  // `kind`: "driver" or "worker", the `kind` label of sluice_build_info.
  static Result<std::unique_ptr<ProcessProbe>> Create(Registry* registry, const std::string& kind,
                                                      const std::string& version);
  ~ProcessProbe();
  ProcessProbe(const ProcessProbe&) = delete;
  ProcessProbe& operator=(const ProcessProbe&) = delete;

  // Reads /proc/self now (the collector calls it; tests may too).
  void Collect();

 private:
  explicit ProcessProbe(Registry* registry) : registry_(registry) {}

  Registry* registry_;
  int collector_ = 0;
  Gauge* resident_ = nullptr;
  Gauge* virtual_ = nullptr;
  Counter* cpu_ = nullptr;
  Gauge* threads_ = nullptr;
  Gauge* open_fds_ = nullptr;
  Gauge* start_time_ = nullptr;
};

}  // namespace sluice::metrics
