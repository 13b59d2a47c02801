// PlanMoves: balance within one, stickiness, drained workers emptied, moves
// bounded, stateless vs stateful. The moves are carried out round after
// round here as the leader would (each one done before the next round).
#include "lib/driver/rebalance.h"

#include <map>

#include "gtest/gtest.h"

namespace sluice::driver {
namespace {

std::vector<PartitionHolders> Job(const std::string& job, int partitions, bool stateful,
                                  const std::vector<std::string>& workers) {
  // Round robin, owner then the next worker as the replica.
  std::vector<PartitionHolders> out;
  for (int p = 0; p < partitions; ++p) {
    PartitionHolders h{job, p, stateful, {workers[p % workers.size()]}};
    if (stateful && workers.size() > 1) h.holders.push_back(workers[(p + 1) % workers.size()]);
    out.push_back(std::move(h));
  }
  return out;
}

std::map<std::string, int> Count(const std::vector<PartitionHolders>& parts, size_t index,
                                 const std::vector<std::string>& workers) {
  std::map<std::string, int> n;
  for (const std::string& w : workers) n[w] = 0;
  for (const PartitionHolders& p : parts) {
    if (p.holders.size() > index) ++n[p.holders[index]];
  }
  return n;
}

int Spread(const std::map<std::string, int>& n) {
  int lo = 1 << 30, hi = 0;
  for (const auto& [w, c] : n) {
    lo = std::min(lo, c);
    hi = std::max(hi, c);
  }
  return hi - lo;
}

// Applies every move; returns how many moves it took to converge.
int Converge(std::vector<PartitionHolders>& parts, RebalanceInput in, int max_rounds = 100) {
  int moves = 0;
  for (int round = 0; round < max_rounds; ++round) {
    in.partitions = parts;
    in.in_flight.clear();
    std::vector<PartitionMove> planned = PlanMoves(in);
    EXPECT_LE(static_cast<int>(planned.size()), in.max_total);
    std::map<std::string, int> per_job;
    for (const PartitionMove& m : planned) EXPECT_LE(++per_job[m.job], in.max_per_job);
    if (planned.empty()) return moves;
    for (const PartitionMove& m : planned) {
      for (PartitionHolders& p : parts) {
        if (p.job != m.job || p.partition != m.partition) continue;
        p.holders = HoldersAfter(p.holders, m);
        if (!p.stateful) p.holders.resize(1);
        if (p.stateful && p.holders.size() > 1) EXPECT_NE(p.holders[0], p.holders[1]);
      }
      ++moves;
    }
  }
  ADD_FAILURE() << "no convergence";
  return moves;
}

TEST(RebalanceTest, NewWorkersGetTheirShareWithinOne) {
  std::vector<PartitionHolders> parts = Job("a", 8, true, {"w1", "w2"});
  auto b = Job("b", 5, true, {"w2", "w1"});
  parts.insert(parts.end(), b.begin(), b.end());
  const std::vector<std::string> workers = {"w1", "w2", "w3", "w4"};
  RebalanceInput in{.workers = workers};
  const int moves = Converge(parts, in);
  EXPECT_LE(Spread(Count(parts, 0, workers)), 1);
  EXPECT_LE(Spread(Count(parts, 1, workers)), 1);
  // 13 owners over 4 workers: w3 and w4 need 3 each at least; replicas the
  // same, and each owner move leaves one replica to redo: a bound, not more.
  EXPECT_GE(moves, 6);
  EXPECT_LE(moves, 20);
  for (const PartitionHolders& p : parts) ASSERT_EQ(p.holders.size(), 2u);
}

TEST(RebalanceTest, ABalancedAssignmentIsLeftAlone) {
  std::vector<PartitionHolders> parts = Job("a", 9, true, {"w1", "w2", "w3"});
  RebalanceInput in{.partitions = parts, .workers = {"w1", "w2", "w3"}};
  EXPECT_TRUE(PlanMoves(in).empty());
  // Within one is balanced too: 10 over 3.
  parts = Job("a", 10, true, {"w1", "w2", "w3"});
  in.partitions = parts;
  EXPECT_TRUE(PlanMoves(in).empty());
}

TEST(RebalanceTest, StickyOnlyTheNeededMovesAndSwapsFirst) {
  // 8 partitions on w1 (owner) / w2 (replica); w2 joins as an owner: the
  // moves to w2 are swaps (w2 already has the state), 4 of them.
  std::vector<PartitionHolders> parts;
  for (int p = 0; p < 8; ++p) parts.push_back({"a", p, true, {"w1", "w2"}});
  RebalanceInput in{.workers = {"w1", "w2"}, .max_per_job = 8, .max_total = 8};
  in.partitions = parts;
  std::vector<PartitionMove> planned = PlanMoves(in);
  ASSERT_EQ(planned.size(), 4u);
  for (const PartitionMove& m : planned) {
    EXPECT_EQ(m.role, MoveRole::kOwner);
    EXPECT_EQ(m.from, "w1");
    EXPECT_EQ(m.to, "w2");
  }
  EXPECT_EQ(Converge(parts, in), 4);
}

TEST(RebalanceTest, DrainingWorkersAreEmptiedAndTheReplicaTakesOverFirst) {
  std::vector<PartitionHolders> parts = Job("a", 8, true, {"w1", "w2", "w3"});
  auto s = Job("s", 6, false, {"w1", "w2", "w3"});
  parts.insert(parts.end(), s.begin(), s.end());
  RebalanceInput in{.workers = {"w1", "w3"}, .draining = {"w2"}};
  in.partitions = parts;
  // A partition owned by w2 with a usable replica: that replica owns next.
  for (const PartitionMove& m : PlanMoves(in)) {
    if (m.role != MoveRole::kOwner || m.job != "a") continue;
    const PartitionHolders& p = parts[m.partition];
    if (p.holders.size() > 1 && p.holders[1] != "w2") EXPECT_EQ(m.to, p.holders[1]);
  }
  Converge(parts, in);
  for (const PartitionHolders& p : parts) {
    for (const std::string& h : p.holders) EXPECT_NE(h, "w2") << p.job << " " << p.partition;
    if (p.stateful) {
      ASSERT_EQ(p.holders.size(), 2u);
    } else {
      ASSERT_EQ(p.holders.size(), 1u);
    }
  }
  EXPECT_LE(Spread(Count(parts, 0, {"w1", "w3"})), 1);
}

TEST(RebalanceTest, MovesAreBoundedPerJobAndInAll) {
  std::vector<PartitionHolders> parts;
  for (const char* job : {"a", "b", "c", "d", "e", "f"}) {
    auto j = Job(job, 4, true, {"w1", "w2"});
    parts.insert(parts.end(), j.begin(), j.end());
  }
  RebalanceInput in{.partitions = parts, .workers = {"w1", "w2", "w3"}, .max_per_job = 1, .max_total = 4};
  std::vector<PartitionMove> planned = PlanMoves(in);
  EXPECT_EQ(planned.size(), 4u);
  std::set<std::string> jobs;
  for (const PartitionMove& m : planned) EXPECT_TRUE(jobs.insert(m.job).second);
  // The moves in flight count: with them, nothing more starts.
  in.in_flight = planned;
  EXPECT_TRUE(PlanMoves(in).empty());
  // One done: one more may start, not on a partition still moving.
  in.in_flight.pop_back();
  std::vector<PartitionMove> more = PlanMoves(in);
  ASSERT_EQ(more.size(), 1u);
  for (const PartitionMove& m : in.in_flight) EXPECT_FALSE(m.job == more[0].job && m.partition == more[0].partition);
}

TEST(RebalanceTest, MissingReplicasAreAddedOnADifferentWorkerAndStatelessHaveNone) {
  std::vector<PartitionHolders> parts;
  for (int p = 0; p < 4; ++p) parts.push_back({"a", p, true, {"w1"}});
  for (int p = 0; p < 4; ++p) parts.push_back({"s", p, false, {"w1"}});
  RebalanceInput in{.workers = {"w1", "w2"}, .max_per_job = 8, .max_total = 16};
  in.partitions = parts;
  std::vector<PartitionMove> planned = PlanMoves(in);
  int replicas = 0;
  for (const PartitionMove& m : planned) {
    if (m.role == MoveRole::kReplica) {
      ++replicas;
      EXPECT_EQ(m.job, "a");
      EXPECT_EQ(m.to, "w2");
      EXPECT_EQ(m.from, "");
    }
  }
  EXPECT_EQ(replicas, 4);
  Converge(parts, in);
  for (const PartitionHolders& p : parts) EXPECT_EQ(p.holders.size(), p.stateful ? 2u : 1u);
  EXPECT_LE(Spread(Count(parts, 0, {"w1", "w2"})), 1);
  // Alone, a worker has no replica to get.
  in.workers = {"w1"};
  in.partitions = {{"a", 0, true, {"w1"}}};
  EXPECT_TRUE(PlanMoves(in).empty());
}

}  // namespace
}  // namespace sluice::driver
