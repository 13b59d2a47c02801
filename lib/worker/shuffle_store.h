// ShuffleStore: the map outputs a reduce worker has received (PushShuffle),
// until its reduce tasks have used them (docs/state.md "Shuffle transport").
//
// Module sluice::worker owns it. Keyed by (job, batch, map task, reduce
// partition); a map task that runs again replaces its own output (the same
// bytes: the combiner's output does not depend on the order of its input).
// In memory only: a reduce worker that dies loses them and the leader re-runs
// the batch's map tasks, whose input blocks are held until the batch commits.
// Outputs no reduce task here will use (a stopped job, a partition that moved,
// a late push of an old attempt) go after kMaxAge.
//
// Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>

namespace sluice::worker {

class ShuffleStore {
 public:
  void Put(const std::string& job, int64_t batch, int32_t map_task, int32_t partition, std::string rows);
  std::optional<std::string> Get(const std::string& job, int64_t batch, int32_t map_task, int32_t partition) const;
  // Drops the job's outputs of batches <= `batch`.
  void DropThrough(const std::string& job, int64_t batch);
  int64_t bytes() const;

  static constexpr std::chrono::minutes kMaxAge{10};

 private:
  using Key = std::tuple<std::string, int64_t, int32_t, int32_t>;
  struct Rows {
    std::string data;
    std::chrono::steady_clock::time_point put;
  };
  void DropOldLocked(std::chrono::steady_clock::time_point now);

  mutable std::mutex mu_;
  std::map<Key, Rows> rows_;  // guarded by mu_
  std::chrono::steady_clock::time_point last_sweep_;  // guarded by mu_
  int64_t bytes_ = 0;                // guarded by mu_
};

}  // namespace sluice::worker
