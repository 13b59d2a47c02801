// LeaderElector: one driver's part in the election of the driver group's leader.
//
// Module sluice::coord owns it. Leadership is two events (Mesos' contender):
// "you lead, with epoch E" and "you no longer lead". Each term of leadership
// has its own epoch, strictly greater than every earlier term's (a CAS on the
// coordinator's epoch counter, docs/design.md, rule 1), and it is the fencing token
// the leader stamps on every RPC it sends.
//
//   STANDBY --lowest candidate, epoch bumped--> LEADING
//      ^                                          |  ^
//      |                          connection lost |  | same session back,
//      |                                          v  | lease renewed
//      |                                        SUSPENDED (IsLeader() false)
//      |                                          |
//      +---- session expired / Stop() ------------+   (`lost` fires)
//
// A leader acts only while IsLeader(): connected, and within a lease that
// ends before the server could expire its session (docs/design.md, rule 5). If the
// same session comes back (a ZooKeeper server of an ensemble died and the
// client moved to another), the term goes on with the same epoch: nobody else
// can have led, since the leader's ephemeral znode lived on. A new term, on
// any driver, always has a new, higher epoch.
//
// Thread-safety: Start/Stop from one thread; IsLeader/epoch from any thread.
// Callbacks run on the coordinator's own thread and must not block.
#pragma once

#include <cstdint>
#include <functional>

#include "lib/common/status.h"

namespace sluice::coord {

class LeaderElector {
 public:
  struct Callbacks {
    std::function<void(int64_t epoch)> elected;
    std::function<void()> lost;
  };

  virtual ~LeaderElector() = default;

  // Enters the election. UNAVAILABLE if the coordinator cannot be reached.
  [[nodiscard]] virtual Status Start(Callbacks callbacks) = 0;
  // Withdraws at once, so a standby takes over without waiting for a
  // session timeout (docs/design.md, rule 6). `lost` fires if this one led.
  virtual void Stop() = 0;

  // True only while this candidate leads and its hold on the coordinator is
  // fresh: after a pause (SIGSTOP) longer than the lease, false until proven
  // again, whatever the callbacks said.
  virtual bool IsLeader() const = 0;
  // The epoch of the current term (0 if it never led).
  virtual int64_t epoch() const = 0;
};

}  // namespace sluice::coord
