// Which reduce partition a keyed job's state entry belongs to, given the
// number of reduce partitions: what a rescale uses to re-split a job's state
// (docs/state.md "Rescaling").
//
// Module sluice::engine. Every stateful mode keys its state so that the
// entry of a key lies in the partition the map side sends that key's rows to
// (keyed.h): windows by the whole row key (window start + user key), sessions,
// running aggregates and plugins by the user key, which is their state key.
// So one rule serves them all; entries that are not a key's own (an index
// kept beside the state) must map to their key's partition here too.
#pragma once

#include <cstdint>
#include <string_view>

namespace sluice::engine {

// The partition among `reduce_partitions` (>= 1) that holds `state_key`.
uint32_t StatePartitionOf(std::string_view state_key, uint32_t reduce_partitions);

}  // namespace sluice::engine
