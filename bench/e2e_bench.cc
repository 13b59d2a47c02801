// e2e_bench: end-to-end throughput of a job on a local cluster of real
// processes (test/harness LocalCluster: ZooKeeper, driverd, 2 workerd) —
// generator -> parse json -> filter -> project -> null sink, 600-byte
// events, 1 s batches — against the receivers' ingest rate measured in the
// same run on the same kind of cluster.
//
//   e2e_bench [--seconds 15] [--warmup 5] [--payload 600] [--partitions 2]
//             [--rate 500000] [--drivers 1] [--no-unlimited] [--no-keyed]
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
//              the cluster commits; delays grow when receivers outrun tasks.
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

using Clock = std::chrono::steady_clock;
using sluice::testing::LocalCluster;

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void Sleep(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

double Percentile(std::vector<int64_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return static_cast<double>(v[i]);
}

// A fresh cluster under `dir` with a client of its leader.
struct Bench {
  std::unique_ptr<LocalCluster> cluster;
  std::unique_ptr<sluice::rpc::DriverClient> leader;
  std::string dir;
  int ctl_runs = 0;

  // sluicectl with `args`; its output in `out`.
  int Ctl(const std::vector<std::string>& args, std::string* out) {
    std::vector<std::string> argv = {sluice::testing::kSluicectlPath, "--coordinator", cluster->coordinator()};
    for (std::string& f : sluice::testing::TlsFlags("admin")) argv.push_back(std::move(f));
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string log = dir + "/ctl" + std::to_string(ctl_runs++) + ".log";
    sluice::Result<int> code = sluice::testing::RunCommand(argv, log, std::chrono::seconds(30));
    *out = sluice::testing::ReadFile(log).value_or("");
    return code.ok() ? *code : -1;
  }
};

// Starts a cluster and waits for a leader; prints why and returns null if not.
std::unique_ptr<Bench> StartCluster(const std::string& dir, int drivers, std::vector<std::string> worker_flags) {
  auto bench = std::make_unique<Bench>();
  bench->dir = dir;
  auto cluster = LocalCluster::Start(
      {.dir = dir, .drivers = drivers, .workers = 2, .worker_flags = std::move(worker_flags), .log_level = "warn"});
  if (!cluster.ok()) {
    std::fprintf(stderr, "e2e_bench: cannot start the cluster: %s\n", cluster.status().ToString().c_str());
    return nullptr;
  }
  bench->cluster = std::move(*cluster);
  std::string leader;
  sluice::testing::WaitUntil(
      [&] {
        for (int i = 0; i < bench->cluster->num_drivers(); ++i) {
          auto st = sluice::testing::GetDriverStatus(bench->cluster->driver_address(i));
          if (st.ok() && st->role() == sluice::proto::DRIVER_ROLE_LEADER) leader = bench->cluster->driver_address(i);
        }
        return !leader.empty();
      },
      std::chrono::milliseconds(30'000), std::chrono::milliseconds(100));
  if (leader.empty()) {
    std::fprintf(stderr, "e2e_bench: no leader within 30 s (logs under %s)\n", dir.c_str());
    return nullptr;
  }
  bench->leader = std::make_unique<sluice::rpc::DriverClient>(sluice::testing::Channels(), leader);
  return bench;
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

std::optional<sluice::proto::JobInfo> Describe(Bench& b, const std::string& job) {
  sluice::proto::DescribeJobRequest request;
  request.set_job_id(job);
  sluice::Result<sluice::proto::JobInfo> info = b.leader->DescribeJob(request, std::chrono::seconds(2));
  if (!info.ok()) return std::nullopt;
  return *std::move(info);
}

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
  while (Since(submitted) < 30) {
    auto info = Describe(*b, "e2e");
    if (info && check_failed(*info)) return r;
    if (info && info->last_committed_batch() > 0) break;
    Sleep(0.2);
  }
  Sleep(warmup);
  std::optional<sluice::proto::JobInfo> first = Describe(*b, "e2e");
  if (!first) {
    std::fprintf(stderr, "e2e_bench: DescribeJob failed\n");
    return std::nullopt;
  }
  if (check_failed(*first)) return r;
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
    for (const auto& s : info->recent_batches()) {
      if (s.batch_id() > committed0) batches[s.batch_id()] = s;
    }
  }
  r.seconds = last_t;
  r.events_per_s = last_t > 0 ? static_cast<double>(last.total_input() - input0) / last_t : 0;
  r.batches_behind = last.last_planned_batch() - last.last_committed_batch();
  r.state_keys = last.state_keys();
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Generator -> parse -> filter -> project -> null on a local cluster vs receivers alone",
               "e2e_bench");
  double seconds = 15, warmup = 5;
  int payload = 600, partitions = 2, drivers = 1;
  int64_t rate = 500'000;
  bool no_unlimited = false, no_keyed = false;
  app.add_option("--seconds", seconds, "Measurement window of each job phase")->capture_default_str();
  app.add_option("--warmup", warmup, "Seconds after the first commit before measuring")->capture_default_str();
  app.add_option("--payload", payload, "Event size in bytes (the generator's payload_bytes)")->capture_default_str();
  app.add_option("--partitions", partitions, "Generator partitions")->capture_default_str();
  app.add_option("--rate", rate, "Paced phase: events/s in total")->capture_default_str();
  app.add_option("--drivers", drivers, "driverd processes (1 saves CPU; 3 as in production)")->capture_default_str();
  app.add_flag("--no-unlimited", no_unlimited, "Skip the unpaced phase");
  app.add_flag("--no-keyed", no_keyed, "Skip the keyed (shuffle + state) phase");
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
  if (!no_unlimited && !paced->failed) {
    unlimited = RunJob(dir.Sub("unlimited"), drivers, partitions, payload, 0, warmup, seconds, kStatelessOps, 1000);
    if (!unlimited) return 1;
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
  return code;
}
