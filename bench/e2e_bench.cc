// e2e_bench: end-to-end throughput of a job on a local cluster of real
// processes (test/harness LocalCluster: ZooKeeper, driverd, 2 workerd) —
// generator -> parse json -> filter -> project -> null sink, 600-byte
// events, 1 s batches — against the receivers' ingest rate measured in the
// same run on the same kind of cluster.
//
//   e2e_bench [--seconds 15] [--warmup 5] [--payload 600] [--partitions 2]
//             [--rate 500000] [--drivers 1] [--no-unlimited] [--no-keyed]
//             [--no-overload] [--overload-warmup 15] [--plot-dir DIR]
//
// Phases, each on a fresh cluster (a source, once declared, is read until the
// cluster ends, so phases would otherwise compete for the 2 cores):
//   baseline   a generator source alone (`sluicectl source add`, rate
//              unlimited), no job: how fast the receivers cut blocks into
//              the workers' stores and the leader accepts them, read from
//              ListSources' accepted offsets over a few seconds. The workers
//              get --block-memory-mb 3072 --block-disk-mb 0 so nothing
//              spills to disk in that window (no job drops these blocks).
//   paced      the job with the generator at --rate events/s in total; the
//              workers get --block-memory-mb 2048 (a couple of seconds of
//              blocks at 300 MB/s stay in memory while their batch runs).
//   keyed      generator (100,000 keys) -> parse -> key_by key ->
//              10 s tumbling window over batch time -> count -> null, paced
//              at the same rate: map tasks, a shuffle between the workers
//              and reduce tasks folding into the RocksDB state, replicated
//              to the other worker. Target: >= 60% of the stateless job's
//              events/s in this run.
//   unlimited  the same job with the generator unpaced (rate 0): the most
//              the cluster commits, the rate controller (docs/jobs.md
//              "Backpressure") holding the receivers to what batches take:
//              the job's capacity.
//   overload   the generator paced at twice that capacity: the job must
//              commit >= 90% of its capacity with a p99 total delay <= 2 s
//              once settled (--overload-warmup), not growing over the
//              window, and the workers' resident memory flat; then the same
//              for the keyed job (its own unpaced capacity first).
//              --plot-dir writes an SVG per overload run (gnuplot): events/s
//              and total delay of every batch since the submit.
// Throughput is the job's total_input over the window / the window; delays
// are the per-batch BatchSummary of every batch committed in the window
// (DescribeJob on the leader, polled every 2 s; it keeps the last 20).
//
// Target: >= 500,000 events/s with 1 s batches and p99 total
// delay < 2 batch intervals. Printed as met / NOT met; the benchmark exits 0
// whatever the figures, and 1 only if a cluster cannot start or a job FAILED.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/bench_cluster.h"
#include "lib/common/clock.h"
#include "lib/common/config.h"
#include "lib/rpc/driver_client.h"
#include "lib/source/generator_source.h"
#include "test/harness/certs.h"
#include "test/harness/local_cluster.h"
#include "test/harness/paths.h"
#include "test/harness/subprocess.h"
#include "test/harness/util.h"

