#include "lib/common/status.h"

namespace sluice {

Status Annotate(const Status &s, std::string_view context) {
  if (s.ok())
    return s;
  Status annotated(s.code(),
                   fmt::format("{}: {}", context, std::string(s.message())));
  // Payloads (e.g. the peers a call could not reach, lib/rpc) go along.
  s.ForEachPayload([&](absl::string_view type_url, const absl::Cord &payload) {
    annotated.SetPayload(type_url, payload);
  });
  return annotated;
}

} // namespace sluice
