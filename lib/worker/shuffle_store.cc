#include "lib/worker/shuffle_store.h"

#include <limits>

namespace sluice::worker {

void ShuffleStore::Put(const std::string& job, int64_t batch, int32_t map_task, int32_t partition, std::string rows) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string& slot = rows_[{job, batch, map_task, partition}];
  bytes_ += static_cast<int64_t>(rows.size()) - static_cast<int64_t>(slot.size());
  slot = std::move(rows);
}

std::optional<std::string> ShuffleStore::Get(const std::string& job, int64_t batch, int32_t map_task,
                                             int32_t partition) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = rows_.find({job, batch, map_task, partition});
  if (it == rows_.end()) return std::nullopt;
  return it->second;
}

void ShuffleStore::DropThrough(const std::string& job, int64_t batch) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = rows_.lower_bound({job, std::numeric_limits<int64_t>::min(), std::numeric_limits<int32_t>::min(),
                                std::numeric_limits<int32_t>::min()});
  while (it != rows_.end() && std::get<0>(it->first) == job && std::get<1>(it->first) <= batch) {
    bytes_ -= static_cast<int64_t>(it->second.size());
    it = rows_.erase(it);
  }
}

int64_t ShuffleStore::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

}  // namespace sluice::worker
