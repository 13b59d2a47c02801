// wal_bench: committed WAL appends per second and commit latency, for
// 200-byte records, through the leader of 3 real driverd processes on
// loopback (with a real ZooKeeper), against the raw RocksDB synced-write rate
// on the same disk measured in the same run.
//
//   wal_bench [--seconds 10] [--clients 4] [--batch 20] [--single-clients 32] [--dir /tmp]
//
// Two phases in one run: clients appending --batch records per call and
// waiting for their commit (the WAL as the driver's planner uses it: a few
// concurrent appenders, records in groups), then --single-clients clients
// with one gRPC call per record (bound by the per-call cost of gRPC's
// synchronous server on this 2-core machine, reported for reference).
//
// Target: >= 10,000 committed records/s and p99 < 20 ms.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/rpc/driver_client.h"
#include "rocksdb/db.h"
#include "spdlog/spdlog.h"
#include "test/harness/local_cluster.h"
#include "test/harness/util.h"

namespace {

using Clock = std::chrono::steady_clock;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

// Synced 200-byte puts into RocksDB: one writer, then `threads` writers
// (RocksDB groups their syncs), for `seconds` each. Returns {single, group}.
std::pair<double, double> RawRocksDbSyncedRate(const std::string& dir, double seconds, int threads) {
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  if (!rocksdb::DB::Open(options, dir, &db).ok()) return {0, 0};
  rocksdb::WriteOptions wo;
  wo.sync = true;
  const std::string value(200, 'v');
  auto run = [&](int n) {
    std::atomic<int64_t> count{0};
    auto end = Clock::now() + std::chrono::duration<double>(seconds);
    std::vector<std::thread> ts;
    for (int t = 0; t < n; ++t) {
      ts.emplace_back([&, t] {
        for (int64_t i = 0; Clock::now() < end; ++i) {
          db->Put(wo, "k" + std::to_string(t) + "-" + std::to_string(i), value).PermitUncheckedError();
          ++count;
        }
      });
    }
    for (auto& th : ts) th.join();
    return count.load() / seconds;
  };
  double single = run(1);
  double group = run(threads);
  delete db;
  return {single, group};
}

struct Phase {
  int clients = 0;
  int batch = 0;
  double rate = 0;  // committed records/s
  double p50 = 0, p99 = 0;  // ms per call (= commit latency of its records)
  int64_t failures = 0;
};

// `clients` threads, each appending `batch` records per call and waiting for
// their commit, for `seconds` after a 2 s warm-up.
Phase Measure(const std::string& address, int clients, int batch, double seconds) {
  const std::string payload(200, 'p');
  std::atomic<bool> measuring{false}, stop{false};
  std::vector<std::vector<double>> latencies(clients);
  std::atomic<int64_t> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      // One client per thread, all on the address's one channel.
      sluice::rpc::DriverClient driver(sluice::testing::Channels(), address);
      for (int64_t i = 0; !stop; ++i) {
        sluice::proto::AppendMarkerRequest req;
        req.set_client_id("bench-" + std::to_string(batch) + "-" + std::to_string(t));
        req.set_client_seq(i * batch);
        req.set_payload(payload);
        req.set_count(batch);
        auto start = Clock::now();
        sluice::Status st = driver.AppendMarker(req, std::chrono::seconds(5)).status();
        double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        if (!measuring) continue;
        if (st.ok()) {
          latencies[t].push_back(ms);
        } else {
          ++failures;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));
  measuring = true;
  auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  measuring = false;
  double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  stop = true;
  for (auto& th : threads) th.join();
  std::vector<double> all;
  for (auto& v : latencies) all.insert(all.end(), v.begin(), v.end());
  Phase p;
  p.clients = clients;
  p.batch = batch;
  p.rate = all.size() * static_cast<double>(batch) / elapsed;
  p.p50 = Percentile(all, 0.50);
  p.p99 = Percentile(all, 0.99);
  p.failures = failures;
  return p;
}

void Print(const Phase& p, const char* what) {
  std::printf("%s: %d clients x %d records per call\n", what, p.clients, p.batch);
  std::printf("  committed appends/s      %10.0f\n", p.rate);
  std::printf("  commit latency p50       %10.2f ms\n", p.p50);
  std::printf("  commit latency p99       %10.2f ms\n", p.p99);
  std::printf("  failed calls             %10ld\n", static_cast<long>(p.failures));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Committed WAL appends/s and latency on 3 drivers vs raw RocksDB synced writes",
               "wal_bench");
  double seconds = 10;
  int clients = 4;
  int batch = 20;
  int single_clients = 32;
  std::string base = "/tmp";
  app.add_option("--seconds", seconds, "Measurement time")->capture_default_str();
  app.add_option("--clients", clients, "Concurrent appending clients (grouped phase)")
      ->capture_default_str();
  app.add_option("--batch", batch, "Records per append call (grouped phase)")->capture_default_str();
  app.add_option("--single-clients", single_clients, "Concurrent clients of the one-record phase")
      ->capture_default_str();
  app.add_option("--dir", base, "Where data goes (the disk measured)")->capture_default_str();
  if (std::optional<int> code = sluice::ParseCommandLine(app, argc, argv)) return *code;
  spdlog::set_level(spdlog::level::warn);

