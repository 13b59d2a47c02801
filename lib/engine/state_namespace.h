// The namespace a keyed job's state lives under on the workers, for one
// state layout: the job key of StateStore, of ReduceState's locks and of the
// FetchState/ReplicateState/ResplitState streams (docs/state.md "Rescaling").
//
// Module sluice::engine. Layout 0 is the job id itself, so state written
// before rescaling existed stays valid; layout L > 0 is job id, '\x1f'
// (a byte no job name holds), then L in decimal. Each rescale of a stateful
// job starts a new layout; the old one is dropped once the new one commits.
// Pure; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::engine {

std::string StateNamespace(std::string_view job_id, int64_t layout);

struct ParsedStateNamespace {
  std::string job_id;
  int64_t layout = 0;
};

// The inverse of StateNamespace; a string without a well-formed layout
// suffix is a job id at layout 0.
ParsedStateNamespace ParseStateNamespace(std::string_view ns);

}  // namespace sluice::engine
