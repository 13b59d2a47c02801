#include "lib/driver/assignment.h"

#include <algorithm>
#include <set>

namespace sluice::driver {

std::map<PartitionId, std::string> AssignPartitions(const std::vector<PartitionId>& partitions_in,
                                                    const std::vector<std::string>& workers_in,
                                                    const std::map<PartitionId, std::string>& current) {
  std::map<PartitionId, std::string> out;
  if (workers_in.empty()) return out;
  std::vector<PartitionId> partitions = partitions_in;
  std::sort(partitions.begin(), partitions.end());
  partitions.erase(std::unique(partitions.begin(), partitions.end()), partitions.end());
  std::vector<std::string> workers = workers_in;
  std::sort(workers.begin(), workers.end());
  workers.erase(std::unique(workers.begin(), workers.end()), workers.end());
  const std::set<std::string> live(workers.begin(), workers.end());

  const size_t base = partitions.size() / workers.size();
  size_t extra = partitions.size() % workers.size();  // workers that may hold base + 1
  std::map<std::string, size_t> count;
  for (const std::string& w : workers) count[w] = 0;

  // 1. Keep each partition on its live worker, up to `base` per worker.
  std::vector<const PartitionId*> pending;
  for (const PartitionId& p : partitions) {
    auto it = current.find(p);
    if (it != current.end() && live.contains(it->second) && count[it->second] < base) {
      out[p] = it->second;
      ++count[it->second];
    } else {
      pending.push_back(&p);
    }
  }
  // 2. Then one more on a worker already at `base`, while extras remain.
  std::vector<const PartitionId*> unassigned;
  for (const PartitionId* p : pending) {
    auto it = current.find(*p);
    if (it != current.end() && live.contains(it->second) && count[it->second] == base && extra > 0) {
      out[*p] = it->second;
      ++count[it->second];
      --extra;
    } else {
      unassigned.push_back(p);
    }
  }
  // 3. The rest go to the least loaded workers (ties by id), within quota.
  for (const PartitionId* p : unassigned) {
    const std::string* best = nullptr;
    for (const std::string& w : workers) {
      const size_t c = count[w];
      const bool fits = c < base || (c == base && extra > 0);
      if (fits && (best == nullptr || c < count[*best])) best = &w;
    }
    if (count[*best] == base) --extra;
    out[*p] = *best;
    ++count[*best];
  }
  return out;
}

}  // namespace sluice::driver
