// Which reduce partition a keyed job's state entry belongs to, given the
// number of reduce partitions: what a rescale uses to re-split a job's state
// (docs/state.md "Rescaling").
//
// Module sluice::engine. Every stateful mode keys its state so that the
// entry of a key lies in the partition the map side sends that key's rows to
// (keyed.h): windows by the whole row key (window start + user key), sessions,
// running aggregates and plugins by the user key, which is their state key.
// So one rule serves them all.
//
// The deadline index (deadline_index.h: its entries and its marker, every
// key for which IsStateIndexKey is true) is not split: a re-split drops it,
// writing none of it into any new partition, and the first batch on each
// new partition builds that partition's index with one scan of its state
// (keyed.h). The marker counts its own partition's index, so no copy of it
// would be right elsewhere; a partition that got entries but no marker has
// them erased by that build.
#pragma once

#include <cstdint>
#include <string_view>

namespace sluice::engine {

// The partition among `reduce_partitions` (>= 1) that holds `state_key`. For
// an index entry, the partition of the user key it indexes (its tail); for
// the marker, a partition of no meaning (a re-split drops both).
uint32_t StatePartitionOf(std::string_view state_key, uint32_t reduce_partitions);

// An entry of the deadline index or its marker: a re-split must not copy it.
bool IsStateIndexKey(std::string_view state_key);

}  // namespace sluice::engine
