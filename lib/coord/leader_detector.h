// LeaderDetector: who leads the driver group now, with change notifications.
//
// Module sluice::coord owns it. Workers use it to follow the leader, and
// sluicectl to find it. The leader it reports is the lowest election
// candidate; its epoch is 0 until that candidate has bumped the epoch.
//
// Thread-safe. Watch callbacks run on the coordinator's thread.
#pragma once

#include <functional>
#include <optional>

#include "lib/common/status.h"
#include "proto/common.pb.h"

namespace sluice::coord {

class LeaderDetector {
 public:
  using Listener = std::function<void(const std::optional<proto::LeaderInfo>&)>;

  virtual ~LeaderDetector() = default;

  // The leader now, or nullopt if there is none. UNAVAILABLE if the
  // coordinator cannot be reached.
  [[nodiscard]] virtual Result<std::optional<proto::LeaderInfo>> Current() = 0;
  // Calls `listener` with the leader now and at every change, until the
  // detector is destroyed.
  virtual void Watch(Listener listener) = 0;
};

}  // namespace sluice::coord