namespace {

using sluice::bench::Bench;
using sluice::bench::Clock;
using sluice::bench::Describe;
using sluice::bench::Mean;
using sluice::bench::Percentile;
using sluice::bench::Since;
using sluice::bench::Sleep;
using sluice::bench::WorkersRssMb;
using sluice::testing::LocalCluster;

std::unique_ptr<Bench> StartCluster(const std::string& dir, int drivers, std::vector<std::string> worker_flags) {
  return sluice::bench::StartCluster("e2e_bench", {.dir = dir,
                                                   .drivers = drivers,
                                                   .workers = 2,
                                                   .worker_flags = std::move(worker_flags),
                                                   .log_level = "warn"});
}

// Accepted offsets of every partition of `source` summed; -1 while any
// partition has no worker or start yet. `paused` set if a receiver paused.
int64_t AcceptedOffsets(Bench& b, const std::string& source, bool* paused) {
  sluice::proto::ListSourcesRequest request;
  request.set_source(source);
  sluice::Result<sluice::proto::ListSourcesResponse> listed = b.leader->ListSources(request, std::chrono::seconds(2));
  if (!listed.ok() || listed->sources_size() != 1) return -1;
  const sluice::proto::ListSourcesResponse& response = *listed;
  int64_t sum = 0;
  for (const auto& p : response.sources(0).partitions()) {
    if (p.next_offset() < 0 || p.worker().empty()) return -1;
    if (p.receiver().paused()) *paused = true;
    sum += p.next_offset();
  }
  return sum;
}

struct BaselineResult {
  double events_per_s = 0;
  double seconds = 0;
  bool paused = false;
};

// The receivers alone: a generator source, no job.
std::optional<BaselineResult> RunBaseline(const std::string& dir, int drivers, int partitions, int payload,
                                          double seconds) {
  std::unique_ptr<Bench> b =
      StartCluster(dir, drivers, {"--block-memory-mb", "3072", "--block-disk-mb", "0"});
  if (!b) return std::nullopt;
  std::string out;
  if (b->Ctl({"source", "add", "base", "--kind", "generator", "--partitions", std::to_string(partitions), "--rate",
              "0", "--payload-bytes", std::to_string(payload)},
             &out) != 0) {
    std::fprintf(stderr, "e2e_bench: source add failed: %s", out.c_str());
    return std::nullopt;
  }
  bool paused = false;
  if (!sluice::testing::WaitUntil([&] { return AcceptedOffsets(*b, "base", &paused) >= 0; },
                                  std::chrono::milliseconds(20'000), std::chrono::milliseconds(100))) {
    std::fprintf(stderr, "e2e_bench: the baseline source's receivers did not start\n");
    return std::nullopt;
  }
  Sleep(1.0);  // warm-up
  BaselineResult r;
  const int64_t start = AcceptedOffsets(*b, "base", &r.paused);
  const auto t0 = Clock::now();
  int64_t last = start;
  double last_t = 0;
  // Stop early if a receiver pauses (its store is full): past that point
  // the rate is the store's, not the receivers'.
  while (Since(t0) < seconds && !r.paused) {
    Sleep(0.5);
    bool paused_now = false;
    const int64_t now = AcceptedOffsets(*b, "base", &paused_now);
    if (now < 0) continue;
    if (paused_now) {
      r.paused = true;
      break;
    }
    last = now;
    last_t = Since(t0);
  }
  r.seconds = last_t;
  r.events_per_s = last_t > 0 ? static_cast<double>(last - start) / last_t : 0;
  return r;
}

struct JobResult {
  bool failed = false;
  std::string stop_reason;
  double events_per_s = 0;
  double seconds = 0;
  std::vector<int64_t> total_delay, scheduling_delay, processing;
  int64_t batches_behind = 0;  // planned but not committed at the end
  int64_t shuffle_bytes = 0;   // of the batches measured
  int64_t state_keys = 0;      // at the end
  std::vector<sluice::bench::Point> timeline;  // every batch committed, from the first
  // The workers' resident memory, summed: the largest sample in the first
  // and in the second half of the window (one every poll, ~2 s).
  double rss_start_mb = 0, rss_end_mb = 0;
  double blocks_start_mb = 0, blocks_end_mb = 0;  // what their block stores hold
  int64_t rate_limit = 0;       // the leader's limit at the end
  std::string rate_limit_reason;
};

// The stateless job's operators, and the keyed one's.
constexpr const char* kStatelessOps =
    "  - parse: {format: json}\n"
    "  - filter: \"v >= 100000\"\n"  // keeps ~90%
    "  - project: {fields: [id, key, v]}\n";
constexpr const char* kKeyedOps =
    "  - parse: {format: json}\n"
    "  - key_by: key\n"
    "  - window: {type: tumbling, length: 10s}\n"
    "  - aggregate: [{fn: count}]\n";

// The job at `rate_per_partition` (0: unpaced) for `warmup` + `seconds`.
std::optional<JobResult> RunJob(const std::string& dir, int drivers, int partitions, int payload,
                                int64_t rate_per_partition, double warmup, double seconds, const char* operators,
                                int64_t keys) {
  // A second or two of 300 MB/s stays in memory while its batch runs.
  std::unique_ptr<Bench> b = StartCluster(dir, drivers, {"--block-memory-mb", "2048"});
  if (!b) return std::nullopt;
  const std::string file = dir + "/e2e.yaml";
  const std::string text = "name: e2e\n"
                           "batch_interval: 1s\n"
                           "sources:\n"
                           "  - {name: ev, kind: generator, partitions: " + std::to_string(partitions) +
                           ", rate: " + std::to_string(rate_per_partition) +
                           ", keys: " + std::to_string(keys) + ", payload_bytes: " + std::to_string(payload) + "}\n"
                           "reduce_partitions: 4\n"
                           "operators:\n" + operators +
                           "sink:\n"
                           "  null:\n";
  std::string out;
  if (!sluice::testing::WriteFile(file, text).ok() || b->Ctl({"submit", file}, &out) != 0) {
    std::fprintf(stderr, "e2e_bench: submit failed: %s", out.c_str());
    return std::nullopt;
  }
  JobResult r;
  auto check_failed = [&](const sluice::proto::JobInfo& info) {
    if (info.state() == "stopped") {
      r.failed = true;
      r.stop_reason = info.stop_reason();
    }
    return r.failed;
  };
  // Warm-up: until the first batch commits, then `warmup` more seconds.
  const auto submitted = Clock::now();
  const int64_t submitted_unix_ms = sluice::Clock::Real()->UnixMillis();
  std::map<int64_t, sluice::proto::BatchSummary> all;  // every batch seen, for the timeline
  auto note = [&](const sluice::proto::JobInfo& info) {
    for (const auto& s : info.recent_batches()) all[s.batch_id()] = s;
  };
  while (Since(submitted) < 30) {
    auto info = Describe(*b, "e2e");
    if (info && check_failed(*info)) return r;
    if (info && info->last_committed_batch() > 0) break;
    Sleep(0.2);
  }
  for (const auto warm = Clock::now(); Since(warm) < warmup;) {
    Sleep(std::min(2.0, std::max(0.1, warmup - Since(warm))));
    if (auto info = Describe(*b, "e2e")) note(*info);
  }
  std::optional<sluice::proto::JobInfo> first = Describe(*b, "e2e");
  if (!first) {
    std::fprintf(stderr, "e2e_bench: DescribeJob failed\n");
    return std::nullopt;
  }
  if (check_failed(*first)) return r;
  note(*first);
  double rss_first_half = WorkersRssMb(*b->cluster), rss_second_half = 0;
  const double blocks_start = sluice::bench::WorkersBlockMb(*b->cluster);
  const auto t0 = Clock::now();
  const int64_t input0 = first->total_input();
  const int64_t committed0 = first->last_committed_batch();
  std::map<int64_t, sluice::proto::BatchSummary> batches;  // committed in the window, by id
  sluice::proto::JobInfo last = *first;
  double last_t = 0;
  while (Since(t0) < seconds) {
    Sleep(std::min(2.0, std::max(0.1, seconds - Since(t0))));
    std::optional<sluice::proto::JobInfo> info = Describe(*b, "e2e");
    if (!info) continue;
    if (check_failed(*info)) return r;
    last = *info;
    last_t = Since(t0);
    note(*info);
    double& half = last_t < seconds / 2 ? rss_first_half : rss_second_half;
    half = std::max(half, WorkersRssMb(*b->cluster));
    for (const auto& s : info->recent_batches()) {
      if (s.batch_id() > committed0) batches[s.batch_id()] = s;
    }
  }
  r.seconds = last_t;
  r.events_per_s = last_t > 0 ? static_cast<double>(last.total_input() - input0) / last_t : 0;
  r.batches_behind = last.last_planned_batch() - last.last_committed_batch();
  r.state_keys = last.state_keys();
  r.rss_start_mb = rss_first_half;
  r.rss_end_mb = rss_second_half;
  r.blocks_start_mb = blocks_start;
  r.blocks_end_mb = sluice::bench::WorkersBlockMb(*b->cluster);
  r.rate_limit = last.rate_limit();
  r.rate_limit_reason = last.rate_limit_reason();
  for (const auto& [id, s] : all) {
    r.timeline.push_back({static_cast<double>(s.batch_time_unix_ms() - submitted_unix_ms) / 1000, s.input_count(),
                          s.total_delay_ms()});
  }
  for (const auto& [id, s] : batches) {
    r.shuffle_bytes += s.shuffle_bytes();
    r.total_delay.push_back(s.total_delay_ms());
    r.scheduling_delay.push_back(s.scheduling_delay_ms());
    r.processing.push_back(s.processing_ms());
  }
  return r;
}

void PrintJob(const char* title, const JobResult& r, double baseline, int payload, bool is_target) {
  const double p99 = Percentile(r.total_delay, 0.99);
  std::printf("%s\n", title);
  std::printf("  events/s                 %12.0f\n", r.events_per_s);
  std::printf("  MB/s                     %12.0f\n", r.events_per_s * payload / 1e6);
  std::printf("  ratio to baseline        %12.3f\n", baseline > 0 ? r.events_per_s / baseline : 0.0);
  std::printf("  total delay p50 / p99 ms %6.0f / %-6.0f\n", Percentile(r.total_delay, 0.5), p99);
  std::printf("  scheduling p50 / p99 ms  %6.0f / %-6.0f\n", Percentile(r.scheduling_delay, 0.5),
              Percentile(r.scheduling_delay, 0.99));
  std::printf("  processing p50 / p99 ms  %6.0f / %-6.0f\n", Percentile(r.processing, 0.5),
              Percentile(r.processing, 0.99));
  std::printf("  batches measured         %12zu   (over %.1f s; %lld planned, not committed, at the end)\n",
              r.total_delay.size(), r.seconds, static_cast<long long>(r.batches_behind));
  if (r.shuffle_bytes > 0) {
    std::printf("  shuffle MB/s             %12.1f   (state: %lld keys at the end)\n",
                r.seconds > 0 ? static_cast<double>(r.shuffle_bytes) / r.seconds / 1e6 : 0.0,
                static_cast<long long>(r.state_keys));
  }
  if (is_target) {
    const bool met = r.events_per_s >= 500'000 && !r.total_delay.empty() && p99 < 2000;
    std::printf("  target (>= 500,000 events/s, p99 total delay < 2 x 1 s): %s\n", met ? "met" : "NOT met");
  }
}

// Overload: the job paced at twice its capacity (what it committed with
// unpaced input) must commit >= 90% of that capacity, with a p99 total
// delay <= 2 s once settled that does not grow, and flat worker memory.
void PrintOverload(const char* title, const JobResult& capacity, const JobResult& r, double offered) {
  const double ratio = capacity.events_per_s > 0 ? r.events_per_s / capacity.events_per_s : 0;
  const double p99 = Percentile(r.total_delay, 0.99);
  const size_t n = r.total_delay.size(), third = n / 3;
  const double growth = Mean(r.total_delay, n - third, n) - Mean(r.total_delay, 0, third);
  const bool memory_flat = r.rss_end_mb <= r.rss_start_mb * 1.1 + 50;
  std::printf("%s\n", title);
  std::printf("  offered (paced) events/s %12.0f   (2 x capacity)\n", offered);
  std::printf("  committed events/s       %12.0f   ratio to capacity %.3f (target >= 0.9: %s)\n", r.events_per_s, ratio,
              ratio >= 0.9 ? "met" : "NOT met");
  std::printf("  total delay p50 / p99 ms %6.0f / %-6.0f (target p99 <= 2000: %s)\n", Percentile(r.total_delay, 0.5),
              p99, n > 0 && p99 <= 2000 ? "met" : "NOT met");
  std::printf("  delay growth ms          %12.0f   (last third of the window's batches minus the first: %s)\n",
              growth, growth <= 250 ? "not growing" : "GROWING");
  std::printf("  workers' RSS MB          %6.0f -> %-6.0f (the most in the first half of the window, then in the "
              "second: %s)\n", r.rss_start_mb, r.rss_end_mb, memory_flat ? "flat" : "GROWING");
  std::printf("  blocks held MB           %6.0f -> %-6.0f (the block stores, in memory and spilled)\n",
              r.blocks_start_mb, r.blocks_end_mb);
  std::printf("  rate limit at the end    %12lld   (%s)\n", static_cast<long long>(r.rate_limit),
              r.rate_limit_reason.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Generator -> parse -> filter -> project -> null on a local cluster vs receivers alone",
               "e2e_bench");
  double seconds = 15, warmup = 5;
  int payload = 600, partitions = 2, drivers = 1;
  int64_t rate = 500'000;
  bool no_unlimited = false, no_keyed = false, no_overload = false;
  double overload_warmup = 15;
  std::string plot_dir;
  app.add_option("--seconds", seconds, "Measurement window of each job phase")->capture_default_str();
  app.add_option("--warmup", warmup, "Seconds after the first commit before measuring")->capture_default_str();
  app.add_option("--payload", payload, "Event size in bytes (the generator's payload_bytes)")->capture_default_str();
  app.add_option("--partitions", partitions, "Generator partitions")->capture_default_str();
  app.add_option("--rate", rate, "Paced phase: events/s in total")->capture_default_str();
  app.add_option("--drivers", drivers, "driverd processes (1 saves CPU; 3 as in production)")->capture_default_str();
  app.add_flag("--no-unlimited", no_unlimited, "Skip the unpaced phase");
  app.add_flag("--no-keyed", no_keyed, "Skip the keyed (shuffle + state) phases");
  app.add_flag("--no-overload", no_overload, "Skip the overload phases (paced at twice the unpaced rate)");
  app.add_option("--overload-warmup", overload_warmup, "Seconds after the first commit before measuring an overload")
      ->capture_default_str();
  app.add_option("--plot-dir", plot_dir, "Write SVG plots (gnuplot) of the overload runs here");
  if (std::optional<int> code = sluice::ParseCommandLine(app, argc, argv)) return *code;

  sluice::source::GeneratorOptions gen_options{.partitions = 1, .payload_size = payload};
  if (sluice::Status st = gen_options.Validate(); !st.ok()) {
    std::fprintf(stderr, "e2e_bench: %s\n", std::string(st.message()).c_str());
    return sluice::kExitUsage;
  }
  const size_t event_bytes =
      sluice::source::GeneratorSource(gen_options, sluice::Clock::Real()).EventString(0, 0).size();

  sluice::testing::TempDir dir("sluice-e2e-bench");
  std::optional<BaselineResult> base = RunBaseline(dir.Sub("baseline"), drivers, partitions, payload, 4.0);
  if (!base) return 1;
  std::optional<JobResult> paced =
      RunJob(dir.Sub("paced"), drivers, partitions, payload, rate / partitions, warmup, seconds, kStatelessOps, 1000);
  if (!paced) return 1;
  std::optional<JobResult> keyed;
  if (!no_keyed) {
    keyed = RunJob(dir.Sub("keyed"), drivers, partitions, payload, rate / partitions, warmup, seconds, kKeyedOps,
                   100'000);
    if (!keyed) return 1;
  }
  std::optional<JobResult> unlimited;
  if ((!no_unlimited || !no_overload) && !paced->failed) {
    // The rate controller ramps up from its initial rate first.
    unlimited = RunJob(dir.Sub("unlimited"), drivers, partitions, payload, 0, overload_warmup, seconds,
                       kStatelessOps, 1000);
    if (!unlimited) return 1;
  }
  // Overload: paced at twice the capacity the unpaced phase found.
  std::optional<JobResult> overload, keyed_unlimited, keyed_overload;
  double overload_rate = 0, keyed_overload_rate = 0;
  if (!no_overload && unlimited && !unlimited->failed && unlimited->events_per_s > 0) {
    overload_rate = 2 * unlimited->events_per_s;
    overload = RunJob(dir.Sub("overload"), drivers, partitions, payload,
                      static_cast<int64_t>(overload_rate) / partitions, overload_warmup, seconds, kStatelessOps, 1000);
    if (!overload) return 1;
  }
  if (!no_overload && !no_keyed) {
    keyed_unlimited = RunJob(dir.Sub("keyed-unlimited"), drivers, partitions, payload, 0, overload_warmup, seconds,
                             kKeyedOps, 100'000);
    if (!keyed_unlimited) return 1;
    if (!keyed_unlimited->failed && keyed_unlimited->events_per_s > 0) {
      keyed_overload_rate = 2 * keyed_unlimited->events_per_s;
      keyed_overload = RunJob(dir.Sub("keyed-overload"), drivers, partitions, payload,
                              static_cast<int64_t>(keyed_overload_rate) / partitions, overload_warmup, seconds,
                              kKeyedOps, 100'000);
      if (!keyed_overload) return 1;
    }
  }

  std::printf("e2e: generator -> parse json -> filter (~90%% pass) -> project -> null sink, 1 s batches\n");
  std::printf("  cluster: ZooKeeper, %d driverd, 2 workerd, one machine (%u cores); %zu-byte events, %d partitions\n",
              drivers, std::thread::hardware_concurrency(), event_bytes, partitions);
  std::printf("baseline: receivers alone (generator source, no job, rate unlimited), accepted offsets over %.1f s%s\n",
              base->seconds, base->paused ? " (stopped early: a receiver paused)" : "");
  std::printf("  events/s                 %12.0f\n", base->events_per_s);
  std::printf("  MB/s                     %12.0f\n", base->events_per_s * payload / 1e6);
  int code = 0;
  for (const auto* phase : {&*paced, unlimited ? &*unlimited : nullptr}) {
    if (phase == nullptr) continue;
    const bool is_paced = phase == &*paced;
    if (phase->failed) {
      std::printf("job (%s) FAILED: %s\n", is_paced ? "paced" : "unlimited", phase->stop_reason.c_str());
      code = 1;
      continue;
    }
    const std::string title = is_paced ? "job, generator paced at " + std::to_string(rate) + " events/s in total"
                                       : std::string("job, generator unpaced (rate 0: the most the cluster commits)");
    PrintJob(title.c_str(), *phase, base->events_per_s, payload, true);
  }
  if (keyed) {
    if (keyed->failed) {
      std::printf("keyed job FAILED: %s\n", keyed->stop_reason.c_str());
      code = 1;
    } else {
      const std::string title = "keyed job (key_by 100,000 keys -> 10 s tumbling count), paced at " +
                                std::to_string(rate) + " events/s in total";
      PrintJob(title.c_str(), *keyed, base->events_per_s, payload, false);
      const double ratio = paced->events_per_s > 0 ? keyed->events_per_s / paced->events_per_s : 0.0;
      std::printf("ratio: keyed / stateless (paced, this run) = %.3f   target >= 0.6: %s\n", ratio,
                  ratio >= 0.6 ? "met" : "NOT met");
    }
  }
  if (!paced->failed) {
    std::printf("ratio: job (paced) / receivers alone = %.3f\n",
                base->events_per_s > 0 ? paced->events_per_s / base->events_per_s : 0.0);
  }
  if (unlimited && !unlimited->failed) {
    std::printf("ratio: job (unpaced) / receivers alone = %.3f\n",
                base->events_per_s > 0 ? unlimited->events_per_s / base->events_per_s : 0.0);
  }
  const struct {
    const char* name;
    const char* title;
    std::optional<JobResult>* capacity;
    std::optional<JobResult>* run;
    double offered;
  } overloads[] = {
      {"overload", "overload: stateless job, generator paced at 2 x its unpaced rate", &unlimited, &overload,
       overload_rate},
      {"keyed-overload", "overload: keyed job, generator paced at 2 x its unpaced rate", &keyed_unlimited,
       &keyed_overload, keyed_overload_rate},
  };
  for (const auto& o : overloads) {
    if (!*o.run) continue;
    if ((*o.run)->failed) {
      std::printf("%s FAILED: %s\n", o.name, (*o.run)->stop_reason.c_str());
      code = 1;
      continue;
    }
    if (o.run == &keyed_overload) PrintJob("keyed job, generator unpaced (its capacity)", **o.capacity,
                                           base->events_per_s, payload, false);
    PrintOverload(o.title, **o.capacity, **o.run, o.offered);
    if (!plot_dir.empty()) sluice::bench::Plot(plot_dir, o.name, o.title, (*o.run)->timeline, 1.0);
  }
  return code;
}
