// keyed_scale_bench: a keyed job's throughput on 1, 2, 3 and 4 workers of a
// local cluster of real processes (ZooKeeper, one driverd, N workerd), each
// run on a fresh cluster, against the 1-worker run of the same session.
//
//   keyed_scale_bench [--workers 1,2,3,4] [--seconds 15] [--warmup 8]
//                     [--keys 100000] [--reduce-partitions 8] [--partitions 4]
//
// The job: generator (unpaced, --partitions partitions, 600-byte events,
// --keys distinct keys) -> parse json -> key_by key -> 10 s tumbling window
// over batch time -> count -> null sink, 1 s batches. Unpaced means the rate
// controller (docs/jobs.md "Backpressure") holds the receivers to what the
// batches take, so events/s committed is the job's capacity on that cluster.
//
// All workers share this machine's cores, so more workers cannot be faster
// here: the figures show what spreading a job costs (more of the shuffle
// crosses gRPC between processes, more processes compete for 2 cores), not a
// speed-up. On separate machines each worker brings its own cores.
//
// Printed per run: events/s committed, the ratio to the 1-worker run, the
// shuffle's MB/s, p50/p99 of the batches' processing time, and the
// workers' resident memory summed. Exits 0
// whatever the figures; 1 only if a cluster cannot start or the job fails.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/bench_cluster.h"
#include "lib/common/config.h"
#include "test/harness/util.h"

