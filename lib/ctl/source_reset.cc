#include "lib/ctl/source_reset.h"

#include <ctime>

#include "fmt/format.h"

namespace sluice::ctl {

std::string LostLine(const proto::SourceDataLost& lost) {
  const std::time_t secs = static_cast<std::time_t>(lost.detected_unix_ms() / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char when[32];
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return fmt::format("lost offsets {}..{} ({}) at {}{}: {}", lost.from_offset(), lost.to_offset() - 1,
                     lost.to_offset() - lost.from_offset(), when, lost.by_reset() ? " by reset" : "", lost.reason());
}

}  // namespace sluice::ctl
