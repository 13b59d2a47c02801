// LocalCluster: a whole Sluice cluster of real processes on loopback — the one
// helper that integration tests and scripts/demo.sh (through the
// sluice-local-cluster tool) use to start a cluster.
//
// Part of sluice::test_harness. It runs ZooKeeper (1 or 3 servers), optionally
// the Kafka mock broker, N driverd and M workerd processes, each with its own
// port, data directory and log file under `dir`:
//
//   <dir>/zk<i>/server.log     <dir>/driver-<i>/driverd.log
//   <dir>/kafka-mock.log       <dir>/worker-<i>/workerd.log
//
// Every connection is mutual TLS with the test certificates (certs.h): the
// daemons get TlsFlags("driver"/"worker"), sluicectl "admin", Channels() "client".
//
// Daemons can be stopped (SIGTERM), killed (SIGKILL), paused (SIGSTOP) and
// restarted with the same id, port and data, which is what failure tests do.
//
// With `separate_hosts`, every ZooKeeper server, driverd and workerd runs on
// a host of its own (NetnsHosts: a network namespace on a private bridge,
// named zk0, driver-1, worker-1, ... like the daemons), listening on that
// host's address, so partition tests can cut the network between any two
// (`hosts()->Cut`, `Isolate`, `Heal`). The test process reaches every host.
//
// Thread-compatible.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/common/status.h"
#include "test/harness/kafka_mock.h"
#include "test/harness/netns_hosts.h"
#include "test/harness/subprocess.h"
#include "test/harness/zk_cluster.h"
#include "proto/driver.pb.h"
#include "proto/worker.pb.h"

namespace sluice::rpc {
class ChannelCache;
}  // namespace sluice::rpc

namespace sluice::testing {

struct LocalClusterOptions {
  std::string dir;  // required
  int zk_servers = 1;
  int drivers = 3;
  int workers = 2;
  std::vector<KafkaTopic> kafka_topics;  // empty: no Kafka mock
  std::vector<std::string> driver_flags;  // added to every driverd command line
  std::vector<std::string> worker_flags;  // added to every workerd command line
  // Every daemon serves HTTP (--http-address) on a port of its own, kept
  // across restarts: driver_http_address(i), worker_http_address(i).
  bool http = false;
  // Every daemon's --plugin-dirs and --output-dirs (comma-separated); unset:
  // the example plugins' build directory (kPluginDir) and `dir`; empty:
  // none.
  std::optional<std::string> plugin_dirs;
  std::optional<std::string> output_dirs;
  std::string log_level = "info";
  // Every daemon gets --coordinator zookeeper://<the ZooKeeper servers><zk_root>.
  std::string zk_root = "/sluice/local";
  int zk_session_timeout_ms = 4000;
  // Each daemon on its own network namespace (see above); needs root, `ip`
  // and `nft` (NetnsHosts::Available() says why not). Not with the Kafka
  // mock, which listens on loopback only.
  bool separate_hosts = false;
};

class LocalCluster {
 public:
  // Starts everything and waits until every daemon answers GetStatus.
  [[nodiscard]] static Result<std::unique_ptr<LocalCluster>> Start(LocalClusterOptions options);
  ~LocalCluster();

  ZkCluster& zk() { return *zk_; }
  KafkaMock* kafka() { return kafka_.get(); }
  // The hosts, with separate_hosts; else null.
  NetnsHosts* hosts() { return hosts_.get(); }
  // Host names of the daemons, for hosts()->Cut and Isolate.
  std::string zk_host(int i) const { return "zk" + std::to_string(i); }
  std::string driver_host(int i) const { return driver_id(i); }
  std::string worker_host(int i) const { return worker_id(i); }
  const std::string& dir() const { return options_.dir; }

