// Logging setup for the Sluice binaries (spdlog).
//
// Module sluice::common owns it. Every process logs to stderr (journald picks it
// up under systemd) in one format: time, level, program, message. Code logs with
// spdlog::info/warn/error directly after InitLogging() has run.
//
// A line that may come once per block or per record (a worker that keeps
// failing to give blocks, a refused report) is logged with SLUICE_LOG_EVERY:
// at most one line per interval from that call site, the next one saying how
// many were dropped meanwhile ("(N similar suppressed)"). LogRateLimiter is
// thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "spdlog/spdlog.h"

namespace sluice {

// Installs the default logger for `program` at `level` (trace, debug, info,
// warn, error, critical, off). INVALID_ARGUMENT on an unknown level.
[[nodiscard]] Status InitLogging(std::string_view program, std::string_view level);

// The accepted level names, for --help and validation.
inline constexpr const char* kLogLevels = "trace|debug|info|warn|error|critical|off";

// One call site's budget: the first line passes, then at most one per
// `interval`; the lines refused in between are counted and handed to the next
// line that passes.
class LogRateLimiter {
 public:
  explicit LogRateLimiter(std::chrono::milliseconds interval) : interval_(interval) {}

  // Whether a line may be logged at `now`; if so, *suppressed is how many
  // were refused since the last one that passed.
  bool Allow(Clock::TimePoint now, int64_t* suppressed);

 private:
  const std::chrono::milliseconds interval_;
  std::mutex mu_;
  bool logged_ = false;     // guarded by mu_
  Clock::TimePoint last_;   // guarded by mu_
  int64_t suppressed_ = 0;  // guarded by mu_
};

// `message` with " (N similar suppressed)" appended when N > 0.
std::string WithSuppressed(std::string message, int64_t suppressed);

}  // namespace sluice

// Logs at `level` (spdlog::level::warn, ...) at most once per `interval`
// (a std::chrono duration) from this call site, as spdlog would with the
// format and arguments that follow; the dropped lines are counted in the
// next one. The limit is per site, not per argument value.
#define SLUICE_LOG_EVERY(interval, level, ...)                                                              \
  do {                                                                                                      \
    static ::sluice::LogRateLimiter sluice_log_limiter_(                                                    \
        std::chrono::duration_cast<std::chrono::milliseconds>(interval));                                   \
    int64_t sluice_log_suppressed_ = 0;                                                                     \
    if (spdlog::should_log(level) &&                                                                        \
        sluice_log_limiter_.Allow(::sluice::Clock::Real()->Now(), &sluice_log_suppressed_)) {               \
      spdlog::log(level, "{}", ::sluice::WithSuppressed(fmt::format(__VA_ARGS__), sluice_log_suppressed_)); \
    }                                                                                                       \
  } while (0)
