// status_page_bench: what the driver's status page costs with a large
// history: 100 jobs x 10,000 committed batches applied through ClusterState
// (which keeps the last 2,000 per job in its BatchHistory), then the time to
// render /api/status (the overview: every job's figures, no series), one
// job's whole held series (/api/job?since=0), an incremental poll
// (/api/job?since=<newest - 3>), and the memory the history holds. The same
// figures for 1 job x 10,000 batches, measured in the same run, are the
// baseline; the ratios say how the page scales with the number of jobs.
//
//   status_page_bench [--jobs 100] [--batches 10000] [--runs 50]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "CLI/CLI.hpp"
#include "lib/driver/cluster_state.h"
#include "lib/driver/status_page.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace sluice;

struct Figures {
  double build_s = 0;
  int64_t held = 0;
  size_t history_bytes = 0;
  long rss_growth_kb = 0;
  double status_ms = 0;
  size_t status_bytes = 0;
  double series_ms = 0;
  size_t series_bytes = 0;
  double poll_us = 0;
};

long MaxRssKb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

// The median of `runs` timings of `f`, in milliseconds.
double MedianMs(int runs, const std::function<size_t()>& f, size_t* bytes) {
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    const auto start = Clock::now();
    *bytes = f();
    t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

Figures Measure(int jobs, int batches, int runs) {
  Figures f;
  const long rss_before = MaxRssKb();
  driver::ClusterState state;
  FakeClock clock;
  const int64_t t0 = clock.UnixMillis() - int64_t{batches} * 500;
  const auto start = Clock::now();
  int64_t seq = 0;
  proto::WalRecord leader;
  leader.set_seq(++seq);
  leader.mutable_leader_change()->set_epoch(1);
  leader.mutable_leader_change()->set_leader_id("driver-1");
  if (!state.Apply(leader).ok()) std::abort();
  for (int j = 0; j < jobs; ++j) {
    proto::DriverRecord r;
    r.mutable_job_submitted()->set_job_id("job-" + std::to_string(j));
    r.mutable_job_submitted()->mutable_spec()->set_name("job-" + std::to_string(j));
    r.mutable_job_submitted()->mutable_spec()->set_batch_interval_ms(500);
    r.mutable_job_submitted()->mutable_spec()->add_sources("events");
    r.mutable_job_submitted()->set_submit_time_unix_ms(t0);
    if (!state.ApplyRecord(r, ++seq).ok()) std::abort();
  }
  // Batch by batch across the jobs, as a leader commits them.
  proto::DriverRecord plan;
  proto::DriverRecord commit;
  for (int b = 1; b <= batches; ++b) {
    for (int j = 0; j < jobs; ++j) {
      const std::string id = "job-" + std::to_string(j);
      const int64_t batch_time = t0 + int64_t{b} * 500;
      proto::BatchPlanned* p = plan.mutable_batch_planned();
      p->set_job_id(id);
      p->set_batch_id(b);
      p->set_batch_time_unix_ms(batch_time);
      if (!state.ApplyRecord(plan, ++seq).ok()) std::abort();
      proto::BatchCommitted* c = commit.mutable_batch_committed();
      c->set_job_id(id);
      c->set_batch_id(b);
      c->set_input_count(2000 + (b * 37 + j) % 500);
      c->set_output_count(1500);
      c->set_started_unix_ms(batch_time + 5 + b % 7);
      c->set_finished_unix_ms(batch_time + 120 + (b * 13) % 90);
      c->set_task_attempts(4);
      if (!state.ApplyRecord(commit, ++seq).ok()) std::abort();
    }
  }
  f.build_s = std::chrono::duration<double>(Clock::now() - start).count();
  f.held = state.history().size();
  f.history_bytes = state.history().MemoryBytes();
  f.rss_growth_kb = MaxRssKb() - rss_before;

  proto::DriverStatus status;
  status.mutable_process()->set_id("driver-1");
  status.set_role(proto::DRIVER_ROLE_LEADER);
  status.set_epoch(1);
  status.mutable_leader()->set_id("driver-1");
  status.mutable_leader()->set_epoch(1);
  for (int i = 1; i <= 3; ++i) {
    proto::MemberInfo* d = status.add_drivers();
    d->set_id("driver-" + std::to_string(i));
    proto::MemberInfo* w = status.add_workers();
    w->set_id("worker-" + std::to_string(i));
    w->set_slots(8);
  }
  driver::StatusPage page([&] { return status; }, &state, nullptr, &clock);
  f.status_ms = MedianMs(runs, [&] { return page.StatusJson().body.size(); }, &f.status_bytes);
  const std::string job = "job-" + std::to_string(jobs / 2);
  f.series_ms = MedianMs(
      runs, [&] { return page.JobJson({.path = "/api/job", .params = {{"id", job}, {"since", "0"}}}).body.size(); },
      &f.series_bytes);
  size_t poll_bytes = 0;
  const std::string since = std::to_string(batches - 3);
  f.poll_us = 1000 * MedianMs(
                         runs * 10,
                         [&] {
                           return page.JobJson({.path = "/api/job", .params = {{"id", job}, {"since", since}}})
                               .body.size();
                         },
                         &poll_bytes);
  return f;
}

void Print(const char* name, int jobs, int batches, const Figures& f) {
  std::printf("%-9s %3d jobs x %5d batches: applied in %.3f s; history holds %lld batches, %.1f MB "
              "(max RSS grew %.1f MB)\n",
              name, jobs, batches, f.build_s, static_cast<long long>(f.held), f.history_bytes / 1e6,
              f.rss_growth_kb / 1e3);
  std::printf("          /api/status %.3f ms (%zu bytes); one job's series %.3f ms (%zu bytes); "
              "incremental poll %.1f us\n",
              f.status_ms, f.status_bytes, f.series_ms, f.series_bytes, f.poll_us);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"status_page_bench: the status page's rendering cost and memory with a large history"};
  int jobs = 100;
  int batches = 10'000;
  int runs = 50;
  app.add_option("--jobs", jobs)->capture_default_str();
  app.add_option("--batches", batches)->capture_default_str();
  app.add_option("--runs", runs)->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const Figures base = Measure(1, batches, runs);
  Print("baseline", 1, batches, base);
  const Figures big = Measure(jobs, batches, runs);
  Print("measured", jobs, batches, big);
  std::printf("ratio to the 1-job baseline: /api/status x%.1f (for x%d jobs), one job's series x%.2f, "
              "incremental poll x%.2f, history memory x%.1f\n",
              big.status_ms / base.status_ms, jobs, big.series_ms / base.series_ms, big.poll_us / base.poll_us,
              static_cast<double>(big.history_bytes) / static_cast<double>(base.history_bytes));
  return 0;
}