  int num_drivers() const { return static_cast<int>(drivers_.size()); }
  int num_workers() const { return static_cast<int>(workers_.size()); }
  std::string driver_id(int i) const { return "driver-" + std::to_string(i + 1); }
  std::string worker_id(int i) const { return "worker-" + std::to_string(i + 1); }
  std::string driver_address(int i) const;
  std::string worker_address(int i) const;
  // With options.http; "" without.
  std::string driver_http_address(int i) const;
  std::string worker_http_address(int i) const;
  std::string driver_log(int i) const;
  std::string worker_log(int i) const;
  // The --coordinator value the daemons were given.
  std::string coordinator() const;
  // All driver addresses, comma-separated (for sluicectl --driver).
  std::string driver_addresses() const;
  std::string worker_addresses() const;

  // The process of driver i (null while it is stopped).
  Subprocess* driver(int i) { return drivers_[i].process.get(); }
  Subprocess* worker(int i) { return workers_[i].process.get(); }

  // The program driver / worker i runs from its next (re)start on: another
  // build of driverd / workerd (a rolling upgrade); "" for this build's.
  void SetDriverBinary(int i, std::string path) { drivers_[i].binary = std::move(path); }
  void SetWorkerBinary(int i, std::string path) { workers_[i].binary = std::move(path); }

  // (Re)starts a daemon with its id, port and data; waits until it serves.
  [[nodiscard]] Status StartDriver(int i);
  [[nodiscard]] Status StartWorker(int i);
  // Starts one more worker (worker-<num_workers()+1>, a port and data of its
  // own) on the running cluster; its index. Not with separate_hosts (its
  // host would not exist).
  [[nodiscard]] Result<int> AddWorker();
  // SIGTERM and wait; returns the exit status.
  int StopDriver(int i);
  int StopWorker(int i);
  // SIGKILL.
  void KillDriver(int i);
  void KillWorker(int i);

  // The driver that says it leads, or -1.
  int LeaderIndex();
  // The job as the first driver that answers describes it; nullopt if none
  // does. A standby answers too, from its replicated state, which may be a
  // batch or two behind the leader's.
  std::optional<proto::JobInfo> DescribeJob(const std::string& job);
  // sluicectl --coordinator <this cluster> `args`; its output goes to
  // `log_path`. The exit code, or -1 if it did not finish in time.
  int Sluicectl(const std::vector<std::string>& args, const std::string& log_path,
                std::chrono::seconds timeout = std::chrono::seconds(30));

 private:
  struct Daemon {
    int port = 0;
    int http_port = 0;  // with options.http
    std::string binary;  // "" : kDriverdPath / kWorkerdPath
    std::unique_ptr<Subprocess> process;
  };

  explicit LocalCluster(LocalClusterOptions options) : options_(std::move(options)) {}
  [[nodiscard]] Status StartDaemon(bool is_driver, int i);

  // Where a daemon runs: its host, or loopback.
  Placement PlacementOf(const std::string& host) const { return hosts_ ? hosts_->placement(host) : Placement{}; }

  LocalClusterOptions options_;
  std::unique_ptr<NetnsHosts> hosts_;  // first: outlives every process on it
  std::unique_ptr<ZkCluster> zk_;
  std::unique_ptr<KafkaMock> kafka_;
  std::vector<Daemon> drivers_;
  std::vector<Daemon> workers_;
};

// True if a daemon at `address` answers GetStatus (driver or worker).
bool DaemonServing(const std::string& address, bool is_driver);

// The test process's channels, for the helpers here and the tests' own
// rpc::DriverClient / rpc::WorkerClient.
rpc::ChannelCache& Channels();

// GetStatus of the driver / worker at `address`, with a deadline: a probe on
// a channel of its own (not Channels()).
[[nodiscard]] Result<proto::DriverStatus> GetDriverStatus(
    const std::string& address, std::chrono::milliseconds deadline = std::chrono::milliseconds(500));
[[nodiscard]] Result<proto::WorkerStatus> GetWorkerStatus(
    const std::string& address, std::chrono::milliseconds deadline = std::chrono::milliseconds(500));

}  // namespace sluice::testing
