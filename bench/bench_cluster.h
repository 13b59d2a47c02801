// What the benchmarks that run jobs on a local cluster share: a cluster of
// real processes with a client of its leader, sluicectl, a job's
// description, percentiles, the workers' resident memory, and a plot of a
// job's batches over time (gnuplot, SVG).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lib/rpc/driver_client.h"
#include "test/harness/certs.h"
#include "test/harness/local_cluster.h"
#include "test/harness/paths.h"
#include "test/harness/subprocess.h"
#include "test/harness/util.h"

namespace sluice::bench {

using Clock = std::chrono::steady_clock;

inline double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

inline void Sleep(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

inline double Percentile(std::vector<int64_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return static_cast<double>(v[i]);
}

// The mean of v[from, to).
inline double Mean(const std::vector<int64_t>& v, size_t from, size_t to) {
  if (to <= from) return 0;
  double sum = 0;
  for (size_t i = from; i < to; ++i) sum += static_cast<double>(v[i]);
  return sum / static_cast<double>(to - from);
}

// A fresh cluster under `dir` with a client of its leader.
struct Bench {
  std::unique_ptr<testing::LocalCluster> cluster;
  std::unique_ptr<rpc::DriverClient> leader;
  std::string dir;
  int ctl_runs = 0;

  // sluicectl with `args`; its output in `out`.
  int Ctl(const std::vector<std::string>& args, std::string* out) {
    const std::string log = dir + "/ctl" + std::to_string(ctl_runs++) + ".log";
    const int code = cluster->Sluicectl(args, log);
    *out = testing::ReadFile(log).value_or("");
    return code;
  }
};

// Starts a cluster and waits for a leader; prints why (as `who`) and
// returns null if not.
inline std::unique_ptr<Bench> StartCluster(const char* who, testing::LocalClusterOptions options) {
  auto bench = std::make_unique<Bench>();
  bench->dir = options.dir;
  auto cluster = testing::LocalCluster::Start(std::move(options));
  if (!cluster.ok()) {
    std::fprintf(stderr, "%s: cannot start the cluster: %s\n", who, cluster.status().ToString().c_str());
    return nullptr;
  }
  bench->cluster = std::move(*cluster);
  std::string leader;
  testing::WaitUntil(
      [&] {
        for (int i = 0; i < bench->cluster->num_drivers(); ++i) {
          auto st = testing::GetDriverStatus(bench->cluster->driver_address(i));
          if (st.ok() && st->role() == proto::DRIVER_ROLE_LEADER) leader = bench->cluster->driver_address(i);
        }
        return !leader.empty();
      },
      std::chrono::milliseconds(30'000), std::chrono::milliseconds(100));
  if (leader.empty()) {
    std::fprintf(stderr, "%s: no leader within 30 s (logs under %s)\n", who, bench->dir.c_str());
    return nullptr;
  }
  bench->leader = std::make_unique<rpc::DriverClient>(testing::Channels(), leader);
  return bench;
}

inline std::optional<proto::JobInfo> Describe(Bench& b, const std::string& job) {
  proto::DescribeJobRequest request;
  request.set_job_id(job);
  Result<proto::JobInfo> info = b.leader->DescribeJob(request, std::chrono::seconds(2));
  if (!info.ok()) return std::nullopt;
  return *std::move(info);
}

// Resident memory of a process in MB, from /proc (0 if it is gone).
inline double RssMb(pid_t pid) {
  const std::string status = testing::ReadFile("/proc/" + std::to_string(pid) + "/status").value_or("");
  const size_t at = status.find("VmRSS:");
  return at == std::string::npos ? 0 : std::strtod(status.c_str() + at + 6, nullptr) / 1024;
}

inline double WorkersRssMb(testing::LocalCluster& cluster) {
  double sum = 0;
  for (int i = 0; i < cluster.num_workers(); ++i) {
    if (cluster.worker(i) != nullptr) sum += RssMb(cluster.worker(i)->pid());
  }
  return sum;
}

// Memory the workers' block stores hold, in MB, summed (what the budget
// bounds; RSS also counts what the allocator keeps for reuse).
inline double WorkersBlockMb(testing::LocalCluster& cluster) {
  double sum = 0;
  for (int i = 0; i < cluster.num_workers(); ++i) {
    Result<proto::WorkerStatus> st = testing::GetWorkerStatus(cluster.worker_address(i));
    if (st.ok()) sum += static_cast<double>(st->store().memory_bytes() + st->store().disk_bytes()) / 1e6;
  }
  return sum;
}

// One committed batch, for a timeline plot.
struct Point {
  double at_s;  // batch time, from the submit
  int64_t input;
  int64_t total_delay_ms;
};

// Writes <dir>/<name>.dat and .gp and runs gnuplot for <dir>/<name>.svg:
// events/s and total delay of every batch over time.
inline void Plot(const std::string& dir, const std::string& name, const std::string& title,
                 const std::vector<Point>& timeline, double interval_s) {
  std::string dat = "# batch time from submit (s), events/s, total delay (s)\n";
  for (const Point& p : timeline) {
    dat += std::to_string(p.at_s) + " " + std::to_string(static_cast<double>(p.input) / interval_s) + " " +
           std::to_string(static_cast<double>(p.total_delay_ms) / 1000) + "\n";
  }
  const std::string base = dir + "/" + name;
  const std::string gp = "set terminal svg size 800,360 dynamic font 'sans,11' noenhanced\n"
                         "set output '" + base + ".svg'\n"
                         "set title '" + title + "'\n"
                         "set xlabel 'seconds since submit (batch time)'\n"
                         "set ylabel 'events/s committed per batch'\n"
                         "set y2label 'total delay (s)'\n"
                         "set ytics nomirror\nset y2tics\nset yrange [0:*]\nset y2range [0:*]\nset key top left\n"
                         "set format y '%.1s%c'\n"
                         "plot '" + base + ".dat' using 1:2 with linespoints title 'events/s' axes x1y1, "
                         "'' using 1:3 with linespoints title 'total delay' axes x1y2\n";
  if (!testing::WriteFile(base + ".dat", dat).ok() || !testing::WriteFile(base + ".gp", gp).ok()) {
    std::fprintf(stderr, "cannot write %s.dat\n", base.c_str());
    return;
  }
  Result<int> rc = testing::RunCommand({"gnuplot", base + ".gp"}, base + ".gnuplot.log", std::chrono::seconds(30));
  if (rc.ok() && *rc == 0) {
    std::printf("plot: %s.svg\n", base.c_str());
  } else {
    std::printf("plot: gnuplot failed (scripts/setup.sh installs gnuplot-nox); data in %s.dat\n", base.c_str());
  }
}

}  // namespace sluice::bench
