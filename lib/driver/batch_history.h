// BatchHistory: the committed batches of every job, the last few thousand
// each, in memory, for the status page's charts and tables.
//
// Module sluice::driver owns it; ClusterState feeds it as it applies each
// BatchCommitted (so standbys hold it too) and seeds it from a snapshot's
// JobState.recent_batches on Restore. It is not replicated state: a restart
// starts again from the snapshot's last batches plus the records after it.
//
// Bounds: at most `per_job` batches per job, and about `global` over all
// jobs: each job keeps max(min_per_job, min(per_job, global / jobs)), the
// oldest batches going first. Since() finds a batch by id in O(log n).
//
// Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "proto/driver_log.pb.h"

namespace sluice::driver {

// One committed batch, as compact as the charts need it.
struct BatchPoint {
  int64_t batch_id = 0;
  int64_t batch_time_unix_ms = 0;
  int64_t input_count = 0;
  int64_t output_count = 0;
  int32_t scheduling_delay_ms = 0;
  int32_t processing_ms = 0;
  int32_t total_delay_ms = 0;
  int32_t dead_letters = 0;
  int32_t task_attempts = 0;
  int32_t blocks_fetched = 0;
  int32_t blocks_recomputed = 0;
};

struct BatchHistoryOptions {
  int per_job = 2000;        // 16 min at 500 ms batches
  int64_t global = 200'000;  // 100 jobs at the full per-job bound, ~13 MB
  int min_per_job = 20;      // what ClusterState keeps anyway (recent_batches)
};

class BatchHistory {
 public:
  explicit BatchHistory(BatchHistoryOptions options = {});

  // A committed batch; ids of a job only grow (an older one is ignored).
  void Add(const std::string& job_id, const proto::BatchSummary& summary);
  // Drops everything and starts from each job's recent_batches.
  void Reset(const proto::ClusterState& state);
  // Forgets a job (deleted).
  void Remove(const std::string& job_id);

  struct Slice {
    std::vector<BatchPoint> points;  // oldest first
    int64_t oldest_kept = 0;         // the oldest batch still held (0: none)
    int64_t newest = 0;              // the newest batch held (0: none)
    bool truncated = false;          // batches after `since` were dropped or not sent (limit)
  };
  // The job's batches after `since_batch`, at most `limit` of them: the
  // newest ones (a client far behind gets the recent end and re-anchors).
  Slice Since(const std::string& job_id, int64_t since_batch, int limit) const;
  // The job's last `n` batches.
  std::vector<BatchPoint> Last(const std::string& job_id, int n) const;

  int64_t size() const;        // batches held over all jobs
  int jobs() const;
  size_t MemoryBytes() const;  // an estimate: the points and the per-job overhead
  const BatchHistoryOptions& options() const { return options_; }

 private:
  int CapLocked() const;
  void TrimLocked(std::deque<BatchPoint>& points, int cap);

  const BatchHistoryOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, std::deque<BatchPoint>> jobs_;  // guarded by mu_
  int64_t size_ = 0;                                    // guarded by mu_
};

BatchPoint ToPoint(const proto::BatchSummary& summary);

}  // namespace sluice::driver
