// Logging setup for the Sluice binaries (spdlog).
//
// Module sluice::common owns it. Every process logs to stderr (journald picks it
// up under systemd) in one format: time, level, program, message. Code logs with
// spdlog::info/warn/error directly after InitLogging() has run.
#pragma once

#include <string>
#include <string_view>

#include "lib/common/status.h"

namespace sluice {

// Installs the default logger for `program` at `level` (trace, debug, info,
// warn, error, critical, off). INVALID_ARGUMENT on an unknown level.
[[nodiscard]] Status InitLogging(std::string_view program, std::string_view level);

// The accepted level names, for --help and validation.
inline constexpr const char* kLogLevels = "trace|debug|info|warn|error|critical|off";

}  // namespace sluice
