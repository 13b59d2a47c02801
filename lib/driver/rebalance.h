// Rebalancer: which reduce partitions of the running keyed jobs move to
// which workers, so that every usable worker owns (and copies) its share
// (docs/state.md "Rebalancing").
//
// Module sluice::driver owns it. Pure logic: the leader's Scheduler feeds it
// the holders the WAL records (owner first, then the replica), the workers
// and the moves already in flight, and carries out the moves it returns.
// A move of a stateful partition goes through the warm path
// (lib/driver/scheduler.h); a stateless one just runs elsewhere next batch.
//
// Thread-compatible (no state).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace sluice::driver {

// One reduce partition as the WAL last recorded it.
struct PartitionHolders {
  std::string job;
  int32_t partition = 0;
  bool stateful = true;
  std::vector<std::string> holders;  // owner first; any order of liveness
};

enum class MoveRole { kOwner, kReplica };

struct PartitionMove {
  std::string job;
  int32_t partition = 0;
  MoveRole role = MoveRole::kOwner;
  std::string from;  // the worker whose slot it takes; "" for a missing replica
  std::string to;
  bool operator==(const PartitionMove&) const = default;
};

struct RebalanceInput {
  std::vector<PartitionHolders> partitions;
  std::vector<std::string> workers;   // live, reachable and not draining: may take work
  std::set<std::string> draining;     // live but draining: everything moves off
  std::vector<PartitionMove> in_flight;  // left alone, counted as done
  int max_per_job = 2;                // moves in flight per job, these included
  int max_total = 4;                  // and in all
};

// The moves to start now: first everything off draining workers and the
// missing replicas, then owners and then replicas from the most to the least
// loaded worker until the counts (over all jobs) differ by at most one. A
// partition with a move in flight is not moved again; owner and replica stay
// two different workers. Deterministic for one input.
std::vector<PartitionMove> PlanMoves(const RebalanceInput& input);

// The holders a partition has once `move` is done: an owner move puts `to`
// first and keeps the old owner as the replica; a replica move replaces the
// replica.
std::vector<std::string> HoldersAfter(const std::vector<std::string>& holders, const PartitionMove& move);

}  // namespace sluice::driver
