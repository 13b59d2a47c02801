// Membership: the live members of one group, workers or drivers.
//
// Module sluice::coord owns it. A member registers itself (Join) and stays a
// member while its process lives and reaches the coordinator; it re-registers
// by itself after a session expiry. Anyone can list and watch the group.
//
// Thread-safe. Watch callbacks run on the coordinator's thread.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "lib/common/status.h"
#include "proto/common.pb.h"

namespace sluice::coord {

enum class Group { kWorkers, kDrivers };

// "workers" / "drivers": the group's folder under the cluster root.
const char* GroupName(Group group);

class Membership {
 public:
  using Listener = std::function<void(const std::vector<proto::MemberInfo>&)>;

  virtual ~Membership() = default;

  // Registers `self` (its id must be unique in the group). If a registration
  // of the same id from an earlier, dead process is still there, waits for it
  // to expire. ALREADY_EXISTS if a live process holds the id past that.
  [[nodiscard]] virtual Status Join(const proto::MemberInfo& self) = 0;
  // Unregisters at once.
  virtual void Leave() = 0;
  // The live members now, sorted by id.
  [[nodiscard]] virtual Result<std::vector<proto::MemberInfo>> Members() = 0;
  // Calls `listener` with the members now and after every change.
  virtual void Watch(Listener listener) = 0;
};

}  // namespace sluice::coord
