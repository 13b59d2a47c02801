// sluice-local-cluster: starts a whole local Sluice cluster (ZooKeeper, the
// Kafka mock, drivers, workers) through the test harness's LocalCluster, and
// keeps it up until SIGINT/SIGTERM. scripts/demo.sh uses it.
//
// With --restart-exited, a daemon that exits (killed by a failover drill, say)
// is started again with its id, port and data, the way a service manager's
// Restart=always would on a real host.
//
// Once everything serves, it writes --ready-file as shell variable lines:
//   DIR=...  ZK=host:port,...  COORDINATOR=zookeeper://...  KAFKA=host:port
//   DRIVERS=a,b,c  WORKERS=x,y
#include <atomic>
#include <cstdio>
#include <iostream>
#include <thread>

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/common/signals.h"
#include "test/harness/local_cluster.h"
#include "test/harness/util.h"

int main(int argc, char** argv) {
  sluice::BlockTerminationSignals();
  CLI::App app("Start a local Sluice cluster of real processes on loopback", "sluice-local-cluster");
  sluice::testing::LocalClusterOptions options;
  std::vector<std::string> topics;
  std::string ready_file;
  bool restart_exited = false;
  app.add_option("--dir", options.dir, "Directory for data and logs (required)");
  app.add_option("--zk-servers", options.zk_servers, "ZooKeeper servers (1 or 3)")->capture_default_str();
  app.add_option("--drivers", options.drivers, "driverd processes")->capture_default_str();
  app.add_option("--workers", options.workers, "workerd processes")->capture_default_str();
  app.add_option("--kafka-topic", topics, "Start the Kafka mock with topic NAME:PARTITIONS");
  app.add_option("--ready-file", ready_file, "Where to write the cluster's addresses when up");
  app.add_option("--log-level", options.log_level, "Every daemon's log level")->capture_default_str();
  app.add_option("--worker-flag", options.worker_flags, "Added to every workerd command line (repeatable)");
  app.add_flag("--http", options.http,
               "Every daemon serves HTTP (/metrics, /healthz, /readyz; the drivers' status page) on a port of "
               "its own: DRIVERS_HTTP and WORKERS_HTTP in the ready file");
  app.add_option("--driver-flag", options.driver_flags, "Added to every driverd command line (repeatable)");
  app.add_flag("--restart-exited", restart_exited,
               "Start a daemon that exits again, as a service manager would (for failover drills)");
  if (std::optional<int> code = sluice::ParseCommandLine(app, argc, argv)) return *code;
  if (options.dir.empty()) {
    std::cerr << "sluice-local-cluster: error: --dir is required\n";
    return sluice::kExitUsage;
  }
  for (const std::string& t : topics) {
    size_t colon = t.rfind(':');
    int n = colon == std::string::npos ? 0 : std::atoi(t.c_str() + colon + 1);
    if (n < 1) {
      std::cerr << "sluice-local-cluster: error: --kafka-topic '" << t << "' is not NAME:PARTITIONS\n";
      return sluice::kExitUsage;
    }
    options.kafka_topics.push_back({t.substr(0, colon), n});
  }
  auto cluster = sluice::testing::LocalCluster::Start(options);
  if (!cluster.ok()) {
    std::cerr << "sluice-local-cluster: error: " << cluster.status().message() << "\n";
    return 1;
  }
  sluice::testing::LocalCluster& c = **cluster;
  std::string summary = "DIR=" + c.dir() + "\nZK=" + c.zk().connect_string() +
                        "\nCOORDINATOR=" + c.coordinator() +
                        "\nKAFKA=" + (c.kafka() ? c.kafka()->bootstrap() : "") +
                        "\nDRIVERS=" + c.driver_addresses() + "\nWORKERS=" + c.worker_addresses() + "\n";
  if (options.http) {
    std::string drivers, workers;
    for (int i = 0; i < c.num_drivers(); ++i) drivers += (i ? "," : "") + c.driver_http_address(i);
    for (int i = 0; i < c.num_workers(); ++i) workers += (i ? "," : "") + c.worker_http_address(i);
    summary += "DRIVERS_HTTP=" + drivers + "\nWORKERS_HTTP=" + workers + "\n";
  }
  std::cout << summary << std::flush;
  if (!ready_file.empty()) {
    if (!sluice::testing::WriteFile(ready_file + ".tmp", summary).ok() ||
        std::rename((ready_file + ".tmp").c_str(), ready_file.c_str()) != 0) {
      std::cerr << "sluice-local-cluster: error: cannot write " << ready_file << "\n";
      return 1;
    }
  }
  std::atomic<bool> stop{false};
  std::thread restarter;
  if (restart_exited) {
    restarter = std::thread([&] {
      while (!stop.load()) {
        for (int i = 0; i < c.num_drivers() && !stop.load(); ++i) {
          if (c.driver(i) != nullptr && !c.driver(i)->Running()) {
            std::cerr << "sluice-local-cluster: " << c.driver_id(i) << " exited; starting it again\n";
            if (sluice::Status st = c.StartDriver(i); !st.ok()) std::cerr << "  " << st.message() << "\n";
          }
        }
        for (int i = 0; i < c.num_workers() && !stop.load(); ++i) {
          if (c.worker(i) != nullptr && !c.worker(i)->Running()) {
            std::cerr << "sluice-local-cluster: " << c.worker_id(i) << " exited; starting it again\n";
            if (sluice::Status st = c.StartWorker(i); !st.ok()) std::cerr << "  " << st.message() << "\n";
          }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    });
  }
  int sig = sluice::WaitForTerminationSignal();
  stop.store(true);
  if (restarter.joinable()) restarter.join();
  std::cerr << "sluice-local-cluster: signal " << sig << ", stopping the cluster\n";
  return 0;
}
