#include "lib/common/version.h"

#include <algorithm>

#include "fmt/format.h"

#ifndef SLUICE_PROJECT_VERSION
#error "SLUICE_PROJECT_VERSION is set by lib/common/CMakeLists.txt"
#endif
#ifndef SLUICE_VERSION_BUMP
#define SLUICE_VERSION_BUMP 0
#endif

namespace sluice {

#if SLUICE_VERSION_BUMP
const char kVersion[] = SLUICE_PROJECT_VERSION "+next";
#else
const char kVersion[] = SLUICE_PROJECT_VERSION;
#endif

namespace version {

// Raise one of these when its format's meaning changes, and add its golden
// files under test/golden/v<N>/ (docs/upgrade.md, "When a format changes").
// 2: the job lifecycle's and the data-loss policy's records and state
// (drain, restart, update, delete, savepoints, lost ranges). A format-1
// build would skip those records and diverge; it refuses format 2.
const int kWalFormat = 2 + SLUICE_VERSION_BUMP;
const int kClusterStateFormat = 2 + SLUICE_VERSION_BUMP;
// State store 2: m/ says each partition's layout (in memory, or one RocksDB
// key per entry under --state-memory-mb) and its generation; a format-1
// build would take a disk partition for an empty one, so it refuses 2.
const int kStateStoreFormat = 2 + SLUICE_VERSION_BUMP;
const int kBlockLogFormat = 1 + SLUICE_VERSION_BUMP;
const int kProtocol = 1 + SLUICE_VERSION_BUMP;

Status CheckReadable(std::string_view what, int found, int current) {
  const int oldest = std::max(1, current - 1);
  if (found >= oldest && found <= current) return absl::OkStatus();
  std::string reads = oldest == current ? fmt::format("format {} only", current)
                                        : fmt::format("formats {} to {}", oldest, current);
  return absl::FailedPreconditionError(
      fmt::format("{} has format {}; this build ({}) reads {}", what, found, kVersion, reads));
}

int ParseFormat(std::string_view text) {
  if (text.empty() || text.size() > 6) return -1;
  int n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  return n;
}

Status CheckPeerProtocol(std::string_view who, int peer) {
  if (peer >= kProtocol - 1 && peer <= kProtocol + 1) return absl::OkStatus();
  return absl::FailedPreconditionError(
      fmt::format("{} speaks protocol {}; this build ({}) speaks protocol {} and talks to {} to {}", who, peer,
                  kVersion, kProtocol, std::max(1, kProtocol - 1), kProtocol + 1));
}

}  // namespace version
}  // namespace sluice
