// AssignPartitions: which live worker reads which source partition.
//
// Module sluice::driver owns it; the leader runs it whenever the set of
// partitions or of live workers changes (docs/data-path.md). The result is
//   balanced: worker counts differ by at most one;
//   sticky:   a partition stays on its current worker unless that worker died
//             or holds more than its share — so a joining worker takes only
//             its share, and a dead worker's partitions are the only ones
//             handed out;
//   deterministic: the same inputs give the same map.
//
// A pure function: thread-safe.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sluice::driver {

struct PartitionId {
  std::string source;
  int32_t partition = 0;
  auto operator<=>(const PartitionId&) const = default;
};

// Empty if there is no worker.
std::map<PartitionId, std::string> AssignPartitions(
    const std::vector<PartitionId>& partitions, const std::vector<std::string>& workers,
    const std::map<PartitionId, std::string>& current);

}  // namespace sluice::driver
