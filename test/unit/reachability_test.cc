// Unit tests of WorkerReachability: which worker the others cannot reach.
#include "lib/driver/reachability.h"

#include "gtest/gtest.h"

namespace sluice::driver {
namespace {

const std::set<std::string> kThree = {"w1", "w2", "w3"};
using Set = std::set<std::string>;

TEST(WorkerReachability, NobodyWithoutReports) {
  WorkerReachability r;
  EXPECT_EQ(r.CutOff(kThree, 0), Set{});
}

// w1 cut from w2 and w3: they name it, it names them; only w1 is cut off.
TEST(WorkerReachability, TheWorkerCutFromBothOthers) {
  WorkerReachability r;
  r.Report("w2", {"w1"}, 1000);
  EXPECT_EQ(r.CutOff(kThree, 1000), Set{}) << "one broken link: which end is at fault is unknown";
  r.Report("w3", {"w1"}, 1100);
  EXPECT_EQ(r.CutOff(kThree, 1100), Set{"w1"});
  r.Report("w1", {"w2", "w3"}, 1200);  // its own tasks say the same
  EXPECT_EQ(r.CutOff(kThree, 1200), Set{"w1"});
}

// One task of the cut worker naming both others is enough.
TEST(WorkerReachability, OneReportNamingBothOthers) {
  WorkerReachability r;
  r.Report("w1", {"w2", "w3"}, 0);
  EXPECT_EQ(r.CutOff(kThree, 0), Set{"w1"});
}

TEST(WorkerReachability, ASplitOfTwoMarksNobody) {
  WorkerReachability r;
  r.Report("w1", {"w2"}, 0);
  r.Report("w2", {"w1"}, 0);
  EXPECT_EQ(r.CutOff({"w1", "w2"}, 0), Set{});
  EXPECT_EQ(r.CutOff(kThree, 0), Set{});
}

// Every link of three broken, each reported as often: nothing tells the
// workers apart.
TEST(WorkerReachability, LinksThatCannotTellTheWorkersApartMarkNobody) {
  WorkerReachability r;
  r.Report("w1", {"w2", "w3"}, 0);
  r.Report("w2", {"w3"}, 0);
  EXPECT_EQ(r.CutOff(kThree, 0), Set{});
}

// w1 is cut off and its partitions move; one slow copy between w2 and w3 is
// reported once. w1's links, reported by every batch, still single it out,
// and the other two stay kept.
TEST(WorkerReachability, ASpuriousReportBetweenTheOthersKeepsThem) {
  WorkerReachability r;
  for (int64_t t = 0; t < 3000; t += 1000) {
    r.Report("w2", {"w1"}, t);
    r.Report("w3", {"w1"}, t);
  }
  EXPECT_EQ(r.CutOff(kThree, 3000), Set{"w1"});
  r.Report("w2", {"w3"}, 3000);
  EXPECT_EQ(r.CutOff(kThree, 3000), Set{"w1"});
}

// Of four, w1 cut from all three; one report between w2 and w3 must not cut
// them off too (counted among the workers kept once w1 is out, each has one
// broken link of two others).
TEST(WorkerReachability, OfFourOnlyTheWorkerCutFromAll) {
  const std::set<std::string> four = {"w1", "w2", "w3", "w4"};
  WorkerReachability r;
  r.Report("w1", {"w2", "w3", "w4"}, 0);
  EXPECT_EQ(r.CutOff(four, 0), Set{"w1"});
  r.Report("w2", {"w3"}, 0);
  EXPECT_EQ(r.CutOff(four, 0), Set{"w1"});
  // Two workers cut from everyone: both found, one after the other.
  r.Report("w2", {"w4"}, 0);
  r.Report("w2", {"w4"}, 0);
  EXPECT_EQ(r.CutOff(four, 0), (Set{"w1", "w2"}));
}

// Of five, a worker cut from three others (more than half) is cut off; one
// cut from two is not.
TEST(WorkerReachability, MoreThanHalfOfTheOthers) {
  const std::set<std::string> five = {"w1", "w2", "w3", "w4", "w5"};
  WorkerReachability r;
  r.Report("w1", {"w2", "w3"}, 0);
  EXPECT_EQ(r.CutOff(five, 0), Set{});
  r.Report("w4", {"w1"}, 0);
  EXPECT_EQ(r.CutOff(five, 0), Set{"w1"});
}

TEST(WorkerReachability, LinksMendAfterAWhileAndDepartedWorkersDoNotCount) {
  WorkerReachability r;
  r.Report("w1", {"w2", "w3"}, 0);
  EXPECT_EQ(r.CutOff(kThree, WorkerReachability::kBrokenForMs - 1), Set{"w1"});
  EXPECT_EQ(r.CutOff(kThree, WorkerReachability::kBrokenForMs), Set{});
  // Refreshed by a later report.
  r.Report("w2", {"w1"}, 5000);
  r.Report("w3", {"w1"}, 5000);
  EXPECT_EQ(r.CutOff(kThree, WorkerReachability::kBrokenForMs + 1000), Set{"w1"});
  // A link to a worker that left says nothing of the ones left.
  EXPECT_EQ(r.CutOff({"w1", "w2"}, 6000), Set{});
}

}  // namespace
}  // namespace sluice::driver
