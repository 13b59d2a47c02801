// Unit tests of AssignPartitions: balanced, sticky, deterministic.
#include "lib/driver/assignment.h"

#include "gtest/gtest.h"

namespace sluice::driver {
namespace {

std::vector<PartitionId> Partitions(int n) {
  std::vector<PartitionId> out;
  for (int i = 0; i < n; ++i) out.push_back({"events", i});
  return out;
}

std::map<std::string, int> Counts(const std::map<PartitionId, std::string>& a) {
  std::map<std::string, int> c;
  for (const auto& [p, w] : a) ++c[w];
  return c;
}

int Moved(const std::map<PartitionId, std::string>& before, const std::map<PartitionId, std::string>& after) {
  int moved = 0;
  for (const auto& [p, w] : after) {
    auto it = before.find(p);
    if (it != before.end() && it->second != w) ++moved;
  }
  return moved;
}

void ExpectBalanced(const std::map<PartitionId, std::string>& a, size_t partitions, size_t workers) {
  EXPECT_EQ(a.size(), partitions);
  auto c = Counts(a);
  EXPECT_EQ(c.size(), std::min(partitions, workers));
  int lo = INT32_MAX, hi = 0;
  for (const auto& [w, n] : c) {
    lo = std::min(lo, n);
    hi = std::max(hi, n);
  }
  if (partitions >= workers) {
    EXPECT_LE(hi - lo, 1);
  }
}

TEST(Assignment, BalancedFromScratchAndDeterministic) {
  auto a = AssignPartitions(Partitions(8), {"w2", "w1"}, {});
  ExpectBalanced(a, 8, 2);
  EXPECT_EQ(a, AssignPartitions(Partitions(8), {"w1", "w2"}, {}));
  auto b = AssignPartitions(Partitions(10), {"a", "b", "c"}, {});
  ExpectBalanced(b, 10, 3);
}

TEST(Assignment, AJoiningWorkerTakesOnlyItsShare) {
  auto two = AssignPartitions(Partitions(8), {"w1", "w2"}, {});
  auto three = AssignPartitions(Partitions(8), {"w1", "w2", "w3"}, two);
  ExpectBalanced(three, 8, 3);
  EXPECT_EQ(Moved(two, three), Counts(three)["w3"]);  // only what w3 took moved
  EXPECT_GE(Counts(three)["w3"], 2);
}

TEST(Assignment, ADeadWorkersPartitionsAreTheOnlyOnesMoved) {
  auto three = AssignPartitions(Partitions(9), {"w1", "w2", "w3"}, {});
  auto two = AssignPartitions(Partitions(9), {"w1", "w3"}, three);
  ExpectBalanced(two, 9, 2);
  for (const auto& [p, w] : three) {
    if (w != "w2") {
      EXPECT_EQ(two.at(p), w) << "partition " << p.partition << " moved off a live worker";
    }
  }
}

TEST(Assignment, NoWorkersNoAssignmentAndMoreWorkersThanPartitions) {
  EXPECT_TRUE(AssignPartitions(Partitions(4), {}, {}).empty());
  auto a = AssignPartitions(Partitions(2), {"a", "b", "c", "d"}, {});
  EXPECT_EQ(a.size(), 2u);
  EXPECT_EQ(Counts(a).size(), 2u);
}

TEST(Assignment, StickyEvenWhenNothingChanges) {
  auto a = AssignPartitions(Partitions(16), {"a", "b", "c"}, {});
  EXPECT_EQ(AssignPartitions(Partitions(16), {"a", "b", "c"}, a), a);
}

}  // namespace
}  // namespace sluice::driver
