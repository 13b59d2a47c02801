#include "lib/common/status.h"

namespace sluice {

Status Annotate(const Status& s, std::string_view context) {
  if (s.ok()) return s;
  return Status(s.code(), fmt::format("{}: {}", context, std::string(s.message())));
}

}  // namespace sluice
