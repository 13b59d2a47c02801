#include "lib/engine/state_partition.h"

#include "lib/engine/combiner.h"
#include "lib/engine/deadline_index.h"

namespace sluice::engine {

uint32_t StatePartitionOf(std::string_view state_key, uint32_t reduce_partitions) {
  int64_t t = 0;
  std::string_view user_key;
  if (ParseDeadlineIndexKey(state_key, &t, &user_key)) return PartitionOf(user_key, reduce_partitions);
  return PartitionOf(state_key, reduce_partitions);
}

bool IsStateIndexKey(std::string_view state_key) { return IsDeadlineIndexKey(state_key); }

}  // namespace sluice::engine
