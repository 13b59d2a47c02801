// backlog_bench: a job started at `earliest` on a Kafka backlog while new
// events keep arriving — how fast it drains, in batches of what size, with
// how much worker memory, and whether the delay comes back down after.
//
//   backlog_bench [--events 500000] [--partitions 128] [--arrivals 50000]
//                 [--bound 4000] [--after 10] [--plot-dir DIR]
//
// Each phase on a fresh local cluster (ZooKeeper, 1 driverd, 2 workerd with
// --block-memory-mb 1024, the Kafka mock with one topic of --partitions
// partitions): --events 600-byte JSON events are produced first (the mock
// keeps about 5 MiB per partition: 500,000 events need 60 partitions, and
// the arrivals need room too), then kafka-tool produces --arrivals events/s
// on top while the job — parse json -> filter -> project -> null, 1 s
// batches — reads the topic from `earliest`.
//   unpaced   backpressure disabled, no max_records_per_batch: nothing holds
//             the job back; its drain rate is the baseline.
//   bounded   the rate controller on and max_records_per_batch: --bound.
// The backlog is drained when every partition's committed position reaches
// the partition's end offset at the submit (the high watermarks then). The
// drain rate is the backlog over the time from the first batch with data
// (its batch time less one interval) to the batch time of the batch that
// finished the drain. Targets for the bounded phase: drain rate >= 80% of
// the unpaced phase's; no batch takes more than --bound offsets from a
// partition (read back from the WAL); workers' peak RSS under their block
// budget plus what they use without blocks (printed); the total delay p99 of
// the batches in the --after seconds after the drain < 2 s. Exits 0 whatever
// the figures, 1 only if a cluster cannot start, a job FAILED or the drain
// does not finish within 120 s.
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/bench_cluster.h"
#include "lib/common/clock.h"
#include "lib/common/config.h"
#include "lib/source/kafka_source.h"

