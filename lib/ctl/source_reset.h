// How sluicectl prints a range of offsets a source lost (`sources`,
// `describe`); `source reset` itself is Ctl::RunSourceReset
// (docs/data-path.md "When the source loses data").
//
// Module sluice::ctl owns it. Thread-compatible.
#pragma once

#include <string>

#include "proto/driver_log.pb.h"

namespace sluice::ctl {

// One line: "lost offsets 100..199 (100) at 2026-12-01T10:00:00Z by reset: why".
std::string LostLine(const proto::SourceDataLost& lost);

}  // namespace sluice::ctl