  const std::string dir = base + "/sluice-wal-bench-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::cout << "baseline: raw RocksDB synced 200-byte writes on " << base << " ..." << std::endl;
  auto [raw_single, raw_group] =
      RawRocksDbSyncedRate(dir + "/raw", std::min(seconds, 5.0), single_clients);

  std::cout << "starting ZooKeeper and 3 drivers ..." << std::endl;
  auto cluster = sluice::testing::LocalCluster::Start(
      {.dir = dir, .drivers = 3, .workers = 0, .log_level = "warn"});
  if (!cluster.ok()) {
    std::cerr << "wal_bench: " << cluster.status() << "\n";
    return 1;
  }
  int leader = -1;
  sluice::testing::WaitUntil([&] {
    for (int i = 0; i < 3; ++i) {
      auto st = sluice::testing::GetDriverStatus((*cluster)->driver_address(i));
      if (st.ok() && st->wal().serving()) leader = i;
    }
    return leader >= 0;
  }, std::chrono::seconds(30));
  if (leader < 0) {
    std::cerr << "wal_bench: no serving leader\n";
    return 1;
  }
  const std::string address = (*cluster)->driver_address(leader);
  Phase grouped = Measure(address, clients, batch, seconds);
  Phase single = Measure(address, single_clients, 1, seconds);

  std::printf("\nWAL benchmark: 3 drivers and ZooKeeper on loopback, 200-byte records\n");
  Print(grouped, "records appended in groups, as the driver's planner does");
  Print(single, "one gRPC call per record (sluicectl-style; bound by per-call cost)");
  std::printf("baseline, same disk, same run:\n");
  std::printf("  RocksDB synced puts/s, 1 writer          %10.0f\n", raw_single);
  std::printf("  RocksDB synced puts/s, %2d writers        %10.0f\n", single_clients, raw_group);
  std::printf("ratio: committed appends (grouped) / raw synced puts (1 writer)  = %.2f\n",
              grouped.rate / raw_single);
  std::printf("ratio: committed appends (grouped) / raw synced puts (%d writers) = %.2f\n",
              single_clients, grouped.rate / raw_group);
  std::printf("ratio: committed appends (1 per call) / raw synced puts (1 writer) = %.2f\n",
              single.rate / raw_single);
  const bool met = grouped.rate >= 10000 && grouped.p99 < 20;
  std::printf("target (>= 10000 committed records/s, p99 < 20 ms): %s\n", met ? "MET" : "NOT MET");
  cluster->reset();
  std::filesystem::remove_all(dir);
  return 0;
}