namespace {

using sluice::bench::Bench;
using sluice::bench::Clock;
using sluice::bench::Describe;
using sluice::bench::Percentile;
using sluice::bench::Since;
using sluice::bench::Sleep;
using sluice::bench::WorkersRssMb;

struct Options {
  int64_t events = 500'000;
  int partitions = 128;
  int64_t arrivals = 50'000;
  int64_t bound = 4000;
  double after = 10;
  std::string plot_dir;
};

struct Result {
  bool failed = false;
  std::string why;
  double drain_s = 0;
  double drain_rate = 0;
  int64_t largest_range = 0;  // offsets of one partition in one batch
  int64_t batches_to_drain = 0;
  double peak_rss_mb = 0, idle_rss_mb = 0;
  std::vector<int64_t> delays_after;  // total delay of the batches after the drain
  std::vector<sluice::bench::Point> timeline;
};

std::optional<Result> Run(const std::string& dir, const Options& o, bool bounded) {
  std::unique_ptr<Bench> b = sluice::bench::StartCluster(
      "backlog_bench", {.dir = dir,
                        .drivers = 1,
                        .workers = 2,
                        .kafka_topics = {{"backlog", o.partitions}},
                        .worker_flags = {"--block-memory-mb", "1024"},
                        .log_level = "warn"});
  if (!b) return std::nullopt;
  const std::string brokers = b->cluster->kafka()->bootstrap();
  Result r;
  r.idle_rss_mb = WorkersRssMb(*b->cluster);
  const auto produce_started = Clock::now();
  sluice::Result<int> produced = sluice::testing::RunCommand(
      {sluice::testing::kKafkaToolPath, "produce", "--brokers", brokers, "--topic", "backlog", "--count",
       std::to_string(o.events), "--size", "600", "--json"},
      dir + "/produce.log", std::chrono::seconds(300));
  if (!produced.ok() || *produced != 0) {
    std::fprintf(stderr, "backlog_bench: producing the backlog failed (see %s/produce.log)\n", dir.c_str());
    return std::nullopt;
  }
  std::printf("  (%s) backlog of %lld events produced in %.1f s\n", bounded ? "bounded" : "unpaced",
              static_cast<long long>(o.events), Since(produce_started));
  // Where the backlog ends in each partition.
  auto kafka = sluice::source::KafkaSource::Create({.name = "probe", .brokers = brokers, .topic = "backlog"});
  if (!kafka.ok()) return std::nullopt;
  std::map<int, int64_t> ends;
  for (int p = 0; p < o.partitions; ++p) {
    auto marks = (*kafka)->Watermarks(p);
    if (!marks.ok()) {
      std::fprintf(stderr, "backlog_bench: watermarks of partition %d: %s\n", p, marks.status().ToString().c_str());
      return std::nullopt;
    }
    ends[p] = marks->second;
  }
  // Arrivals on top, for as long as the phase may last.
  auto arrivals = sluice::testing::Subprocess::Start(
      {sluice::testing::kKafkaToolPath, "produce", "--brokers", brokers, "--topic", "backlog", "--count",
       std::to_string(o.arrivals * 200), "--rate", std::to_string(o.arrivals), "--first", std::to_string(o.events),
       "--size", "600", "--json"},
      {.log_path = dir + "/arrivals.log"});
  if (!arrivals.ok()) return std::nullopt;
  std::string job = "name: drain\nbatch_interval: 1s\n";
  job += bounded ? "max_records_per_batch: " + std::to_string(o.bound) + "\n" : "backpressure: {enabled: false}\n";
  job += "sources:\n  - {name: backlog, kind: kafka, brokers: " + brokers + ", topic: backlog, start: earliest}\n"
         "operators:\n"
         "  - parse: {format: json}\n"
         "  - filter: \"id >= 0\"\n"
         "  - project: {fields: [id, g]}\n"
         "sink: {null: {}}\n";
  const std::string file = dir + "/drain.yaml";
  std::string out;
  if (!sluice::testing::WriteFile(file, job).ok() || b->Ctl({"submit", file}, &out) != 0) {
    std::fprintf(stderr, "backlog_bench: submit failed: %s", out.c_str());
    return std::nullopt;
  }
  const int64_t submitted_unix_ms = sluice::Clock::Real()->UnixMillis();
  std::map<int64_t, sluice::proto::BatchSummary> batches;
  int64_t drained_batch = 0;  // the first batch after which every partition is past its end
  const auto t0 = Clock::now();
  std::optional<Clock::time_point> drained_at;
  while (Since(t0) < 120 && (!drained_at || Since(*drained_at) < o.after)) {
    Sleep(0.5);
    std::optional<sluice::proto::JobInfo> info = Describe(*b, "drain");
    if (!info) continue;
    if (info->state() == "stopped") {
      r.failed = true;
      r.why = info->stop_reason();
      break;
    }
    r.peak_rss_mb = std::max(r.peak_rss_mb, WorkersRssMb(*b->cluster));
    for (const auto& s : info->recent_batches()) batches[s.batch_id()] = s;
    if (drained_at) continue;
    int done = 0;
    for (const auto& pos : info->positions()) {
      if (pos.offset() >= ends[pos.partition()]) ++done;
    }
    if (done == o.partitions) {
      drained_at = Clock::now();
      drained_batch = info->last_committed_batch();
    }
  }
  arrivals.value()->Kill();
  if (r.failed) return r;
  if (!drained_at) {
    r.failed = true;
    r.why = "the backlog was not drained within 120 s";
    return r;
  }
  int64_t first_data = 0;
  for (const auto& [id, s] : batches) {
    if (first_data == 0 && s.input_count() > 0) first_data = id;
    r.timeline.push_back({static_cast<double>(s.batch_time_unix_ms() - submitted_unix_ms) / 1000, s.input_count(),
                          s.total_delay_ms()});
    if (id > drained_batch) r.delays_after.push_back(s.total_delay_ms());
  }
  if (first_data > 0 && batches.contains(drained_batch)) {
    r.drain_s = static_cast<double>(batches[drained_batch].batch_time_unix_ms() -
                                    (batches[first_data].batch_time_unix_ms() - 1000)) / 1000;
    r.batches_to_drain = drained_batch - first_data + 1;
  }
  r.drain_rate = r.drain_s > 0 ? static_cast<double>(o.events) / r.drain_s : 0;
  // The largest range of one partition in one batch, from the WAL.
  sluice::proto::ReadWalRequest request;
  request.set_from_seq(1);
  request.set_max_records(1'000'000);
  sluice::Result<sluice::proto::ReadWalResponse> wal = b->leader->ReadWal(request);
  if (wal.ok()) {
    for (const auto& e : wal->records()) {
      if (!e.record().has_batch_planned()) continue;
      for (const auto& range : e.record().batch_planned().ranges()) {
        r.largest_range = std::max(r.largest_range, range.end_offset() - range.start_offset());
      }
    }
  }
  return r;
}

void Print(const char* title, const Result& r) {
  std::printf("%s\n", title);
  if (r.failed) {
    std::printf("  FAILED: %s\n", r.why.c_str());
    return;
  }
  std::printf("  drained in               %10.1f s   (%lld batches)\n", r.drain_s,
              static_cast<long long>(r.batches_to_drain));
  std::printf("  drain rate events/s      %12.0f\n", r.drain_rate);
  std::printf("  largest batch range      %12lld   offsets of one partition\n", static_cast<long long>(r.largest_range));
  std::printf("  workers' RSS MB          %6.0f idle, %.0f peak\n", r.idle_rss_mb, r.peak_rss_mb);
  std::printf("  total delay after drain  p50 %.0f ms, p99 %.0f ms over %zu batches\n", Percentile(r.delays_after, 0.5),
              Percentile(r.delays_after, 0.99), r.delays_after.size());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("A job started at earliest on a Kafka backlog, unpaced vs bounded", "backlog_bench");
  Options o;
  app.add_option("--events", o.events, "Events in the backlog before the job starts")->capture_default_str();
  app.add_option("--partitions", o.partitions, "Partitions of the topic")->capture_default_str();
  app.add_option("--arrivals", o.arrivals, "New events/s while the job runs")->capture_default_str();
  app.add_option("--bound", o.bound, "max_records_per_batch of the bounded phase")->capture_default_str();
  app.add_option("--after", o.after, "Seconds measured after the drain")->capture_default_str();
  app.add_option("--plot-dir", o.plot_dir, "Write SVG plots (gnuplot) of both phases here");
  if (std::optional<int> code = sluice::ParseCommandLine(app, argc, argv)) return *code;
  sluice::testing::TempDir dir("sluice-backlog-bench");
  std::optional<Result> unpaced = Run(dir.Sub("unpaced"), o, false);
  if (!unpaced) return 1;
  std::optional<Result> bounded = Run(dir.Sub("bounded"), o, true);
  if (!bounded) return 1;
  std::printf("backlog: %lld events of 600 bytes in %d Kafka partitions (mock), %lld events/s arriving, job at earliest\n",
              static_cast<long long>(o.events), o.partitions, static_cast<long long>(o.arrivals));
  Print("unpaced (backpressure disabled, no bound): the baseline", *unpaced);
  const std::string title = "bounded (rate controller on, max_records_per_batch " + std::to_string(o.bound) + ")";
  Print(title.c_str(), *bounded);
  if (unpaced->failed || bounded->failed) return 1;
  const double ratio = unpaced->drain_rate > 0 ? bounded->drain_rate / unpaced->drain_rate : 0;
  std::printf("ratio: bounded / unpaced drain rate = %.3f   target >= 0.8: %s\n", ratio, ratio >= 0.8 ? "met" : "NOT met");
  std::printf("bound: largest range %lld <= %lld: %s\n", static_cast<long long>(bounded->largest_range),
              static_cast<long long>(o.bound), bounded->largest_range <= o.bound ? "met" : "NOT met");
  const double p99 = Percentile(bounded->delays_after, 0.99);
  std::printf("after the drain: p99 total delay %.0f ms   target < 2000: %s\n", p99,
              !bounded->delays_after.empty() && p99 < 2000 ? "met" : "NOT met");
  if (!o.plot_dir.empty()) {
    sluice::bench::Plot(o.plot_dir, "backlog-unpaced", "backlog, unpaced (no controller, no bound)",
                        unpaced->timeline, 1.0);
    sluice::bench::Plot(o.plot_dir, "backlog-bounded", title, bounded->timeline, 1.0);
  }
  return 0;
}
