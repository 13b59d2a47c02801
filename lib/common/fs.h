// Small filesystem and naming helpers shared by the daemons.
//
// Module sluice::common owns them.
#pragma once

#include <string>
#include <string_view>

#include "lib/common/status.h"

namespace sluice {

// Creates `path` (and parents) if missing and checks it is a writable
// directory. FAILED_PRECONDITION naming `what` otherwise.
[[nodiscard]] Status EnsureDirectory(const std::string& path, std::string_view what);

// Ids of drivers, workers and jobs: 1..64 of [A-Za-z0-9_.-], not starting with
// '.' (they become znode and file names). INVALID_ARGUMENT naming `what`.
[[nodiscard]] Status ValidateId(std::string_view id, std::string_view what);

}  // namespace sluice
