// CheckUpdate: whether a running or stopped job may take a new spec in
// place (sluicectl update), and what it keeps (docs/jobs.md "Updating a
// job").
//
// Module sluice::driver owns it; JobRegistry::Update calls it. The rules:
//   - the name and the sources (names, in order) stay: positions are kept
//     per source partition;
//   - everything before key_by, the sink and the job's settings may change;
//   - a keyed job keeps its state only if its keyed part is the same: the
//     key fields, the aggregate / window / update_state (functions, fields,
//     window type and sizes, event-time field, lateness, timeout, plugin and
//     its config), and for a window over batch time the batch interval
//     (windows are counted in batches). Anything else needs
//     reset_state: the state starts empty at the first batch after the
//     update. A job without key_by has no state ("none"); a key_by without a
//     stateful operator keeps nothing across batches either;
//   - reduce_partitions may change on its own (a rescale): the state is
//     kept, re-split into the new count (lib/driver/rescale.h).
//
// Pure; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "lib/common/status.h"
#include "proto/job.pb.h"

namespace sluice::driver {

struct UpdateCheck {
  std::string state;                 // "kept", "reset" or "none"
  std::vector<std::string> changes;  // what differs, one line each ("sink: file -> kafka")
};

// FAILED_PRECONDITION naming what cannot change, or the state a keyed change
// cannot keep (with "use --reset-state"); INVALID_ARGUMENT when nothing
// changed.
[[nodiscard]] Result<UpdateCheck> CheckUpdate(const proto::JobSpec& current, const proto::JobSpec& next,
                                              bool reset_state);

}  // namespace sluice::driver