namespace {

using sluice::bench::Bench;
using sluice::bench::Clock;
using sluice::bench::Describe;
using sluice::bench::Percentile;
using sluice::bench::Since;
using sluice::bench::Sleep;

struct Run {
  int workers = 0;
  bool failed = false;
  std::string stop_reason;
  double events_per_s = 0;
  double shuffle_mb_per_s = 0;
  std::vector<int64_t> processing;
  double rss_mb = 0;
  int64_t state_keys = 0;
};

std::optional<Run> RunWith(const std::string& dir, int workers, int partitions, int reduce_partitions, int64_t keys,
                           double warmup, double seconds) {
  std::unique_ptr<Bench> b = sluice::bench::StartCluster(
      "keyed_scale_bench", {.dir = dir,
                            .drivers = 1,
                            .workers = workers,
                            .worker_flags = {"--block-memory-mb", "1024"},
                            .log_level = "warn"});
  if (!b) return std::nullopt;
  const std::string file = dir + "/keyed.yaml";
  const std::string text = "name: keyed\n"
                           "batch_interval: 1s\n"
                           "sources:\n"
                           "  - {name: ev, kind: generator, partitions: " + std::to_string(partitions) +
                           ", rate: 0, keys: " + std::to_string(keys) + ", payload_bytes: 600}\n"
                           "reduce_partitions: " + std::to_string(reduce_partitions) + "\n"
                           "operators:\n"
                           "  - parse: {format: json}\n"
                           "  - key_by: key\n"
                           "  - window: {type: tumbling, length: 10s}\n"
                           "  - aggregate: [{fn: count}]\n"
                           "sink:\n"
                           "  null:\n";
  std::string out;
  if (!sluice::testing::WriteFile(file, text).ok() || b->Ctl({"submit", file}, &out) != 0) {
    std::fprintf(stderr, "keyed_scale_bench: submit failed: %s", out.c_str());
    return std::nullopt;
  }
  Run r;
  r.workers = workers;
  auto failed = [&](const sluice::proto::JobInfo& info) {
    if (info.state() == "stopped" || info.state() == "failed") {
      r.failed = true;
      r.stop_reason = info.stop_reason();
    }
    return r.failed;
  };
  const auto submitted = Clock::now();
  while (Since(submitted) < 30) {
    auto info = Describe(*b, "keyed");
    if (info && failed(*info)) return r;
    if (info && info->last_committed_batch() > 0) break;
    Sleep(0.2);
  }
  Sleep(warmup);
  std::optional<sluice::proto::JobInfo> first = Describe(*b, "keyed");
  if (!first) {
    std::fprintf(stderr, "keyed_scale_bench: DescribeJob failed\n");
    return std::nullopt;
  }
  if (failed(*first)) return r;
  const auto t0 = Clock::now();
  std::map<int64_t, sluice::proto::BatchSummary> batches;
  sluice::proto::JobInfo last = *first;
  double last_t = 0;
  while (Since(t0) < seconds) {
    Sleep(std::min(2.0, std::max(0.1, seconds - Since(t0))));
    std::optional<sluice::proto::JobInfo> info = Describe(*b, "keyed");
    if (!info) continue;
    if (failed(*info)) return r;
    last = *info;
    last_t = Since(t0);
    r.rss_mb = std::max(r.rss_mb, sluice::bench::WorkersRssMb(*b->cluster));
    for (const auto& s : info->recent_batches()) {
      if (s.batch_id() > first->last_committed_batch()) batches[s.batch_id()] = s;
    }
  }
  r.events_per_s = last_t > 0 ? static_cast<double>(last.total_input() - first->total_input()) / last_t : 0;
  int64_t shuffle = 0;
  for (const auto& [id, s] : batches) {
    shuffle += s.shuffle_bytes();
    r.processing.push_back(s.processing_ms());
  }
  r.shuffle_mb_per_s = last_t > 0 ? static_cast<double>(shuffle) / last_t / 1e6 : 0;
  r.state_keys = last.state_keys();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("A keyed job's throughput on 1..4 workers of one machine, against 1 worker", "keyed_scale_bench");
  std::string workers_list = "1,2,3,4";
  double seconds = 15, warmup = 8;
  int64_t keys = 100'000;
  int reduce_partitions = 8, partitions = 4;
  app.add_option("--workers", workers_list, "Worker counts to run, comma-separated; the first is the baseline")
      ->capture_default_str();
  app.add_option("--seconds", seconds, "Measurement window of each run")->capture_default_str();
  app.add_option("--warmup", warmup, "Seconds after the first commit before measuring")->capture_default_str();
  app.add_option("--keys", keys, "Distinct keys the generator draws from")->capture_default_str();
  app.add_option("--reduce-partitions", reduce_partitions, "The job's reduce_partitions")->capture_default_str();
  app.add_option("--partitions", partitions, "Generator partitions (receivers)")->capture_default_str();
  if (std::optional<int> code = sluice::ParseCommandLine(app, argc, argv)) return *code;
  std::vector<int> counts;
  std::stringstream in(workers_list);
  for (std::string item; std::getline(in, item, ',');) {
    const int n = std::atoi(item.c_str());
    if (n < 1 || n > 8) {
      std::fprintf(stderr, "keyed_scale_bench: --workers: '%s' is not a count in 1..8\n", item.c_str());
      return sluice::kExitUsage;
    }
    counts.push_back(n);
  }
  if (counts.empty()) {
    std::fprintf(stderr, "keyed_scale_bench: --workers names no count\n");
    return sluice::kExitUsage;
  }

  sluice::testing::TempDir dir("sluice-keyed-scale-bench");
  std::vector<Run> runs;
  for (int n : counts) {
    std::optional<Run> r =
        RunWith(dir.Sub("w" + std::to_string(n)), n, partitions, reduce_partitions, keys, warmup, seconds);
    if (!r) return 1;
    runs.push_back(*r);
    if (r->failed) {
      std::fprintf(stderr, "keyed_scale_bench: the job FAILED on %d workers: %s\n", n, r->stop_reason.c_str());
      return 1;
    }
  }
  std::printf("keyed_scale_bench: generator (%d partitions, %lld keys, 600-byte events, unpaced) -> parse -> "
              "key_by -> 10 s tumbling count -> null; reduce_partitions %d; 1 s batches; %.0f s windows\n",
              partitions, static_cast<long long>(keys), reduce_partitions, seconds);
  std::printf("all workers share this machine's cores: the ratio shows the cost of spreading a job, not a "
              "speed-up\n");
  std::printf("%8s %12s %10s %12s %18s %10s\n", "workers", "events/s", "ratio", "shuffle", "processing p50/p99",
              "RSS MB");
  const double baseline = runs.front().events_per_s;
  for (const Run& r : runs) {
    std::printf("%8d %12.0f %10.3f %7.1f MB/s %8.0f / %-7.0f %10.0f\n", r.workers, r.events_per_s,
                baseline > 0 ? r.events_per_s / baseline : 0.0, r.shuffle_mb_per_s, Percentile(r.processing, 0.5),
                Percentile(r.processing, 0.99), r.rss_mb);
  }
  return 0;
}
