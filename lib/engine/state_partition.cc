#include "lib/engine/state_partition.h"

#include "lib/engine/combiner.h"

namespace sluice::engine {

uint32_t StatePartitionOf(std::string_view state_key, uint32_t reduce_partitions) {
  return PartitionOf(state_key, reduce_partitions);
}

}  // namespace sluice::engine
