// sluicectl watch's view: what RenderWatch draws from a poll, and the leader
// changes WatchHistory counts.
#include "lib/ctl/watch.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::ctl {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kNow = 1'700'000'000'000;

std::string Joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const std::string& l : lines) s += l + "\n";
  return s;
}

WatchSnapshot Leader(const std::string& id, int64_t epoch, int64_t at) {
  WatchSnapshot s;
  s.taken_unix_ms = at;
  s.has_leader = true;
  s.leader_id = id;
  s.leader_address = "127.0.0.1:7001";
  s.epoch = epoch;
  s.drivers = 2;
  s.workers = 3;
  return s;
}

WatchSnapshot NoLeader(int64_t at) {
  WatchSnapshot s;
  s.taken_unix_ms = at;
  s.error = "no serving leader among 2 driver(s)";
  return s;
}

proto::JobInfo RunningJob() {
  proto::JobInfo j;
  j.set_job_id("clicks");
  j.set_state("running");
  j.mutable_spec()->set_batch_interval_ms(1000);
  j.set_last_planned_batch(42);
  j.set_last_committed_batch(41);
  j.set_total_input(1234567);
  j.set_total_output(890);
  j.set_rate_limit(5000);
  j.set_rate_limit_reason("total delay over the batch interval");
  for (int64_t b = 40; b <= 41; ++b) {
    proto::BatchSummary* s = j.add_recent_batches();
    s->set_batch_id(b);
    s->set_batch_time_unix_ms(kNow - 2000);
    s->set_input_count(2000 + 1000 * (b - 40));
    s->set_output_count(10);
    s->set_scheduling_delay_ms(7);
    s->set_processing_ms(120);
    s->set_total_delay_ms(127);
    s->set_task_attempts(4);
  }
  proto::BatchProgress* p = j.mutable_in_flight();
  p->set_batch_id(42);
  p->set_tasks_total(4);
  p->set_tasks_done(3);
  p->set_running_ms(400);
  p->set_attempt(1);
  return j;
}

TEST(WatchTest, ProgressBar) {
  EXPECT_EQ(ProgressBar(0, 4, 8), "[........]");
  EXPECT_EQ(ProgressBar(3, 4, 8), "[######..]");
  EXPECT_EQ(ProgressBar(4, 4, 8), "[########]");
  EXPECT_EQ(ProgressBar(9, 4, 4), "[####]");
  EXPECT_EQ(ProgressBar(0, 0, 4), "[....]");
}

TEST(WatchTest, ShowsTheLeaderAndEachJobsBatchInFlightRatesAndDelays) {
  WatchHistory history;
  WatchSnapshot s = Leader("driver-1", 3, kNow);
  s.jobs.push_back(RunningJob());
  history.Observe(s);
  const std::string view = Joined(RenderWatch({}, s, history, 0));
  EXPECT_THAT(view, HasSubstr("leader driver-1 at 127.0.0.1:7001  epoch 3  drivers 2  workers 3"));
  EXPECT_THAT(view, HasSubstr("JOB clicks  running  batch every 1000 ms  committed 41  planned 42"));
  EXPECT_THAT(view, HasSubstr("in flight:   batch 42 [###############.....] 3/4 tasks  running 400 ms"));
  EXPECT_THAT(view,
              HasSubstr("input rate:  2,500 events/s   rate limit: 5,000/s (total delay over the batch interval)"));
  EXPECT_THAT(view, HasSubstr("last batch:  41  scheduling delay 7 ms  processing 120 ms  total delay 127 ms"));
  EXPECT_THAT(view, HasSubstr("records:     1,234,567 in, 890 out, 0 dead letters"));
  EXPECT_THAT(view, HasSubstr("failovers seen: none"));
  EXPECT_THAT(view, Not(HasSubstr("\x1b")));
}

TEST(WatchTest, StoppedJobShowsWhy) {
  WatchHistory history;
  WatchSnapshot s = Leader("driver-1", 3, kNow);
  proto::JobInfo j = RunningJob();
  j.set_state("stopped");
  j.set_stop_reason("FAILED: batch 42: worker gone");
  j.clear_in_flight();
  s.jobs.push_back(j);
  history.Observe(s);
  const std::string view = Joined(RenderWatch({}, s, history, 0));
  EXPECT_THAT(view, HasSubstr("stopped:     FAILED: batch 42: worker gone"));
  EXPECT_THAT(view, Not(HasSubstr("in flight")));
}

TEST(WatchTest, CountsTheTimeWithoutALeaderAndRecordsTheFailover) {
  WatchHistory history;
  history.Observe(Leader("driver-1", 3, kNow));
  history.Observe(Leader("driver-1", 3, kNow + 1000));
  WatchSnapshot gap = NoLeader(kNow + 2000);
  history.Observe(gap);
  history.Observe(NoLeader(kNow + 5000));
  WatchSnapshot late = NoLeader(kNow + 5500);
  history.Observe(late);
  EXPECT_THAT(Joined(RenderWatch({}, late, history, 0)),
              HasSubstr("no leader (4 s); last leader driver-1: no serving leader among 2 driver(s)"));
  WatchSnapshot back = Leader("driver-2", 4, kNow + 6200);
  history.Observe(back);
  ASSERT_EQ(history.failovers().size(), 1u);
  EXPECT_EQ(history.failovers()[0].from, "driver-1");
  EXPECT_EQ(history.failovers()[0].to, "driver-2");
  EXPECT_EQ(history.failovers()[0].epoch, 4);
  EXPECT_EQ(history.failovers()[0].no_leader_ms, 5200);
  const std::string view = Joined(RenderWatch({}, back, history, 0));
  EXPECT_THAT(view, HasSubstr("leader driver-2 at 127.0.0.1:7001  epoch 4"));
  EXPECT_THAT(view, HasSubstr("failovers seen (1):"));
  EXPECT_THAT(view, HasSubstr("leader driver-1 -> driver-2 (epoch 4), no leader answered for 5.2 s"));
  // The same leader again is no failover; a new epoch of the same driver is.
  history.Observe(Leader("driver-2", 4, kNow + 7000));
  EXPECT_EQ(history.failovers().size(), 1u);
  history.Observe(Leader("driver-2", 5, kNow + 8000));
  EXPECT_EQ(history.failovers().size(), 2u);
  EXPECT_EQ(history.failovers()[1].no_leader_ms, 1000);
}

TEST(WatchTest, KeepsTheLastFewFailovers) {
  WatchHistory history;
  for (int i = 0; i < 20; ++i) history.Observe(Leader("driver-" + std::to_string(i % 2), i + 1, kNow + i * 1000));
  EXPECT_EQ(history.failovers().size(), WatchHistory::kMaxFailovers);
  EXPECT_EQ(history.failovers().back().epoch, 20);
}

TEST(WatchTest, LinesAreCutToTheWidth) {
  WatchHistory history;
  WatchSnapshot s = Leader("driver-1", 3, kNow);
  s.jobs.push_back(RunningJob());
  history.Observe(s);
  for (const std::string& l : RenderWatch({}, s, history, 30)) EXPECT_LE(l.size(), 30u) << l;
  EXPECT_THAT(RenderWatch({}, s, history, 30), Contains(AllOf(HasSubstr("JOB clicks"))));
}

}  // namespace
}  // namespace sluice::ctl
