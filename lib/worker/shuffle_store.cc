#include "lib/worker/shuffle_store.h"

#include <limits>

namespace sluice::worker {

void ShuffleStore::Put(const std::string& job, int64_t batch, int32_t map_task, int32_t partition, std::string rows) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  DropOldLocked(now);
  Rows& slot = rows_[{job, batch, map_task, partition}];
  bytes_ += static_cast<int64_t>(rows.size()) - static_cast<int64_t>(slot.data.size());
  slot.data = std::move(rows);
  slot.put = now;
}

void ShuffleStore::DropOldLocked(std::chrono::steady_clock::time_point now) {
  if (now - last_sweep_ < std::chrono::seconds(10)) return;
  last_sweep_ = now;
  for (auto it = rows_.begin(); it != rows_.end();) {
    if (now - it->second.put > kMaxAge) {
      bytes_ -= static_cast<int64_t>(it->second.data.size());
      it = rows_.erase(it);
    } else {
      ++it;
    }
  }
}

std::optional<std::string> ShuffleStore::Get(const std::string& job, int64_t batch, int32_t map_task,
                                             int32_t partition) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = rows_.find({job, batch, map_task, partition});
  if (it == rows_.end()) return std::nullopt;
  return it->second.data;
}

void ShuffleStore::DropThrough(const std::string& job, int64_t batch) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = rows_.lower_bound({job, std::numeric_limits<int64_t>::min(), std::numeric_limits<int32_t>::min(),
                                std::numeric_limits<int32_t>::min()});
  while (it != rows_.end() && std::get<0>(it->first) == job && std::get<1>(it->first) <= batch) {
    bytes_ -= static_cast<int64_t>(it->second.data.size());
    it = rows_.erase(it);
  }
}

int64_t ShuffleStore::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

}  // namespace sluice::worker
