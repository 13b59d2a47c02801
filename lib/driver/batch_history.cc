#include "lib/driver/batch_history.h"

#include <algorithm>
#include <limits>

namespace sluice::driver {
namespace {

int32_t Clamp32(int64_t v) {
  return static_cast<int32_t>(
      std::clamp<int64_t>(v, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()));
}

}  // namespace

BatchPoint ToPoint(const proto::BatchSummary& s) {
  return BatchPoint{.batch_id = s.batch_id(),
                    .batch_time_unix_ms = s.batch_time_unix_ms(),
                    .input_count = s.input_count(),
                    .output_count = s.output_count(),
                    .scheduling_delay_ms = Clamp32(s.scheduling_delay_ms()),
                    .processing_ms = Clamp32(s.processing_ms()),
                    .total_delay_ms = Clamp32(s.total_delay_ms()),
                    .dead_letters = Clamp32(s.dead_letters()),
                    .task_attempts = s.task_attempts(),
                    .blocks_fetched = Clamp32(s.blocks_fetched()),
                    .blocks_recomputed = Clamp32(s.blocks_recomputed())};
}

BatchHistory::BatchHistory(BatchHistoryOptions options) : options_(options) {}

int BatchHistory::CapLocked() const {
  const int64_t jobs = std::max<int64_t>(1, static_cast<int64_t>(jobs_.size()));
  const int64_t share = options_.global / jobs;
  return static_cast<int>(std::max<int64_t>(options_.min_per_job, std::min<int64_t>(options_.per_job, share)));
}

void BatchHistory::TrimLocked(std::deque<BatchPoint>& points, int cap) {
  while (static_cast<int>(points.size()) > cap) {
    points.pop_front();
    --size_;
  }
}

void BatchHistory::Add(const std::string& job_id, const proto::BatchSummary& summary) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, added] = jobs_.try_emplace(job_id);
  std::deque<BatchPoint>& points = it->second;
  if (!points.empty() && points.back().batch_id >= summary.batch_id()) return;
  points.push_back(ToPoint(summary));
  ++size_;
  const int cap = CapLocked();
  if (added) {
    // One more job lowers every job's share: trim them all now, so the
    // global bound holds even for jobs that commit no more (stopped).
    for (auto& [id, other] : jobs_) TrimLocked(other, cap);
  } else {
    TrimLocked(points, cap);
  }
}

void BatchHistory::Remove(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  size_ -= static_cast<int64_t>(it->second.size());
  jobs_.erase(it);
}

void BatchHistory::Reset(const proto::ClusterState& state) {
  std::lock_guard<std::mutex> lock(mu_);
  jobs_.clear();
  size_ = 0;
  for (const auto& [id, job] : state.jobs()) {
    std::deque<BatchPoint>& points = jobs_[id];
    for (const proto::BatchSummary& s : job.recent_batches()) {
      if (!points.empty() && points.back().batch_id >= s.batch_id()) continue;
      points.push_back(ToPoint(s));
      ++size_;
    }
  }
  const int cap = CapLocked();
  for (auto& [id, points] : jobs_) TrimLocked(points, cap);
}

BatchHistory::Slice BatchHistory::Since(const std::string& job_id, int64_t since_batch, int limit) const {
  Slice out;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end() || it->second.empty()) return out;
  const std::deque<BatchPoint>& points = it->second;
  out.oldest_kept = points.front().batch_id;
  out.newest = points.back().batch_id;
  auto from = std::upper_bound(points.begin(), points.end(), since_batch,
                               [](int64_t id, const BatchPoint& p) { return id < p.batch_id; });
  // Batches after `since` that are no longer held: the client missed some.
  out.truncated = since_batch < out.oldest_kept - 1 && from != points.end();  // no overflow at INT64_MAX
  const int64_t n = points.end() - from;
  if (limit >= 0 && n > limit) {
    from = points.end() - limit;
    out.truncated = true;
  }
  out.points.assign(from, points.end());
  return out;
}

std::vector<BatchPoint> BatchHistory::Last(const std::string& job_id, int n) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return {};
  const std::deque<BatchPoint>& points = it->second;
  const size_t take = std::min<size_t>(points.size(), static_cast<size_t>(std::max(0, n)));
  return std::vector<BatchPoint>(points.end() - take, points.end());
}

int64_t BatchHistory::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return size_;
}

int BatchHistory::jobs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(jobs_.size());
}

size_t BatchHistory::MemoryBytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  // A deque holds its points in 512-byte blocks plus a map of them; a map
  // node holds the id and the deque.
  size_t bytes = 0;
  for (const auto& [id, points] : jobs_) {
    const size_t per_block = std::max<size_t>(1, 512 / sizeof(BatchPoint));
    const size_t blocks = points.size() / per_block + 1;
    bytes += blocks * 512 + blocks * sizeof(void*) + sizeof(std::deque<BatchPoint>) + 64 + id.capacity();
  }
  return bytes;
}

}  // namespace sluice::driver
