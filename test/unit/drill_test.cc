// sluicectl drill's pure parts (lib/ctl/drill.h): the --fault grammar, the
// targets and the verdict, the exactly-once counting, and the report.
#include "lib/ctl/drill.h"

#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::ctl {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

TEST(DrillFaults, ParsesEveryKindWithItsArgument) {
  Result<std::vector<FaultSpec>> f =
      ParseFaults("leader-kill,leader-term,leader-pause,leader-pause:12s,worker-kill,worker-kill:worker-2,"
                  "worker-pause:500ms");
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->size(), 7u);
  EXPECT_EQ((*f)[0].kind, FaultKind::kLeaderKill);
  EXPECT_EQ((*f)[1].kind, FaultKind::kLeaderTerm);
  EXPECT_EQ((*f)[2].kind, FaultKind::kLeaderPause);
  EXPECT_EQ((*f)[2].pause, kDefaultPause);
  EXPECT_EQ((*f)[3].pause, milliseconds(12'000));
  EXPECT_EQ((*f)[4].kind, FaultKind::kWorkerKill);
  EXPECT_EQ((*f)[4].worker_id, "");
  EXPECT_EQ((*f)[5].worker_id, "worker-2");
  EXPECT_EQ((*f)[6].kind, FaultKind::kWorkerPause);
  EXPECT_EQ((*f)[6].pause, milliseconds(500));
  EXPECT_EQ((*f)[6].text, "worker-pause:500ms");
  EXPECT_TRUE((*f)[3].on_leader());
  EXPECT_FALSE((*f)[6].on_leader());
}

TEST(DrillFaults, RefusesWhatItDoesNotKnowNamingTheItem) {
  EXPECT_THAT(std::string(ParseFaults("leader-kill,leader-nap").status().message()),
              HasSubstr("--fault leader-nap: unknown fault 'leader-nap'; the faults are leader-kill"));
  EXPECT_THAT(std::string(ParseFaults("leader-kill:now").status().message()), HasSubstr("takes no argument"));
  EXPECT_THAT(std::string(ParseFaults("worker-pause:soon").status().message()),
              HasSubstr("'soon' is not a duration"));
  EXPECT_THAT(std::string(ParseFaults("worker-kill:").status().message()), HasSubstr("nothing after ':'"));
  EXPECT_FALSE(ParseFaults("").ok());
  EXPECT_FALSE(ParseFaults(",").ok());
}

TEST(DrillFaults, Durations) {
  EXPECT_EQ(*ParseDuration("250", "x"), milliseconds(250));
  EXPECT_EQ(*ParseDuration("250ms", "x"), milliseconds(250));
  EXPECT_EQ(*ParseDuration("10s", "x"), milliseconds(10'000));
  EXPECT_EQ(*ParseDuration("2m", "x"), milliseconds(120'000));
  EXPECT_FALSE(ParseDuration("0s", "x").ok());
  EXPECT_FALSE(ParseDuration("2h", "x").ok());
  EXPECT_FALSE(ParseDuration("61m", "x").ok());
  EXPECT_FALSE(ParseDuration("s", "x").ok());
  EXPECT_FALSE(ParseDuration("-1s", "x").ok());
}

TEST(DrillFaults, FlagsAreCheckedBeforeTheClusterIsAsked) {
  DrillOptions o;
  o.faults = "leader-kill";
  Result<CheckedDrillOptions> c = CheckDrillOptions(o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->interval, milliseconds(10'000));
  EXPECT_FALSE(c->session_timeout.has_value());
  o.interval = "soon";
  EXPECT_THAT(std::string(CheckDrillOptions(o).status().message()), HasSubstr("--interval: 'soon'"));
  o.interval = "8s";
  o.rate = 2;  // fewer than one event/s per partition
  EXPECT_THAT(std::string(CheckDrillOptions(o).status().message()), HasSubstr("--rate: 2 is not in 4..1000000"));
  o.rate = 100;
  o.session_timeout = "4s";
  EXPECT_EQ(CheckDrillOptions(o)->session_timeout, milliseconds(4000));
}

TEST(DrillVerdict, TargetsFollowTheSessionTimeoutAndTheBatchInterval) {
  const DrillTimes times{.session_timeout = milliseconds(4000), .batch_interval = milliseconds(1000)};
  auto target = [&](const char* spec) { return TargetFor((*ParseFaults(spec))[0], times); };
  EXPECT_EQ(target("leader-kill"), milliseconds(4000 + 2000 + 2000));
  EXPECT_EQ(target("leader-term"), milliseconds(1000 + 2000));
  EXPECT_EQ(target("leader-pause:5s"), target("leader-kill"));  // longer than T: as a kill
  EXPECT_EQ(target("leader-pause:3s"), milliseconds(3000 + 2000));
  EXPECT_EQ(target("worker-kill"), milliseconds(4000 + 2000));
  EXPECT_EQ(target("worker-pause:2s"), milliseconds(4000 + 2000));
}

TEST(DrillVerdict, AFaultPassesWhenEveryJobCommitsWithinItsTarget) {
  FaultResult r;
  r.target_ms = 3000;
  r.next_commit_ms = {{"a", 1200}, {"b", 3000}};
  EXPECT_TRUE(FaultPasses(r));
  r.next_commit_ms[1].second = 3001;
  EXPECT_FALSE(FaultPasses(r));
  r.next_commit_ms[1].second = std::nullopt;  // never seen
  EXPECT_FALSE(FaultPasses(r));
  r.next_commit_ms[1].second = 10;
  r.error = "no live worker";
  EXPECT_FALSE(FaultPasses(r));
}

TEST(DrillExactlyOnce, CountsLostDuplicatedAndBeyond) {
  const std::map<int32_t, int64_t> positions = {{0, 3}, {1, 2}};
  // 0-0 twice, 0-1 missing, 0-3 past the position; partition 1 complete; 7-0 unknown.
  IdCheck c = CheckIds(positions, {{0, 0}, {0, 0}, {0, 2}, {0, 3}, {1, 1}, {1, 0}, {7, 0}});
  EXPECT_EQ(c.expected, 5);
  EXPECT_EQ(c.lost, 1);
  EXPECT_EQ(c.duplicated, 1);
  EXPECT_EQ(c.beyond, 2);
  EXPECT_FALSE(c.ok());
  EXPECT_THAT(c.examples, ::testing::UnorderedElementsAre("0-0 duplicated", "0-1 lost"));
  EXPECT_TRUE(CheckIds(positions, {{0, 0}, {0, 1}, {0, 2}, {1, 0}, {1, 1}, {1, 2}}).ok());
}

TEST(DrillExactlyOnce, CountsAgainstExpected) {
  CountCheck ok = CheckCounts({{"k1", 3}, {"k2", 1}}, {{"k1", 3}, {"k2", 1}});
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.events, 4);
  CountCheck bad = CheckCounts({{"k1", 3}, {"k2", 1}}, {{"k1", 4}, {"k3", 1}});
  EXPECT_EQ(bad.wrong, 3);  // k1 differs, k2 missing, k3 unexpected
  EXPECT_FALSE(bad.ok());
}

TEST(DrillExactlyOnce, ParsesTheProbesOutput) {
  EXPECT_EQ(ParseIdLine(R"({"id":"0003-000000000042"})"), (std::pair<int32_t, int64_t>{3, 42}));
  EXPECT_FALSE(ParseIdLine(R"({"id":"x"})").has_value());
  EXPECT_EQ(ParseCountLine(R"({"key":["k00000007"],"events":12})"),
            (std::pair<std::string, int64_t>{"k00000007", 12}));
  EXPECT_FALSE(ParseCountLine(R"({"key":["k1"]})").has_value());
  EXPECT_EQ(BatchOfFile("drill-1-counts-batch-17-part-0.jsonl"), 17);
  EXPECT_EQ(BatchOfFile("drill-1-counts-batch-00000022-part-0002.jsonl"), 22);  // as the file sink names them
  EXPECT_FALSE(BatchOfFile("notes.txt").has_value());
}

TEST(DrillReport, VerdictTableAndJson) {
  DrillReport r;
  r.name = "drill-1";
  r.times = {.session_timeout = milliseconds(4000), .batch_interval = milliseconds(1000)};
  FaultResult f;
  f.fault = (*ParseFaults("leader-kill"))[0];
  f.target_ms = 8000;
  f.victim = "driver-1";
  f.new_leader_ms = 4300;
  f.next_commit_ms = {{"drill-1-ids", 5100}, {"drill-1-counts", 5200}};
  r.faults.push_back(f);
  r.ids.expected = 10;
  r.counts.keys = 2;
  EXPECT_TRUE(r.Pass());
  std::ostringstream table;
  PrintReport(r, table);
  EXPECT_THAT(table.str(), HasSubstr("leader-kill"));
  EXPECT_THAT(table.str(), HasSubstr("4.3s"));
  EXPECT_THAT(table.str(), HasSubstr("verdict: PASS"));
  EXPECT_THAT(ReportJson(r), HasSubstr(R"("verdict":"PASS")"));
  EXPECT_THAT(ReportJson(r), HasSubstr(R"("next_commit_ms":{"drill-1-ids":5100,"drill-1-counts":5200})"));

  r.ids.lost = 1;  // exactly once broken: FAIL whatever the times
  EXPECT_FALSE(r.Pass());
  EXPECT_THAT(ReportJson(r), HasSubstr(R"("verdict":"FAIL")"));
  r.ids.lost = 0;
  r.faults[0].next_commit_ms[0].second = 9000;
  EXPECT_FALSE(r.Pass());
  r.faults.clear();  // a drill that applied no fault proves nothing
  EXPECT_FALSE(r.Pass());
}

}  // namespace
}  // namespace sluice::ctl
