// PartitionMoves: the leader's reduce-partition moves in flight, and the
// rounds of the Rebalancer that start them (docs/state.md "Rebalancing").
//
// Module sluice::driver owns it; the Scheduler runs it. A move of a stateful
// partition (job, p) to worker T goes
//
//   WARMING --WarmState(T) ok--> READY --WAL names T in its slot--> done
//      |                           |
//      +-- failed, T gone, job stopped, new term --> dropped (a later round
//                                                    may start it again)
//
// WARMING runs on a thread of its own, never in the job's batch loop: T
// copies the state as of the newest committed batch C from a holder. While
// READY, the placement (Scheduler::PlaceReducePartitions) makes T the
// replica of the next batch N (the owner sends it only the changes since its
// copy) and, once the WAL names T a holder, the owner of the batch after
// (the old owner its replica). A stateless partition's move is READY at
// once: its next batch runs on T. Moves live only in the leader's memory: a
// new leader starts over from the holders the WAL records.
//
// Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lib/common/clock.h"
#include "lib/driver/rebalance.h"
#include "lib/rpc/call.h"
#include "proto/common.pb.h"
#include "proto/driver_log.pb.h"

namespace sluice::driver {

class JobProbe;
class WorkerProxy;

class PartitionMoves {
 public:
  PartitionMoves(WorkerProxy* workers, Clock* clock) : workers_(workers), clock_(clock) {}
  // Completed moves are counted there; before the first Round.
  void set_probe(JobProbe* probe) { probe_ = probe; }
  // Cancels the warm copies in flight and waits for them.
  ~PartitionMoves();

  // Ends the moves that are done (the WAL names their target in its slot) or
  // can no longer be (target gone, job stopped, warm failed, term over),
  // then, if `plan` or a second passed since the last round, plans and starts
  // new ones. `usable`: the live workers a task may use (reachable, not
  // draining); `draining`: live ones being drained. Returns the moves
  // started now.
  std::vector<PartitionMove> Round(const proto::ClusterState& state, const std::vector<proto::MemberInfo>& live,
                                   const std::set<std::string>& usable, const std::set<std::string>& draining,
                                   int64_t epoch, bool plan);

  // READY moves of `job`, by partition: where the placement puts them.
  std::map<int32_t, PartitionMove> Ready(const std::string& job);

  struct InFlight {
    PartitionMove move;
    bool warming = false;
  };
  std::vector<InFlight> List();
  // Moves completed since the start, by job (the metric).
  std::map<std::string, int64_t> Completed();

 private:
  struct Move {
    PartitionMove move;
    bool warming = false;
    bool failed = false;
    int64_t started_ms = 0;  // the move's start, then the end of its warm (READY's clock)
    int64_t layout = 0;      // the job's state layout it moves a partition of
    std::thread thread;
    bool finished = false;  // the warm thread is done: join it
    std::shared_ptr<rpc::Cancellation> cancel = std::make_shared<rpc::Cancellation>();
  };
  using Key = std::pair<std::string, int32_t>;
  void StartWarm(const std::shared_ptr<Move>& m, const proto::JobState& job,
                 const std::vector<proto::MemberInfo>& live, int64_t epoch);

  WorkerProxy* const workers_;
  Clock* const clock_;
  JobProbe* probe_ = nullptr;
  std::mutex mu_;
  std::map<Key, std::shared_ptr<Move>> moves_;  // guarded by mu_
  std::vector<std::shared_ptr<Move>> ended_;    // threads still to join; guarded by mu_
  std::map<std::string, int64_t> completed_;    // guarded by mu_
  int64_t epoch_ = 0;                           // guarded by mu_
  int64_t last_round_ms_ = 0;                   // guarded by mu_
};

}  // namespace sluice::driver
