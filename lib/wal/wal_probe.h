// WalProbe: the replicated log's metrics — how long an append takes to
// commit on a quorum, records appended, the log's positions, whether its
// store takes writes, and while leading each standby's replication lag.
//
// Module sluice::wal owns it; the driver makes one on its registry for its
// log. Appends update atomics; the rest is read from ReplicatedLog::Stats()
// at each scrape (a collector).
//
// Thread-safe.
#pragma once

#include <memory>
#include <set>
#include <string>

#include "lib/common/status.h"
#include "lib/metrics/metrics.h"

namespace sluice::wal {

class ReplicatedLog;

class WalProbe {
 public:
  // Registers the series and attaches itself to `log`, which must outlive
  // the probe (or be detached first: the destructor detaches).
  [[nodiscard]] static Result<std::unique_ptr<WalProbe>> Create(metrics::Registry* registry, ReplicatedLog* log);
  ~WalProbe();
  WalProbe(const WalProbe&) = delete;
  WalProbe& operator=(const WalProbe&) = delete;

  // `records` appended by one call that committed after `seconds`.
  void Committed(int64_t records, double seconds);
  // Reads the log's stats now (the collector calls it; tests may too).
  void Collect();

 private:
  WalProbe(metrics::Registry* registry, ReplicatedLog* log) : registry_(registry), log_(log) {}

  metrics::Registry* const registry_;
  ReplicatedLog* const log_;
  int collector_ = 0;
  metrics::Histogram* commit_seconds_ = nullptr;
  metrics::Counter* appended_ = nullptr;
  metrics::Gauge* last_seq_ = nullptr;
  metrics::Gauge* commit_seq_ = nullptr;
  metrics::Gauge* serving_ = nullptr;
  metrics::Gauge* degraded_ = nullptr;
  metrics::Family<metrics::Gauge>* peer_lag_ = nullptr;
  std::set<std::string> peers_;  // with a lag series now; the collector's only
};

// Buckets for a quorum commit: 0.5 ms to 10 s.
std::vector<double> CommitBuckets();

}  // namespace sluice::wal
