#include "lib/common/logging.h"

#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace sluice {

bool LogRateLimiter::Allow(Clock::TimePoint now, int64_t* suppressed) {
  std::lock_guard<std::mutex> lock(mu_);
  if (logged_ && now - last_ < interval_) {
    ++suppressed_;
    return false;
  }
  logged_ = true;
  last_ = now;
  *suppressed = suppressed_;
  suppressed_ = 0;
  return true;
}

std::string WithSuppressed(std::string message, int64_t suppressed) {
  if (suppressed > 0) message += fmt::format(" ({} similar suppressed)", suppressed);
  return message;
}

Status InitLogging(std::string_view program, std::string_view level) {
  spdlog::level::level_enum lvl = spdlog::level::from_str(std::string(level));
  // from_str() maps anything unknown to "off"; only "off" itself may mean it.
  if (lvl == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(
        fmt::format("log-level: unknown level '{}' ({})", level, kLogLevels));
  }
  auto logger = spdlog::stderr_logger_mt(std::string(program) + "-" + std::to_string(::getpid()));
  logger->set_pattern(std::string("%Y-%m-%d %H:%M:%S.%e %L ") + std::string(program) + " %v");
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
  return absl::OkStatus();
}

}  // namespace sluice
