// Leadership: one driver's terms as leader, from the election to a serving
// WAL and back.
//
// Module sluice::driver owns it. It joins the election (coord::LeaderElector)
// and turns its events into WAL transitions on its own thread, in order:
//
//   elected(E)  -> ReplicatedLog::BecomeLeader(E): catch up from a quorum,
//                  commit LeaderChange{E}; then the driver may plan (Serving)
//   lost        -> abort a catch-up in progress, step the WAL down
//   fenced      -> (the WAL met a higher epoch) step down, and re-enter the
//                  election as a new candidate
//   GiveUp(E)   -> (the driver cannot do a leader's work, e.g. it reaches too
//                  few workers) the same as fenced: the next candidate leads
//
// Thread-safe. Stop() leaves the election first, so a standby takes over at
// once (docs/design.md, rule 6).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lib/common/status.h"
#include "lib/coord/coordinator.h"
#include "lib/wal/replicated_log.h"
#include "proto/common.pb.h"

namespace sluice::driver {

class Leadership {
 public:
  // `coordinator` and `log` must outlive this object.
  Leadership(coord::Coordinator* coordinator, proto::LeaderInfo self, wal::ReplicatedLog* log);
  ~Leadership();

  [[nodiscard]] Status Start();
  void Stop();

  // Elected, with a fresh lease: may send epoch-stamped calls to workers.
  bool IsLeader() const;
  // The epoch of the current term (valid while IsLeader()).
  int64_t epoch() const;
  // IsLeader() and the WAL serves: caught up, LeaderChange committed.
  bool Serving() const { return IsLeader() && log_->Stats().serving; }
  // Ends term `epoch` (if it is still the current one) and stands again as a
  // new candidate, behind every other: another driver leads next. `why` is
  // logged.
  void GiveUp(int64_t epoch, const std::string& why);

 private:
  enum class Kind { kElected, kLost, kFenced };
  struct Event {
    Kind kind;
    int64_t epoch;
    int64_t generation = 0;  // the WAL's abort generation when elected
  };
  void Push(Event e);
  void Loop();
  [[nodiscard]] Status Enter();  // a new elector, started; requires mu_

  coord::Coordinator* const coordinator_;
  const proto::LeaderInfo self_;
  wal::ReplicatedLog* const log_;

  std::atomic<coord::LeaderElector*> elector_{nullptr};  // changed under mu_
  // Electors are kept until Stop: other threads may still hold the pointer.
  std::vector<std::unique_ptr<coord::LeaderElector>> electors_;  // guarded by mu_

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;  // guarded by mu_
  bool stopping_ = false;     // guarded by mu_
  std::thread thread_;
};

}  // namespace sluice::driver
